//! Fan-out reads: the other nodes asked at once for what they hold, as a
//! Loki querier asks its ingesters. A node that holds lines not yet
//! published is the only place they are, so every node that may hold
//! some (role `all` or `ingest`) is asked, and one that does not answer
//! is named: an answer without it is partial, never silently short.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cblogs_core::api::Unanswered;
use serde::de::DeserializeOwned;

use super::membership::Node;
use super::Cluster;

/// One node's answer to a fan-out read.
pub struct Answered<T> {
    pub node_id: String,
    pub url: String,
    pub answer: T,
}

impl<T> Answered<T> {
    /// The node, named as one whose answer could not be used, and why.
    pub fn unused(&self, why: String) -> Unanswered {
        Unanswered {
            node_id: self.node_id.clone(),
            url: self.url.clone(),
            error: why,
        }
    }
}

impl Cluster {
    /// The other nodes that may hold lines this one does not (role `all`
    /// or `ingest`), as the membership stands, and those that left it
    /// within `[cluster] departed_grace_secs` while the metastore still
    /// names them the owner of a source (rule 5 of issue 18: what they
    /// took and did not publish is nowhere else until it moves). A node
    /// gone is asked at its last address; if it does not answer it is
    /// named, and the answer is partial.
    pub fn others(&self) -> Vec<Node> {
        let mut nodes = self.membership.view().nodes;
        let grace = Duration::from_secs(self.config.departed_grace_secs);
        let departed = self.membership.departed_within(grace);
        let owner = |n: &Node| {
            self.ownerships
                .get()
                .is_some_and(|own| own.owned_by(&n.node_id))
        };
        for gone in departed {
            if !nodes.iter().any(|n| n.node_id == gone.node_id) && owner(&gone) {
                nodes.push(gone);
            }
        }
        nodes.retain(|n| n.node_id != self.node_id && n.role != "query");
        nodes
    }

    /// Whether any other node may hold lines this one does not.
    pub fn has_others(&self) -> bool {
        !self.others().is_empty()
    }

    /// GETs `path` (with its query) of every other node that may hold
    /// lines, at once: their answers, and the nodes that gave none.
    pub async fn ask_others<T: DeserializeOwned>(&self, path: &str) -> (Vec<T>, Vec<Unanswered>) {
        let (answers, unanswered) = self.ask_others_within(path, None).await;
        (answers.into_iter().map(|a| a.answer).collect(), unanswered)
    }

    /// [`Cluster::ask_others`], each answer with its node, waiting at most
    /// `timeout` for each (`cluster.peer_timeout_ms` without).
    pub async fn ask_others_within<T: DeserializeOwned>(
        &self,
        path: &str,
        timeout: Option<Duration>,
    ) -> (Vec<Answered<T>>, Vec<Unanswered>) {
        let others = self.others();
        let asks = others
            .iter()
            .map(|n| self.peers.get_json_within::<T>(&n.url, path, timeout));
        let mut answers = Vec::new();
        let mut unanswered = Vec::new();
        for (node, answer) in others
            .iter()
            .zip(futures_util::future::join_all(asks).await)
        {
            match answer {
                Ok(answer) => answers.push(Answered {
                    node_id: node.node_id.clone(),
                    url: node.url.clone(),
                    answer,
                }),
                Err(e) => {
                    tracing::debug!(node = %node.node_id, "a fan-out read got no answer: {e}");
                    unanswered.push(Unanswered {
                        node_id: node.node_id.clone(),
                        url: node.url.clone(),
                        error: e.to_string(),
                    });
                }
            }
        }
        (answers, unanswered)
    }
}

/// Copies across nodes after a failover: the node a source left may still
/// hold lines of it unpublished (it drops them when it next reads the
/// metastore), and the new owner holds the same bytes, sent again. Of
/// several nodes' answers, each with the ownership epoch it holds each of
/// its sources at (`epochs`, by hex id), only the newest owner's count:
/// returns, per answer, the sources whose part is an older owner's than
/// another answer's, or than `recorded` (the metastore's, as this node
/// last read it) says.
pub fn stale_sources<'a>(
    epochs: &[&'a HashMap<String, u64>],
    recorded: impl Fn(&str) -> Option<u64>,
) -> Vec<HashSet<&'a str>> {
    let mut newest: HashMap<&str, u64> = HashMap::new();
    for answer in epochs {
        for (source, epoch) in answer.iter() {
            let n = newest
                .entry(source.as_str())
                .or_insert_with(|| recorded(source).unwrap_or(0));
            *n = (*n).max(*epoch);
        }
    }
    epochs
        .iter()
        .map(|answer| {
            answer
                .iter()
                .filter(|(s, e)| newest.get(s.as_str()).is_some_and(|n| **e < *n))
                .map(|(s, _)| s.as_str())
                .collect()
        })
        .collect()
}
