//! The room lines take in memory until they are in the index: what
//! `storage.max_unindexed_bytes` bounds.
//!
//! Two counts share it: bytes of lines applied and not yet committed (open
//! and sealed blocks, kept by the store) and bytes that admitted ingest
//! requests have reserved but not yet applied (kept by `ingest/admission.rs`),
//! so requests woken together cannot all fill the same room. Whoever frees
//! room wakes whoever waits for it.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::futures::Notified;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Room {
    /// Bytes of lines in memory and not yet in the index.
    unindexed: AtomicU64,
    /// Bytes of ingest requests admitted and not yet applied.
    reserved: AtomicU64,
    /// Woken after each commit and each admission's end: there may be room.
    freed: Notify,
}

impl Room {
    /// Bytes of lines in memory that are not in the index yet.
    pub fn unindexed(&self) -> u64 {
        self.unindexed.load(Ordering::Relaxed)
    }

    /// Bytes waiting for the index, and bytes of requests admitted but
    /// not yet applied.
    pub fn held(&self) -> u64 {
        self.unindexed() + self.reserved.load(Ordering::Acquire)
    }

    /// A wake-up for the next time room is freed. Enable it before looking
    /// at the counts, so that room freed in between still wakes the caller.
    pub fn freed(&self) -> Notified<'_> {
        self.freed.notified()
    }

    /// Reserves `bytes` if they fit within `limit`, or if nothing else is
    /// reserved and what waits for the index is within it (so one request
    /// larger than the room still goes through).
    pub fn try_reserve(&self, bytes: u64, limit: u64) -> bool {
        loop {
            let reserved = self.reserved.load(Ordering::Acquire);
            let unindexed = self.unindexed();
            let fits = unindexed + reserved + bytes <= limit;
            if !(fits || (reserved == 0 && unindexed <= limit)) {
                return false;
            }
            if self
                .reserved
                .compare_exchange(
                    reserved,
                    reserved + bytes,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
            {
                return true;
            }
        }
    }

    /// Gives back a reservation (its lines are applied, and counted as
    /// unindexed, or the request ended without them).
    pub fn release(&self, bytes: u64) {
        self.reserved.fetch_sub(bytes, Ordering::AcqRel);
        self.freed.notify_waiters();
    }

    pub(super) fn add_unindexed(&self, bytes: u64) {
        self.unindexed.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Committed lines left memory.
    pub(super) fn free_unindexed(&self, bytes: u64) {
        let _ = self
            .unindexed
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
        self.freed.notify_waiters();
    }
}
