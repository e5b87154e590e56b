//! The disk cache of split indexes (`cache.max_bytes`): on a remote
//! object store, each published split's index and `sources.json` are kept
//! in `<data_dir>/cache/splits/<split id>/`, and the least recently used
//! go first when they hold more than the budget. An evicted split stays
//! published; its index is downloaded again (one GET of `index.bundle`)
//! the next time a reader needs it.
//!
//! Readers see a split as a [`SplitHandle`]: open (being built here, or
//! published on the local store and read in place), or [`CachedSplit`],
//! whose index is opened only when a reader needs it ([`DiskCache::pin`]).
//! The reader holds the index through an [`IndexPin`] while it plans or
//! reads that split, and no longer (a search keeps only the split's
//! blocks, [`crate::index::SplitBlocks`], which are read by ranged GET and
//! need no file here). The cache keeps each split's opened index while it
//! is on disk; a split is evicted only when the cache holds the only
//! reference to it (no pin), so tantivy's mmaps are never pulled from
//! under a search. While pins hold more than the budget the cache stays
//! over it, and trims as soon as they are dropped.
//!
//! Bytes are accounted before they are written: a download first reserves
//! the split's index size (its metastore entry gives it exactly), making
//! room by evicting, so the files here never exceed the budget because of
//! a download that unpinned entries could have made room for.
//!
//! Blocks read by ranged GET are kept here too, within the same budget
//! and the same least-recently-used order: each block's compressed bytes
//! as one file, `<data_dir>/cache/blocks/<split id>/<offset>`
//! ([`DiskCache::read_block`]). The in-memory block cache
//! (`search.block_cache_bytes`) keeps decoded blocks in front of it; this
//! one holds what does not fit there, so a search read twice does not GET
//! its blocks twice. A block file is written whole before it is counted
//! (a temporary name, then a rename), and read back only at its exact
//! length; one evicted while it is read is fetched again. The block files
//! start empty at each start of cblogsd (deleted, not scanned).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use cblogs_core::api::CacheSummary;
use cblogs_core::Source;
use tantivy::Searcher;

use super::published::{download_index, split_key, PublishError};
use crate::bucket::Bucket;
use crate::index::{new_uid, Partition, PartitionError, RangeRead, SourceTotals};
use crate::metastore::SplitEntry;
use crate::metrics::{emit, SplitCacheEvicted, SplitCacheUsed};

/// Hits over all uses (0 before the first).
fn hit_rate(hits: u64, misses: u64) -> f64 {
    let uses = hits + misses;
    if uses == 0 {
        0.0
    } else {
        hits as f64 / uses as f64
    }
}

/// How a block's slot is named among the splits' (a split id never starts so).
const BLOCK_SLOT: &str = "blocks/";

pub struct DiskCache {
    /// `<data_dir>/cache/splits`.
    root: PathBuf,
    /// `<data_dir>/cache/blocks`.
    blocks_root: PathBuf,
    max_bytes: u64,
    bucket: Arc<Bucket>,
    state: Mutex<State>,
    /// Signalled when a download ends (readers of the same split wait).
    downloaded: Condvar,
}

#[derive(Default)]
struct State {
    slots: Slots,
    bytes: u64,
    peak: u64,
    /// Bumped at every use: a slot's `used` orders the evictions.
    clock: u64,
    hits: u64,
    misses: u64,
    evictions: u64,
    blocks: u64,
    block_bytes: u64,
    block_hits: u64,
    block_misses: u64,
    block_evictions: u64,
}

struct Slot {
    /// Whole on disk; else being downloaded by one reader (its bytes
    /// reserved), and neither opened nor evicted until it is.
    ready: bool,
    bytes: u64,
    used: u64,
    /// Its index, opened on first use and kept while it is here. Only
    /// the cache clones this `Arc` under its lock, so a count of 1 means
    /// no reader holds it.
    open: Option<Arc<Partition>>,
}

impl Slot {
    fn evictable(&self) -> bool {
        self.ready && self.open.as_ref().is_none_or(|p| Arc::strong_count(p) == 1)
    }
}

/// The slots by id, and by last use: an eviction takes the least
/// recently used one without a scan of every slot (a full cache holds
/// tens of thousands of blocks, and each block fetched evicts).
#[derive(Default)]
struct Slots {
    by_id: HashMap<String, Slot>,
    /// `used` → id; each `used` is a fresh tick of the clock, so unique.
    by_use: BTreeMap<u64, String>,
}

impl Slots {
    fn insert(&mut self, id: String, slot: Slot) {
        self.by_use.insert(slot.used, id.clone());
        if let Some(old) = self.by_id.insert(id, slot) {
            self.by_use.remove(&old.used);
        }
    }

    fn remove(&mut self, id: &str) -> Option<Slot> {
        let slot = self.by_id.remove(id)?;
        self.by_use.remove(&slot.used);
        Some(slot)
    }

    /// The slot, marked as used at `now`.
    fn touch(&mut self, id: &str, now: u64) -> Option<&mut Slot> {
        let slot = self.by_id.get_mut(id)?;
        self.by_use.remove(&slot.used);
        slot.used = now;
        self.by_use.insert(now, id.to_owned());
        Some(slot)
    }

    fn get(&self, id: &str) -> Option<&Slot> {
        self.by_id.get(id)
    }

    fn get_mut(&mut self, id: &str) -> Option<&mut Slot> {
        self.by_id.get_mut(id)
    }

    fn contains_key(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.by_id.keys()
    }

    /// The least recently used slot that may be evicted now.
    fn least_recent_evictable(&self) -> Option<String> {
        self.by_use
            .values()
            .find(|id| self.by_id.get(*id).is_some_and(Slot::evictable))
            .cloned()
    }
}

impl DiskCache {
    /// The cache in `root`, holding at most `max_bytes`. With `scan` (a
    /// remote store), what a previous run left there is taken up: the
    /// folders of splits `published` says are published are kept (the
    /// newest by modification time used last), everything else (partial
    /// downloads, deleted splits) is deleted; then it is trimmed to the
    /// budget.
    pub(super) fn open(
        root: &Path,
        max_bytes: u64,
        bucket: Arc<Bucket>,
        scan: bool,
        published: &dyn Fn(&str) -> bool,
    ) -> Result<DiskCache, PartitionError> {
        let cache = DiskCache {
            root: root.to_owned(),
            blocks_root: root
                .parent()
                .map_or_else(|| root.join("blocks"), |p| p.join("blocks")),
            max_bytes,
            bucket,
            state: Mutex::new(State::default()),
            downloaded: Condvar::new(),
        };
        if !scan {
            return Ok(cache);
        }
        let io = |source| PartitionError::Io {
            dir: root.to_owned(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        // Block files are not taken up: thousands of small files to scan
        // at each start, for what the next searches fetch again.
        remove_path(&cache.blocks_root).map_err(io)?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".partial") && published(&name) && path.is_dir() {
                let modified = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                found.push((modified, name, dir_bytes(&path)));
            } else if let Err(e) = remove_path(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a leftover in the cache");
            }
        }
        found.sort();
        {
            let mut st = cache.lock();
            for (_, id, bytes) in found {
                st.clock += 1;
                let used = st.clock;
                st.bytes += bytes;
                st.slots.insert(
                    id,
                    Slot {
                        ready: true,
                        bytes,
                        used,
                        open: None,
                    },
                );
            }
            let before = st.bytes;
            cache.trim(&mut st);
            st.peak = st.bytes;
            tracing::info!(
                splits = st.slots.len(),
                bytes = st.bytes,
                max_bytes,
                evicted_bytes = before - st.bytes,
                "split index cache opened"
            );
        }
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where slot `id` is on disk: a split's folder, or a block's file.
    fn dir_of(&self, id: &str) -> PathBuf {
        match id.strip_prefix(BLOCK_SLOT) {
            Some(block) => self.blocks_root.join(block),
            None => self.root.join(id),
        }
    }

    /// Bytes `[pos, pos + len)` of split `split`'s `blocks.dat` (object
    /// `key`): from this cache, or by one ranged GET, kept here after.
    pub(super) fn read_block(
        self: &Arc<Self>,
        split: &str,
        key: &str,
        pos: u64,
        len: u64,
    ) -> std::io::Result<Vec<u8>> {
        let slot = format!("{BLOCK_SLOT}{split}/{pos}");
        let path = self.dir_of(&slot);
        let cached = {
            let mut st = self.lock();
            st.clock += 1;
            let now = st.clock;
            st.slots.touch(&slot, now).is_some()
        };
        if cached {
            match std::fs::read(&path) {
                Ok(bytes) if bytes.len() as u64 == len => {
                    self.lock().block_hits += 1;
                    return Ok(bytes);
                }
                // Evicted since, or not this block: fetched again.
                _ => {}
            }
        }
        let bytes = self
            .bucket
            .get_range(key, pos..pos + len)
            .map(|b| b.to_vec())
            .map_err(std::io::Error::other)?;
        self.lock().block_misses += 1;
        if let Err(e) = self.keep_block(&slot, &path, &bytes) {
            tracing::debug!(path = %path.display(), error = %e, "a block fetched from the store is not kept in the cache");
        }
        Ok(bytes)
    }

    /// Block `pos` of `split` is kept here.
    fn has_block(&self, split: &str, pos: u64) -> bool {
        let slot = format!("{BLOCK_SLOT}{split}/{pos}");
        self.lock().slots.contains_key(&slot)
    }

    fn keep_block(&self, slot: &str, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let len = bytes.len() as u64;
        if len > self.max_bytes {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)?;
        let mut st = self.lock();
        if st.slots.contains_key(slot) {
            return Ok(());
        }
        st.blocks += 1;
        st.block_bytes += len;
        self.insert_ready(&mut st, slot, len, None);
        Ok(())
    }

    /// What the cache holds and has done, as `/api/v1/storage` shows it
    /// (`/metrics` too).
    pub fn stats(&self) -> CacheSummary {
        let st = self.lock();
        CacheSummary {
            bytes: st.bytes,
            max_bytes: self.max_bytes,
            peak_bytes: st.peak,
            splits: st.slots.len() as u64 - st.blocks,
            hits: st.hits,
            misses: st.misses,
            hit_rate: hit_rate(st.hits, st.misses),
            evictions: st.evictions,
            blocks: st.blocks,
            block_bytes: st.block_bytes,
            block_hits: st.block_hits,
            block_misses: st.block_misses,
            block_evictions: st.block_evictions,
        }
    }

    /// Takes the index and `sources.json` of `part`, a split this node
    /// built and has just published to a remote store, into the cache
    /// (moved, not copied: a rename on the same disk), as used now.
    pub(super) fn adopt(&self, part: &Partition) -> Result<(), PartitionError> {
        let dir = self.dir_of(&part.id);
        let io = |source| PartitionError::Io {
            dir: dir.clone(),
            source,
        };
        if part.dir().join("index").exists() {
            let partial = dir.with_extension("partial");
            std::fs::create_dir_all(&partial).map_err(io)?;
            for name in ["index", "sources.json", crate::index::TERMS_FILE] {
                let from = part.dir().join(name);
                if from.exists() {
                    std::fs::rename(&from, partial.join(name)).map_err(io)?;
                }
            }
            // The writer's lock and bookkeeping are not part of the index
            // (nor of its bundle): the copy kept is the one a download makes.
            for entry in std::fs::read_dir(partial.join("index")).map_err(io)? {
                let entry = entry.map_err(io)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".tantivy") || name == ".managed.json" {
                    std::fs::remove_file(entry.path()).map_err(io)?;
                }
            }
            let mut st = self.lock();
            // A leftover of an earlier try of this publish is replaced
            // (never a download under way: this node publishes the split,
            // so no reader of it downloads it).
            if st.slots.get(&part.id).is_some_and(|s| s.ready) {
                if let Some(old) = st.slots.remove(&part.id) {
                    st.bytes -= old.bytes;
                }
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io)?;
            }
            std::fs::rename(&partial, &dir).map_err(io)?;
            self.insert_ready(&mut st, &part.id, dir_bytes(&dir), None);
        } else if dir.exists() {
            // Moved by an earlier try of this publish.
            let mut st = self.lock();
            if !st.slots.contains_key(&part.id) {
                self.insert_ready(&mut st, &part.id, dir_bytes(&dir), None);
            }
        }
        Ok(())
    }

    /// Takes in slot `id`, whole on disk, as just used (held open by
    /// `open`, if given), then trims to the budget.
    fn insert_ready(&self, st: &mut State, id: &str, bytes: u64, open: Option<Arc<Partition>>) {
        st.clock += 1;
        let used = st.clock;
        st.bytes += bytes;
        st.slots.insert(
            id.to_owned(),
            Slot {
                ready: true,
                bytes,
                used,
                open,
            },
        );
        self.trim(st);
        st.peak = st.peak.max(st.bytes);
    }

    /// The index of `split`, opened and held until the pin is dropped:
    /// from the cache (a hit), or downloaded into it first (a miss; a
    /// reader of the same split meanwhile waits for that download).
    pub(super) fn pin(self: &Arc<Self>, split: &CachedSplit) -> Result<IndexPin, PartitionError> {
        let id = &split.entry.id;
        let mut st = self.lock();
        loop {
            st.clock += 1;
            let now = st.clock;
            match st.slots.get(id) {
                None => break,
                Some(slot) if !slot.ready => {
                    st = self.downloaded.wait(st).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                Some(_) => {}
            }
            let Some(slot) = st.slots.touch(id, now) else {
                break;
            };
            let part = match &slot.open {
                Some(p) => p.clone(),
                // Opening maps a few files of the local disk: quick
                // enough to do under the lock, which keeps the folder
                // from being evicted meanwhile.
                None => match self.open_index(split) {
                    Ok(p) => {
                        let p = Arc::new(p);
                        slot.open = Some(p.clone());
                        p
                    }
                    Err(e) => {
                        tracing::warn!(split = %id, error = %e, "a cached split index cannot be opened; it is downloaded again");
                        if let Some(gone) = st.slots.remove(id) {
                            st.bytes -= gone.bytes;
                        }
                        if let Err(e) = remove_path(&self.dir_of(id)) {
                            tracing::warn!(split = %id, error = %e, "cannot delete a cached split index");
                        }
                        continue;
                    }
                },
            };
            st.hits += 1;
            drop(st);
            emit(SplitCacheUsed { hit: true });
            return Ok(IndexPin::cached(part, self.clone()));
        }
        // A miss: reserve its bytes (evicting others to make room), and
        // download outside the lock.
        let need = split.index_bytes();
        st.clock += 1;
        let used = st.clock;
        st.slots.insert(
            id.clone(),
            Slot {
                ready: false,
                bytes: need,
                used,
                open: None,
            },
        );
        st.bytes += need;
        st.misses += 1;
        self.trim(&mut st);
        st.peak = st.peak.max(st.bytes);
        drop(st);
        emit(SplitCacheUsed { hit: false });
        let reserved = Reserved {
            cache: self,
            id,
            need,
        };
        let dir = self.dir_of(id);
        let started = std::time::Instant::now();
        let got = download_index(&self.bucket, &split_key(id), &split.entry, &dir)
            .map_err(|e| match e {
                PublishError::Split(e) => e,
                other => PartitionError::Io {
                    dir: dir.clone(),
                    source: std::io::Error::other(other.to_string()),
                },
            })
            .and_then(|()| self.open_index(split));
        std::mem::forget(reserved);
        let mut st = self.lock();
        let result = match got {
            Ok(part) => {
                let part = Arc::new(part);
                let bytes = dir_bytes(&dir);
                tracing::info!(split = %id, bytes, ms = started.elapsed().as_millis() as u64, "split index downloaded into the cache");
                if let Some(slot) = st.slots.get_mut(id) {
                    slot.ready = true;
                    slot.bytes = bytes;
                    slot.open = Some(part.clone());
                    st.bytes = st.bytes - need + bytes;
                }
                self.trim(&mut st);
                st.peak = st.peak.max(st.bytes);
                Ok(IndexPin::cached(part, self.clone()))
            }
            Err(e) => {
                if st.slots.remove(id).is_some() {
                    st.bytes -= need;
                }
                if let Err(e) = remove_path(&dir) {
                    tracing::warn!(split = %id, error = %e, "cannot delete a failed download");
                }
                Err(e)
            }
        };
        drop(st);
        self.downloaded.notify_all();
        result
    }

    fn open_index(self: &Arc<Self>, split: &CachedSplit) -> Result<Partition, PartitionError> {
        let id = &split.entry.id;
        let blocks = Box::new(RemoteBlocks {
            cache: Arc::downgrade(self),
            split: id.clone(),
            key: format!("{}blocks.dat", split_key(id)),
        });
        Partition::open_remote(
            &self.dir_of(id),
            id.clone(),
            split.entry.window_ns,
            blocks,
            split.uid,
        )
    }

    /// Evicts the least recently used splits no reader holds until the
    /// cache is within its budget (or none is left to evict).
    fn trim(&self, st: &mut State) {
        while st.bytes > self.max_bytes {
            let Some(id) = st.slots.least_recent_evictable() else {
                tracing::debug!(
                    bytes = st.bytes,
                    max_bytes = self.max_bytes,
                    "split index cache over its budget while readers hold its indexes"
                );
                return;
            };
            let Some(slot) = st.slots.remove(&id) else {
                return;
            };
            st.bytes -= slot.bytes;
            if id.starts_with(BLOCK_SLOT) {
                st.blocks -= 1;
                st.block_bytes -= slot.bytes;
                st.block_evictions += 1;
                if let Err(e) = remove_path(&self.dir_of(&id)) {
                    tracing::warn!(block = %id, error = %e, "cannot delete an evicted block");
                }
                continue;
            }
            st.evictions += 1;
            // The index is closed (unmapped) before its files go.
            drop(slot.open);
            if let Err(e) = remove_path(&self.dir_of(&id)) {
                tracing::warn!(split = %id, error = %e, "cannot delete an evicted split index");
            }
            tracing::debug!(split = %id, bytes = slot.bytes, "split index evicted from the cache");
            emit(SplitCacheEvicted);
        }
    }

    /// A pin was dropped: trims if the cache is over its budget.
    fn released(&self) {
        let mut st = self.lock();
        if st.bytes > self.max_bytes {
            self.trim(&mut st);
        }
    }

    /// Split `id` is deleted from the store: its index goes from here too.
    pub(super) fn forget(&self, id: &str) {
        let mut st = self.lock();
        if st.slots.get(id).is_some_and(|s| !s.ready) {
            // Being downloaded by a search older than the split's grace:
            // left to the LRU.
            return;
        }
        if let Some(slot) = st.slots.remove(id) {
            st.bytes -= slot.bytes;
        }
        if let Err(e) = remove_path(&self.dir_of(id)) {
            tracing::warn!(split = %id, error = %e, "cannot delete a deleted split's cached index");
        }
        // Its blocks too.
        let prefix = format!("{BLOCK_SLOT}{id}/");
        let blocks: Vec<String> = st
            .slots
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        for key in blocks {
            if let Some(slot) = st.slots.remove(&key) {
                st.bytes -= slot.bytes;
                st.blocks -= 1;
                st.block_bytes -= slot.bytes;
            }
        }
        if let Err(e) = remove_path(&self.dir_of(&format!("{BLOCK_SLOT}{id}"))) {
            tracing::warn!(split = %id, error = %e, "cannot delete a deleted split's cached blocks");
        }
    }

    /// Where split `id`'s index is kept.
    pub(super) fn dir(&self, id: &str) -> PathBuf {
        self.dir_of(id)
    }
}

/// Bytes of the files under `dir` (one level of subfolders: the index).
pub(super) fn dir_bytes(dir: &Path) -> u64 {
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

/// Deletes a folder or file; one that is not there is no error.
fn remove_path(path: &Path) -> std::io::Result<()> {
    let done = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match done {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A split's slot reserved for its download: if the download unwinds
/// (a panic), the slot is let go and the readers waiting for it woken,
/// so that none waits for ever. Forgotten once the download returns.
struct Reserved<'a> {
    cache: &'a DiskCache,
    id: &'a str,
    need: u64,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        let mut st = self.cache.lock();
        if st.slots.get(self.id).is_some_and(|s| !s.ready) && st.slots.remove(self.id).is_some() {
            st.bytes -= self.need;
        }
        drop(st);
        self.cache.downloaded.notify_all();
    }
}

/// `blocks.dat` of a split in a remote store, read by ranged GET.
struct RemoteBlocks {
    /// Block bytes are kept there (`cache.max_bytes`). Weak: the cache
    /// holds the open index that holds this.
    cache: Weak<DiskCache>,
    split: String,
    key: String,
}

impl RangeRead for RemoteBlocks {
    fn read_range(&self, pos: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let cache = self
            .cache
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the split cache is closed"))?;
        cache.read_block(&self.split, &self.key, pos, len)
    }

    fn is_kept(&self, pos: u64) -> bool {
        self.cache
            .upgrade()
            .is_some_and(|c| c.has_block(&self.split, pos))
    }
}

/// A published split on a remote store: its entry, and its index in the
/// [`DiskCache`] (opened when a reader pins it).
pub struct CachedSplit {
    pub(super) entry: SplitEntry,
    /// Kept across evictions (the split never changes), so decoded blocks
    /// in the memory cache stay valid when the index is downloaded again.
    uid: u64,
    cache: Arc<DiskCache>,
}

impl CachedSplit {
    pub(super) fn new(entry: SplitEntry, cache: Arc<DiskCache>) -> CachedSplit {
        CachedSplit {
            entry,
            uid: new_uid(),
            cache,
        }
    }

    /// Per source, what the split holds (its metastore entry says).
    pub(super) fn totals(&self) -> HashMap<u64, SourceTotals> {
        self.entry
            .sources
            .iter()
            .map(|s| {
                let totals = SourceTotals {
                    lines: s.lines,
                    bytes: s.bytes,
                    t_max: s.t_max,
                    off_start: s.off_start,
                    off_end: s.off_end,
                };
                (s.source.id(), totals)
            })
            .collect()
    }

    /// The sources with a block in the split (its metastore entry says).
    pub(super) fn sources(&self) -> HashMap<u64, Source> {
        self.entry
            .sources
            .iter()
            .map(|s| (s.source.id(), Source::clone(&s.source)))
            .collect()
    }

    /// Bytes of its index and `sources.json`: every file but its blocks.
    /// What its index takes in the cache, and the cache's budget.
    pub(super) fn index_cost(&self) -> (u64, u64) {
        (self.index_bytes(), self.cache.max_bytes)
    }

    fn index_bytes(&self) -> u64 {
        self.entry
            .files
            .iter()
            .filter(|(name, _)| name != "blocks.dat")
            .map(|(_, n)| n)
            .sum()
    }
}

/// A split as the store shows it to readers.
#[derive(Clone)]
pub enum SplitHandle {
    /// Opened here: being built, or published on the local store and read
    /// in place.
    Open(Arc<Partition>),
    /// Published on a remote store: its index is in the disk cache, or
    /// downloaded into it when a reader needs it.
    Cached(Arc<CachedSplit>),
}

impl SplitHandle {
    pub fn id(&self) -> &str {
        match self {
            SplitHandle::Open(p) => &p.id,
            SplitHandle::Cached(c) => &c.entry.id,
        }
    }

    /// The start of its window of line time.
    pub fn start_ns(&self) -> i64 {
        match self {
            SplitHandle::Open(p) => p.start_ns,
            SplitHandle::Cached(c) => c.entry.window_ns,
        }
    }

    pub fn uid(&self) -> u64 {
        match self {
            SplitHandle::Open(p) => p.uid,
            SplitHandle::Cached(c) => c.uid,
        }
    }

    /// The folder of its files on this disk (for a cached split, where
    /// its index is kept: possibly not there now).
    pub fn dir(&self) -> PathBuf {
        match self {
            SplitHandle::Open(p) => p.dir().to_owned(),
            SplitHandle::Cached(c) => c.cache.dir(&c.entry.id),
        }
    }

    /// Whether anything but its caller holds it (a reader's snapshot).
    pub(super) fn is_shared(&self) -> bool {
        match self {
            SplitHandle::Open(p) => Arc::strong_count(p) > 1,
            SplitHandle::Cached(c) => Arc::strong_count(c) > 1,
        }
    }

    /// Its index, held until the pin is dropped; `searcher` is the one to
    /// read an open split with (for a cached, published split: made now,
    /// as it never changes).
    pub(super) fn pin(&self, searcher: Option<&Searcher>) -> Result<IndexPin, PartitionError> {
        match self {
            SplitHandle::Open(p) => Ok(IndexPin {
                searcher: Some(searcher.cloned().unwrap_or_else(|| p.searcher())),
                part: Some(p.clone()),
                cache: None,
            }),
            SplitHandle::Cached(c) => c.cache.pin(c),
        }
    }
}

/// A split's index, held open (and, in the disk cache, kept from
/// eviction) while a reader plans or reads the split. Dereferences to the
/// [`Partition`].
pub struct IndexPin {
    part: Option<Arc<Partition>>,
    searcher: Option<Searcher>,
    cache: Option<Arc<DiskCache>>,
}

impl IndexPin {
    fn cached(part: Arc<Partition>, cache: Arc<DiskCache>) -> IndexPin {
        IndexPin {
            searcher: Some(part.searcher()),
            part: Some(part),
            cache: Some(cache),
        }
    }

    /// The searcher to read the split with.
    pub fn searcher(&self) -> &Searcher {
        self.searcher
            .as_ref()
            .expect("set when made, taken only by drop")
    }
}

impl std::ops::Deref for IndexPin {
    type Target = Partition;

    fn deref(&self) -> &Partition {
        self.part
            .as_ref()
            .expect("set when made, taken only by drop")
    }
}

impl Drop for IndexPin {
    fn drop(&mut self) {
        // The searcher (tantivy's segment readers: the mmaps) and the
        // reference go before the cache looks at what it may evict.
        self.searcher = None;
        self.part = None;
        if let Some(cache) = &self.cache {
            cache.released();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The accounting and the eviction order, without a remote store:
    // slots are put in as `adopt` and `pin` put them.
    fn cache(max_bytes: u64) -> (tempfile::TempDir, Arc<DiskCache>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = Arc::new(
            Bucket::open(&crate::config::ObjectStoreConfig::default(), dir.path())
                .expect("local bucket"),
        );
        let root = dir.path().join("cache");
        std::fs::create_dir_all(&root).expect("cache root");
        let cache = DiskCache::open(&root, max_bytes, bucket, false, &|_| true).expect("cache");
        (dir, Arc::new(cache))
    }

    /// A split folder of `bytes` bytes, taken in as just used.
    fn put(cache: &DiskCache, id: &str, bytes: usize) {
        let dir = cache.dir_of(id);
        std::fs::create_dir_all(&dir).expect("split dir");
        std::fs::write(dir.join("sources.json"), vec![b'x'; bytes]).expect("file");
        let mut st = cache.lock();
        cache.insert_ready(&mut st, id, dir_bytes(&dir), None);
    }

    /// A split with a real (empty) index, taken in as just used and held
    /// by a reader, as `pin` hands it out.
    fn put_held(cache: &Arc<DiskCache>) -> (String, IndexPin) {
        let part = Arc::new(Partition::create(&cache.root, 0).expect("split"));
        let id = part.id.clone();
        let bytes = dir_bytes(part.dir());
        assert!(bytes > 0);
        let mut st = cache.lock();
        cache.insert_ready(&mut st, &id, bytes, Some(part.clone()));
        drop(st);
        (id, IndexPin::cached(part, cache.clone()))
    }

    fn touch(cache: &DiskCache, id: &str) {
        let mut st = cache.lock();
        st.clock += 1;
        let now = st.clock;
        st.slots.touch(id, now).expect("cached");
    }

    fn held(cache: &DiskCache) -> Vec<String> {
        let mut ids: Vec<String> = cache.lock().slots.keys().cloned().collect();
        ids.sort();
        ids
    }

    #[test]
    fn least_recently_used_go_first_and_bytes_stay_within_budget() {
        let (_dir, c) = cache(250);
        put(&c, "a", 100);
        put(&c, "b", 100);
        assert_eq!(c.stats().bytes, 200);
        // a is used again, so b is the oldest when c needs room.
        touch(&c, "a");
        put(&c, "c", 100);
        assert_eq!(held(&c), ["a", "c"]);
        assert!(
            !c.dir_of("b").exists(),
            "an evicted index's files are deleted"
        );
        assert!(c.dir_of("a").exists() && c.dir_of("c").exists());
        let s = c.stats();
        assert_eq!((s.bytes, s.evictions, s.splits), (200, 1, 2));
        assert_eq!(s.peak_bytes, 200, "{s:?}");
        // Bigger than the budget on its own: everything goes, it too
        // (nothing holds it).
        put(&c, "huge", 300);
        let s = c.stats();
        assert_eq!((s.bytes, s.evictions, s.splits), (0, 4, 0), "{s:?}");
        assert!(s.peak_bytes <= 250, "{s:?}");
    }

    #[test]
    fn a_held_index_is_not_evicted_until_its_reader_lets_go() {
        let (_dir, c) = cache(10);
        let (a, pin) = put_held(&c);
        // Over the budget, but held: it stays, files and all.
        let s = c.stats();
        assert!(s.bytes > 10, "{s:?}");
        assert_eq!(s.evictions, 0);
        assert!(c.dir_of(&a).join("index").join("meta.json").exists());
        assert_eq!(pin.searcher().num_docs(), 0, "still readable");
        // A newer one that is not held goes instead, though a is older.
        put(&c, "b", 100);
        assert_eq!(held(&c), std::slice::from_ref(&a));
        assert!(!c.dir_of("b").exists());
        // Let go: trimmed at once.
        drop(pin);
        assert!(held(&c).is_empty());
        assert!(!c.dir_of(&a).exists());
        let s = c.stats();
        assert_eq!((s.bytes, s.evictions), (0, 2), "{s:?}");
    }

    #[test]
    fn a_reopened_cache_keeps_published_splits_within_budget_and_drops_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bucket = Arc::new(
            Bucket::open(&crate::config::ObjectStoreConfig::default(), dir.path())
                .expect("local bucket"),
        );
        let root = dir.path().join("cache");
        let t0 = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, (id, bytes)) in [("old", 100), ("mid", 100), ("new", 100), ("gone", 10)]
            .into_iter()
            .enumerate()
        {
            std::fs::create_dir_all(root.join(id)).expect("dir");
            std::fs::write(root.join(id).join("sources.json"), vec![b'x'; bytes]).expect("file");
            // Modification times order the splits' last use.
            std::fs::File::open(root.join(id))
                .and_then(|d| d.set_modified(t0 + std::time::Duration::from_secs(i as u64)))
                .expect("set the folder's time");
        }
        std::fs::create_dir_all(root.join("new.partial")).expect("partial");
        let published = |id: &str| id != "gone";
        let c = DiskCache::open(&root, 250, bucket, true, &published).expect("cache");
        let s = c.stats();
        assert_eq!((s.bytes, s.splits, s.evictions), (200, 2, 1), "{s:?}");
        assert_eq!(s.peak_bytes, 200);
        assert_eq!(held(&c), ["mid", "new"]);
        for gone in ["old", "gone", "new.partial"] {
            assert!(!root.join(gone).exists(), "{gone}");
        }
    }

    /// A published split with an empty index, its bundle in `bucket`.
    fn publish_empty(bucket: &Bucket, building: &Path, window_ns: i64) -> SplitEntry {
        let part = Arc::new(Partition::create(building, window_ns).expect("split"));
        part.writer(15_000_000)
            .and_then(|w| w.finish())
            .expect("an empty index");
        std::fs::write(part.dir().join("sources.json"), b"[]").expect("sources");
        let files = part.files().expect("files");
        super::super::published::write_bundle(part.dir(), &files).expect("bundle");
        let key = format!("{}{}", split_key(&part.id), super::super::published::BUNDLE);
        bucket
            .upload_file(&key, &part.dir().join(super::super::published::BUNDLE))
            .expect("upload");
        SplitEntry {
            id: part.id.clone(),
            window_ns,
            t_min: 0,
            t_max: 0,
            blocks: 0,
            files,
            bundled: true,
            sources: Vec::new(),
            level: 0,
        }
    }

    #[test]
    fn a_miss_downloads_the_index_a_hit_finds_it_and_room_is_made_first() {
        let (dir, c) = cache(0);
        let building = dir.path().join("building");
        let a = CachedSplit::new(publish_empty(&c.bucket, &building, 0), c.clone());
        let b = CachedSplit::new(publish_empty(&c.bucket, &building, 86_400), c.clone());
        let size = a.index_bytes();
        assert!(size > 0 && b.index_bytes() == size, "same files");
        // Room for one index: the budget is set after the fact.
        let c = Arc::new(DiskCache {
            root: c.root.clone(),
            blocks_root: c.blocks_root.clone(),
            max_bytes: size,
            bucket: c.bucket.clone(),
            state: Mutex::new(State::default()),
            downloaded: Condvar::new(),
        });
        let a = CachedSplit::new(a.entry.clone(), c.clone());
        let b = CachedSplit::new(b.entry.clone(), c.clone());
        {
            let pin = c.pin(&a).expect("downloaded");
            assert_eq!(pin.searcher().num_docs(), 0);
            assert_eq!(pin.id, a.entry.id);
        }
        let s = c.stats();
        assert_eq!(
            (s.misses, s.hits, s.bytes, s.splits),
            (1, 0, size, 1),
            "{s:?}"
        );
        assert!(c.dir_of(&a.entry.id).join("sources.json").exists());
        drop(c.pin(&a).expect("cached"));
        assert_eq!(c.stats().hits, 1);
        // b needs a's room: a goes before b is downloaded, so the cache
        // never holds both.
        drop(c.pin(&b).expect("downloaded"));
        let s = c.stats();
        assert_eq!((s.misses, s.hits, s.evictions), (2, 1, 1), "{s:?}");
        assert_eq!(s.peak_bytes, size, "{s:?}");
        assert!(!c.dir_of(&a.entry.id).exists());
        // While b is held, a is downloaded again and both stay, over the
        // budget; once b is let go it is trimmed back (b goes: a is held).
        let held = c.pin(&b).expect("cached");
        let again = c.pin(&a).expect("downloaded again");
        assert_eq!(c.stats().bytes, 2 * size);
        assert!(c.dir_of(&b.entry.id).exists(), "held, so kept");
        drop(held);
        let s = c.stats();
        assert_eq!((s.bytes, s.misses, s.evictions), (size, 3, 2), "{s:?}");
        assert!(!c.dir_of(&b.entry.id).exists());
        assert_eq!(again.searcher().num_docs(), 0, "a is still readable");
        drop(again);
        assert_eq!(c.stats().bytes, size, "within the budget: a stays");
        // A split the store no longer has cannot be downloaded: the error
        // says what is missing, and nothing is left reserved (a made room
        // for it first, so the cache is empty).
        let mut gone = b.entry.clone();
        gone.id = "00000000-gone".into();
        let err = c
            .pin(&CachedSplit::new(gone, c.clone()))
            .err()
            .expect("not in the store");
        assert!(err.to_string().contains("not in"), "{err}");
        let s = c.stats();
        assert_eq!((s.bytes, s.splits), (0, 0), "{s:?}");
        assert_eq!(dir_bytes(&c.root), 0);
    }

    #[test]
    fn hit_rate_counts_uses() {
        assert_eq!(hit_rate(3, 1), 0.75);
        assert_eq!(hit_rate(0, 0), 0.0);
    }
}
