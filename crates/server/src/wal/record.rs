//! One WAL record and its framing on disk.
//!
//! Framing: `u32 len` · `u32 crc32(payload)` · payload, where payload is
//! `u64 seq` · `u32 source-json len` · source JSON · encoded [`LineBlock`].
//! The length and checksum are what let replay tell a whole record from a
//! torn one (a crash mid-write).

use std::sync::Arc;

use cblogs_core::Source;

use crate::block::LineBlock;

/// One accepted batch: the lines of one source that the server did not hold yet.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub source: Arc<Source>,
    pub lines: LineBlock,
}

pub(super) const HEADER: usize = 8;
/// A record larger than this is corrupt, not real (bodies are capped far below).
pub(super) const MAX_RECORD: usize = 1 << 30;

impl WalRecord {
    pub fn new(seq: u64, source: Arc<Source>, lines: LineBlock) -> WalRecord {
        WalRecord { seq, source, lines }
    }

    /// Appends the framed record to `out`. The payload is encoded in
    /// place and its length and checksum filled in after: a record is
    /// about as big as the batch it holds, and every byte ingested goes
    /// through here, so it is not built apart and copied in.
    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        let source = serde_json::to_vec(&*self.source).unwrap_or_default();
        let header = out.len();
        out.extend_from_slice(&[0; HEADER]);
        let payload = out.len();
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&(source.len() as u32).to_le_bytes());
        out.extend_from_slice(&source);
        self.lines.encode_into(out);
        let len = (out.len() - payload) as u32;
        let crc = crc32fast::hash(&out[payload..]);
        out[header..header + 4].copy_from_slice(&len.to_le_bytes());
        out[header + 4..payload].copy_from_slice(&crc.to_le_bytes());
    }

    pub(super) fn decode(payload: &[u8]) -> Option<WalRecord> {
        let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let slen = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
        let source: Source = serde_json::from_slice(payload.get(12..12 + slen)?).ok()?;
        let lines = LineBlock::decode(payload.get(12 + slen..)?).ok()?;
        Some(WalRecord::new(seq, Arc::new(source), lines))
    }
}

#[cfg(test)]
mod tests {
    use cblogs_core::{LineFlags, Stream};

    use super::*;

    #[test]
    fn a_record_is_framed_by_its_length_and_checksum_and_decodes_back() {
        let source = Arc::new(Source::example("r/prod/j", 2, "p", Stream::Stderr));
        let mut lines = LineBlock::new();
        lines.push(0, 10, LineFlags::default(), b"first line");
        lines.push(11, 20, LineFlags::default(), b"second");
        let record = WalRecord::new(7, source.clone(), lines.clone());
        // After another record's bytes, as the writer's buffer holds them.
        let mut out = b"earlier".to_vec();
        record.encode_into(&mut out);
        let framed = &out[7..];
        let len = u32::from_le_bytes(framed[..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(framed[4..8].try_into().unwrap());
        let payload = &framed[HEADER..];
        assert_eq!(len, payload.len());
        assert_eq!(crc, crc32fast::hash(payload));
        let json = serde_json::to_vec(&*source).unwrap();
        assert_eq!(&payload[..8], &7u64.to_le_bytes());
        assert_eq!(&payload[8..12], &(json.len() as u32).to_le_bytes());
        assert_eq!(&payload[12..12 + json.len()], &json[..]);
        assert_eq!(&payload[12 + json.len()..], &lines.encode()[..]);
        let back = WalRecord::decode(payload).unwrap();
        assert_eq!((back.seq, &*back.source), (7, &*source));
        assert!(back.lines.lines().eq(lines.lines()));
    }
}
