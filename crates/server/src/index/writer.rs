//! The write side of a partition: sealed blocks made ready for the index
//! ([`PreparedBlock`], on every core), appended to `blocks.dat` and added as
//! documents ([`PartitionWriter`]), then committed.
//!
//! Durability: block bytes are appended and synced, `sources.json` is
//! replaced atomically, and only then is the tantivy commit made. The commit
//! is the point of truth: bytes in `blocks.dat` that no committed doc points
//! at (a crash between the two) are never read, and the same lines are still
//! in the WAL, which is trimmed only after the commit.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::sync::Arc;

use cblogs_core::Source;
use tantivy::{IndexWriter, TantivyDocument, Term};

use super::columns::BlockRef;
use super::partition::{Partition, PartitionError};
use crate::block::LineBlock;

/// A sealed block made ready for the index: its bytes compressed and its
/// distinct tokens listed. This is most of a commit's work and needs no
/// partition, so the committer makes these on every core at once.
pub struct PreparedBlock {
    compressed: Vec<u8>,
    tokens: String,
    /// What the block covers; where it will live in `blocks.dat` is filled
    /// in by [`PartitionWriter::add_block`].
    block: BlockRef,
}

impl PreparedBlock {
    pub fn new(source: u64, lines: &LineBlock, zstd_level: i32) -> std::io::Result<PreparedBlock> {
        let (t_min, t_max) = lines.time_range().unwrap_or_default();
        Ok(PreparedBlock {
            compressed: lines.compress(zstd_level)?,
            tokens: super::tokens::distinct_tokens(lines),
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

impl Partition {
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
        let io = |source| PartitionError::Io {
            dir: self.dir.clone(),
            source,
        };
        let data_len = self
            .blocks
            .local()
            .ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "a published split is never written to",
                ))
            })?
            .metadata()
            .map_err(io)?
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
        prepared: PreparedBlock,
    ) -> Result<BlockRef, PartitionError> {
        let dir = || self.part.dir.clone();
        let PreparedBlock {
            compressed,
            tokens,
            mut block,
        } = prepared;
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

    /// Deletes every block of sources `ids` (a cluster's node fenced out
    /// of them); done at the next [`PartitionWriter::commit`]. Their
    /// bytes stay in `blocks.dat`, pointed at by no document.
    pub fn delete_sources(&mut self, ids: &[u64]) {
        for id in ids {
            self.writer
                .delete_term(Term::from_field_u64(self.part.fields.source, *id));
        }
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

    /// Ends the split's writing, before its upload: its segments merged
    /// into one (one commit per round made many small ones; one segment
    /// is fewer objects to upload and fewer to read), committed, and the
    /// files no commit uses deleted; then its terms written down
    /// (`terms.dat`, `term_blob.rs`), so that no reader walks them again.
    pub fn finish(mut self) -> Result<(), PartitionError> {
        // No merge of its own choosing: one started by the commit below
        // would take segments from under the merge of all of them, which
        // then fails ("the segments that were merged could not be found",
        // seen at 2 GiB in `cblogs-bench objstore`).
        self.writer
            .set_merge_policy(Box::new(tantivy::merge_policy::NoMergePolicy));
        self.commit()?;
        let dir = self.part.dir.clone();
        let idx = |source| PartitionError::Index {
            dir: dir.clone(),
            source,
        };
        let segments = self.part.index.searchable_segment_ids().map_err(idx)?;
        if segments.len() > 1 {
            self.writer.merge(&segments).wait().map_err(idx)?;
        }
        self.writer.commit().map_err(idx)?;
        self.writer.garbage_collect_files().wait().map_err(idx)?;
        self.writer.wait_merging_threads().map_err(idx)?;
        self.part.reload()?;
        self.part.write_term_list()
    }

    fn try_commit(&mut self) -> Result<(), PartitionError> {
        let dir = self.part.dir.clone();
        let io = |source| PartitionError::Io {
            dir: dir.clone(),
            source,
        };
        if !self.data.is_empty() {
            let Some(mut f) = self.part.blocks.local() else {
                return Err(io(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "a published split is never written to",
                )));
            };
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
