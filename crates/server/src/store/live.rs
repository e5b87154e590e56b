//! Live lines: every batch the store applies, broadcast to live tails and
//! the alert engine ([`TailHub`]). Nobody subscribed costs nothing;
//! a subscriber that falls behind by more than the channel's capacity is
//! told how many batches it missed (the broadcast's `Lagged`) and ingest
//! never waits for it.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use cblogs_core::Source;
use tokio::sync::broadcast;

use crate::block::LineBlock;

/// One applied batch of one source: what live readers receive.
pub struct LiveBatch {
    pub source: Arc<Source>,
    pub lines: LineBlock,
    /// The batch as its readers send it on, encoded by the first that needs
    /// it and shared by every other: with 64 tails on one job, a line is
    /// turned into JSON once, not 64 times. (The store does not know the
    /// encoding; the follow endpoint does.)
    encoded: OnceLock<Bytes>,
}

impl LiveBatch {
    pub(super) fn new(source: Arc<Source>, lines: LineBlock) -> LiveBatch {
        LiveBatch {
            source,
            lines,
            encoded: OnceLock::new(),
        }
    }

    /// The batch encoded by `encode`, the first time any reader asks.
    /// Every reader must pass the same encoding.
    pub fn encoded(&self, encode: impl FnOnce(&LiveBatch) -> Bytes) -> Bytes {
        self.encoded.get_or_init(|| encode(self)).clone()
    }
}

/// The broadcast of applied batches.
pub struct TailHub {
    tx: broadcast::Sender<Arc<LiveBatch>>,
}

impl TailHub {
    /// A hub whose subscribers may fall `capacity` batches behind before
    /// they are told they lagged.
    pub fn new(capacity: usize) -> TailHub {
        let (tx, _) = broadcast::channel(capacity);
        TailHub { tx }
    }

    /// Every batch published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveBatch>> {
        self.tx.subscribe()
    }

    pub(super) fn publish(&self, batch: LiveBatch) {
        // No receivers is fine: nobody is following.
        let _ = self.tx.send(Arc::new(batch));
    }
}
