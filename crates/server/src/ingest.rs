//! The ingest path: de-duplicate a request against what the server holds,
//! write what is new to the WAL, and answer once it is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cblogs_core::wire::{BatchAck, IngestRequest, IngestResponse};
use cblogs_core::LineFlags;

use crate::block::LineBlock;
use crate::wal::{Wal, WalError, WalRecord};

/// Where each source stands and the next WAL seq, behind one lock: taking a
/// batch's lines, numbering its record and queueing it happen together, so
/// two copies of one batch sent at once cannot both be taken, and records
/// reach the WAL in seq order.
struct Ledger {
    /// Per source id: every offset below is held (or queued to the WAL).
    held: HashMap<u64, u64>,
    next_seq: u64,
}

pub struct Ingestor {
    ledger: Mutex<Ledger>,
    wal: Arc<Wal>,
    max_line_bytes: usize,
}

impl Ingestor {
    pub fn new(
        wal: Arc<Wal>,
        held: HashMap<u64, u64>,
        last_seq: u64,
        max_line_bytes: usize,
    ) -> Self {
        Ingestor {
            ledger: Mutex::new(Ledger {
                held,
                next_seq: last_seq + 1,
            }),
            wal,
            max_line_bytes,
        }
    }

    /// Stores the new lines of a validated request and acknowledges it once
    /// they (and any copy of them sent earlier and still in flight) are durable.
    pub async fn ingest(&self, req: IngestRequest) -> Result<IngestResponse, WalError> {
        let mut resp = IngestResponse::default();
        let wait_for = {
            let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
            for batch in req.batches {
                let source = Arc::new(batch.source);
                let id = source.id();
                let held = ledger.held.get(&id).copied().unwrap_or(0);
                if batch.start > held && held > 0 {
                    tracing::warn!(source = %source.key(), held, start = batch.start, "gap in a source: bytes {held}..{} never arrived", batch.start);
                }
                let mut lines = LineBlock::new();
                let mut duplicates = 0u64;
                for l in &batch.lines {
                    if l.offset < held {
                        duplicates += 1;
                        continue;
                    }
                    // Validated before: text xor b64, b64 decodes.
                    let Ok(bytes) = l.bytes() else { continue };
                    let cut = bytes.len() > self.max_line_bytes;
                    if cut {
                        resp.cut += 1;
                    }
                    let kept = &bytes[..bytes.len().min(self.max_line_bytes)];
                    lines.push(
                        l.offset,
                        l.time_ns,
                        LineFlags {
                            cut: cut || l.cut,
                            partial: l.partial,
                        },
                        kept,
                    );
                }
                let end = held.max(batch.end);
                ledger.held.insert(id, end);
                resp.accepted += lines.len() as u64;
                resp.duplicates += duplicates;
                resp.batches.push(BatchAck {
                    source: source.key(),
                    accepted: lines.len() as u64,
                    duplicates,
                    acked_end: end,
                });
                if !lines.is_empty() {
                    let seq = ledger.next_seq;
                    ledger.next_seq += 1;
                    self.wal.submit(WalRecord { seq, source, lines })?;
                }
            }
            // Wait for everything queued so far: a duplicate we dropped may
            // belong to a record that is not durable yet.
            ledger.next_seq - 1
        };
        self.wal.wait_durable(wait_for).await?;
        Ok(resp)
    }
}
