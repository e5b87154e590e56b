//! `POST /api/v1/session` and `DELETE …`: the web page trades a read
//! token for a cookie, and forgets it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::ApiError;
use crate::access::auth::{presented_token, TOKEN_COOKIE};
use crate::app::App;

/// The web page trades a read token for a cookie (HttpOnly, SameSite=Strict),
/// so that its live tail (an EventSource, which cannot send headers) is
/// let in too. The auth layer has already checked the token.
pub(super) async fn session_start(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
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

pub(super) async fn session_end() -> Response {
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
