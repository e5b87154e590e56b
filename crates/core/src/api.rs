//! The read API's paths and bodies, shared by `cblogsd`, `cblogs` and the tests.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /api/v1/jobs[?pattern=SELECTOR]` | [`JobsResponse`] |
//! | `GET /api/v1/tail?job=SELECTOR[&n=N][&instance=I][&stream=S][&process=P][&since_ns=T]` | [`TailResponse`]: the last `n` lines (default 100) in time order |
//! | `GET /api/v1/follow?…the same…` | Server-Sent Events: `jobs` (a JSON array of job keys), then one `line` event per line ([`crate::LineView`]): first the backlog, then each new line as it is ingested; `truncated` ([`Truncated`]) before a backlog from `since_ns` that had to leave out its oldest lines; `lagged` ([`Lagged`]) if the client fell behind |
//!
//! Errors are a [`crate::wire::ErrorBody`] with a 4xx status: 400 for a bad
//! parameter, 404 for a selector that matches no job, 409 for an exact
//! selector that matches several jobs (the `candidates` list them).

use serde::{Deserialize, Serialize};

use crate::LineView;

pub const JOBS_PATH: &str = "/api/v1/jobs";
pub const TAIL_PATH: &str = "/api/v1/tail";
pub const FOLLOW_PATH: &str = "/api/v1/follow";
pub const HEALTH_PATH: &str = "/healthz";
/// POST: seal and commit everything acknowledged so far; answers
/// [`FlushResponse`] when it is in the index.
pub const FLUSH_PATH: &str = "/api/v1/admin/flush";

/// The default and the largest `n` of a tail.
pub const DEFAULT_TAIL_LINES: usize = 100;
pub const MAX_TAIL_LINES: usize = 100_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobsResponse {
    pub jobs: Vec<JobSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSummary {
    /// `cluster/role/env/name`.
    pub key: String,
    pub cluster: String,
    pub role: String,
    pub env: String,
    pub name: String,
    pub lines: u64,
    pub bytes: u64,
    /// RFC 3339 time of the newest line.
    pub last_seen: String,
    pub last_seen_ns: i64,
    pub instances: Vec<InstanceSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceSummary {
    pub instance: u32,
    pub lines: u64,
    pub bytes: u64,
    pub last_seen: String,
    pub last_seen_ns: i64,
    pub processes: Vec<String>,
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TailResponse {
    /// The job keys the selector resolved to.
    pub jobs: Vec<String>,
    /// Oldest first.
    pub lines: Vec<LineView>,
}

/// A `truncated` follow event: more than `limit` lines were at or after
/// `since_ns`, and the oldest of them are not in the backlog that follows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Truncated {
    pub limit: usize,
}

/// A `lagged` follow event: the client read too slowly and the server
/// skipped ahead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lagged {
    /// How many ingested batches (each one or more lines of one source) were skipped.
    pub missed: u64,
}

/// The answer of [`FLUSH_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlushResponse {
    /// Blocks sealed and committed by this flush.
    pub committed_blocks: usize,
    pub took_ms: u64,
    /// Bytes of lines still only in memory after the flush: 0 unless a
    /// block could not be committed (the server's log says why) or lines
    /// arrived meanwhile.
    pub unindexed_bytes: u64,
}
