//! [`SplitSet`]: the one owner of the splits' lives, on the committer's
//! thread. It builds splits on the local disk, one per window of line
//! time (`storage.partition_secs`) at a time; seals one when it is old or
//! big enough (or on a flush, or when the WAL is over its budget);
//! publishes it (staged in the metastore, its files uploaded, then one
//! metastore commit that makes it visible and moves its sources'
//! published ends: on a thread of its own, one split at a time, so that
//! commits go on meanwhile); and retires and deletes splits for
//! retention. The store only shows readers what is registered with it.
//!
//! ```text
//! <data_dir>/building/<split id>/     being built, or sealed and waiting for its upload
//! <bucket>/splits/<split id>/...      published: the same files, never changed again
//! <data_dir>/cache/splits/<split id>/ a remote store's split: its index and sources.json
//! ```
//!
//! On the local store a published split is read in place. On a remote one
//! its index (one segment: a few files) and `sources.json` are kept here
//! whole, in the disk cache (`cache/`, `cache.max_bytes`, least recently
//! used out first: `disk_cache.rs`): the local copy of a split this node
//! built is moved there when it is published, and one that is not there
//! (evicted, or a new or wiped node) is downloaded when a reader needs
//! it. Its blocks are read with ranged GETs, through the read caches in
//! memory and the disk cache (`published.rs`, `disk_cache.rs`).
//!
//! A split found in `building/` at start (a crash, or a stop before its
//! upload) is sealed and published like any other; today's older layout,
//! `partitions/p-<secs>/`, is moved there once and published the same way.
//! The WAL keeps every line of a split until the split is published
//! ([`SplitSet::unpublished_seq`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::time::now_ns;

use super::convert::convert_partitions;
use super::disk_cache::{dir_bytes, CachedSplit, DiskCache, SplitHandle};
use super::merge::{plan, MergeGroup, MergeJob, Merged, Merger, PublishedSplit};
use super::published::{split_key, upload_split, PublishError};
use super::publishing::Publishing;
use super::store::Store;
use crate::bucket::Bucket;
use crate::config::{Config, StorageConfig};
use crate::index::{
    split_window, Access, MergeOptions, Partition, PartitionError, PartitionWriter,
};
use crate::metastore::{Change, Metastore, SourceAdvance, SplitEntry, SplitState};

/// How long a split's writer may sit idle before it is closed.
const WRITER_IDLE: Duration = Duration::from_secs(300);
/// How often abandoned staged splits are looked for (at most; more often
/// when `storage.abandoned_split_secs` is shorter).
const STAGED_CHECK: Duration = Duration::from_secs(60);
/// After a failed publish the next try waits this long, doubled after
/// each failure up to [`PUBLISH_BACKOFF_MAX`]: a store that is down is
/// not asked every commit round.
const PUBLISH_BACKOFF: Duration = Duration::from_secs(1);
const PUBLISH_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A split being written to.
struct Building {
    part: Arc<Partition>,
    /// `None` after a failure, or when idle: made again from what is committed.
    writer: Option<PartitionWriter>,
    created: Instant,
    used: Instant,
    /// The oldest WAL record with a line in it (0: unknown, found at start).
    min_seq: u64,
}

/// A split whose writing is finished, waiting for its upload.
struct Sealed {
    part: Arc<Partition>,
    min_seq: u64,
    created: Instant,
}

pub struct SplitSet {
    building_root: PathBuf,
    /// A remote store's published split indexes.
    cache: Arc<DiskCache>,
    bucket: Arc<Bucket>,
    metastore: Arc<Metastore>,
    config: StorageConfig,
    /// By window start.
    building: HashMap<i64, Building>,
    /// Oldest first.
    sealed: Vec<Sealed>,
    /// Retired splits whose objects are deleted at the instant given.
    retired: Vec<(String, Instant)>,
    /// How long a retired split's objects stay: the longest search that
    /// could still be reading them.
    retired_grace: Duration,
    /// When abandoned staged splits were last looked for.
    staged_checked: Option<Instant>,
    /// After a failed publish: when to try again, and the wait after that.
    retry: Option<(Instant, Duration)>,
    /// The upload of the oldest sealed split, on a thread of its own, so
    /// that the committer goes on committing meanwhile (ingest would
    /// otherwise wait for the upload, the room for lines being full).
    uploading: Option<Upload>,
    /// What the API shows of publishing.
    status: Arc<Publishing>,
    /// The published splits, with what retention's bucket budget and the
    /// merge policy need.
    in_bucket: HashMap<String, PublishedSplit>,
    /// Background merges of published splits.
    merger: Merger,
}

/// An upload running on its thread: the split's id, its sources' ends as
/// of its sealing, and what the thread answers.
struct Upload {
    id: String,
    ends: Vec<SourceAdvance>,
    thread: std::thread::JoinHandle<Result<SplitEntry, PublishError>>,
}

/// What an upload needs, apart from the set (it runs on another thread).
struct Uploader {
    bucket: Arc<Bucket>,
    metastore: Arc<Metastore>,
    writer_bytes: usize,
}

impl Uploader {
    /// Stages the split, finishes its index, uploads its files and
    /// publishes it with its sources' `ends` in one metastore commit.
    fn upload(
        &self,
        part: &Arc<Partition>,
        ends: &[SourceAdvance],
    ) -> Result<SplitEntry, PublishError> {
        self.metastore.commit(vec![Change::Staged {
            split: part.id.clone(),
            at_ns: now_ns(),
        }])?;
        // Its last writer (if any) was dropped at sealing: a fresh one
        // merges what is committed into one segment.
        part.writer(self.writer_bytes)?.finish()?;
        let entry = upload_split(&self.bucket, part)?;
        self.metastore.commit(vec![Change::Publish {
            split: entry.clone(),
            sources: ends.to_vec(),
        }])?;
        Ok(entry)
    }
}

impl SplitSet {
    /// Opens every split: the published ones the metastore lists (read in
    /// place from the local store; from a remote one, through the disk
    /// cache when a reader needs them), and those found in `building/`
    /// (sealed, to be published). Returns the set and the splits for the
    /// store to show, each with whether it is published.
    #[allow(clippy::type_complexity)]
    pub fn open(
        data_dir: &Path,
        bucket: Arc<Bucket>,
        metastore: Arc<Metastore>,
        settings: &Config,
        retired_grace: Duration,
        status: Arc<Publishing>,
    ) -> Result<(SplitSet, Vec<(SplitHandle, bool)>), PublishError> {
        let building_root = data_dir.join("building");
        let cache_root = data_dir.join("cache").join("splits");
        let io = |dir: &Path, source| PartitionError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(&building_root).map_err(|e| io(&building_root, e))?;
        convert_partitions(&data_dir.join("partitions"), &building_root)?;
        let mut shown = Vec::new();
        let mut retired = Vec::new();
        let mut in_bucket = HashMap::new();
        let splits = metastore.state().splits;
        let published = |id: &str| matches!(splits.get(id), Some(SplitState::Published { .. }));
        let cache = Arc::new(DiskCache::open(
            &cache_root,
            settings.cache.max_bytes,
            bucket.clone(),
            !bucket.is_local(),
            &published,
        )?);
        for (id, state) in splits.clone() {
            // Ids name folders here: one cblogsd did not make (a damaged
            // or foreign metastore) is not followed.
            if split_window(&id).is_none() {
                tracing::error!(split = %id, "the metastore lists a split whose id is not one cblogsd makes; it is left alone");
                continue;
            }
            match state {
                SplitState::Published { entry } => {
                    in_bucket.insert(entry.id.clone(), PublishedSplit::of(&entry));
                    shown.push((open_published(&bucket, &cache, &entry)?, true));
                }
                SplitState::Retired { .. } => retired.push((id, Instant::now() + retired_grace)),
                SplitState::Staged { .. } => {}
            }
        }
        let mut sealed = Vec::new();
        let mut found: Vec<(String, i64)> = std::fs::read_dir(&building_root)
            .map_err(|e| io(&building_root, e))?
            .flatten()
            .filter_map(|e| {
                let id = e.file_name().to_str()?.to_owned();
                split_window(&id).map(|w| (id, w))
            })
            .collect();
        found.sort();
        for (id, window) in found {
            let dir = building_root.join(&id);
            if matches!(
                splits.get(&id),
                Some(SplitState::Published { .. } | SplitState::Retired { .. })
            ) {
                // Published just before a stop or crash, before its local
                // copy was deleted: the object store's copy is the one.
                std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
                continue;
            }
            let part = Arc::new(Partition::open(&dir, id, window, Access::Building)?);
            shown.push((SplitHandle::Open(part.clone()), false));
            sealed.push(Sealed {
                part,
                min_seq: 0,
                created: Instant::now(),
            });
        }
        let merger = Merger::open(data_dir, settings.merge.clone())?;
        let set = SplitSet {
            building_root,
            cache,
            bucket,
            metastore,
            config: settings.storage.clone(),
            building: HashMap::new(),
            sealed,
            retired,
            retired_grace,
            staged_checked: None,
            retry: None,
            uploading: None,
            status,
            in_bucket,
            merger,
        };
        set.show_bucket_bytes();
        Ok((set, shown))
    }

    /// The disk cache of a remote store's split indexes.
    pub fn cache(&self) -> Arc<DiskCache> {
        self.cache.clone()
    }

    /// The window a block whose first line is at `t_min` belongs to.
    pub(super) fn window_of(&self, t_min: i64) -> i64 {
        let width = self.config.partition_ns();
        t_min.div_euclid(width) * width
    }

    /// The writer of the split being built for `t_min`'s window (made,
    /// and shown to readers empty, on first use); `seq` is the WAL record
    /// of the block about to be added.
    pub(super) fn writer_for(
        &mut self,
        store: &Store,
        t_min: i64,
        seq: u64,
    ) -> Result<(String, &mut PartitionWriter), PartitionError> {
        let window = self.window_of(t_min);
        if !self.building.contains_key(&window) {
            let part = Arc::new(Partition::create(&self.building_root, window)?);
            store.add_partition(part.clone());
            let now = Instant::now();
            self.building.insert(
                window,
                Building {
                    part,
                    writer: None,
                    created: now,
                    used: now,
                    min_seq: seq,
                },
            );
        }
        let b = self
            .building
            .get_mut(&window)
            .expect("a split is inserted above");
        if b.writer.is_none() {
            b.writer = Some(b.part.writer(self.config.index_writer_bytes)?);
        }
        b.used = Instant::now();
        b.min_seq = b.min_seq.min(seq);
        let id = b.part.id.clone();
        Ok((id, b.writer.as_mut().expect("made above")))
    }

    /// The writer of split `id`, if it is being built and has one open.
    pub(super) fn writer(&mut self, id: &str) -> Option<&mut PartitionWriter> {
        self.building
            .values_mut()
            .find(|b| b.part.id == id)
            .and_then(|b| b.writer.as_mut())
    }

    /// Drops the writer of the split being built for `t_min`'s window.
    pub(super) fn drop_window_writer(&mut self, t_min: i64) {
        let window = self.window_of(t_min);
        if let Some(b) = self.building.get_mut(&window) {
            b.writer = None;
        }
    }

    /// Drops the writer of split `id`: after a failure it is not trusted
    /// again (tantivy's writer may have lost a worker thread), and a fresh
    /// one starts from what is committed.
    pub(super) fn drop_writer(&mut self, id: &str) {
        if let Some(b) = self.building.values_mut().find(|b| b.part.id == id) {
            b.writer = None;
        }
    }

    /// Closes the writers nobody used for a while.
    pub(super) fn close_idle(&mut self) {
        for b in self.building.values_mut() {
            if b.used.elapsed() >= WRITER_IDLE {
                b.writer = None;
            }
        }
    }

    /// The oldest WAL record a split not yet published holds a line of:
    /// the WAL is kept from there (`u64::MAX`: none).
    pub(super) fn unpublished_seq(&self) -> u64 {
        let building = self.building.values().map(|b| b.min_seq);
        let sealed = self.sealed.iter().map(|s| s.min_seq);
        building.chain(sealed).min().unwrap_or(u64::MAX)
    }

    /// Seals the splits being built that are due: old enough
    /// (`split_max_age_secs`), big enough (`split_max_bytes`), all of them
    /// when `all` (a flush, a stop), and, when the WAL is over its budget
    /// and no sealed split waits for its upload, those holding a record
    /// below `pinned`.
    ///
    /// `pinned` is where the WAL falls to half its budget
    /// (`WalFiles::over_budget`), not the end of its oldest segment: were
    /// only that segment freed, the WAL would stay at its budget, and each
    /// later split would be sealed one segment's worth of lines after it
    /// began (measured at 2 GiB: 7 splits, 4 of them of 11-14 MB, where 3
    /// do). While a sealed split waits (its upload runs, or the store is
    /// down), the WAL is held by it: sealing more would only make small
    /// splits. A split made after the WAL was cut holds only records above
    /// `pinned`, so a WAL that stays over its budget (a failed trim) does
    /// not seal a split per round either.
    pub(super) fn seal_due(&mut self, all: bool, pinned: Option<u64>) {
        let max_age = Duration::from_secs(self.config.split_max_age_secs);
        let max_bytes = self.config.split_max_bytes;
        let wal_below = pinned.filter(|_| self.sealed.is_empty());
        let due: Vec<(i64, &'static str)> = self
            .building
            .iter()
            .filter_map(|(w, b)| {
                let why = if all {
                    "a flush or a stop"
                } else if b.part.blocks_len() >= max_bytes {
                    "storage.split_max_bytes"
                } else if b.created.elapsed() >= max_age {
                    "storage.split_max_age_secs"
                } else if wal_below.is_some_and(|seq| b.min_seq < seq) {
                    "storage.wal_max_bytes"
                } else {
                    return None;
                };
                Some((*w, why))
            })
            .collect();
        for (window, why) in due {
            let Some(b) = self.building.remove(&window) else {
                continue;
            };
            tracing::info!(split = %b.part.id, bytes = b.part.blocks_len(), reason = why, "split sealed");
            self.sealed.push(Sealed {
                part: b.part,
                min_seq: b.min_seq,
                created: b.created,
            });
        }
    }

    /// Publishes the sealed splits, oldest first, until one fails (it
    /// and the rest are tried again after a backoff; `now` tries at once,
    /// a flush). Returns how many were published.
    pub(super) fn publish(&mut self, store: &Store, now: bool) -> usize {
        let done = self.publish_sealed(store, now);
        let building = self.building.values().map(|b| b.created);
        let sealed = self.sealed.iter().map(|s| s.created);
        self.status
            .set_oldest_unpublished(building.chain(sealed).min());
        done
    }

    /// Publishes the sealed splits in order. The oldest one's upload runs
    /// on a thread; each call takes it up when it is done (a flush, `now`,
    /// waits for it) and shows it, then starts the next one's.
    fn publish_sealed(&mut self, store: &Store, now: bool) -> usize {
        let mut done = 0;
        while let Some(first) = self.sealed.first() {
            let part = first.part.clone();
            let (entry, ends) = match self.uploading.take() {
                Some(up) if up.thread.is_finished() || now => {
                    let entry = up.thread.join().unwrap_or_else(|_| {
                        Err(PublishError::Split(part.io_error(std::io::Error::other(
                            "the upload thread panicked",
                        ))))
                    });
                    debug_assert_eq!(up.id, part.id);
                    (entry, up.ends)
                }
                Some(up) => {
                    self.uploading = Some(up);
                    break;
                }
                None => {
                    if !now && self.retry.is_some_and(|(at, _)| Instant::now() < at) {
                        break;
                    }
                    let ends = store.ends_once_published(&part.id);
                    // A split the metastore has published already (an
                    // earlier try failed after that commit) is only shown.
                    if let Some(SplitState::Published { entry }) = self.metastore.split(&part.id) {
                        (Ok(entry), ends)
                    } else {
                        match self.start_upload(&part, ends) {
                            Ok(()) => continue,
                            Err(e) => (Err(e), Vec::new()),
                        }
                    }
                }
            };
            match entry.and_then(|entry| self.show_published(store, &part, entry, &ends)) {
                Ok(entry) => {
                    self.in_bucket
                        .insert(entry.id.clone(), PublishedSplit::of(&entry));
                    self.show_bucket_bytes();
                    self.sealed.remove(0);
                    self.retry = None;
                    self.status.published();
                    done += 1;
                }
                Err(e) => {
                    let wait = self
                        .retry
                        .map_or(PUBLISH_BACKOFF, |(_, w)| (w * 2).min(PUBLISH_BACKOFF_MAX));
                    self.retry = Some((Instant::now() + wait, wait));
                    self.status.failed(e.to_string());
                    tracing::error!(split = %part.id, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot publish a split; it stays on the local disk, in the WAL, and readable, and is tried again");
                    break;
                }
            }
        }
        done
    }

    /// Starts `part`'s upload on a thread of its own.
    fn start_upload(
        &mut self,
        part: &Arc<Partition>,
        ends: Vec<SourceAdvance>,
    ) -> Result<(), PublishError> {
        let uploader = Uploader {
            bucket: self.bucket.clone(),
            metastore: self.metastore.clone(),
            writer_bytes: self.config.index_writer_bytes,
        };
        let (split, sources) = (part.clone(), ends.clone());
        let thread = std::thread::Builder::new()
            .name("split-upload".into())
            .spawn(move || uploader.upload(&split, &sources))
            .map_err(|e| PublishError::Split(part.io_error(e)))?;
        self.uploading = Some(Upload {
            id: part.id.clone(),
            ends,
            thread,
        });
        Ok(())
    }

    /// After its publish: the split is shown to readers as published (the
    /// store's copy replaces the local one) and its local folder goes.
    fn show_published(
        &self,
        store: &Store,
        part: &Arc<Partition>,
        entry: SplitEntry,
        ends: &[SourceAdvance],
    ) -> Result<SplitEntry, PublishError> {
        let folder = split_key(&part.id);
        if self.bucket.local_path(&folder).is_none() {
            self.cache.adopt(part)?;
        }
        let published = open_published(&self.bucket, &self.cache, &entry)?;
        store.published(&part.id, published, ends);
        if let Err(e) = std::fs::remove_dir_all(part.dir()) {
            tracing::warn!(dir = %part.dir().display(), error = %e, "a published split's local copy could not be deleted");
        }
        tracing::info!(split = %part.id, bytes = entry.bytes(), "split published");
        Ok(entry)
    }

    /// Takes published splits from readers for retention (one metastore
    /// commit); their objects are deleted once no running search can
    /// still read them. Returns the splits retired, with their folder
    /// and bytes.
    pub(super) fn retire(
        &mut self,
        store: &Store,
        ids: &[String],
        reason: &str,
    ) -> Result<Vec<(SplitHandle, u64)>, PublishError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.metastore.commit(vec![Change::Retire {
            splits: ids.to_vec(),
            at_ns: now_ns(),
            reason: reason.to_owned(),
        }])?;
        let at = Instant::now() + self.retired_grace;
        let mut retired = Vec::new();
        for id in ids {
            // Its size in the store (a cached split's folder here holds
            // only its index, or nothing).
            let in_bucket = self.in_bucket.remove(id).map(|b| b.bytes);
            self.retired.push((id.clone(), at));
            if let Some(split) = store.remove_partition(id) {
                let bytes = in_bucket.unwrap_or_else(|| dir_bytes(&split.dir()));
                retired.push((split, bytes));
            }
        }
        self.show_bucket_bytes();
        Ok(retired)
    }

    fn show_bucket_bytes(&self) {
        let bytes = self.in_bucket.values().map(|b| b.bytes).sum();
        self.status.set_bucket_bytes(bytes);
    }

    /// The published splits to retire, oldest first, for the rest to fit
    /// in `budget` bytes of the object store; never the newest one.
    pub(super) fn over_bucket_budget(&self, budget: u64) -> Vec<String> {
        let mut by_age: Vec<(&String, &PublishedSplit)> = self.in_bucket.iter().collect();
        by_age.sort_by_key(|(id, b)| (b.window_ns, b.t_max, *id));
        let mut total: u64 = by_age.iter().map(|(_, b)| b.bytes).sum();
        let mut over = Vec::new();
        for (id, b) in by_age.iter().take(by_age.len().saturating_sub(1)) {
            if total <= budget {
                break;
            }
            over.push((*id).clone());
            total = total.saturating_sub(b.bytes);
        }
        over
    }

    /// Deletes the objects of retired splits whose grace has passed, then
    /// forgets them in the metastore.
    pub(super) fn delete_retired(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|(_, at)| *at <= now);
        self.retired = later;
        let mut gone = Vec::new();
        for (id, at) in due {
            match self.delete_objects(&id) {
                Ok(()) => gone.push(id),
                Err(e) => {
                    tracing::warn!(split = %id, error = %e, "cannot delete a retired split's objects; tried again");
                    self.retired.push((id, at));
                }
            }
        }
        if !gone.is_empty() {
            if let Err(e) = self.metastore.commit(vec![Change::Forget { splits: gone }]) {
                tracing::warn!(error = %e, "cannot forget deleted splits in the metastore");
            }
        }
    }

    /// Deletes the objects of splits staged more than
    /// `storage.abandoned_split_secs`
    /// ago that are neither published nor held here, and forgets them.
    /// Every object a split has is written after its staging, so this
    /// leaves no orphan behind a crash.
    pub(super) fn delete_abandoned(&mut self) {
        let grace = Duration::from_secs(self.config.abandoned_split_secs);
        if self
            .staged_checked
            .is_some_and(|t| t.elapsed() < STAGED_CHECK.min(grace))
        {
            return;
        }
        self.staged_checked = Some(Instant::now());
        let grace_ns = i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
        let before = now_ns().saturating_sub(grace_ns);
        let ours = |id: &str| {
            self.sealed.iter().any(|s| s.part.id == id)
                || self.building.values().any(|b| b.part.id == id)
                || self.merger.is_output(id)
        };
        let abandoned: Vec<String> = self
            .metastore
            .state()
            .splits
            .into_iter()
            .filter(|(id, state)| {
                matches!(state, SplitState::Staged { at_ns } if *at_ns < before)
                    && !ours(id)
                    && split_window(id).is_some()
            })
            .map(|(id, _)| id)
            .collect();
        let mut gone = Vec::new();
        for id in abandoned {
            match self.delete_objects(&id) {
                Ok(()) => gone.push(id),
                Err(e) => {
                    tracing::warn!(split = %id, error = %e, "cannot delete an abandoned split's objects; tried again")
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        tracing::info!(splits = gone.len(), "abandoned staged splits deleted");
        if let Err(e) = self.metastore.commit(vec![Change::Forget { splits: gone }]) {
            tracing::warn!(error = %e, "cannot forget abandoned splits in the metastore");
        }
    }

    /// Takes up a merge that ended, and starts the next one due
    /// (`store/merge/`): one at a time, on a thread of its own.
    pub(super) fn merge(&mut self, store: &Store) {
        match self.merger.finished() {
            Some(Ok(merged)) => self.show_merged(store, merged),
            Some(Err(e)) => {
                tracing::error!(error = %e, "merge failed; its inputs stay as they are, and merges are tried again in 30 s");
                self.status.merge_failed(e.to_string());
            }
            None => {}
        }
        let due = self.merges_due();
        let starts = self.merger.may_start() && !due.is_empty();
        self.status.set_merges_pending(
            (due.len() - usize::from(starts)) as u64,
            starts || self.merger.is_running(),
        );
        if !starts {
            return;
        }
        let Some(group) = due.into_iter().next() else {
            return;
        };
        let Some(handles) = store.published_handles(&group) else {
            return;
        };
        let splits: Vec<&PublishedSplit> = group
            .iter()
            .filter_map(|id| self.in_bucket.get(id))
            .collect();
        let (Some(first), Some(level)) = (splits.first(), splits.iter().map(|s| s.level).max())
        else {
            return;
        };
        let config = self.merger.config();
        let job = MergeJob {
            inputs: group.iter().cloned().zip(handles).collect(),
            level,
            window_ns: first.window_ns,
            bucket: self.bucket.clone(),
            metastore: self.metastore.clone(),
            root: self.merger.root().to_owned(),
            options: MergeOptions {
                block_bytes: config.block_bytes,
                zstd_level: config.zstd_level,
                writer_bytes: self.config.index_writer_bytes,
            },
            nice: config.nice,
            stop: Default::default(),
        };
        if let Err(e) = self.merger.start(job) {
            tracing::error!(error = %e, "cannot start a merge");
            self.status.merge_failed(e.to_string());
        }
    }

    /// The merges the policy would start now, the running one's inputs
    /// left out. Windows settle by line time: the newest line published
    /// (a benchmark posting a past day in minutes settles its windows as
    /// the day would), but never past the clock (a line dated in the
    /// future would settle every window).
    fn merges_due(&self) -> Vec<MergeGroup> {
        if !self.merger.config().enabled {
            return Vec::new();
        }
        let splits: Vec<&PublishedSplit> = self
            .in_bucket
            .values()
            .filter(|s| !self.merger.is_input(&s.id))
            .collect();
        let newest = splits.iter().map(|s| s.t_max).max().unwrap_or(i64::MIN);
        plan(&splits, self.merger.config(), newest.min(now_ns()))
    }

    /// A merge was published: readers are shown its output in place of its
    /// inputs, whose objects are deleted once no running search can still
    /// read them.
    fn show_merged(&mut self, store: &Store, merged: Merged) {
        let Merged {
            entry,
            part,
            inputs,
            counts,
            seconds,
        } = merged;
        let remote = self.bucket.local_path(&split_key(&entry.id)).is_none();
        let shown = if remote {
            self.cache.adopt(&part).map_err(PublishError::from)
        } else {
            Ok(())
        }
        .and_then(|()| open_published(&self.bucket, &self.cache, &entry));
        if let Err(e) = std::fs::remove_dir_all(part.dir()) {
            tracing::warn!(dir = %part.dir().display(), error = %e, "a merged split's local copy could not be deleted");
        }
        let handle = match shown {
            Ok(handle) => handle,
            Err(e) => {
                // Published, and its inputs retired, in the metastore: the
                // inputs stay shown (and kept) here until the next start.
                tracing::error!(split = %entry.id, error = %e, "a merged split is published but cannot be opened; its inputs are read instead until cblogsd restarts");
                self.status.merge_failed(e.to_string());
                return;
            }
        };
        store.merged(&inputs, handle);
        let at = Instant::now() + self.retired_grace;
        for id in &inputs {
            self.in_bucket.remove(id);
            self.retired.push((id.clone(), at));
        }
        self.in_bucket
            .insert(entry.id.clone(), PublishedSplit::of(&entry));
        self.show_bucket_bytes();
        self.status.merged(&counts, seconds);
        tracing::info!(
            split = %entry.id,
            inputs = inputs.len(),
            level = entry.level,
            blocks_in = counts.blocks_in,
            blocks_out = counts.blocks_out,
            bytes_in = counts.bytes_in,
            bytes_out = counts.bytes_out,
            seconds,
            "splits merged"
        );
    }

    /// Stops a running merge (cblogsd is stopping): what it wrote is deleted.
    pub(super) fn stop_merging(&mut self) {
        self.merger.stop();
    }

    fn delete_objects(&self, id: &str) -> Result<(), crate::bucket::BucketError> {
        for key in self.bucket.list(&split_key(id), None)? {
            self.bucket.delete(&key)?;
        }
        self.cache.forget(id);
        Ok(())
    }
}

/// A published split as readers see it: opened in place on the local
/// store; on a remote one, its index in the disk cache (downloaded when a
/// reader needs it and it is not there).
fn open_published(
    bucket: &Bucket,
    cache: &Arc<DiskCache>,
    entry: &SplitEntry,
) -> Result<SplitHandle, PublishError> {
    if let Some(dir) = bucket.local_path(&split_key(&entry.id)) {
        let part = Partition::open(&dir, entry.id.clone(), entry.window_ns, Access::ReadOnly)?;
        return Ok(SplitHandle::Open(Arc::new(part)));
    }
    Ok(SplitHandle::Cached(Arc::new(CachedSplit::new(
        entry.clone(),
        cache.clone(),
    ))))
}
