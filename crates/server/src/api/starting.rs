//! The front door while cblogsd starts: the port is open at once, and
//! until the service is ready (the metastore read, the write-ahead log
//! replayed) every request is answered 503 with a message and
//! `Retry-After`, so a shipper backs off and sends again instead of
//! hanging on a connection nobody answers. A fresh node must not take a
//! batch before it knows, from the metastore, what each source already
//! published (issue 16, rule 4). Once ready, every request goes to the
//! service's router.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;

use super::ApiError;

/// The router to serve from the start; [`Starting::ready`] hands it the
/// service's.
#[derive(Clone)]
pub struct Starting {
    ready: Arc<OnceLock<Router>>,
    /// What is awaited, named in the answer (e.g. the object store).
    waiting_for: Arc<str>,
}

impl Starting {
    pub fn new(waiting_for: &str) -> Starting {
        Starting {
            ready: Arc::new(OnceLock::new()),
            waiting_for: waiting_for.into(),
        }
    }

    /// From now on requests go to `router`.
    pub fn ready(&self, router: Router) {
        let _ = self.ready.set(router);
    }

    pub fn router(&self) -> Router {
        let me = self.clone();
        Router::new().fallback(move |req: Request| {
            let me = me.clone();
            async move { me.answer(req).await }
        })
    }

    async fn answer(&self, req: Request) -> Response {
        match self.ready.get() {
            Some(router) => match router.clone().oneshot(req).await {
                Ok(resp) => resp,
                Err(never) => match never {},
            },
            None => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "cblogsd is starting: {}; nothing is accepted before that, try again shortly",
                    self.waiting_for
                ),
            )
            .because("starting")
            .retry_after(Duration::from_secs(1))
            .into_response(),
        }
    }
}
