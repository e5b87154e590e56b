//! The shipper's status: every tailed file with how far the server is
//! behind it, as the loop reports it (`GET /status`, served by
//! `endpoint.rs`) and as `cblogs-shipper --status` prints it.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub const STATUS_PATH: &str = "/status";
pub const METRICS_PATH: &str = "/metrics";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub server: String,
    pub files: Vec<FileStatus>,
    /// Lines the server has acknowledged since start.
    pub lines_acked: u64,
    /// Lines the server refused for good since start (see the log for which).
    pub lines_dropped: u64,
    pub requests_in_flight: usize,
    pub watched_dirs: usize,
    /// Requests retried since start, by why: the server's status code
    /// (429, 503, 401…) or `unreachable`.
    #[serde(default)]
    pub retries: std::collections::BTreeMap<String, u64>,
    /// With several cblogsd nodes: each, and how many streams it takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<NodeStatus>,
    /// Streams moved from one node to another since start.
    #[serde(default)]
    pub streams_moved: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub url: String,
    /// Its id, once it has answered.
    pub id: Option<String>,
    /// It answers and is listed: it takes streams.
    pub live: bool,
    /// In the list, or in the serverset as last read.
    pub listed: bool,
    /// Streams it takes now…
    pub streams: usize,
    /// …of which this many wait for it to publish what it acknowledged,
    /// to move to a node that joined or came back.
    #[serde(default)]
    pub streams_waiting: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileStatus {
    pub path: String,
    pub source: String,
    /// Stream offset the server has acknowledged.
    pub acked: u64,
    /// Stream offset the server has published to its object store.
    #[serde(default)]
    pub published: u64,
    /// Bytes on disk the server does not hold yet.
    pub lag_bytes: u64,
    /// Open descriptors: the live file, rotated files not read yet, and
    /// those kept until the server has published them.
    pub open_files: usize,
    /// The run folder was deleted; the file is being drained.
    pub deleted: bool,
    /// The node that takes its lines (none chosen yet: `null`).
    #[serde(default)]
    pub node: Option<String>,
}

/// A request for a fresh status, answered by the shipper's loop.
pub type StatusRequest = oneshot::Sender<Status>;

/// Fetches the status of the shipper listening on `addr` and renders it.
pub fn fetch_and_render(addr: SocketAddr) -> anyhow::Result<String> {
    let url = format!("http://{addr}{STATUS_PATH}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status: Status = runtime.block_on(async {
        let resp = reqwest::get(&url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the shipper at {url}: {e}"))?;
        anyhow::ensure!(
            resp.status().is_success(),
            "{url} answered {}",
            resp.status()
        );
        Ok::<_, anyhow::Error>(resp.json().await?)
    })?;
    Ok(render(&status))
}

pub fn render(s: &Status) -> String {
    let mut out = format!(
        "shipping to {}: {} files, {} lines acknowledged, {} dropped, {} requests in flight, {} folders watched\n",
        s.server,
        s.files.len(),
        s.lines_acked,
        s.lines_dropped,
        s.requests_in_flight,
        s.watched_dirs
    );
    for n in &s.nodes {
        let state = match (n.listed, n.live) {
            (_, true) => "live",
            (true, false) => "not answering",
            (false, false) => "left",
        };
        out.push_str(&format!(
            "  node {} ({}): {state}, {} streams ({} waiting to move)\n",
            n.url,
            n.id.as_deref().unwrap_or("id not known yet"),
            n.streams,
            n.streams_waiting
        ));
    }
    if s.streams_moved > 0 {
        out.push_str(&format!(
            "  {} streams moved between nodes since start\n",
            s.streams_moved
        ));
    }
    out.push_str(&format!("{:>12} {:>12}  {}\n", "LAG", "ACKED", "FILE"));
    for f in &s.files {
        let note = if f.deleted {
            "  (deleted, draining)"
        } else {
            ""
        };
        out.push_str(&format!(
            "{:>12} {:>12}  {}{note}\n",
            f.lag_bytes, f.acked, f.path
        ));
    }
    out
}
