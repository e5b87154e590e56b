//! Loki's push bodies: `push.proto`'s `PushRequest`, snappy-compressed
//! (Promtail, Alloy, Fluent Bit, Docker's driver), or its JSON form
//! (`{"streams": [{"stream": {…}, "values": [["<ns>", "<line>"]]}]}`).
//!
//! Structured metadata (a third element, or `structuredMetadata`) has no
//! place in a cblogs line and is not kept; the README says so.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::body::unsnappy;
use super::{PushError, PushedEntry, PushedStream};
use crate::logql;

/// `push.proto`'s messages (grafana/loki `pkg/push/push.proto`), with
/// their field numbers; gogoproto's options change nothing on the wire.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
        #[prost(string, tag = "2")]
        pub format: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        /// Prometheus' form: `{job="x", host="y"}`. Bytes, not a checked
        /// string: Loki's own decoder takes any bytes here.
        #[prost(bytes = "vec", tag = "1")]
        pub labels: Vec<u8>,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        /// Bytes: a line that is not UTF-8 (a Latin-1 file) is kept, its
        /// invalid bytes shown as U+FFFD, not the whole batch refused.
        #[prost(bytes = "vec", tag = "2")]
        pub line: Vec<u8>,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
        #[prost(message, repeated, tag = "4")]
        pub parsed: Vec<LabelPairAdapter>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `google.protobuf.Timestamp`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// A snappy-compressed `PushRequest`.
pub fn decode_proto(raw: &[u8], limit: usize) -> Result<Vec<PushedStream>, PushError> {
    let bytes = unsnappy(raw, limit)?;
    let req = <proto::PushRequest as prost::Message>::decode(bytes.as_slice()).map_err(|e| {
        PushError::Invalid {
            what: "Loki push request (protobuf)",
            why: e.to_string(),
        }
    })?;
    req.streams
        .into_iter()
        .map(|s| {
            let labels = labels_of(&String::from_utf8_lossy(&s.labels))?;
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e.timestamp.unwrap_or_default();
                    let time_ns = ts
                        .seconds
                        .saturating_mul(1_000_000_000)
                        .saturating_add(i64::from(ts.nanos));
                    checked_time(time_ns, "Loki push request (protobuf)")?;
                    Ok(PushedEntry {
                        time_ns,
                        text: String::from_utf8_lossy(&e.line).into_owned(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(PushedStream { labels, entries })
        })
        .collect()
}

/// An entry's time: after the epoch, before 2116 (what the read API
/// takes); an entry without one is refused, not stored at 1970.
pub(super) fn checked_time(time_ns: i64, what: &'static str) -> Result<i64, PushError> {
    if time_ns > 0 && time_ns <= 1 << 62 {
        Ok(time_ns)
    } else {
        Err(PushError::Invalid {
            what,
            why: format!(
                "an entry's time {time_ns} is not between 1970 and 2116 (nanoseconds since the epoch)"
            ),
        })
    }
}

/// `{a="b", c="d"}` as a map.
fn labels_of(text: &str) -> Result<BTreeMap<String, String>, PushError> {
    let bad = |why: String| PushError::Invalid {
        what: "Loki push request (protobuf)",
        why: format!("labels {text:?}: {why}"),
    };
    let selector = logql::parse_selector(text).map_err(|e| bad(e.to_string()))?;
    selector
        .as_labels()
        .ok_or_else(|| bad("a stream's labels are name=\"value\" pairs".into()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    stream: BTreeMap<String, String>,
    values: Vec<Vec<serde_json::Value>>,
}

/// The JSON form. Times are strings of nanoseconds, as Loki requires.
pub fn decode_json(bytes: &[u8]) -> Result<Vec<PushedStream>, PushError> {
    let bad = |why: String| PushError::Invalid {
        what: "Loki push request (JSON)",
        why,
    };
    let push: JsonPush = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    push.streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let entries = s
                .values
                .into_iter()
                .enumerate()
                .map(|(j, v)| {
                    let at = || format!("streams[{i}].values[{j}]");
                    let time_ns = v
                        .first()
                        .and_then(|t| t.as_str())
                        .and_then(|t| t.parse::<i64>().ok())
                        .ok_or_else(|| {
                            bad(format!(
                                "{}: the first element must be a string of nanoseconds since the epoch",
                                at()
                            ))
                        })?;
                    checked_time(time_ns, "Loki push request (JSON)")?;
                    let text = v.get(1).and_then(|l| l.as_str()).ok_or_else(|| {
                        bad(format!("{}: the second element must be the line, a string", at()))
                    })?;
                    if v.len() > 3 || v.get(2).is_some_and(|m| !m.is_object()) {
                        return Err(bad(format!(
                            "{}: expected [time, line] or [time, line, {{metadata}}]",
                            at()
                        )));
                    }
                    Ok(PushedEntry {
                        time_ns,
                        text: text.to_owned(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(PushedStream {
                labels: s.stream,
                entries,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn json_pushes() {
        let body = br#"{"streams": [{"stream": {"job": "varlogs", "host": "h1"},
            "values": [["1570818238000000001", "fizz"], ["1570818238000000002", "buzz", {"trace_id": "abc"}]]}]}"#;
        let streams = decode_json(body).unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels["job"], "varlogs");
        assert_eq!(
            streams[0].entries,
            [
                PushedEntry {
                    time_ns: 1_570_818_238_000_000_001,
                    text: "fizz".into()
                },
                PushedEntry {
                    time_ns: 1_570_818_238_000_000_002,
                    text: "buzz".into()
                },
            ]
        );
        let e = decode_json(
            br#"{"streams": [{"stream": {}, "values": [[1570818238000000001, "x"]]}]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("streams[0].values[0]: the first element must be a string"),
            "{e}"
        );
        assert!(decode_json(b"{}").is_err());
        let e =
            decode_json(br#"{"streams": [{"stream": {}, "values": [["-5", "x"]]}]}"#).unwrap_err();
        assert!(e.to_string().contains("not between 1970 and 2116"), "{e}");
    }

    #[test]
    fn snappy_protobuf_pushes() {
        let req = proto::PushRequest {
            streams: vec![proto::StreamAdapter {
                labels: br#"{job="varlogs", filename="/var/log/syslog"}"#.to_vec(),
                entries: vec![proto::EntryAdapter {
                    timestamp: Some(proto::Timestamp {
                        seconds: 1_570_818_238,
                        nanos: 7,
                    }),
                    line: b"hello \xe9t\xe9".to_vec(),
                    ..Default::default()
                }],
                hash: 0,
            }],
            format: String::new(),
        };
        let raw = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        let streams = decode_proto(&raw, 1 << 20).unwrap();
        assert_eq!(streams[0].labels["filename"], "/var/log/syslog");
        assert_eq!(streams[0].entries[0].time_ns, 1_570_818_238_000_000_007);
        assert_eq!(
            streams[0].entries[0].text, "hello \u{fffd}t\u{fffd}",
            "Latin-1 kept"
        );
        assert!(decode_proto(b"not snappy", 1 << 20).is_err());
        let bad = proto::PushRequest {
            streams: vec![proto::StreamAdapter {
                labels: br#"{job=~"x"}"#.to_vec(),
                ..Default::default()
            }],
            format: String::new(),
        };
        let raw = snap::raw::Encoder::new()
            .compress_vec(&bad.encode_to_vec())
            .unwrap();
        assert!(decode_proto(&raw, 1 << 20).is_err());
    }
}
