//! The one owner of the partitions' lives: it opens those on disk at
//! start-up, creates a partition when the first block of its time arrives,
//! holds the writer of each partition being written to, and deletes a
//! partition (retention). The committer owns it, so a partition is only
//! ever created, written or deleted by the committer; the store only shows
//! readers what is registered with it.
//!
//! ```text
//! partitions/p-<start unix secs>/    one per `storage.partition_secs` of first-line times
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::store::Store;
use super::usage::dir_bytes;
use crate::config::StorageConfig;
use crate::index::{parse_dir_name, Partition, PartitionError, PartitionWriter};

/// How long a partition's writer may sit idle before it is closed.
const WRITER_IDLE: Duration = Duration::from_secs(300);

pub struct PartitionSet {
    root: PathBuf,
    partition_ns: i64,
    index_writer_bytes: usize,
    /// The writer of each partition written to lately, and when it was last used.
    writers: HashMap<i64, (PartitionWriter, Instant)>,
}

impl PartitionSet {
    /// Opens every partition under `root` (creating `root` if needed): the
    /// set, and the partitions for the store to show.
    pub fn open(
        root: &Path,
        config: &StorageConfig,
    ) -> Result<(PartitionSet, Vec<Arc<Partition>>), PartitionError> {
        let io = |source| PartitionError::Io {
            dir: root.to_owned(),
            source,
        };
        std::fs::create_dir_all(root).map_err(io)?;
        let mut existing = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io)?.flatten() {
            let Some(start) = entry.file_name().to_str().and_then(parse_dir_name) else {
                continue;
            };
            existing.push(Arc::new(Partition::open(root, start)?));
        }
        let set = PartitionSet {
            root: root.to_owned(),
            partition_ns: config.partition_ns(),
            index_writer_bytes: config.index_writer_bytes,
            writers: HashMap::new(),
        };
        Ok((set, existing))
    }

    /// The start of the partition a block whose first line is at `t_min` belongs to.
    pub(super) fn start_of(&self, t_min: i64) -> i64 {
        t_min.div_euclid(self.partition_ns) * self.partition_ns
    }

    /// The writer of the partition for `t_min`; the partition is created
    /// (and shown to readers, empty) on first use.
    pub(super) fn writer_for(
        &mut self,
        store: &Store,
        t_min: i64,
    ) -> Result<(i64, &mut PartitionWriter), PartitionError> {
        let start = self.start_of(t_min);
        if !self.writers.contains_key(&start) {
            let part = match store.partition(start) {
                Some(part) => part,
                None => {
                    let part = Arc::new(Partition::open(&self.root, start)?);
                    store.add_partition(part.clone());
                    part
                }
            };
            let w = part.writer(self.index_writer_bytes)?;
            self.writers.insert(start, (w, Instant::now()));
        }
        let (w, used) = self
            .writers
            .get_mut(&start)
            .expect("a writer is inserted above");
        *used = Instant::now();
        Ok((start, w))
    }

    /// The writer of partition `start`, if one is open.
    pub(super) fn writer(&mut self, start: i64) -> Option<&mut PartitionWriter> {
        self.writers.get_mut(&start).map(|(w, _)| w)
    }

    /// Drops the writer of partition `start`: after a failure it is not
    /// trusted again (tantivy's writer may have lost a worker thread), and
    /// a fresh one starts from what is committed.
    pub(super) fn drop_writer(&mut self, start: i64) {
        self.writers.remove(&start);
    }

    /// Closes the writers nobody used for a while.
    pub(super) fn close_idle(&mut self) {
        self.writers
            .retain(|_, (_, used)| used.elapsed() < WRITER_IDLE);
    }

    /// Takes partition `start` away from readers and deletes its files.
    /// Returns its directory and its size before, or `None` if it was not held.
    pub(super) fn delete(
        &mut self,
        store: &Store,
        start: i64,
    ) -> Option<(PathBuf, u64, Result<(), PartitionError>)> {
        self.writers.remove(&start);
        let part = store.remove_partition(start)?;
        let dir = part.dir().to_owned();
        drop(part);
        let bytes = dir_bytes(&dir);
        let removed = std::fs::remove_dir_all(&dir).map_err(|source| PartitionError::Io {
            dir: dir.clone(),
            source,
        });
        Some((dir, bytes, removed))
    }
}
