//! Fan-out reads: the other nodes asked at once for what they hold, as a
//! Loki querier asks its ingesters. A node that holds lines not yet
//! published is the only place they are, so every node that may hold
//! some (role `all` or `ingest`) is asked, and one that does not answer
//! is named: an answer without it is partial, never silently short.

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
    /// or `ingest`), as the membership stands.
    pub fn others(&self) -> Vec<Node> {
        let mut nodes = self.membership.view().nodes;
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
