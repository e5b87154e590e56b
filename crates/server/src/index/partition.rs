//! One split, read side: a tantivy index with one document per sealed
//! block, the block file holding the blocks' zstd bytes, and the list of
//! sources whose blocks it holds. The same files whether the split is
//! being built on the local disk or published in the object store.
//!
//! ```text
//! <split id>/
//!     index/         tantivy: one doc per block (fast fields + distinct tokens)
//!     blocks.dat     compressed blocks back to back; docs point into it
//!     sources.json   source id -> source, for every source with a block here
//!     terms.dat      a finished split's terms, for partial-word lookups (`term_blob.rs`)
//! ```
//!
//! What a commit makes durable, and in which order, is `writer.rs`'s story.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cblogs_core::Source;
use tantivy::query::{AllQuery, Query, TermSetQuery};
use tantivy::{Index, IndexReader, ReloadPolicy, Term};

use super::columns::BlockRefs;
use super::columns::{BlockRef, SourceTotals};
use super::schema::{schema, Fields};
use super::term_blob::{TermBlob, TERMS_FILE};
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

/// The read side of a split, shared by queries.
pub struct Partition {
    /// The split's id (`split_id.rs`).
    pub id: String,
    /// The start of the `storage.partition_secs` window its blocks belong to.
    pub start_ns: i64,
    /// Unique among the partitions this process opened: a partition
    /// deleted by retention and made again has another one, so caches
    /// keyed by it never serve the old one's blocks.
    pub uid: u64,
    pub(super) dir: PathBuf,
    pub(super) index: Index,
    reader: IndexReader,
    pub(super) fields: Fields,
    /// `blocks.dat`: a file here (opened for appending while the split is
    /// built), or an object in a remote store.
    pub(super) blocks: Arc<SplitBlocks>,
}

/// A split's `blocks.dat`, readable apart from its index: a search keeps
/// this for the blocks it reads after planning, so that it does not keep
/// the index (which the disk cache may then evict) open.
pub struct SplitBlocks {
    /// The [`Partition::uid`] of the split.
    pub uid: u64,
    /// The split's folder, for errors.
    dir: PathBuf,
    file: BlockFile,
}

impl SplitBlocks {
    /// The file, if `blocks.dat` is one here.
    pub(super) fn local(&self) -> Option<&File> {
        self.file.local()
    }

    /// The split's id (its folder's name).
    pub fn split_id(&self) -> &str {
        self.dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// Its blocks are in a remote store: each read is a request, worth
    /// making several at once.
    pub fn is_remote(&self) -> bool {
        self.local().is_none()
    }

    /// Reading block `b` is a request to a remote store (it is not kept
    /// on this disk).
    pub fn needs_request(&self, b: &BlockRef) -> bool {
        match &self.file {
            BlockFile::Local(_) => false,
            BlockFile::Remote(r) => !r.is_kept(b.data_pos),
        }
    }

    /// Reads and decompresses one block.
    pub fn read_block(&self, b: &BlockRef) -> Result<LineBlock, PartitionError> {
        let read = match &self.file {
            BlockFile::Local(f) => {
                let mut buf = vec![0u8; b.data_len as usize];
                f.read_exact_at(&mut buf, b.data_pos).map(|()| buf)
            }
            BlockFile::Remote(r) => r.read_range(b.data_pos, b.data_len),
        };
        let buf = read.map_err(|source| PartitionError::Io {
            dir: self.dir.clone(),
            source,
        })?;
        LineBlock::decompress(&buf).map_err(|source| PartitionError::Block {
            dir: self.dir.clone(),
            pos: b.data_pos,
            source,
        })
    }
}

/// A new [`Partition::uid`].
pub fn new_uid() -> u64 {
    static NEXT_UID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT_UID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Reads byte ranges of a split's `blocks.dat` kept elsewhere (a remote
/// object store). Its errors say where it is.
pub trait RangeRead: Send + Sync {
    fn read_range(&self, pos: u64, len: u64) -> std::io::Result<Vec<u8>>;

    /// The range at `pos` is kept on this disk: reading it makes no
    /// request.
    fn is_kept(&self, pos: u64) -> bool;
}

enum BlockFile {
    Local(File),
    Remote(Box<dyn RangeRead>),
}

impl BlockFile {
    /// The file, if `blocks.dat` is one here.
    fn local(&self) -> Option<&File> {
        match self {
            BlockFile::Local(f) => Some(f),
            BlockFile::Remote(_) => None,
        }
    }
}

/// Whether a split's files may be written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Being built: blocks are appended, the index committed.
    Building,
    /// Published: never changed again.
    ReadOnly,
}

impl Partition {
    /// Starts a new split of the window at `start_ns`, in a folder of its
    /// own under `root`.
    pub fn create(root: &Path, start_ns: i64) -> Result<Partition, PartitionError> {
        let id = super::split_id::new_split_id(start_ns);
        Partition::open(&root.join(&id), id, start_ns, Access::Building)
    }

    /// Opens the split `id` whose files are in `dir`.
    pub fn open(
        dir: &Path,
        id: String,
        start_ns: i64,
        access: Access,
    ) -> Result<Partition, PartitionError> {
        Partition::open_with(dir, id, start_ns, access, None, new_uid())
    }

    /// Opens the published split `id` whose index and `sources.json` are
    /// in `dir`, and whose blocks are read through `blocks`. `uid` is the
    /// split's (from [`new_uid`]), kept when its index is opened again
    /// (the split never changes), so the blocks cached stay valid.
    pub fn open_remote(
        dir: &Path,
        id: String,
        start_ns: i64,
        blocks: Box<dyn RangeRead>,
        uid: u64,
    ) -> Result<Partition, PartitionError> {
        Partition::open_with(dir, id, start_ns, Access::ReadOnly, Some(blocks), uid)
    }

    fn open_with(
        dir: &Path,
        id: String,
        start_ns: i64,
        access: Access,
        remote: Option<Box<dyn RangeRead>>,
        uid: u64,
    ) -> Result<Partition, PartitionError> {
        let dir = dir.to_owned();
        let io = |source| PartitionError::Io {
            dir: dir.clone(),
            source,
        };
        let index_dir = dir.join("index");
        let idx = |source| PartitionError::Index {
            dir: dir.clone(),
            source,
        };
        let (schema, fields) = schema();
        let index = if index_dir.join("meta.json").exists() {
            Index::open_in_dir(&index_dir).map_err(idx)?
        } else if access == Access::Building {
            fs::create_dir_all(&index_dir).map_err(io)?;
            Index::create_in_dir(&index_dir, schema).map_err(idx)?
        } else {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the split has no index/meta.json",
            )));
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(idx)?;
        let building = access == Access::Building;
        let blocks = match remote {
            Some(r) => BlockFile::Remote(r),
            None => BlockFile::Local(
                OpenOptions::new()
                    .create(building)
                    .append(building)
                    .read(true)
                    .open(dir.join("blocks.dat"))
                    .map_err(io)?,
            ),
        };
        Ok(Partition {
            id,
            start_ns,
            uid,
            blocks: Arc::new(SplitBlocks {
                uid,
                dir: dir.clone(),
                file: blocks,
            }),
            dir,
            index,
            reader,
            fields,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes in `blocks.dat` (0 if it cannot be read).
    pub fn blocks_len(&self) -> u64 {
        self.blocks
            .local()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len())
    }

    /// The split's files, relative to its folder, with their sizes: what
    /// an upload sends. Only the index files the newest commit uses
    /// (`meta.json` and its segments' files): a merge that an earlier
    /// writer of the split started may still be writing a segment of its
    /// own in the folder, which no commit will ever use, and whose size
    /// changes while it is read.
    pub fn files(&self) -> Result<Vec<(String, u64)>, PartitionError> {
        let io = |source| PartitionError::Io {
            dir: self.dir.clone(),
            source,
        };
        let mut files = Vec::new();
        for name in ["blocks.dat", "sources.json", TERMS_FILE] {
            match fs::metadata(self.dir.join(name)) {
                Ok(m) => files.push((name.to_owned(), m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        let metas =
            self.index
                .searchable_segment_metas()
                .map_err(|source| PartitionError::Index {
                    dir: self.dir.clone(),
                    source,
                })?;
        let mut names: std::collections::BTreeSet<PathBuf> =
            metas.iter().flat_map(|m| m.list_files()).collect();
        names.insert(PathBuf::from("meta.json"));
        for name in names {
            // A component a segment does not have (no deletes) is no file.
            match fs::metadata(self.dir.join("index").join(&name)) {
                Ok(m) => files.push((format!("index/{}", name.display()), m.len())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        files.sort();
        Ok(files)
    }

    /// Writes the terms of the split's one segment into `terms.dat`, once
    /// the split is finished (a split of several segments, or of none,
    /// gets none: its readers build each segment's terms).
    pub(super) fn write_term_list(&self) -> Result<(), PartitionError> {
        let searcher = self.searcher();
        let [segment] = searcher.segment_readers() else {
            return Ok(());
        };
        let inverted = segment
            .inverted_index(self.fields.tokens)
            .map_err(|e| self.index_error(e))?;
        TermBlob::build(&inverted)
            .and_then(|terms| terms.write(&self.dir, segment.segment_id()))
            .map_err(|e| self.io_error(e))
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
        self.blocks.read_block(b)
    }

    /// Its blocks are in a remote store: each read is a request, worth
    /// making several at once.
    pub fn blocks_are_remote(&self) -> bool {
        self.blocks.is_remote()
    }

    /// Its `blocks.dat`, to read blocks from without holding the index.
    pub fn split_blocks(&self) -> Arc<SplitBlocks> {
        self.blocks.clone()
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cblogs_core::{LineFlags, Source, Stream};

    use super::*;
    use crate::index::PreparedBlock;

    /// An upload sends what the newest commit uses, each at the size it
    /// has: not the file of a merge an earlier writer left running, which
    /// no commit uses and which grows while it is read.
    #[test]
    fn files_are_those_the_newest_commit_uses() {
        let dir = tempfile::tempdir().unwrap();
        let part = Arc::new(Partition::create(dir.path(), 0).unwrap());
        let src = Arc::new(Source::example("r/prod/j", 0, "p", Stream::Stdout));
        let mut writer = part.writer(20_000_000).unwrap();
        let mut b = LineBlock::new();
        b.push(0, 1, LineFlags::default(), b"a line");
        writer
            .add_block(&src, PreparedBlock::new(src.id(), &b, 3).unwrap())
            .unwrap();
        writer.commit().unwrap();
        drop(writer);
        let index = part.dir().join("index");
        std::fs::write(index.join("0123456789abcdef0123456789abcdef.idx"), b"half").unwrap();
        let files = part.files().unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"blocks.dat"), "{names:?}");
        assert!(names.contains(&"index/meta.json"), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with(".idx")), "{names:?}");
        assert!(
            !names.iter().any(|n| n.contains("0123456789abcdef")),
            "{names:?}"
        );
        for (name, len) in &files {
            assert_eq!(
                std::fs::metadata(part.dir().join(name)).unwrap().len(),
                *len
            );
        }
    }
}
