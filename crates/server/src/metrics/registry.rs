//! The process's one registry and every metric in it: names, help texts,
//! labels and buckets. Events (`events.rs`) update it; [`render`] reads it
//! with the gauges read at scrape time.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Refusal {
    /// The role of the endpoint: ingest, read or admin.
    pub(super) endpoint: String,
    /// auth, too_large, too_many_lines, bad_request, gap, rate, busy,
    /// unavailable, tail_limit, follow_limit, search_limit.
    pub(super) reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct Kind {
    pub(super) kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RuleStatus {
    pub(super) rule: String,
    /// firing (first and repeats) or resolved.
    pub(super) status: String,
}

/// The registry and every metric in it.
pub(super) struct Metrics {
    pub(super) registry: Registry,
    pub(super) lines_in: Counter,
    pub(super) bytes_in: Counter,
    pub(super) duplicate_lines: Counter,
    pub(super) refused: Family<Refusal, Counter>,
    pub(super) commit_seconds: Histogram,
    pub(super) query_seconds: Family<Kind, Histogram>,
    pub(super) alert_notifications: Family<RuleStatus, Counter>,
    pub(super) retention_deleted: Family<Kind, Counter>,
    pub(super) object_store_requests: Family<Kind, Counter>,
    pub(super) object_store_errors: Family<Kind, Counter>,
    pub(super) cache_hits: Counter,
    pub(super) cache_misses: Counter,
    pub(super) cache_evictions: Counter,
    pub(super) term_lists: Family<Kind, Counter>,
    pub(super) merges: Counter,
    pub(super) merge_failures: Counter,
    pub(super) merge_bytes_read: Counter,
    pub(super) merge_bytes_written: Counter,
    pub(super) merge_seconds: Histogram,
    // Read at scrape time.
    pub(super) wal_bytes: Gauge,
    pub(super) index_bytes: Gauge,
    pub(super) partitions: Gauge,
    pub(super) splits: Gauge,
    pub(super) unpublished_splits: Gauge,
    pub(super) upload_lag_seconds: Gauge,
    pub(super) unindexed_bytes: Gauge,
    pub(super) live_tails: Gauge,
    pub(super) searches_running: Gauge,
    pub(super) ingest_available: Gauge,
    pub(super) cache_bytes: Gauge,
    pub(super) cache_max_bytes: Gauge,
    pub(super) merges_pending: Gauge,
}

/// The values read at scrape time.
pub struct Gauges {
    pub wal_bytes: u64,
    pub index_bytes: u64,
    pub partitions: u64,
    pub splits: u64,
    pub unpublished_splits: u64,
    pub upload_lag_seconds: u64,
    pub unindexed_bytes: u64,
    pub live_tails: u64,
    pub searches_running: u64,
    pub ingest_available: bool,
    /// The disk cache of split indexes: bytes now, and its budget.
    pub cache_bytes: u64,
    pub cache_max_bytes: u64,
    /// Merges the policy would run now, after the running one.
    pub merges_pending: u64,
}

pub(super) fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Everything counted so far and `gauges`, in Prometheus text format.
pub fn render(gauges: Gauges) -> Result<String, std::fmt::Error> {
    let m = metrics();
    let set = |g: &Gauge, v: u64| {
        g.set(i64::try_from(v).unwrap_or(i64::MAX));
    };
    set(&m.wal_bytes, gauges.wal_bytes);
    set(&m.index_bytes, gauges.index_bytes);
    set(&m.partitions, gauges.partitions);
    set(&m.splits, gauges.splits);
    set(&m.unpublished_splits, gauges.unpublished_splits);
    set(&m.upload_lag_seconds, gauges.upload_lag_seconds);
    set(&m.unindexed_bytes, gauges.unindexed_bytes);
    set(&m.live_tails, gauges.live_tails);
    set(&m.searches_running, gauges.searches_running);
    set(&m.ingest_available, u64::from(gauges.ingest_available));
    set(&m.cache_bytes, gauges.cache_bytes);
    set(&m.cache_max_bytes, gauges.cache_max_bytes);
    set(&m.merges_pending, gauges.merges_pending);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &m.registry)?;
    Ok(text)
}

impl Metrics {
    fn new() -> Metrics {
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
            "Splits deleted by retention (kind: age or disk)",
            retention_deleted.clone(),
        );
        let object_store_requests = Family::<Kind, Counter>::default();
        r.register(
            "object_store_requests",
            "Requests to the object store (kind: put, get, list, delete), failed ones included",
            object_store_requests.clone(),
        );
        let object_store_errors = Family::<Kind, Counter>::default();
        r.register(
            "object_store_errors",
            "Object-store requests that failed, by kind",
            object_store_errors.clone(),
        );
        let term_lists = Family::<Kind, Counter>::default();
        r.register(
            "term_lists",
            "Index segments' term lists taken into search.term_cache_bytes for partial-word lookups (kind: stored, read from a finished split's terms.dat; built, walked from the index)",
            term_lists.clone(),
        );
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let cache_hits = counter(
            &mut r,
            "cache_hits",
            "Reads of a published split's index found in the disk cache (cache.max_bytes)",
        );
        let cache_misses = counter(
            &mut r,
            "cache_misses",
            "Reads of a published split's index that downloaded it into the disk cache",
        );
        let cache_evictions = counter(
            &mut r,
            "cache_evictions",
            "Split indexes deleted from the disk cache to stay within cache.max_bytes",
        );
        let merges = counter(
            &mut r,
            "merges",
            "Merges of published splits done (their output published, inputs retired)",
        );
        let merge_failures = counter(
            &mut r,
            "merge_failures",
            "Merges that failed or lost to retention (their inputs stay as they were)",
        );
        let merge_bytes_read = counter(
            &mut r,
            "merge_bytes_read",
            "Compressed bytes of blocks merges read",
        );
        let merge_bytes_written = counter(
            &mut r,
            "merge_bytes_written",
            "Compressed bytes of blocks merges wrote",
        );
        let merge_seconds = Histogram::new(exponential_buckets(0.1, 4.0, 8));
        r.register(
            "merge_seconds",
            "Time one merge took (read, write, upload, commit)",
            merge_seconds.clone(),
        );
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        Metrics {
            wal_bytes: gauge(&mut r, "wal_bytes", "Bytes of write-ahead log on disk"),
            index_bytes: gauge(&mut r, "index_bytes", "Bytes of splits (blocks and indexes), published and being built"),
            partitions: gauge(&mut r, "partitions", "Windows of line time (storage.partition_secs) with a split held"),
            splits: gauge(&mut r, "splits", "Splits held, published and not"),
            unpublished_splits: gauge(&mut r, "unpublished_splits", "Splits being built or waiting for their upload"),
            upload_lag_seconds: gauge(&mut r, "upload_lag_seconds", "Age of the oldest split not yet published (0: all published)"),
            unindexed_bytes: gauge(&mut r, "unindexed_bytes", "Bytes of lines in memory, not yet in the index"),
            live_tails: gauge(&mut r, "live_tails", "Follow streams open"),
            searches_running: gauge(&mut r, "searches_running", "Searches and histograms running"),
            ingest_available: gauge(
                &mut r,
                "ingest_available",
                "1 while ingest can store (0: the disk is full or the WAL failed; ingest answers 503)",
            ),
            cache_bytes: gauge(&mut r, "cache_bytes", "Bytes of published splits' indexes in the disk cache (remote object store)"),
            cache_max_bytes: gauge(&mut r, "cache_max_bytes", "cache.max_bytes: the disk cache's budget"),
            merges_pending: gauge(&mut r, "merges_pending", "Merges the merge policy would run now, after the running one"),
            registry: r,
            lines_in,
            bytes_in,
            duplicate_lines,
            refused,
            commit_seconds,
            query_seconds,
            alert_notifications,
            retention_deleted,
            object_store_requests,
            object_store_errors,
            cache_hits,
            cache_misses,
            cache_evictions,
            term_lists,
            merges,
            merge_failures,
            merge_bytes_read,
            merge_bytes_written,
            merge_seconds,
        }
    }
}
