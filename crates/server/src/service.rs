//! Starting and stopping the parts in the right order.
//!
//! Start: open the partitions, replay the WAL into memory, start the WAL
//! writer and the committer, build the ingest ledger from what is held.
//! Stop: (HTTP already drained by the caller) close the WAL so every queued
//! record is synced and applied, then let the committer seal and commit
//! everything and trim the WAL: a clean restart replays nothing.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::committer::{Committer, CommitterCommand};
use crate::config::Config;
use crate::http::App;
use crate::ingest::Ingestor;
use crate::partition::PartitionError;
use crate::store::Store;
use crate::wal::{Wal, WalError, WalFiles};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Storage(#[from] PartitionError),
    #[error(transparent)]
    Alerts(#[from] crate::alert::RulesError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub struct Service {
    pub app: Arc<App>,
    wal: Arc<Wal>,
    stopping: Arc<watch::Sender<bool>>,
    committer_commands: mpsc::Sender<CommitterCommand>,
    committer: JoinHandle<()>,
}

impl Service {
    pub fn open(config: Config) -> Result<Service, StartError> {
        let data = config.data_dir.clone();
        std::fs::create_dir_all(&data).map_err(|source| StartError::DataDir {
            path: data.clone(),
            source,
        })?;
        let store = Arc::new(Store::open(
            &data.join("partitions"),
            config.storage.clone(),
            config.read.follow_buffer_batches,
        )?);
        // Tokens and rules first: a bad file stops the start before anything runs.
        let auth = Arc::new(crate::auth::Auth::load(&config.auth)?);
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let (stopping, stopping_rx) = watch::channel(false);
        let alerts =
            crate::alert::Alerts::start(&config, &store, stopping_rx.clone(), metrics.clone())?;
        let (files, records) = WalFiles::open(&data.join("wal"), config.storage.wal_segment_bytes)?;
        let last_seq = records.last().map_or(0, |r| r.seq);
        store.replay(records);
        let applier = store.clone();
        let wal = Arc::new(Wal::start(files, last_seq, move |records| {
            applier.apply(records)
        }));
        let ingestor = Ingestor::new(
            wal.clone(),
            store.held_ends(),
            last_seq,
            config.ingest.max_line_bytes,
        );
        let mut committer = Committer::new(
            store.clone(),
            wal.clone(),
            config.storage.clone(),
            metrics.clone(),
        );
        // Replayed lines may already be old enough to seal: commit them now,
        // so the WAL from the last run is trimmed early.
        committer.commit(false);
        let (committer_commands, commands) = mpsc::channel();
        let committer = std::thread::Builder::new()
            .name("committer".into())
            .spawn(move || committer.run(commands))
            .map_err(|source| StartError::DataDir {
                path: data.clone(),
                source,
            })?;
        let caches = Arc::new(crate::search::ReadCaches::new(&config.search));
        let limits = crate::limits::Limits::new(&config);
        let app = Arc::new(App {
            config,
            store,
            ingestor,
            wal: wal.clone(),
            stopping: stopping_rx,
            committer: committer_commands.clone(),
            caches,
            alerts,
            auth,
            limits,
            metrics,
        });
        spawn_ingest_recovery(app.clone());
        Ok(Service {
            app,
            wal,
            stopping: Arc::new(stopping),
            committer_commands,
            committer,
        })
    }

    /// Tells follow streams and the demo to end.
    pub fn begin_stop(&self) {
        self.stopping.send_replace(true);
    }

    /// A handle that does [`Service::begin_stop`] from elsewhere (a signal handler).
    pub fn stop_handle(&self) -> Arc<watch::Sender<bool>> {
        self.stopping.clone()
    }

    /// The orderly stop; call after the HTTP server has drained.
    pub fn close(self) {
        self.begin_stop();
        self.wal.close();
        let _ = self.committer_commands.send(CommitterCommand::Stop);
        if self.committer.join().is_err() {
            tracing::error!("the committer panicked during shutdown; the WAL keeps its lines for the next start");
        }
        tracing::info!("stopped cleanly");
    }
}

/// A full disk stops the WAL (ingest answers 503); this thread starts it
/// again once the disk has room: every second it looks at the free space
/// where the WAL lives and, past [`RECOVERY_FREE_BYTES`], resumes.
fn spawn_ingest_recovery(app: Arc<App>) {
    let started = std::thread::Builder::new()
        .name("ingest-recovery".into())
        .spawn(move || {
            let dir = app.wal.dir();
            let mut warned = false;
            while !*app.stopping.borrow() {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Some(why) = app.wal.failure() else {
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
                let store = app.store.clone();
                if app.ingestor.recover(|| store.held_ends()) {
                    tracing::info!(free_bytes = free, "the disk has room again: ingest resumed");
                }
            }
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the ingest recovery thread; after a full disk, restart cblogsd");
    }
}

/// Room needed on the WAL's disk before ingest resumes after a full disk.
const RECOVERY_FREE_BYTES: u64 = 1 << 20;

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
