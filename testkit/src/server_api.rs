//! What tests ask a running `cblogsd`, as one call each: ingest (a request
//! shaped like a shipper's, or any body), the admin flush, the storage
//! report, one series of `/metrics`, and every line of a job as the CLI
//! prints it.

use std::time::Duration;

use cblogs_core::wire::IngestRequest;
use cblogs_core::LineView;
use serde_json::Value;

use crate::cli::{cli, CliOutput};
use crate::server::Server;

/// An HTTP client with a timeout (`None`: none).
pub fn http_client(timeout: Option<Duration>) -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .expect("HTTP client")
}

impl Server {
    /// POSTs a request as JSON, optionally zstd-compressed.
    pub fn post(&self, req: &IngestRequest, zstd: bool) -> (u16, Value) {
        let json = serde_json::to_vec(req).expect("encode request");
        if zstd {
            let body = zstd::bulk::compress(&json, 3).expect("zstd");
            self.post_raw(body, Some("zstd"))
        } else {
            self.post_raw(json, None)
        }
    }

    /// POSTs `body` as it is.
    pub fn post_raw(&self, body: Vec<u8>, content_encoding: Option<&str>) -> (u16, Value) {
        let client = reqwest::blocking::Client::new();
        let mut req = client
            .post(format!("{}/api/v1/ingest", self.url))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(enc) = content_encoding {
            req = req.header("Content-Encoding", enc);
        }
        let resp = req.send().expect("POST /api/v1/ingest");
        let status = resp.status().as_u16();
        let text = resp.text().expect("response body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text}"));
        (status, value)
    }

    /// POSTs and asserts the batch was acknowledged.
    pub fn post_ok(&self, req: &IngestRequest) -> Value {
        let (status, body) = self.post(req, false);
        assert_eq!(status, 200, "ingest refused: {body}");
        body
    }

    /// `POST /api/v1/admin/flush`, which must answer 200: every line
    /// acknowledged so far is committed to the index when it returns. The
    /// answer's body (`committed_blocks`, `unindexed_bytes`, …).
    pub fn flush(&self) -> Value {
        let resp = http_client(None)
            .post(format!("{}/api/v1/admin/flush", self.url))
            .send()
            .expect("POST /api/v1/admin/flush");
        let status = resp.status().as_u16();
        let text = resp.text().expect("flush answer");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert_eq!(status, 200, "flush: {body}");
        body
    }

    /// `GET /api/v1/storage`, which must answer 200.
    pub fn storage(&self) -> Value {
        self.get_json("/api/v1/storage")
    }

    /// `GET /api/v1/ingest/published`: the incarnation and each source's
    /// published and held ends.
    pub fn published(&self) -> Value {
        self.get_json("/api/v1/ingest/published")
    }

    /// GET `path` (no token), which must answer 200 with JSON.
    pub fn get_json(&self, path: &str) -> Value {
        let resp = http_client(None)
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status().as_u16(), 200, "GET {path}");
        resp.json()
            .unwrap_or_else(|e| panic!("GET {path} answers JSON: {e}"))
    }

    /// The value of one series of `/metrics`, named as the exposition
    /// writes it (`name` or `name{labels}`), if it is there.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = http_client(None)
            .get(format!("{}/metrics", self.url))
            .send()
            .and_then(|r| r.text())
            .expect("GET /metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    /// Runs `cblogs --server URL args…`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        cli(&self.url, args)
    }

    /// Every line of `job` as the CLI prints it with `--output json`.
    pub fn all_lines(&self, job: &str) -> Vec<LineView> {
        let out = self.cli(&["tail", job, "-n", "100000", "--output", "json"]);
        assert_eq!(out.code, 0, "tail failed: {}", out.stderr);
        parse_line_views(&out.stdout)
    }

    /// [`Server::all_lines`], or `None` while the CLI fails (e.g. no job
    /// matches yet): for polling.
    pub fn try_all_lines(&self, job: &str) -> Option<Vec<LineView>> {
        let out = self.cli(&["tail", job, "-n", "100000", "--output", "json"]);
        (out.code == 0).then(|| parse_line_views(&out.stdout))
    }
}

fn parse_line_views(stdout: &str) -> Vec<LineView> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a LineView per line"))
        .collect()
}
