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
//! Encoded layout (then compressed whole with zstd):
//! `varint n` · `varint covered_end` · n × `varint offset_gap` · n × `zigzag varint time_delta` ·
//! n × `u8 flags` · n × `varint len` · the text bytes.

use std::cell::RefCell;
use std::collections::HashSet;
use std::hash::BuildHasher;

use cblogs_core::LineFlags;
use rustc_hash::FxBuildHasher;

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
    /// `ends[i]` is where line `i` ends in `text`.
    ends: Vec<u32>,
    text: Vec<u8>,
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
            .push(u32::try_from(self.text.len()).unwrap_or(u32::MAX));
        // A partial line has no newline yet; a cut line was longer, which
        // only the sender's batch end can tell (see `cover_to`).
        let newline = u64::from(!flags.partial);
        self.covered_end = self.covered_end.max(offset + bytes.len() as u64 + newline);
    }

    /// Records that the stream is covered up to `end` (a batch's declared end).
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
        self.text.len()
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
            bytes: &self.text[start..self.ends[i] as usize],
        }
    }

    pub fn lines(&self) -> impl DoubleEndedIterator<Item = LineRef<'_>> + ExactSizeIterator + '_ {
        (0..self.len()).map(|i| self.line(i))
    }

    /// Every line's bytes, back to back (no separators).
    pub fn text(&self) -> &[u8] {
        &self.text
    }

    /// The line that holds byte `pos` of [`LineBlock::text`].
    pub fn line_at(&self, pos: usize) -> usize {
        self.ends.partition_point(|&e| e as usize <= pos)
    }

    /// Where line `i` ends in [`LineBlock::text`].
    pub fn line_end(&self, i: usize) -> usize {
        self.ends[i] as usize
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

    /// The encoded (uncompressed) form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.text.len() + self.len() * 6 + 8);
        self.encode_into(&mut out);
        out
    }

    /// [`LineBlock::encode`], appended to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.len() as u64);
        put_varint(out, self.covered_end);
        let mut expected = 0u64;
        for (i, &o) in self.offsets.iter().enumerate() {
            // Cut lines were longer than their stored bytes, so a gap can
            // also be "negative" relative to the stored length: zigzag it.
            put_varint(out, zigzag(o.wrapping_sub(expected) as i64));
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            expected = o + u64::from(self.ends[i] - start) + 1;
        }
        let mut prev = 0i64;
        for &t in &self.times {
            put_varint(out, zigzag(t.wrapping_sub(prev)));
            prev = t;
        }
        out.extend_from_slice(&self.flags);
        let mut start = 0u32;
        for &e in &self.ends {
            put_varint(out, u64::from(e - start));
            start = e;
        }
        out.extend_from_slice(&self.text);
    }

    pub fn decode(buf: &[u8]) -> Result<LineBlock, BlockError> {
        let mut r = Reader { buf, pos: 0 };
        let n = usize::try_from(r.varint()?).map_err(|_| BlockError::Corrupt("line count"))?;
        if n > buf.len() {
            return Err(BlockError::Corrupt("line count larger than the block"));
        }
        let covered_end = r.varint()?;
        let gaps: Vec<i64> = (0..n)
            .map(|_| r.varint().map(unzigzag))
            .collect::<Result<_, _>>()?;
        let mut times = Vec::with_capacity(n);
        let mut t = 0i64;
        for _ in 0..n {
            t = t.wrapping_add(unzigzag(r.varint()?));
            times.push(t);
        }
        let flags = r.take(n)?.to_vec();
        let mut ends = Vec::with_capacity(n);
        let mut end = 0u64;
        for _ in 0..n {
            end += r.varint()?;
            ends.push(u32::try_from(end).map_err(|_| BlockError::Corrupt("line length"))?);
        }
        let text = r.take(end as usize)?.to_vec();
        if r.pos != buf.len() {
            return Err(BlockError::Corrupt("trailing bytes"));
        }
        let mut offsets = Vec::with_capacity(n);
        let mut expected = 0u64;
        let mut start = 0u32;
        for (gap, &e) in gaps.iter().zip(&ends) {
            let o = expected.wrapping_add(*gap as u64);
            offsets.push(o);
            expected = o + u64::from(e - start) + 1;
            start = e;
        }
        Ok(LineBlock {
            offsets,
            times,
            flags,
            ends,
            text,
            covered_end,
        })
    }

    /// The encoded block, zstd-compressed. The encoding buffer and the zstd
    /// context are kept per thread: the committer compresses thousands of
    /// blocks a second.
    pub fn compress(&self, level: i32) -> std::io::Result<Vec<u8>> {
        thread_local! {
            static SCRATCH: RefCell<CompressScratch> = const {
                RefCell::new(CompressScratch { encoded: Vec::new(), zstd: None })
            };
        }
        SCRATCH.with(|scratch| {
            let CompressScratch { encoded, zstd } = &mut *scratch.borrow_mut();
            encoded.clear();
            self.encode_into(encoded);
            match zstd {
                Some((l, c)) if *l == level => c.compress(encoded),
                _ => {
                    let mut c = zstd::bulk::Compressor::new(level)?;
                    let out = c.compress(encoded);
                    *zstd = Some((level, c));
                    out
                }
            }
        })
    }

    /// Decodes a block made by [`LineBlock::compress`]. Its frame states
    /// its size, so it is decompressed in one call with a zstd context
    /// kept per thread (searches decompress thousands of blocks).
    pub fn decompress(buf: &[u8]) -> Result<LineBlock, BlockError> {
        thread_local! {
            static CONTEXT: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
                const { RefCell::new(None) };
        }
        let size = match zstd::zstd_safe::get_frame_content_size(buf) {
            Ok(Some(size)) if size <= MAX_BLOCK_BYTES => size as usize,
            _ => return LineBlock::decode(&zstd::stream::decode_all(buf)?),
        };
        let raw = CONTEXT.with(|c| {
            let mut c = c.borrow_mut();
            let d = match &mut *c {
                Some(d) => d,
                None => c.insert(zstd::bulk::Decompressor::new()?),
            };
            d.decompress(buf, size)
        })?;
        LineBlock::decode(&raw)
    }

    /// The block's distinct tokens, lowercased and joined by spaces: what the
    /// index holds for it. Tokens are cut much as tantivy's default
    /// tokenizer cuts them (runs of token characters, see [`is_token_char`],
    /// lowercased char by char), but kept up to [`MAX_TOKEN_BYTES`] where
    /// tantivy drops them at 40; longer ones only mark the block.
    ///
    /// This runs over every sealed byte, so ASCII lines (nearly all of them)
    /// take a path that lowercases into one reused buffer and allocates only
    /// for a token not seen before in the block.
    pub fn distinct_tokens(&self) -> String {
        let mut tokens = DistinctTokens::default();
        self.collect_tokens(&mut tokens);
        tokens.out
    }

    fn collect_tokens(&self, tokens: &mut DistinctTokens) {
        let mut lower = Vec::with_capacity(64);
        for line in self.lines() {
            if line.bytes.is_ascii() {
                tokens.keep_ascii_line(line.bytes, &mut lower);
            } else {
                let text = String::from_utf8_lossy(line.bytes);
                for token in text.split(|c: char| !is_token_char(c)) {
                    if token.is_empty() {
                        continue;
                    }
                    if token.len() >= MAX_TOKEN_BYTES {
                        tokens.keep_long_marker();
                        continue;
                    }
                    // Char by char, as tantivy's LowerCaser does (no
                    // final-sigma rule: `ΟΔΟΣ` → `οδοσ`, not `οδος`).
                    let folded: String = token.chars().flat_map(char::to_lowercase).collect();
                    tokens.keep(folded.as_bytes());
                }
            }
        }
    }
}

/// The largest block a frame may claim to hold: far above any real block
/// (`block_bytes` plus one line of at most `max_line_bytes`), so a corrupt
/// size cannot make us allocate gigabytes.
const MAX_BLOCK_BYTES: u64 = 1 << 30;

/// What [`LineBlock::compress`] keeps per thread: the encoding buffer and
/// a zstd context with its level.
struct CompressScratch {
    encoded: Vec<u8>,
    zstd: Option<(i32, zstd::bulk::Compressor<'static>)>,
}

/// The distinct tokens of a block, space-separated, in first-seen order.
/// This runs for every token of every line ingested, so a token of up to 8
/// bytes (most of them: words, short numbers, long numbers' prefix terms)
/// is looked up as one u64 (tokens hold no zero byte, so zero padding is
/// unambiguous), and a longer one by where it already is in `out`, without
/// a copy of its own.
#[derive(Default)]
struct DistinctTokens {
    out: String,
    short: HashSet<u64, FxBuildHasher>,
    long: hashbrown::HashTable<(u32, u32)>,
    long_marker: bool,
}

impl DistinctTokens {
    fn push(&mut self, token: &[u8]) {
        // Tokens are whole UTF-8 strings: ASCII, or a lowercased &str.
        if let Ok(text) = std::str::from_utf8(token) {
            self.out.push_str(text);
            self.out.push(' ');
        }
    }

    /// Every token of an ASCII line, in one pass over its bytes: a short
    /// token is lowercased straight into its u64 key, a long number into
    /// its prefix term's key.
    fn keep_ascii_line(&mut self, bytes: &[u8], lower: &mut Vec<u8>) {
        const _: () = assert!(
            NUMBER_PREFIX_DIGITS == 4,
            "the prefix key below takes 4 bytes"
        );
        let n = bytes.len();
        let mut i = 0;
        while i < n {
            if !bytes[i].is_ascii_alphanumeric() {
                i += 1;
                continue;
            }
            let start = i;
            let mut key = 0u64;
            let mut digits = true;
            while i < n && bytes[i].is_ascii_alphanumeric() {
                let b = bytes[i];
                digits &= b.is_ascii_digit();
                let k = i - start;
                if k < 8 {
                    key |= u64::from(b.to_ascii_lowercase()) << (8 * k);
                }
                i += 1;
            }
            let len = i - start;
            if len >= MAX_TOKEN_BYTES {
                self.keep_long_marker();
                continue;
            }
            if digits && len >= LONG_NUMBER_DIGITS {
                self.keep_short((key & 0xffff_ffff) | (u64::from(b'_') << 32), 5);
            } else if len <= 8 {
                self.keep_short(key, len);
            } else {
                lower.clear();
                lower.extend(bytes[start..i].iter().map(u8::to_ascii_lowercase));
                self.keep_long(lower);
            }
        }
    }

    /// Notes that the block holds a token too long to index.
    fn keep_long_marker(&mut self) {
        if !self.long_marker {
            self.long_marker = true;
            self.push(LONG_TOKEN_MARKER.as_bytes());
        }
    }

    /// A lowercased token (of a line that is not ASCII).
    fn keep(&mut self, token: &[u8]) {
        let term = index_term(token);
        if term.len() <= 8 {
            let mut key = [0u8; 8];
            key[..term.len()].copy_from_slice(term);
            self.keep_short(u64::from_le_bytes(key), term.len());
        } else {
            self.keep_long(term);
        }
    }

    /// A term of up to 8 bytes, packed little-endian into `key`.
    fn keep_short(&mut self, key: u64, len: usize) {
        if self.short.insert(key) {
            self.push(&key.to_le_bytes()[..len]);
        }
    }

    fn keep_long(&mut self, term: &[u8]) {
        let hash = FxBuildHasher.hash_one(term);
        let out = &self.out;
        let at =
            |&(start, len): &(u32, u32)| &out.as_bytes()[start as usize..(start + len) as usize];
        if self.long.find(hash, |e| at(e) == term).is_some() {
            return;
        }
        let start = self.out.len() as u32;
        self.push(term);
        let out = &self.out;
        self.long
            .insert_unique(hash, (start, term.len() as u32), |&(s, l)| {
                FxBuildHasher.hash_one(&out.as_bytes()[s as usize..(s + l) as usize])
            });
    }
}

/// Numbers of at least this many digits (ids, timestamps, sizes) are not
/// indexed whole but by their first [`NUMBER_PREFIX_DIGITS`] digits and a
/// `_`. Measured on the benchmark corpus they were most of the index (0.07
/// of the raw bytes of 0.08) and of its build time; by prefix they cost
/// almost nothing, and a search for such a number still narrows to the
/// blocks holding a number that starts the same way, then verifies every
/// line. `_` never occurs in a natural token, so a prefix term cannot be
/// mistaken for a short number.
pub const LONG_NUMBER_DIGITS: usize = 5;
pub const NUMBER_PREFIX_DIGITS: usize = 4;

/// The term the index holds for a (lowercased) token: the token itself, or
/// for a long number its prefix term (see [`LONG_NUMBER_DIGITS`]).
pub fn index_term(token: &[u8]) -> &[u8] {
    if token.len() >= LONG_NUMBER_DIGITS && token.iter().all(u8::is_ascii_digit) {
        // The token sits in a buffer we may not extend: the prefix term is
        // one of a fixed set, so it is looked up, not built.
        prefix_term(&token[..NUMBER_PREFIX_DIGITS])
    } else {
        token
    }
}

/// `dddd_` for four ASCII digits, from a table made once.
fn prefix_term(digits: &[u8]) -> &'static [u8] {
    static TERMS: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let terms = TERMS.get_or_init(|| {
        let mut t = Vec::with_capacity(10_000 * 5);
        for n in 0..10_000u32 {
            t.extend_from_slice(format!("{n:04}_").as_bytes());
        }
        t
    });
    let n = digits
        .iter()
        .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
    &terms[n * 5..n * 5 + 5]
}

/// Whether `c` belongs to a token: alphanumeric, as for tantivy's default
/// tokenizer, except "other numbers" (`²`, `½`, `①`: Unicode category No).
/// Those are the only alphanumeric characters that are not word characters
/// (`\w`), and leaving them out makes every token character a word
/// character: then a regex's `\b` next to a token character is a token
/// boundary, which lets `-w` and `\b` searches look up whole terms.
pub fn is_token_char(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    c.is_alphanumeric() && !is_other_number(c)
}

fn is_other_number(c: char) -> bool {
    static OTHER_NUMBERS: std::sync::OnceLock<Vec<(char, char)>> = std::sync::OnceLock::new();
    let ranges = OTHER_NUMBERS.get_or_init(|| {
        let hir = regex_syntax::parse(r"\p{No}").ok();
        match hir.as_ref().map(regex_syntax::hir::Hir::kind) {
            Some(regex_syntax::hir::HirKind::Class(regex_syntax::hir::Class::Unicode(c))) => {
                c.ranges().iter().map(|r| (r.start(), r.end())).collect()
            }
            _ => Vec::new(),
        }
    });
    ranges
        .binary_search_by(|&(start, end)| {
            if end < c {
                std::cmp::Ordering::Less
            } else if start > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Tokens of this many bytes or more are not indexed. tantivy's default
/// tokenizer drops them at 40, but then a search for part of one (a hash,
/// `NSConstraintBasedLayoutVisualizeMutuallyExclusiveConstraints`) could
/// not rule out any block that holds one; up to here they are indexed like
/// any token, past it (base64 blobs) they only mark the block.
pub const MAX_TOKEN_BYTES: usize = 256;

/// The term of a block that holds a token of [`MAX_TOKEN_BYTES`] or more:
/// such tokens are not indexed, but a search for a piece of one must still
/// find the block. No token holds `_`, so it cannot be mistaken for one.
pub const LONG_TOKEN_MARKER: &str = "_long_";

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn varint(&mut self) -> Result<u64, BlockError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or(BlockError::Truncated)?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(BlockError::Corrupt("varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], BlockError> {
        let end = self.pos.checked_add(n).ok_or(BlockError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(BlockError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LineBlock {
        let mut b = LineBlock::new();
        b.push(0, 1_000, LineFlags::default(), b"GET /index.html 200\r");
        b.push(21, 1_500, LineFlags::default(), b"");
        b.push(
            22,
            1_400,
            LineFlags {
                cut: true,
                partial: false,
            },
            b"abcdef",
        );
        b.push(4_000, 9_000, LineFlags::default(), b"bad \xff utf8 Timeout");
        b
    }

    #[test]
    fn encode_decode_round_trip() {
        let b = sample();
        let d = LineBlock::decompress(&b.compress(3).unwrap()).unwrap();
        assert_eq!(d.len(), 4);
        for (x, y) in b.lines().zip(d.lines()) {
            assert_eq!(x, y);
        }
        assert_eq!(d.first_offset(), Some(0));
        let mut covered = sample();
        covered.cover_to(9_999);
        let d2 = LineBlock::decompress(&covered.compress(3).unwrap()).unwrap();
        assert_eq!(
            d2.end_offset(),
            Some(9_999),
            "a declared end survives encoding"
        );
        assert_eq!(
            d.end_offset(),
            Some(4_000 + b"bad \xff utf8 Timeout".len() as u64 + 1)
        );
        assert_eq!(d.time_range(), Some((1_000, 9_000)));
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let enc = sample().encode();
        for cut in 0..enc.len() {
            assert!(LineBlock::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        assert!(LineBlock::decompress(b"not zstd").is_err());
    }

    #[test]
    fn tokens_match_tantivys_tokenizer_with_a_longer_limit() {
        let mut b = LineBlock::new();
        let long = "x".repeat(MAX_TOKEN_BYTES);
        let text = format!("ERROR Connexion refusée: Straße=ÄÖ ΟΔΟΣ id=42 {long} y{long} Ok, ok req=1182736 t=20261125 sha1=A94A8FE5CCB19BA61C4C0873D391E987982FBBD3");
        b.push(0, 1, LineFlags::default(), text.as_bytes());
        b.push(
            100,
            2,
            LineFlags::default(),
            b"GET /api/v1/Items?id=42 HTTP/1.1\r",
        );
        b.push(
            200,
            3,
            LineFlags::default(),
            b"ConnectionResetError at 0123456789, 12345678 and 1234 in TimeoutException/ConnectionResetError",
        );
        let all = b.distinct_tokens();
        assert!(all.split_whitespace().any(|t| t == LONG_TOKEN_MARKER));
        let ours: std::collections::BTreeSet<String> = all
            .split_whitespace()
            .filter(|t| *t != LONG_TOKEN_MARKER)
            .map(str::to_owned)
            .collect();
        use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer};
        let mut analyzer = TextAnalyzer::builder(SimpleTokenizer::default())
            .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
            .filter(LowerCaser)
            .build();
        let mut theirs = std::collections::BTreeSet::new();
        for l in b.lines() {
            let mut stream = analyzer.token_stream(std::str::from_utf8(l.bytes).unwrap());
            while let Some(t) = stream.next() {
                let term = index_term(t.text.as_bytes());
                theirs.insert(String::from_utf8(term.to_vec()).unwrap());
            }
        }
        assert_eq!(ours, theirs);
        assert!(ours.contains("refusée") && ours.contains("straße") && ours.contains("items"));
        // Short numbers whole, long ones by prefix.
        assert!(ours.contains("42") && ours.contains("1182_") && ours.contains("2026_"));
        assert!(!ours.contains("1182736"));
        // Past tantivy's 40 bytes, below ours.
        assert!(ours.contains("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"));
        assert!(
            ours.contains("connectionreseterror")
                && ours.contains("0123_")
                && ours.contains("1234")
        );
    }

    #[test]
    fn other_numbers_split_tokens() {
        assert!(is_token_char('a') && is_token_char('é') && is_token_char('Ⅳ'));
        assert!(!is_token_char('²') && !is_token_char('½') && !is_token_char('_'));
        let mut b = LineBlock::new();
        b.push(0, 1, LineFlags::default(), "x² café".as_bytes());
        let t = b.distinct_tokens();
        assert_eq!(t.split_whitespace().collect::<Vec<_>>(), ["x", "café"]);
    }

    #[test]
    fn tokens_are_distinct_and_lowercased() {
        let t = sample().distinct_tokens();
        let tokens: Vec<&str> = t.split_whitespace().collect();
        assert!(tokens.contains(&"get") && tokens.contains(&"timeout") && tokens.contains(&"utf8"));
        let mut sorted = tokens.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), tokens.len());
    }
}
