//! After a full disk: the WAL stops (ingest answers 503) and this thread
//! starts it again once the disk has room. Every second it looks at the
//! free space where the WAL lives and, past [`RECOVERY_FREE_BYTES`], has
//! the ingestor resume from what the store holds (everything durable).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::ingestor::Ingestor;
use crate::store::Store;
use crate::wal::Wal;

/// Room needed on the WAL's disk before ingest resumes after a full disk.
const RECOVERY_FREE_BYTES: u64 = 1 << 20;

/// Starts the recovery thread; it ends when `stopping` turns true.
pub fn spawn_ingest_recovery(
    wal: Arc<Wal>,
    ingestor: Arc<Ingestor>,
    store: Arc<Store>,
    stopping: watch::Receiver<bool>,
) {
    let started = std::thread::Builder::new()
        .name("ingest-recovery".into())
        .spawn(move || {
            let dir = wal.dir();
            let mut warned = false;
            while !*stopping.borrow() {
                std::thread::sleep(Duration::from_secs(1));
                let Some(why) = wal.failure() else {
                    warned = false;
                    continue;
                };
                let free = crate::disk::free_bytes(&dir).unwrap_or(u64::MAX);
                if free < RECOVERY_FREE_BYTES {
                    if !warned {
                        tracing::warn!(free_bytes = free, "ingest waits for disk space ({why})");
                        warned = true;
                    }
                    continue;
                }
                if ingestor.recover(|| store.held_ends()) {
                    tracing::info!(free_bytes = free, "the disk has room again: ingest resumed");
                }
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the ingest recovery thread; after a full disk, restart cblogsd");
    }
}
