//! Lines pushed by senders other than the shipper: Loki's push API
//! (Promtail, Alloy, Vector, Fluent Bit, Docker's loki driver,
//! python-logging-loki) and OTLP/HTTP logs (OpenTelemetry SDKs and
//! collectors).
//!
//! ```text
//! body.rs     Content-Encoding (gzip, deflate, snappy's hint), bounded
//! loki.rs     push.proto (snappy) or JSON → streams of (time, line)
//! otlp.rs     ExportLogsServiceRequest, protobuf or JSON → streams
//! source.rs   a stream's labels → a Source (a job key where they name one)
//! pusher.rs   one entry once: retries dropped by (time, line); then the
//!             ingestor places the lines at the end of their source
//! ```
//!
//! A pushed entry may span lines (a message and its traceback): it is
//! stored as its lines, all at its time, one event (`multiline/`).
//!
//! In a cluster a stream goes to the node that owns its source (as the
//! metastore records it), whichever node it was pushed to: `api/push.rs`
//! forwards it there (`POST /api/v1/cluster/push`), so its lines stay on
//! one node and that node's copies are what retries are checked against.
//! A stream nobody owns yet, or whose owner has left the cluster, is taken
//! by the node it was pushed to, once it has read the metastore again
//! (another node may have taken it within the last commit round).

mod body;
mod loki;
mod otlp;
mod pusher;
mod source;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use body::decompress;
pub use loki::{decode_json as decode_loki_json, decode_proto as decode_loki_proto};
pub use otlp::{decode_json as decode_otlp_json, decode_proto as decode_otlp_proto};
pub use pusher::{PushOutcome, Pusher};
pub use source::source_of;

/// One stream of a push: its labels and its entries, in the order sent.
/// (As JSON, a node forwards it to the node that owns its source.)
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PushedStream {
    pub labels: BTreeMap<String, String>,
    pub entries: Vec<PushedEntry>,
}

/// One log entry: a time and its text (which may hold newlines).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PushedEntry {
    pub time_ns: i64,
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushError {
    #[error("Content-Encoding '{0}' is not supported (expected gzip, deflate, snappy or none)")]
    Encoding(String),
    #[error("the body does not decompress: {0}")]
    Decompress(String),
    #[error("the body is larger than ingest.max_body_bytes ({limit} bytes) once decompressed")]
    TooLarge { limit: usize },
    #[error("the body holds more than ingest.max_lines_per_request ({limit}) lines")]
    TooManyLines { limit: usize },
    #[error("the body is not a valid {what}: {why}")]
    Invalid { what: &'static str, why: String },
}

/// Streams of one push, checked against the request limits.
pub fn check_lines(streams: &[PushedStream], max_lines: usize) -> Result<(), PushError> {
    let lines: usize = streams
        .iter()
        .flat_map(|s| &s.entries)
        .map(|e| e.text.matches('\n').count() + 1)
        .sum();
    if lines > max_lines {
        return Err(PushError::TooManyLines { limit: max_lines });
    }
    Ok(())
}
