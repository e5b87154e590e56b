//! Read-only views of what the service holds: `GET /api/v1/jobs`,
//! `GET /api/v1/storage` and `GET /api/v1/alerts`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::Json;
use cblogs_core::api::{self, JobsResponse};
use cblogs_core::Selector;

use super::error::ApiError;
use super::params::query_pairs;
use crate::app::App;
use crate::read;
use crate::store::{disk_usage, DiskUsage};

pub(super) async fn jobs(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<JobsResponse>, ApiError> {
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
    Ok(Json(JobsResponse {
        jobs: read::jobs(&app.store, pattern.as_ref()),
    }))
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
    Json(app.alerts.response())
}

/// `GET /api/v1/cluster`: this node's id and the nodes it knows of.
pub(super) async fn cluster(State(app): State<Arc<App>>) -> Json<crate::cluster::ClusterView> {
    Json(app.cluster.membership.view())
}
