//! The ingest wire format: what a shipper POSTs to `cblogsd` and what it gets back.
//!
//! ```json
//! POST /api/v1/ingest            (Content-Encoding: zstd optional)
//! {"batches": [{
//!    "source": {"cluster": "devcluster", "host": "agent1",
//!               "task_id": "www-data-prod-hello-0-<uuid>", "job": "www-data/prod/hello",
//!               "instance": 0, "process": "hello", "run": 0, "stream": "stdout"},
//!    "start": 0, "end": 12,
//!    "lines": [{"offset": 0, "time_ns": 1764032523000000000, "text": "hello world"}]
//! }]}
//! ```
//!
//! A batch covers the byte range `start..end` of its source's stream, and
//! each line names its own offset, so the server can drop what it already
//! holds: a sender may retry any batch any number of times. A line that is
//! not valid UTF-8 travels as `b64` (standard base64 of its raw bytes)
//! instead of `text`.
//!
//! A source's batches must arrive in order (as an idempotent Kafka
//! producer's do). Every source is held up to some offset (0 for one the
//! server has never seen); a batch that starts beyond it would leave a hole,
//! so the whole request is refused with 409 and `held_end`, and the sender
//! resends from there. A sender that knows the bytes before `start` are lost
//! for good (a rotated file deleted before it was read, or a tailer that
//! starts at the end of an existing file) sets `allow_gap`.

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{Source, SourceError};

/// Where batches are posted.
pub const INGEST_PATH: &str = "/api/v1/ingest";
/// GET (ingest role), `?host=H` optional: each source's published and
/// held ends ([`PublishedResponse`]).
pub const PUBLISHED_PATH: &str = "/api/v1/ingest/published";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestRequest {
    pub batches: Vec<Batch>,
}

/// A run of lines of one source, covering bytes `start..end` of its stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub source: Source,
    pub start: u64,
    pub end: u64,
    pub lines: Vec<WireLine>,
    /// The bytes before `start` are lost: accept the hole after what is held.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_gap: bool,
}

/// One line: its offset in the stream, the time it was read, and its bytes
/// without the trailing newline (a `\r` before it is kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireLine {
    pub offset: u64,
    pub time_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    /// The line continues the previous line's event, as its sender knows
    /// (a pushed entry of several lines); the server marks the others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub continues: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("the request holds no batches")]
    NoBatches,
    #[error("batch {batch}: {source}")]
    Source { batch: usize, source: SourceError },
    #[error("batch {batch}: holds no lines")]
    NoLines { batch: usize },
    #[error("batch {batch}: start {start} is after end {end}")]
    Range { batch: usize, start: u64, end: u64 },
    #[error(
        "batch {batch}, line {line}: offset {offset} is outside the batch's range {start}..{end}"
    )]
    OffsetOutside {
        batch: usize,
        line: usize,
        offset: u64,
        start: u64,
        end: u64,
    },
    #[error("batch {batch}, line {line}: offset {offset} does not come after the previous line's")]
    OffsetOrder {
        batch: usize,
        line: usize,
        offset: u64,
    },
    #[error("batch {batch}, line {line}: give exactly one of 'text' and 'b64'")]
    TextOrB64 { batch: usize, line: usize },
    #[error("batch {batch}, line {line}: 'b64' is not valid base64: {reason}")]
    BadBase64 {
        batch: usize,
        line: usize,
        reason: String,
    },
    #[error("batch {batch}, line {line}: time_ns {time_ns} is not a time after 1970")]
    BadTime {
        batch: usize,
        line: usize,
        time_ns: i64,
    },
}

impl WireLine {
    /// A line from raw bytes: `text` when they are UTF-8, `b64` otherwise.
    pub fn from_bytes(offset: u64, time_ns: i64, bytes: &[u8]) -> WireLine {
        let (text, b64) = match std::str::from_utf8(bytes) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
            ),
        };
        WireLine {
            offset,
            time_ns,
            text,
            b64,
            cut: false,
            partial: false,
            continues: false,
        }
    }

    /// The line's raw bytes.
    pub fn bytes(&self) -> Result<Cow<'_, [u8]>, String> {
        match (&self.text, &self.b64) {
            (Some(t), None) => Ok(Cow::Borrowed(t.as_bytes())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map(Cow::Owned)
                .map_err(|e| e.to_string()),
            _ => Err("exactly one of 'text' and 'b64'".to_owned()),
        }
    }
}

impl IngestRequest {
    /// The bytes of its lines as sent (base64 counted as encoded): an upper
    /// bound of what storing them takes.
    pub fn text_bytes(&self) -> u64 {
        self.batches
            .iter()
            .flat_map(|b| &b.lines)
            .map(|l| {
                l.text
                    .as_ref()
                    .or(l.b64.as_ref())
                    .map_or(0, |t| t.len() as u64)
            })
            .sum()
    }

    /// Checks everything serde cannot, naming the batch and line at fault.
    pub fn validate(&self) -> Result<(), WireError> {
        if self.batches.is_empty() {
            return Err(WireError::NoBatches);
        }
        for (b, batch) in self.batches.iter().enumerate() {
            batch.validate(b)?;
        }
        Ok(())
    }
}

impl Batch {
    fn validate(&self, batch: usize) -> Result<(), WireError> {
        self.source
            .validate()
            .map_err(|source| WireError::Source { batch, source })?;
        if self.lines.is_empty() {
            return Err(WireError::NoLines { batch });
        }
        let (start, end) = (self.start, self.end);
        if start > end {
            return Err(WireError::Range { batch, start, end });
        }
        let mut previous: Option<u64> = None;
        for (line, l) in self.lines.iter().enumerate() {
            let offset = l.offset;
            if offset < start || offset >= end {
                return Err(WireError::OffsetOutside {
                    batch,
                    line,
                    offset,
                    start,
                    end,
                });
            }
            if previous.is_some_and(|p| offset <= p) {
                return Err(WireError::OffsetOrder {
                    batch,
                    line,
                    offset,
                });
            }
            previous = Some(offset);
            if l.text.is_some() == l.b64.is_some() {
                return Err(WireError::TextOrB64 { batch, line });
            }
            if let Some(b) = &l.b64 {
                if let Err(e) = base64::engine::general_purpose::STANDARD.decode(b) {
                    return Err(WireError::BadBase64 {
                        batch,
                        line,
                        reason: e.to_string(),
                    });
                }
            }
            if l.time_ns <= 0 {
                return Err(WireError::BadTime {
                    batch,
                    line,
                    time_ns: l.time_ns,
                });
            }
        }
        Ok(())
    }
}

/// What a node holds of each source: [`PUBLISHED_PATH`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PublishedResponse {
    /// See [`IngestResponse::incarnation`].
    pub incarnation: String,
    /// The node's id (its `[cluster] node_id`): a shipper spreading
    /// sources over several nodes hashes them by it, so a node keeps its
    /// sources when its address changes. Empty from older nodes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    pub sources: Vec<SourceEnds>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceEnds {
    /// [`Source::key`].
    pub source: String,
    /// [`Source::id`], in hex.
    pub id: String,
    /// Everything below is in the object store: it survives the loss of
    /// the node's disk.
    pub published_end: u64,
    /// Everything below is durable on the node (published, or in its
    /// WAL): what an acknowledgement means.
    pub held_end: u64,
    /// Byte ranges `[start, end)` the node accepted as lost (a batch sent
    /// with `allow_gap`), oldest first (the newest 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<[u64; 2]>,
}

/// The acknowledgement: sent only once every accepted line is durable.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IngestResponse {
    /// The node's incarnation: the same for as long as its data dir
    /// lives. A new one means what was held but not published is gone:
    /// a shipper re-sends each source from its published end.
    #[serde(default)]
    pub incarnation: String,
    /// Lines newly stored.
    pub accepted: u64,
    /// Lines dropped because the server already held their offsets.
    pub duplicates: u64,
    /// Lines cut at the server's line-length limit.
    pub cut: u64,
    /// Bytes of the lines newly stored (as stored: cut lines count their
    /// kept part).
    #[serde(default)]
    pub accepted_bytes: u64,
    /// Per batch, in request order.
    pub batches: Vec<BatchAck>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BatchAck {
    /// [`Source::key`].
    pub source: String,
    pub accepted: u64,
    pub duplicates: u64,
    /// Everything of this source before this offset is held by the server.
    pub acked_end: u64,
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// Extra words for some errors, e.g. the candidates of an ambiguous job name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<String>,
    /// With a 409 for a gap: the offset the source is held up to; resend from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_end: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stream;

    fn batch(lines: Vec<WireLine>) -> IngestRequest {
        IngestRequest {
            batches: vec![Batch {
                source: Source::example("r/prod/n", 0, "p", Stream::Stdout),
                start: 0,
                end: 20,
                lines,
                allow_gap: false,
            }],
        }
    }

    #[test]
    fn non_utf8_travels_as_base64() {
        let l = WireLine::from_bytes(0, 1, b"ok \xff\xfe bad");
        assert!(l.text.is_none());
        assert_eq!(&*l.bytes().unwrap(), b"ok \xff\xfe bad");
        let l = WireLine::from_bytes(0, 1, "héllo".as_bytes());
        assert_eq!(l.text.as_deref(), Some("héllo"));
    }

    #[test]
    fn validation_names_batch_and_line() {
        assert!(batch(vec![
            WireLine::from_bytes(0, 1, b"a"),
            WireLine::from_bytes(2, 1, b"b")
        ])
        .validate()
        .is_ok());
        assert_eq!(
            batch(vec![]).validate(),
            Err(WireError::NoLines { batch: 0 })
        );
        assert!(matches!(
            batch(vec![
                WireLine::from_bytes(5, 1, b"a"),
                WireLine::from_bytes(5, 1, b"b")
            ])
            .validate(),
            Err(WireError::OffsetOrder { line: 1, .. })
        ));
        assert!(matches!(
            batch(vec![WireLine::from_bytes(20, 1, b"a")]).validate(),
            Err(WireError::OffsetOutside { .. })
        ));
        assert!(matches!(
            batch(vec![WireLine::from_bytes(0, 0, b"a")]).validate(),
            Err(WireError::BadTime { .. })
        ));
        let mut l = WireLine::from_bytes(0, 1, b"a");
        l.b64 = Some("!!".into());
        assert!(matches!(
            batch(vec![l]).validate(),
            Err(WireError::TextOrB64 { .. })
        ));
        assert_eq!(
            IngestRequest { batches: vec![] }.validate(),
            Err(WireError::NoBatches)
        );
    }
}
