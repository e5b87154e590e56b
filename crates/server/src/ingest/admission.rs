//! Admission: an ingest request waits for room in memory before its lines
//! are taken, so lines waiting for the index stay within
//! `storage.max_unindexed_bytes` (the store's [`Room`]).
//!
//! A request waits twice: first before it reads its body
//! ([`wait_for_room`], holding nothing but its connection), then for a
//! reservation of its lines' size ([`admit`]), so that requests woken
//! together cannot all fill the same room. Overshoot is at most one
//! request: one larger than the room goes through when nothing else is
//! reserved. Past the deadline the caller answers 503.

use std::sync::Arc;

use crate::store::Room;

/// Room reserved for one ingest request, until its lines are applied
/// (then the store counts them as unindexed) or the request ends.
pub struct Admission {
    room: Arc<Room>,
    bytes: u64,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.room.release(self.bytes);
    }
}

/// Waits until what is held is at most `limit`, or the `deadline`
/// passes (then says how many bytes are held). Cheap: for a request
/// that has not read its body yet.
pub async fn wait_for_room(
    room: &Room,
    limit: u64,
    deadline: tokio::time::Instant,
) -> Result<(), u64> {
    loop {
        // Registered before the check, so a commit in between still wakes us.
        let freed = room.freed();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if room.held() <= limit {
            return Ok(());
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            return Err(room.held());
        }
    }
}

/// Reserves `bytes` for a request about to be ingested, waiting until
/// they fit within `limit` (or until nothing else is reserved, so one
/// request larger than the room still goes through).
pub async fn admit(
    room: &Arc<Room>,
    bytes: u64,
    limit: u64,
    deadline: tokio::time::Instant,
) -> Result<Admission, u64> {
    loop {
        let freed = room.freed();
        tokio::pin!(freed);
        freed.as_mut().enable();
        if room.try_reserve(bytes, limit) {
            return Ok(Admission {
                room: room.clone(),
                bytes,
            });
        }
        if tokio::time::timeout_at(deadline, freed).await.is_err() {
            return Err(room.held());
        }
    }
}
