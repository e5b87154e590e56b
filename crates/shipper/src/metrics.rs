//! The shipper's `/metrics` (on `status_listen`), rendered from its status
//! at scrape time: what was shipped, retried and dropped, and each file's lag.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::status::Status;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabels {
    path: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Why {
    /// The server's status code (429, 503, 401…) or `unreachable`.
    reason: String,
}

fn gauge(v: u64) -> Gauge {
    let g = Gauge::default();
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// Prometheus text for `s`.
pub fn render(s: &Status) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("cblogs_shipper");
    r.register(
        "lines_acked",
        "Lines the server acknowledged since start",
        counter(s.lines_acked),
    );
    r.register(
        "lines_dropped",
        "Lines the server refused for good since start (the log says which)",
        counter(s.lines_dropped),
    );
    let retries = Family::<Why, Counter>::default();
    for (reason, n) in &s.retries {
        retries
            .get_or_create(&Why {
                reason: reason.clone(),
            })
            .inc_by(*n);
    }
    r.register(
        "retries",
        "Requests retried, by the server's answer (429 and 503: it asked to back off)",
        retries,
    );
    r.register(
        "requests_in_flight",
        "Requests awaiting an answer",
        gauge(s.requests_in_flight as u64),
    );
    r.register("files", "Files tailed", gauge(s.files.len() as u64));
    r.register(
        "watched_dirs",
        "Folders watched with inotify",
        gauge(s.watched_dirs as u64),
    );
    let lag = Family::<FileLabels, Gauge>::default();
    let acked = Family::<FileLabels, Gauge>::default();
    for f in &s.files {
        let labels = FileLabels {
            path: f.path.clone(),
            source: f.source.clone(),
        };
        lag.get_or_create(&labels)
            .set(i64::try_from(f.lag_bytes).unwrap_or(i64::MAX));
        acked
            .get_or_create(&labels)
            .set(i64::try_from(f.acked).unwrap_or(i64::MAX));
    }
    r.register(
        "lag_bytes",
        "Bytes of a file on disk the server does not hold yet",
        lag,
    );
    r.register(
        "acked_offset_bytes",
        "Offset of a file the server has acknowledged",
        acked,
    );
    r.register(
        "lag_bytes_total",
        "Bytes on disk the server does not hold yet, all files",
        gauge(s.files.iter().map(|f| f.lag_bytes).sum()),
    );
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &r)?;
    Ok(text)
}
