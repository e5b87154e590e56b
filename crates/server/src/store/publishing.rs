//! [`Publishing`]: what the storage API and `/metrics` show of the
//! splits' way to the object store, kept by [`super::SplitSet`] on the
//! committer's thread and read by request handlers.

use std::sync::Mutex;
use std::time::Instant;

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
        }
    }
}
