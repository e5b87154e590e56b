//! The HTTP API: ingest, the read API and live follow (Server-Sent Events);
//! search and the histogram are in `http_search.rs`.
//!
//! Every error is a JSON [`ErrorBody`] with a status that says whose fault it
//! is: 400 bad request, 401 no valid token, 403 a token (or an address) that
//! may not do this, 404 unknown job, 409 ambiguous job or a gap, 413 past a
//! size limit, 415 unknown encoding, 429 past a rate or count limit, 503 the
//! server cannot take it now (full disk, busy, searches at their limit).
//! Limits name their setting; 429 and 503 carry `Retry-After`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cblogs_core::api::{self, JobsResponse, Lagged, TailResponse, Truncated};
use cblogs_core::wire::{ErrorBody, IngestResponse, INGEST_PATH};
use cblogs_core::{InstanceSet, Selector, Stream};
use tokio::sync::{broadcast, mpsc, watch};

use crate::auth::{presented_token, Auth, Role, TOKEN_COOKIE};
use crate::committer::CommitterCommand;
use crate::config::Config;
use crate::ingest::{IngestError, Ingestor};
use crate::limits::{Caller, Limits};
use crate::listener::PeerAddr;
use crate::query::{self, line_view, LineFilter, QueryError};
use crate::store::Store;
use crate::wal::WalError;

/// How long an ingest request waits for the committer to make room before
/// it is answered 503: well within a shipper's request timeout (10 s), so
/// the shipper hears the 503 and backs off instead of timing out and
/// sending the same body again.
const INGEST_PATIENCE: Duration = Duration::from_secs(5);

/// What every handler shares.
pub struct App {
    pub config: Config,
    pub store: Arc<Store>,
    pub ingestor: Ingestor,
    pub wal: Arc<crate::wal::Wal>,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Flips to true when the service stops: ends follow streams.
    pub stopping: watch::Receiver<bool>,
    /// Asks the committer to seal and commit everything now.
    pub committer: std::sync::mpsc::Sender<CommitterCommand>,
    /// What searches keep between them: decoded blocks, segments' terms.
    pub caches: Arc<crate::search::ReadCaches>,
    pub alerts: Arc<crate::alert::Alerts>,
    pub auth: Arc<Auth>,
    pub limits: Arc<Limits>,
}

/// Every endpoint, each behind the role it needs (`auth.rs`); the page's
/// files and the health check are open.
pub fn router(app: Arc<App>) -> Router {
    let role = |r: Role| middleware::from_fn_with_state((app.clone(), r), require_role);
    let ingest = Router::new()
        .route(INGEST_PATH, post(ingest))
        .route_layer(role(Role::Ingest));
    let read = Router::new()
        .route(api::JOBS_PATH, get(jobs))
        .route(api::TAIL_PATH, get(tail))
        .route(api::FOLLOW_PATH, get(follow))
        .route(api::SEARCH_PATH, get(crate::http_search::search))
        .route(api::HISTOGRAM_PATH, get(crate::http_search::histogram))
        .route(api::CONTEXT_PATH, get(crate::http_search::context))
        .route(api::ALERTS_PATH, get(alerts))
        .route(api::STORAGE_PATH, get(storage))
        .route(api::METRICS_PATH, get(crate::metrics::serve))
        .route(api::SESSION_PATH, post(session_start).delete(session_end))
        .route_layer(role(Role::Read));
    let admin = Router::new()
        .route(api::ALERTS_RELOAD_PATH, post(reload_alerts))
        .route(api::SILENCES_PATH, post(silence))
        .route(api::FLUSH_PATH, post(flush))
        .route_layer(role(Role::Admin));
    Router::new()
        .merge(ingest)
        .merge(read)
        .merge(admin)
        .route("/", get(crate::web::index))
        .route("/static/{*path}", get(crate::web::file))
        .route(api::HEALTH_PATH, get(|| async { "ok\n" }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(app)
}

/// The auth layer: refuses a request whose token (or, for a role without
/// tokens, whose address) may not act in `role`; tells the handlers who the
/// caller is, for the limits kept per token or per client.
async fn require_role(
    State((app, role)): State<(Arc<App>, Role)>,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|c| c.0 .0);
    let token = presented_token(req.headers());
    if let Err(denied) = app.auth.check(role, token, peer) {
        // The reason and the role, never the token.
        tracing::debug!(role = role.as_str(), peer = ?peer, reason = %denied.message(), "request refused");
        app.metrics.refused(role.as_str(), "auth");
        let status = if denied.is_unauthenticated() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::FORBIDDEN
        };
        let mut resp = ApiError::new(status, denied.message()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cblogs\""),
            );
        }
        return resp;
    }
    let caller = match (token, peer) {
        (Some(t), _) => Caller::Token(crate::auth::token_digest(t)),
        (None, Some(p)) => Caller::Addr(p.ip()),
        (None, None) => Caller::Unknown,
    };
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(PeerAddr(
        peer.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
    ));
    next.run(req).await
}

/// The web page trades a read token for a cookie (HttpOnly, SameSite=Strict),
/// so that its live tail (an EventSource, which cannot send headers) is
/// let in too. The auth layer has already checked the token.
async fn session_start(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(token) =
        presented_token(&headers).filter(|_| headers.contains_key(header::AUTHORIZATION))
    else {
        return ApiError::bad("send the token as 'Authorization: Bearer <token>'").into_response();
    };
    let secure = if app.config.tls.enabled() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    match HeaderValue::from_str(&cookie) {
        Ok(v) => (
            [(header::SET_COOKIE, v)],
            Json(serde_json::json!({"ok": true})),
        )
            .into_response(),
        Err(_) => ApiError::bad("the token holds characters a cookie cannot").into_response(),
    }
}

async fn session_end() -> Response {
    let cookie = format!("{TOKEN_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    (
        [(
            header::SET_COOKIE,
            HeaderValue::from_str(&cookie).unwrap_or(HeaderValue::from_static("")),
        )],
        Json(serde_json::json!({"ok": true})),
    )
        .into_response()
}

/// An error answer: status plus a JSON body naming the problem.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    /// For `cblogs_requests_refused_total`'s `reason` label.
    reason: &'static str,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    retry_after: Option<Duration>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        let reason = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::CONFLICT => "gap",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "encoding",
            _ => "bad_request",
        };
        ApiError {
            status,
            body: ErrorBody {
                error: msg.into(),
                candidates: Vec::new(),
                held_end: None,
            },
            reason,
            retry_after: None,
        }
    }
    pub(crate) fn because(mut self, reason: &'static str) -> Self {
        self.reason = reason;
        self
    }
    pub(crate) fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }
    pub fn reason(&self) -> &'static str {
        self.reason
    }
    /// The message the client is told.
    pub fn message(&self) -> &str {
        &self.body.error
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Some(wait) = self.retry_after {
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<crate::decode::DecodeError> for ApiError {
    fn from(e: crate::decode::DecodeError) -> Self {
        use crate::decode::DecodeError as D;
        let status = match &e {
            D::TooLarge { .. } | D::TooManyLines { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            D::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            D::Zstd(_) | D::Json(_) | D::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        let reason = match &e {
            D::TooLarge { .. } => "too_large",
            D::TooManyLines { .. } => "too_many_lines",
            D::Encoding(_) => "encoding",
            _ => "bad_request",
        };
        ApiError::new(status, e.to_string()).because(reason)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let status = match &e {
            QueryError::BadParam(_) => StatusCode::BAD_REQUEST,
            QueryError::UnknownJob(_) => StatusCode::NOT_FOUND,
            QueryError::Ambiguous { .. } => StatusCode::CONFLICT,
            QueryError::Storage(err) => {
                tracing::error!(error = %err, "storage error while reading");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let candidates = match &e {
            QueryError::Ambiguous { candidates, .. } => candidates.clone(),
            _ => Vec::new(),
        };
        ApiError {
            status,
            body: ErrorBody {
                error: e.to_string(),
                candidates,
                held_end: None,
            },
            reason: "bad_request",
            retry_after: None,
        }
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::Gap { held_end, .. } => ApiError {
                status: StatusCode::CONFLICT,
                body: ErrorBody {
                    error: e.to_string(),
                    candidates: Vec::new(),
                    held_end: Some(held_end),
                },
                reason: "gap",
                retry_after: None,
            },
            IngestError::Wal(w) => w.into(),
        }
    }
}

impl From<WalError> for ApiError {
    fn from(e: WalError) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot store the batch: {e}"),
        )
        .because("unavailable")
        .retry_after(Duration::from_secs(2))
    }
}

async fn ingest(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let answer = ingest_checked(&app, &caller, headers, body).await;
    match &answer {
        Ok(Json(r)) => {
            app.metrics.lines_in.inc_by(r.accepted);
            app.metrics.bytes_in.inc_by(r.accepted_bytes);
            app.metrics.duplicate_lines.inc_by(r.duplicates);
        }
        Err(e) => app.metrics.refused("ingest", e.reason()),
    }
    answer
}

async fn ingest_checked(
    app: &App,
    caller: &Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    // Refused before the body is read: a full disk, a caller over its rate.
    if let Some(why) = app.wal.failure() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot store: {why}"),
        )
        .because("unavailable")
        .retry_after(Duration::from_secs(2)));
    }
    if let Err(wait) = app.limits.ingest_allowed(caller) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            app.limits.ingest_rate_message(wait),
        )
        .because("rate")
        .retry_after(wait));
    }
    // Wait for room before reading the body: a waiting request holds
    // nothing but its connection.
    let budget = app.config.storage.max_unindexed_bytes;
    let deadline = tokio::time::Instant::now() + INGEST_PATIENCE;
    let busy = |held: u64| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "busy: {held} bytes of lines are waiting for the index, more than storage.max_unindexed_bytes ({budget}); retry later"
            ),
        )
        .because("busy")
        .retry_after(Duration::from_secs(1))
    };
    app.store
        .wait_for_room(budget, deadline)
        .await
        .map_err(busy)?;
    let limit = app.config.ingest.max_body_bytes;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than ingest.max_body_bytes ({limit} bytes)"),
            )
            .because("too_large")
        } else {
            ApiError::bad(format!("cannot read the request body: {e}"))
        }
    })?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let limits = crate::decode::DecodeLimits {
        max_body_bytes: limit,
        max_lines: app.config.ingest.max_lines_per_request,
    };
    let req = crate::decode::decode_ingest(&raw, encoding, limits).map_err(ApiError::from)?;
    drop(raw);
    // Requests woken together must not all fill the same room: each
    // reserves its lines' size (as sent: an upper bound of what is stored) until
    // its lines are applied and counted as waiting for the index.
    let text_bytes = req.text_bytes();
    let _admission = app
        .store
        .admit(text_bytes, budget, deadline)
        .await
        .map_err(busy)?;
    let resp = app.ingestor.ingest(req).await?;
    app.limits.charge_ingest(caller, text_bytes);
    Ok(Json(resp))
}

pub(crate) fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

async fn jobs(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<JobsResponse>, ApiError> {
    let mut pattern = None;
    for (k, v) in query_pairs(raw) {
        match k.as_str() {
            "pattern" if !v.is_empty() => {
                pattern = Some(Selector::parse(&v).map_err(|e| ApiError::bad(e.to_string()))?)
            }
            "pattern" => {}
            other => {
                return Err(ApiError::bad(format!(
                    "unknown parameter '{other}' (expected pattern)"
                )))
            }
        }
    }
    Ok(Json(JobsResponse {
        jobs: query::jobs(&app.store, pattern.as_ref()),
    }))
}

/// What is stored, the disk budget, and what retention deleted.
async fn storage(State(app): State<Arc<App>>) -> Json<api::StorageResponse> {
    let store = app.store.clone();
    let usage = tokio::task::spawn_blocking(move || store.disk_usage())
        .await
        .unwrap_or_else(|_| crate::store::DiskUsage {
            bytes: 0,
            partitions: Vec::new(),
        });
    let fmt = cblogs_core::time::format_rfc3339;
    let failure = app.wal.failure();
    Json(api::StorageResponse {
        disk_bytes: usage.bytes,
        max_disk_bytes: app.config.storage.max_disk_bytes,
        retention_days: app.config.storage.retention_days,
        wal_bytes: app.wal.bytes_on_disk(),
        unindexed_bytes: app.store.unindexed_bytes(),
        ingest_available: failure.is_none(),
        ingest_error: failure,
        partitions: usage
            .partitions
            .iter()
            .map(|p| api::PartitionSummary {
                start: fmt(p.start_ns),
                start_ns: p.start_ns,
                bytes: p.bytes,
                blocks: p.blocks,
                newest: p.newest_ns.map(fmt).unwrap_or_default(),
            })
            .collect(),
        deleted: app.store.deleted_partitions(),
    })
}

async fn alerts(State(app): State<Arc<App>>) -> Json<api::AlertsResponse> {
    Json(app.alerts.response())
}

async fn silence(
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

/// Reads the alert rules file again; a bad one is refused (400) naming the
/// rule and field, and the rules in force stay.
async fn reload_alerts(State(app): State<Arc<App>>) -> Result<Json<api::ReloadResponse>, ApiError> {
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
async fn flush(State(app): State<Arc<App>>) -> Result<Json<api::FlushResponse>, ApiError> {
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
    Ok(Json(api::FlushResponse {
        committed_blocks,
        took_ms: started.elapsed().as_millis() as u64,
        unindexed_bytes: app.store.unindexed_bytes(),
    }))
}

/// The parameters `tail` and `follow` share.
struct TailParams {
    filter: LineFilter,
    n: usize,
}

/// `resume`: a follow picking up after an outage asks for every line since
/// a time; past `read.max_tail_lines` it gets the newest of them and a
/// `truncated` event instead of a refusal.
fn tail_params(
    store: &Store,
    raw: Option<String>,
    max_n: usize,
    resume: bool,
) -> Result<TailParams, ApiError> {
    let mut selectors = Vec::new();
    let mut n = api::DEFAULT_TAIL_LINES;
    let mut instances = InstanceSet::all();
    let (mut stream, mut process, mut since_ns) = (None, None, None);
    for (k, v) in query_pairs(raw) {
        let bad = |what: &str| ApiError::bad(format!("bad {k} '{v}': {what}"));
        match k.as_str() {
            "job" => selectors.push(Selector::parse(&v).map_err(|e| ApiError::bad(e.to_string()))?),
            "n" => {
                n = v.parse().map_err(|_| bad("expected a number of lines"))?;
            }
            "instance" => instances = v.parse().map_err(|e: cblogs_core::SelectorError| ApiError::bad(e.to_string()))?,
            "stream" if v == "all" || v.is_empty() => stream = None,
            "stream" => stream = Some(v.parse::<Stream>().map_err(ApiError::bad)?),
            "process" if !v.is_empty() => process = Some(v),
            "process" => {}
            "since_ns" => since_ns = Some(v.parse::<i64>().map_err(|_| bad("expected nanoseconds since the epoch"))?),
            other => {
                return Err(ApiError::bad(format!(
                    "unknown parameter '{other}' (expected job, n, instance, stream, process, since_ns)"
                )))
            }
        }
    }
    if selectors.is_empty() {
        return Err(ApiError::bad(
            "missing parameter 'job' (a job selector such as www-data/prod/hello)",
        ));
    }
    if n > max_n {
        if !(resume && since_ns.is_some()) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("n={n} is more lines than read.max_tail_lines ({max_n}) allows"),
            )
            .because("tail_limit"));
        }
        n = max_n;
    }
    let jobs = query::resolve(store, &selectors)?;
    let globs = selectors.into_iter().filter(|s| !s.is_exact()).collect();
    Ok(TailParams {
        filter: LineFilter {
            jobs,
            globs,
            instances,
            stream,
            process,
            host: None,
            since_ns,
            until_ns: None,
        },
        n,
    })
}

async fn tail(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TailResponse>, ApiError> {
    let started = std::time::Instant::now();
    let TailParams { filter, n } =
        tail_params(&app.store, raw, app.config.read.max_tail_lines, false)?;
    let store = app.store.clone();
    let jobs = filter.job_keys();
    let lines = tokio::task::spawn_blocking(move || {
        let snap = store.snapshot(&|s| filter.wants(s), false);
        query::last_lines(&snap, n, filter.since_ns).map(|t| t.lines)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("tail failed: {e}"),
        )
    })??;
    let resp = TailResponse {
        jobs,
        lines: lines.iter().map(|l| l.view()).collect(),
    };
    app.metrics
        .observe_query("tail", started.elapsed().as_secs_f64());
    Ok(Json(resp))
}

async fn follow(
    State(app): State<Arc<App>>,
    axum::Extension(peer): axum::Extension<PeerAddr>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let TailParams { filter, n } =
        tail_params(&app.store, raw, app.config.read.max_tail_lines, true)?;
    let slot = app.limits.follow_slot(Some(peer.0.ip())).map_err(|msg| {
        app.metrics.refused("read", "follow_limit");
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg).because("follow_limit")
    })?;
    let store = app.store.clone();
    let f = filter.clone();
    // The snapshot and the subscription are taken together, so the backlog
    // and the live lines meet with no gap and no overlap.
    let (backlog, live) = tokio::task::spawn_blocking(move || {
        let mut snap = store.snapshot(&|s| f.wants(s), true);
        let live = snap.live.take();
        query::last_lines(&snap, n, f.since_ns).map(|tail| (tail, live))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("follow failed: {e}"),
        )
    })??;
    let Some(mut live) = live else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "follow: no live subscription",
        ));
    };
    // The stream is written by hand rather than through axum's `Sse`, so
    // that a record's lines, encoded once (`WalRecord::sse`), go to every
    // tail as one shared chunk.
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let mut stopping = app.stopping.clone();
    let keepalive = Duration::from_secs(app.config.read.keepalive_secs);
    tokio::spawn(async move {
        // Counted as open until this task ends (the client went away or
        // the service stops).
        let _slot = slot;
        let mut head = Vec::new();
        sse_event(&mut head, "jobs", &filter.job_keys());
        if backlog.truncated && filter.since_ns.is_some() {
            sse_event(&mut head, "truncated", &Truncated { limit: n });
        }
        if tx.send(Bytes::from(head)).await.is_err() {
            return;
        }
        for chunk in backlog.lines.chunks(512) {
            let mut buf = Vec::new();
            for l in chunk {
                sse_event(&mut buf, "line", &l.view());
            }
            if tx.send(Bytes::from(buf)).await.is_err() {
                return;
            }
        }
        drop(backlog);
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut sent_since_tick = false;
        loop {
            let chunk = tokio::select! {
                r = live.recv() => match r {
                    Ok(rec) => {
                        if !filter.wants(&rec.source) {
                            continue;
                        }
                        rec.sse.get_or_init(|| record_events(&rec)).clone()
                    }
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        // Skip to the newest, not to the oldest still
                        // buffered: a tail that fell behind once would
                        // otherwise stay at the back and keep lagging.
                        let missed = skipped + live.len() as u64;
                        live = live.resubscribe();
                        tracing::warn!(missed, "a follow stream fell behind; skipped to the newest lines");
                        let mut buf = Vec::new();
                        sse_event(&mut buf, "lagged", &Lagged { missed });
                        Bytes::from(buf)
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticks.tick() => {
                    if std::mem::take(&mut sent_since_tick) {
                        continue;
                    }
                    Bytes::from_static(b":\n\n")
                }
                _ = stopping.changed() => return,
                _ = tx.closed() => return,
            };
            sent_since_tick = true;
            if tx.send(chunk).await.is_err() {
                return;
            }
        }
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    ))
}

/// Appends one Server-Sent Event: `event: NAME`, `data: JSON`, a blank line.
/// (Compact JSON has no raw newline, so one `data:` line holds it.)
fn sse_event(buf: &mut Vec<u8>, name: &str, data: &impl serde::Serialize) {
    let start = buf.len();
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut *buf, data).is_err() {
        buf.truncate(start);
        return;
    }
    buf.extend_from_slice(b"\n\n");
}

/// Every line of a record as `line` events.
fn record_events(rec: &crate::wal::WalRecord) -> Bytes {
    let mut buf = Vec::with_capacity(rec.lines.text_len() * 2 + 512 * rec.lines.len());
    for l in rec.lines.lines() {
        sse_event(
            &mut buf,
            "line",
            &line_view(&rec.source, l.offset, l.time_ns, l.flags, l.bytes),
        );
    }
    Bytes::from(buf)
}
