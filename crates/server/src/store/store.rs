//! [`Store`]: every source with its totals, held end and open block; the
//! blocks sealed in memory; the splits readers are shown (being built on
//! the local disk, or published) — all under one lock, so that a reader's
//! snapshot sees each line exactly once, and the committer's hand-overs
//! (`committed`, `published`) are atomic for readers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use cblogs_core::Source;
use tantivy::Searcher;

use super::disk_cache::SplitHandle;
use super::live::{LiveBatch, TailHub};
use super::pinned::{FollowFirst, OwnPublishes, SplitAt};
use super::room::Room;
use super::snapshot::{ReadSnapshot, SnapshotSplit};
use super::sources::{OpenBlock, SealedBlock, SourceEntry, SourceSummary};
use super::split_totals::SplitTotals;
use crate::block::LineBlock;
use crate::cluster::Ownerships;
use crate::config::StorageConfig;
use crate::index::{BlockRef, Partition, PartitionError, ReadCaches};
use crate::metastore::{SourceAdvance, SourceRecord, GAPS_KEPT};
use crate::wal::WalRecord;

/// What [`Store::ends`] says of one source.
pub struct SourceEndsNow {
    pub source: Arc<Source>,
    pub published_end: u64,
    pub held_end: u64,
    pub gaps: Vec<(u64, u64)>,
}

/// A split as readers see it.
struct PartitionView {
    split: SplitHandle,
    /// What readers of a split open here read (`None` for a cached one:
    /// its searcher is made when a reader opens its index).
    searcher: Option<Searcher>,
    /// Its blocks (docs).
    blocks: u64,
    totals: SplitTotals,
    /// In the object store and the metastore (else: being built, or
    /// waiting for its upload).
    published: bool,
}

impl PartitionView {
    fn t_max(&self) -> i64 {
        self.totals.t_max()
    }
}

struct Inner {
    sources: HashMap<u64, SourceEntry>,
    sealed: Vec<Arc<SealedBlock>>,
    /// By split id.
    partitions: BTreeMap<String, PartitionView>,
    applied_seq: u64,
    /// Per source id, the published end the metastore records: held
    /// even after retention deleted every line of the source.
    published: HashMap<u64, (Arc<Source>, u64)>,
    /// Per source id, the byte ranges accepted as lost (`allow_gap`),
    /// oldest first: those the metastore records, then those since.
    gaps: HashMap<u64, Vec<(u64, u64)>>,
}

impl Inner {
    /// Sources `ids` left splits `splits` (not published; their blocks
    /// were deleted from the indexes): the splits' views and totals, and
    /// the sources', follow.
    fn drop_from_splits(&mut self, ids: &[u64], splits: &[String]) {
        for id in splits {
            let Some(view) = self.partitions.get_mut(id) else {
                continue;
            };
            if let SplitHandle::Open(part) = &view.split {
                let searcher = part.searcher();
                view.blocks = searcher.num_docs();
                view.searcher = Some(searcher);
            }
            for sid in ids {
                if let Some((lines, bytes)) = view.totals.drop_source(*sid) {
                    if let Some(e) = self.sources.get_mut(sid) {
                        e.totals.lines = e.totals.lines.saturating_sub(lines);
                        e.totals.bytes = e.totals.bytes.saturating_sub(bytes);
                    }
                }
            }
        }
    }

    /// Per source, the lines and bytes the splits `include` picks hold.
    fn split_lines(
        &self,
        include: impl Fn(&str, &PartitionView) -> bool,
    ) -> HashMap<u64, (u64, u64)> {
        let mut per_source: HashMap<u64, (u64, u64)> = HashMap::new();
        let included = self.partitions.iter().filter(|(id, v)| include(id, v));
        for (_, v) in included {
            for t in v.totals.lines() {
                let e = per_source.entry(t.source).or_default();
                e.0 += t.lines;
                e.1 += t.bytes;
            }
        }
        per_source
    }

    /// A source left with no line is forgotten, as when retention takes
    /// its last split: its end stays in `published`.
    fn forget_empty_sources(&mut self) {
        self.sources
            .retain(|_, e| e.totals.lines > 0 || e.open.is_some());
    }
}

/// A split held, for the storage listing and retention.
pub(super) struct PartitionInfo {
    pub id: String,
    pub start_ns: i64,
    pub dir: PathBuf,
    pub blocks: u64,
    pub newest_ns: Option<i64>,
    pub published: bool,
}

pub struct Store {
    config: StorageConfig,
    inner: RwLock<Inner>,
    live: TailHub,
    room: Arc<Room>,
    caches: Arc<ReadCaches>,
    /// In a cluster: the sources this node holds. A record accepted
    /// under an epoch the node no longer holds is not applied.
    ownerships: Option<Arc<Ownerships>>,
    /// In a cluster: the metastore version up to which what the other
    /// nodes did is shown. Held (written) while the committer shows a
    /// round of their changes, so that a pinned snapshot
    /// ([`Store::pinned_parts`]) sees all of a version's changes or none.
    followed: RwLock<u64>,
    /// In a cluster: the splits this node published, by version (what it
    /// answers of a fan-out read pinned to an older version).
    own_publishes: Arc<Mutex<OwnPublishes>>,
}

/// Lines and bytes of a source that a part of the view holds.
pub type LinesBytes = (u64, u64);

/// A fan-out search's two parts of this node's view, taken at once: what
/// is published (its own, and the others' up to `version`), and what it
/// holds unpublished.
pub struct PinnedParts {
    pub published: ReadSnapshot,
    pub unpublished: ReadSnapshot,
    pub version: u64,
}

impl Store {
    /// A store showing the `partitions` (from [`SplitSet::open`]: each
    /// split, and whether it is published), with the source table rebuilt
    /// from them (a cached split's from its metastore entry: its index is
    /// not opened), and holding at least the `published` ends the
    /// metastore records.
    pub fn open(
        partitions: Vec<(SplitHandle, bool)>,
        config: StorageConfig,
        live: TailHub,
        caches: Arc<ReadCaches>,
        published: BTreeMap<u64, SourceRecord>,
        ownerships: Option<Arc<Ownerships>>,
        followed: u64,
    ) -> Result<Store, PartitionError> {
        let mut inner = Inner {
            sources: HashMap::new(),
            sealed: Vec::new(),
            partitions: BTreeMap::new(),
            applied_seq: 0,
            published: HashMap::new(),
            gaps: HashMap::new(),
        };
        for (id, r) in published {
            if !r.gaps.is_empty() {
                inner.gaps.insert(id, r.gaps);
            }
            inner.published.insert(id, (r.source, r.published_end));
        }
        for (split, published) in partitions {
            show_split(&mut inner, split, published)?;
        }
        tracing::info!(
            partitions = inner.partitions.len(),
            sources = inner.sources.len(),
            "store opened"
        );
        Ok(Store {
            config,
            inner: RwLock::new(inner),
            live,
            room: Arc::new(Room::default()),
            caches,
            ownerships,
            followed: RwLock::new(followed),
            own_publishes: Arc::new(Mutex::new(OwnPublishes::new(followed))),
        })
    }

    /// Where this node's uploads record the version of each publish
    /// (`pinned.rs`).
    pub(super) fn own_publishes(&self) -> Arc<Mutex<OwnPublishes>> {
        self.own_publishes.clone()
    }

    /// Whether `record`'s lines are still this node's to apply: outside a
    /// cluster always; in one, if the node still holds its source at the
    /// epoch they were accepted under. Asked under the store's lock, the
    /// lock a fence drops the source's lines and ownership under.
    fn still_held(&self, record: &WalRecord) -> bool {
        self.ownerships
            .as_ref()
            .is_none_or(|own| own.holds(record.source.id(), record.epoch))
    }

    /// The memory lines take until they are indexed, and who waits for it.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// Bytes of lines in memory that are not in the index yet.
    pub fn unindexed_bytes(&self) -> u64 {
        self.room.unindexed()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Start-up: adds the WAL's records, skipping lines already committed.
    pub fn replay(&self, records: Vec<WalRecord>) {
        let mut inner = self.write();
        let (mut kept, mut skipped, mut fenced) = (0u64, 0u64, 0u64);
        for r in records {
            if !self.still_held(&r) {
                fenced += r.lines.len() as u64;
                continue;
            }
            inner
                .sources
                .entry(r.source.id())
                .or_insert_with(|| SourceEntry::new(r.source.clone()));
            if let Some(first) = r.lines.first_offset() {
                note_gap(&mut inner, r.source.id(), first);
            }
            let Some(e) = inner.sources.get_mut(&r.source.id()) else {
                continue;
            };
            let mut fresh = LineBlock::new();
            for l in r.lines.lines() {
                if l.offset >= e.end {
                    fresh.push(l.offset, l.time_ns, l.flags, l.bytes);
                } else {
                    skipped += 1;
                }
            }
            kept += fresh.len() as u64;
            let covered = r.lines.end_offset().unwrap_or(0);
            fresh.cover_to(covered);
            e.end = e.end.max(covered);
            inner.applied_seq = inner.applied_seq.max(r.seq);
            if !fresh.is_empty() {
                self.add_lines(&mut inner, r.source.id(), r.seq, &fresh);
            }
        }
        tracing::info!(
            lines = kept,
            already_committed = skipped,
            taken_by_other_nodes = fenced,
            "write-ahead log replayed"
        );
    }

    /// The WAL writer's hand-off: `records` are durable; make them visible
    /// and tell live tailers, under the lock so no reader sees half of it.
    pub fn apply(&self, records: Vec<WalRecord>) {
        let mut inner = self.write();
        for r in records {
            inner.applied_seq = inner.applied_seq.max(r.seq);
            if !self.still_held(&r) {
                // Accepted just before another node took the source: its
                // lines are sent to that node again (the shipper sees
                // this one hold less than it acknowledged).
                tracing::debug!(source = %r.source.key(), lines = r.lines.len(), "lines accepted under an ownership since taken by another node are not applied");
                continue;
            }
            inner
                .sources
                .entry(r.source.id())
                .or_insert_with(|| SourceEntry::new(r.source.clone()));
            if let Some(first) = r.lines.first_offset() {
                note_gap(&mut inner, r.source.id(), first);
            }
            self.add_lines(&mut inner, r.source.id(), r.seq, &r.lines);
            self.live.publish(LiveBatch::new(r.source, r.lines));
        }
    }

    fn add_lines(&self, inner: &mut Inner, id: u64, seq: u64, lines: &LineBlock) {
        let Some(e) = inner.sources.get_mut(&id) else {
            return;
        };
        let open = e.open.get_or_insert_with(|| OpenBlock {
            lines: Arc::new(LineBlock::new()),
            first_seq: seq,
            opened: Instant::now(),
        });
        let block = Arc::make_mut(&mut open.lines);
        for l in lines.lines() {
            block.push(l.offset, l.time_ns, l.flags, l.bytes);
            e.totals.lines += 1;
            e.totals.bytes += l.bytes.len() as u64;
            e.totals.last_seen_ns = e.totals.last_seen_ns.max(l.time_ns);
        }
        self.room.add_unindexed(lines.text_len() as u64);
        let covered = lines.end_offset().unwrap_or(0);
        block.cover_to(covered);
        e.end = e.end.max(covered);
        // Old enough by line time too: a day posted in minutes (a backfill,
        // the quiet-cluster benchmark) is cut into blocks as the day was.
        let newest = lines.time_range().map(|(_, t)| t);
        let span = open
            .lines
            .first_time()
            .zip(newest)
            .map_or(0, |(first, newest)| newest.saturating_sub(first));
        if open.lines.text_len() >= self.config.block_bytes
            || open.lines.len() >= self.config.block_max_lines
            || span >= self.config.block_max_age_ns()
        {
            let sealed = e.seal();
            inner.sealed.extend(sealed);
        }
    }

    /// For the ingest de-duplication: per source, the offset below which
    /// everything is held: in memory, in the index, or published earlier
    /// and since deleted by retention.
    pub fn held_ends(&self) -> HashMap<u64, u64> {
        let inner = self.read();
        let mut held: HashMap<u64, u64> = inner
            .published
            .iter()
            .map(|(id, (_, end))| (*id, *end))
            .collect();
        for (id, e) in &inner.sources {
            let end = held.entry(*id).or_default();
            *end = (*end).max(e.end);
        }
        held
    }

    /// What publishing split `id` makes of the published end of each of
    /// its sources: the first offset of the source that would still not
    /// be published (in memory, or in another split not published), or
    /// all the source holds.
    pub(super) fn ends_once_published(&self, id: &str) -> Vec<SourceAdvance> {
        let inner = self.read();
        let Some(view) = inner.partitions.get(id) else {
            return Vec::new();
        };
        // Per source, the first offset still only in sealed blocks: one pass
        // (thousands of quiet sources each with a sealed block waiting made
        // a pass per source quadratic, measured in `cblogs-bench quiet`).
        let mut sealed_first: HashMap<u64, u64> = HashMap::new();
        for s in &inner.sealed {
            if let Some(first) = s.lines.first_offset() {
                let e = sealed_first.entry(s.source.id()).or_insert(first);
                *e = (*e).min(first);
            }
        }
        // The other splits not published yet: a few, among hundreds.
        let unpublished: Vec<&PartitionView> = inner
            .partitions
            .iter()
            .filter(|(other, v)| !v.published && other.as_str() != id)
            .map(|(_, v)| v)
            .collect();
        view.totals
            .sources()
            .filter_map(|sid| inner.sources.get(&sid).map(|e| (sid, e)))
            .map(|(sid, e)| {
                let unpublished = unpublished
                    .iter()
                    .filter_map(|v| v.totals.building_off_start(sid))
                    .min();
                let end = committed_end(e, sealed_first.get(&sid).copied());
                let end = unpublished.map_or(end, |u| u.min(end));
                let floor = inner.published.get(&sid).map_or(0, |p| p.1);
                let gaps = inner.gaps.get(&sid).map_or_else(Vec::new, |gaps| {
                    gaps.iter()
                        .filter(|g| g.0 >= floor && g.1 <= end)
                        .copied()
                        .collect()
                });
                SourceAdvance {
                    source: (*e.source).clone(),
                    published_end: end,
                    gaps,
                    owner: None,
                }
            })
            .collect()
    }

    /// Split `id` is published: readers now read `published` (its files
    /// in the object store) in its place, and the store holds at least
    /// the published `ends` the metastore now records, in one step.
    pub(super) fn published(&self, id: &str, published: SplitHandle, ends: &[SourceAdvance]) {
        let mut inner = self.write();
        raise_published(&mut inner, ends);
        let Some(old) = inner.partitions.remove(id) else {
            return;
        };
        let (searcher, blocks) = match &published {
            SplitHandle::Open(p) => {
                let searcher = p.searcher();
                let blocks = searcher.num_docs();
                (Some(searcher), blocks)
            }
            SplitHandle::Cached(c) => (None, c.entry.blocks),
        };
        inner.partitions.insert(
            published.id().to_owned(),
            PartitionView {
                split: published,
                searcher,
                blocks,
                totals: old.totals.sealed(),
                published: true,
            },
        );
    }

    /// Another node of the cluster published `split` (followed in the
    /// metastore): readers see it, its sources' totals count it, and
    /// their published ends move up to `ends`.
    pub(super) fn show_published_elsewhere(
        &self,
        split: SplitHandle,
        ends: &[SourceAdvance],
    ) -> Result<(), PartitionError> {
        let mut inner = self.write();
        if inner.partitions.contains_key(split.id()) {
            return Ok(());
        }
        raise_published(&mut inner, ends);
        show_split(&mut inner, split, true)
    }

    /// The published splits `ids` as readers see them, if every one is
    /// shown and published.
    pub(super) fn published_handles(&self, ids: &[String]) -> Option<Vec<SplitHandle>> {
        let inner = self.read();
        ids.iter()
            .map(|id| {
                inner
                    .partitions
                    .get(id)
                    .filter(|v| v.published)
                    .map(|v| v.split.clone())
            })
            .collect()
    }

    /// A merge of `inputs` was published: readers now read `output` in
    /// their place, in one step (their lines are the output's, so no
    /// source's totals change). Returns the inputs as readers were shown them.
    pub(super) fn merged(&self, inputs: &[String], output: SplitHandle) -> Vec<SplitHandle> {
        let (searcher, blocks, totals) = match &output {
            SplitHandle::Open(p) => {
                let searcher = p.searcher();
                let blocks = searcher.num_docs();
                let totals = p.totals(&searcher).unwrap_or_else(|e| {
                    tracing::error!(error = %e, "cannot read a merged split's totals");
                    HashMap::new()
                });
                (Some(searcher), blocks, totals)
            }
            SplitHandle::Cached(c) => (None, c.entry.blocks, c.totals()),
        };
        let totals = SplitTotals::from_map(totals, true);
        let mut inner = self.write();
        let replaced = inputs
            .iter()
            .filter_map(|id| inner.partitions.remove(id))
            .map(|v| v.split)
            .collect();
        inner.partitions.insert(
            output.id().to_owned(),
            PartitionView {
                split: output,
                searcher,
                blocks,
                totals,
                published: true,
            },
        );
        replaced
    }

    /// Per source (of those `wanted` picks): its published end, its
    /// held end (durable here: published, or in the WAL), and the gaps
    /// accepted in it.
    pub fn ends(&self, wanted: &dyn Fn(&Source) -> bool) -> Vec<SourceEndsNow> {
        let inner = self.read();
        let mut ends: HashMap<u64, SourceEndsNow> = inner
            .published
            .iter()
            .filter(|(_, (s, _))| wanted(s))
            .map(|(id, (s, end))| {
                let now = SourceEndsNow {
                    source: s.clone(),
                    published_end: *end,
                    held_end: *end,
                    gaps: Vec::new(),
                };
                (*id, now)
            })
            .collect();
        for (id, e) in inner.sources.iter().filter(|(_, e)| wanted(&e.source)) {
            let entry = ends.entry(*id).or_insert_with(|| SourceEndsNow {
                source: e.source.clone(),
                published_end: 0,
                held_end: 0,
                gaps: Vec::new(),
            });
            entry.held_end = entry.held_end.max(e.end);
        }
        for (id, now) in &mut ends {
            now.gaps = inner.gaps.get(id).cloned().unwrap_or_default();
        }
        ends.into_values().collect()
    }

    /// Seals open blocks that are old enough, or whose first line is in a
    /// WAL record below `seal_below` (the WAL is over its budget), or all of
    /// them when `all`; returns every sealed block not yet committed.
    pub fn blocks_to_commit(&self, all: bool, seal_below: Option<u64>) -> Vec<Arc<SealedBlock>> {
        let mut inner = self.write();
        let max_age = self.config.block_max_age();
        // Ingest waits while max_unindexed_bytes are held. When most of that
        // is in open blocks (many sources, none full), committing what is
        // sealed would not make room: seal the open blocks too.
        let held = self.unindexed_bytes();
        let sealed: u64 = inner.sealed.iter().map(|b| b.lines.text_len() as u64).sum();
        let all = all || (held >= self.config.max_unindexed_bytes / 2 && sealed < held / 2);
        let mut newly = Vec::new();
        for e in inner.sources.values_mut() {
            let due = |o: &OpenBlock| {
                all || o.opened.elapsed() >= max_age || seal_below.is_some_and(|s| o.first_seq < s)
            };
            if e.open.as_ref().is_some_and(due) {
                newly.extend(e.seal());
            }
        }
        inner.sealed.extend(newly);
        inner.sealed.clone()
    }

    /// Shows readers a new split being built (empty).
    pub(super) fn add_partition(&self, part: Arc<Partition>) {
        let mut inner = self.write();
        inner
            .partitions
            .entry(part.id.clone())
            .or_insert_with(|| PartitionView {
                searcher: Some(part.searcher()),
                split: SplitHandle::Open(part),
                blocks: 0,
                totals: SplitTotals::building(),
                published: false,
            });
    }

    /// A cluster's node no longer owns the sources of `published_ends`
    /// (id -> the end the metastore records): what it held of them that
    /// is not published is forgotten: their lines in memory, their part of
    /// the splits `dropped_from` (not published; their blocks are deleted
    /// from those splits' indexes), and each one's end is set back to its
    /// published end (the new owner's). The node's ownership of them ends
    /// under the same lock: a WAL record accepted under it is either
    /// dropped here or, applied after, not applied at all.
    pub(super) fn drop_unpublished(
        &self,
        published_ends: &HashMap<u64, u64>,
        dropped_from: &[String],
    ) {
        let mut inner = self.write();
        let inner = &mut *inner;
        let mut freed = 0u64;
        let mut forget = |sources: &mut HashMap<u64, SourceEntry>, id: u64, lines: &LineBlock| {
            freed += lines.text_len() as u64;
            if let Some(e) = sources.get_mut(&id) {
                e.totals.lines = e.totals.lines.saturating_sub(lines.len() as u64);
                e.totals.bytes = e.totals.bytes.saturating_sub(lines.text_len() as u64);
            }
        };
        let sources = &mut inner.sources;
        inner.sealed.retain(|b| {
            let gone = published_ends.contains_key(&b.source.id());
            if gone {
                forget(sources, b.source.id(), &b.lines);
            }
            !gone
        });
        for sid in published_ends.keys() {
            let open = sources.get_mut(sid).and_then(|e| e.open.take());
            if let Some(open) = open {
                forget(sources, *sid, &open.lines);
            }
        }
        let ids: Vec<u64> = published_ends.keys().copied().collect();
        inner.drop_from_splits(&ids, dropped_from);
        for (sid, end) in published_ends {
            if let Some(e) = inner.sources.get_mut(sid) {
                e.end = *end;
                // What the new owner published is this node's floor too.
                let p = inner
                    .published
                    .entry(*sid)
                    .or_insert_with(|| (e.source.clone(), 0));
                p.1 = p.1.max(*end);
            }
        }
        if let Some(own) = &self.ownerships {
            own.dropped(&ids);
        }
        inner.forget_empty_sources();
        self.room.free_unindexed(freed);
    }

    /// Sources `ids`' blocks were deleted from split `split` (not
    /// published), and only from it: lines this node took under an epoch
    /// it has since lost and taken again, in a split whose publish the
    /// metastore refused. What it holds of them under the new epoch stays.
    pub(super) fn drop_from_split(&self, ids: &[u64], split: &str) {
        let mut inner = self.write();
        inner.drop_from_splits(ids, &[split.to_owned()]);
        inner.forget_empty_sources();
    }

    /// Takes a split away from readers, and its lines from its sources'
    /// totals (a source left with no line is forgotten).
    pub(super) fn remove_partition(&self, id: &str) -> Option<SplitHandle> {
        let mut inner = self.write();
        let view = inner.partitions.remove(id)?;
        for t in view.totals.lines() {
            if let Some(e) = inner.sources.get_mut(&t.source) {
                e.totals.lines = e.totals.lines.saturating_sub(t.lines);
                e.totals.bytes = e.totals.bytes.saturating_sub(t.bytes);
            }
        }
        inner.forget_empty_sources();
        Some(view.split)
    }

    /// The committer made `blocks` durable in the index: swap in the new
    /// searchers and forget the blocks' memory copies, atomically for
    /// readers. Returns [`Store::oldest_in_memory`].
    pub fn committed(&self, blocks: &[(Arc<SealedBlock>, String, BlockRef)]) -> u64 {
        let mut inner = self.write();
        for (_, id, b) in blocks {
            if let Some(v) = inner.partitions.get_mut(id) {
                v.totals.add_block(b);
            }
        }
        for v in inner.partitions.values_mut().filter(|v| !v.published) {
            if let SplitHandle::Open(part) = &v.split {
                let searcher = part.searcher();
                v.blocks = searcher.num_docs();
                v.searcher = Some(searcher);
            }
        }
        let done: HashSet<*const SealedBlock> =
            blocks.iter().map(|(c, _, _)| Arc::as_ptr(c)).collect();
        inner.sealed.retain(|s| !done.contains(&Arc::as_ptr(s)));
        let freed: u64 = blocks
            .iter()
            .map(|(c, _, _)| c.lines.text_len() as u64)
            .sum();
        self.room.free_unindexed(freed);
        oldest_in_memory(&inner)
    }

    /// The WAL seq below which no line is only in memory.
    pub fn oldest_in_memory(&self) -> u64 {
        oldest_in_memory(&self.read())
    }

    /// A consistent view of the sources `wanted` picks, optionally with a
    /// live subscription that starts exactly after it.
    pub fn snapshot(&self, wanted: &dyn Fn(&Source) -> bool, subscribe: bool) -> ReadSnapshot {
        let inner = self.read();
        self.snapshot_of(&inner, wanted, subscribe, true, &|_, _| true)
    }

    /// A fan-out search's view here, in two parts taken under one lock,
    /// and the metastore version the published part is pinned to.
    pub fn pinned_parts(&self, wanted: &dyn Fn(&Source) -> bool) -> PinnedParts {
        let followed = self.followed.read().unwrap_or_else(|p| p.into_inner());
        let inner = self.read();
        PinnedParts {
            published: self.snapshot_of(&inner, wanted, false, false, &|_, v| v.published),
            unpublished: self.snapshot_of(&inner, wanted, false, true, &|_, v| !v.published),
            version: *followed,
        }
    }

    /// What this node answers of a fan-out search pinned to metastore
    /// version `version`: every line it holds that is not published as
    /// of that version (in memory, in splits not published, in splits it
    /// published after it). Or the version the asker must have followed
    /// to ask (`pinned.rs`).
    pub fn unpublished_after(
        &self,
        wanted: &dyn Fn(&Source) -> bool,
        version: u64,
    ) -> Result<ReadSnapshot, FollowFirst> {
        let own = self.own_publishes.lock().unwrap_or_else(|p| p.into_inner());
        let inner = self.read();
        let at = self.splits_at(&own, &inner, version)?;
        Ok(self.snapshot_of(&inner, wanted, false, true, &|id, v| {
            at.answers(id, v.published)
        }))
    }

    /// This node's own splits as an asker pinned to metastore version
    /// `version` sees them; or the version it must reach first.
    fn splits_at<'o>(
        &self,
        own: &'o OwnPublishes,
        inner: &Inner,
        version: u64,
    ) -> Result<SplitAt<'o>, FollowFirst> {
        let newest = self
            .ownerships
            .as_ref()
            .map_or(0, |own| own.metastore_version());
        own.at(version, |id| inner.partitions.contains_key(id), newest)
    }

    /// The metastore version up to which what the other nodes did is
    /// shown.
    pub fn followed_version(&self) -> u64 {
        *self.followed.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The metastore version up to which what others did is shown, held
    /// while a round of it is shown (`splits/follow.rs`).
    pub(super) fn following(&self) -> std::sync::RwLockWriteGuard<'_, u64> {
        self.followed.write().unwrap_or_else(|p| p.into_inner())
    }

    /// In a cluster: the epoch this node holds source `id` at, and the
    /// newest the metastore (as last read) records for it.
    pub fn epochs(&self, id: u64) -> (Option<u64>, Option<u64>) {
        self.ownerships.as_ref().map_or((None, None), |own| {
            (own.epoch(id), own.recorded(id).map(|o| o.epoch))
        })
    }

    /// The sources `wanted` picks, with their memory blocks (if `memory`)
    /// and the splits `splits` picks, as of now.
    fn snapshot_of(
        &self,
        inner: &Inner,
        wanted: &dyn Fn(&Source) -> bool,
        subscribe: bool,
        memory: bool,
        splits: &dyn Fn(&str, &PartitionView) -> bool,
    ) -> ReadSnapshot {
        let mut sources = HashMap::new();
        let mut in_memory = Vec::new();
        for (id, e) in &inner.sources {
            if !wanted(&e.source) {
                continue;
            }
            sources.insert(*id, e.source.clone());
            if let Some(o) = e.open.as_ref().filter(|_| memory) {
                in_memory.push((e.source.clone(), o.lines.clone()));
            }
        }
        for s in inner.sealed.iter().filter(|_| memory) {
            if sources.contains_key(&s.source.id()) {
                in_memory.push((s.source.clone(), s.lines.clone()));
            }
        }
        let mut partitions: Vec<_> = inner
            .partitions
            .iter()
            .filter(|(id, v)| splits(id, v))
            .map(|(_, v)| SnapshotSplit::new(v.split.clone(), v.searcher.clone(), v.t_max()))
            .collect();
        // Newest first: `tail` stops early, reading the fewest.
        partitions.sort_by_key(|s| (std::cmp::Reverse(s.t_max), s.uid()));
        let live = subscribe.then(|| self.live.subscribe());
        ReadSnapshot {
            sources,
            memory: in_memory,
            partitions,
            live,
            caches: self.caches.clone(),
        }
    }

    /// Every batch applied from now on (what live tails and alerts read).
    pub fn live(&self) -> &TailHub {
        &self.live
    }

    /// Every source with its totals.
    pub fn summaries(&self) -> Vec<SourceSummary> {
        self.read()
            .sources
            .values()
            .map(SourceEntry::summary)
            .collect()
    }

    /// A fan-out `jobs` listing's published part here: every source with
    /// its totals in this node's view and, beside them, the lines and
    /// bytes of it the published splits hold (its own, and the others'
    /// up to the version returned).
    pub fn pinned_totals(&self) -> (Vec<(SourceSummary, LinesBytes)>, u64) {
        let followed = self.followed.read().unwrap_or_else(|p| p.into_inner());
        let inner = self.read();
        let published = inner.split_lines(|_, v| v.published);
        let sources = inner
            .sources
            .values()
            .map(|e| {
                let part = published.get(&e.source.id()).copied().unwrap_or_default();
                (e.summary(), part)
            })
            .collect();
        (sources, *followed)
    }

    /// What this node holds of each source that is not published as of
    /// metastore version `version` (see [`Store::unpublished_after`]):
    /// its lines and bytes, with the source's newest line time here.
    pub fn unpublished_totals_after(
        &self,
        version: u64,
    ) -> Result<Vec<SourceSummary>, FollowFirst> {
        let own = self.own_publishes.lock().unwrap_or_else(|p| p.into_inner());
        let inner = self.read();
        let at = self.splits_at(&own, &inner, version)?;
        let published = inner.split_lines(|id, v| !at.answers(id, v.published));
        Ok(inner
            .sources
            .values()
            .filter_map(|e| {
                let (lines, bytes) = published.get(&e.source.id()).copied().unwrap_or_default();
                let mut s = e.summary();
                s.totals.lines = s.totals.lines.saturating_sub(lines);
                s.totals.bytes = s.totals.bytes.saturating_sub(bytes);
                (s.totals.lines > 0).then_some(s)
            })
            .collect())
    }

    /// Published splits whose newest line is older than `cutoff_ns`.
    pub(super) fn expired_partitions(&self, cutoff_ns: i64) -> Vec<String> {
        self.read()
            .partitions
            .iter()
            .filter(|(_, v)| v.published && !v.totals.is_empty() && v.t_max() < cutoff_ns)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every split held, oldest window first (and, within one, in the
    /// order they were made).
    pub(super) fn partition_list(&self) -> Vec<PartitionInfo> {
        let mut list: Vec<PartitionInfo> = self
            .read()
            .partitions
            .iter()
            .map(|(id, v)| {
                let newest = v.t_max();
                PartitionInfo {
                    id: id.clone(),
                    start_ns: v.split.start_ns(),
                    dir: v.split.dir(),
                    blocks: v.blocks,
                    newest_ns: (newest != i64::MIN).then_some(newest),
                    published: v.published,
                }
            })
            .collect();
        list.sort_by(|a, b| (a.start_ns, &a.id).cmp(&(b.start_ns, &b.id)));
        list
    }
}

/// A batch accepted with `allow_gap` starts past what the source held:
/// the bytes in between are recorded as lost (and published as such with
/// the source's end, rule 1 of issue 16).
fn note_gap(inner: &mut Inner, id: u64, first: u64) {
    let floor = inner.published.get(&id).map_or(0, |p| p.1);
    let Some(e) = inner.sources.get(&id) else {
        return;
    };
    let held = e.end.max(floor);
    if first <= held {
        return;
    }
    tracing::warn!(
        source = %e.source.key(),
        "a gap was accepted (allow_gap): bytes {held}..{first} of this source are lost"
    );
    let gaps = inner.gaps.entry(id).or_default();
    gaps.push((held, first));
    let extra = gaps.len().saturating_sub(GAPS_KEPT);
    gaps.drain(..extra);
}

/// The end of a source's committed prefix: the first offset still only
/// in memory (open, or `sealed_first`: sealed and not committed), or all
/// it holds if none.
fn committed_end(e: &SourceEntry, sealed_first: Option<u64>) -> u64 {
    let open = e.open.as_ref().and_then(|o| o.lines.first_offset());
    open.into_iter().chain(sealed_first).min().unwrap_or(e.end)
}

fn oldest_in_memory(inner: &Inner) -> u64 {
    let pinned_open = inner
        .sources
        .values()
        .filter_map(|e| e.open.as_ref().map(|o| o.first_seq));
    let pinned_sealed = inner.sealed.iter().map(|s| s.first_seq);
    pinned_open
        .chain(pinned_sealed)
        .min()
        .unwrap_or(u64::MAX)
        .min(inner.applied_seq + 1)
}

/// Shows `split` to readers, and counts its lines in its sources' totals.
fn show_split(
    inner: &mut Inner,
    split: SplitHandle,
    published: bool,
) -> Result<(), PartitionError> {
    let (searcher, blocks, totals, sources) = match &split {
        SplitHandle::Open(part) => {
            let searcher = part.searcher();
            let totals = part.totals(&searcher)?;
            let sources = part.load_sources()?;
            (Some(searcher.clone()), searcher.num_docs(), totals, sources)
        }
        SplitHandle::Cached(c) => (None, c.entry.blocks, c.totals(), c.sources()),
    };
    for (id, source) in sources {
        let Some(t) = totals.get(&id) else { continue };
        let e = inner
            .sources
            .entry(id)
            .or_insert_with(|| SourceEntry::new(Arc::new(source)));
        e.totals.lines += t.lines;
        e.totals.bytes += t.bytes;
        e.totals.last_seen_ns = e.totals.last_seen_ns.max(t.t_max);
        e.end = e.end.max(t.off_end);
    }
    inner.partitions.insert(
        split.id().to_owned(),
        PartitionView {
            split,
            searcher,
            blocks,
            totals: SplitTotals::from_map(totals, published),
            published,
        },
    );
    Ok(())
}

/// The store holds at least the published `ends` the metastore records.
fn raise_published(inner: &mut Inner, ends: &[SourceAdvance]) {
    for a in ends {
        let e = inner
            .published
            .entry(a.source.id())
            .or_insert_with(|| (Arc::new(a.source.clone()), 0));
        e.1 = e.1.max(a.published_end);
    }
}
