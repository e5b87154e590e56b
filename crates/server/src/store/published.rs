//! [`PublishedEnds`]: the committer's record of each source's published
//! end in the metastore.
//!
//! The committer notes the committed end of every source a round
//! touched; they are written as one metastore version at most every
//! [`RECORD_INTERVAL`], and always before retention runs: retention may
//! delete a source's last lines, and from then on the metastore's record
//! is the only place its end is kept. Until a source's end is recorded
//! its partitions still hold it, so a write that fails (or a crash before
//! it) loses nothing: the ends are noted again at the next start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::Source;

use super::store::Store;
use crate::metastore::{Change, Metastore, SourceAdvance};

/// How often noted ends are written, at most.
pub const RECORD_INTERVAL: Duration = Duration::from_secs(10);

pub struct PublishedEnds {
    metastore: Arc<Metastore>,
    /// By source id: the end to record, not written yet.
    pending: HashMap<u64, SourceAdvance>,
    last_write: Instant,
}

impl PublishedEnds {
    pub fn new(metastore: Arc<Metastore>) -> PublishedEnds {
        PublishedEnds {
            metastore,
            pending: HashMap::new(),
            last_write: Instant::now(),
        }
    }

    /// Notes committed ends to record.
    pub fn note(&mut self, ends: Vec<(Arc<Source>, u64)>) {
        for (source, end) in ends {
            let a = self
                .pending
                .entry(source.id())
                .or_insert_with(|| SourceAdvance {
                    source: (*source).clone(),
                    published_end: 0,
                });
            a.published_end = a.published_end.max(end);
        }
    }

    /// Writes what is noted, if [`RECORD_INTERVAL`] has passed or `now`.
    /// Returns false if nothing could be written (what was noted stays
    /// noted, for the next try).
    pub fn record(&mut self, store: &Store, now: bool) -> bool {
        if self.pending.is_empty() || (!now && self.last_write.elapsed() < RECORD_INTERVAL) {
            return true;
        }
        let sources: Vec<SourceAdvance> = self.pending.values().cloned().collect();
        match self.metastore.commit(vec![Change::Published { sources }]) {
            Ok(version) => {
                let written = std::mem::take(&mut self.pending);
                store.set_published(written.iter().map(|(id, a)| (*id, a.published_end)));
                self.last_write = Instant::now();
                tracing::debug!(version, sources = written.len(), "published ends recorded");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot record published ends in the metastore; retried, and retention waits for it");
                false
            }
        }
    }
}
