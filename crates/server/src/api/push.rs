//! `POST /loki/api/v1/push` (Loki's push: protobuf with snappy, or JSON)
//! and `POST /v1/logs` (OTLP/HTTP logs: protobuf or JSON): lines from
//! senders other than the shipper, with the ingest role's token (as a
//! bearer, or as the password of HTTP Basic auth), the same limits, room
//! and durability as `/api/v1/ingest` (`ingest.rs`); each entry stored
//! once (`push/pusher.rs`). Answered once the lines are durable in this
//! node's write-ahead log.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use super::error::ApiError;
use super::ingest::{admit, take_body};
use crate::access::Caller;
use crate::app::App;
use crate::metrics::{emit, Ingested, RequestRefused};
use crate::push::{self, PushError, PushedStream};

/// What the body is, by its `Content-Type`.
fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        let status = match &e {
            PushError::TooLarge { .. } | PushError::TooManyLines { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            PushError::Encoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PushError::Decompress(_) | PushError::Invalid { .. } => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The format of a push body.
#[derive(Clone, Copy)]
enum Format {
    LokiProto,
    LokiJson,
    OtlpProto,
    OtlpJson,
}

pub(super) async fn loki_push(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    // Loki reads every named type but JSON as protobuf.
    let format = match media_type(&headers).as_str() {
        "application/json" => Format::LokiJson,
        "" => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "missing Content-Type: application/x-protobuf (snappy) or application/json",
            ))
        }
        _ => Format::LokiProto,
    };
    counted(take(&app, &caller, &headers, body, format).await)?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn otlp_logs(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let format = match media_type(&headers).as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::OtlpProto,
        "application/json" => Format::OtlpJson,
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                "Content-Type '{other}' is not OTLP's: application/x-protobuf or application/json"
            ),
            ))
        }
    };
    counted(take(&app, &caller, &headers, body, format).await)?;
    // An empty ExportLogsServiceResponse: nothing was rejected.
    Ok(match format {
        Format::OtlpJson => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
        _ => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response(),
    })
}

/// Counts a push's outcome as `/api/v1/ingest`'s is counted.
fn counted(answer: Result<push::PushOutcome, ApiError>) -> Result<(), ApiError> {
    match &answer {
        Ok(o) => emit(Ingested {
            lines: o.lines,
            bytes: o.bytes,
            duplicates: o.duplicates,
        }),
        Err(e) => emit(RequestRefused {
            endpoint: "ingest",
            reason: e.reason(),
        }),
    }
    answer.map(drop)
}

async fn take(
    app: &App,
    caller: &Caller,
    headers: &HeaderMap,
    body: Body,
    format: Format,
) -> Result<push::PushOutcome, ApiError> {
    let (raw, deadline) = take_body(app, caller, body).await?;
    let limit = app.config.ingest.max_body_bytes;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?"));
    let bytes = push::decompress(&raw, encoding, limit)?;
    drop(raw);
    let streams: Vec<PushedStream> = match format {
        Format::LokiProto => push::decode_loki_proto(&bytes, limit)?,
        Format::LokiJson => push::decode_loki_json(&bytes)?,
        Format::OtlpProto => push::decode_otlp_proto(&bytes)?,
        Format::OtlpJson => push::decode_otlp_json(&bytes)?,
    };
    drop(bytes);
    push::check_lines(&streams, app.config.ingest.max_lines_per_request)?;
    let text_bytes: u64 = streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.text.len() as u64)
        .sum();
    let _admission = admit(app, text_bytes, deadline).await?;
    let outcome = app.pusher.push(streams).await?;
    app.limits.charge_ingest(caller, text_bytes);
    Ok(outcome)
}
