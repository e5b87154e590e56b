//! [`Publishing`]: what the storage API and `/metrics` show of the
//! splits' way to the object store, kept by [`super::SplitSet`] on the
//! committer's thread and read by request handlers.

use std::sync::Mutex;
use std::time::Instant;

use cblogs_core::api::MergeSummary;

use crate::metrics::{emit, MergeEnded};

#[derive(Default)]
pub struct Publishing {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// When the oldest split not yet published was started.
    oldest_unpublished: Option<Instant>,
    /// Why the last publish failed, until one succeeds.
    error: Option<String>,
    published: u64,
    /// Bytes of the published splits in the object store.
    bucket_bytes: u64,
    /// What the storage API and `/metrics` show of merges.
    merges: MergeSummary,
}

/// A reading of [`Publishing`].
pub struct PublishingNow {
    /// Seconds since the oldest split not yet published was started (0:
    /// everything is published).
    pub upload_lag_secs: f64,
    pub error: Option<String>,
    /// Splits published since the start.
    pub published: u64,
    /// Bytes of the published splits in the object store.
    pub bucket_bytes: u64,
    pub merges: MergeSummary,
}

impl Publishing {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn set_oldest_unpublished(&self, at: Option<Instant>) {
        self.lock().oldest_unpublished = at;
    }

    pub(super) fn published(&self) {
        let mut inner = self.lock();
        inner.published += 1;
        inner.error = None;
    }

    pub(super) fn set_bucket_bytes(&self, bytes: u64) {
        self.lock().bucket_bytes = bytes;
    }

    pub(super) fn merged(&self, counts: &crate::index::MergeCounts, seconds: f64) {
        let mut inner = self.lock();
        let m = &mut inner.merges;
        m.done += 1;
        m.error = None;
        m.blocks_in += counts.blocks_in;
        m.blocks_out += counts.blocks_out;
        m.bytes_in += counts.bytes_in;
        m.bytes_out += counts.bytes_out;
        m.seconds += seconds;
        emit(MergeEnded {
            ok: true,
            bytes_read: counts.bytes_in,
            bytes_written: counts.bytes_out,
            seconds,
        });
    }

    pub(super) fn merge_failed(&self, error: String) {
        let mut inner = self.lock();
        inner.merges.failed += 1;
        inner.merges.error = Some(error);
        emit(MergeEnded {
            ok: false,
            bytes_read: 0,
            bytes_written: 0,
            seconds: 0.0,
        });
    }

    pub(super) fn set_merges_pending(&self, pending: u64, running: bool) {
        let mut inner = self.lock();
        inner.merges.pending = pending;
        inner.merges.running = running;
    }

    pub(super) fn failed(&self, error: String) {
        self.lock().error = Some(error);
    }

    pub fn now(&self) -> PublishingNow {
        let inner = self.lock();
        PublishingNow {
            upload_lag_secs: inner
                .oldest_unpublished
                .map_or(0.0, |t| t.elapsed().as_secs_f64()),
            error: inner.error.clone(),
            published: inner.published,
            bucket_bytes: inner.bucket_bytes,
            merges: inner.merges.clone(),
        }
    }
}
