//! What the index says about each block, read from its fast fields: where
//! its bytes are and what it covers ([`BlockRef`]), per segment
//! ([`BlockRefColumns`]) or for every matching doc ([`BlockRefs`]).

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

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
    /// The lowest offset of its blocks (0 before the first block).
    pub off_start: u64,
    pub off_end: u64,
}

impl SourceTotals {
    pub fn add_block(&mut self, b: &BlockRef) {
        self.off_start = if self.lines == 0 && self.off_end == 0 {
            b.off_start
        } else {
            self.off_start.min(b.off_start)
        };
        self.lines += b.n_lines;
        self.bytes += b.text_bytes;
        self.t_max = self.t_max.max(b.t_max);
        self.off_end = self.off_end.max(b.off_end);
    }
}

/// Collects a [`BlockRef`] for every matching doc from the fast fields.
pub(super) struct BlockRefs;

pub(super) struct BlockRefColumns {
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
    pub(super) fn open(segment: &SegmentReader) -> tantivy::Result<BlockRefColumns> {
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
    pub(super) fn source(&self, doc: DocId) -> u64 {
        self.source.first(doc).unwrap_or_default()
    }

    pub(super) fn get(&self, doc: DocId) -> BlockRef {
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
