//! The part of Loki's HTTP API that Grafana's Loki data source uses, so
//! cblogsd can be added to Grafana as a Loki data source, unchanged:
//!
//! ```text
//! GET /loki/api/v1/query_range   log queries (streams), metric queries (matrix)   query.rs
//! GET /loki/api/v1/query         metric queries and constants at one time (vector)
//! GET /loki/api/v1/labels, /label/<name>/values, /series, /index/stats             series.rs
//! GET /loki/api/v1/detected_fields, /detected_field/<name>/values: none detected
//! GET /loki/api/v1/tail          a WebSocket: the newest lines, then new ones     tail.rs
//! ```
//!
//! LogQL (`crate::logql`) becomes the parameters of cblogsd's own read
//! endpoints, which answer in process (`ask.rs`): the same checks, limits,
//! auth (the read role; Grafana sends its token as a bearer) and, in a
//! cluster, the same fan-out. Parameters and answers follow Loki's
//! documented shapes (`params.rs`); errors are Loki's plain text with a
//! 4xx or 5xx status (`error.rs`).

mod ask;
pub(super) mod error;
mod params;
mod query;
mod series;
mod tail;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::routing::get;
use axum::{Json, Router};
use cblogs_core::api::HistogramSeries;
use cblogs_core::{JobKey, Stream};
use serde_json::{json, Value};

use crate::app::App;

/// The Loki routes (all read).
pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/loki/api/v1/query_range", get(query::query_range))
        .route("/loki/api/v1/query", get(query::query))
        .route("/loki/api/v1/labels", get(series::labels))
        .route(
            "/loki/api/v1/label/{name}/values",
            get(series::label_values),
        )
        .route("/loki/api/v1/series", get(series::series))
        .route("/loki/api/v1/index/stats", get(series::index_stats))
        .route("/loki/api/v1/detected_fields", get(no_fields))
        .route("/loki/api/v1/detected_field/{name}/values", get(no_values))
        .route("/loki/api/v1/tail", get(tail::tail))
}

/// Loki detects fields in logfmt and JSON lines; cblogs keeps lines as
/// text, and says it found none (Loki's own answer for plain lines).
async fn no_fields() -> Json<Value> {
    Json(json!({"fields": [], "limit": 1000}))
}

async fn no_values() -> Json<Value> {
    Json(json!({"values": [], "limit": 1000}))
}

/// A `by=labels` histogram series' labels, as Loki names them.
fn series_labels(s: &HistogramSeries) -> BTreeMap<&'static str, String> {
    let job: Option<JobKey> = s.job.as_deref().and_then(|j| j.parse().ok());
    let (cluster, role_env_name) = job.map_or_else(Default::default, |j| {
        (j.cluster.clone().unwrap_or_default(), j.role_env_name())
    });
    let l = s.labels.clone().unwrap_or_default();
    stream_labels(
        &cluster,
        &role_env_name,
        l.instance,
        &l.process,
        s.stream,
        &l.host,
    )
}

/// A stream's labels as Loki names them; `role_env_name` is the job key
/// without its cluster.
fn stream_labels(
    cluster: &str,
    role_env_name: &str,
    instance: u32,
    process: &str,
    stream: Stream,
    host: &str,
) -> BTreeMap<&'static str, String> {
    let mut job = role_env_name.splitn(3, '/');
    let mut labels = BTreeMap::new();
    labels.insert("cluster", cluster.to_owned());
    labels.insert("role", job.next().unwrap_or_default().to_owned());
    labels.insert("env", job.next().unwrap_or_default().to_owned());
    labels.insert("job", job.next().unwrap_or_default().to_owned());
    labels.insert("instance", instance.to_string());
    labels.insert("process", process.to_owned());
    labels.insert("stream", stream.as_str().to_owned());
    labels.insert("host", host.to_owned());
    labels
}
