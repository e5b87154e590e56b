//! The admin endpoints: `POST /api/v1/admin/flush`,
//! `POST /api/v1/admin/alerts/reload` and `POST /api/v1/alerts/silences`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use cblogs_core::api;

use super::error::ApiError;
use crate::app::App;
use crate::store::CommitterCommand;

pub(super) async fn silence(
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Result<Json<api::Silence>, ApiError> {
    let req: api::SilenceRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(format!(
            "malformed silence: {e} (expected {{\"rule\", \"group\", \"for_secs\"}})"
        ))
    })?;
    app.alerts.silence(req).map(Json).map_err(|e| {
        let status = if e.starts_with("no alert rule") {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e)
    })
}

/// `POST /api/v1/cluster/alerts/hits` (nodes only): matches another node
/// made, for the alert groups whose window is on this node.
pub(super) async fn alert_hits(
    State(app): State<Arc<App>>,
    body: axum::body::Bytes,
) -> Result<Json<crate::alert::HitsTaken>, ApiError> {
    let hits: Vec<crate::alert::Hit> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("malformed alert hits: {e}")))?;
    Ok(Json(app.alerts.receive(hits)))
}

/// Reads the alert rules file again; a bad one is refused (400) naming the
/// rule and field, and the rules in force stay.
pub(super) async fn reload_alerts(
    State(app): State<Arc<App>>,
) -> Result<Json<api::ReloadResponse>, ApiError> {
    let alerts = app.alerts.clone();
    let rules = tokio::task::spawn_blocking(move || alerts.reload())
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload failed: {e}"),
            )
        })?
        .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(Json(api::ReloadResponse { rules }))
}

/// Seals every open block and commits it to the index, answering when that
/// is done: every line acknowledged before the call is then in the index
/// and the WAL holds nothing older.
pub(super) async fn flush(
    State(app): State<Arc<App>>,
) -> Result<Json<api::FlushResponse>, ApiError> {
    let started = std::time::Instant::now();
    let (reply, answer) = std::sync::mpsc::channel();
    app.committer
        .send(CommitterCommand::Flush(reply))
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping"))?;
    let committed_blocks = tokio::task::spawn_blocking(move || answer.recv())
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the service is stopping"))?;
    // It answers once everything is published: a publish that failed is
    // said, not passed over (it is tried again with a backoff).
    let publishing = app.publishing.now();
    if let (Some(error), true) = (publishing.error, publishing.upload_lag_secs > 0.0) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "flushed, but a split could not be published to {} ({error}); it stays on the local disk and is tried again",
                app.object_store
            ),
        )
        .retry_after(std::time::Duration::from_secs(1)));
    }
    Ok(Json(api::FlushResponse {
        committed_blocks,
        took_ms: started.elapsed().as_millis() as u64,
        unindexed_bytes: app.store.unindexed_bytes(),
    }))
}
