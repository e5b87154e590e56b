//! OTLP/HTTP logs (`POST /v1/logs`): an `ExportLogsServiceRequest`, as
//! protobuf or OTLP's JSON (the `opentelemetry-proto` crate's types).
//!
//! A resource's attributes are its stream's labels (`service.name`,
//! `host.name`, …; `source.rs` maps them). A record's line is its severity
//! text (when it has one) and its body: `ERROR disk full`, so a grep or an
//! alert rule finds the level as it finds it in a sandbox's lines. Record
//! attributes, trace and span ids are not kept (the README says so).

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

use super::{PushError, PushedEntry, PushedStream};

pub fn decode_proto(bytes: &[u8]) -> Result<Vec<PushedStream>, PushError> {
    let req = <ExportLogsServiceRequest as prost::Message>::decode(bytes).map_err(|e| {
        PushError::Invalid {
            what: "OTLP logs request (protobuf)",
            why: e.to_string(),
        }
    })?;
    streams_of(req)
}

pub fn decode_json(bytes: &[u8]) -> Result<Vec<PushedStream>, PushError> {
    let req: ExportLogsServiceRequest =
        serde_json::from_slice(bytes).map_err(|e| PushError::Invalid {
            what: "OTLP logs request (JSON)",
            why: e.to_string(),
        })?;
    streams_of(req)
}

/// One stream per resource (those with the same attributes together).
/// A record must carry its time (or its observed time): stamped here,
/// its retry would be another entry.
fn streams_of(req: ExportLogsServiceRequest) -> Result<Vec<PushedStream>, PushError> {
    let mut streams: BTreeMap<BTreeMap<String, String>, Vec<PushedEntry>> = BTreeMap::new();
    for rl in req.resource_logs {
        let labels = attributes(rl.resource.map(|r| r.attributes).unwrap_or_default());
        let entries = streams.entry(labels).or_default();
        for record in rl.scope_logs.into_iter().flat_map(|s| s.log_records) {
            let time = [record.time_unix_nano, record.observed_time_unix_nano]
                .into_iter()
                .find(|t| *t > 0)
                .and_then(|t| i64::try_from(t).ok())
                .unwrap_or(0);
            super::loki::checked_time(time, "OTLP logs request")?;
            let body = record.body.map(render).unwrap_or_default();
            let text = if record.severity_text.is_empty() {
                body
            } else {
                format!("{} {body}", record.severity_text)
            };
            entries.push(PushedEntry {
                time_ns: time,
                text,
            });
        }
    }
    Ok(streams
        .into_iter()
        .map(|(labels, entries)| PushedStream { labels, entries })
        .collect())
}

fn attributes(kvs: Vec<KeyValue>) -> BTreeMap<String, String> {
    kvs.into_iter()
        .filter_map(|kv| Some((kv.key, render(kv.value?))))
        .collect()
}

/// A value as text: strings as they are, the rest as JSON would show them.
fn render(v: AnyValue) -> String {
    match v.value {
        None => String::new(),
        Some(Value::StringValue(s)) => s,
        // An index into a dictionary that OTLP/HTTP logs do not carry.
        Some(Value::StringValueStrindex(i)) => format!("#{i}"),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Some(Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.into_iter().map(render).collect();
            format!("[{}]", items.join(", "))
        }
        Some(Value::KvlistValue(kv)) => {
            let items: Vec<String> = kv
                .values
                .into_iter()
                .map(|kv| format!("{}={}", kv.key, kv.value.map(render).unwrap_or_default()))
                .collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otlp_json_as_the_spec_writes_it() {
        let body = br#"{"resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "checkout"}},
                {"key": "service.instance.id", "value": {"intValue": "3"}}]},
            "scopeLogs": [{"scope": {"name": "app"}, "logRecords": [
                {"timeUnixNano": "1700000000000000001", "severityNumber": 17, "severityText": "ERROR",
                 "body": {"stringValue": "payment failed"}, "traceId": "5b8efff798038103d269b633813fc60c"},
                {"observedTimeUnixNano": "1700000000000000002", "body": {"stringValue": "retrying"}}
            ]}]}]}"#;
        let streams = decode_json(body).unwrap();
        assert_eq!(streams.len(), 1);
        assert_eq!(streams[0].labels["service.name"], "checkout");
        assert_eq!(streams[0].labels["service.instance.id"], "3");
        assert_eq!(
            streams[0].entries,
            [
                PushedEntry {
                    time_ns: 1_700_000_000_000_000_001,
                    text: "ERROR payment failed".into()
                },
                PushedEntry {
                    time_ns: 1_700_000_000_000_000_002,
                    text: "retrying".into()
                },
            ]
        );
        assert!(decode_json(b"{\"resourceLogs\": 3}").is_err());
        let untimed = br#"{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}]}]}]}"#;
        assert!(
            decode_json(untimed).is_err(),
            "a record without a time is refused"
        );
        assert!(decode_proto(b"\xff\xff").is_err());
    }
}
