//! The status endpoint on `status_listen`: `GET /status` (JSON) and
//! `GET /metrics` (the same, in Prometheus text), each asking the
//! shipper's loop for a fresh status.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::{mpsc, oneshot};

use crate::status::{Status, StatusRequest, METRICS_PATH, STATUS_PATH};

/// Serves `GET /status` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, ask: mpsc::Sender<StatusRequest>) {
    let app = Router::new()
        .route(STATUS_PATH, get(status))
        .route(METRICS_PATH, get(metrics))
        .with_state(ask);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!("status endpoint stopped: {e}");
    }
}

/// `GET /metrics`: the status in Prometheus text format.
async fn metrics(
    State(ask): State<mpsc::Sender<StatusRequest>>,
) -> Result<impl axum::response::IntoResponse, (axum::http::StatusCode, String)> {
    let Json(s) = status(State(ask)).await?;
    let text = crate::metrics::render(&s).map_err(|e| {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
    })?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

async fn status(
    State(ask): State<mpsc::Sender<StatusRequest>>,
) -> Result<Json<Status>, (axum::http::StatusCode, String)> {
    let unavailable = || {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the shipper is shutting down".to_owned(),
        )
    };
    let (tx, rx) = oneshot::channel();
    ask.send(tx).await.map_err(|_| unavailable())?;
    rx.await.map(Json).map_err(|_| unavailable())
}
