//! [`SplitSet`]: the one owner of the splits' lives, on the committer's
//! thread. It builds splits on the local disk, one per window of line
//! time (`storage.partition_secs`) at a time; seals one when it is old or
//! big enough (or on a flush, or when the WAL is over its budget);
//! publishes it (staged in the metastore, its files uploaded, then one
//! metastore commit that makes it visible and moves its sources'
//! published ends: on a thread of its own, one split at a time, so that
//! commits go on meanwhile); merges published splits; and retires and
//! deletes splits for retention and merges. The store only shows readers
//! what is registered with it.
//!
//! ```text
//! mod.rs      SplitSet: open, build, seal (and what the WAL needs kept)
//! publish.rs  upload and publish the sealed splits, oldest first
//! merging.rs  take up and start background merges (store/merge/)
//! retire.rs   retire, delete once unread, sweep abandoned staged splits
//! fence.rs    in a cluster: drop what is held unpublished of sources another node took
//! follow.rs   in a cluster: show readers what the other nodes publish, merge and retire
//! ```
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

use super::convert::convert_partitions;
use super::disk_cache::{CachedSplit, DiskCache, SplitHandle};
use super::merge::{Merger, PublishedSplit};
use super::published::{split_key, PublishError};
use super::publishing::Publishing;
use super::store::Store;
use crate::bucket::Bucket;
use crate::cluster::Ownerships;
use crate::config::{Config, StorageConfig};
use crate::index::{split_window, Access, Partition, PartitionError, PartitionWriter};
use crate::metastore::{Metastore, SplitEntry, SplitState};
use publish::Upload;
use retire::Retired;

mod fence;
mod follow;
mod merging;
mod publish;
mod retire;

/// How long a split's writer may sit idle before it is closed.
const WRITER_IDLE: Duration = Duration::from_secs(300);

/// A split being written to.
struct Building {
    part: Arc<Partition>,
    /// `None` after a failure, or when idle: made again from what is committed.
    writer: Option<PartitionWriter>,
    created: Instant,
    used: Instant,
    /// The oldest WAL record with a line in it (0: unknown, found at start).
    min_seq: u64,
    /// The line clock ([`SplitSet::line_clock`]) when it took its first
    /// block: a split is sealed by line time as well as by the clock.
    opened_at_line: i64,
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
    retired: Vec<Retired>,
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
    /// The newest line time of any block added to a split, never past the
    /// clock (`i64::MIN` before the first): the clock by which splits are
    /// sealed at `split_max_age_secs` of line time. Not the span of a
    /// split's own lines: a shipper catching up on an old backlog beside
    /// live sources would then make every split span hours, and a split
    /// would be sealed each commit round (a benchmark that posts files of
    /// unequal size side by side did just that: 190 splits for 8 GiB).
    line_clock: i64,
    /// In a cluster: the sources this node holds, and under which epoch
    /// (`cluster/ownership.rs`); `None` for a node alone.
    ownerships: Option<Arc<Ownerships>>,
    /// In a cluster: the metastore version whose changes by other nodes
    /// readers here are shown (`follow.rs`).
    followed: u64,
}

impl SplitSet {
    /// The metastore version whose changes by other nodes readers are
    /// shown (in a cluster; the version at the start otherwise).
    pub fn followed(&self) -> u64 {
        self.followed
    }

    /// In a cluster: publish each source under the epoch this node holds
    /// it at, and drop what it holds of those another node takes.
    pub fn set_ownerships(&mut self, ownerships: Arc<Ownerships>) {
        self.ownerships = Some(ownerships);
        self.metastore.keep_recent();
    }

    /// In a cluster: reads what other nodes committed to the metastore;
    /// drops what this node holds unpublished of the sources another
    /// node has taken since (`fence.rs`), and shows readers what the
    /// others published, merged and retired (`follow.rs`).
    pub(in crate::store) fn follow_metastore(&mut self, store: &Store) {
        let Some(own) = self.ownerships.clone() else {
            return;
        };
        if let Err(e) = self.metastore.refresh() {
            tracing::warn!(error = %e, "cannot read the metastore to follow the other nodes; tried again next round");
            return;
        }
        let lost = own.lost();
        self.fence(store, &lost);
        self.follow_published(store);
    }

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
        // Read before the splits: a version between the two is shown
        // once (a split already shown is not shown again).
        let followed = metastore.version();
        let splits = metastore.splits();
        let published = |id: &str| matches!(splits.get(id), Some(SplitState::Published { .. }));
        let cache = Arc::new(DiskCache::open(
            &cache_root,
            settings.cache.max_bytes,
            bucket.clone(),
            !bucket.is_local(),
            &published,
        )?);
        for (id, state) in &splits {
            // Ids name folders here: one cblogsd did not make (a damaged
            // or foreign metastore) is not followed.
            if split_window(id).is_none() {
                tracing::error!(split = %id, "the metastore lists a split whose id is not one cblogsd makes; it is left alone");
                continue;
            }
            match state {
                SplitState::Published { entry } => {
                    in_bucket.insert(entry.id.clone(), PublishedSplit::of(entry));
                    shown.push((open_published(&bucket, &cache, entry)?, true));
                }
                SplitState::Retired { .. } => retired.push(Retired {
                    id: id.clone(),
                    at: Instant::now() + retired_grace,
                    held: None,
                }),
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
            line_clock: i64::MIN,
            ownerships: None,
            followed,
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

    /// The writer of the split being built for the window of `t_min`, the
    /// first line time of the block about to be added (made, and shown to
    /// readers empty, on first use); `t_max` is the block's last line time
    /// and `seq` its WAL record.
    pub(super) fn writer_for(
        &mut self,
        store: &Store,
        (t_min, t_max): (i64, i64),
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
                    // The clock before this block; its own first line if
                    // there is none yet (the first block since the start).
                    opened_at_line: if self.line_clock == i64::MIN {
                        t_min
                    } else {
                        self.line_clock
                    },
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
        // Never past the clock: a line dated in the future (an agent's
        // clock far off) would otherwise seal every split being built.
        self.line_clock = self.line_clock.max(t_max.min(cblogs_core::time::now_ns()));
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
    /// (`split_max_age_secs` of the clock, or of line time between their
    /// blocks), big enough (`split_max_bytes`), all of them
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
        let max_age_ns = self.config.split_max_age_ns();
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
                } else if self.line_clock.saturating_sub(b.opened_at_line) >= max_age_ns {
                    "storage.split_max_age_secs of line time"
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

    fn show_bucket_bytes(&self) {
        let bytes = self.in_bucket.values().map(|b| b.bytes).sum();
        self.status.set_bucket_bytes(bytes);
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
