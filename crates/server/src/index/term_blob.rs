//! Every term of one segment's token dictionary in one buffer, for the
//! suffix and infix lookups of `candidates.rs`; and the split's file
//! that keeps it (`terms.dat`), written when the split is finished.
//!
//! Building the buffer walks the dictionary's FST, about 0.5 s for the
//! 100 MB of terms of an 8.6 GB split: a first partial-word search after
//! a start paid that for every split. A finished split is never changed,
//! so its writer walks it once and keeps the result beside the index:
//!
//! ```text
//! terms.dat   "CBTERMS2"  segment id (32 hex digits)  terms (u64 LE)  bytes of the list (u64 LE)
//!             a zstd frame (with its checksum) of the terms in order, front-coded:
//!             each as [bytes shared with the one before (u8)] [the rest] `\n`
//! ```
//!
//! Compressed, because the file is stored with the split: as the list is
//! kept in memory, the sorted terms of busy logs would add about 0.012 of
//! raw to their storage (whose whole index is 0.014); zstd -3 of the list
//! 0.0037, of the list front-coded first 0.0023 (the terms are mostly
//! ids and numbers that share their start with the one before: measured
//! on a 1 GB split's 2.6 million terms, 29.7 MB → 9.6 and 5.8 MB).
//! A split written before the file existed, or one still being built,
//! has its terms built as before.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use tantivy::index::SegmentId;
use tantivy::InvertedIndexReader;

use crate::metrics::{emit, TermListLoaded};

/// The file of a finished split that keeps its segment's terms.
pub const TERMS_FILE: &str = "terms.dat";

const MAGIC: &[u8; 8] = b"CBTERMS2";
const HEADER_LEN: usize = 8 + 32 + 8 + 8;
/// zstd level of `terms.dat`: written once per finished split, off the
/// ingest path; sorted terms compress well at a fast level already.
const ZSTD_LEVEL: i32 = 3;

/// Every term of one segment's token dictionary in one buffer, each
/// followed by a `\n` (no term holds one): a suffix or infix lookup is one
/// `memmem` pass over it instead of a walk of the dictionary's FST, which
/// was most of a rare search's time. Kept in the `ReadCaches`.
pub struct TermBlob {
    bytes: Vec<u8>,
    terms: u64,
}

impl TermBlob {
    /// Walks the segment's dictionary.
    pub(super) fn build(inv: &InvertedIndexReader) -> std::io::Result<TermBlob> {
        let mut bytes = Vec::new();
        let mut terms = 0;
        let mut stream = inv.terms().stream()?;
        while stream.advance() {
            bytes.extend_from_slice(stream.key());
            bytes.push(b'\n');
            terms += 1;
        }
        Ok(TermBlob { bytes, terms })
    }

    /// The terms of `segment` (whose dictionary is `inv`), from the split's
    /// `terms.dat` in `dir` if it has one for that segment, else built. A
    /// file that does not agree with the dictionary (another segment,
    /// another count of terms, a bad checksum) is not used: a term missing
    /// from the list would rule out blocks that hold it.
    pub(super) fn stored_or_built(
        dir: &Path,
        segment: SegmentId,
        inv: &InvertedIndexReader,
    ) -> std::io::Result<TermBlob> {
        let path = dir.join(TERMS_FILE);
        match fs::read(&path) {
            Ok(file) => match TermBlob::decode(&file, segment, inv.terms().num_terms() as u64) {
                Ok(blob) => {
                    emit(TermListLoaded { stored: true });
                    return Ok(blob);
                }
                Err(why) => {
                    tracing::warn!(file = %path.display(), %why, "term list not used; building it from the index")
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let blob = TermBlob::build(inv)?;
        emit(TermListLoaded { stored: false });
        Ok(blob)
    }

    /// Writes `terms.dat` into `dir` for `segment` (synced, then renamed
    /// into place: the split is uploaded or linked right after).
    pub(super) fn write(&self, dir: &Path, segment: SegmentId) -> std::io::Result<()> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.bytes.len() / 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(segment.uuid_string().as_bytes());
        out.extend_from_slice(&self.terms.to_le_bytes());
        out.extend_from_slice(&(self.bytes.len() as u64).to_le_bytes());
        let mut encoder = zstd::stream::Encoder::new(out, ZSTD_LEVEL)?;
        encoder.include_checksum(true)?;
        let mut encoder = std::io::BufWriter::with_capacity(1 << 16, encoder);
        let mut before: &[u8] = &[];
        for term in self.bytes.split_inclusive(|&b| b == b'\n') {
            let shared = term
                .iter()
                .zip(before)
                .take(usize::from(u8::MAX))
                .take_while(|(a, b)| a == b)
                .count();
            encoder.write_all(&[shared as u8])?;
            encoder.write_all(&term[shared..])?;
            before = &term[..term.len() - 1];
        }
        let encoder = encoder.into_inner().map_err(|e| e.into_error())?;
        let out = encoder.finish()?;
        let tmp = dir.join(format!("{TERMS_FILE}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&out)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(TERMS_FILE))
    }

    /// The list in a `terms.dat`, if it is `segment`'s with `terms` terms.
    fn decode(file: &[u8], segment: SegmentId, terms: u64) -> Result<TermBlob, String> {
        let header = file
            .get(..HEADER_LEN)
            .ok_or_else(|| format!("{} bytes, shorter than its header", file.len()))?;
        if &header[..8] != MAGIC {
            return Err("not a term list".into());
        }
        if header[8..40] != *segment.uuid_string().as_bytes() {
            return Err(format!(
                "the list of segment {}, not of {}",
                String::from_utf8_lossy(&header[8..40]),
                segment.uuid_string()
            ));
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (listed, len) = (u64_at(40), u64_at(48));
        if listed != terms {
            return Err(format!("{listed} terms listed, the index has {terms}"));
        }
        let len = usize::try_from(len).map_err(|_| format!("{len} bytes of terms"))?;
        let coded = zstd::stream::decode_all(&file[HEADER_LEN..]).map_err(|e| e.to_string())?;
        let bytes = front_decoded(&coded, len)?;
        if bytes.len() != len {
            return Err(format!("{} bytes of terms, {len} listed", bytes.len()));
        }
        // As many as the dictionary holds (a plain count vectorizes: a few
        // ms for the 100 MB of an 8.6 GB split).
        let ends = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        if ends != terms {
            return Err(format!("{ends} terms in the list, the index has {terms}"));
        }
        Ok(TermBlob { bytes, terms })
    }

    /// The term around byte `pos`.
    fn term_at(&self, pos: usize) -> &[u8] {
        let start = memchr::memrchr(b'\n', &self.bytes[..pos]).map_or(0, |n| n + 1);
        let end = memchr::memchr(b'\n', &self.bytes[pos..]).map_or(self.bytes.len(), |n| pos + n);
        &self.bytes[start..end]
    }

    /// Terms that hold `piece` (which holds no `\n`).
    pub(super) fn containing(&self, piece: &[u8]) -> Vec<Vec<u8>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for pos in memchr::memmem::find_iter(&self.bytes, piece) {
            let term = self.term_at(pos);
            if out.last().is_none_or(|t| t.as_slice() != term) {
                out.push(term.to_vec());
            }
        }
        out
    }

    pub(super) fn ending_with(&self, piece: &[u8]) -> Vec<Vec<u8>> {
        let mut with_end = piece.to_vec();
        with_end.push(b'\n');
        memchr::memmem::find_iter(&self.bytes, &with_end)
            .map(|pos| self.term_at(pos).to_vec())
            .collect()
    }

    pub(super) fn memory_bytes(&self) -> usize {
        self.bytes.capacity()
    }
}

/// The list `coded` holds front-coded (see the top of this file), each
/// term followed by `\n`; `len` is its size, as the header says.
fn front_decoded(coded: &[u8], len: usize) -> Result<Vec<u8>, String> {
    // A term shares at most 255 bytes: a header claiming more than that
    // allows (a damaged file) does not get to size the allocation.
    let mut bytes = Vec::with_capacity(len.min(coded.len().saturating_mul(256)));
    let mut before = 0..0;
    let mut at = 0;
    while at < coded.len() {
        let shared = usize::from(coded[at]);
        let rest = &coded[at + 1..];
        let end = memchr::memchr(b'\n', rest).ok_or("a term with no end")?;
        if shared > before.len() {
            return Err(format!(
                "a term sharing {shared} bytes with one of {}",
                before.len()
            ));
        }
        let start = bytes.len();
        bytes.extend_from_within(before.start..before.start + shared);
        bytes.extend_from_slice(&rest[..=end]);
        before = start..bytes.len() - 1;
        at += 1 + end + 1;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cblogs_core::{LineFlags, Source, Stream};

    use super::*;
    use crate::block::LineBlock;
    use crate::index::{Partition, PreparedBlock};

    /// A split of two commits (two segments) holding `lines`, not finished.
    fn split(root: &Path, lines: &[&str]) -> Arc<Partition> {
        let part = Arc::new(Partition::create(root, 0).unwrap());
        let src = Arc::new(Source::example("r/prod/j", 0, "p", Stream::Stdout));
        let mut writer = part.writer(20_000_000).unwrap();
        for half in lines.chunks(lines.len().div_ceil(2)) {
            let mut b = LineBlock::new();
            for (i, l) in half.iter().enumerate() {
                b.push(i as u64, i as i64, LineFlags::default(), l.as_bytes());
            }
            writer
                .add_block(&src, PreparedBlock::new(src.id(), &b, 3).unwrap())
                .unwrap();
            writer.commit().unwrap();
        }
        part
    }

    fn only_segment(part: &Partition) -> (SegmentId, Arc<InvertedIndexReader>) {
        let searcher = part.searcher();
        let [segment] = searcher.segment_readers() else {
            panic!("{} segments", searcher.segment_readers().len());
        };
        let inv = segment.inverted_index(part.fields.tokens).unwrap();
        (segment.segment_id(), inv)
    }

    const LINES: &[&str] = &[
        "alpha connection refused by upstream",
        "beta zookeeper session expired",
        "gamma connection reset",
        "omega last words",
    ];

    #[test]
    fn a_finished_split_keeps_its_terms_and_readers_use_them() {
        let dir = tempfile::tempdir().unwrap();
        let part = split(dir.path(), LINES);
        assert!(!part.dir().join(TERMS_FILE).exists(), "not before finish");
        part.writer(20_000_000).unwrap().finish().unwrap();
        let file = part.dir().join(TERMS_FILE);
        assert!(file.exists(), "finish writes {}", file.display());
        let (segment, inv) = only_segment(&part);
        let built = TermBlob::build(&inv).unwrap();
        let stored =
            TermBlob::decode(&fs::read(&file).unwrap(), segment, built.terms).expect("decoded");
        assert_eq!(stored.bytes, built.bytes);
        assert!(built.terms > 10, "{} terms", built.terms);

        let blob = TermBlob::stored_or_built(part.dir(), segment, &inv).unwrap();
        assert_eq!(blob.containing(b"nnec"), vec![b"connection".to_vec()]);
        assert_eq!(blob.ending_with(b"ired"), vec![b"expired".to_vec()]);
        // The first and the last terms of the list are whole.
        let first = blob.bytes.split(|&b| b == b'\n').next().unwrap().to_vec();
        assert_eq!(blob.containing(&first[1..]), vec![first.clone()]);
        assert_eq!(blob.containing(b"ords"), vec![b"words".to_vec()]);
        assert!(blob.containing(b"nowhere").is_empty());
        // The files an upload sends carry it.
        let files = part.files().unwrap();
        assert!(files.iter().any(|(n, _)| n == TERMS_FILE), "{files:?}");
    }

    /// Front coding keeps every term whole: one that is the start of the
    /// next, shared starts of 10 bytes (a `\n` as the count) and of more
    /// than 255.
    #[test]
    fn front_coding_gives_back_the_list() {
        let long = "x".repeat(300);
        let list = [
            "a".to_owned(),
            "abc".to_owned(),
            "abcd".to_owned(),
            "abcdefghij".to_owned(),
            "abcdefghijk".to_owned(),
            "abcdefghijz".to_owned(),
            format!("{long}a"),
            format!("{long}b"),
            "y".to_owned(),
        ];
        let bytes: Vec<u8> = list
            .iter()
            .flat_map(|t| [t.as_bytes(), b"\n"].concat())
            .collect();
        let blob = TermBlob {
            bytes,
            terms: list.len() as u64,
        };
        let dir = tempfile::tempdir().unwrap();
        let segment = SegmentId::generate_random();
        blob.write(dir.path(), segment).unwrap();
        let file = fs::read(dir.path().join(TERMS_FILE)).unwrap();
        let read = TermBlob::decode(&file, segment, blob.terms).expect("decoded");
        assert_eq!(read.bytes, blob.bytes);
        assert_eq!(read.ending_with(b"ij"), vec![b"abcdefghij".to_vec()]);
    }

    /// A list that does not agree with the index is never used: one term
    /// short of it would rule out the blocks holding that term.
    #[test]
    fn a_list_that_does_not_agree_with_the_index_is_built_again() {
        let dir = tempfile::tempdir().unwrap();
        let part = split(dir.path(), LINES);
        part.writer(20_000_000).unwrap().finish().unwrap();
        let (segment, inv) = only_segment(&part);
        let built = TermBlob::build(&inv).unwrap();
        let file = part.dir().join(TERMS_FILE);
        let good = fs::read(&file).unwrap();

        let other = SegmentId::generate_random();
        let short = TermBlob {
            bytes: built.bytes[..built.bytes.len() / 2].to_vec(),
            terms: built.terms,
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("another segment's", {
                built.write(part.dir(), other).unwrap();
                fs::read(&file).unwrap()
            }),
            ("a list of other terms", {
                short.write(part.dir(), segment).unwrap();
                fs::read(&file).unwrap()
            }),
            ("cut short", good[..good.len() - 3].to_vec()),
            ("a flipped byte", {
                let mut b = good.clone();
                let last = b.len() - 6;
                b[last] ^= 0x40;
                b
            }),
            ("not a term list", b"[{\"json\": true}]".to_vec()),
        ];
        for (what, bytes) in cases {
            fs::write(&file, &bytes).unwrap();
            let blob = TermBlob::stored_or_built(part.dir(), segment, &inv).unwrap();
            assert_eq!(blob.bytes, built.bytes, "{what}");
        }
        fs::remove_file(&file).unwrap();
        let blob = TermBlob::stored_or_built(part.dir(), segment, &inv).unwrap();
        assert_eq!(blob.bytes, built.bytes, "no file");
    }
}
