//! Errors as Loki answers them: the status, and the message as the body's
//! plain text (what Grafana shows under the query).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::logql::ParseError;

#[derive(Debug)]
pub(crate) struct LokiError {
    status: StatusCode,
    message: String,
    /// From the cblogs error this came from.
    retry_after: Option<HeaderValue>,
}

impl LokiError {
    pub(crate) fn bad(message: impl Into<String>) -> LokiError {
        LokiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Loki's answer to a query past its time limit.
    pub(crate) fn timed_out(limit: std::time::Duration) -> LokiError {
        LokiError {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!(
                "request timed out: the query reached its time limit (search.max_query_secs = {} s); decrease the duration of the request or add more label matchers",
                limit.as_secs()
            ),
            retry_after: None,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> LokiError {
        LokiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

impl From<ParseError> for LokiError {
    fn from(e: ParseError) -> Self {
        LokiError::bad(e.to_string())
    }
}

impl From<ApiError> for LokiError {
    fn from(e: ApiError) -> Self {
        let retry_after = e.retry_after_secs().map(HeaderValue::from);
        LokiError {
            status: e.status(),
            message: e.message().to_owned(),
            retry_after,
        }
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, format!("{}\n", self.message)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(wait) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, wait);
        }
        resp
    }
}
