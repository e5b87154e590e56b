//! The store: what the server holds, in memory and on disk, and the one lock
//! that keeps readers consistent with it.
//!
//! A line's life: the WAL writer [`Store::apply`]s it into its source's open
//! block (readable at once, also published to live tailers); the block seals
//! on size or age and waits in `sealed` (still readable from memory); the
//! committer compresses and indexes it into a time partition, commits, and
//! [`Store::committed`] swaps in the new searcher and drops the block from
//! memory in the same critical section. A reader's [`Store::snapshot`] takes
//! the searchers and the memory blocks under that lock, so every line is seen
//! exactly once: either in memory or in the index, never both or neither.

use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use cblogs_core::{JobKey, Source};
use tantivy::Searcher;
use tokio::sync::{broadcast, Notify};

use crate::block::LineBlock;
use crate::config::StorageConfig;
use crate::partition::{self, BlockRef, Partition, PartitionError, SourceTotals};
use crate::wal::WalRecord;

/// Line counts and freshness of one source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub lines: u64,
    pub bytes: u64,
    pub last_seen_ns: i64,
}

struct SourceEntry {
    source: Arc<Source>,
    job: JobKey,
    totals: Totals,
    /// Every offset below this is held (committed, sealed or open).
    end: u64,
    open: Option<OpenBlock>,
}

struct OpenBlock {
    /// Shared with the read snapshots taken since the last append: a
    /// snapshot takes a reference, and the next append copies the block
    /// only if a snapshot still holds it (`Arc::make_mut`). Copying in
    /// every snapshot instead cost each search of every job a copy of
    /// every open block (up to block_bytes × sources), 8 searches at once
    /// that many copies.
    lines: Arc<LineBlock>,
    /// The WAL record that holds this block's first line: the WAL must keep it.
    first_seq: u64,
    opened: Instant,
}

/// A block sealed in memory and waiting for the committer.
pub struct SealedBlock {
    pub source: Arc<Source>,
    pub lines: Arc<LineBlock>,
    first_seq: u64,
}

struct PartitionView {
    part: Arc<Partition>,
    searcher: Searcher,
    totals: HashMap<u64, SourceTotals>,
}

impl PartitionView {
    fn t_max(&self) -> i64 {
        self.totals
            .values()
            .map(|t| t.t_max)
            .max()
            .unwrap_or(i64::MIN)
    }
}

#[derive(Default)]
struct Inner {
    sources: HashMap<u64, SourceEntry>,
    sealed: Vec<Arc<SealedBlock>>,
    partitions: BTreeMap<i64, PartitionView>,
    applied_seq: u64,
}

pub struct Store {
    config: StorageConfig,
    root: PathBuf,
    inner: RwLock<Inner>,
    tail: broadcast::Sender<Arc<WalRecord>>,
    /// Bytes of lines in memory and not yet in the index (open and sealed
    /// blocks): what `max_unindexed_bytes` bounds.
    unindexed_bytes: AtomicU64,
    /// What retention deleted, for the storage API (the last 100).
    deleted: std::sync::Mutex<std::collections::VecDeque<cblogs_core::api::DeletedPartition>>,
    /// Bytes of ingest requests admitted and not yet applied.
    admitted_bytes: AtomicU64,
    /// Woken after each commit and each admission's end: there may be room.
    room: Notify,
}

/// Room reserved for one ingest request (see [`Store::admit`]).
pub struct Admission {
    store: Arc<Store>,
    bytes: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.store
            .admitted_bytes
            .fetch_sub(self.bytes, Ordering::AcqRel);
        self.store.room.notify_waiters();
    }
}

/// What one reader sees: consistent as of one instant.
pub struct ReadSnapshot {
    /// The sources the reader asked for.
    pub sources: HashMap<u64, Arc<Source>>,
    /// Their lines not yet committed to the index.
    pub memory: Vec<(Arc<Source>, Arc<LineBlock>)>,
    /// Committed partitions, newest first, with their newest line time.
    pub partitions: Vec<(Arc<Partition>, Searcher, i64)>,
    /// Every record applied after this snapshot, if asked for.
    pub live: Option<broadcast::Receiver<Arc<WalRecord>>>,
}

/// A source and its totals, for the jobs listing.
pub struct SourceSummary {
    pub source: Arc<Source>,
    pub job: JobKey,
    pub totals: Totals,
}

impl Store {
    /// Opens every partition under `root` and rebuilds the source table from them.
    pub fn open(
        root: &Path,
        config: StorageConfig,
        tail_capacity: usize,
    ) -> Result<Store, PartitionError> {
        std::fs::create_dir_all(root).map_err(|source| PartitionError::Io {
            dir: root.to_owned(),
            source,
        })?;
        let mut inner = Inner::default();
        let entries = std::fs::read_dir(root).map_err(|source| PartitionError::Io {
            dir: root.to_owned(),
            source,
        })?;
        for entry in entries.flatten() {
            let Some(start) = entry
                .file_name()
                .to_str()
                .and_then(partition::parse_dir_name)
            else {
                continue;
            };
            let part = Arc::new(Partition::open(root, start)?);
            let searcher = part.searcher();
            let totals = part.totals(&searcher)?;
            for (id, source) in part.load_sources()? {
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
                start,
                PartitionView {
                    part,
                    searcher,
                    totals,
                },
            );
        }
        tracing::info!(
            partitions = inner.partitions.len(),
            sources = inner.sources.len(),
            "store opened"
        );
        let (tail, _) = broadcast::channel(tail_capacity);
        Ok(Store {
            config,
            root: root.to_owned(),
            inner: RwLock::new(inner),
            tail,
            unindexed_bytes: AtomicU64::new(0),
            admitted_bytes: AtomicU64::new(0),
            deleted: Default::default(),
            room: Notify::new(),
        })
    }

    /// Bytes of lines in memory that are not in the index yet.
    pub fn unindexed_bytes(&self) -> u64 {
        self.unindexed_bytes.load(Ordering::Relaxed)
    }

    /// Bytes waiting for the index, and bytes of requests admitted but
    /// not yet applied: what `max_unindexed_bytes` bounds.
    fn held(&self) -> u64 {
        self.unindexed_bytes() + self.admitted_bytes.load(Ordering::Acquire)
    }

    /// Waits until what is held is at most `limit`, or the `deadline`
    /// passes (then says how many bytes are held). Cheap: for a request
    /// that has not read its body yet.
    pub async fn wait_for_room(
        &self,
        limit: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), u64> {
        loop {
            // Registered before the check, so a commit in between still wakes us.
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.held() <= limit {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.held());
            }
        }
    }

    /// Reserves `bytes` for a request about to be ingested, waiting until
    /// they fit within `limit` (or until nothing else is being admitted,
    /// so one request larger than the room still goes through). The
    /// reservation ends when the returned [`Admission`] is dropped, after
    /// the request's lines were applied (and so counted as unindexed).
    pub async fn admit(
        self: &Arc<Self>,
        bytes: u64,
        limit: u64,
        deadline: tokio::time::Instant,
    ) -> Result<Admission, u64> {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let admitted = self.admitted_bytes.load(Ordering::Acquire);
            let unindexed = self.unindexed_bytes();
            let fits = unindexed + admitted + bytes <= limit;
            if fits || (admitted == 0 && unindexed <= limit) {
                if self
                    .admitted_bytes
                    .compare_exchange(
                        admitted,
                        admitted + bytes,
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
                {
                    return Ok(Admission {
                        store: self.clone(),
                        bytes,
                    });
                }
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(self.held());
            }
        }
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
        let (mut kept, mut skipped) = (0u64, 0u64);
        for r in records {
            let e = inner
                .sources
                .entry(r.source.id())
                .or_insert_with(|| SourceEntry::new(r.source.clone()));
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
            "write-ahead log replayed"
        );
    }

    /// The WAL writer's hand-off: `records` are durable; make them visible
    /// and tell live tailers, under the lock so no reader sees half of it.
    pub fn apply(&self, records: Vec<WalRecord>) {
        let mut inner = self.write();
        for r in records {
            inner.applied_seq = inner.applied_seq.max(r.seq);
            inner
                .sources
                .entry(r.source.id())
                .or_insert_with(|| SourceEntry::new(r.source.clone()));
            self.add_lines(&mut inner, r.source.id(), r.seq, &r.lines);
            // No receivers is fine: nobody is following.
            let _ = self.tail.send(Arc::new(r));
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
        self.unindexed_bytes
            .fetch_add(lines.text_len() as u64, Ordering::Relaxed);
        let covered = lines.end_offset().unwrap_or(0);
        block.cover_to(covered);
        e.end = e.end.max(covered);
        if open.lines.text_len() >= self.config.block_bytes
            || open.lines.len() >= self.config.block_max_lines
        {
            let sealed = e.seal();
            inner.sealed.extend(sealed);
        }
    }

    /// For the ingest de-duplication: per source, the offset below which
    /// everything is held.
    pub fn held_ends(&self) -> HashMap<u64, u64> {
        self.read()
            .sources
            .iter()
            .map(|(id, e)| (*id, e.end))
            .collect()
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

    /// The partition a block starting at `t_min` belongs to, opened (and
    /// created) on first use.
    pub fn partition_for(&self, t_min: i64) -> Result<Arc<Partition>, PartitionError> {
        let pns = self.config.partition_ns();
        let start = t_min.div_euclid(pns) * pns;
        if let Some(v) = self.read().partitions.get(&start) {
            return Ok(v.part.clone());
        }
        let part = Arc::new(Partition::open(&self.root, start)?);
        let mut inner = self.write();
        let view = inner
            .partitions
            .entry(start)
            .or_insert_with(|| PartitionView {
                searcher: part.searcher(),
                part,
                totals: HashMap::new(),
            });
        Ok(view.part.clone())
    }

    /// The committer made `blocks` durable in the index: swap in the new
    /// searchers and forget the blocks' memory copies, atomically for
    /// readers. Returns the WAL seq below which everything is committed.
    pub fn committed(&self, blocks: &[(Arc<SealedBlock>, i64, BlockRef)]) -> u64 {
        let mut inner = self.write();
        for (_, start, b) in blocks {
            if let Some(v) = inner.partitions.get_mut(start) {
                v.totals.entry(b.source).or_default().add_block(b);
            }
        }
        for v in inner.partitions.values_mut() {
            v.searcher = v.part.searcher();
        }
        let done: HashSet<*const SealedBlock> =
            blocks.iter().map(|(c, _, _)| Arc::as_ptr(c)).collect();
        inner.sealed.retain(|s| !done.contains(&Arc::as_ptr(s)));
        let freed: u64 = blocks
            .iter()
            .map(|(c, _, _)| c.lines.text_len() as u64)
            .sum();
        let _ = self
            .unindexed_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(freed))
            });
        self.room.notify_waiters();
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

    /// A consistent view of the sources `wanted` picks, optionally with a
    /// live subscription that starts exactly after it.
    pub fn snapshot(&self, wanted: &dyn Fn(&Source) -> bool, subscribe: bool) -> ReadSnapshot {
        let inner = self.read();
        let mut sources = HashMap::new();
        let mut memory = Vec::new();
        for (id, e) in &inner.sources {
            if !wanted(&e.source) {
                continue;
            }
            sources.insert(*id, e.source.clone());
            if let Some(o) = &e.open {
                memory.push((e.source.clone(), o.lines.clone()));
            }
        }
        for s in &inner.sealed {
            if sources.contains_key(&s.source.id()) {
                memory.push((s.source.clone(), s.lines.clone()));
            }
        }
        let partitions = inner
            .partitions
            .values()
            .rev()
            .map(|v| (v.part.clone(), v.searcher.clone(), v.t_max()))
            .collect();
        let live = subscribe.then(|| self.tail.subscribe());
        ReadSnapshot {
            sources,
            memory,
            partitions,
            live,
        }
    }

    /// Every record applied from now on (what live tails and alerts read).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<WalRecord>> {
        self.tail.subscribe()
    }

    /// Every source with its totals.
    pub fn summaries(&self) -> Vec<SourceSummary> {
        self.read()
            .sources
            .values()
            .map(|e| SourceSummary {
                source: e.source.clone(),
                job: e.job.clone(),
                totals: e.totals,
            })
            .collect()
    }

    /// Partitions whose newest line is older than `cutoff_ns`.
    pub fn expired_partitions(&self, cutoff_ns: i64) -> Vec<i64> {
        self.read()
            .partitions
            .iter()
            .filter(|(_, v)| !v.totals.is_empty() && v.t_max() < cutoff_ns)
            .map(|(start, _)| *start)
            .collect()
    }

    /// Forgets a partition (the caller has dropped its writer) and deletes
    /// its files; `reason` (age or disk) is kept for the storage API.
    pub fn drop_partition(&self, start: i64, reason: &str) -> Result<(), PartitionError> {
        let Some(view) = self.write().remove_partition(start) else {
            return Ok(());
        };
        let dir = view.part.dir().to_owned();
        drop(view);
        let bytes = dir_bytes(&dir);
        tracing::info!(dir = %dir.display(), bytes, reason, "retention: partition deleted");
        let removed = std::fs::remove_dir_all(&dir);
        let mut log = self.deleted.lock().unwrap_or_else(|p| p.into_inner());
        log.push_back(cblogs_core::api::DeletedPartition {
            start: cblogs_core::time::format_rfc3339(start),
            bytes,
            reason: reason.to_owned(),
            at: cblogs_core::time::format_rfc3339(cblogs_core::time::now_ns()),
        });
        if log.len() > 100 {
            log.pop_front();
        }
        removed.map_err(|source| PartitionError::Io { dir, source })
    }

    /// What retention deleted since the start, oldest first.
    pub fn deleted_partitions(&self) -> Vec<cblogs_core::api::DeletedPartition> {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Every partition with its size on disk, oldest first.
    pub fn disk_usage(&self) -> DiskUsage {
        let parts: Vec<(i64, PathBuf, u64, i64)> = self
            .read()
            .partitions
            .iter()
            .map(|(start, v)| {
                let blocks = v.searcher.num_docs();
                (*start, v.part.dir().to_owned(), blocks, v.t_max())
            })
            .collect();
        let partitions: Vec<PartitionUsage> = parts
            .into_iter()
            .map(|(start_ns, dir, blocks, newest_ns)| PartitionUsage {
                start_ns,
                bytes: dir_bytes(&dir),
                blocks,
                newest_ns: (newest_ns != i64::MIN).then_some(newest_ns),
            })
            .collect();
        DiskUsage {
            bytes: partitions.iter().map(|p| p.bytes).sum(),
            partitions,
        }
    }
}

/// Partitions on disk, oldest first.
pub struct DiskUsage {
    pub bytes: u64,
    pub partitions: Vec<PartitionUsage>,
}

pub struct PartitionUsage {
    pub start_ns: i64,
    pub bytes: u64,
    pub blocks: u64,
    pub newest_ns: Option<i64>,
}

/// Bytes of the files under `dir` (one level of subfolders: the index).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

impl Inner {
    fn remove_partition(&mut self, start: i64) -> Option<PartitionView> {
        let view = self.partitions.remove(&start)?;
        for (id, t) in &view.totals {
            if let Some(e) = self.sources.get_mut(id) {
                e.totals.lines = e.totals.lines.saturating_sub(t.lines);
                e.totals.bytes = e.totals.bytes.saturating_sub(t.bytes);
            }
        }
        self.sources
            .retain(|_, e| e.totals.lines > 0 || e.open.is_some());
        Some(view)
    }
}

impl SourceEntry {
    fn new(source: Arc<Source>) -> Self {
        SourceEntry {
            job: source.job_key(),
            source,
            totals: Totals::default(),
            end: 0,
            open: None,
        }
    }

    fn seal(&mut self) -> Option<Arc<SealedBlock>> {
        let mut open = self.open.take()?;
        // It grew by doubling; it waits for the committer at its real size
        // (a snapshot still holding it keeps its own, grown, copy).
        Arc::make_mut(&mut open.lines).shrink_to_fit();
        Some(Arc::new(SealedBlock {
            source: self.source.clone(),
            lines: open.lines,
            first_seq: open.first_seq,
        }))
    }
}
