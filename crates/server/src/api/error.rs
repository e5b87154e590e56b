//! Every error answer: a status that says whose fault it is and a JSON
//! [`ErrorBody`] that names the problem (and, for a limit, its setting).
//!
//! 400 bad request, 401 no valid token, 403 a token (or an address) that
//! may not do this, 404 unknown job, 409 ambiguous job or a gap, 413 past a
//! size limit, 415 unknown encoding, 429 past a rate or count limit, 503 the
//! server cannot take it now (full disk, busy, searches at their limit).
//! 429 and 503 carry `Retry-After`. Each error also carries the `reason`
//! that `cblogs_requests_refused_total` counts it under.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cblogs_core::wire::ErrorBody;

use crate::ingest::decode::DecodeError;
use crate::ingest::IngestError;
use crate::read::QueryError;
use crate::wal::WalError;

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
    pub(crate) fn status(&self) -> StatusCode {
        self.status
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
    /// `Retry-After`, in whole seconds (at least 1).
    pub(crate) fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after
            .map(|wait| wait.as_secs_f64().ceil().max(1.0) as u64)
    }
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after_secs();
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        use DecodeError as D;
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
            // The metastore cannot be reached: a 503 that moves no source
            // (every node would answer the same).
            IngestError::Claim(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                .because("unavailable")
                .retry_after(Duration::from_secs(2)),
            // Pushed lines only: sent again, they go to the node that
            // took the source (as a push to a source another node owns).
            IngestError::TakenMeanwhile(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .because("owner")
                    .retry_after(Duration::from_secs(1))
            }
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
