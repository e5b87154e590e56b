//! One WAL record and its framing on disk.
//!
//! Framing: `u32 len` · `u32 crc32(payload)` · payload, where payload is
//! `u64 seq` · (`u64 epoch` when the seq's [`EPOCH`] bit is set) ·
//! `u32 source-json len` · source JSON · encoded [`LineBlock`],
//! zstd-compressed when the seq's top bit ([`COMPRESSED`]) is set.
//! The length and checksum are what let replay tell a whole record from a
//! torn one (a crash mid-write).
//!
//! Records are compressed (`storage.wal_zstd_level`, 1 by default) because
//! every byte ingested is written to the WAL before it is answered: at
//! level 1, cblogsd wrote 0.80 GB to disk during a 2 GiB ingest instead of
//! 2.73, for the same CPU (zstd costs the writer thread what the smaller
//! copies into the page cache save). Records written as is (level 0, or
//! before compression: the bit clear) replay beside compressed ones.

use std::sync::Arc;

use cblogs_core::Source;

use crate::block::LineBlock;

/// One accepted batch: the lines of one source that the server did not hold yet.
#[derive(Debug, Clone)]
pub struct WalRecord {
    pub seq: u64,
    pub source: Arc<Source>,
    pub lines: LineBlock,
    /// In a cluster: the epoch of this node's ownership of the source the
    /// lines were accepted under (`cluster/ownership.rs`). A record whose
    /// epoch is no longer the node's was accepted just before another
    /// node took the source, and is not applied (nor replayed): its lines
    /// are the new owner's to publish.
    pub epoch: Option<u64>,
}

pub(super) const HEADER: usize = 8;
/// A record larger than this is corrupt, not real (bodies are capped far below).
pub(super) const MAX_RECORD: usize = 1 << 30;
/// The top bit of a record's seq on disk: its block is zstd-compressed.
/// Seqs count records from 1, so they never reach it.
const COMPRESSED: u64 = 1 << 63;
/// The next bit: an epoch follows the seq. Records written before epochs
/// (and by a node alone) have it clear.
const EPOCH: u64 = 1 << 62;

impl WalRecord {
    pub fn new(seq: u64, source: Arc<Source>, lines: LineBlock) -> WalRecord {
        WalRecord {
            seq,
            source,
            lines,
            epoch: None,
        }
    }

    /// The record, accepted under ownership epoch `epoch`.
    pub fn under(self, epoch: Option<u64>) -> WalRecord {
        WalRecord { epoch, ..self }
    }

    /// Appends the framed record to `out`, its block as is. The payload is
    /// encoded in place and its length and checksum filled in after: a
    /// record is about as big as the batch it holds, and every byte
    /// ingested goes through here, so it is not built apart and copied in.
    #[cfg(test)]
    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        RecordEncoder::new(0).encode_into(self, out);
    }

    pub(super) fn decode(payload: &[u8]) -> Option<WalRecord> {
        let seq = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
        let (epoch, payload) = if seq & EPOCH == 0 {
            (None, &payload[8..])
        } else {
            let epoch = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
            (Some(epoch), &payload[16..])
        };
        let slen = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?) as usize;
        let source: Source = serde_json::from_slice(payload.get(4..4 + slen)?).ok()?;
        let block = payload.get(4 + slen..)?;
        let lines = if seq & COMPRESSED == 0 {
            LineBlock::decode(block).ok()?
        } else {
            // The frame says its size (bulk compression writes it): the
            // block is decompressed into exactly that, and a size past
            // any real record's is corruption.
            let size = zstd::zstd_safe::get_frame_content_size(block).ok()??;
            let size = usize::try_from(size).ok().filter(|&n| n <= MAX_RECORD)?;
            LineBlock::decode_owned(zstd::bulk::decompress(block, size).ok()?).ok()?
        };
        Some(WalRecord::new(seq & !(COMPRESSED | EPOCH), Arc::new(source), lines).under(epoch))
    }
}

/// Frames records for the segment files, compressing their blocks at one
/// zstd level (0: as is) with a context and buffers kept from one record
/// to the next (the writer thread owns it).
pub(super) struct RecordEncoder {
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// The block encoded, before compression.
    encoded: Vec<u8>,
    compressed: Vec<u8>,
}

impl RecordEncoder {
    pub(super) fn new(zstd_level: i32) -> RecordEncoder {
        let compressor = (zstd_level != 0)
            .then(|| zstd::bulk::Compressor::new(zstd_level))
            .and_then(|c| {
                c.map_err(|e| tracing::warn!(error = %e, "cannot set up zstd for the WAL; its records are written uncompressed"))
                    .ok()
            });
        RecordEncoder {
            compressor,
            encoded: Vec::new(),
            compressed: Vec::new(),
        }
    }

    /// Appends `record`, framed, to `out`. The payload is written in place
    /// and its length and checksum filled in after, so that it is not
    /// built apart and copied in again.
    pub(super) fn encode_into(&mut self, record: &WalRecord, out: &mut Vec<u8>) {
        let source = serde_json::to_vec(&*record.source).unwrap_or_default();
        let header = out.len();
        out.extend_from_slice(&[0; HEADER]);
        let payload = out.len();
        let compressed = self.compress(&record.lines);
        let mut seq = record.seq;
        if compressed {
            seq |= COMPRESSED;
        }
        if record.epoch.is_some() {
            seq |= EPOCH;
        }
        out.extend_from_slice(&seq.to_le_bytes());
        if let Some(epoch) = record.epoch {
            out.extend_from_slice(&epoch.to_le_bytes());
        }
        out.extend_from_slice(&(source.len() as u32).to_le_bytes());
        out.extend_from_slice(&source);
        if compressed {
            out.extend_from_slice(&self.compressed);
        } else {
            record.lines.encode_into(out);
        }
        let len = (out.len() - payload) as u32;
        let crc = crc32fast::hash(&out[payload..]);
        out[header..header + 4].copy_from_slice(&len.to_le_bytes());
        out[header + 4..payload].copy_from_slice(&crc.to_le_bytes());
    }

    /// Compresses the block into `self.compressed`; false when the records
    /// are written as is (or zstd failed, which only a bug would make it
    /// do: the record is then written as is).
    fn compress(&mut self, lines: &LineBlock) -> bool {
        let Some(compressor) = self.compressor.as_mut() else {
            return false;
        };
        self.encoded.clear();
        lines.encode_into(&mut self.encoded);
        self.compressed.clear();
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(self.encoded.len()));
        match compressor.compress_to_buffer(&self.encoded, &mut self.compressed) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "zstd failed on a WAL record; written uncompressed");
                false
            }
        }
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

    #[test]
    fn a_compressed_record_marks_its_seq_and_decodes_back() {
        let source = Arc::new(Source::example("r/prod/j", 2, "p", Stream::Stdout));
        let mut lines = LineBlock::new();
        let text =
            "INFO dfs.DataNode: Receiving block blk_-1608999687919862906 src: /10.250.19.102";
        for i in 0..100 {
            lines.push(i * 100, i as i64, LineFlags::default(), text.as_bytes());
        }
        let record = WalRecord::new(9, source.clone(), lines.clone());
        let mut encoder = RecordEncoder::new(1);
        let mut out = Vec::new();
        encoder.encode_into(&record, &mut out);
        let payload = &out[HEADER..];
        assert_eq!(&payload[..8], &(9 | COMPRESSED).to_le_bytes());
        assert_eq!(WalRecord::decode(payload).unwrap().epoch, None);
        assert!(
            payload.len() * 5 < lines.encode().len(),
            "{} bytes",
            payload.len()
        );
        // The encoder's buffers are reused: a second record is as good.
        let mut again = Vec::new();
        encoder.encode_into(&record, &mut again);
        assert_eq!(again, out);
        let back = WalRecord::decode(payload).unwrap();
        assert_eq!((back.seq, &*back.source), (9, &*source));
        assert!(back.lines.lines().eq(lines.lines()));
        // A frame claiming more than any record is refused, not allocated.
        let mut huge = payload.to_vec();
        let json_len = u32::from_le_bytes(huge[8..12].try_into().unwrap()) as usize;
        huge.truncate(12 + json_len);
        huge.extend_from_slice(&zstd::bulk::compress(&vec![0; MAX_RECORD + 1], 1).unwrap());
        assert!(WalRecord::decode(&huge).is_none());
    }

    #[test]
    fn a_cluster_nodes_record_keeps_the_epoch_it_was_accepted_under() {
        let source = Arc::new(Source::example("r/prod/j", 2, "p", Stream::Stdout));
        let mut lines = LineBlock::new();
        lines.push(0, 10, LineFlags::default(), b"taken under epoch 3");
        for level in [0, 1] {
            let record = WalRecord::new(11, source.clone(), lines.clone()).under(Some(3));
            let mut out = Vec::new();
            RecordEncoder::new(level).encode_into(&record, &mut out);
            let payload = &out[HEADER..];
            assert_eq!(&payload[8..16], &3u64.to_le_bytes(), "level {level}");
            let back = WalRecord::decode(payload).unwrap();
            assert_eq!(
                (back.seq, back.epoch, &*back.source),
                (11, Some(3), &*source)
            );
            assert!(back.lines.lines().eq(lines.lines()));
        }
    }
}
