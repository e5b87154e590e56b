//! One time partition: a tantivy index with one document per sealed block,
//! the block file holding the blocks' zstd bytes, and the list of sources
//! whose blocks it holds.
//!
//! ```text
//! partitions/p-<start unix secs>/
//!     index/         tantivy: one doc per block (fast fields + distinct tokens)
//!     blocks.dat     compressed blocks back to back; docs point into it
//!     sources.json   source id -> source, for every source with a block here
//! ```
//!
//! Durability: block bytes are appended and synced, `sources.json` is
//! replaced atomically, and only then is the tantivy commit made. The commit
//! is the point of truth: bytes in `blocks.dat` that no committed doc points
//! at (a crash between the two) are never read, and the same lines are still
//! in the WAL, which is trimmed only after the commit.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cblogs_core::Source;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{AllQuery, Query, TermSetQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING,
};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal, SegmentReader,
    TantivyDocument, Term,
};

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

/// The index schema's fields.
#[derive(Clone, Copy)]
struct Fields {
    source: Field,
    job: Field,
    cluster: Field,
    host: Field,
    process: Field,
    stream: Field,
    instance: Field,
    t_min: Field,
    t_max: Field,
    off_start: Field,
    off_end: Field,
    n_lines: Field,
    text_bytes: Field,
    data_pos: Field,
    data_len: Field,
    tokens: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // Only the presence of a token in a block matters: no frequencies, no
    // positions, nothing stored (the text lives in blocks.dat). The value is
    // already cut and lowercased (`LineBlock::distinct_tokens`), so tantivy
    // only splits it on spaces.
    let tokens = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("whitespace")
            .set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        source: b.add_u64_field("source", INDEXED | FAST),
        job: b.add_text_field("job", STRING | FAST),
        cluster: b.add_text_field("cluster", STRING | FAST),
        host: b.add_text_field("host", STRING | FAST),
        process: b.add_text_field("process", STRING | FAST),
        stream: b.add_text_field("stream", STRING | FAST),
        instance: b.add_u64_field("instance", INDEXED | FAST),
        t_min: b.add_i64_field("t_min", INDEXED | FAST),
        t_max: b.add_i64_field("t_max", INDEXED | FAST),
        off_start: b.add_u64_field("off_start", FAST),
        off_end: b.add_u64_field("off_end", FAST),
        n_lines: b.add_u64_field("n_lines", FAST),
        text_bytes: b.add_u64_field("text_bytes", FAST),
        data_pos: b.add_u64_field("data_pos", FAST),
        data_len: b.add_u64_field("data_len", FAST),
        tokens: b.add_text_field("tokens", tokens),
    };
    (b.build(), fields)
}

/// A sealed block made ready for the index: its bytes compressed and its
/// distinct tokens listed. This is most of a commit's work and needs no
/// partition, so the committer makes these on every core at once.
pub struct CompressedBlock {
    compressed: Vec<u8>,
    tokens: String,
    /// What the block covers; where it will live in `blocks.dat` is filled
    /// in by [`PartitionWriter::add_block`].
    block: BlockRef,
}

impl CompressedBlock {
    pub fn new(
        source: u64,
        lines: &LineBlock,
        zstd_level: i32,
    ) -> std::io::Result<CompressedBlock> {
        let (t_min, t_max) = lines.time_range().unwrap_or_default();
        Ok(CompressedBlock {
            compressed: lines.compress(zstd_level)?,
            tokens: lines.distinct_tokens(),
            block: BlockRef {
                source,
                t_min,
                t_max,
                off_start: lines.first_offset().unwrap_or_default(),
                off_end: lines.end_offset().unwrap_or_default(),
                n_lines: lines.len() as u64,
                text_bytes: lines.text_len() as u64,
                data_pos: 0,
                data_len: 0,
            },
        })
    }
}

/// Where a sealed block lives and what it covers: read from fast fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    pub source: u64,
    pub t_min: i64,
    pub t_max: i64,
    pub off_start: u64,
    pub off_end: u64,
    pub n_lines: u64,
    pub text_bytes: u64,
    pub data_pos: u64,
    pub data_len: u64,
}

/// Per-source totals of one partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceTotals {
    pub lines: u64,
    pub bytes: u64,
    pub t_max: i64,
    pub off_end: u64,
}

impl SourceTotals {
    pub fn add_block(&mut self, b: &BlockRef) {
        self.lines += b.n_lines;
        self.bytes += b.text_bytes;
        self.t_max = self.t_max.max(b.t_max);
        self.off_end = self.off_end.max(b.off_end);
    }
}

/// The read side of a partition, shared by queries.
pub struct Partition {
    pub start_ns: i64,
    /// Unique among the partitions this process opened: a partition
    /// deleted by retention and made again has another one, so caches
    /// keyed by it never serve the old one's blocks.
    pub uid: u64,
    dir: PathBuf,
    index: Index,
    reader: IndexReader,
    fields: Fields,
    blocks: File,
}

pub fn dir_name(start_ns: i64) -> String {
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

    /// The field holding each block's distinct tokens.
    pub(crate) fn tokens_field(&self) -> Field {
        self.fields.tokens
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

    /// The write side; the committer holds one per partition it writes to.
    pub fn writer(
        self: &Arc<Self>,
        memory_bytes: usize,
    ) -> Result<PartitionWriter, PartitionError> {
        let writer = self
            .index
            .writer_with_num_threads(1, memory_bytes)
            .map_err(|source| PartitionError::Index {
                dir: self.dir.clone(),
                source,
            })?;
        let data_len = self
            .blocks
            .metadata()
            .map_err(|source| PartitionError::Io {
                dir: self.dir.clone(),
                source,
            })?
            .len();
        let sources = self
            .load_sources()?
            .into_iter()
            .map(|(id, s)| (id, Arc::new(s)))
            .collect();
        Ok(PartitionWriter {
            part: self.clone(),
            writer,
            data: Vec::new(),
            data_len,
            sources,
            sources_dirty: false,
        })
    }
}

/// Collects a [`BlockRef`] for every matching doc from the fast fields.
struct BlockRefs;

pub(crate) struct BlockRefColumns {
    source: Column<u64>,
    t_min: Column<i64>,
    t_max: Column<i64>,
    off_start: Column<u64>,
    off_end: Column<u64>,
    n_lines: Column<u64>,
    text_bytes: Column<u64>,
    data_pos: Column<u64>,
    data_len: Column<u64>,
    out: Vec<BlockRef>,
}

impl Collector for BlockRefs {
    type Fruit = Vec<BlockRef>;
    type Child = BlockRefColumns;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<BlockRefColumns> {
        BlockRefColumns::open(segment)
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<BlockRef>>) -> tantivy::Result<Vec<BlockRef>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl BlockRefColumns {
    /// The columns of one segment.
    pub(crate) fn open(segment: &SegmentReader) -> tantivy::Result<BlockRefColumns> {
        let ff = segment.fast_fields();
        Ok(BlockRefColumns {
            source: ff.u64("source")?,
            t_min: ff.i64("t_min")?,
            t_max: ff.i64("t_max")?,
            off_start: ff.u64("off_start")?,
            off_end: ff.u64("off_end")?,
            n_lines: ff.u64("n_lines")?,
            text_bytes: ff.u64("text_bytes")?,
            data_pos: ff.u64("data_pos")?,
            data_len: ff.u64("data_len")?,
            out: Vec::new(),
        })
    }

    /// The source of `doc`, read alone (to skip other sources' docs cheaply).
    pub(crate) fn source(&self, doc: DocId) -> u64 {
        self.source.first(doc).unwrap_or_default()
    }

    pub(crate) fn get(&self, doc: DocId) -> BlockRef {
        // Every field is set on every doc; a missing value reads as 0.
        BlockRef {
            source: self.source.first(doc).unwrap_or_default(),
            t_min: self.t_min.first(doc).unwrap_or_default(),
            t_max: self.t_max.first(doc).unwrap_or_default(),
            off_start: self.off_start.first(doc).unwrap_or_default(),
            off_end: self.off_end.first(doc).unwrap_or_default(),
            n_lines: self.n_lines.first(doc).unwrap_or_default(),
            text_bytes: self.text_bytes.first(doc).unwrap_or_default(),
            data_pos: self.data_pos.first(doc).unwrap_or_default(),
            data_len: self.data_len.first(doc).unwrap_or_default(),
        }
    }
}

impl SegmentCollector for BlockRefColumns {
    type Fruit = Vec<BlockRef>;

    fn collect(&mut self, doc: DocId, _: Score) {
        let b = self.get(doc);
        self.out.push(b);
    }

    fn harvest(self) -> Vec<BlockRef> {
        self.out
    }
}

/// Adds blocks to one partition and commits them.
pub struct PartitionWriter {
    part: Arc<Partition>,
    writer: IndexWriter,
    /// Compressed blocks not yet appended to `blocks.dat`.
    data: Vec<u8>,
    data_len: u64,
    sources: HashMap<u64, Arc<Source>>,
    sources_dirty: bool,
}

impl PartitionWriter {
    /// Appends a compressed block to the block file and queues its doc;
    /// visible after [`PartitionWriter::commit`].
    pub fn add_block(
        &mut self,
        source: &Arc<Source>,
        compressed: CompressedBlock,
    ) -> Result<BlockRef, PartitionError> {
        let dir = || self.part.dir.clone();
        let CompressedBlock {
            compressed,
            tokens,
            mut block,
        } = compressed;
        block.data_pos = self.data_len + self.data.len() as u64;
        block.data_len = compressed.len() as u64;
        self.data.extend_from_slice(&compressed);
        let f = self.part.fields;
        let mut doc = TantivyDocument::default();
        doc.add_u64(f.source, block.source);
        doc.add_text(f.job, source.job.role_env_name());
        doc.add_text(f.cluster, &source.cluster);
        doc.add_text(f.host, &source.host);
        doc.add_text(f.process, &source.process);
        doc.add_text(f.stream, source.stream.as_str());
        doc.add_u64(f.instance, u64::from(source.instance));
        doc.add_i64(f.t_min, block.t_min);
        doc.add_i64(f.t_max, block.t_max);
        doc.add_u64(f.off_start, block.off_start);
        doc.add_u64(f.off_end, block.off_end);
        doc.add_u64(f.n_lines, block.n_lines);
        doc.add_u64(f.text_bytes, block.text_bytes);
        doc.add_u64(f.data_pos, block.data_pos);
        doc.add_u64(f.data_len, block.data_len);
        doc.add_text(f.tokens, &tokens);
        self.writer
            .add_document(doc)
            .map_err(|source| PartitionError::Index { dir: dir(), source })?;
        if let std::collections::hash_map::Entry::Vacant(e) = self.sources.entry(block.source) {
            e.insert(source.clone());
            self.sources_dirty = true;
        }
        Ok(block)
    }

    /// Makes the queued blocks durable and visible: block bytes synced,
    /// sources.json replaced, tantivy commit, reader reloaded. On error the
    /// queued docs are rolled back (their lines are still in the WAL).
    pub fn commit(&mut self) -> Result<(), PartitionError> {
        let result = self.try_commit();
        if result.is_err() {
            self.data.clear();
            if let Err(e) = self.writer.rollback() {
                tracing::error!(dir = %self.part.dir.display(), error = %e, "index rollback failed");
            }
        }
        result
    }

    fn try_commit(&mut self) -> Result<(), PartitionError> {
        let dir = self.part.dir.clone();
        let io = |source| PartitionError::Io {
            dir: dir.clone(),
            source,
        };
        if !self.data.is_empty() {
            let mut f = &self.part.blocks;
            if let Err(e) = f.write_all(&self.data).and_then(|_| f.sync_data()) {
                // A partial write (a full disk) would shift every later
                // block: cut the file back to what the index knows.
                if let Err(cut) = f.set_len(self.data_len) {
                    tracing::error!(dir = %dir.display(), error = %cut, "cannot cut a partial block write off blocks.dat");
                }
                return Err(io(e));
            }
            self.data_len += self.data.len() as u64;
            self.data.clear();
        }
        if self.sources_dirty {
            let list: Vec<&Source> = self.sources.values().map(|s| &**s).collect();
            let json = serde_json::to_vec(&list).map_err(|source| PartitionError::Sources {
                dir: dir.clone(),
                source,
            })?;
            let tmp = dir.join("sources.json.tmp");
            let mut f = File::create(&tmp).map_err(io)?;
            f.write_all(&json).and_then(|_| f.sync_all()).map_err(io)?;
            fs::rename(&tmp, dir.join("sources.json")).map_err(io)?;
            File::open(&dir).and_then(|d| d.sync_all()).map_err(io)?;
            self.sources_dirty = false;
        }
        self.writer
            .commit()
            .map_err(|source| PartitionError::Index {
                dir: dir.clone(),
                source,
            })?;
        self.part.reload()
    }
}
