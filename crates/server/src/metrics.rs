//! `/metrics`: Prometheus text format (prometheus-client).
//!
//! Counters and histograms are kept as things happen; sizes (WAL, index,
//! memory), live tails and running searches are read when scraped, so they
//! are never stale and cost nothing between scrapes.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::http::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refusal {
    /// The role of the endpoint: ingest, read or admin.
    pub endpoint: String,
    /// auth, too_large, too_many_lines, bad_request, gap, rate, busy,
    /// unavailable, tail_limit, follow_limit, search_limit.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleStatus {
    pub rule: String,
    /// firing (first and repeats) or resolved.
    pub status: String,
}

/// What `cblogsd` counts.
pub struct Metrics {
    registry: Registry,
    pub lines_in: Counter,
    pub bytes_in: Counter,
    pub duplicate_lines: Counter,
    refused: Family<Refusal, Counter>,
    pub commit_seconds: Histogram,
    pub query_seconds: Family<Kind, Histogram>,
    pub alert_notifications: Family<RuleStatus, Counter>,
    pub retention_deleted: Family<Kind, Counter>,
    // Read at scrape time.
    wal_bytes: Gauge,
    index_bytes: Gauge,
    partitions: Gauge,
    unindexed_bytes: Gauge,
    live_tails: Gauge,
    searches_running: Gauge,
    ingest_available: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("cblogs");
        let lines_in = Counter::default();
        r.register("ingest_lines", "Lines accepted (durable)", lines_in.clone());
        let bytes_in = Counter::default();
        r.register(
            "ingest_bytes",
            "Bytes of lines accepted (durable)",
            bytes_in.clone(),
        );
        let duplicate_lines = Counter::default();
        r.register(
            "ingest_duplicate_lines",
            "Lines sent again that the server already held (dropped)",
            duplicate_lines.clone(),
        );
        let refused = Family::<Refusal, Counter>::default();
        r.register(
            "requests_refused",
            "Requests refused, by endpoint role and reason",
            refused.clone(),
        );
        let commit_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        r.register(
            "commit_seconds",
            "Time of one commit round: compress, write, index, fsync, tantivy commit",
            commit_seconds.clone(),
        );
        let query_seconds = Family::<Kind, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        r.register(
            "query_seconds",
            "Time to answer a read request (kind: search, histogram, tail, context), to the last byte",
            query_seconds.clone(),
        );
        let alert_notifications = Family::<RuleStatus, Counter>::default();
        r.register(
            "alert_notifications",
            "Alert notifications (firing, repeated firing, resolved) by rule, silenced ones included",
            alert_notifications.clone(),
        );
        let retention_deleted = Family::<Kind, Counter>::default();
        r.register(
            "retention_deleted_partitions",
            "Partitions deleted by retention (kind: age or disk)",
            retention_deleted.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        Metrics {
            wal_bytes: gauge(&mut r, "wal_bytes", "Bytes of write-ahead log on disk"),
            index_bytes: gauge(&mut r, "index_bytes", "Bytes of partitions on disk (blocks and indexes)"),
            partitions: gauge(&mut r, "partitions", "Time partitions held"),
            unindexed_bytes: gauge(&mut r, "unindexed_bytes", "Bytes of lines in memory, not yet in the index"),
            live_tails: gauge(&mut r, "live_tails", "Follow streams open"),
            searches_running: gauge(&mut r, "searches_running", "Searches and histograms running"),
            ingest_available: gauge(
                &mut r,
                "ingest_available",
                "1 while ingest can store (0: the disk is full or the WAL failed; ingest answers 503)",
            ),
            registry: r,
            lines_in,
            bytes_in,
            duplicate_lines,
            refused,
            commit_seconds,
            query_seconds,
            alert_notifications,
            retention_deleted,
        }
    }

    pub fn refused(&self, endpoint: &str, reason: &str) {
        self.refused
            .get_or_create(&Refusal {
                endpoint: endpoint.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn observe_query(&self, kind: &str, seconds: f64) {
        self.query_seconds
            .get_or_create(&Kind {
                kind: kind.to_owned(),
            })
            .observe(seconds);
    }

    pub fn notified(&self, rule: &str, status: &str) {
        self.alert_notifications
            .get_or_create(&RuleStatus {
                rule: rule.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    pub fn retention_deleted(&self, kind: &str) {
        self.retention_deleted
            .get_or_create(&Kind {
                kind: kind.to_owned(),
            })
            .inc();
    }
}

fn gauge_set(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// GET /metrics.
pub async fn serve(State(app): State<Arc<App>>) -> Response {
    let m = &app.metrics;
    let storage = app.store.disk_usage();
    gauge_set(&m.wal_bytes, app.wal.bytes_on_disk());
    gauge_set(&m.index_bytes, storage.bytes);
    gauge_set(&m.partitions, storage.partitions.len() as u64);
    gauge_set(&m.unindexed_bytes, app.store.unindexed_bytes());
    gauge_set(&m.live_tails, app.limits.follows_open() as u64);
    gauge_set(&m.searches_running, app.limits.searches_running() as u64);
    gauge_set(&m.ingest_available, u64::from(app.wal.failure().is_none()));
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &m.registry) {
        return crate::http::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        )
        .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
