//! `GET /api/v1/jobs` on a node of a cluster, and a node's part of it
//! (`GET /api/v1/cluster/jobs`). Per source: the lines and bytes the
//! published splits hold, as this node shows them pinned to the
//! metastore version it has followed, plus what each node (this one
//! too) holds of it that is not published as of that version, the newest
//! owner's only (`cluster::stale_sources`). Read from the splits' and
//! sources' totals, unread: a copy of a range across nodes is left out
//! by its owner's epoch, not found by reading.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::Json;
use cblogs_core::api::{JobsResponse, CLUSTER_JOBS_PATH};
use cblogs_core::{Selector, Source};
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::fanout::{ask_pinned, pinned_path, stale_parts, take_after_version, PinnedAnswer};
use super::status::jobs_pattern;
use crate::app::App;
use crate::read;
use crate::store::{FollowFirst, SourceSummary, Store, Totals};

/// A node's part of a jobs listing.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct NodeJobs {
    /// The node cannot answer after the version asked: the asker must
    /// follow the metastore up to this version first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    follow_first: Option<u64>,
    #[serde(default)]
    sources: Vec<HeldLines>,
    /// Per source (hex id): the ownership epoch the node holds it at (0:
    /// none).
    #[serde(default)]
    epochs: HashMap<String, u64>,
}

/// What a node holds of one source that is not published.
#[derive(Debug, Serialize, Deserialize)]
struct HeldLines {
    source: Source,
    lines: u64,
    bytes: u64,
    last_seen_ns: i64,
}

impl PinnedAnswer for NodeJobs {
    fn follow_first(&self) -> Option<u64> {
        self.follow_first
    }
}

impl NodeJobs {
    /// Of `held` (what this node holds unpublished), those `pattern`
    /// picks, with the epoch this node holds each at.
    fn of(store: &Store, held: Vec<SourceSummary>, pattern: Option<&Selector>) -> NodeJobs {
        let mut answer = NodeJobs::default();
        for s in held.into_iter().filter(|s| read::picks(pattern, s)) {
            let id = s.source.id();
            answer
                .epochs
                .insert(format!("{id:016x}"), store.epochs(id).0.unwrap_or(0));
            answer.sources.push(HeldLines {
                source: (*s.source).clone(),
                lines: s.totals.lines,
                bytes: s.totals.bytes,
                last_seen_ns: s.totals.last_seen_ns,
            });
        }
        answer
    }
}

/// The jobs listing of the whole cluster.
pub(super) async fn jobs(
    app: &Arc<App>,
    raw: Option<String>,
    pattern: Option<&Selector>,
) -> Result<JobsResponse, ApiError> {
    let raw = raw.unwrap_or_default();
    let (pinned, _, answers, partial) = ask_pinned::<_, NodeJobs>(
        app,
        || app.store.pinned_totals(),
        |version| pinned_path(CLUSTER_JOBS_PATH, &raw, version),
        None,
    )
    .await;
    // The published part here; this node's unpublished part is answered
    // as the others'.
    let mut by_id: HashMap<u64, SourceSummary> = HashMap::new();
    let mut own = Vec::new();
    for (s, (lines, bytes)) in pinned {
        let mut unpublished = SourceSummary {
            source: s.source.clone(),
            job: s.job.clone(),
            totals: s.totals,
        };
        unpublished.totals.lines = s.totals.lines.saturating_sub(lines);
        unpublished.totals.bytes = s.totals.bytes.saturating_sub(bytes);
        if unpublished.totals.lines > 0 {
            own.push(unpublished);
        }
        let published = Totals {
            lines,
            bytes,
            last_seen_ns: s.totals.last_seen_ns,
        };
        by_id.insert(
            s.source.id(),
            SourceSummary {
                totals: published,
                ..s
            },
        );
    }
    let mut answers: Vec<NodeJobs> = answers.into_iter().map(|a| a.answer).collect();
    answers.push(NodeJobs::of(&app.store, own, pattern));
    let epochs: Vec<&HashMap<String, u64>> = answers.iter().map(|a| &a.epochs).collect();
    let stale = stale_parts(app, &epochs);
    for (answer, stale) in answers.into_iter().zip(stale) {
        for held in answer.sources {
            let id = held.source.id();
            if stale.contains(&format!("{id:016x}")) {
                continue;
            }
            let s = by_id.entry(id).or_insert_with(|| SourceSummary {
                job: held.source.job_key(),
                source: Arc::new(held.source),
                totals: Totals::default(),
            });
            s.totals.lines += held.lines;
            s.totals.bytes += held.bytes;
            s.totals.last_seen_ns = s.totals.last_seen_ns.max(held.last_seen_ns);
        }
    }
    by_id.retain(|_, s| s.totals.lines > 0);
    Ok(JobsResponse {
        jobs: read::jobs_of(by_id.into_values(), pattern),
        partial,
    })
}

/// `GET /api/v1/cluster/jobs`: what this node holds of each source that
/// is not published as of the asker's version (`after_version`).
pub(super) async fn node_jobs(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<NodeJobs>, ApiError> {
    let (raw, after) = take_after_version(raw)?;
    let pattern = jobs_pattern(raw)?;
    Ok(Json(match app.store.unpublished_totals_after(after) {
        Ok(held) => NodeJobs::of(&app.store, held, pattern.as_ref()),
        Err(FollowFirst(version)) => NodeJobs {
            follow_first: Some(version),
            ..NodeJobs::default()
        },
    }))
}
