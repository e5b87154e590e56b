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

    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        let source = serde_json::to_vec(&*self.source).unwrap_or_default();
        let lines = self.lines.encode();
        let mut payload = Vec::with_capacity(12 + source.len() + lines.len());
        payload.extend_from_slice(&self.seq.to_le_bytes());
        payload.extend_from_slice(&(source.len() as u32).to_le_bytes());
        payload.extend_from_slice(&source);
        payload.extend_from_slice(&lines);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
    }

    pub(super) fn decode(payload: &[u8]) -> Option<WalRecord> {
        let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let slen = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
        let source: Source = serde_json::from_slice(payload.get(12..12 + slen)?).ok()?;
        let lines = LineBlock::decode(payload.get(12 + slen..)?).ok()?;
        Some(WalRecord::new(seq, Arc::new(source), lines))
    }
}
