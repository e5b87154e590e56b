//! `POST /loki/api/v1/push` (Loki's push: protobuf with snappy, or JSON)
//! and `POST /v1/logs` (OTLP/HTTP logs: protobuf or JSON): lines from
//! senders other than the shipper, with the ingest role's token (as a
//! bearer, or as the password of HTTP Basic auth), the same limits, room
//! and durability as `/api/v1/ingest` (`ingest.rs`); each entry stored
//! once (`push/pusher.rs`). Answered once the lines are durable in this
//! node's write-ahead log.
//!
//! In a cluster, a stream whose source another live node owns goes to
//! that node (`POST /api/v1/cluster/push`, [`node_push`]), in parallel
//! with this node's own streams; the push is answered once every part is
//! durable on its node, and 503 (send it again: each entry is still
//! stored once) if an owner did not take its part.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use cblogs_core::api;

use super::error::ApiError;
use super::ingest::{admit, read_body, refuse_if_cannot_store, take_body};
use crate::access::Caller;
use crate::app::App;
use crate::cluster::{Owner, SeenEpochs};
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
    app: &Arc<App>,
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
    let all_bytes = text_bytes(&streams);
    let (here, seen, others) = by_owner(app, streams).await?;
    // Room for this node's part only, held until it is stored.
    let local = async {
        let _admission = admit(app, text_bytes(&here), deadline).await?;
        Ok::<_, ApiError>(app.pusher.push(here, seen).await?)
    };
    let forwarded = others
        .into_iter()
        .map(|(owner, streams)| forward(app, owner, streams));
    let (here, there) = tokio::join!(local, futures_util::future::join_all(forwarded));
    let mut outcome = here?;
    for part in there {
        outcome.add(part?);
    }
    app.limits.charge_ingest(caller, all_bytes);
    Ok(outcome)
}

fn text_bytes(streams: &[PushedStream]) -> u64 {
    streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.text.len() as u64)
        .sum()
}

/// A push's streams by where they go: this node's (with the epoch each
/// one's owner was seen at), and those whose source another live node
/// owns, by that node (id, URL). Alone, all are this node's.
type ByOwner = (
    Vec<PushedStream>,
    SeenEpochs,
    BTreeMap<(String, String), Vec<PushedStream>>,
);

/// Sorts a push's streams by the node that owns each one's source, the
/// metastore read again first when nobody owns one
/// ([`Cluster::owners`](crate::cluster::Cluster::owners): blocking, so on
/// a thread of its own). 503 while a stream's owner may be alive and this
/// node does not know the cluster's nodes yet.
async fn by_owner(app: &Arc<App>, mut streams: Vec<PushedStream>) -> Result<ByOwner, ApiError> {
    streams.retain(|s| !s.entries.is_empty());
    let ids: Vec<u64> = streams
        .iter()
        .map(|s| push::source_of(&s.labels).id())
        .collect();
    let cluster = app.cluster.clone();
    let asked = ids.clone();
    let owners = tokio::task::spawn_blocking(move || cluster.owners(&asked))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("finding the push's owners failed: {e}"),
            )
        })?;
    let mut here = Vec::new();
    let mut seen = SeenEpochs::new();
    let mut others: BTreeMap<(String, String), Vec<PushedStream>> = BTreeMap::new();
    for ((s, owner), id) in streams.into_iter().zip(owners).zip(ids) {
        match owner {
            Owner::Here { seen_epoch } => {
                seen.insert(id, seen_epoch);
                here.push(s);
            }
            Owner::Other { node, url } => others.entry((node, url)).or_default().push(s),
            Owner::Unknown(node) => return Err(not_known_yet(&node)),
        }
    }
    Ok((here, seen, others))
}

fn not_known_yet(node: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "a stream of this push is held by node {node}, and this node does not know the cluster's nodes yet; send the push again"
        ),
    )
    .because("owner")
    .retry_after(Duration::from_secs(1))
}

/// How long a forwarded push may take on its node: its wait for room, the
/// WAL, and the way there and back.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);

/// Sends `streams` to the node that owns their sources; its answer once
/// they are durable there.
async fn forward(
    app: &App,
    (node, url): (String, String),
    streams: Vec<PushedStream>,
) -> Result<push::PushOutcome, ApiError> {
    app.cluster
        .peers
        .post_json_within(&url, api::CLUSTER_PUSH_PATH, &streams, Some(FORWARD_TIMEOUT))
        .await
        .map_err(|e| {
            tracing::warn!(node = %node, error = %e, "the node that owns pushed streams did not take them");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "node {node}, which holds {} of this push's streams, did not take them ({e}); send the push again",
                    streams.len()
                ),
            )
            .because("owner")
            .retry_after(Duration::from_secs(1))
        })
}

/// `POST /api/v1/cluster/push` (nodes only): streams pushed to another
/// node whose sources this node owns. Stored as a push here is, each
/// entry once; never sent on: a stream whose source another node holds
/// now (the sender's view was old) is refused, 503, for the client to
/// send again. Counted in the metrics of the node the push was sent to.
pub(super) async fn node_push(
    State(app): State<Arc<App>>,
    body: Body,
) -> Result<Json<push::PushOutcome>, ApiError> {
    refuse_if_cannot_store(&app)?;
    let limit = forwarded_body_limit(app.config.ingest.max_body_bytes);
    let setting = "a forwarded push's limit (6 × ingest.max_body_bytes + 1 MiB)";
    let (raw, deadline) = read_body(&app, body, (limit, setting)).await?;
    let streams: Vec<PushedStream> = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad(format!("malformed forwarded push: {e}")))?;
    drop(raw);
    let (here, seen, others) = by_owner(&app, streams).await?;
    if let Some((node, _)) = others.keys().next() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("a stream forwarded here is now held by node {node}; send the push again"),
        )
        .because("owner")
        .retry_after(Duration::from_secs(1)));
    }
    let _admission = admit(&app, text_bytes(&here), deadline).await?;
    Ok(Json(app.pusher.push(here, seen).await?))
}

/// A forwarded push's body: its streams as JSON, their text escaped (at
/// most six bytes for one), within `ingest.max_body_bytes` once
/// decompressed.
pub(super) fn forwarded_body_limit(max_body_bytes: usize) -> usize {
    max_body_bytes.saturating_mul(6).saturating_add(1 << 20)
}
