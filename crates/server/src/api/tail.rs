//! `GET /api/v1/tail` (the last N lines, JSON) and `GET /api/v1/follow`
//! (the same, then every new line as it is applied, as Server-Sent Events).
//!
//! A follow takes its snapshot and its live subscription together, so the
//! backlog and the live lines meet with no gap and no duplicate. A tail
//! that falls more than `read.follow_buffer_batches` behind skips to the
//! newest lines and is sent a `lagged` event.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cblogs_core::api::{self, Lagged, TailResponse, Truncated};
use tokio::sync::{broadcast, mpsc};

use super::error::ApiError;
use super::listener::PeerAddr;
use super::params::{bad_param, query_pairs, Selection, TAIL_SELECTION};
use super::sse;
use crate::app::App;
use crate::metrics::{emit, QueryAnswered, RequestRefused};
use crate::read::{self, LineFilter};
use crate::store::Store;

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
                    "unknown parameter '{other}' (expected job, n, instance, stream, process, since_ns)"
                )))
            }
        }
    }
    if selection.selectors.is_empty() {
        return Err(ApiError::bad(
            "missing parameter 'job' (a job selector such as www-data/prod/hello)",
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
    Ok(TailParams {
        filter: selection.resolve(store)?,
        n,
    })
}

pub(super) async fn tail(
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
        read::last_lines(&snap, n, filter.since_ns).map(|t| t.lines)
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
    emit(QueryAnswered {
        kind: "tail",
        seconds: started.elapsed().as_secs_f64(),
    });
    Ok(Json(resp))
}

pub(super) async fn follow(
    State(app): State<Arc<App>>,
    axum::Extension(peer): axum::Extension<PeerAddr>,
    RawQuery(raw): RawQuery,
) -> Result<impl IntoResponse, ApiError> {
    let TailParams { filter, n } =
        tail_params(&app.store, raw, app.config.read.max_tail_lines, true)?;
    let slot = app.limits.follow_slot(Some(peer.0.ip())).map_err(|msg| {
        emit(RequestRefused {
            endpoint: "read",
            reason: "follow_limit",
        });
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, msg).because("follow_limit")
    })?;
    let store = app.store.clone();
    let f = filter.clone();
    // The snapshot and the subscription are taken together, so the backlog
    // and the live lines meet with no gap and no overlap.
    let (backlog, live) = tokio::task::spawn_blocking(move || {
        let mut snap = store.snapshot(&|s| f.wants(s), true);
        let live = snap.live.take();
        read::last_lines(&snap, n, f.since_ns).map(|tail| (tail, live))
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
    // that a batch's lines, encoded once (`LiveBatch::encoded`), go to every
    // tail as one shared chunk.
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let mut stopping = app.stopping.clone();
    let keepalive = Duration::from_secs(app.config.read.keepalive_secs);
    tokio::spawn(async move {
        // Counted as open until this task ends (the client went away or
        // the service stops).
        let _slot = slot;
        let mut head = Vec::new();
        sse::event(&mut head, "jobs", &filter.job_keys());
        if backlog.truncated && filter.since_ns.is_some() {
            sse::event(&mut head, "truncated", &Truncated { limit: n });
        }
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
