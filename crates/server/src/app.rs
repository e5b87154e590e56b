//! What every request handler shares: the parts the service started,
//! behind one `Arc`. `service.rs` builds it; `api/` only reads it, so the
//! API and the service's start and stop never import each other.

use std::sync::Arc;

use tokio::sync::watch;

use crate::access::{Auth, Limits};
use crate::alert::Alerts;
use crate::config::Config;
use crate::ingest::Ingestor;
use crate::push::Pusher;
use crate::search::SearchWorkers;
use crate::store::{CommitterCommand, DiskCache, Publishing, RetentionLog, Store};
use crate::wal::Wal;

pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub ingestor: Arc<Ingestor>,
    /// Lines pushed by other senders, each entry once.
    pub pusher: Arc<Pusher>,
    pub wal: Arc<Wal>,
    /// Flips to true when the service stops: ends follow streams.
    pub stopping: watch::Receiver<bool>,
    /// Asks the committer to seal and commit everything now.
    pub committer: std::sync::mpsc::Sender<CommitterCommand>,
    /// What retention deleted, for the storage API.
    pub retention_log: Arc<RetentionLog>,
    /// Where published splits and the metastore are, for the storage API.
    pub object_store: String,
    /// This node's incarnation: kept in the data dir, new with a new one.
    pub incarnation: String,
    /// The upload lag and the last failure to publish.
    pub publishing: Arc<Publishing>,
    /// The disk cache of a remote store's split indexes.
    pub cache: Arc<DiskCache>,
    pub alerts: Arc<Alerts>,
    pub auth: Arc<Auth>,
    pub limits: Arc<Limits>,
    /// The cores all searches share (`search.workers`).
    pub search_workers: Arc<SearchWorkers>,
    /// This node's id and the nodes it knows of.
    pub cluster: Arc<crate::cluster::Cluster>,
}

impl App {
    /// Reads the token files and the alert rules file again; a bad one is
    /// logged and what is in force stays.
    pub async fn reload(&self) {
        match self.auth.reload() {
            Ok(c) => tracing::info!(
                ingest = c.ingest,
                read = c.read,
                admin = c.admin,
                node = c.node,
                "tokens reloaded"
            ),
            Err(e) => tracing::error!("tokens not reloaded: {e}"),
        }
        if self.config.alerts.rules_path().is_none() {
            return;
        }
        let alerts = self.alerts.clone();
        match tokio::task::spawn_blocking(move || alerts.reload()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("alert rules not reloaded: {e}"),
            Err(e) => tracing::error!("alert rules not reloaded: {e}"),
        }
    }
}
