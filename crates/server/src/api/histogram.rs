//! `GET /api/v1/histogram`: matching lines (all lines without a pattern)
//! per time bucket, one series per stream (and job). It takes the search's
//! parameters (`search.rs`) plus `buckets` and `by`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use cblogs_core::api::HistogramResponse;

use super::error::ApiError;
use super::search::{parse, request, search_slot, spawn_search};
use crate::app::App;
use crate::metrics::{emit, QueryAnswered};
use crate::search::histogram::{self, HistogramRequest};

pub(super) async fn histogram(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<HistogramResponse>, ApiError> {
    let (search, p) = request(&app, parse(raw, true)?, true)?;
    let hreq = HistogramRequest {
        search,
        buckets: p.buckets,
        by_job: p.by_job,
    };
    let slot = search_slot(&app)?;
    let store = app.store.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    spawn_search(&app, move || {
        let _slot = slot;
        let started = Instant::now();
        let snap = store.snapshot(&|s| hreq.search.filter.wants(s), false);
        let answer = histogram::run(&snap, &hreq);
        emit(QueryAnswered {
            kind: "histogram",
            seconds: started.elapsed().as_secs_f64(),
        });
        // The client may be gone; then nobody wants the answer.
        let _ = tx.send(answer);
    })?;
    let answer = rx
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "histogram failed: its thread ended without an answer",
            )
        })?
        .map_err(|e| {
            tracing::error!(error = %e, "histogram: cannot read the store");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot read the store: {e}"),
            )
        })?;
    Ok(Json(answer))
}
