//! `GET /api/v1/search` (NDJSON, streamed as found) and
//! `GET /api/v1/context`; the parameters the histogram shares with search.
//!
//! Everything a request says is checked before the store is touched: the
//! pattern is compiled (within `search.regex_size_limit`), the time range
//! must be non-empty and not start in the future, and selectors must name
//! known jobs. Then the search runs on a blocking thread and its events
//! stream out through a small channel, so a client that reads slowly slows
//! the search instead of filling memory.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::{BufMut, BytesMut};
use cblogs_core::api::{self, ContextResponse, SearchEvent};
use cblogs_core::pattern::{Pattern, PatternError, PatternOptions};
use cblogs_core::time::{format_rfc3339, now_ns};
use cblogs_core::LineView;
use tokio::sync::mpsc;

use super::error::ApiError;
use super::params::{bad_param, flag, query_pairs, Selection, SEARCH_SELECTION};
use crate::app::App;
use crate::metrics::{emit, QueryAnswered, RequestRefused};
use crate::read;
use crate::search::histogram::SeriesBy;
use crate::search::{self, Cursor, Mode, Prefilter, SearchRequest, SearchSink};

/// Chunks of NDJSON bigger than this are sent without waiting for a flush.
const CHUNK_BYTES: usize = 64 << 10;

/// How long past its deadline a search's events are still waited on, for
/// its summary.
pub(super) const SUMMARY_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// A search's parameters, before the store resolves the selectors.
pub(super) struct Params {
    pattern: Option<PatternOptions>,
    invert: bool,
    /// `and=`, `not=`: regexes a line must also match, or must not.
    and: Vec<String>,
    not: Vec<String>,
    selection: Selection,
    limit: Option<usize>,
    before: usize,
    after: usize,
    events: bool,
    cursor: Option<Cursor>,
    mode: Mode,
    pub(super) buckets: usize,
    pub(super) step_ns: Option<i64>,
    pub(super) by: SeriesBy,
    explain: bool,
    highlight: bool,
    progress: Option<std::time::Duration>,
}

/// Parses a search (or histogram) query string as the endpoint would,
/// without touching a store: for the fuzzer and property tests. The error
/// is the message a client would get.
pub fn check_query(raw: &str, histogram: bool) -> Result<(), String> {
    let p = parse(Some(raw.to_owned()), histogram).map_err(|e| e.message().to_owned())?;
    if let Some(options) = p.pattern {
        Pattern::new(options, 1 << 20).map_err(|e| e.to_string())?;
    }
    for regex in p.and.iter().chain(&p.not) {
        regex_pattern(regex, 1 << 20).map_err(|e| e.to_string())?;
    }
    Ok(())
}

pub(super) fn parse(raw: Option<String>, histogram: bool) -> Result<Params, ApiError> {
    let mut p = Params {
        pattern: None,
        invert: false,
        and: Vec::new(),
        not: Vec::new(),
        selection: Selection::default(),
        limit: Some(api::DEFAULT_SEARCH_LIMIT),
        before: 0,
        after: 0,
        events: false,
        cursor: None,
        mode: Mode::Lines,
        buckets: api::DEFAULT_HISTOGRAM_BUCKETS,
        step_ns: None,
        by: SeriesBy::Stream,
        explain: false,
        highlight: true,
        progress: None,
    };
    let (mut fixed, mut ignore_case, mut word) = (false, false, false);
    for (k, v) in query_pairs(raw) {
        // An empty job or instance selects every one (the page sends them so).
        if (k == "job" || k == "instance") && v.is_empty() {
            continue;
        }
        if p.selection.take(&k, &v, SEARCH_SELECTION)? {
            continue;
        }
        let bad = |what: &str| bad_param(&k, &v, what);
        let count = |v: &str| v.parse::<usize>().map_err(|_| bad("expected a number"));
        match k.as_str() {
            "pattern" => {
                p.pattern = Some(PatternOptions {
                    pattern: v.clone(),
                    ..Default::default()
                })
            }
            "fixed" => fixed = flag(&k, &v)?,
            "ignore_case" => ignore_case = flag(&k, &v)?,
            "word" => word = flag(&k, &v)?,
            "invert" => p.invert = flag(&k, &v)?,
            "and" => p.and.push(v),
            "not" => p.not.push(v),
            "limit" if !histogram => p.limit = Some(count(&v)?).filter(|l| *l > 0),
            "before" if !histogram => p.before = count(&v)?,
            "after" if !histogram => p.after = count(&v)?,
            "events" if !histogram => p.events = flag(&k, &v)?,
            "cursor" if !histogram => {
                p.cursor = Some(Cursor::parse(&v).ok_or_else(|| {
                    bad("expected a summary's next_cursor (TIME.SOURCE.OFFSET)")
                })?)
            }
            "mode" if !histogram => {
                p.mode = match v.as_str() {
                    "lines" => Mode::Lines,
                    "count" => Mode::Count,
                    "list" => Mode::List,
                    _ => return Err(bad("expected lines, count or list")),
                }
            }
            "explain" if !histogram => {
                p.explain = match v.as_str() {
                    "blocks" => true,
                    "" => false,
                    _ => return Err(bad("expected blocks")),
                }
            }
            "highlight" if !histogram => p.highlight = flag(&k, &v)?,
            "progress" if !histogram => {
                p.progress = Some(std::time::Duration::from_millis(
                    v.parse::<u64>()
                        .map_err(|_| bad("expected milliseconds between progress events"))?,
                ))
            }
            "buckets" if histogram => {
                p.buckets = count(&v)?;
                if !(1..=api::MAX_HISTOGRAM_BUCKETS).contains(&p.buckets) {
                    return Err(bad(&format!(
                        "between 1 and {}",
                        api::MAX_HISTOGRAM_BUCKETS
                    )));
                }
            }
            "step_ns" if histogram => {
                p.step_ns = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| bad("expected a bucket width in nanoseconds"))?,
                )
            }
            "by" if histogram => {
                p.by = match v.as_str() {
                    "job" => SeriesBy::Job,
                    "labels" => SeriesBy::Labels,
                    "" | "stream" => SeriesBy::Stream,
                    _ => return Err(bad("expected job, labels or stream")),
                }
            }
            other => {
                return Err(ApiError::bad(format!(
                    "unknown parameter '{other}' (expected pattern, fixed, ignore_case, word, invert, and, not, job, instance, stream, process, host, labels, since_ns, until_ns{})",
                    if histogram { ", buckets, step_ns, by" } else { ", limit, before, after, events, mode, cursor, explain, highlight, progress" }
                )))
            }
        }
    }
    if let Some(step) = p.step_ns {
        let f = &p.selection.filter;
        let (Some(since), Some(until)) = (f.since_ns, f.until_ns) else {
            return Err(ApiError::bad(
                "step_ns needs since_ns and until_ns: the buckets are cut from that range",
            ));
        };
        let steps = (until.saturating_sub(since).max(1) as u64).div_ceil(step as u64);
        if steps > api::MAX_HISTOGRAM_STEPS as u64 {
            return Err(ApiError::bad(format!(
                "step_ns {step} cuts the range into {steps} buckets: at most {} (a wider step, or a shorter range)",
                api::MAX_HISTOGRAM_STEPS
            )));
        }
    }
    if let Some(o) = &mut p.pattern {
        o.fixed = fixed;
        o.ignore_case = ignore_case;
        o.word = word;
    }
    Ok(p)
}

/// An `and=` or `not=` regex: as written, case-sensitive unless it says
/// `(?i)`.
fn regex_pattern(regex: &str, size_limit: usize) -> Result<Pattern, PatternError> {
    let options = PatternOptions {
        pattern: regex.to_owned(),
        ..Default::default()
    };
    Pattern::new(options, size_limit)
}

/// Checks what can be checked without the store, compiles the pattern and
/// resolves the selectors.
pub(super) fn request(
    app: &App,
    p: Params,
    histogram: bool,
) -> Result<(SearchRequest, Params), ApiError> {
    let (req, p, unknown) = request_here(app, p, histogram, false)?;
    match unknown {
        Some(e) => Err(e),
        None => Ok((req, p)),
    }
}

/// [`request`], for a node of a cluster: a job this node does not know
/// (with `unknown_ok`) may be one only another node holds yet. The
/// request is then made anyway, and the error given back beside it: the
/// request must select nothing here.
pub(super) fn request_here(
    app: &App,
    mut p: Params,
    histogram: bool,
    unknown_ok: bool,
) -> Result<(SearchRequest, Params, Option<ApiError>), ApiError> {
    let config = &app.config.search;
    let pattern = match &p.pattern {
        Some(o) => Some(
            Pattern::new(o.clone(), config.regex_size_limit)
                .map_err(|e| ApiError::bad(e.to_string()))?,
        ),
        None if histogram => None,
        None => {
            return Err(ApiError::bad(
                "missing parameter 'pattern' (a regex, or a fixed string with fixed=true)",
            ))
        }
    };
    let regexes = |list: &[String]| -> Result<Vec<Pattern>, ApiError> {
        list.iter()
            .map(|r| {
                regex_pattern(r, config.regex_size_limit).map_err(|e| ApiError::bad(e.to_string()))
            })
            .collect()
    };
    let (and, not) = (regexes(&p.and)?, regexes(&p.not)?);
    let now = now_ns();
    let (since, until) = (p.selection.filter.since_ns, p.selection.filter.until_ns);
    if let Some(since) = since {
        if since > now {
            return Err(ApiError::bad(format!(
                "since {} is in the future (now is {})",
                format_rfc3339(since),
                format_rfc3339(now)
            )));
        }
    }
    if let (Some(since), Some(until)) = (since, until) {
        if since >= until {
            return Err(ApiError::bad(format!(
                "empty time range: since {} is not before until {}",
                format_rfc3339(since),
                format_rfc3339(until)
            )));
        }
    }
    let most = config.max_context_lines;
    if p.before > most || p.after > most {
        return Err(ApiError::bad(format!(
            "at most {most} context lines on each side (search.max_context_lines)"
        )));
    }
    if p.events && (p.before > 0 || p.after > 0) {
        return Err(ApiError::bad(
            "events=true shows each match's whole event: it takes no before or after",
        ));
    }
    let unresolved = p.selection.filter.clone();
    let (filter, unknown) = match std::mem::take(&mut p.selection).resolve(&app.store) {
        Ok(filter) => (filter, None),
        Err(e) if unknown_ok && e.status() == StatusCode::NOT_FOUND => (unresolved, Some(e)),
        Err(e) => return Err(e),
    };
    let time_limit = config.max_query_time();
    let prefilter = match &pattern {
        Some(pattern) if !p.invert => Prefilter::new(pattern),
        _ => None,
    };
    let req = SearchRequest {
        pattern,
        prefilter,
        invert: p.invert,
        and,
        not,
        filter,
        // search.max_results caps a page; a search with more ends it there
        // with `more` and a cursor.
        limit: Some(
            p.limit
                .map_or(config.max_results, |l| l.min(config.max_results)),
        ),
        before: p.before,
        after: p.after,
        events: p.events,
        cursor: p.cursor,
        mode: p.mode,
        deadline: Instant::now() + time_limit,
        time_limit,
        workers: app.search_workers.clone(),
        explain: p.explain,
        highlight: p.highlight,
        progress: p.progress,
    };
    Ok((req, p, unknown))
}

/// Serializes events into NDJSON chunks for the response body.
pub(super) struct NdjsonSink {
    /// The chunk being filled. Each chunk sent is split off its front,
    /// so the next one fills room already there rather than growing a
    /// new buffer from nothing, copying itself at each doubling.
    buf: BytesMut,
    tx: mpsc::Sender<Bytes>,
    deadline: Instant,
}

impl NdjsonSink {
    /// Chunks for `tx`, waited on at most until `deadline` (a little past
    /// the search's own, for its summary).
    pub(super) fn new(tx: mpsc::Sender<Bytes>, deadline: Instant) -> NdjsonSink {
        NdjsonSink {
            buf: BytesMut::with_capacity(CHUNK_BYTES),
            tx,
            deadline,
        }
    }

    /// Ends the event just written; sends the chunk once it is big enough.
    fn end_event(&mut self) -> bool {
        self.buf.put_u8(b'\n');
        self.buf.len() < CHUNK_BYTES || self.flush()
    }
}

impl SearchSink for NdjsonSink {
    fn send(&mut self, event: SearchEvent) -> bool {
        if serde_json::to_writer((&mut self.buf).writer(), &event).is_err() {
            return true;
        }
        self.end_event()
    }

    fn send_serialized(&mut self, json: &[u8]) -> bool {
        self.buf.extend_from_slice(json);
        self.end_event()
    }

    /// Waits for the client to take the chunk, but not past the search's
    /// deadline: a client that stops reading and keeps the connection
    /// open would otherwise hold the search (and its snapshot) forever.
    fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return !self.tx.is_closed();
        }
        let chunk = self.buf.split().freeze();
        // Room for the next chunk: once the client has taken the ones
        // before, this reuses their memory.
        self.buf.reserve(CHUNK_BYTES);
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let sent = tokio::runtime::Handle::current()
            .block_on(tokio::time::timeout_at(deadline, self.tx.send(chunk)));
        matches!(sent, Ok(Ok(())))
    }
}

/// Runs a search (or a histogram) on a thread of its own, at
/// `search.nice`; the threads it starts to read blocks inherit that
/// priority. Not on tokio's blocking pool: a thread lowered there could
/// not be raised again for the next task, a `tail` say. The thread is in
/// the server's runtime's context, as a blocking task would be: the
/// search waits on the client's channel with the runtime's timers.
pub(super) fn spawn_search(
    app: &App,
    work: impl FnOnce() + Send + 'static,
) -> Result<(), ApiError> {
    let nice = app.config.search.nice;
    let rt = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("search".into())
        .spawn(move || {
            let _in_runtime = rt.enter();
            crate::priority::lower_this_thread(nice);
            work();
        })
        .map(drop)
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot start a search thread: {e}"),
            )
            .retry_after(std::time::Duration::from_secs(1))
        })
}

/// One of `search.max_concurrent` slots, or 503: each search uses every
/// core, so more at once would only make all of them slower.
pub(super) fn search_slot(app: &App) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    app.limits.search_slot().map_err(|msg| {
        emit(RequestRefused {
            endpoint: "read",
            reason: "search_limit",
        });
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, msg)
            .because("search_limit")
            .retry_after(std::time::Duration::from_secs(1))
    })
}

pub(super) async fn search(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    if app.cluster.has_others() {
        return super::fanout_search::search(app, raw).await;
    }
    let (req, _) = request(&app, parse(raw, false)?, false)?;
    let slot = search_slot(&app)?;
    let jobs = job_keys(&app, &req);
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let store = app.store.clone();
    spawn_search(&app, move || {
        let started = Instant::now();
        let snap = store.snapshot(&|s| req.filter.wants(s), false);
        let mut sink = NdjsonSink::new(tx, req.deadline + SUMMARY_MARGIN);
        search::run(&snap, &req, jobs, &mut sink);
        emit(QueryAnswered {
            kind: "search",
            seconds: started.elapsed().as_secs_f64(),
        });
        // Given back before the sink's drop ends the answer: a client's
        // next search, sent once this one ended, finds the slot free.
        drop(slot);
    })?;
    Ok(ndjson_body(rx))
}

/// The job keys a search's selectors resolved to (every job without one).
pub(super) fn job_keys(app: &App, req: &SearchRequest) -> Vec<String> {
    if req.filter.jobs.is_empty() {
        read::jobs(&app.store, None)
            .into_iter()
            .map(|j| j.key)
            .collect()
    } else {
        req.filter.job_keys()
    }
}

/// Streams what `rx` gets as the NDJSON body of a search's answer.
pub(super) fn ndjson_body(mut rx: mpsc::Receiver<Bytes>) -> Response {
    let body = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `GET /api/v1/context`: the lines around one line of one source. In a
/// cluster every other node is asked for its own (its view holds what it
/// has not published, and what it follows), and the lines are merged.
pub(super) async fn context(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ContextResponse>, ApiError> {
    let q = context_query(raw.clone(), &app)?;
    let local = local_context(&app, &q).await?;
    if !app.cluster.has_others() {
        return match local {
            Some(lines) => Ok(Json(ContextResponse {
                lines,
                partial: Vec::new(),
            })),
            None => Err(q.not_found()),
        };
    }
    let path = format!("{}?{}", api::CLUSTER_CONTEXT_PATH, raw.unwrap_or_default());
    let (answers, partial) = app.cluster.ask_others::<ContextResponse>(&path).await;
    let mut lines = local.unwrap_or_default();
    for a in answers {
        lines.extend(a.lines);
    }
    let mut lines = read::drop_copies(lines);
    lines.sort_by_key(|l| l.offset);
    let Some(at) = lines.iter().position(|l| l.offset == q.offset) else {
        return Err(q.not_found());
    };
    let end = (at + q.after + 1).min(lines.len());
    lines.truncate(end);
    lines.drain(..at.saturating_sub(q.before));
    Ok(Json(ContextResponse { lines, partial }))
}

/// `GET /api/v1/cluster/context`: this node's own context of a line, for
/// a node that asks every node; a line it does not hold is no lines.
pub(super) async fn node_context(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<ContextResponse>, ApiError> {
    let q = context_query(raw, &app)?;
    Ok(Json(ContextResponse {
        lines: local_context(&app, &q).await?.unwrap_or_default(),
        partial: Vec::new(),
    }))
}

/// What a context request asks.
struct ContextQuery {
    source: u64,
    offset: u64,
    before: usize,
    after: usize,
}

impl ContextQuery {
    fn not_found(&self) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no line at offset {} of source {:016x}",
                self.offset, self.source
            ),
        )
    }
}

fn context_query(raw: Option<String>, app: &App) -> Result<ContextQuery, ApiError> {
    let (mut source, mut offset) = (None, None);
    let (mut before, mut after) = (10usize, 10usize);
    for (k, v) in query_pairs(raw) {
        let bad = |what: &str| bad_param(&k, &v, what);
        match k.as_str() {
            "source" => {
                source = Some(
                    u64::from_str_radix(&v, 16)
                        .map_err(|_| bad("expected a source id (16 hex digits)"))?,
                )
            }
            "offset" => {
                offset = Some(
                    v.parse::<u64>()
                        .map_err(|_| bad("expected a byte offset"))?,
                )
            }
            "before" => before = v.parse().map_err(|_| bad("expected a number of lines"))?,
            "after" => after = v.parse().map_err(|_| bad("expected a number of lines"))?,
            other => {
                return Err(ApiError::bad(format!(
                    "unknown parameter '{other}' (expected source, offset, before, after)"
                )))
            }
        }
    }
    let (Some(source), Some(offset)) = (source, offset) else {
        return Err(ApiError::bad(
            "missing parameter: source and offset are needed (a search result's source and offset)",
        ));
    };
    let most = app.config.search.max_context_lines;
    if before > most || after > most {
        return Err(ApiError::bad(format!(
            "at most {most} context lines on each side (search.max_context_lines)"
        )));
    }
    Ok(ContextQuery {
        source,
        offset,
        before,
        after,
    })
}

/// The lines around the line asked, in this node's view; `None` if it
/// holds no line there.
async fn local_context(app: &App, q: &ContextQuery) -> Result<Option<Vec<LineView>>, ApiError> {
    let store = app.store.clone();
    let (source, offset, before, after) = (q.source, q.offset, q.before, q.after);
    tokio::task::spawn_blocking(move || {
        let snap = store.snapshot(&|s| s.id() == source, false);
        search::lines_around(&snap, offset, before, after)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("context failed: {e}"),
        )
    })?
    .map_err(|e| {
        tracing::error!(error = %e, "context: cannot read the store");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the store: {e}"),
        )
    })
}
