//! Every term of one segment's token dictionary in one buffer, for the
//! suffix and infix lookups of `candidates.rs`.

use tantivy::InvertedIndexReader;

/// Every term of one segment's token dictionary in one buffer, each
/// followed by a `\n` (no term holds one): a suffix or infix lookup is one
/// `memmem` pass over it instead of a walk of the dictionary's FST, which
/// was most of a rare search's time. Kept in the `ReadCaches`.
pub struct TermBlob {
    bytes: Vec<u8>,
    /// Where each term starts in `bytes`.
    starts: Vec<u32>,
}

impl TermBlob {
    pub(super) fn build(inv: &InvertedIndexReader) -> std::io::Result<TermBlob> {
        let mut bytes = Vec::new();
        let mut starts = Vec::with_capacity(inv.terms().num_terms());
        let mut stream = inv.terms().stream()?;
        while stream.advance() {
            starts.push(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
            bytes.extend_from_slice(stream.key());
            bytes.push(b'\n');
        }
        Ok(TermBlob { bytes, starts })
    }

    fn term_at(&self, pos: usize) -> &[u8] {
        let i = self.starts.partition_point(|&s| s as usize <= pos) - 1;
        let start = self.starts[i] as usize;
        let end = self
            .starts
            .get(i + 1)
            .map_or(self.bytes.len(), |&e| e as usize);
        &self.bytes[start..end - 1]
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
        self.bytes.capacity() + self.starts.capacity() * 4
    }
}
