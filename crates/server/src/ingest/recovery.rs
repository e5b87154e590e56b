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
                let free = free_bytes(&dir).unwrap_or(u64::MAX);
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

/// Bytes free for an unprivileged writer on the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `st` is written by the
    // call before it is read, only when the call succeeds.
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `st`.
    let st = unsafe { st.assume_init() };
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}
