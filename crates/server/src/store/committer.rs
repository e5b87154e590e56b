//! The committer: turns sealed in-memory blocks into committed index
//! documents, then lets the WAL go of them.
//!
//! It runs on its own thread every `commit_interval_ms`: seal the open
//! blocks that are old enough, compress and add each sealed block to the
//! split being built for its window of line time, commit the touched
//! splits (block bytes synced first), hand the result to the store, seal
//! and publish the splits that are due, and trim the WAL below the oldest
//! line not yet published.  Between rounds it closes idle
//! writers, deletes retired splits' objects and runs retention, so every
//! split's life is decided on this one thread ([`SplitSet`]). On shutdown it seals and commits everything
//! so that a clean restart replays nothing.
//!
//! A [`Flush`] asks it to seal and commit everything now (the admin flush
//! endpoint: before a backup, or when a benchmark needs every acknowledged
//! line in the index).

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::retention::Retention;
use super::sources::SealedBlock;
use super::splits::SplitSet;
use super::store::Store;
use crate::config::StorageConfig;
use crate::index::{PartitionError, PreparedBlock};
use crate::metrics::{emit, CommitDone};
use crate::wal::Wal;
/// How often the committer looks whether lines waiting for the index are
/// past half of `max_unindexed_bytes` (then it commits without waiting for
/// the interval, so ingest is not held back).
const BACKLOG_CHECK: Duration = Duration::from_millis(50);
/// Blocks compressed at once: bounds the memory of a round with a backlog.
const COMPRESS_CHUNK: usize = 64;

/// What the committer's thread is asked to do between its rounds.
pub enum CommitterCommand {
    /// Seal and commit every block now, then answer with how many blocks
    /// were committed.
    Flush(Flush),
    /// Commit everything and end.
    Stop,
}

/// The answer channel of a flush.
pub type Flush = Sender<usize>;

pub struct Committer {
    store: Arc<Store>,
    wal: Arc<Wal>,
    config: StorageConfig,
    splits: SplitSet,
    retention: Retention,
    /// When a block last failed to be compressed, added or committed.
    last_failure: Option<Instant>,
    /// Whether this node runs merges, retention and the sweep of
    /// abandoned objects now (in a cluster, one node does:
    /// `Membership::runs_housekeeping`), and whether it did last round.
    housekeeper: Housekeeper,
    was_housekeeper: bool,
}

/// Asked every round: may this node run the cluster's housekeeping?
pub type Housekeeper = Arc<dyn Fn() -> bool + Send + Sync>;

impl Committer {
    pub fn new(
        store: Arc<Store>,
        wal: Arc<Wal>,
        config: StorageConfig,
        splits: SplitSet,
        retention: Retention,
    ) -> Self {
        Committer {
            store,
            wal,
            config,
            splits,
            retention,
            last_failure: None,
            housekeeper: Arc::new(|| true),
            was_housekeeper: true,
        }
    }

    /// Runs until told to stop (or the channel is dropped), then commits
    /// everything.
    pub fn run(&mut self, commands: Receiver<CommitterCommand>) {
        let mut next = Instant::now() + self.config.commit_interval();
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match commands.recv_timeout(wait.min(BACKLOG_CHECK)) {
                // Not time yet, and no backlog that holds ingest back.
                // After a failed round, only the interval: a failing disk
                // must not turn the backlog check into a hot loop.
                Err(RecvTimeoutError::Timeout)
                    if Instant::now() < next
                        && (self.failed_recently()
                            || self.store.unindexed_bytes()
                                < self.config.max_unindexed_bytes / 2) => {}
                Err(RecvTimeoutError::Timeout) => {
                    // The interval counts from the start of a round: when a
                    // round takes longer (a backlog), the next starts at once.
                    let started = Instant::now();
                    self.commit(false);
                    self.housekeeping();
                    next = started + self.config.commit_interval();
                }
                Ok(CommitterCommand::Flush(reply)) => {
                    let _ = reply.send(self.commit(true));
                }
                Ok(CommitterCommand::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.splits.stop_merging();
        self.commit(true);
    }

    /// Seals what is due (everything when `all`) and commits it, then
    /// seals and publishes the splits that are due (all of them when
    /// `all`). Returns the number of blocks committed.
    pub fn commit(&mut self, all: bool) -> usize {
        let started = Instant::now();
        let seal_below = self.wal.over_budget(self.config.wal_max_bytes);
        if let Some(seq) = seal_below {
            tracing::debug!(
                seq,
                "WAL over storage.wal_max_bytes: sealing the blocks below the seq that brings it to half, and the splits being built"
            );
        }
        let blocks = self.store.blocks_to_commit(all, seal_below);
        if blocks.is_empty() {
            let in_memory = self.store.oldest_in_memory();
            self.publish(all, seal_below, in_memory);
            return 0;
        }
        let mut added = Vec::with_capacity(blocks.len());
        let level = self.config.zstd_level;
        let compressed = blocks
            .chunks(COMPRESS_CHUNK)
            .flat_map(|chunk| compress_all(chunk, level));
        for (block, compressed) in blocks.iter().cloned().zip(compressed) {
            let (t_min, t_max) = block.lines.time_range().unwrap_or_default();
            let result = compressed
                .map_err(|source| PartitionError::Io {
                    dir: std::path::PathBuf::from("(compressing a block)"),
                    source,
                })
                .and_then(|c| {
                    self.splits
                        .writer_for(&self.store, (t_min, t_max), block.first_seq)
                        .and_then(|(id, w)| w.add_block(&block.source, c).map(|r| (id, r)))
                });
            match result {
                Ok((id, r)) => added.push((block, id, r)),
                Err(e) => {
                    self.last_failure = Some(Instant::now());
                    // A writer that failed is not trusted again: a fresh one
                    // starts from what is committed.
                    self.splits.drop_window_writer(t_min);
                    tracing::error!(error = %e, "cannot add a block to the index; it and the rest of this round stay in memory and the WAL");
                    // The rest would most likely fail the same way (a full
                    // disk): try again next round.
                    break;
                }
            }
        }
        let mut failed = Vec::new();
        let mut touched: Vec<String> = added.iter().map(|(_, s, _)| s.clone()).collect();
        touched.sort_unstable();
        touched.dedup();
        for id in touched {
            if let Some(w) = self.splits.writer(&id) {
                if let Err(e) = w.commit() {
                    self.last_failure = Some(Instant::now());
                    tracing::error!(error = %e, "index commit failed; its blocks stay in memory and the WAL and are retried");
                    failed.push(id.clone());
                }
            } else {
                // Its writer failed while adding a block this round and was
                // dropped with the blocks added before it: none is committed.
                failed.push(id.clone());
            }
            if failed.contains(&id) {
                // Rolled back, but tantivy's writer may have lost a worker
                // thread to the error: start the next try with a new one.
                self.splits.drop_writer(&id);
            }
        }
        added.retain(|(_, s, _)| !failed.contains(s));
        let trim = self.store.committed(&added);
        self.publish(all, seal_below, trim);
        tracing::debug!(
            blocks = added.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "committed"
        );
        emit(CommitDone {
            seconds: started.elapsed().as_secs_f64(),
        });
        added.len()
    }

    /// Seals and publishes the splits that are due, then trims the WAL
    /// below the oldest line not yet published (`in_memory`: the oldest
    /// record with a line only in memory).
    fn publish(&mut self, all: bool, wal_pinned: Option<u64>, in_memory: u64) {
        self.splits.seal_due(all, wal_pinned);
        self.splits.publish(&self.store, all);
        let trim = in_memory.min(self.splits.unpublished_seq());
        if let Err(e) = self.wal.trim_below(trim) {
            tracing::warn!(error = %e, "WAL trim failed; retried after the next commit");
        }
    }

    fn failed_recently(&self) -> bool {
        self.last_failure
            .is_some_and(|t| t.elapsed() < self.config.commit_interval())
    }

    /// In a cluster: only while `housekeeper` says so does this node run
    /// merges, retention and the sweep of abandoned objects.
    pub fn set_housekeeper(&mut self, housekeeper: Housekeeper) {
        self.housekeeper = housekeeper;
        self.was_housekeeper = false;
    }

    /// Closes idle writers, deletes what retired and abandoned splits
    /// left once no search can read it, follows the other nodes (in a
    /// cluster), applies retention, and takes up and starts merges.
    fn housekeeping(&mut self) {
        self.splits.close_idle();
        // What this node retired itself, it deletes (after the grace).
        self.splits.delete_retired();
        // In a cluster: a source another node took is dropped here
        // within a round, before this node could publish it; what the
        // others published is shown.
        self.splits.follow_metastore(&self.store);
        let leading = (self.housekeeper)();
        if leading && !self.was_housekeeper {
            // Taking over: what the one before retired and did not
            // delete yet is deleted here.
            self.splits.take_over_retired();
        }
        self.was_housekeeper = leading;
        if !leading {
            return;
        }
        self.splits.delete_abandoned();
        self.retention.run_if_due(&self.store, &mut self.splits);
        self.splits.merge(&self.store);
    }
}

/// Compresses and tokenizes `blocks` on every core: each thread takes an
/// equal run of them. The order of the answer is the order of `blocks`.
fn compress_all(blocks: &[Arc<SealedBlock>], level: i32) -> Vec<std::io::Result<PreparedBlock>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(blocks.len().max(1));
    if threads <= 1 {
        return blocks
            .iter()
            .map(|b| PreparedBlock::new(b.source.id(), &b.lines, level))
            .collect();
    }
    let per_thread = blocks.len().div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .chunks(per_thread)
            .map(|chunk| {
                let handle = s.spawn(move || {
                    chunk
                        .iter()
                        .map(|b| PreparedBlock::new(b.source.id(), &b.lines, level))
                        .collect::<Vec<_>>()
                });
                (chunk.len(), handle)
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|(len, h)| {
                // One answer per block even then, so the order holds.
                h.join().unwrap_or_else(|_| {
                    (0..len)
                        .map(|_| Err(std::io::Error::other("a compressing thread panicked")))
                        .collect()
                })
            })
            .collect()
    })
}
