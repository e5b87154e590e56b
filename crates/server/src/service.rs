//! Starting and stopping the parts in the right order.
//!
//! Start: open the object store and read the metastore, open the splits
//! (published, and those left on the local disk), replay the WAL into memory, start the WAL
//! writer and the committer, build the ingest ledger from what is held.
//! Stop: (HTTP already drained by the caller) close the WAL so every queued
//! record is synced and applied, then let the committer seal and commit
//! everything and trim the WAL: a clean restart replays nothing.

use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::access::{Auth, AuthError, Limits};
use crate::alert::{Alerts, RulesError};
use crate::app::App;
use crate::bucket::{Bucket, BucketError};
use crate::cluster::Ownerships;
use crate::config::Config;
use crate::index::{PartitionError, ReadCaches};
use crate::ingest::{spawn_ingest_recovery, Ingestor};
use crate::metastore::{Metastore, MetastoreError};
use crate::multiline::MultilineRules;
use crate::push::Pusher;
use crate::search::SearchWorkers;
use crate::store::{
    Committer, CommitterCommand, PublishError, Publishing, Retention, RetentionLog, SplitSet,
    Store, TailHub,
};
use crate::wal::{Wal, WalError, WalFiles};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Wal(#[from] WalError),
    #[error(transparent)]
    Storage(#[from] PartitionError),
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error(transparent)]
    Metastore(#[from] MetastoreError),
    #[error("{error}; {hint}")]
    StoreRefused {
        error: MetastoreError,
        hint: &'static str,
    },
    #[error(transparent)]
    Splits(#[from] PublishError),
    #[error(transparent)]
    Alerts(#[from] RulesError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot keep this node's id in {path}/node_id: {source}")]
    NodeId {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Peers(#[from] crate::cluster::PeerError),
    #[error("config: {0}")]
    Multiline(String),
}

/// This node's incarnation: read from `<data_dir>/incarnation`, or made
/// when the data dir is new. It changes exactly when what the node held
/// but had not published is gone.
fn incarnation(data: &std::path::Path) -> std::io::Result<String> {
    crate::disk::kept_id(data, "incarnation", "")
}

/// Reads the metastore. While the store cannot be reached, says so (naming
/// it) and tries again, waiting longer each time up to 30 s; a store that
/// answers with a refusal (credentials, a missing bucket) stops the start.
fn open_metastore(bucket: &Arc<Bucket>) -> Result<Metastore, StartError> {
    let mut wait = std::time::Duration::from_secs(1);
    loop {
        match Metastore::open(bucket.clone()) {
            Ok(m) => return Ok(m),
            Err(e) if e.is_unreachable() => {
                tracing::warn!(error = %e, retry_in_secs = wait.as_secs(), "the object store cannot be reached; cblogsd starts once it can");
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_secs(30));
            }
            Err(error) => {
                return Err(match error.hint() {
                    Some(hint) => StartError::StoreRefused { error, hint },
                    None => error.into(),
                })
            }
        }
    }
}

/// How much longer than `search.max_query_secs` a retired split's objects
/// are kept.
const RETIRED_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Service {
    app: Arc<App>,
    wal: Arc<Wal>,
    stopping: Arc<watch::Sender<bool>>,
    committer_commands: mpsc::Sender<CommitterCommand>,
    committer: JoinHandle<()>,
}

impl Service {
    pub fn open(config: Config) -> Result<Service, StartError> {
        let data = config.data_dir.clone();
        let multiline = Arc::new(
            MultilineRules::new(&config.multiline, config.search.regex_size_limit)
                .map_err(StartError::Multiline)?,
        );
        std::fs::create_dir_all(&data).map_err(|source| StartError::DataDir {
            path: data.clone(),
            source,
        })?;
        let incarnation = incarnation(&data).map_err(|source| StartError::DataDir {
            path: data.clone(),
            source,
        })?;
        let bucket = Arc::new(Bucket::open(&config.object_store, &data)?);
        let object_store = bucket.location().to_owned();
        let local_store = bucket.is_local();
        let metastore = Arc::new(open_metastore(&bucket)?);
        let published_ends = metastore.sources();
        // Tokens and rules first: a bad file stops the start before anything runs.
        let auth = Arc::new(Auth::load(&config.auth, config.cluster.token_file())?);
        let cluster = Arc::new(
            crate::cluster::Cluster::open(&config.cluster, &config.data_dir, auth.clone())
                .map_err(|e| match e {
                    crate::cluster::OpenError::NodeId(source) => StartError::NodeId {
                        path: config.data_dir.clone(),
                        source,
                    },
                    crate::cluster::OpenError::Peers(e) => StartError::Peers(e),
                })?,
        );
        // A node of a cluster takes each source before its lines, and
        // publishes it only under the epoch it holds (fencing).
        let ownerships = config
            .cluster
            .is_cluster()
            .then(|| Arc::new(Ownerships::open(&cluster.node_id, metastore.clone())));
        if let Some(own) = &ownerships {
            cluster.set_ownerships(own.clone());
        }
        // A retired split's objects outlive the longest search that could
        // be reading them.
        let retired_grace = config.search.max_query_time() + RETIRED_MARGIN;
        let publishing = Arc::new(Publishing::default());
        let (mut splits, existing) = SplitSet::open(
            &data,
            bucket.clone(),
            metastore,
            &config,
            retired_grace,
            publishing.clone(),
        )?;
        let cache = splits.cache();
        let store = Arc::new(Store::open(
            existing,
            config.storage.clone(),
            TailHub::new(config.read.follow_buffer_batches),
            Arc::new(ReadCaches::new(&config.search)),
            published_ends,
            ownerships.clone(),
            splits.followed(),
        )?);
        let (stopping, stopping_rx) = watch::channel(false);
        let alerts = Alerts::start(
            &config,
            store.live(),
            bucket,
            cluster.clone(),
            crate::cluster::Peers::new(&config.cluster, auth.clone())?,
            stopping_rx.clone(),
        )?;
        let (files, records) = WalFiles::open(
            &data.join("wal"),
            config.storage.wal_segment_bytes,
            config.storage.wal_zstd_level,
        )?;
        let last_seq = records.last().map_or(0, |r| r.seq);
        store.replay(records);
        if let Some(own) = &ownerships {
            splits.set_ownerships(own.clone());
            // Lines replayed of a source another node took meanwhile are
            // dropped; those of a source nobody owns are taken.
            if let Err(e) = splits.settle_ownership(&store) {
                tracing::warn!(error = %e, "cannot take the sources replayed from the WAL; they are taken with their next lines");
            }
        }
        let applier = store.clone();
        let wal = Arc::new(Wal::start(files, last_seq, move |records| {
            applier.apply(records)
        }));
        let ingestor = Arc::new(Ingestor::new(
            wal.clone(),
            store.held_ends(),
            last_seq,
            config.ingest.max_line_bytes,
            ownerships,
            multiline,
        ));
        let retention_log = Arc::new(RetentionLog::default());
        let mut committer = Committer::new(
            store.clone(),
            wal.clone(),
            config.storage.clone(),
            splits,
            Retention::new(config.storage.clone(), retention_log.clone(), local_store),
        );
        if config.cluster.is_cluster() {
            // One node runs merges, retention and the sweep (ZooKeeper's
            // oldest member); a static list has no election: each node
            // does, their conditional commits keeping them apart.
            let membership = cluster.membership.clone();
            committer.set_housekeeper(Arc::new(move || membership.runs_housekeeping()));
        }
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
        let limits = Limits::new(&config);
        spawn_ingest_recovery(
            wal.clone(),
            ingestor.clone(),
            store.clone(),
            stopping_rx.clone(),
        );
        let search_workers = Arc::new(SearchWorkers::new(config.search.workers));
        let pusher = Arc::new(Pusher::new(
            ingestor.clone(),
            store.clone(),
            config.ingest.push_dedup_entries,
            config.ingest.max_line_bytes,
        ));
        let app = Arc::new(App {
            config,
            store,
            ingestor,
            pusher,
            wal: wal.clone(),
            stopping: stopping_rx,
            committer: committer_commands.clone(),
            retention_log,
            object_store,
            incarnation,
            publishing,
            cache,
            alerts,
            auth,
            limits,
            search_workers,
            cluster,
        });
        Ok(Service {
            app,
            wal,
            stopping: Arc::new(stopping),
            committer_commands,
            committer,
        })
    }

    /// What the request handlers share: for tests that drive the parts
    /// in-process.
    #[doc(hidden)]
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The HTTP API and the web page, every route behind its role.
    pub fn router(&self) -> axum::Router {
        crate::api::router(self.app.clone())
    }

    /// Lines for the start-up log: which roles are open to whom.
    pub fn describe_auth(&self) -> Vec<String> {
        self.app.auth.describe()
    }

    /// Joins the cluster's serverset (if `[cluster] zookeeper` is set) as
    /// the node listening at `addr` with `scheme`.
    pub fn join_cluster(&self, addr: std::net::SocketAddr, scheme: &str) {
        self.app.cluster.join(addr, scheme, self.stopping());
    }

    /// Turns true when the service begins to stop.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.app.stopping.clone()
    }

    /// Reloads on every SIGHUP `hup` receives: the token files and the
    /// alert rules file are read again (a bad one is logged and what is in
    /// force stays).
    #[cfg(unix)]
    pub fn reload_on(&self, mut hup: tokio::signal::unix::Signal) {
        let app = self.app.clone();
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                app.reload().await;
            }
        });
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
