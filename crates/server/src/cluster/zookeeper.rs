//! The task that keeps this node in ZooKeeper's serverset and reads the
//! others from it ([`run`]), with the `zookeeper-client` crate.
//!
//! One session at a time. The client reconnects by itself while its
//! session lives (`Disconnected` → `SyncConnected`): the children are
//! listed again then, since watch events can be lost across a reconnect.
//! A session that expires takes our ephemeral member with it, so a new
//! client registers it again. While ZooKeeper cannot be reached the
//! membership keeps the nodes last seen and says since when
//! ([`Membership::disconnected`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use zookeeper_client as zk;

use super::membership::{Membership, Node};
use cblogs_core::serverset::{ServiceInstance, MEMBER_PREFIX};

/// Where and how to take part.
pub struct Session {
    pub connect: String,
    pub path: String,
    pub timeout: Duration,
    /// This node's member (its JSON), if it writes its own (not when
    /// Aurora's announcer does: one writer per entry).
    pub member: Option<Vec<u8>>,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("ZooKeeper at {connect}: {source}")]
    ZooKeeper { connect: String, source: zk::Error },
    #[error("its session ended ({0:?})")]
    Ended(zk::SessionState),
}

/// Keeps this node's member in the serverset and `membership` up to date
/// until `stopping` turns true.
pub async fn run(
    session: Session,
    membership: Arc<Membership>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let ended = tokio::select! {
            ended = one_session(&session, &membership) => ended,
            _ = stopping.wait_for(|s| *s) => return,
        };
        let why = ended.to_string();
        tracing::warn!(error = %why, "ZooKeeper: serving with the last membership seen; trying again");
        membership.disconnected(&why);
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn one_session(session: &Session, membership: &Membership) -> SessionEnd {
    let zk_error = |source| SessionEnd::ZooKeeper {
        connect: session.connect.clone(),
        source,
    };
    let client = match zk::Client::connector()
        .with_session_timeout(session.timeout)
        .connect(&session.connect)
        .await
    {
        Ok(c) => c,
        Err(e) => return zk_error(e),
    };
    let open = zk::Acls::anyone_all();
    if let Err(e) = client
        .mkdir(&session.path, &zk::CreateMode::Persistent.with_acls(open))
        .await
    {
        return zk_error(e);
    }
    if let Some(json) = &session.member {
        let prefix = format!("{}/{MEMBER_PREFIX}", session.path.trim_end_matches('/'));
        match client
            .create(
                &prefix,
                json,
                &zk::CreateMode::EphemeralSequential.with_acls(open),
            )
            .await
        {
            Ok((_, seq)) => {
                tracing::info!(path = %session.path, member = %format!("{MEMBER_PREFIX}{seq}"), "ZooKeeper: announced in the serverset")
            }
            Err(e) => return zk_error(e),
        }
    }
    let mut state = client.state_watcher();
    loop {
        match client.list_and_watch_children(&session.path).await {
            Ok((children, watcher)) => {
                let nodes = read_members(&client, &session.path, &children).await;
                membership.members_read(nodes);
                tokio::select! {
                    event = watcher.changed() => {
                        if event.event_type == zk::EventType::Session && event.session_state.is_terminated() {
                            return SessionEnd::Ended(event.session_state);
                        }
                    }
                    s = state.changed() => {
                        if s.is_terminated() {
                            return SessionEnd::Ended(s);
                        }
                        if s == zk::SessionState::Disconnected {
                            membership.disconnected("connection lost; the client reconnects");
                        }
                    }
                }
            }
            Err(zk::Error::ConnectionLoss) => {
                membership.disconnected("connection lost; the client reconnects");
                // Wait for the client to reconnect (list again then) or
                // for the session to end.
                loop {
                    let s = client.state();
                    if s.is_terminated() {
                        return SessionEnd::Ended(s);
                    }
                    if s == zk::SessionState::SyncConnected {
                        break;
                    }
                    let _ = state.changed().await;
                }
            }
            Err(e) => return zk_error(e),
        }
    }
}

/// The members among `children`, read one by one; a child that is not a
/// member, or whose JSON is not one, is left out (and said so).
async fn read_members(client: &zk::Client, path: &str, children: &[String]) -> Vec<Node> {
    let mut nodes = Vec::new();
    for child in children.iter().filter(|c| c.starts_with(MEMBER_PREFIX)) {
        let full = format!("{}/{child}", path.trim_end_matches('/'));
        match client.get_data(&full).await {
            Ok((data, _)) => match serde_json::from_slice::<ServiceInstance>(&data) {
                Ok(instance) => nodes.push(Node::of_member(child, instance)),
                Err(e) => {
                    tracing::warn!(member = %full, error = %e, "ZooKeeper: a serverset member that is not one; left out")
                }
            },
            // Gone between the list and the read: it left.
            Err(zk::Error::NoNode) => {}
            Err(e) => {
                tracing::warn!(member = %full, error = %e, "ZooKeeper: cannot read a serverset member")
            }
        }
    }
    nodes
}
