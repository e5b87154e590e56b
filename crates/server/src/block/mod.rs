//! Blocks: runs of one source's lines, the unit of storage and indexing.
//!
//! A [`LineBlock`] is columnar (offsets, times, flags, line ends, and the
//! text bytes back to back) so that appending a line is a few `Vec` pushes
//! and the encoded form compresses well: offsets are stored as the gap
//! beyond the previous line's end (almost always 0), times as deltas.
//!
//! A block also knows the stream offset it covers up to: normally the end
//! of its last line, but a line cut at the length limit, a partial line and
//! a batch's declared end say more than the stored bytes can.
//!
//! Blocks are what every layer hands on: the ingestor builds one per batch,
//! the WAL writes it (`codec`), the store keeps open and sealed ones in
//! memory, the index compresses and tokenizes them, and readers decode them.

mod codec;

use cblogs_core::LineFlags;

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("block is truncated")]
    Truncated,
    #[error("block is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("block decompression failed: {0}")]
    Zstd(#[from] std::io::Error),
}

/// One line borrowed from a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef<'a> {
    pub offset: u64,
    pub time_ns: i64,
    pub flags: LineFlags,
    pub bytes: &'a [u8],
}

#[derive(Debug, Clone, Default)]
pub struct LineBlock {
    offsets: Vec<u64>,
    times: Vec<i64>,
    flags: Vec<u8>,
    /// `ends[i]` is where line `i` ends in the text (`text[text_start..]`).
    ends: Vec<u32>,
    text: Vec<u8>,
    /// Where the text starts in `text`: 0, but for a block decoded from its
    /// stored form, whose buffer is kept whole rather than its text copied
    /// out of it (`codec.rs`; the copy was 8 % of a dense search's CPU).
    text_start: usize,
    /// Every stream offset below this is covered by this block or before it.
    covered_end: u64,
}

impl LineBlock {
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty block with room for `lines` lines of `text_bytes` in all.
    pub fn with_capacity(lines: usize, text_bytes: usize) -> Self {
        LineBlock {
            offsets: Vec::with_capacity(lines),
            times: Vec::with_capacity(lines),
            flags: Vec::with_capacity(lines),
            ends: Vec::with_capacity(lines),
            text: Vec::with_capacity(text_bytes),
            text_start: 0,
            covered_end: 0,
        }
    }

    /// Gives back the room its columns grew into and no longer need.
    pub fn shrink_to_fit(&mut self) {
        self.offsets.shrink_to_fit();
        self.times.shrink_to_fit();
        self.flags.shrink_to_fit();
        self.ends.shrink_to_fit();
        self.text.shrink_to_fit();
    }

    pub fn push(&mut self, offset: u64, time_ns: i64, flags: LineFlags, bytes: &[u8]) {
        self.offsets.push(offset);
        self.times.push(time_ns);
        self.flags.push(flags.to_bits());
        self.text.extend_from_slice(bytes);
        // Lines are capped far below 4 GiB (max_line_bytes) and blocks seal
        // long before, so the end always fits.
        self.ends
            .push(u32::try_from(self.text.len() - self.text_start).unwrap_or(u32::MAX));
        // A partial line has no newline yet; a cut line was longer, which
        // only the sender's batch end can tell (see `cover_to`).
        let newline = u64::from(!flags.partial);
        self.covered_end = self.covered_end.max(offset + bytes.len() as u64 + newline);
    }

    /// Adds every line of `next`, which follows this block in the same
    /// stream (a merge combining small blocks), and what it covers.
    pub fn append(&mut self, next: &LineBlock) {
        for l in next.lines() {
            self.push(l.offset, l.time_ns, l.flags, l.bytes);
        }
        self.cover_to(next.covered_end);
    }

    /// Records that the stream is covered up to `end` (a batch's declared end).
    /// Moves every line `by` bytes further into the stream (lines pushed
    /// without offsets, placed at their source's end).
    pub fn shift(&mut self, by: u64) {
        for o in &mut self.offsets {
            *o += by;
        }
        self.covered_end += by;
    }

    /// Marks line `i` as continuing the event of the line before it, or
    /// as opening one (`multiline/`).
    pub fn set_continues(&mut self, i: usize, continues: bool) {
        let bit = LineFlags {
            continues: true,
            ..LineFlags::default()
        }
        .to_bits();
        if continues {
            self.flags[i] |= bit;
        } else {
            self.flags[i] &= !bit;
        }
    }

    pub fn cover_to(&mut self, end: u64) {
        self.covered_end = self.covered_end.max(end);
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Bytes of line text held.
    pub fn text_len(&self) -> usize {
        self.text.len() - self.text_start
    }

    /// About how much memory the block takes: its text and columns.
    pub fn memory_bytes(&self) -> usize {
        self.text.capacity() + self.offsets.capacity() * 21
    }

    pub fn line(&self, i: usize) -> LineRef<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        LineRef {
            offset: self.offsets[i],
            time_ns: self.times[i],
            flags: LineFlags::from_bits(self.flags[i]),
            bytes: &self.text()[start..self.ends[i] as usize],
        }
    }

    pub fn lines(&self) -> impl DoubleEndedIterator<Item = LineRef<'_>> + ExactSizeIterator + '_ {
        (0..self.len()).map(|i| self.line(i))
    }

    /// Every line's bytes, back to back (no separators).
    pub fn text(&self) -> &[u8] {
        &self.text[self.text_start..]
    }

    /// The line that holds byte `pos` of [`LineBlock::text`].
    pub fn line_at(&self, pos: usize) -> usize {
        self.ends.partition_point(|&e| e as usize <= pos)
    }

    /// Where line `i` ends in [`LineBlock::text`].
    pub fn line_end(&self, i: usize) -> usize {
        self.ends[i] as usize
    }

    /// The time of its first line.
    pub fn first_time(&self) -> Option<i64> {
        self.times.first().copied()
    }

    pub fn first_offset(&self) -> Option<u64> {
        self.offsets.first().copied()
    }

    /// The stream offset this block covers up to; `None` when empty.
    pub fn end_offset(&self) -> Option<u64> {
        (!self.is_empty()).then_some(self.covered_end)
    }

    pub fn time_range(&self) -> Option<(i64, i64)> {
        let min = self.times.iter().copied().min()?;
        let max = self.times.iter().copied().max()?;
        Some((min, max))
    }
}
