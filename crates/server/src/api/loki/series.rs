//! `GET /loki/api/v1/labels`, `/label/<name>/values`, `/series` and
//! `/index/stats`: which streams have lines in the range, found by a
//! volume count of it (`/api/v1/histogram`, one bucket, a series per
//! stream), so a stream is listed exactly when a query of it would find
//! lines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use cblogs_core::api::HistogramSeries;
use cblogs_core::time::now_ns;
use serde_json::{json, Value};

use super::ask;
use super::error::LokiError;
use super::params::LokiParams;
use super::series_labels;
use crate::app::App;
use crate::logql::{self, Query, LABELS};

/// The streams with lines in `[start, end)` that `selector` (a log query;
/// none: every stream) selects, and how many lines each has there.
async fn streams_in_range(
    app: &Arc<App>,
    p: &LokiParams,
    selector: Option<&str>,
) -> Result<Vec<HistogramSeries>, LokiError> {
    let mut pairs = match selector {
        Some(q) => match logql::parse(q)? {
            Query::Logs(logs) => ask::selection(&logs, false),
            _ => {
                return Err(LokiError::bad(format!(
                    "expected a stream selector such as {{job=\"hello\"}}, got '{q}'"
                )))
            }
        },
        None => Vec::new(),
    };
    let end = p.end_ns.min(now_ns() + 1);
    if p.start_ns >= end {
        return Ok(Vec::new());
    }
    pairs.push(("by".into(), "labels".into()));
    let h = ask::histogram(
        app,
        &pairs,
        &[
            ("since_ns", p.start_ns.to_string()),
            ("until_ns", end.to_string()),
            ("buckets", "1".into()),
        ],
    )
    .await?;
    Ok(h.series
        .into_iter()
        .filter(|s| s.counts.iter().any(|n| *n > 0))
        .collect())
}

/// The streams of every `match[]` (or of `query`), each label set once.
async fn matched_streams(
    app: &Arc<App>,
    p: &LokiParams,
) -> Result<BTreeSet<BTreeMap<&'static str, String>>, LokiError> {
    let selectors: Vec<Option<&str>> = if !p.matches.is_empty() {
        p.matches.iter().map(|m| Some(m.as_str())).collect()
    } else {
        vec![p.query.as_deref()]
    };
    let mut out = BTreeSet::new();
    for selector in selectors {
        for s in streams_in_range(app, p, selector).await? {
            out.insert(series_labels(&s));
        }
    }
    Ok(out)
}

fn success(data: impl serde::Serialize) -> Json<Value> {
    Json(json!({"status": "success", "data": data}))
}

pub(in crate::api) async fn labels(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LokiError> {
    let p = LokiParams::parse(raw)?;
    let streams = matched_streams(&app, &p).await?;
    let names: BTreeSet<&str> = streams
        .iter()
        .flat_map(|s| s.iter().filter(|(_, v)| !v.is_empty()).map(|(k, _)| *k))
        .collect();
    Ok(success(names))
}

pub(in crate::api) async fn label_values(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LokiError> {
    let p = LokiParams::parse(raw)?;
    if !LABELS.contains(&name.as_str()) {
        // A label no stream has: no values (Loki's answer too).
        return Ok(success(Vec::<String>::new()));
    }
    let streams = matched_streams(&app, &p).await?;
    let values: BTreeSet<&str> = streams
        .iter()
        .filter_map(|s| s.get(name.as_str()).map(String::as_str))
        .filter(|v| !v.is_empty())
        .collect();
    Ok(success(values))
}

pub(in crate::api) async fn series(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LokiError> {
    // No `match[]` (or `{}`): every stream, as Loki answers.
    let mut p = LokiParams::parse(raw)?;
    p.matches.retain(|m| m.trim() != "{}");
    Ok(success(matched_streams(&app, &p).await?))
}

/// Loki's index statistics of a selector: streams, lines (`entries`), an
/// estimate of their bytes (each job's average line length so far), and
/// `chunks`, which cblogs does not have: one per stream is said.
pub(in crate::api) async fn index_stats(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LokiError> {
    let p = LokiParams::parse(raw)?;
    let streams = streams_in_range(&app, &p, Some(p.query()?)).await?;
    let mut per_job: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for s in app.store.summaries() {
        let t = per_job.entry(s.job.to_string()).or_default();
        t.0 += s.totals.lines;
        t.1 += s.totals.bytes;
    }
    let all = per_job
        .values()
        .fold((0u64, 0u64), |a, t| (a.0 + t.0, a.1 + t.1));
    let average = |job: &str| {
        let (lines, bytes) = per_job.get(job).copied().unwrap_or(all);
        if lines == 0 {
            100.0
        } else {
            bytes as f64 / lines as f64
        }
    };
    let entries: u64 = streams.iter().flat_map(|s| &s.counts).sum();
    let bytes: f64 = streams
        .iter()
        .map(|s| s.counts.iter().sum::<u64>() as f64 * average(s.job.as_deref().unwrap_or("")))
        .sum();
    Ok(Json(json!({
        "streams": streams.len(),
        "chunks": streams.len(),
        "entries": entries,
        "bytes": bytes.round() as u64,
    })))
}
