//! [`Membership`]: the nodes this one knows of, and where it learnt them
//! (ZooKeeper's serverset, a static list, or nobody but itself). The
//! ZooKeeper task (`zookeeper.rs`) writes it; the API reads it. When
//! ZooKeeper cannot be reached the last membership seen stays, marked
//! with since when it is not current.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use cblogs_core::serverset::ServiceInstance;

/// A node of the cluster, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Node {
    pub node_id: String,
    pub url: String,
    /// `all`, `ingest` or `query`.
    pub role: String,
    /// `ALIVE`, or what its member says.
    pub status: String,
    /// Its znode under the serverset path (ZooKeeper only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The member's JSON as written (ZooKeeper only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<ServiceInstance>,
    /// What it said of itself when asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<NodeReport>,
    /// Why it did not say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a node says of itself: `GET /api/v1/cluster/node`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeReport {
    pub node_id: String,
    pub role: String,
    /// Its incarnation: new when it lost what it had not published.
    pub incarnation: String,
    /// How many sources it holds lines of that are not published yet.
    pub sources_held: u64,
    /// Their keys, in order, the first [`NodeReport::SOURCES_LISTED`].
    pub sources: Vec<String>,
    /// Seconds since the oldest split it has not published was started.
    pub upload_lag_secs: f64,
    /// Why its last publish failed, until one succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_error: Option<String>,
    /// It runs the cluster's merges, retention and sweep now.
    #[serde(default)]
    pub housekeeping: bool,
}

impl NodeReport {
    /// A node of a quiet cluster holds thousands: the count says how many.
    pub const SOURCES_LISTED: usize = 100;
}

impl Node {
    pub fn of_member(member: &str, instance: ServiceInstance) -> Node {
        Node {
            node_id: instance.node_id(),
            url: instance.url(),
            role: instance.role().to_owned(),
            status: instance.status.clone(),
            member: Some(member.to_owned()),
            instance: Some(instance),
            report: None,
            error: None,
        }
    }
}

/// How this node is connected to ZooKeeper.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ZooKeeperState {
    pub connect: String,
    pub path: String,
    /// `connecting`, `connected` or `disconnected`.
    pub state: &'static str,
    /// Since when (ns since the epoch), for `disconnected`: the nodes
    /// shown are the last ones seen before then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since_ns: Option<i64>,
    /// Why, for `disconnected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `GET /api/v1/cluster` shows.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub node_id: String,
    /// `zookeeper`, `static` or `none`.
    pub membership: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zookeeper: Option<ZooKeeperState>,
    pub nodes: Vec<Node>,
    /// The node that runs merges, retention and the cleanup of abandoned
    /// objects (ZooKeeper only: the oldest member of the serverset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub housekeeper: Option<String>,
}

/// The nodes this one knows of, shared between the task that learns them
/// and the readers.
pub struct Membership {
    view: Mutex<ClusterView>,
    /// Nodes that left the serverset, and when this node saw them go.
    departed: Mutex<Vec<(Node, Instant)>>,
}

impl Membership {
    /// Only this node, or the static list `nodes` (URLs), or (with
    /// `zookeeper`) nobody until the serverset is read.
    pub fn new(node_id: &str, nodes: &[String], zookeeper: Option<(&str, &str)>) -> Membership {
        let (membership, zookeeper) = match zookeeper {
            Some((connect, path)) => (
                "zookeeper",
                Some(ZooKeeperState {
                    connect: connect.to_owned(),
                    path: path.to_owned(),
                    state: "connecting",
                    since_ns: None,
                    error: None,
                }),
            ),
            None if !nodes.is_empty() => ("static", None),
            None => ("none", None),
        };
        let nodes = nodes
            .iter()
            .map(|url| Node {
                node_id: url.clone(),
                url: url.clone(),
                role: "all".to_owned(),
                status: "ALIVE".to_owned(),
                member: None,
                instance: None,
                report: None,
                error: None,
            })
            .collect();
        Membership {
            view: Mutex::new(ClusterView {
                node_id: node_id.to_owned(),
                membership,
                zookeeper,
                nodes,
                housekeeper: None,
            }),
            departed: Mutex::new(Vec::new()),
        }
    }

    /// The nodes that left the serverset within `grace`, latest first
    /// (those back in it are not).
    pub fn departed_within(&self, grace: Duration) -> Vec<Node> {
        let mut departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        departed.retain(|(_, left)| left.elapsed() < grace);
        departed.iter().rev().map(|(n, _)| n.clone()).collect()
    }

    pub fn view(&self) -> ClusterView {
        self.lock().clone()
    }

    /// The serverset as just read: connected. Its oldest member (the
    /// lowest sequence number: members are ephemeral sequential znodes)
    /// is the housekeeper, as in ZooKeeper's leader election recipe: when
    /// it leaves, the next oldest takes over, and no two nodes that see
    /// the same serverset disagree.
    pub fn members_read(&self, mut nodes: Vec<Node>) {
        nodes.sort_by_key(member_sequence);
        let mut view = self.lock();
        {
            let mut departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let listed = |id: &str| nodes.iter().any(|n| n.node_id == id);
            departed.retain(|(n, _)| !listed(&n.node_id));
            for gone in view.nodes.iter().filter(|n| !listed(&n.node_id)) {
                departed.push((gone.clone(), now));
            }
        }
        view.housekeeper = nodes.first().map(|n| n.node_id.clone());
        view.nodes = nodes;
        if let Some(zk) = &mut view.zookeeper {
            zk.state = "connected";
            zk.since_ns = None;
            zk.error = None;
        }
    }

    /// Whether this node runs merges, retention and the cleanup of
    /// abandoned objects: in a ZooKeeper cluster only the housekeeper,
    /// and only while ZooKeeper is current (cut off, another may have
    /// taken over); otherwise every node (their conditional metastore
    /// commits keep two from both winning).
    pub fn runs_housekeeping(&self) -> bool {
        let view = self.lock();
        match &view.zookeeper {
            None => true,
            Some(zk) => {
                zk.state == "connected" && view.housekeeper.as_deref() == Some(&view.node_id)
            }
        }
    }

    /// ZooKeeper cannot be reached: the nodes stay as last seen.
    pub fn disconnected(&self, error: &str) {
        let mut view = self.lock();
        if let Some(zk) = &mut view.zookeeper {
            if zk.state != "disconnected" {
                zk.since_ns = Some(cblogs_core::time::now_ns());
            }
            zk.state = "disconnected";
            zk.error = Some(error.to_owned());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClusterView> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A member's sequence number (`member_0000000007` → 7); a node without
/// one (a static list) sorts last.
fn member_sequence(node: &Node) -> (u64, String) {
    let seq = node
        .member
        .as_deref()
        .and_then(|m| m.rsplit('_').next()?.parse().ok())
        .unwrap_or(u64::MAX);
    (seq, node.member.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::serverset::NodeInfo;

    fn member(seq: u32, node_id: &str) -> Node {
        let info = NodeInfo {
            node_id: node_id.into(),
            role: "all".into(),
            scheme: "http".into(),
        };
        let instance = ServiceInstance::of_node("127.0.0.1", 7450 + seq as u16, info);
        Node::of_member(&format!("member_{seq:010}"), instance)
    }

    #[test]
    fn the_oldest_member_keeps_house_while_zookeeper_is_current() {
        let m = Membership::new("n2", &[], Some(("zk:2181", "/cblogs")));
        assert!(!m.runs_housekeeping(), "nothing read yet");
        // Listed in any order; sequence 9 is older than 10.
        m.members_read(vec![member(10, "n1"), member(9, "n2"), member(11, "n3")]);
        assert_eq!(m.view().housekeeper.as_deref(), Some("n2"));
        assert!(m.runs_housekeeping());
        m.disconnected("connection lost");
        assert!(
            !m.runs_housekeeping(),
            "cut off, another may have taken over"
        );
        m.members_read(vec![member(10, "n1"), member(11, "n3")]);
        assert_eq!(m.view().housekeeper.as_deref(), Some("n1"));
        assert!(!m.runs_housekeeping());
        // Without ZooKeeper there is no election: every node keeps house.
        let departed = m.departed_within(Duration::from_secs(60));
        assert_eq!(
            departed
                .iter()
                .map(|n| n.node_id.as_str())
                .collect::<Vec<_>>(),
            ["n2"],
            "n2 left the serverset"
        );
        assert!(
            m.departed_within(Duration::ZERO).is_empty(),
            "past the grace"
        );
        m.members_read(vec![member(10, "n1"), member(12, "n2"), member(11, "n3")]);
        assert!(
            m.departed_within(Duration::from_secs(60)).is_empty(),
            "n2 is back"
        );
        let alone = Membership::new("n1", &["http://logs2:7450".into()], None);
        assert!(alone.runs_housekeeping());
        assert_eq!(alone.view().housekeeper, None);
    }
}
