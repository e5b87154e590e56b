//! What one reader sees, consistent as of one instant: taken under the
//! store's lock ([`super::Store::snapshot`]), so each line is in exactly one
//! place — a memory block or a committed partition — never both or neither.

use std::collections::HashMap;
use std::sync::Arc;

use cblogs_core::Source;
use tantivy::Searcher;
use tokio::sync::broadcast;

use super::disk_cache::{IndexPin, SplitHandle};
use super::live::LiveBatch;
use crate::block::LineBlock;
use crate::index::{PartitionError, ReadCaches};

pub struct ReadSnapshot {
    /// The sources the reader asked for.
    pub sources: HashMap<u64, Arc<Source>>,
    /// Their lines not yet committed to the index.
    pub memory: Vec<(Arc<Source>, Arc<LineBlock>)>,
    /// Committed partitions, newest first.
    pub partitions: Vec<SnapshotSplit>,
    /// Every batch applied after this snapshot, if asked for.
    pub live: Option<broadcast::Receiver<Arc<LiveBatch>>>,
    /// Where committed blocks are read through (decoded blocks and
    /// segments' terms kept between reads).
    pub caches: Arc<ReadCaches>,
}

/// A split as one reader sees it.
pub struct SnapshotSplit {
    /// The start of its window of line time.
    pub start_ns: i64,
    /// Its newest line's time.
    pub t_max: i64,
    split: SplitHandle,
    /// For a split open here, its searcher as of the snapshot (a split
    /// being built changes); a cached split is published and never does.
    searcher: Option<Searcher>,
}

impl SnapshotSplit {
    pub(super) fn new(split: SplitHandle, searcher: Option<Searcher>, t_max: i64) -> Self {
        SnapshotSplit {
            start_ns: split.start_ns(),
            t_max,
            split,
            searcher,
        }
    }

    /// Published on a remote store: opening it may be a download.
    pub fn is_remote(&self) -> bool {
        matches!(self.split, SplitHandle::Cached(_))
    }

    /// Its oldest line's time, if known without opening it (a published
    /// split on a remote store: from its metastore entry).
    pub fn t_min(&self) -> Option<i64> {
        match &self.split {
            SplitHandle::Cached(c) => Some(c.entry.t_min),
            SplitHandle::Open(_) => None,
        }
    }

    /// What opening it may download into the disk cache, and the cache's
    /// budget (`None` for a split open here).
    fn download(&self) -> Option<(u64, u64)> {
        match &self.split {
            SplitHandle::Cached(c) => Some(c.index_cost()),
            SplitHandle::Open(_) => None,
        }
    }

    /// Orders splits of the same newest line time.
    pub(super) fn uid(&self) -> u64 {
        self.split.uid()
    }

    /// Its index, held until the pin is dropped: for a published split
    /// on a remote store, from the disk cache, downloaded first if it is
    /// not there (an error then names the store). Hold it only while
    /// this split is read: the cache cannot evict it meanwhile.
    pub fn open(&self) -> Result<IndexPin, PartitionError> {
        self.split.pin(self.searcher.as_ref())
    }
}

/// `splits`, in order, in runs that may be opened at once: at most `n`
/// in each, and downloads within half the disk cache. An opened index is
/// pinned, never evicted: more at once than the cache holds would take
/// it over its budget.
pub fn open_together<'a>(splits: &[&'a SnapshotSplit], n: usize) -> Vec<Vec<&'a SnapshotSplit>> {
    let mut runs: Vec<Vec<&SnapshotSplit>> = Vec::new();
    let mut bytes = 0;
    for split in splits {
        let (cost, room) = split
            .download()
            .map_or((0, u64::MAX), |(c, max)| (c, max / 2));
        match runs.last_mut() {
            Some(run) if run.len() < n && bytes + cost <= room => {
                bytes += cost;
                run.push(split);
            }
            _ => {
                bytes = cost;
                runs.push(vec![split]);
            }
        }
    }
    runs
}
