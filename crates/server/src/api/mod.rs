//! The HTTP API and the web page: one file per endpoint group, every route
//! behind the role it needs.
//!
//! ```text
//! mod.rs        router(); the auth layer (access/auth.rs) in front of each role's routes
//! error.rs      ApiError: status, JSON message naming the problem, Retry-After
//! params.rs     query strings; the selection parameters tail, follow, search and histogram share
//! ingest.rs     POST /api/v1/ingest
//! push.rs       POST /loki/api/v1/push, /v1/logs; /api/v1/cluster/push (nodes only): a
//!               stream pushed to another node, for the node that owns its source
//! tail.rs       GET /api/v1/tail, /api/v1/follow (Server-Sent Events, sse.rs)
//! search.rs     GET /api/v1/search (NDJSON), /api/v1/context
//! fanout.rs     what the reads pinned to one metastore version share: ask, pin again, after_version=
//! fanout_search.rs  a node of a cluster's search, fanned out; GET /api/v1/cluster/search: a node's part
//! fanout_jobs.rs    a node of a cluster's jobs listing; GET /api/v1/cluster/jobs: a node's part
//! fanout_follow.rs  a node of a cluster's follow: every node followed (GET /api/v1/cluster/follow, tail.rs)
//! histogram.rs  GET /api/v1/histogram
//! status.rs     GET /api/v1/jobs, /api/v1/storage, /api/v1/alerts (/cluster/alerts: a node's own), /api/v1/cluster
//! admin.rs      POST /api/v1/admin/flush, /api/v1/admin/alerts/reload, /api/v1/alerts/silences,
//!               /api/v1/cluster/alerts/hits (nodes only)
//! session.rs    POST/DELETE /api/v1/session: the page's cookie
//! metrics.rs    GET /metrics
//! web.rs        GET /, /static/…: the embedded page
//! listener.rs   TCP or TLS connections, each with its peer's address
//! starting.rs   Starting: 503 on every path until the service is open
//! ```
//!
//! Handlers read the shared [`App`]; none of them starts or stops anything.

mod admin;
mod error;
mod fanout;
mod fanout_follow;
mod fanout_jobs;
mod fanout_search;
mod histogram;
mod ingest;
mod listener;
mod loki;
mod metrics;
mod params;
mod push;
mod search;
mod session;
mod sse;
mod starting;
mod status;
mod tail;
mod web;

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cblogs_core::api;
use cblogs_core::wire::{INGEST_PATH, PUBLISHED_PATH};

use crate::access::auth::{presented_token, token_digest};
use crate::access::{Caller, Role};
use crate::app::App;
use crate::metrics::{emit, RequestRefused};
pub use error::ApiError;
pub use listener::{acceptor as tls_acceptor, PeerAddr, TlsListener};
pub use search::check_query;
pub use starting::Starting;

/// Every endpoint, each behind the role it needs (`access/auth.rs`); the
/// page's files and the health check are open.
pub fn router(app: Arc<App>) -> Router {
    let role = |r: Role| middleware::from_fn_with_state((app.clone(), r), require_role);
    let node_role = app.cluster.role();
    let mut ingest = Router::new()
        .route(INGEST_PATH, post(ingest::ingest))
        .route(PUBLISHED_PATH, get(ingest::published))
        .route("/loki/api/v1/push", post(push::loki_push))
        .route("/v1/logs", post(push::otlp_logs))
        .route_layer(role(Role::Ingest));
    if !node_role.ingests() {
        ingest = ingest.route_layer(middleware::from_fn_with_state(
            "this node runs with role 'query' (cblogsd --role): it takes no lines; send them to a node of role 'ingest' or 'all' (GET /api/v1/cluster lists them)",
            refuse_for_role,
        ));
    }
    let mut queries = Router::new()
        .route(api::JOBS_PATH, get(status::jobs))
        .route(api::TAIL_PATH, get(tail::tail))
        .route(api::FOLLOW_PATH, get(tail::follow))
        .route(api::SEARCH_PATH, get(search::search))
        .route(api::HISTOGRAM_PATH, get(histogram::histogram))
        .route(api::CONTEXT_PATH, get(search::context))
        .merge(loki::routes())
        .route_layer(role(Role::Read));
    if !node_role.queries() {
        queries = queries.route_layer(middleware::from_fn_with_state(
            "this node runs with role 'ingest' (cblogsd --role): it answers no queries; ask a node of role 'query' or 'all' (GET /api/v1/cluster lists them)",
            refuse_for_role,
        ));
    }
    let read = Router::new()
        .route(api::ALERTS_PATH, get(status::alerts))
        .route(api::STORAGE_PATH, get(status::storage))
        .route(api::CLUSTER_PATH, get(status::cluster))
        .route(api::CLUSTER_NODE_PATH, get(status::cluster_node))
        // On every role: an ingest node holds the lines it has not published.
        .route(api::CLUSTER_TAIL_PATH, get(tail::node_tail))
        .route(api::CLUSTER_SEARCH_PATH, get(fanout_search::node_search))
        .route(api::CLUSTER_FOLLOW_PATH, get(tail::node_follow))
        .route(api::CLUSTER_CONTEXT_PATH, get(search::node_context))
        .route(api::CLUSTER_JOBS_PATH, get(fanout_jobs::node_jobs))
        .route(api::CLUSTER_HISTOGRAM_PATH, get(histogram::node_histogram))
        .route(api::CLUSTER_ALERTS_PATH, get(status::node_alerts))
        .route(api::METRICS_PATH, get(metrics::serve))
        .route(
            api::SESSION_PATH,
            post(session::session_start).delete(session::session_end),
        )
        .route_layer(role(Role::Read));
    // What only another node of the cluster may send: a hit's line may be
    // as long as a line may, and a batch holds up to 1,000.
    let nodes = Router::new()
        .route(api::CLUSTER_ALERT_HITS_PATH, post(admin::alert_hits))
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
        // A forwarded push's body is read within its own limit.
        .route(
            api::CLUSTER_PUSH_PATH,
            post(push::node_push).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route_layer(role(Role::Node));
    let admin = Router::new()
        .route(api::ALERTS_RELOAD_PATH, post(admin::reload_alerts))
        .route(api::SILENCES_PATH, post(admin::silence))
        .route(api::FLUSH_PATH, post(admin::flush))
        .route_layer(role(Role::Admin));
    Router::new()
        .merge(ingest)
        .merge(queries)
        .merge(read)
        .merge(nodes)
        .merge(admin)
        .route("/", get(web::index))
        .route("/static/{*path}", get(web::file))
        .route(api::HEALTH_PATH, get(|| async { "ok\n" }))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .with_state(app)
}

/// What a node limited to one role (`[cluster] role`) does not do: 403,
/// saying which nodes do. A 403, not a 503: a shipper must not wait and
/// retry here, it must send elsewhere.
async fn refuse_for_role(State(why): State<&'static str>, _req: Request, _next: Next) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, why).into_response()
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
    let token = presented_token(req.headers()).map(|t| t.into_owned());
    let token = token.as_deref();
    if let Err(denied) = app.auth.check(role, token, peer) {
        // The reason and the role, never the token.
        tracing::debug!(role = role.as_str(), peer = ?peer, reason = %denied.message(), "request refused");
        emit(RequestRefused {
            endpoint: role.as_str(),
            reason: "auth",
        });
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
        (Some(t), _) => Caller::Token(token_digest(t)),
        (None, Some(p)) => Caller::Addr(p.ip()),
        (None, None) => Caller::Unknown,
    };
    req.extensions_mut().insert(caller);
    req.extensions_mut().insert(PeerAddr(
        peer.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0))),
    ));
    next.run(req).await
}
