//! Server-Sent Events as the follow stream writes them: `event: NAME`,
//! `data: JSON`, a blank line. Written by hand (not through axum's `Sse`)
//! so that one batch's events are encoded once and the same bytes go to
//! every tail that wants them.

use axum::body::Bytes;
use cblogs_core::LineView;

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
