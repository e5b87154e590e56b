//! Read-only views of what the service holds: `GET /api/v1/jobs`,
//! `GET /api/v1/storage`, `GET /api/v1/alerts` and `GET /api/v1/cluster`
//! (with `/api/v1/cluster/node`, what the other nodes ask).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::Json;
use cblogs_core::api::{self, JobsResponse};
use cblogs_core::Selector;

use super::error::ApiError;
use super::params::query_pairs;
use crate::app::App;
use crate::cluster::NodeReport;
use crate::read;
use crate::store::{disk_usage, DiskUsage};

pub(super) async fn jobs(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<JobsResponse>, ApiError> {
    let pattern = jobs_pattern(raw.clone())?;
    if app.cluster.has_others() {
        return super::fanout_jobs::jobs(&app, raw, pattern.as_ref())
            .await
            .map(Json);
    }
    Ok(Json(JobsResponse {
        jobs: read::jobs(&app.store, pattern.as_ref()),
        partial: Vec::new(),
    }))
}

/// The selector a jobs listing is narrowed by, if any.
pub(super) fn jobs_pattern(raw: Option<String>) -> Result<Option<Selector>, ApiError> {
    let mut pattern = None;
    for (k, v) in query_pairs(raw) {
        match k.as_str() {
            "pattern" if !v.is_empty() => {
                pattern = Some(Selector::parse(&v).map_err(|e| ApiError::bad(e.to_string()))?)
            }
            "pattern" => {}
            other => {
                return Err(ApiError::bad(format!(
                    "unknown parameter '{other}' (expected pattern)"
                )))
            }
        }
    }
    Ok(pattern)
}

/// What is stored, the disk budget, and what retention deleted.
pub(super) async fn storage(State(app): State<Arc<App>>) -> Json<api::StorageResponse> {
    // What retention deleted is read before the splits are listed: a
    // split named deleted is then never still listed beside it.
    let deleted = app.retention_log.list();
    let store = app.store.clone();
    let usage = tokio::task::spawn_blocking(move || disk_usage(&store))
        .await
        .unwrap_or_else(|_| DiskUsage {
            bytes: 0,
            partitions: Vec::new(),
        });
    let fmt = cblogs_core::time::format_rfc3339;
    let failure = app.wal.failure();
    let publishing = app.publishing.now();
    let mut windows: Vec<api::PartitionSummary> = Vec::new();
    for p in &usage.partitions {
        let newest = p.newest_ns.map(fmt).unwrap_or_default();
        match windows.last_mut() {
            Some(w) if w.start_ns == p.start_ns => {
                w.bytes += p.bytes;
                w.blocks += p.blocks;
                w.newest = w.newest.clone().max(newest);
            }
            _ => windows.push(api::PartitionSummary {
                start: fmt(p.start_ns),
                start_ns: p.start_ns,
                bytes: p.bytes,
                blocks: p.blocks,
                newest,
            }),
        }
    }
    Json(api::StorageResponse {
        disk_bytes: usage.bytes,
        max_disk_bytes: app.config.storage.max_disk_bytes,
        bucket_bytes: publishing.bucket_bytes,
        max_bucket_bytes: app.config.storage.max_bucket_bytes,
        retention_days: app.config.storage.retention_days,
        wal_bytes: app.wal.bytes_on_disk(),
        unindexed_bytes: app.store.unindexed_bytes(),
        ingest_available: failure.is_none(),
        ingest_error: failure,
        partitions: windows,
        splits: usage
            .partitions
            .iter()
            .map(|p| api::SplitSummary {
                id: p.id.clone(),
                state: if p.published {
                    "published"
                } else {
                    "unpublished"
                }
                .to_owned(),
                window: fmt(p.start_ns),
                bytes: p.bytes,
                blocks: p.blocks,
                newest: p.newest_ns.map(fmt).unwrap_or_default(),
            })
            .collect(),
        object_store: app.object_store.clone(),
        unpublished_splits: usage.partitions.iter().filter(|p| !p.published).count() as u64,
        upload_lag_secs: publishing.upload_lag_secs,
        publish_error: publishing.error,
        published_splits: publishing.published,
        deleted,
        cache: app.cache.stats(),
        merges: publishing.merges,
    })
}

pub(super) async fn alerts(State(app): State<Arc<App>>) -> Json<api::AlertsResponse> {
    Json(app.alerts.cluster_response().await)
}

/// `GET /api/v1/cluster/alerts`: the groups whose window is on this node.
pub(super) async fn node_alerts(State(app): State<Arc<App>>) -> Json<api::AlertsResponse> {
    Json(app.alerts.response())
}

/// `GET /api/v1/cluster`: this node's id and the nodes it knows of, each
/// with what it says of itself or why it did not answer.
pub(super) async fn cluster(State(app): State<Arc<App>>) -> Json<crate::cluster::ClusterView> {
    Json(app.cluster.view_with_reports(node_report(&app)).await)
}

/// `GET /api/v1/cluster/node`: what this node says of itself.
pub(super) async fn cluster_node(State(app): State<Arc<App>>) -> Json<NodeReport> {
    Json(node_report(&app))
}

fn node_report(app: &App) -> NodeReport {
    let mut held: Vec<String> = app
        .store
        .ends(&|_| true)
        .into_iter()
        .filter(|e| e.held_end > e.published_end)
        .map(|e| e.source.key())
        .collect();
    held.sort_unstable();
    let publishing = app.publishing.now();
    NodeReport {
        node_id: app.cluster.node_id.clone(),
        role: app.cluster.role().as_str().to_owned(),
        incarnation: app.incarnation.clone(),
        sources_held: held.len() as u64,
        sources: held.into_iter().take(NodeReport::SOURCES_LISTED).collect(),
        upload_lag_secs: publishing.upload_lag_secs,
        publish_error: publishing.error,
        housekeeping: app.cluster.membership.runs_housekeeping(),
    }
}
