//! What one reader sees, consistent as of one instant: taken under the
//! store's lock ([`super::Store::snapshot`]), so each line is in exactly one
//! place — a memory block or a committed partition — never both or neither.

use std::collections::HashMap;
use std::sync::Arc;

use cblogs_core::Source;
use tantivy::Searcher;
use tokio::sync::broadcast;

use super::live::LiveBatch;
use crate::block::LineBlock;
use crate::index::{Partition, ReadCaches};

pub struct ReadSnapshot {
    /// The sources the reader asked for.
    pub sources: HashMap<u64, Arc<Source>>,
    /// Their lines not yet committed to the index.
    pub memory: Vec<(Arc<Source>, Arc<LineBlock>)>,
    /// Committed partitions, newest first, with their newest line time.
    pub partitions: Vec<(Arc<Partition>, Searcher, i64)>,
    /// Every batch applied after this snapshot, if asked for.
    pub live: Option<broadcast::Receiver<Arc<LiveBatch>>>,
    /// Where committed blocks are read through (decoded blocks and
    /// segments' terms kept between reads).
    pub caches: Arc<ReadCaches>,
}
