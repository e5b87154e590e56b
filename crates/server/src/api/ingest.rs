//! `POST /api/v1/ingest`: a shipper's batches, answered once durable.
//!
//! Refused before the body is read when the disk is full (503), when more
//! than `storage.max_unpublished_bytes` wait for the object store (503),
//! or the caller is over its rate (429); then it waits for room in memory
//! (`ingest/admission.rs`), decodes the body (`ingest/decode.rs`), and
//! hands it to the ingestor, which answers once the WAL has synced it.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use cblogs_core::wire::{IngestResponse, PublishedResponse, SourceEnds};

use super::error::ApiError;
use crate::access::Caller;
use crate::app::App;
use crate::ingest::admission;
use crate::ingest::decode::{decode_ingest, DecodeLimits};
use crate::metrics::{emit, Ingested, RequestRefused};

/// How long an ingest request waits for the committer to make room before
/// it is answered 503: well within a shipper's request timeout (10 s), so
/// the shipper hears the 503 and backs off instead of timing out and
/// sending the same body again.
const INGEST_PATIENCE: Duration = Duration::from_secs(5);

pub(super) async fn ingest(
    State(app): State<Arc<App>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let answer = ingest_checked(&app, &caller, headers, body).await;
    match &answer {
        Ok(Json(r)) => emit(Ingested {
            lines: r.accepted,
            bytes: r.accepted_bytes,
            duplicates: r.duplicates,
        }),
        Err(e) => emit(RequestRefused {
            endpoint: "ingest",
            reason: e.reason(),
        }),
    }
    answer
}

async fn ingest_checked(
    app: &App,
    caller: &Caller,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<IngestResponse>, ApiError> {
    let (raw, deadline) = take_body(app, caller, body).await?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let limits = DecodeLimits {
        max_body_bytes: app.config.ingest.max_body_bytes,
        max_lines: app.config.ingest.max_lines_per_request,
    };
    let req = decode_ingest(&raw, encoding, limits).map_err(ApiError::from)?;
    drop(raw);
    let text_bytes = req.text_bytes();
    let _admission = admit(app, text_bytes, deadline).await?;
    let mut resp = app.ingestor.ingest(req).await?;
    resp.incarnation = app.incarnation.clone();
    app.limits.charge_ingest(caller, text_bytes);
    Ok(Json(resp))
}

/// Every ingest's first steps (`/api/v1/ingest`'s and the pushes'):
/// refused before the body is read when the disk is full, the object
/// store is far behind or the caller is over its rate; then waits for
/// room in memory and reads the body, within `ingest.max_body_bytes`.
/// Gives the deadline to admit its lines by.
pub(super) async fn take_body(
    app: &App,
    caller: &Caller,
    body: Body,
) -> Result<(axum::body::Bytes, tokio::time::Instant), ApiError> {
    // Refused before the body is read: a full disk, a caller over its rate.
    refuse_if_cannot_store(app)?;
    if let Err(wait) = app.limits.ingest_allowed(caller) {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            app.limits.ingest_rate_message(wait),
        )
        .because("rate")
        .retry_after(wait));
    }
    let limit = app.config.ingest.max_body_bytes;
    read_body(app, body, (limit, "ingest.max_body_bytes")).await
}

/// Waits for room in memory, then reads the body within `limit` bytes
/// (named by the setting it comes from, in the 413). Gives the deadline
/// to admit its lines by.
pub(super) async fn read_body(
    app: &App,
    body: Body,
    (limit, setting): (usize, &str),
) -> Result<(axum::body::Bytes, tokio::time::Instant), ApiError> {
    // Wait for room before reading the body: a waiting request holds
    // nothing but its connection.
    let budget = app.config.storage.max_unindexed_bytes;
    let deadline = tokio::time::Instant::now() + INGEST_PATIENCE;
    admission::wait_for_room(app.store.room(), budget, deadline)
        .await
        .map_err(|held| busy(held, budget))?;
    let raw = axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is larger than {setting} ({limit} bytes)"),
            )
            .because("too_large")
        } else {
            ApiError::bad(format!("cannot read the request body: {e}"))
        }
    })?;
    Ok((raw, deadline))
}

/// Refuses lines this node cannot store now: its disk is full, or the
/// object store has been failing for long enough that the WAL holds
/// `storage.max_unpublished_bytes`.
pub(super) fn refuse_if_cannot_store(app: &App) -> Result<(), ApiError> {
    if let Some(why) = app.wal.failure() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot store: {why}"),
        )
        .because("unavailable")
        .retry_after(Duration::from_secs(2)));
    }
    let unpublished = app.wal.bytes_on_disk();
    let budget = app.config.storage.max_unpublished_bytes;
    if unpublished >= budget {
        // The WAL holds exactly what is not published yet: past the
        // budget, the object store has been failing for a while.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{unpublished} bytes wait for their upload to the object store ({}), \
                 storage.max_unpublished_bytes is {budget}; try again later",
                app.object_store
            ),
        )
        .because("unpublished")
        .retry_after(Duration::from_secs(5)));
    }
    Ok(())
}

/// Requests woken together must not all fill the same room: each
/// reserves its lines' size (as sent: an upper bound of what is stored)
/// until its lines are applied and counted as waiting for the index.
pub(super) async fn admit(
    app: &App,
    text_bytes: u64,
    deadline: tokio::time::Instant,
) -> Result<admission::Admission, ApiError> {
    let budget = app.config.storage.max_unindexed_bytes;
    admission::admit(app.store.room(), text_bytes, budget, deadline)
        .await
        .map_err(|held| busy(held, budget))
}

fn busy(held: u64, budget: u64) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "busy: {held} bytes of lines are waiting for the index, more than storage.max_unindexed_bytes ({budget}); retry later"
        ),
    )
    .because("busy")
    .retry_after(Duration::from_secs(1))
}

/// `GET /api/v1/ingest/published[?host=H]`: each source's published and
/// held ends, and the node's incarnation; a shipper asks when the
/// incarnation it saw changes.
pub(super) async fn published(
    State(app): State<Arc<App>>,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<Json<PublishedResponse>, ApiError> {
    let mut host = None;
    for (k, v) in super::params::query_pairs(raw) {
        match k.as_str() {
            "host" => host = Some(v),
            other => {
                return Err(ApiError::bad(format!(
                    "unknown parameter '{other}' (expected host)"
                )))
            }
        }
    }
    let wanted = |s: &cblogs_core::Source| host.as_ref().is_none_or(|h| &s.host == h);
    let mut sources: Vec<SourceEnds> = app
        .store
        .ends(&wanted)
        .into_iter()
        .map(|e| SourceEnds {
            source: e.source.key(),
            id: format!("{:016x}", e.source.id()),
            published_end: e.published_end,
            held_end: e.held_end,
            gaps: e.gaps.into_iter().map(|(a, b)| [a, b]).collect(),
        })
        .collect();
    sources.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(Json(PublishedResponse {
        incarnation: app.incarnation.clone(),
        node: app.cluster.node_id.clone(),
        sources,
    }))
}
