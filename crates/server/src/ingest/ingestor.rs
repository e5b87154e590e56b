//! The ingestor: checks a request against what the server holds (a gap is
//! refused, what a source already holds is dropped), writes what is new to
//! the WAL, and answers once it is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cblogs_core::wire::{Batch, BatchAck, IngestRequest, IngestResponse};
use cblogs_core::LineFlags;

use crate::block::LineBlock;
use crate::cluster::{Ownerships, SeenEpochs};
use crate::metastore::MetastoreError;
use crate::multiline::{EventMarker, MultilineRules};
use crate::wal::{Wal, WalError, WalRecord};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch would leave a hole in its source: its earlier bytes have
    /// not arrived (yet). Nothing of the request was stored.
    #[error(
        "batch {batch}: source {stream} is held up to offset {held_end} but the batch starts at {start}; \
         send the bytes in between first, or set allow_gap if they are lost"
    )]
    Gap {
        batch: usize,
        stream: String,
        held_end: u64,
        start: u64,
    },
    #[error(transparent)]
    Wal(#[from] WalError),
    /// This node of a cluster could not take a source it was sent (the
    /// metastore could not be written). Nothing of the request was stored.
    #[error("cannot take the batch's sources for this node: {0}")]
    Claim(String),
    /// Pushed lines: another node took one of their sources since the
    /// push was routed here. Nothing of the request was stored; sent
    /// again, the push goes to that node.
    #[error("{0}; send the push again")]
    TakenMeanwhile(String),
}

/// Where each source stands and the next WAL seq, behind one lock: checking
/// a batch, numbering its record and queueing it happen together, so two
/// copies of one batch sent at once cannot both be taken, and records reach
/// the WAL in seq order.
struct Ledger {
    /// Per source id: every offset below is held (or queued to the WAL).
    held: HashMap<u64, u64>,
    next_seq: u64,
    /// Marks which new lines continue an event, in each source's order.
    events: EventMarker,
}

/// A request not queued yet, with its lines as blocks (each with how many
/// lines were cut at the length limit).
type Pending = (IngestRequest, Vec<(LineBlock, u64)>);

/// How many times a request takes its sources again when another node
/// took one between its taking and its lines' queueing.
const TAKE_TRIES: usize = 3;

pub struct Ingestor {
    ledger: Mutex<Ledger>,
    wal: Arc<Wal>,
    max_line_bytes: usize,
    /// In a cluster: the sources this node holds; one it does not is
    /// taken before its lines are.
    ownerships: Option<Arc<Ownerships>>,
}

impl Ingestor {
    pub fn new(
        wal: Arc<Wal>,
        held: HashMap<u64, u64>,
        last_seq: u64,
        max_line_bytes: usize,
        ownerships: Option<Arc<Ownerships>>,
        multiline: Arc<MultilineRules>,
    ) -> Self {
        Ingestor {
            ledger: Mutex::new(Ledger {
                held,
                next_seq: last_seq + 1,
                events: EventMarker::new(multiline),
            }),
            wal,
            max_line_bytes,
            ownerships,
        }
    }

    /// In a cluster: takes the request's sources this node does not hold,
    /// and starts each at its published end (where the owner before
    /// stopped publishing). One this node dropped when it was taken from
    /// it starts exactly there; another keeps what it holds, if more.
    ///
    /// With `seen` (pushed lines), a source another node took since the
    /// push was routed here is not taken over: nothing is, and the answer
    /// is [`IngestError::TakenMeanwhile`].
    async fn take_sources(
        &self,
        req: &IngestRequest,
        seen: Option<&Arc<SeenEpochs>>,
    ) -> Result<(), IngestError> {
        let Some(own) = &self.ownerships else {
            return Ok(());
        };
        let missing = own.missing(req.batches.iter().map(|b| &b.source));
        if missing.is_empty() {
            return Ok(());
        }
        let taker = own.clone();
        let seen = seen.cloned();
        let started = tokio::task::spawn_blocking(move || taker.take(&missing, seen.as_deref()))
            .await
            .map_err(|_| IngestError::Claim("the claim's task panicked".into()))?
            .map_err(|e| match e {
                MetastoreError::TakenMeanwhile { .. } => IngestError::TakenMeanwhile(e.to_string()),
                e => IngestError::Claim(e.to_string()),
            })?;
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        for s in started {
            let held = ledger.held.entry(s.id).or_insert(0);
            *held = if s.dropped {
                s.published_end
            } else {
                (*held).max(s.published_end)
            };
        }
        Ok(())
    }

    /// Stores the new lines of a validated request and acknowledges it once
    /// they (and any copy of them sent earlier and still in flight) are
    /// durable. A request with a gap in any batch stores nothing.
    pub async fn ingest(&self, req: IngestRequest) -> Result<IngestResponse, IngestError> {
        self.queue(req, None).await
    }

    /// Lines that come without offsets (pushed by senders other than the
    /// shipper): each batch's offsets count from 0, and it is placed at
    /// the end of what its source holds, under the ledger's lock, so
    /// pushes to one source at once each get their own bytes. In a
    /// cluster, a source is taken only if its owner is still the one
    /// `seen` records (see [`Ingestor::take_sources`]).
    pub async fn append(
        &self,
        req: IngestRequest,
        seen: Arc<SeenEpochs>,
    ) -> Result<IngestResponse, IngestError> {
        self.queue(req, Some(seen)).await
    }

    /// Queues `req`'s new lines (appended, placed at their sources' ends,
    /// when `seen` is given) and waits until they are durable.
    async fn queue(
        &self,
        req: IngestRequest,
        seen: Option<Arc<SeenEpochs>>,
    ) -> Result<IngestResponse, IngestError> {
        let append = seen.is_some();
        // The lines are copied into blocks before the ledger's lock is
        // taken, so concurrent requests copy in parallel; under the lock
        // only what the source already holds is dropped (a retry's lines),
        // and appended blocks, made at offsets from 0, are moved.
        let blocks: Vec<(LineBlock, u64)> = req
            .batches
            .iter()
            .map(|batch| self.block_of(batch, 0))
            .collect();
        let mut pending: Pending = (req, blocks);
        let mut tries = 0;
        let (resp, wait_for) = loop {
            self.take_sources(&pending.0, seen.as_ref()).await?;
            match self.accept(pending, append)? {
                Ok(accepted) => break accepted,
                // A source was taken from this node between its taking
                // and here: it is taken again (rarely more than once).
                Err(back) if tries < TAKE_TRIES => {
                    tries += 1;
                    pending = back;
                }
                Err(_) => {
                    return Err(IngestError::Claim(format!(
                        "another node took the batch's sources each time this node took them back ({} times)",
                        TAKE_TRIES + 1
                    )))
                }
            }
        };
        self.wal.wait_durable(wait_for).await?;
        Ok(resp)
    }

    /// Under the ledger's lock: queues to the WAL what is new in `req`
    /// (each record under the epoch this node holds its source at, in a
    /// cluster) and returns the answer and the last record's seq. Gives
    /// the request back, untouched, if this node no longer holds one of
    /// its sources.
    fn accept(
        &self,
        (mut req, mut blocks): Pending,
        append: bool,
    ) -> Result<Result<(IngestResponse, u64), Pending>, IngestError> {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        let epochs: Vec<Option<u64>> = match &self.ownerships {
            None => vec![None; req.batches.len()],
            Some(own) => {
                let held: Option<Vec<u64>> = req
                    .batches
                    .iter()
                    .map(|b| own.epoch(b.source.id()))
                    .collect();
                match held {
                    Some(epochs) => epochs.into_iter().map(Some).collect(),
                    None => return Ok(Err((req, blocks))),
                }
            }
        };
        if append {
            for ((block, _), base) in blocks.iter_mut().zip(ledger.place_at_end(&mut req)) {
                block.shift(base);
            }
        }
        ledger.check_gaps(&req)?;
        let mut resp = IngestResponse::default();
        for ((batch, (block, cut)), epoch) in req.batches.into_iter().zip(blocks).zip(epochs) {
            let id = batch.source.id();
            let held = ledger.held.get(&id).copied().unwrap_or(0);
            let duplicates = batch.lines.iter().filter(|l| l.offset < held).count() as u64;
            let (mut lines, cut) = if duplicates > 0 {
                self.block_of(&batch, held)
            } else {
                (block, cut)
            };
            resp.cut += cut;
            ledger
                .events
                .mark(&batch.source, &mut lines, held > 0, append);
            let source = Arc::new(batch.source);
            let end = held.max(batch.end);
            ledger.held.insert(id, end);
            resp.accepted += lines.len() as u64;
            resp.accepted_bytes += lines.text_len() as u64;
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
                self.wal
                    .submit(WalRecord::new(seq, source, lines).under(epoch))?;
            }
        }
        Ok(Ok((resp, ledger.next_seq - 1)))
    }

    /// After the WAL could not write (a full disk): drops what was queued
    /// and not written, forgets that its sources held it (`held` is what
    /// was applied: everything durable), and lets ingest go on. Shippers
    /// were answered 503 for the dropped lines and send them again.
    pub fn recover(&self, held: impl FnOnce() -> HashMap<u64, u64>) -> bool {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        if !self.wal.resume() {
            return false;
        }
        ledger.held = held();
        ledger.events.forget();
        true
    }

    /// The lines of `batch` at or past offset `from`, cut at the length
    /// limit, as a block covering up to the batch's end; and how many
    /// were cut.
    fn block_of(&self, batch: &Batch, from: u64) -> (LineBlock, u64) {
        let text_bytes: usize = batch
            .lines
            .iter()
            .map(|l| {
                l.text
                    .as_ref()
                    .map_or(0, String::len)
                    .min(self.max_line_bytes)
            })
            .sum();
        let mut lines = LineBlock::with_capacity(batch.lines.len(), text_bytes);
        let mut cut_lines = 0;
        for l in batch.lines.iter().filter(|l| l.offset >= from) {
            let Ok(bytes) = l.bytes() else { continue };
            let cut = bytes.len() > self.max_line_bytes;
            cut_lines += u64::from(cut);
            lines.push(
                l.offset,
                l.time_ns,
                LineFlags {
                    cut: cut || l.cut,
                    partial: l.partial,
                    continues: l.continues,
                },
                &bytes[..bytes.len().min(self.max_line_bytes)],
            );
        }
        lines.cover_to(batch.end);
        (lines, cut_lines)
    }
}

impl Ledger {
    /// Moves each batch (its offsets counting from 0) to the end of what
    /// its source holds, after the request's earlier batches of it; gives
    /// each batch's move.
    fn place_at_end(&self, req: &mut IngestRequest) -> Vec<u64> {
        let mut after: HashMap<u64, u64> = HashMap::new();
        let mut bases = Vec::with_capacity(req.batches.len());
        for batch in &mut req.batches {
            let id = batch.source.id();
            let base = after
                .get(&id)
                .or_else(|| self.held.get(&id))
                .copied()
                .unwrap_or(0);
            batch.start += base;
            batch.end += base;
            for l in &mut batch.lines {
                l.offset += base;
            }
            after.insert(id, batch.end);
            bases.push(base);
        }
        bases
    }

    /// Refuses the request if a batch would leave a hole after what its
    /// source holds (counting earlier batches of the same request).
    fn check_gaps(&self, req: &IngestRequest) -> Result<(), IngestError> {
        let mut after: HashMap<u64, u64> = HashMap::new();
        for (i, batch) in req.batches.iter().enumerate() {
            let id = batch.source.id();
            // A source the server has never seen is held up to offset 0.
            let held_end = after
                .get(&id)
                .or_else(|| self.held.get(&id))
                .copied()
                .unwrap_or(0);
            if batch.start > held_end && !batch.allow_gap {
                return Err(IngestError::Gap {
                    batch: i,
                    stream: batch.source.key(),
                    held_end,
                    start: batch.start,
                });
            }
            let end = held_end.max(batch.end);
            after.insert(id, end);
        }
        Ok(())
    }
}
