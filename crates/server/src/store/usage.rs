//! What the splits take on disk: for the storage API, `/metrics` and
//! retention's disk budget. Measured when asked (a walk of each split's
//! files), never kept.

use super::disk_cache::dir_bytes;
use super::store::Store;

/// Splits on disk, oldest window first.
pub struct DiskUsage {
    pub bytes: u64,
    pub partitions: Vec<PartitionUsage>,
}

pub struct PartitionUsage {
    pub id: String,
    /// Its window of line time.
    pub start_ns: i64,
    pub published: bool,
    pub bytes: u64,
    pub blocks: u64,
    pub newest_ns: Option<i64>,
}

/// Every split the store holds, with its size on disk, oldest window first.
pub fn disk_usage(store: &Store) -> DiskUsage {
    let partitions: Vec<PartitionUsage> = store
        .partition_list()
        .into_iter()
        .map(|p| PartitionUsage {
            id: p.id,
            start_ns: p.start_ns,
            published: p.published,
            bytes: dir_bytes(&p.dir),
            blocks: p.blocks,
            newest_ns: p.newest_ns,
        })
        .collect();
    DiskUsage {
        bytes: partitions.iter().map(|p| p.bytes).sum(),
        partitions,
    }
}
