//! Server-Sent Events as the follow stream writes them: `event: NAME`,
//! `data: JSON`, a blank line. Written by hand (not through axum's `Sse`)
//! so that one batch's events are encoded once and the same bytes go to
//! every tail that wants them.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use cblogs_core::api::Truncated;
use cblogs_core::LineView;
use tokio::sync::mpsc;

use crate::store::LiveBatch;

/// Appends one event. (Compact JSON has no raw newline, so one `data:`
/// line holds it.)
pub(super) fn event(buf: &mut Vec<u8>, name: &str, data: &impl serde::Serialize) {
    let start = buf.len();
    buf.extend_from_slice(b"event: ");
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(b"\ndata: ");
    if serde_json::to_writer(&mut *buf, data).is_err() {
        buf.truncate(start);
        return;
    }
    buf.extend_from_slice(b"\n\n");
}

/// A follow's first events: the jobs it selects, and `truncated` (with
/// the backlog's `limit`) when the backlog left out lines since the time
/// asked.
pub(super) fn follow_head(jobs: &[String], truncated: Option<usize>) -> Vec<u8> {
    let mut head = Vec::new();
    event(&mut head, "jobs", &jobs);
    if let Some(limit) = truncated {
        event(&mut head, "truncated", &Truncated { limit });
    }
    head
}

/// Every line of a batch as `line` events.
pub(super) fn line_events(batch: &LiveBatch) -> Bytes {
    let mut buf = Vec::with_capacity(batch.lines.text_len() * 2 + 512 * batch.lines.len());
    for l in batch.lines.lines() {
        event(
            &mut buf,
            "line",
            &LineView::new(&batch.source, l.offset, l.time_ns, l.flags, l.bytes),
        );
    }
    Bytes::from(buf)
}

/// The response whose body is the events `rx` gets, as they come.
pub(super) fn response(rx: mpsc::Receiver<Bytes>) -> Response {
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
