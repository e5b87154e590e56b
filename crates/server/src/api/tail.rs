//! `GET /api/v1/tail` (the last N lines, JSON) and `GET /api/v1/follow`
//! (the same, then every new line as it is applied, as Server-Sent Events).
//!
//! In a cluster, `tail` also asks every other node that may hold lines
//! for its own tail (`GET /api/v1/cluster/tail`, the same parameters):
//! lines not yet published are only on the node that took them. The
//! answers are merged, copies dropped by byte range, and the newest N
//! kept; a node that does not answer is named in `partial`.
//!
//! A follow takes its snapshot and its live subscription together, so the
//! backlog and the live lines meet with no gap and no duplicate. A tail
//! that falls more than `read.follow_buffer_batches` behind skips to the
//! newest lines and is sent a `lagged` event.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use cblogs_core::api::{self, Lagged, TailResponse};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::listener::PeerAddr;
use super::params::{bad_param, query_pairs, Selection, TAIL_SELECTION};
use super::sse;
use crate::access::FollowSlot;
use crate::app::App;
use crate::metrics::{emit, QueryAnswered, RequestRefused};
use crate::read::{self, LastLines, LineFilter};
use crate::store::{LiveBatch, Store};

/// The parameters `tail` and `follow` share.
struct TailParams {
    filter: LineFilter,
    n: usize,
}

/// The parameters as given, the selection not yet resolved against the
/// store's jobs.
pub(super) struct TailRequest {
    pub(super) selection: Selection,
    pub(super) n: usize,
}

impl TailRequest {
    fn resolve(self, store: &Store) -> Result<TailParams, ApiError> {
        Ok(TailParams {
            filter: self.selection.resolve(store)?,
            n: self.n,
        })
    }
}

fn tail_params(
    store: &Store,
    raw: Option<String>,
    max_n: usize,
    resume: bool,
) -> Result<TailParams, ApiError> {
    tail_request(raw, max_n, resume)?.resolve(store)
}

/// `resume`: a follow picking up after an outage asks for every line since
/// a time; past `read.max_tail_lines` it gets the newest of them and a
/// `truncated` event instead of a refusal.
pub(super) fn tail_request(
    raw: Option<String>,
    max_n: usize,
    resume: bool,
) -> Result<TailRequest, ApiError> {
    let mut selection = Selection::default();
    let mut n = api::DEFAULT_TAIL_LINES;
    for (k, v) in query_pairs(raw) {
        if selection.take(&k, &v, TAIL_SELECTION)? {
            continue;
        }
        match k.as_str() {
            "n" => {
                n = v
                    .parse()
                    .map_err(|_| bad_param(&k, &v, "expected a number of lines"))?;
            }
            other => {
                return Err(ApiError::bad(format!(
                    "unknown parameter '{other}' (expected job, n, instance, stream, process, labels, since_ns)"
                )))
            }
        }
    }
    if selection.selectors.is_empty() && selection.filter.labels.is_none() {
        return Err(ApiError::bad(
            "missing parameter 'job' (a job selector such as www-data/prod/hello) or 'labels' (a stream selector such as {job=\"hello\"})",
        ));
    }
    if n > max_n {
        if !(resume && selection.filter.since_ns.is_some()) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("n={n} is more lines than read.max_tail_lines ({max_n}) allows"),
            )
            .because("tail_limit"));
        }
        n = max_n;
    }
    Ok(TailRequest { selection, n })
}

pub(super) async fn tail(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TailResponse>, ApiError> {
    let started = std::time::Instant::now();
    let resp = if app.cluster.has_others() {
        cluster_tail(&app, raw).await?
    } else {
        let params = tail_params(&app.store, raw, app.config.read.max_tail_lines, false)?;
        let mut own = local_tail(&app, params).await?;
        // One node's own view can hold a copy too (after a failover, a
        // range published by two owners): never shown twice.
        own.lines = read::drop_copies(own.lines);
        own
    };
    emit(QueryAnswered {
        kind: "tail",
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(Json(resp))
}

/// `GET /api/v1/cluster/tail`: this node's own tail, for a node that fans
/// a tail out. A job it does not know is one it holds nothing of, not an
/// error.
pub(super) async fn node_tail(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Json<TailResponse>, ApiError> {
    let request = tail_request(raw, app.config.read.max_tail_lines, false)?;
    match request.resolve(&app.store) {
        Ok(params) => Ok(Json(local_tail(&app, params).await?)),
        Err(e) if e.status() == StatusCode::NOT_FOUND => Ok(Json(TailResponse {
            jobs: Vec::new(),
            lines: Vec::new(),
            partial: Vec::new(),
        })),
        Err(e) => Err(e),
    }
}

/// This node's tail and every other node's, merged: copies dropped by
/// byte range, the newest `n` kept, the nodes that did not answer named.
async fn cluster_tail(app: &Arc<App>, raw: Option<String>) -> Result<TailResponse, ApiError> {
    let request = tail_request(raw.clone(), app.config.read.max_tail_lines, false)?;
    let n = request.n;
    let path = format!("{}?{}", api::CLUSTER_TAIL_PATH, raw.unwrap_or_default());
    let local = async {
        match request.resolve(&app.store) {
            Ok(params) => local_tail(app, params).await.map(Ok),
            // Perhaps only another node holds it (not yet published).
            Err(e) if e.status() == StatusCode::NOT_FOUND => Ok(Err(e)),
            Err(e) => Err(e),
        }
    };
    let (local, (answers, partial)) =
        tokio::join!(local, app.cluster.ask_others::<TailResponse>(&path));
    let (mut jobs, mut lines, unknown) = match local? {
        Ok(own) => (own.jobs, own.lines, None),
        Err(unknown) => (Vec::new(), Vec::new(), Some(unknown)),
    };
    for answer in answers {
        jobs.extend(answer.jobs);
        lines.extend(answer.lines);
    }
    jobs.sort();
    jobs.dedup();
    if let Some(unknown) = unknown.filter(|_| jobs.is_empty() && partial.is_empty()) {
        return Err(unknown);
    }
    let mut lines = read::drop_copies(lines);
    let from = lines.len().saturating_sub(n);
    lines.drain(..from);
    Ok(TailResponse {
        jobs,
        lines,
        partial,
    })
}

/// The newest `n` lines this node holds (published or not).
async fn local_tail(
    app: &Arc<App>,
    TailParams { filter, n }: TailParams,
) -> Result<TailResponse, ApiError> {
    let store = app.store.clone();
    let jobs = filter.job_keys();
    let lines = tokio::task::spawn_blocking(move || {
        let snap = store.snapshot(&|s| filter.wants(s), false);
        read::last_lines(&snap, n, filter.since_ns).map(|t| t.lines)
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("tail failed: {e}"),
        )
    })??;
    Ok(TailResponse {
        jobs,
        lines: lines.iter().map(|l| l.view()).collect(),
        partial: Vec::new(),
    })
}

pub(super) async fn follow(
    State(app): State<Arc<App>>,
    axum::Extension(peer): axum::Extension<PeerAddr>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let slot = follow_slot(&app, peer)?;
    if app.cluster.has_others() {
        return super::fanout_follow::follow(app, raw, slot).await;
    }
    let TailParams { filter, n } =
        tail_params(&app.store, raw, app.config.read.max_tail_lines, true)?;
    let (backlog, live) = start_follow(&app, filter.clone(), n).await?;
    Ok(stream_follow(&app, filter, n, backlog, live, slot, false))
}

/// `GET /api/v1/cluster/follow`: this node's own follow, for a node that
/// follows every node for its client. A `live` event ends the backlog. A
/// job it does not know yet is followed as it comes.
pub(super) async fn node_follow(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let request = tail_request(raw, app.config.read.max_tail_lines, true)?;
    let (filter, _) = request.selection.resolve_or_later(&app.store)?;
    let (backlog, live) = start_follow(&app, filter.clone(), request.n).await?;
    // The asking node holds its client's slot.
    let slot = app.limits.follow_slot(None).map_err(ApiError::bad)?;
    Ok(stream_follow(
        &app, filter, request.n, backlog, live, slot, true,
    ))
}

/// One of `read.max_follows_per_client` for the client at `peer`, or 429.
fn follow_slot(app: &App, peer: PeerAddr) -> Result<FollowSlot, ApiError> {
    app.limits.follow_slot(Some(peer.0.ip())).map_err(|msg| {
        emit(RequestRefused {
            endpoint: "read",
            reason: "follow_limit",
        });
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg).because("follow_limit")
    })
}

/// The newest `n` lines here (since the filter's `since_ns`) and every
/// batch applied after them. The snapshot and the subscription are taken
/// together, so the backlog and the live lines meet with no gap and no
/// overlap.
pub(super) async fn start_follow(
    app: &App,
    filter: LineFilter,
    n: usize,
) -> Result<(LastLines, broadcast::Receiver<Arc<LiveBatch>>), ApiError> {
    let store = app.store.clone();
    let (backlog, live) = tokio::task::spawn_blocking(move || {
        let mut snap = store.snapshot(&|s| filter.wants(s), true);
        let live = snap.live.take();
        read::last_lines(&snap, n, filter.since_ns).map(|tail| (tail, live))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("follow failed: {e}"),
        )
    })??;
    let live = live.ok_or_else(|| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "follow: no live subscription",
        )
    })?;
    Ok((backlog, live))
}

/// The follow's Server-Sent Events: `jobs`, `truncated` if so, the
/// backlog, `live` (with `live_marker`), then every batch `filter` wants
/// as it is applied, until the client leaves or the service stops.
fn stream_follow(
    app: &App,
    filter: LineFilter,
    n: usize,
    backlog: LastLines,
    mut live: broadcast::Receiver<Arc<LiveBatch>>,
    slot: FollowSlot,
    live_marker: bool,
) -> Response {
    // The stream is written by hand rather than through axum's `Sse`, so
    // that a batch's lines, encoded once (`LiveBatch::encoded`), go to every
    // tail as one shared chunk.
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let mut stopping = app.stopping.clone();
    let keepalive = Duration::from_secs(app.config.read.keepalive_secs);
    tokio::spawn(async move {
        // Counted as open until this task ends (the client went away or
        // the service stops).
        let _slot = slot;
        let truncated = backlog.truncated && filter.since_ns.is_some();
        let head = sse::follow_head(&filter.job_keys(), truncated.then_some(n));
        if tx.send(Bytes::from(head)).await.is_err() {
            return;
        }
        for chunk in backlog.lines.chunks(512) {
            let mut buf = Vec::new();
            for l in chunk {
                sse::event(&mut buf, "line", &l.view());
            }
            if tx.send(Bytes::from(buf)).await.is_err() {
                return;
            }
        }
        drop(backlog);
        if live_marker {
            let mut buf = Vec::new();
            sse::event(&mut buf, "live", &());
            if tx.send(Bytes::from(buf)).await.is_err() {
                return;
            }
        }
        let mut ticks =
            tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
        let mut sent_since_tick = false;
        loop {
            let chunk = tokio::select! {
                r = live.recv() => match r {
                    Ok(batch) => {
                        if !filter.wants(&batch.source) {
                            continue;
                        }
                        batch.encoded(sse::line_events)
                    }
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        // Skip to the newest, not to the oldest still
                        // buffered: a tail that fell behind once would
                        // otherwise stay at the back and keep lagging.
                        let missed = skipped + live.len() as u64;
                        live = live.resubscribe();
                        tracing::warn!(missed, "a follow stream fell behind; skipped to the newest lines");
                        let mut buf = Vec::new();
                        sse::event(&mut buf, "lagged", &Lagged { missed });
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
    sse::response(rx)
}
