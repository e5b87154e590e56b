//! The ingest decoder (`cblogs_server::testing::decode_ingest`) on any body.
//!
//! Input: one mode byte, then the body. Mode (first byte % 3):
//! 0: the body as plain JSON (no Content-Encoding);
//! 1: the body as a zstd frame (`Content-Encoding: zstd`), as sent;
//! 2: the body zstd-compressed here first, then decoded as `zstd`, so the
//!    JSON parser is reached through the zstd path too.
//!
//! Never panics; what it accepts passes `IngestRequest::validate`, keeps
//! within the limits, and re-serialized decodes again to the same request,
//! plain and compressed.

#![no_main]

use cblogs_core::wire::IngestRequest;
use cblogs_server::testing::{decode_ingest, DecodeLimits};
use libfuzzer_sys::fuzz_target;

const LIMITS: DecodeLimits = DecodeLimits {
    max_body_bytes: 64 << 10,
    max_lines: 64,
};

fn json(req: &IngestRequest) -> String {
    serde_json::to_string(req).expect("a decoded request serializes")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let compressed;
    let (body, encoding) = match mode % 3 {
        0 => (body, None),
        1 => (body, Some("zstd")),
        _ => {
            compressed = zstd::bulk::compress(body, 1).expect("zstd compresses");
            (&compressed[..], Some("zstd"))
        }
    };
    let req = match decode_ingest(body, encoding, LIMITS) {
        Ok(req) => req,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error without words: {e:?}");
            return;
        }
    };
    req.validate().expect("an accepted request is valid");
    let lines: usize = req.batches.iter().map(|b| b.lines.len()).sum();
    assert!(lines <= LIMITS.max_lines, "{lines} lines accepted");

    let text = json(&req);
    let again = decode_ingest(text.as_bytes(), None, LIMITS)
        .unwrap_or_else(|e| panic!("re-serialized request refused: {e}\n{text}"));
    assert_eq!(json(&again), text, "plain round trip changed the request");
    let packed = zstd::bulk::compress(text.as_bytes(), 3).expect("zstd compresses");
    let again = decode_ingest(&packed, Some("zstd"), LIMITS)
        .unwrap_or_else(|e| panic!("re-serialized zstd request refused: {e}\n{text}"));
    assert_eq!(json(&again), text, "zstd round trip changed the request");
});
