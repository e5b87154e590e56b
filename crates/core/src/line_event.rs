//! A search's `line` event on the wire, both ways, without serde's
//! generic paths.
//!
//! A dense search sends hundreds of thousands of `line` events, and
//! `#[derive]`d serde costs more per line than finding the line: written,
//! each line formats and hashes its source again and goes through
//! `flatten`'s map serializer; read, an internally tagged enum and a
//! `flatten` each buffer the whole object before decoding it. So:
//!
//! - [`SourceJson`] encodes a source's fields once, and
//!   [`write_search_line`] writes each line around them, byte for byte
//!   what serde writes for [`SearchEvent::Line`] (a test holds it to that);
//! - [`decode_search_event`] reads a `line` event straight into its
//!   fields, and any other event through serde as before;
//! - [`decode_raw_line`] reads only what raw output prints of one (its
//!   time, text and match ranges), borrowed from the JSON.

use std::borrow::Cow;
use std::io::Write as _;

use serde::Deserialize;

use crate::api::{SearchEvent, SearchLine};
use crate::{LineFlags, LineView, Source, Stream};

/// One source's fields as a `line` event shows them, encoded once.
#[derive(Debug, Clone)]
pub struct SourceJson {
    /// `"cluster":…` through `"stream":…`, between `time_ns` and `offset`.
    fields: Vec<u8>,
    /// `"source":"<id in hex>"`, after the text and its flags.
    id: Vec<u8>,
}

impl SourceJson {
    pub fn new(source: &Source) -> SourceJson {
        let mut fields = Vec::with_capacity(256);
        put_field(&mut fields, "cluster", &source.cluster);
        fields.push(b',');
        put_field(&mut fields, "host", &source.host);
        fields.push(b',');
        put_field(&mut fields, "job", &source.job.role_env_name());
        let _ = write!(fields, ",\"instance\":{},", source.instance);
        put_field(&mut fields, "task_id", &source.task_id);
        fields.push(b',');
        put_field(&mut fields, "process", &source.process);
        let _ = write!(
            fields,
            ",\"run\":{},\"stream\":\"{}\"",
            source.run,
            source.stream.as_str()
        );
        let id = format!("\"source\":\"{:016x}\"", source.id()).into_bytes();
        SourceJson { fields, id }
    }
}

/// `"name":"value"`, the value escaped as serde_json escapes it.
fn put_field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    put_str(out, value);
}

fn put_str(out: &mut Vec<u8>, value: &str) {
    // Writing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// One line of a search (a match, or context around one), appended to
/// `out` as the JSON of [`SearchEvent::Line`], without the newline.
#[allow(clippy::too_many_arguments)]
pub fn write_search_line(
    out: &mut Vec<u8>,
    source: &SourceJson,
    time_ns: i64,
    offset: u64,
    flags: LineFlags,
    text: &str,
    context: bool,
    matches: &[[usize; 2]],
) {
    let time = crate::time::Rfc3339Nanos(time_ns);
    let _ = write!(
        out,
        "{{\"type\":\"line\",\"time\":\"{time}\",\"time_ns\":{time_ns},"
    );
    out.extend_from_slice(&source.fields);
    let _ = write!(out, ",\"offset\":{offset},\"text\":");
    put_str(out, text);
    if flags.cut {
        out.extend_from_slice(b",\"cut\":true");
    }
    if flags.partial {
        out.extend_from_slice(b",\"partial\":true");
    }
    if flags.continues {
        out.extend_from_slice(b",\"continues\":true");
    }
    out.push(b',');
    out.extend_from_slice(&source.id);
    out.extend_from_slice(if context {
        b",\"context\":true,\"matches\":["
    } else {
        b",\"context\":false,\"matches\":["
    });
    for (i, [start, end]) in matches.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = write!(out, "[{start},{end}]");
    }
    out.extend_from_slice(b"]}");
}

/// A `line` event's fields as they are on the wire: no tag, no flatten.
#[derive(Deserialize)]
struct LineEvent {
    time: String,
    time_ns: i64,
    cluster: String,
    host: String,
    job: String,
    instance: u32,
    task_id: String,
    process: String,
    run: u32,
    stream: Stream,
    offset: u64,
    text: String,
    #[serde(default)]
    cut: bool,
    #[serde(default)]
    partial: bool,
    #[serde(default)]
    continues: bool,
    source: String,
    context: bool,
    matches: Vec<[usize; 2]>,
}

impl From<LineEvent> for SearchLine {
    fn from(e: LineEvent) -> SearchLine {
        SearchLine {
            line: LineView {
                time: e.time,
                time_ns: e.time_ns,
                cluster: e.cluster,
                host: e.host,
                job: e.job,
                instance: e.instance,
                task_id: e.task_id,
                process: e.process,
                run: e.run,
                stream: e.stream,
                offset: e.offset,
                text: e.text,
                flags: LineFlags {
                    cut: e.cut,
                    partial: e.partial,
                    continues: e.continues,
                },
                source: e.source,
            },
            context: e.context,
            matches: e.matches,
        }
    }
}

/// What `--output raw` prints of a `line` event, borrowed from its JSON
/// where no escape needs undoing: the rest of the event is skipped, not
/// copied into strings.
#[derive(Debug, Deserialize)]
pub struct RawLine<'a> {
    #[serde(borrow)]
    pub time: Cow<'a, str>,
    #[serde(borrow)]
    pub text: Cow<'a, str>,
    #[serde(default)]
    pub matches: Vec<[usize; 2]>,
}

/// A `line` event's [`RawLine`]; `None` for any other event.
pub fn decode_raw_line(json: &[u8]) -> Option<serde_json::Result<RawLine<'_>>> {
    json.starts_with(LINE_EVENT_START)
        .then(|| serde_json::from_slice(json))
}

/// How every `line` event starts ([`write_search_line`]).
const LINE_EVENT_START: &[u8] = b"{\"type\":\"line\",";

/// One NDJSON line of a search's answer. `line` events (all but a few)
/// are read directly; the others through [`SearchEvent`]'s serde.
pub fn decode_search_event(json: &[u8]) -> serde_json::Result<SearchEvent> {
    if json.starts_with(LINE_EVENT_START) {
        let line: LineEvent = serde_json::from_slice(json)?;
        return Ok(SearchEvent::Line(line.into()));
    }
    serde_json::from_slice(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(cluster: &str, host: &str) -> Source {
        Source {
            cluster: cluster.into(),
            host: host.into(),
            task_id: "www-data-prod-hello-0-5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11".into(),
            job: "www-data/prod/hello".parse().unwrap(),
            instance: 3,
            process: "hello_world".into(),
            run: 2,
            stream: Stream::Stderr,
        }
    }

    /// What serde writes for the same line.
    fn by_serde(
        s: &Source,
        time_ns: i64,
        offset: u64,
        flags: LineFlags,
        text: &str,
        context: bool,
        matches: &[[usize; 2]],
    ) -> Vec<u8> {
        let event = SearchEvent::Line(SearchLine {
            line: LineView::new(s, offset, time_ns, flags, text.as_bytes()),
            context,
            matches: matches.to_vec(),
        });
        serde_json::to_vec(&event).unwrap()
    }

    #[test]
    fn writes_what_serde_writes_and_reads_it_back() {
        let flags: [LineFlags; 4] = [
            LineFlags::default(),
            LineFlags {
                cut: true,
                partial: false,
                continues: false,
            },
            LineFlags {
                cut: true,
                partial: true,
                continues: false,
            },
            LineFlags {
                cut: false,
                partial: false,
                continues: true,
            },
        ];
        let texts = [
            "",
            "plain text",
            "quotes \" and \\ back\tslash \u{1} \u{7f} ünï €",
            "{\"json\":[1,2]}",
        ];
        let sources = [source("devcluster", "agent1"), source("c\"x", "h\\y")];
        for s in &sources {
            let json = SourceJson::new(s);
            for (i, text) in texts.iter().enumerate() {
                for f in flags {
                    for context in [false, true] {
                        let time_ns = 1_700_000_000_123_456_789 + i as i64;
                        let matches: &[[usize; 2]] = if context { &[] } else { &[[0, 1], [2, 5]] };
                        let mut out = Vec::new();
                        write_search_line(&mut out, &json, time_ns, 42, f, text, context, matches);
                        let want = by_serde(s, time_ns, 42, f, text, context, matches);
                        assert_eq!(
                            String::from_utf8_lossy(&out),
                            String::from_utf8_lossy(&want)
                        );
                        let back = decode_search_event(&out).unwrap();
                        assert_eq!(back, serde_json::from_slice::<SearchEvent>(&want).unwrap());
                        let raw = decode_raw_line(&out).unwrap().unwrap();
                        let SearchEvent::Line(line) = back else {
                            panic!("not a line")
                        };
                        assert_eq!(raw.text, line.line.text);
                        assert_eq!(raw.time, line.line.time);
                        assert_eq!(raw.matches, line.matches);
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_times_are_written_as_serde_writes_them() {
        let s = source("devcluster", "agent1");
        for t in [i64::MIN, -1, 0, i64::MAX] {
            let mut out = Vec::new();
            let f = LineFlags::default();
            write_search_line(&mut out, &SourceJson::new(&s), t, 0, f, "x", false, &[]);
            assert_eq!(out, by_serde(&s, t, 0, f, "x", false, &[]));
        }
    }

    #[test]
    fn other_events_and_bad_lines_go_through_serde() {
        let summary = br#"{"type":"break"}"#;
        assert_eq!(decode_search_event(summary).unwrap(), SearchEvent::Break);
        let err = decode_search_event(br#"{"type":"line","time":3}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
        assert!(decode_search_event(b"{\"type\":\"nope\"}").is_err());
        assert!(decode_raw_line(summary).is_none());
        assert!(decode_raw_line(br#"{"type":"line","time":3}"#)
            .unwrap()
            .is_err());
    }
}
