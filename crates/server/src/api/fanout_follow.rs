//! `GET /api/v1/follow` on a node of a cluster: the lines every node
//! takes, live, and a source followed when it moves.
//!
//! Each other node that may take lines is followed at once
//! (`GET /api/v1/cluster/follow`: its own follow, a `live` event between
//! its backlog and its live lines), beside this node's own. The
//! backlogs are merged as a tail's are (copies dropped by byte range, the
//! newest `n` kept); then every node's lines go out as they come. A line
//! that does not start past what was sent of its source is dropped: after
//! a source moves, the node that takes it is sent again what the old one
//! had not published, and the client saw those lines already.
//!
//! The membership is looked at every [`LOOK_AGAIN`]: a node that joins,
//! or comes back, is followed from when this follow started (what of its
//! backlog was sent already is dropped as any copy). A node that cannot
//! be followed, does not answer within `cluster.peer_timeout_ms`, or
//! whose stream ends or goes silent past twice its keep-alive, is named
//! once in a `partial` event: the lines it takes are missing until it is
//! followed again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::response::Response;
use cblogs_core::api::{Lagged, Unanswered, CLUSTER_FOLLOW_PATH};
use cblogs_core::sse::SseParser;
use cblogs_core::time::now_ns;
use cblogs_core::LineView;
use futures_util::StreamExt;
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::params::query_pairs;
use super::sse;
use super::tail::{start_follow, tail_request};
use crate::access::FollowSlot;
use crate::app::App;
use crate::cluster::Node;
use crate::read::{drop_copies, line_end, LineFilter};
use crate::store::LiveBatch;

/// How often the membership is looked at for nodes to follow.
const LOOK_AGAIN: Duration = Duration::from_secs(2);
/// A node followed late is asked for its lines since a little before
/// this follow started: shippers stamp lines when they read them.
const LATE_SLACK_NS: i64 = 30_000_000_000;

/// What the task following one node reports.
enum FromNode {
    /// Its backlog, whole (up to its `live` event).
    Backlog {
        node: String,
        jobs: Vec<String>,
        truncated: bool,
        lines: Vec<LineView>,
    },
    Line(LineView),
    Lagged(Lagged),
    /// It cannot be followed (any more).
    Ended(Unanswered),
}

pub(super) async fn follow(
    app: Arc<App>,
    raw: Option<String>,
    slot: FollowSlot,
) -> Result<Response, ApiError> {
    let request = tail_request(raw.clone(), app.config.read.max_tail_lines, true)?;
    let n = request.n;
    let (filter, _) = request.selection.resolve_or_later(&app.store)?;
    let started_ns = now_ns();
    let (tx_node, mut from_nodes) = mpsc::channel::<FromNode>(1024);
    let mut followed: HashSet<String> = HashSet::new();
    // The nodes whose backlog is awaited, by id: their address.
    let mut pending: HashMap<String, String> = HashMap::new();
    for node in app.cluster.others() {
        followed.insert(node.node_id.clone());
        pending.insert(node.node_id.clone(), node.url.clone());
        spawn_node(
            app.clone(),
            node,
            node_path(raw.as_deref(), None),
            tx_node.clone(),
        );
    }
    let (backlog, live) = start_follow(&app, filter.clone(), n).await?;
    let mut follow = Follow {
        filter,
        sent: HashMap::new(),
        named: HashSet::new(),
    };
    // Every node's backlog (or why there is none), within the time a
    // node is given to answer.
    let mut jobs = follow.filter.job_keys();
    let mut truncated = backlog.truncated;
    let mut lines: Vec<LineView> = backlog.lines.iter().map(|l| l.view()).collect();
    let mut partial = Vec::new();
    let mut early = Vec::new();
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(app.config.cluster.peer_timeout_ms);
    while !pending.is_empty() {
        let got = tokio::time::timeout_at(deadline, from_nodes.recv()).await;
        match got {
            Ok(Some(FromNode::Backlog {
                node,
                jobs: j,
                truncated: t,
                lines: l,
            })) => {
                pending.remove(&node);
                jobs.extend(j);
                truncated |= t;
                lines.extend(l);
            }
            Ok(Some(FromNode::Ended(node))) => {
                pending.remove(&node.node_id);
                followed.remove(&node.node_id);
                partial.push(node);
            }
            // Live already, while another node's backlog is awaited.
            Ok(Some(live_line)) => early.push(live_line),
            Ok(None) | Err(_) => break,
        }
    }
    // Named now; followed still (its backlog, if it comes, goes out then).
    for (node_id, url) in pending {
        partial.push(Unanswered {
            node_id,
            url,
            error: format!(
                "its follow did not start within cluster.peer_timeout_ms ({} ms)",
                app.config.cluster.peer_timeout_ms
            ),
        });
    }
    jobs.sort();
    jobs.dedup();
    let mut lines = drop_copies(lines);
    lines.drain(..lines.len().saturating_sub(n));

    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let mut stopping = app.stopping.clone();
    let keepalive = Duration::from_secs(app.config.read.keepalive_secs);
    tokio::spawn(async move {
        let _slot = slot;
        let truncated = truncated && follow.filter.since_ns.is_some();
        let mut head = sse::follow_head(&jobs, truncated.then_some(n));
        for node in partial {
            follow.name(&mut head, node);
        }
        follow.backlog(&mut head, lines);
        for e in early {
            follow.reported(&mut head, e, &mut followed);
        }
        if tx.send(Bytes::from(head)).await.is_err() {
            return;
        }
        let mut live = live;
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut look =
            tokio::time::interval_at(tokio::time::Instant::now() + LOOK_AGAIN, LOOK_AGAIN);
        let mut sent_since_tick = false;
        loop {
            let mut buf = Vec::new();
            tokio::select! {
                r = live.recv() => match r {
                    Ok(batch) => follow.batch(&mut buf, &batch),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        let missed = skipped + live.len() as u64;
                        live = live.resubscribe();
                        tracing::warn!(missed, "a follow stream fell behind; skipped to the newest lines");
                        sse::event(&mut buf, "lagged", &Lagged { missed });
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                Some(e) = from_nodes.recv() => follow.reported(&mut buf, e, &mut followed),
                _ = look.tick() => {
                    for node in app.cluster.others() {
                        if followed.insert(node.node_id.clone()) {
                            let since = started_ns - LATE_SLACK_NS;
                            let path = node_path(raw.as_deref(), Some(since));
                            spawn_node(app.clone(), node, path, tx_node.clone());
                        }
                    }
                }
                _ = ticks.tick() => {
                    if !std::mem::take(&mut sent_since_tick) {
                        buf.extend_from_slice(b":\n\n");
                    }
                }
                _ = stopping.changed() => return,
                _ = tx.closed() => return,
            }
            if buf.is_empty() {
                continue;
            }
            sent_since_tick = true;
            if tx.send(Bytes::from(buf)).await.is_err() {
                return;
            }
        }
    });
    Ok(sse::response(rx))
}

/// The follow's state once it runs: what it selects, and per source
/// (hex id) where the lines sent so far end.
struct Follow {
    filter: LineFilter,
    sent: HashMap<String, u64>,
    /// The nodes named in a `partial` event since they were last followed:
    /// each is named once (a dead node stays listed until its session
    /// ends, and is tried again meanwhile).
    named: HashSet<String>,
}

impl Follow {
    /// Writes `line` unless it does not start past what was sent of its
    /// source.
    fn line(&mut self, buf: &mut Vec<u8>, line: &LineView) {
        let end = self.sent.entry(line.source.clone()).or_insert(0);
        if line.offset < *end {
            return;
        }
        *end = line_end(line);
        sse::event(buf, "line", line);
    }

    /// The merged backlog (copies already dropped): every line goes out,
    /// in time order, and where each source's lines end is noted.
    fn backlog(&mut self, buf: &mut Vec<u8>, lines: Vec<LineView>) {
        for l in &lines {
            let end = self.sent.entry(l.source.clone()).or_insert(0);
            *end = (*end).max(line_end(l));
            sse::event(buf, "line", l);
        }
    }

    /// A batch this node applied.
    fn batch(&mut self, buf: &mut Vec<u8>, batch: &LiveBatch) {
        if !self.filter.wants(&batch.source) {
            return;
        }
        for l in batch.lines.lines() {
            let view = LineView::new(&batch.source, l.offset, l.time_ns, l.flags, l.bytes);
            self.line(buf, &view);
        }
    }

    fn reported(&mut self, buf: &mut Vec<u8>, e: FromNode, followed: &mut HashSet<String>) {
        match e {
            // A node followed late: what of it was sent already is not
            // sent again.
            FromNode::Backlog { node, lines, .. } => {
                self.named.remove(&node);
                for l in drop_copies(lines) {
                    self.line(buf, &l);
                }
            }
            FromNode::Line(l) => self.line(buf, &l),
            FromNode::Lagged(lagged) => sse::event(buf, "lagged", &lagged),
            FromNode::Ended(node) => {
                // Followed again once the membership lists it (again).
                followed.remove(&node.node_id);
                self.name(buf, node);
            }
        }
    }

    /// A `partial` event naming `node`, unless it was named already.
    fn name(&mut self, buf: &mut Vec<u8>, node: Unanswered) {
        if self.named.insert(node.node_id.clone()) {
            sse::event(buf, "partial", &node);
        }
    }
}

/// A node's own follow: the same selection, from `since_ns` for a node
/// followed late.
fn node_path(raw: Option<&str>, since_ns: Option<i64>) -> String {
    let mut pairs: Vec<String> = query_pairs(raw.map(str::to_owned))
        .into_iter()
        .filter(|(k, _)| since_ns.is_none() || (k != "since_ns" && k != "n"))
        .map(|(k, v)| format!("{}={}", enc(&k), enc(&v)))
        .collect();
    if let Some(since) = since_ns {
        pairs.push(format!("since_ns={since}"));
        pairs.push(format!("n={}", cblogs_core::api::MAX_TAIL_LINES));
    }
    format!("{CLUSTER_FOLLOW_PATH}?{}", pairs.join("&"))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Follows `node` on a task of its own, reporting to `tx` until its
/// stream ends or the follow does.
fn spawn_node(app: Arc<App>, node: Node, path: String, tx: mpsc::Sender<FromNode>) {
    tokio::spawn(async move {
        let ended = |why: String| {
            FromNode::Ended(Unanswered {
                node_id: node.node_id.clone(),
                url: node.url.clone(),
                error: why,
            })
        };
        let wait = Duration::from_millis(app.config.cluster.peer_timeout_ms);
        // A node stopped (its connections accepted, never answered) is
        // named after the time a node has to answer; one whose stream
        // goes silent, after twice its keep-alive.
        let idle = 2 * Duration::from_secs(app.config.read.keepalive_secs) + wait;
        let asked = tokio::time::timeout(wait, app.cluster.peers.get_stream(&node.url, &path));
        let resp = tokio::select! {
            r = asked => r,
            _ = tx.closed() => return,
        };
        let resp = match resp {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                let _ = tx.send(ended(e.to_string())).await;
                return;
            }
            Err(_) => {
                let why = format!("{}: no answer within {} ms", node.url, wait.as_millis());
                let _ = tx.send(ended(why)).await;
                return;
            }
        };
        let mut stream = resp.bytes_stream();
        let mut parser = SseParser::new();
        let mut backlog = Some((Vec::new(), false, Vec::new()));
        let why = loop {
            let chunk = tokio::select! {
                c = tokio::time::timeout(idle, stream.next()) => c,
                _ = tx.closed() => return,
            };
            let chunk = match chunk {
                Ok(Some(Ok(chunk))) => chunk,
                Ok(Some(Err(e))) => break e.to_string(),
                Ok(None) => break "its follow ended".to_owned(),
                Err(_) => break format!("its follow sent nothing for {} s", idle.as_secs()),
            };
            for ev in parser.feed(&chunk) {
                let report = match (ev.event.as_str(), &mut backlog) {
                    ("line", b) => match serde_json::from_str::<LineView>(&ev.data) {
                        Ok(line) => match b {
                            Some((_, _, lines)) => {
                                lines.push(line);
                                None
                            }
                            None => Some(FromNode::Line(line)),
                        },
                        Err(e) => {
                            tracing::warn!(node = %node.node_id, error = %e, "a followed node sent a line this node cannot read");
                            None
                        }
                    },
                    ("jobs", Some((jobs, _, _))) => {
                        *jobs = serde_json::from_str(&ev.data).unwrap_or_default();
                        None
                    }
                    ("truncated", Some((_, truncated, _))) => {
                        *truncated = true;
                        None
                    }
                    ("live", b) => b.take().map(|(jobs, truncated, lines)| FromNode::Backlog {
                        node: node.node_id.clone(),
                        jobs,
                        truncated,
                        lines,
                    }),
                    ("lagged", _) => serde_json::from_str(&ev.data).ok().map(FromNode::Lagged),
                    _ => None,
                };
                if let Some(report) = report {
                    if tx.send(report).await.is_err() {
                        return;
                    }
                }
            }
        };
        let _ = tx.send(ended(why)).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::{LineFlags, Source, Stream};

    #[test]
    fn a_line_sent_again_after_a_move_is_not_followed_twice() {
        let source = Source::example("www-data/prod/hello", 0, "hello", Stream::Stdout);
        let line = |offset: u64, text: &str| {
            LineView::new(&source, offset, 1, LineFlags::default(), text.as_bytes())
        };
        let mut follow = Follow {
            filter: LineFilter::everything(),
            sent: HashMap::new(),
            named: HashSet::new(),
        };
        let mut buf = Vec::new();
        // The old node's lines, then the new node's from its published
        // end (0): the first two again, then a new one.
        for l in [
            line(0, "one"),
            line(4, "two"),
            line(0, "one"),
            line(4, "two"),
            line(8, "three"),
        ] {
            follow.line(&mut buf, &l);
        }
        let text = String::from_utf8(buf).unwrap();
        assert_eq!(text.matches("event: line").count(), 3, "{text}");
        assert_eq!(text.matches("\"one\"").count(), 1);
    }

    #[test]
    fn a_node_followed_late_is_asked_from_before_the_start() {
        let path = node_path(
            Some("job=www-data%2Fprod%2Fhello&n=10&since_ns=5"),
            Some(100),
        );
        assert_eq!(
            path,
            format!(
                "{CLUSTER_FOLLOW_PATH}?job=www-data%2Fprod%2Fhello&since_ns=100&n={}",
                cblogs_core::api::MAX_TAIL_LINES
            )
        );
        assert_eq!(
            node_path(Some("job=a%2Fb%2Fc&n=10"), None),
            format!("{CLUSTER_FOLLOW_PATH}?job=a%2Fb%2Fc&n=10")
        );
    }
}
