//! This node among others (issue 18): who it is, and which nodes it
//! knows of. Membership comes from ZooKeeper — every Aurora cluster runs
//! one — where each node is a member of a serverset in Aurora's own
//! format, or from a static list for small setups without it.
//!
//! A member's JSON is `cblogs_core::serverset::ServiceInstance` (the CLI
//! reads members too).
//!
//! ```text
//! membership.rs  Membership: the nodes known, and whether ZooKeeper is current;
//!                NodeReport: what a node says of itself
//! zookeeper.rs   run: this node's member kept in the serverset, the others read
//! peers.rs       Peers: requests to the other nodes, with the cluster's token and CA
//! fanout.rs      ask_others: every other node that may hold lines asked at once
//! ownership.rs   Ownerships: the sources this node takes lines of, under which epoch
//! ```

mod fanout;
mod membership;
mod ownership;
mod peers;
mod zookeeper;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::access::Auth;
use crate::config::{ClusterConfig, NodeRole};
use cblogs_core::serverset::{NodeInfo, ServiceInstance};
pub use fanout::{stale_sources, Answered};
pub use membership::{ClusterView, Membership, Node, NodeReport};
pub use ownership::{Ownerships, SeenEpochs};
pub use peers::{PeerError, Peers};

/// This node's identity and what it knows of the others.
pub struct Cluster {
    pub node_id: String,
    pub membership: Arc<Membership>,
    /// How this node asks the others.
    pub peers: Peers,
    config: ClusterConfig,
    /// The sources each node owns (set once the metastore is open): a
    /// node that left still counts while it owns one.
    ownerships: OnceLock<Arc<Ownerships>>,
    /// With a static list: the nodes that answered the last round of
    /// questions, by the id each gave (`None` before the first round).
    static_answered: StaticAnswers,
}

/// The nodes of a static list that answered, by id, with their URLs.
type StaticAnswers = Arc<Mutex<Option<Vec<(String, String)>>>>;

/// Rounds a node of a static list may miss before it counts as gone.
const STATIC_MISSES: u32 = 3;

/// How often the nodes of a static list are asked who they are.
const STATIC_ASK_EVERY: Duration = Duration::from_secs(2);

/// Where a source's lines go ([`Cluster::owners`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// This node takes it: nobody owns it, or a node that left, at
    /// `seen_epoch` (0: nobody), or this node does. The take gives way if
    /// another node claims it first ([`SeenEpochs`]).
    Here { seen_epoch: u64 },
    /// Another node that takes lines owns it.
    Other { node: String, url: String },
    /// Node `0` owns it, and this node does not know the cluster's nodes
    /// yet (ZooKeeper not read, a static list not asked): it may be alive.
    Unknown(String),
}

/// The nodes alert groups are placed on: those that ingest (role `all`
/// or `ingest`), by id, with their URLs, and which of them this node is.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertNodes {
    /// This node's id.
    pub me: String,
    /// Sorted by id.
    pub nodes: Vec<(String, String)>,
}

impl AlertNodes {
    pub fn ids(&self) -> Vec<String> {
        self.nodes.iter().map(|(id, _)| id.clone()).collect()
    }

    pub fn url(&self, id: &str) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(n, _)| n == id)
            .map(|(_, url)| url.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot keep the node id: {0}")]
    NodeId(std::io::Error),
    #[error(transparent)]
    Peers(#[from] PeerError),
}

impl Cluster {
    /// The node id (configured, or kept in `<data_dir>/node_id`) and the
    /// membership as it stands before anything is heard from ZooKeeper;
    /// requests to other nodes present `auth`'s node token.
    pub fn open(
        config: &ClusterConfig,
        data_dir: &Path,
        auth: Arc<Auth>,
    ) -> Result<Cluster, OpenError> {
        let node_id = if config.node_id.is_empty() {
            kept_node_id(data_dir).map_err(OpenError::NodeId)?
        } else {
            config.node_id.clone()
        };
        let zookeeper = (!config.zookeeper.is_empty())
            .then_some((config.zookeeper.as_str(), config.serverset_path.as_str()));
        let membership = Arc::new(Membership::new(&node_id, &config.nodes, zookeeper));
        Ok(Cluster {
            node_id,
            membership,
            peers: Peers::new(config, auth)?,
            config: config.clone(),
            ownerships: OnceLock::new(),
            static_answered: Arc::new(Mutex::new(None)),
        })
    }

    /// The sources each node owns, from the metastore: set once, at the
    /// start.
    pub fn set_ownerships(&self, ownerships: Arc<Ownerships>) {
        let _ = self.ownerships.set(ownerships);
    }

    pub fn role(&self) -> NodeRole {
        self.config.role
    }

    /// The membership, each node with what it says of itself (`own` for
    /// this node), or why it did not answer, asked of all at once.
    pub async fn view_with_reports(&self, own: NodeReport) -> ClusterView {
        let mut view = self.membership.view();
        let asks = view.nodes.iter().map(|node| async {
            if node.node_id == self.node_id {
                return Ok(own.clone());
            }
            self.peers
                .get_json::<NodeReport>(&node.url, cblogs_core::api::CLUSTER_NODE_PATH)
                .await
        });
        let answers = futures_util::future::join_all(asks).await;
        for (node, answer) in view.nodes.iter_mut().zip(answers) {
            match answer {
                Ok(report) => node.report = Some(report),
                Err(e) => node.error = Some(e.to_string()),
            }
        }
        view
    }

    /// Joins the serverset, if ZooKeeper is configured: this node (at
    /// `listen`, or `[cluster] advertise`) announced unless Aurora
    /// announces it, the others followed until `stopping`.
    pub fn join(&self, listen: SocketAddr, scheme: &str, stopping: watch::Receiver<bool>) {
        if self.config.zookeeper.is_empty() {
            if !self.config.nodes.is_empty() {
                tokio::spawn(ask_static_nodes(
                    self.config.nodes.clone(),
                    self.peers.clone(),
                    self.static_answered.clone(),
                    stopping,
                ));
            }
            return;
        }
        if !self.config.announce && !self.node_id.starts_with("shard-") {
            // Its member (Aurora's) is keyed by its shard: under another
            // id this node never finds itself among the members, and so
            // never runs the housekeeping even when it is the oldest.
            tracing::warn!(node_id = %self.node_id, "cluster.announce = false but cluster.node_id is not shard-<instance>: this node cannot recognise its own member");
        }
        let member = self.config.announce.then(|| {
            let (host, port) = self.advertised(listen);
            let info = NodeInfo {
                node_id: self.node_id.clone(),
                role: self.config.role.as_str().to_owned(),
                scheme: scheme.to_owned(),
            };
            // A struct of strings and numbers always serializes.
            serde_json::to_vec(&ServiceInstance::of_node(&host, port, info)).unwrap_or_default()
        });
        let session = zookeeper::Session {
            connect: self.config.zookeeper.clone(),
            path: self.config.serverset_path.clone(),
            timeout: Duration::from_millis(self.config.session_timeout_ms),
            member,
        };
        tokio::spawn(zookeeper::run(session, self.membership.clone(), stopping));
    }

    /// The nodes alert groups are placed on, as the membership stands;
    /// `None` while it is not known (ZooKeeper not read yet, a static
    /// list not asked yet). Alone, this node is the only one; with a
    /// static list, the nodes that answered lately, by the id each gave
    /// (the membership lists them by URL, dead or alive).
    pub fn alert_nodes(&self) -> Option<AlertNodes> {
        let view = self.membership.view();
        let membership = view.membership;
        let me = self.node_id.clone();
        let mut nodes: Vec<(String, String)> = match membership {
            "none" => vec![(me.clone(), String::new())],
            "static" => self
                .static_answered
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()?,
            _ => {
                if view
                    .zookeeper
                    .as_ref()
                    .is_some_and(|z| z.state == "connecting")
                {
                    return None;
                }
                view.nodes
                    .into_iter()
                    .filter(|n| n.role != "query")
                    .map(|n| (n.node_id, n.url))
                    .collect()
            }
        };
        // In a static list this node is among them whatever its own entry
        // answered (a name it cannot reach itself by, or none): it counts
        // its own groups in process. (In a serverset, only as a member.)
        let listed = nodes.iter().any(|(id, _)| *id == me);
        if membership == "static" && self.config.role != NodeRole::Query && !listed {
            nodes.push((me.clone(), String::new()));
        }
        if nodes.is_empty() {
            return None;
        }
        nodes.sort();
        Some(AlertNodes { me, nodes })
    }

    /// Where the lines of each of `ids` go (blocking: the metastore's
    /// lock, and a read of it): to this node, or to the node that owns the
    /// source (as the metastore records it) while that node takes lines.
    /// A source nobody owns, or whose owner left the cluster, is this
    /// node's to take, once the metastore is read again (another node may
    /// have taken it since the last commit round).
    pub fn owners(&self, ids: &[u64]) -> Vec<Owner> {
        let Some(own) = self.ownerships.get() else {
            return vec![Owner::Here { seen_epoch: 0 }; ids.len()];
        };
        let nodes = self.alert_nodes();
        // Nobody, or a node that left: the metastore is read again before
        // this node takes the source.
        let takes = |id: &u64| match own.recorded(*id).map(|o| o.node) {
            None => true,
            Some(o) => {
                o != self.node_id
                    && nodes
                        .as_ref()
                        .is_some_and(|n| n.url(&o).is_none_or(str::is_empty))
            }
        };
        if ids.iter().any(takes) {
            if let Err(e) = own.refresh() {
                tracing::warn!(error = %e, "cannot read the metastore again for a push's owners; going by the last read");
            }
        }
        ids.iter()
            .map(|id| match own.recorded(*id) {
                None => Owner::Here { seen_epoch: 0 },
                Some(o) if o.node == self.node_id => Owner::Here {
                    seen_epoch: o.epoch,
                },
                Some(o) => match &nodes {
                    None => Owner::Unknown(o.node),
                    Some(nodes) => match nodes.url(&o.node).filter(|u| !u.is_empty()) {
                        Some(url) => Owner::Other {
                            url: url.to_owned(),
                            node: o.node,
                        },
                        // It left the cluster: its sources are for the taking.
                        None => Owner::Here {
                            seen_epoch: o.epoch,
                        },
                    },
                },
            })
            .collect()
    }

    /// Where the others reach this node: `[cluster] advertise` (a
    /// `host:port`, checked with the config), else the address it listens on.
    fn advertised(&self, listen: SocketAddr) -> (String, u16) {
        self.config
            .advertise
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)))
            .unwrap_or_else(|| (listen.ip().to_string(), listen.port()))
    }
}

/// The node id kept in `<data_dir>/node_id`, made the first time: stable
/// across restarts and port changes, unlike its address.
fn kept_node_id(data_dir: &Path) -> std::io::Result<String> {
    crate::disk::kept_id(data_dir, "node_id", "node-")
}

/// Asks every node of a static list who it is, every
/// [`STATIC_ASK_EVERY`]: those that answer (role `all` or `ingest`) are
/// the nodes alert groups are placed on. A node that stops answering is
/// kept, under the id it gave, until it has missed [`STATIC_MISSES`]
/// rounds in a row: one slow answer must not move its groups.
async fn ask_static_nodes(
    urls: Vec<String>,
    peers: Peers,
    answered: StaticAnswers,
    mut stopping: watch::Receiver<bool>,
) {
    // Per URL: the id it last gave, and the rounds it has missed since.
    let mut known: Vec<Option<(String, u32)>> = vec![None; urls.len()];
    loop {
        let asks = urls
            .iter()
            .map(|url| peers.get_json::<NodeReport>(url, cblogs_core::api::CLUSTER_NODE_PATH));
        let reports = futures_util::future::join_all(asks).await;
        for (k, report) in known.iter_mut().zip(reports) {
            match report {
                Ok(r) if r.role != "query" => *k = Some((r.node_id, 0)),
                Ok(_) => *k = None,
                Err(_) => {
                    if let Some((_, missed)) = k {
                        *missed += 1;
                    }
                    if k.as_ref().is_some_and(|(_, m)| *m >= STATIC_MISSES) {
                        *k = None;
                    }
                }
            }
        }
        let nodes = known
            .iter()
            .zip(&urls)
            .filter_map(|(k, url)| Some((k.as_ref()?.0.clone(), url.clone())))
            .collect();
        *answered.lock().unwrap_or_else(|p| p.into_inner()) = Some(nodes);
        tokio::select! {
            _ = tokio::time::sleep(STATIC_ASK_EVERY) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}
