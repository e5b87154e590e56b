//! `GET /metrics`: everything counted so far (`metrics/`), with the sizes,
//! live tails and running searches read now.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use crate::app::App;
use crate::metrics::{render, Gauges};
use crate::store::disk_usage;

pub(super) async fn serve(State(app): State<Arc<App>>) -> Response {
    let storage = disk_usage(&app.store);
    let cache = app.cache.stats();
    let publishing = app.publishing.now();
    let gauges = Gauges {
        wal_bytes: app.wal.bytes_on_disk(),
        index_bytes: storage.bytes,
        partitions: {
            let mut windows: Vec<i64> = storage.partitions.iter().map(|p| p.start_ns).collect();
            windows.dedup();
            windows.len() as u64
        },
        splits: storage.partitions.len() as u64,
        unpublished_splits: storage.partitions.iter().filter(|p| !p.published).count() as u64,
        upload_lag_seconds: publishing.upload_lag_secs as u64,
        unindexed_bytes: app.store.unindexed_bytes(),
        live_tails: app.limits.follows_open() as u64,
        searches_running: app.limits.searches_running() as u64,
        ingest_available: app.wal.failure().is_none(),
        cache_bytes: cache.bytes,
        cache_max_bytes: cache.max_bytes,
        merges_pending: publishing.merges.pending,
    };
    match render(gauges) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
        .into_response(),
    }
}
