//! `GET /loki/api/v1/query_range` and `/query`: log queries answered from
//! a search (`streams`), metric queries from a histogram (`matrix`, or
//! `vector` at one instant), constants as themselves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::Json;
use cblogs_core::api::{HistogramResponse, MAX_HISTOGRAM_STEPS};
use cblogs_core::time::now_ns;
use cblogs_core::LineView;
use serde_json::{json, Value};

use super::ask::{self, line_labels};
use super::error::LokiError;
use super::params::{Direction, LokiParams};
use super::series_labels;
use crate::app::App;
use crate::logql::{self, LogQuery, MetricQuery, Query, RangeFunction};

/// Grafana asks for labels by kind (`X-Loki-Response-Encoding-Flags:
/// categorize-labels`): each line then carries a third element, its
/// structured metadata and parsed labels, which cblogs has none of.
const CATEGORIZE_LABELS: &str = "categorize-labels";

pub(in crate::api) async fn query_range(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LokiError> {
    let started = Instant::now();
    let p = LokiParams::parse(raw)?;
    let categorize = headers
        .get_all("x-loki-response-encoding-flags")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|flag| flag.trim() == CATEGORIZE_LABELS);
    let query = logql::parse(p.query()?)?;
    let step = p.step();
    if !matches!(query, Query::Logs(_))
        && (p.end_ns - p.start_ns) / step > MAX_HISTOGRAM_STEPS as i64
    {
        return Err(LokiError::bad(format!(
            "exceeded maximum resolution of {MAX_HISTOGRAM_STEPS} points per timeseries. Try increasing the value of the step parameter"
        )));
    }
    let answer = match query {
        Query::Logs(logs) => log_lines(&app, &p, &logs, categorize).await?,
        Query::Metric(m) => {
            let (series, warnings) = windows(&app, &m, p.start_ns, p.end_ns, step).await?;
            let result: Vec<Value> = series
                .into_iter()
                .map(|(metric, points)| {
                    let values: Vec<Value> = points
                        .into_iter()
                        .map(|(t, v)| json!([seconds(t), sample(v)]))
                        .collect();
                    json!({"metric": metric, "values": values})
                })
                .collect();
            Answer::new("matrix", result, warnings)
        }
        Query::Constant(v) => {
            let values: Vec<Value> = (0..=(p.end_ns - p.start_ns) / step)
                .map(|k| json!([seconds(p.start_ns + k * step), sample(v)]))
                .collect();
            Answer::new(
                "matrix",
                vec![json!({"metric": {}, "values": values})],
                Vec::new(),
            )
        }
    };
    Ok(Json(answer.finish(started)))
}

pub(in crate::api) async fn query(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, LokiError> {
    let started = Instant::now();
    let p = LokiParams::parse(raw)?;
    let t = p.time_ns;
    let answer = match logql::parse(p.query()?)? {
        // Loki 3 answers the same: a log query needs a range.
        Query::Logs(_) => {
            return Err(LokiError::bad(
                "log queries are not supported as an instant query type, please change your query to a range query type",
            ))
        }
        Query::Metric(m) => {
            // One window: a step as long as it.
            let (series, warnings) = windows(&app, &m, t, t, m.range_ns).await?;
            let result: Vec<Value> = series
                .into_iter()
                .filter_map(|(metric, points)| {
                    let (t, v) = points.into_iter().next()?;
                    Some(json!({"metric": metric, "value": [seconds(t), sample(v)]}))
                })
                .collect();
            Answer::new("vector", result, warnings)
        }
        Query::Constant(v) => Answer::new(
            "vector",
            vec![json!({"metric": {}, "value": [seconds(t), sample(v)]})],
            Vec::new(),
        ),
    };
    Ok(Json(answer.finish(started)))
}

/// A query's `data` before its statistics.
struct Answer {
    result_type: &'static str,
    result: Vec<Value>,
    warnings: Vec<String>,
    /// Lines in the answer (a log query's).
    entries: usize,
    bytes: usize,
    /// `encodingFlags` to say (a log query's, as asked).
    flags: Vec<&'static str>,
}

impl Answer {
    fn new(result_type: &'static str, result: Vec<Value>, warnings: Vec<String>) -> Answer {
        Answer {
            result_type,
            result,
            warnings,
            entries: 0,
            bytes: 0,
            flags: Vec::new(),
        }
    }

    /// The body: Loki's `{"status": "success", "data": {…, "stats"}}`,
    /// with `warnings` when the answer may lack lines.
    fn finish(self, started: Instant) -> Value {
        let secs = started.elapsed().as_secs_f64();
        // In Loki's order: Grafana reads `encodingFlags` only if it comes
        // before `result` (serde_json's map keeps keys sorted, or in the
        // order inserted: this order both ways).
        let mut data = serde_json::Map::new();
        data.insert("resultType".into(), json!(self.result_type));
        if !self.flags.is_empty() {
            data.insert("encodingFlags".into(), json!(self.flags));
        }
        data.insert("result".into(), Value::Array(self.result));
        data.insert(
            "stats".into(),
            json!({
                "summary": {
                    "bytesProcessedPerSecond": (self.bytes as f64 / secs.max(1e-9)) as u64,
                    "linesProcessedPerSecond": (self.entries as f64 / secs.max(1e-9)) as u64,
                    "totalBytesProcessed": self.bytes,
                    "totalLinesProcessed": self.entries,
                    "execTime": secs,
                    "queueTime": 0,
                    "subqueries": 0,
                    "totalEntriesReturned": self.entries,
                }
            }),
        );
        let mut body = json!({"status": "success", "data": data});
        if !self.warnings.is_empty() {
            body["warnings"] = json!(self.warnings);
        }
        body
    }
}

/// A log query: the lines as streams, each stream's values in the
/// direction asked.
async fn log_lines(
    app: &Arc<App>,
    p: &LokiParams,
    logs: &LogQuery,
    categorize: bool,
) -> Result<Answer, LokiError> {
    let (start, end) = (p.start_ns, p.end_ns);
    let most = app.config.search.max_results;
    if p.limit == 0 {
        return Err(LokiError::bad("limit must be a positive value"));
    }
    if p.limit > most {
        return Err(LokiError::bad(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({} > {most}; search.max_results)",
            p.limit
        )));
    }
    // Nothing is stored in the future; the search would refuse the range.
    let end = end.min(now_ns() + 1);
    if start >= end {
        return Ok(Answer::new("streams", Vec::new(), Vec::new()));
    }
    let pairs = ask::selection(logs, true);
    let (lines, warnings) = match p.direction {
        Direction::Forward => ask::oldest(app, &pairs, start, end, p.limit).await?,
        Direction::Backward => ask::newest(app, &pairs, start, end, p.limit).await?,
    };
    let mut answer = Answer::new("streams", Vec::new(), warnings);
    answer.entries = lines.len();
    answer.bytes = lines.iter().map(|l| l.text.len()).sum();
    answer.result = streams(lines, categorize);
    if categorize {
        answer.flags.push(CATEGORIZE_LABELS);
    }
    Ok(answer)
}

/// Lines (in the order to show them) as Loki's streams: one per label
/// set, its values in that order, timestamps as nanosecond strings; with
/// `categorize`, each value's third element (no metadata: `{}`).
pub(super) fn streams(lines: Vec<LineView>, categorize: bool) -> Vec<Value> {
    let mut streams: BTreeMap<BTreeMap<&'static str, String>, Vec<Value>> = BTreeMap::new();
    for l in lines {
        let values = streams.entry(line_labels(&l)).or_default();
        values.push(if categorize {
            json!([l.time_ns.to_string(), l.text, {}])
        } else {
            json!([l.time_ns.to_string(), l.text])
        });
    }
    streams
        .into_iter()
        .map(|(stream, values)| json!({"stream": stream, "values": values}))
        .collect()
}

/// A metric's series: for each evaluation time `t` from `start` to `end`
/// every `step`, the lines in `(t - range, t]`. Counted in one histogram
/// whose buckets are the greatest common divisor of range and step wide,
/// so each window is a whole number of buckets. Points with no line are
/// left out, as Loki leaves them out.
async fn windows(
    app: &Arc<App>,
    m: &MetricQuery,
    start: i64,
    end: i64,
    step: i64,
) -> Result<(Vec<(Value, Vec<(i64, f64)>)>, Vec<String>), LokiError> {
    let range = m.range_ns;
    let width = gcd(range, step);
    // (t - range, t] is [t - range + 1, t + 1) in whole nanoseconds.
    let since = start - range + 1;
    let until = (end + 1).min(now_ns() + 1);
    if since >= until {
        return Ok((Vec::new(), Vec::new()));
    }
    let buckets =
        (i128::from(until) - i128::from(since) + i128::from(width) - 1) / i128::from(width);
    if buckets > MAX_HISTOGRAM_STEPS as i128 {
        return Err(LokiError::bad(format!(
            "cannot count windows of {} every {}: they need {buckets} buckets of their greatest common divisor ({}), at most {MAX_HISTOGRAM_STEPS}. Make the range a multiple of the step, or the step a multiple of the range",
            duration(range), duration(step), duration(width)
        )));
    }
    let mut pairs = ask::selection(&m.logs, false);
    pairs.push(("by".into(), "labels".into()));
    let h = ask::histogram(
        app,
        &pairs,
        &[
            ("since_ns", since.to_string()),
            ("until_ns", until.to_string()),
            ("step_ns", width.to_string()),
        ],
    )
    .await?;
    let warnings: Vec<String> = h
        .reason
        .iter()
        .cloned()
        .chain(ask::partial_warning(
            h.partial.iter().map(|u| u.node_id.as_str()),
        ))
        .collect();
    let grouped = group(&h, m.sum_by.as_deref());
    let per_window = (range / width) as usize;
    let seconds = range as f64 / 1e9;
    let series = grouped
        .into_iter()
        .filter_map(|(metric, counts)| {
            // Lines before each bucket: a window's count is a difference.
            let mut before = Vec::with_capacity(counts.len() + 1);
            before.push(0u64);
            for c in &counts {
                before.push(before[before.len() - 1] + c);
            }
            let upto = |b: usize| before[b.min(counts.len())];
            let points: Vec<(i64, f64)> = (0..=(end - start) / step)
                .filter_map(|k| {
                    let first = (k * step / width) as usize;
                    let n = upto(first + per_window) - upto(first);
                    let value = match m.function {
                        RangeFunction::CountOverTime => n as f64,
                        RangeFunction::Rate => n as f64 / seconds,
                    };
                    (n > 0).then_some((start + k * step, value))
                })
                .collect();
            (!points.is_empty()).then(|| (json!(metric), points))
        })
        .collect();
    Ok((series, warnings))
}

/// The histogram's series added together by the labels of `sum by`
/// (each stream on its own without a `sum`).
fn group(
    h: &HistogramResponse,
    sum_by: Option<&[String]>,
) -> BTreeMap<BTreeMap<String, String>, Vec<u64>> {
    let mut out: BTreeMap<BTreeMap<String, String>, Vec<u64>> = BTreeMap::new();
    for s in &h.series {
        let all = series_labels(s);
        let key: BTreeMap<String, String> = match sum_by {
            None => all.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            Some(by) => by
                .iter()
                .filter_map(|l| all.get(l.as_str()).map(|v| (l.clone(), v.clone())))
                .collect(),
        };
        let sum = out.entry(key).or_insert_with(|| vec![0; s.counts.len()]);
        for (b, n) in s.counts.iter().enumerate() {
            sum[b] += n;
        }
    }
    out
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// A time as Loki's matrices give it: seconds, to the millisecond.
fn seconds(t_ns: i64) -> Value {
    json!(t_ns.div_euclid(1_000_000) as f64 / 1000.0)
}

/// A sample's value as Loki writes it: a string, shortest form.
fn sample(v: f64) -> String {
    v.to_string()
}

fn duration(ns: i64) -> String {
    if ns % 1_000_000_000 == 0 {
        format!("{}s", ns / 1_000_000_000)
    } else {
        format!("{}ms", ns as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::api::{HistogramSeries, SeriesLabels};
    use cblogs_core::Stream;

    fn series(job: &str, stream: Stream, counts: Vec<u64>) -> HistogramSeries {
        HistogramSeries {
            job: Some(job.into()),
            stream,
            labels: Some(SeriesLabels {
                host: "agent-1".into(),
                instance: 0,
                process: "hello".into(),
            }),
            counts,
        }
    }

    #[test]
    fn sums_group_by_the_labels_named() {
        let h = HistogramResponse {
            start_ns: 0,
            step_ns: 1,
            buckets: 2,
            series: vec![
                series("c/www-data/prod/a", Stream::Stdout, vec![1, 2]),
                series("c/www-data/prod/a", Stream::Stderr, vec![10, 0]),
                series("c/www-data/prod/b", Stream::Stdout, vec![100, 0]),
            ],
            total: 113,
            truncated: false,
            reason: None,
            took_ms: 0,
            partial: Vec::new(),
        };
        let by_job = group(&h, Some(&["job".to_string(), "level".to_string()]));
        let counts: Vec<(String, Vec<u64>)> = by_job
            .into_iter()
            .map(|(k, v)| (k["job"].clone(), v))
            .collect();
        assert_eq!(
            counts,
            [("a".into(), vec![11, 2]), ("b".into(), vec![100, 0])]
        );
        let all = group(&h, Some(&[]));
        assert_eq!(
            all.into_iter().collect::<Vec<_>>(),
            [(BTreeMap::new(), vec![111, 2])]
        );
        let each = group(&h, None);
        assert_eq!(each.len(), 3);
        let first = each.keys().next().unwrap();
        assert_eq!(first["cluster"], "c");
        assert_eq!(first["role"], "www-data");
        assert_eq!(first["instance"], "0");
    }

    #[test]
    fn numbers_as_loki_writes_them() {
        assert_eq!(seconds(1_700_000_000_123_456_789), json!(1_700_000_000.123));
        assert_eq!(sample(2.0), "2");
        assert_eq!(sample(0.25), "0.25");
        assert_eq!(gcd(60_000, 15_000), 15_000);
        assert_eq!(gcd(60, 25), 5);
    }
}
