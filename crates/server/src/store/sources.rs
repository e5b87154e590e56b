//! What the store knows of each source: its totals, how far it is held,
//! and its open block; and the blocks sealed in memory waiting for the
//! committer.

use std::sync::Arc;
use std::time::Instant;

use cblogs_core::{JobKey, Source};

use crate::block::LineBlock;

/// Line counts and freshness of one source.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub lines: u64,
    pub bytes: u64,
    pub last_seen_ns: i64,
}

/// A source and its totals, for the jobs listing.
pub struct SourceSummary {
    pub source: Arc<Source>,
    pub job: JobKey,
    pub totals: Totals,
}

pub(super) struct SourceEntry {
    pub(super) source: Arc<Source>,
    pub(super) job: JobKey,
    pub(super) totals: Totals,
    /// Every offset below this is held (committed, sealed or open).
    pub(super) end: u64,
    pub(super) open: Option<OpenBlock>,
}

pub(super) struct OpenBlock {
    /// Shared with the read snapshots taken since the last append: a
    /// snapshot takes a reference, and the next append copies the block
    /// only if a snapshot still holds it (`Arc::make_mut`). Copying in
    /// every snapshot instead cost each search of every job a copy of
    /// every open block (up to block_bytes × sources), 8 searches at once
    /// that many copies.
    pub(super) lines: Arc<LineBlock>,
    /// The WAL record that holds this block's first line: the WAL must keep it.
    pub(super) first_seq: u64,
    pub(super) opened: Instant,
}

/// A block sealed in memory and waiting for the committer.
pub struct SealedBlock {
    pub source: Arc<Source>,
    pub lines: Arc<LineBlock>,
    /// The WAL record that holds its first line: the WAL must keep it
    /// until the block is committed.
    pub(super) first_seq: u64,
}

impl SourceEntry {
    /// The source and its totals, for the jobs listing.
    pub(super) fn summary(&self) -> SourceSummary {
        SourceSummary {
            source: self.source.clone(),
            job: self.job.clone(),
            totals: self.totals,
        }
    }

    pub(super) fn new(source: Arc<Source>) -> Self {
        SourceEntry {
            job: source.job_key(),
            source,
            totals: Totals::default(),
            end: 0,
            open: None,
        }
    }

    pub(super) fn seal(&mut self) -> Option<Arc<SealedBlock>> {
        let mut open = self.open.take()?;
        // It grew by doubling; it waits for the committer at its real size
        // (a snapshot still holding it keeps its own, grown, copy).
        Arc::make_mut(&mut open.lines).shrink_to_fit();
        Some(Arc::new(SealedBlock {
            source: self.source.clone(),
            lines: open.lines,
            first_seq: open.first_seq,
        }))
    }
}
