//! What the Loki endpoints ask of cblogsd's own read endpoints, in
//! process: the same handlers (`search`, `histogram`, `follow`) a client
//! of `/api/v1` reaches, so every check, limit and the cluster's fan-out
//! apply unchanged. A LogQL query becomes their parameters here.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use cblogs_core::api::{HistogramResponse, SearchEvent, SearchSummary};
use cblogs_core::line_event::decode_search_event;
use cblogs_core::LineView;

use super::error::LokiError;
use super::stream_labels;
use crate::api::{histogram, search};
use crate::app::App;
use crate::logql::LogQuery;

/// Query parameters as pairs.
pub(super) type Pairs = Vec<(String, String)>;

/// The parameters of `/api/v1/search` and `/histogram` that select what
/// `logs` selects: its stream selector as `labels=`, its first line
/// filter as the pattern (inverted if it is `!=` or `!~` and none is
/// positive), the others as `and=` and `not=`.
pub(super) fn selection(logs: &LogQuery, with_pattern: bool) -> Pairs {
    let mut pairs = vec![("labels".to_owned(), logs.selector.to_string())];
    let (positive, negative): (Vec<_>, Vec<_>) = logs.filters.iter().partition(|f| !f.negated);
    let mut negative = negative.into_iter();
    let main = match positive.first() {
        Some(first) => Some(first.expression()),
        None => negative.next().map(|first| {
            pairs.push(("invert".into(), "true".into()));
            first.expression()
        }),
    };
    match main {
        Some(pattern) => pairs.push(("pattern".into(), pattern)),
        // A search needs a pattern: the empty one matches every line.
        None if with_pattern => pairs.push(("pattern".into(), String::new())),
        None => {}
    }
    for f in positive.iter().skip(1) {
        pairs.push(("and".into(), f.expression()));
    }
    for f in negative {
        pairs.push(("not".into(), f.expression()));
    }
    pairs
}

fn encode(pairs: &[(String, String)], more: &[(&str, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .extend_pairs(more.iter().map(|(k, v)| (*k, v.as_str())))
        .finish()
}

/// Why a count or a page stopped short: the time limit (504), or the
/// store (500, its reason).
fn cut_short(reason: &Option<String>, time_limit: std::time::Duration) -> LokiError {
    match reason {
        Some(r) if r.starts_with("storage error") => LokiError::internal(r.clone()),
        _ => LokiError::timed_out(time_limit),
    }
}

/// One page of a search: its matching lines in time order, and its summary.
pub(super) async fn search_page(
    app: &Arc<App>,
    pairs: &Pairs,
    more: &[(&str, String)],
) -> Result<(Vec<LineView>, SearchSummary), LokiError> {
    let raw = encode(pairs, more);
    let resp = search::search(State(app.clone()), RawQuery(Some(raw))).await?;
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .map_err(|e| LokiError::internal(format!("the search's answer broke off: {e}")))?;
    // Up to search.max_results lines to decode: off the async threads.
    tokio::task::spawn_blocking(move || decode_page(&body))
        .await
        .map_err(|e| LokiError::internal(format!("reading the search's answer failed: {e}")))?
}

fn decode_page(body: &[u8]) -> Result<(Vec<LineView>, SearchSummary), LokiError> {
    let (mut lines, mut summary) = (Vec::new(), None);
    for event in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        match decode_search_event(event) {
            Ok(SearchEvent::Line(l)) if !l.context => lines.push(l.line),
            Ok(SearchEvent::Summary(s)) => summary = Some(s),
            Ok(_) => {}
            Err(e) => {
                return Err(LokiError::internal(format!(
                    "cannot read the search's answer: {e}"
                )))
            }
        }
    }
    let summary = summary.ok_or_else(|| {
        LokiError::internal("the search ended without its summary (see cblogsd's log)")
    })?;
    Ok((lines, summary))
}

/// What a search said that the answer's lines do not: a time limit
/// reached, nodes that did not answer.
pub(super) fn warnings(summary: &SearchSummary) -> Vec<String> {
    let mut out: Vec<String> = summary.reason.iter().cloned().collect();
    out.extend(partial_warning(
        summary.partial.iter().map(|u| u.node_id.as_str()),
    ));
    out
}

pub(super) fn partial_warning<'a>(nodes: impl Iterator<Item = &'a str>) -> Option<String> {
    let nodes: Vec<&str> = nodes.collect();
    (!nodes.is_empty()).then(|| {
        format!(
            "partial: nodes {} did not answer; lines they hold unpublished are missing",
            nodes.join(", ")
        )
    })
}

/// Matching lines per bucket: `/api/v1/histogram`.
pub(super) async fn histogram(
    app: &Arc<App>,
    pairs: &Pairs,
    more: &[(&str, String)],
) -> Result<HistogramResponse, LokiError> {
    let raw = encode(pairs, more);
    let axum::Json(h) = histogram::histogram(State(app.clone()), RawQuery(Some(raw))).await?;
    Ok(h)
}

/// The oldest `limit` matching lines of `[start, end)`, oldest first.
pub(super) async fn oldest(
    app: &Arc<App>,
    pairs: &Pairs,
    start: i64,
    end: i64,
    limit: usize,
) -> Result<(Vec<LineView>, Vec<String>), LokiError> {
    let (lines, summary) = search_page(
        app,
        pairs,
        &[
            ("since_ns", start.to_string()),
            ("until_ns", end.to_string()),
            ("limit", limit.to_string()),
            ("highlight", "false".into()),
        ],
    )
    .await?;
    Ok((lines, warnings(&summary)))
}

/// Buckets a count is cut into while the newest lines are looked for.
const PROBE_BUCKETS: usize = 1000;
/// How far back the newest lines are first looked for; each miss looks
/// 16 times further.
const FIRST_PROBE_NS: i64 = 5 * 60 * 1_000_000_000;
/// A bucket holding the cut with more lines than this is cut again, so
/// the lines read past the ones kept stay few.
const DENSE: u64 = 2000;

/// The newest `limit` matching lines of `[start, end)`, newest first.
///
/// A search runs forward in time, so the place where the newest `limit`
/// lines begin is found first, by counting: histograms of ever longer
/// stretches before `end` until one holds `limit` lines, the bucket
/// where they begin cut again while it holds many. Then every line from
/// there is read forward (page by page) and the last `limit` kept.
///
/// Each count and page runs within `search.max_query_secs`, and no new one
/// starts past it. A count or a page cut short fails the query (Loki's
/// 504): what was found would be the wrong lines, not fewer of the right
/// ones.
pub(super) async fn newest(
    app: &Arc<App>,
    pairs: &Pairs,
    start: i64,
    end: i64,
    limit: usize,
) -> Result<(Vec<LineView>, Vec<String>), LokiError> {
    if limit == 0 || start >= end {
        return Ok((Vec::new(), Vec::new()));
    }
    let count_pairs: Pairs = pairs
        .iter()
        .filter(|(k, v)| !(k == "pattern" && v.is_empty()))
        .cloned()
        .collect();
    let mut warnings = Vec::new();
    let time_limit = app.config.search.max_query_time();
    let deadline = std::time::Instant::now() + time_limit;
    let timed_out = || LokiError::timed_out(time_limit);
    let (mut lo, mut hi, mut need) = (start, end, limit as u64);
    let mut window = (hi - lo).min(FIRST_PROBE_NS);
    let cut = loop {
        if std::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        let since = lo.max(hi - window);
        let h = histogram(
            app,
            &count_pairs,
            &[
                ("since_ns", since.to_string()),
                ("until_ns", hi.to_string()),
                ("buckets", PROBE_BUCKETS.to_string()),
            ],
        )
        .await?;
        if h.truncated {
            return Err(cut_short(&h.reason, time_limit));
        }
        warnings.extend(partial_warning(
            h.partial.iter().map(|u| u.node_id.as_str()),
        ));
        let mut per_bucket = vec![0u64; h.buckets];
        for s in &h.series {
            for (b, n) in s.counts.iter().enumerate() {
                per_bucket[b] += n;
            }
        }
        if per_bucket.iter().sum::<u64>() < need {
            if since == lo {
                break lo;
            }
            window = window.saturating_mul(16).min(hi - lo);
            continue;
        }
        let mut after = 0;
        let b = (0..h.buckets)
            .rev()
            .find(|&b| {
                after += per_bucket[b];
                after >= need
            })
            .unwrap_or(0);
        let b_start = h.start_ns + b as i64 * h.step_ns;
        if per_bucket[b] <= DENSE || h.step_ns <= 1 {
            break b_start.max(lo);
        }
        need -= after - per_bucket[b];
        lo = b_start.max(lo);
        hi = (b_start + h.step_ns).min(hi);
        window = hi - lo;
    };
    // Every line from the cut to the end, page by page; the last `limit` kept.
    let mut kept: VecDeque<LineView> = VecDeque::with_capacity(limit);
    let mut cursor: Option<String> = None;
    let page = app.config.search.max_results.max(1);
    loop {
        if std::time::Instant::now() >= deadline {
            return Err(timed_out());
        }
        let mut more = vec![
            ("since_ns", cut.to_string()),
            ("until_ns", end.to_string()),
            ("limit", page.to_string()),
            ("highlight", "false".to_owned()),
        ];
        if let Some(c) = &cursor {
            more.push(("cursor", c.clone()));
        }
        let (lines, summary) = search_page(app, pairs, &more).await?;
        if summary.truncated {
            return Err(cut_short(&summary.reason, time_limit));
        }
        warnings.extend(self::warnings(&summary));
        for l in lines {
            if kept.len() == limit {
                kept.pop_front();
            }
            kept.push_back(l);
        }
        match summary.next_cursor {
            Some(next) if summary.more => cursor = Some(next),
            _ => break,
        }
    }
    warnings.dedup();
    Ok((kept.into_iter().rev().collect(), warnings))
}

/// A line's stream labels, as Loki names them.
pub(super) fn line_labels(l: &LineView) -> BTreeMap<&'static str, String> {
    stream_labels(
        &l.cluster, &l.job, l.instance, &l.process, l.stream, &l.host,
    )
}
