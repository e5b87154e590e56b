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
