//! A block's bytes at rest: the encoded (columnar, varint) form that the
//! WAL writes as is and the index writes zstd-compressed.
//!
//! Encoded layout (then compressed whole with zstd):
//! `varint n` · `varint covered_end` · n × `varint offset_gap` · n × `zigzag varint time_delta` ·
//! n × `u8 flags` · n × `varint len` · the text bytes.
//!
//! Offsets are stored as the gap beyond the previous line's end (almost
//! always 0) and times as deltas, so the encoded form compresses well.
//! The text comes last so that a decoded block can keep the buffer it was
//! decompressed into, its text where it lies ([`LineBlock::decode_owned`]).

use std::cell::RefCell;

use super::{BlockError, LineBlock};

impl LineBlock {
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
        out.extend_from_slice(self.text());
    }

    /// Decodes an encoded block.
    pub fn decode(buf: &[u8]) -> Result<LineBlock, BlockError> {
        LineBlock::decode_owned(buf.to_vec())
    }

    /// [`LineBlock::decode`] of a buffer it keeps: its text stays where it
    /// is, at the buffer's end, rather than being copied out.
    pub fn decode_owned(raw: Vec<u8>) -> Result<LineBlock, BlockError> {
        let buf = raw.as_slice();
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
        let text_start = r.pos;
        r.take(end as usize)?;
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
            text: raw,
            text_start,
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
            _ => return LineBlock::decode_owned(zstd::stream::decode_all(buf)?),
        };
        let raw = CONTEXT.with(|c| {
            let mut c = c.borrow_mut();
            let d = match &mut *c {
                Some(d) => d,
                None => c.insert(zstd::bulk::Decompressor::new()?),
            };
            d.decompress(buf, size)
        })?;
        LineBlock::decode_owned(raw)
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

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
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
    use cblogs_core::LineFlags;

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
                continues: true,
            },
            b"abcdef",
        );
        b.push(4_000, 9_000, LineFlags::default(), b"bad \xff utf8 Timeout");
        b
    }

    /// A decoded block keeps its buffer, the text at its end: lines read
    /// from it, lines added to it (a merge combining blocks) and its
    /// encoding again are all as if it had been built line by line.
    #[test]
    fn a_decoded_block_reads_grows_and_encodes_like_a_built_one() {
        let mut built = sample();
        let mut decoded = LineBlock::decompress(&sample().compress(3).unwrap()).unwrap();
        assert_eq!(decoded.text(), built.text());
        assert_eq!(decoded.text_len(), built.text_len());
        for b in [&mut built, &mut decoded] {
            b.push(5_000, 9_500, LineFlags::default(), b"one more");
        }
        assert!(decoded.lines().eq(built.lines()));
        assert_eq!(decoded.line_at(decoded.line_end(2)), 3);
        assert_eq!(
            decoded.line_at(built.line_end(2)),
            built.line_at(built.line_end(2))
        );
        assert_eq!(decoded.encode(), built.encode());
        let again = LineBlock::decode(&decoded.encode()).unwrap();
        assert!(again.lines().eq(built.lines()));
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
}
