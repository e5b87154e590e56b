//! Other senders (issue 19): Loki's push API and OTLP/HTTP logs into the
//! real `cblogsd`, read back with the real `cblogs`.
//!
//! - `loki_push_json_and_protobuf`: JSON (a bearer token) and push.proto
//!   encoded here from Loki's published messages, snappy-compressed (the
//!   token as HTTP Basic auth's password); labels that name an Aurora job
//!   key give it, others a generic app job; an entry of several lines;
//!   the same bodies sent again, before and after a restart: each entry
//!   once; bad bodies refused naming the problem; the Loki API reads them.
//! - `python_clients_through_a_lost_answer`: the OpenTelemetry Python
//!   SDK's OTLP/HTTP exporter, its first answer lost in a proxy and
//!   cblogsd killed and started again before it sends the batch again;
//!   `python-logging-loki` across a restart: every record once, in order.

use std::time::Duration;

use cblogs_testkit::*;
use prost::Message;
use serde_json::{json, Value};

const TOKEN: &str = "push-token-0123456789abcdef";

fn config() -> String {
    format!("[auth]\ningest_tokens = [\"{TOKEN}\"]\n[ingest]\nmax_line_bytes = 64\n")
}

/// `push.proto` (grafana/loki `pkg/push/push.proto`), as a sender
/// encodes it: written here from the published file, not taken from
/// cblogsd.
mod loki_proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<StreamAdapter>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamAdapter {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<EntryAdapter>,
        #[prost(uint64, tag = "3")]
        pub hash: u64,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EntryAdapter {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<LabelPairAdapter>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct LabelPairAdapter {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

/// POSTs `body` to `path` with `headers`; the status and body.
fn post(server: &Server, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, String) {
    let mut req = http_client(None)
        .post(format!("{}{path}", server.url))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().unwrap_or_else(|e| panic!("POST {path}: {e}"));
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

/// The texts `cblogs tail JOB` prints, with each line's fields.
fn tail(server: &Server, job: &str) -> Vec<Value> {
    let out = server.cli(&["tail", job, "-n", "10000", "--output", "json"]);
    assert_eq!(out.code, 0, "tail {job}: {}", out.stderr);
    out.stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn loki_push_json_and_protobuf() {
    let (_dir, mut server) = Server::in_temp_dir(Some(&config()));
    let base = (cblogs_core::time::now_ns() / 1_000_000_000 - 60) * 1_000_000_000;
    let t = |i: i64| (base + i * 1_000_000).to_string();
    let json_body = serde_json::to_vec(&json!({"streams": [
        {"stream": {"role": "www-data", "env": "prod", "job": "hello", "instance": "2",
                    "process": "web", "host": "agent9", "cluster": "west"},
         "values": [[t(1), "GET / 200"], [t(2), "GET /x 404"], [t(3), "POST /y 500", {"trace_id": "ab12"}]]},
        {"stream": {"job": "varlogs", "filename": "/var/log/syslog", "host": "h1"},
         "values": [[t(4), "kernel: eth0 up"],
                    [t(5), "app: ERROR boom\nretry budget spent\nTraceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad\n"]]},
        // Two entries at one time, and a line cut at max_line_bytes: each
        // still told from its retry after a restart.
        {"stream": {"job": "sametime"},
         "values": [[t(6), "same a"], [t(6), "same b"], [t(7), "x".repeat(100)]]}
    ]}))
    .expect("JSON");
    let bearer = format!("Bearer {TOKEN}");
    let json_headers = [
        ("Content-Type", "application/json"),
        ("Authorization", bearer.as_str()),
    ];
    let (status, body) = post(
        &server,
        "/loki/api/v1/push",
        &json_headers,
        json_body.clone(),
    );
    assert_eq!(status, 204, "{body}");

    let hello = tail(&server, "www-data/prod/hello");
    assert_eq!(texts(&hello), ["GET / 200", "GET /x 404", "POST /y 500"]);
    assert_eq!(hello[0]["instance"], 2);
    assert_eq!(hello[0]["process"], "web");
    assert_eq!(hello[0]["host"], "agent9");
    assert_eq!(hello[0]["cluster"], "west");
    assert_eq!(hello[0]["time_ns"], base + 1_000_000);
    let want_varlogs = [
        "kernel: eth0 up",
        "app: ERROR boom",
        "retry budget spent",
        "Traceback (most recent call last):",
        "  File \"x.py\", line 1",
        "ValueError: bad",
    ];
    let varlogs = tail(&server, "varlogs");
    assert_eq!(texts(&varlogs), want_varlogs);
    assert_eq!(varlogs[0]["job"], "app/default/varlogs");
    assert_eq!(varlogs[0]["process"], "syslog");
    // An entry of several lines is one event: its lines after the first
    // continue it (a plain line too, which alone would open one).
    let continues: Vec<bool> = varlogs
        .iter()
        .map(|l| l["continues"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(continues, [false, false, true, true, true, true]);

    // push.proto, snappy-compressed; the token as Basic auth's password.
    let proto = loki_proto::PushRequest {
        streams: vec![loki_proto::StreamAdapter {
            labels: r#"{job="varlogs", filename="/var/log/auth.log", host="h1"}"#.into(),
            entries: (0..3)
                .map(|i| loki_proto::EntryAdapter {
                    timestamp: Some(loki_proto::Timestamp {
                        seconds: base / 1_000_000_000,
                        nanos: 10_000_000 + i,
                    }),
                    line: format!("sshd: session {i} opened"),
                    structured_metadata: Vec::new(),
                })
                .collect(),
            hash: 0,
        }],
    };
    let snappy = snap::raw::Encoder::new()
        .compress_vec(&proto.encode_to_vec())
        .expect("snappy");
    let basic = "Basic Y2Jsb2dzOnB1c2gtdG9rZW4tMDEyMzQ1Njc4OWFiY2RlZg=="; // cblogs:push-token-0123456789abcdef
    let proto_headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("Authorization", basic),
    ];
    let (status, body) = post(&server, "/loki/api/v1/push", &proto_headers, snappy.clone());
    assert_eq!(status, 204, "{body}");
    let sessions = [
        "sshd: session 0 opened",
        "sshd: session 1 opened",
        "sshd: session 2 opened",
    ];
    let all: Vec<String> = want_varlogs
        .iter()
        .chain(&sessions)
        .map(|s| s.to_string())
        .collect();
    assert_eq!(texts(&tail(&server, "varlogs")), all);

    // A sender's retries: the same bodies again. Each entry once.
    assert_eq!(
        post(
            &server,
            "/loki/api/v1/push",
            &json_headers,
            json_body.clone()
        )
        .0,
        204
    );
    assert_eq!(
        post(&server, "/loki/api/v1/push", &proto_headers, snappy.clone()).0,
        204
    );
    assert_eq!(texts(&tail(&server, "varlogs")), all);
    assert_eq!(texts(&tail(&server, "www-data/prod/hello")).len(), 3);
    let dups = server.metric("cblogs_ingest_duplicate_lines_total");
    assert!(
        dups.unwrap_or(0.0) >= 11.0,
        "the retries counted as copies: {dups:?}"
    );

    let sametime = ["same a".to_string(), "same b".to_string(), "x".repeat(64)];
    assert_eq!(texts(&tail(&server, "sametime")), sametime);

    // …and after a restart (what a stream held is read back).
    server.kill9();
    server.restart();
    assert_eq!(
        post(&server, "/loki/api/v1/push", &json_headers, json_body).0,
        204
    );
    assert_eq!(
        post(&server, "/loki/api/v1/push", &proto_headers, snappy).0,
        204
    );
    assert_eq!(texts(&tail(&server, "varlogs")), all);
    assert_eq!(texts(&tail(&server, "www-data/prod/hello")).len(), 3);
    assert_eq!(texts(&tail(&server, "sametime")), sametime);
    // New entries go on after the old.
    let more = serde_json::to_vec(&json!({"streams": [
        {"stream": {"job": "varlogs", "filename": "/var/log/syslog", "host": "h1"},
         "values": [[t(20), "kernel: eth0 down"]]}]}))
    .expect("JSON");
    assert_eq!(
        post(&server, "/loki/api/v1/push", &json_headers, more).0,
        204
    );
    let out = server.cli(&["grep", "-F", "eth0", "varlogs", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let found: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(texts(&found), ["kernel: eth0 up", "kernel: eth0 down"]);

    // The Loki API reads what was pushed.
    let url = reqwest::Url::parse_with_params(
        &format!("{}/loki/api/v1/query_range", server.url),
        &[
            ("query", r#"{job="varlogs", process="syslog"} |= "ERROR""#),
            ("start", &base.to_string()),
        ],
    )
    .expect("URL");
    let v: Value = http_client(None)
        .get(url)
        .send()
        .expect("GET")
        .json()
        .expect("JSON");
    assert_eq!(
        v["data"]["result"][0]["values"][0][1], "app: ERROR boom",
        "{v}"
    );

    // Refusals name the problem; nothing of them is stored.
    let (status, body) = post(
        &server,
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        b"{}".to_vec(),
    );
    assert_eq!(status, 401, "no token: {body}");
    let (status, body) = post(
        &server,
        "/loki/api/v1/push",
        &json_headers,
        br#"{"streams": [{"stream": {}, "values": [[1, "x"]]}]}"#.to_vec(),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("the first element must be a string of nanoseconds"),
        "{body}"
    );
    let (status, body) = post(
        &server,
        "/loki/api/v1/push",
        &proto_headers,
        b"not snappy".to_vec(),
    );
    assert_eq!(status, 400, "{body}");
    let mut br = json_headers.to_vec();
    br.push(("Content-Encoding", "br"));
    let (status, body) = post(&server, "/loki/api/v1/push", &br, b"{}".to_vec());
    assert_eq!(status, 415, "{body}");
    assert!(body.contains("Content-Encoding 'br'"), "{body}");
    let (status, body) = post(
        &server,
        "/v1/logs",
        &[
            ("Content-Type", "text/plain"),
            ("Authorization", bearer.as_str()),
        ],
        b"x".to_vec(),
    );
    assert_eq!(status, 415, "{body}");
    assert_eq!(texts(&tail(&server, "varlogs")).len(), all.len() + 1);
}

/// The OpenTelemetry SDK's OTLP/HTTP log exporter: `N` records through
/// Python's logging, one batch.
const OTEL_SCRIPT: &str = r#"
import logging, sys
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.resources import Resource

endpoint, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
resource = Resource.create({"service.name": "checkout", "service.namespace": "shop",
                            "deployment.environment.name": "prod", "host.name": "node-4"})
provider = LoggerProvider(resource=resource)
exporter = OTLPLogExporter(endpoint=endpoint + "/v1/logs",
                           headers={"Authorization": "Bearer " + token}, timeout=30)
provider.add_log_record_processor(BatchLogRecordProcessor(exporter, max_export_batch_size=512))
log = logging.getLogger("checkout")
log.setLevel(logging.INFO)
log.addHandler(LoggingHandler(level=logging.INFO, logger_provider=provider))
for i in range(n):
    if i % 10 == 0:
        log.error("order %d failed", i)
    else:
        log.info("order %d placed", i)
ok = provider.force_flush(30000)
provider.shutdown()
print("flushed" if ok else "not flushed")
"#;

/// python-logging-loki (Loki's JSON push, the token as Basic auth's
/// password): records `FROM..TO`, each its own request.
const LOKI_SCRIPT: &str = r#"
import logging, sys, logging_loki
url, token, start, end = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
handler = logging_loki.LokiHandler(url=url + "/loki/api/v1/push",
    tags={"role": "www-data", "env": "prod", "job": "billing"},
    auth=("cblogs", token), version="1")
def fail(record):
    raise SystemExit("python-logging-loki could not send a record")
handler.handleError = fail
log = logging.getLogger("billing")
log.setLevel(logging.INFO)
log.addHandler(handler)
for i in range(start, end):
    log.info("invoice %d sent", i)
print("sent")
"#;

#[test]
fn python_clients_through_a_lost_answer() {
    let (_dir, mut server) = Server::in_temp_dir(Some(&config()));
    let target = server.url.trim_start_matches("http://").to_owned();
    let proxy = AnswerDropper::start(&target);

    // OTLP: the first answer is lost, and cblogsd killed and started
    // again; the exporter sends the batch again, to the new process.
    proxy.drop_next(1);
    let exporter = std::process::Command::new(push_python())
        .arg("-c")
        .arg(OTEL_SCRIPT)
        .args([proxy.endpoint.as_str(), TOKEN, "200"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the exporter");
    wait_until(
        "the exporter's first answer to be lost",
        Duration::from_secs(60),
        || (proxy.dropped() == 1).then_some(()),
    );
    server.kill9();
    server.restart();
    let out = exporter.wait_with_output().expect("the exporter");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "flushed");
    let want: Vec<String> = (0..200)
        .map(|i| {
            if i % 10 == 0 {
                format!("ERROR order {i} failed")
            } else {
                format!("INFO order {i} placed")
            }
        })
        .collect();
    let lines = tail(&server, "shop/prod/checkout");
    assert_eq!(texts(&lines), want, "every record once, in order");
    assert_eq!(lines[0]["host"], "node-4");

    // python-logging-loki, across a restart of cblogsd.
    let out = run_python(LOKI_SCRIPT, &[&server.url, TOKEN, "0", "50"]);
    assert_eq!(out.trim(), "sent");
    server.stop();
    server.restart();
    let out = run_python(LOKI_SCRIPT, &[&server.url, TOKEN, "50", "100"]);
    assert_eq!(out.trim(), "sent");
    let want: Vec<String> = (0..100).map(|i| format!("invoice {i} sent")).collect();
    wait_until("the invoices", Duration::from_secs(30), || {
        (texts(&tail(&server, "www-data/prod/billing")) == want).then_some(())
    });
    assert_eq!(texts(&tail(&server, "shop/prod/checkout")).len(), 200);
}
