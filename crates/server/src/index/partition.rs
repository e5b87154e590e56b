//! One time partition, read side: a tantivy index with one document per
//! sealed block, the block file holding the blocks' zstd bytes, and the
//! list of sources whose blocks it holds.
//!
//! ```text
//! partitions/p-<start unix secs>/
//!     index/         tantivy: one doc per block (fast fields + distinct tokens)
//!     blocks.dat     compressed blocks back to back; docs point into it
//!     sources.json   source id -> source, for every source with a block here
//! ```
//!
//! What a commit makes durable, and in which order, is `writer.rs`'s story.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cblogs_core::Source;
use tantivy::query::{AllQuery, Query, TermSetQuery};
use tantivy::{Index, IndexReader, ReloadPolicy, Term};

use super::columns::BlockRefs;
use super::columns::{BlockRef, SourceTotals};
use super::schema::{schema, Fields};
use crate::block::{BlockError, LineBlock};

#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error("partition {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("partition {dir}: index: {source}")]
    Index {
        dir: PathBuf,
        source: tantivy::TantivyError,
    },
    #[error("partition {dir}: sources.json: {source}")]
    Sources {
        dir: PathBuf,
        source: serde_json::Error,
    },
    #[error("partition {dir}: block at {pos}: {source}")]
    Block {
        dir: PathBuf,
        pos: u64,
        source: BlockError,
    },
}

/// The read side of a partition, shared by queries.
pub struct Partition {
    pub start_ns: i64,
    /// Unique among the partitions this process opened: a partition
    /// deleted by retention and made again has another one, so caches
    /// keyed by it never serve the old one's blocks.
    pub uid: u64,
    pub(super) dir: PathBuf,
    pub(super) index: Index,
    reader: IndexReader,
    pub(super) fields: Fields,
    /// `blocks.dat`, opened for appending (the writer) and reading.
    pub(super) blocks: File,
}

fn dir_name(start_ns: i64) -> String {
    format!("p-{}", start_ns.div_euclid(1_000_000_000))
}

/// The start of the partition named `name`, if it is one.
pub fn parse_dir_name(name: &str) -> Option<i64> {
    name.strip_prefix("p-")?
        .parse::<i64>()
        .ok()?
        .checked_mul(1_000_000_000)
}

impl Partition {
    /// Opens (creating if needed) the partition starting at `start_ns` under `root`.
    pub fn open(root: &Path, start_ns: i64) -> Result<Partition, PartitionError> {
        let dir = root.join(dir_name(start_ns));
        let io = |source| PartitionError::Io {
            dir: dir.clone(),
            source,
        };
        let index_dir = dir.join("index");
        fs::create_dir_all(&index_dir).map_err(io)?;
        let idx = |source| PartitionError::Index {
            dir: dir.clone(),
            source,
        };
        let (schema, fields) = schema();
        let index = if index_dir.join("meta.json").exists() {
            Index::open_in_dir(&index_dir).map_err(idx)?
        } else {
            Index::create_in_dir(&index_dir, schema).map_err(idx)?
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(idx)?;
        let blocks = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(dir.join("blocks.dat"))
            .map_err(io)?;
        static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Partition {
            start_ns,
            uid: NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            dir,
            index,
            reader,
            fields,
            blocks,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An I/O error of this partition, naming its directory.
    pub fn io_error(&self, source: std::io::Error) -> PartitionError {
        PartitionError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// An index error of this partition, naming its directory.
    pub fn index_error(&self, source: tantivy::TantivyError) -> PartitionError {
        PartitionError::Index {
            dir: self.dir.clone(),
            source,
        }
    }

    /// A searcher over what is committed now.
    pub fn searcher(&self) -> tantivy::Searcher {
        self.reader.searcher()
    }

    /// Makes the newest commit visible to [`Partition::searcher`].
    pub fn reload(&self) -> Result<(), PartitionError> {
        self.reader
            .reload()
            .map_err(|source| PartitionError::Index {
                dir: self.dir.clone(),
                source,
            })
    }

    /// Every block of the given sources (all sources when `None`) whose
    /// newest line is at or after `since_ns`.
    pub fn blocks(
        &self,
        searcher: &tantivy::Searcher,
        sources: Option<&[u64]>,
        since_ns: Option<i64>,
    ) -> Result<Vec<BlockRef>, PartitionError> {
        let query: Box<dyn Query> = match sources {
            Some(ids) => Box::new(TermSetQuery::new(
                ids.iter()
                    .map(|&id| Term::from_field_u64(self.fields.source, id)),
            )),
            None => Box::new(AllQuery),
        };
        let mut refs =
            searcher
                .search(&*query, &BlockRefs)
                .map_err(|source| PartitionError::Index {
                    dir: self.dir.clone(),
                    source,
                })?;
        if let Some(since) = since_ns {
            refs.retain(|b| b.t_max >= since);
        }
        Ok(refs)
    }

    /// Reads and decompresses one block.
    pub fn read_block(&self, b: &BlockRef) -> Result<LineBlock, PartitionError> {
        let mut buf = vec![0u8; b.data_len as usize];
        self.blocks
            .read_exact_at(&mut buf, b.data_pos)
            .map_err(|source| PartitionError::Io {
                dir: self.dir.clone(),
                source,
            })?;
        LineBlock::decompress(&buf).map_err(|source| PartitionError::Block {
            dir: self.dir.clone(),
            pos: b.data_pos,
            source,
        })
    }

    /// The sources listed in `sources.json`.
    pub fn load_sources(&self) -> Result<HashMap<u64, Source>, PartitionError> {
        let path = self.dir.join("sources.json");
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(source) => {
                return Err(PartitionError::Io {
                    dir: self.dir.clone(),
                    source,
                })
            }
        };
        let list: Vec<Source> =
            serde_json::from_slice(&text).map_err(|source| PartitionError::Sources {
                dir: self.dir.clone(),
                source,
            })?;
        Ok(list.into_iter().map(|s| (s.id(), s)).collect())
    }

    /// Per-source totals over every committed block.
    pub fn totals(
        &self,
        searcher: &tantivy::Searcher,
    ) -> Result<HashMap<u64, SourceTotals>, PartitionError> {
        let mut totals: HashMap<u64, SourceTotals> = HashMap::new();
        for b in self.blocks(searcher, None, None)? {
            totals.entry(b.source).or_default().add_block(&b);
        }
        Ok(totals)
    }
}
