//! Grafana's Loki data source against the real `cblogsd` (issue 19): the
//! requests exactly as Grafana builds them (its `pkg/loki` backend and
//! its frontend's label browser, volume histogram and live tail), each
//! answer checked against Loki's documented response shapes and against
//! what was posted, computed here.
//!
//! - `queries_and_metadata`: the health check; log queries backward (the
//!   newest lines, a burst that must be cut finely, a window that must
//!   grow) and forward with every line filter; the volume histogram
//!   (`sum by (level, detected_level) (count_over_time(… | drop
//!   __error__[1s]))`), count_over_time per stream, rate summed by
//!   stream, an instant query; labels, label values, series, index
//!   stats; errors as Loki's plain text 400s naming what is wrong.
//! - `bearer_token_is_the_read_role`: Grafana's token reads; none is 401.
//! - `live_tail_over_a_websocket`: the shipper ships a sandbox's lines;
//!   `/loki/api/v1/tail` sends the matching ones since the last hour, then
//!   each new matching line once.

use std::collections::BTreeMap;
use std::time::Duration;

use cblogs_core::Stream;
use cblogs_testkit::*;
use serde_json::{json, Value};

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

/// A line as posted: its stream's labels, time and text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Posted {
    labels: BTreeMap<String, String>,
    time_ns: i64,
    text: String,
}

fn labels(job: &str, instance: u32, process: &str, stream: Stream) -> BTreeMap<String, String> {
    let parts: Vec<&str> = job.split('/').collect();
    [
        ("cluster", parts[0]),
        ("role", parts[1]),
        ("env", parts[2]),
        ("job", parts[3]),
        ("instance", &instance.to_string()),
        ("process", process),
        ("stream", stream.as_str()),
        ("host", SHIPPER_HOST),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn text_of(i: i64) -> String {
    if i % 7 == 0 {
        format!("ERROR disk full at {i}")
    } else if i % 5 == 0 {
        format!("WARN slow request {i}")
    } else {
        format!("INFO request {i} served")
    }
}

/// Posts 300 lines per source (100 ms apart, each source at its own
/// fraction of a millisecond so no line sits on a window's edge) and a
/// burst of 5,000 lines 2 µs apart; returns everything posted.
fn post_lines(server: &Server, base: i64) -> Vec<Posted> {
    let sources = [
        (
            "devcluster/www-data/prod/hello",
            0,
            "hello",
            Stream::Stdout,
            333_333,
        ),
        (
            "devcluster/www-data/prod/hello",
            0,
            "hello",
            Stream::Stderr,
            583_333,
        ),
        (
            "devcluster/www-data/prod/other",
            1,
            "web",
            Stream::Stdout,
            433_333,
        ),
    ];
    let mut posted = Vec::new();
    let mut batches = Vec::new();
    for (job, instance, process, stream, within) in sources {
        let mut f = SourceFile::of(job, instance, process, stream);
        let lines: Vec<(i64, String)> = (0..300)
            .map(|i| (base + i * 100 * MS + within, text_of(i)))
            .collect();
        for (t, text) in &lines {
            posted.push(Posted {
                labels: labels(job, instance, process, stream),
                time_ns: *t,
                text: text.clone(),
            });
        }
        batches.push(f.batch_at(&lines));
    }
    let job = "devcluster/www-data/prod/burst";
    let mut f = SourceFile::of(job, 0, "burst", Stream::Stdout);
    let lines: Vec<(i64, String)> = (0..5000)
        .map(|i| (base + 10 * S + 7 * MS + i * 2000, format!("burst line {i}")))
        .collect();
    for (t, text) in &lines {
        posted.push(Posted {
            labels: labels(job, 0, "burst", Stream::Stdout),
            time_ns: *t,
            text: text.clone(),
        });
    }
    batches.push(f.batch_at(&lines));
    server.post_ok(&request(batches));
    posted.sort_by_key(|p| p.time_ns);
    posted
}

/// A GET as Grafana's backend sends it: the query string as given, and
/// its encoding-flags header.
fn loki_get(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, String, String) {
    let url = reqwest::Url::parse_with_params(&format!("{}{path}", server.url), params)
        .expect("a valid URL");
    let resp = http_client(Some(Duration::from_secs(120)))
        .get(url)
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .header("X-Query-Tags", "Source=logvolhist")
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, resp.text().expect("a body"))
}

fn loki_json(server: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, _, body) = loki_get(server, path, params);
    assert_eq!(status, 200, "GET {path} {params:?}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(v["status"], "success", "{v}");
    v
}

/// A 400 in Loki's form: plain text naming the problem.
fn loki_refuses(server: &Server, path: &str, params: &[(&str, &str)], names: &str) {
    let (status, content_type, body) = loki_get(server, path, params);
    assert_eq!(status, 400, "GET {path} {params:?}: {body}");
    assert!(
        content_type.starts_with("text/plain"),
        "{content_type}: {body}"
    );
    assert!(
        body.contains(names),
        "GET {params:?}: '{names}' not in: {body}"
    );
}

/// A `streams` answer's lines, checked against Loki's shape on the way:
/// categorized 3-tuples (`{}`), nanosecond strings, values in `direction`
/// order within each stream, streams sorted by their labels.
fn stream_lines(v: &Value, backward: bool) -> Vec<Posted> {
    let data = &v["data"];
    assert_eq!(data["resultType"], "streams", "{v}");
    assert_eq!(data["encodingFlags"], json!(["categorize-labels"]), "{v}");
    assert!(data["stats"]["summary"].is_object(), "{v}");
    let mut out = Vec::new();
    let mut keys = Vec::new();
    for s in data["result"].as_array().expect("result array") {
        let labels: BTreeMap<String, String> =
            serde_json::from_value(s["stream"].clone()).expect("labels of strings");
        keys.push(
            labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{v}\""))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let mut times = Vec::new();
        for value in s["values"].as_array().expect("values") {
            let value = value.as_array().expect("a tuple");
            assert_eq!(
                value.len(),
                3,
                "categorize-labels: three elements: {value:?}"
            );
            assert_eq!(value[2], json!({}), "no metadata: {value:?}");
            let t: i64 = value[0]
                .as_str()
                .expect("time as a string")
                .parse()
                .expect("nanoseconds");
            times.push(t);
            out.push(Posted {
                labels: labels.clone(),
                time_ns: t,
                text: value[1].as_str().expect("line").to_owned(),
            });
        }
        let mut sorted = times.clone();
        sorted.sort();
        if backward {
            sorted.reverse();
        }
        assert_eq!(
            times, sorted,
            "values in direction order (backward: {backward})"
        );
    }
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "streams sorted by their labels");
    out.sort_by_key(|p| p.time_ns);
    out
}

/// A matrix answer as (labels, [(seconds, value)]), shape checked.
fn matrix(v: &Value) -> BTreeMap<BTreeMap<String, String>, Vec<(f64, String)>> {
    assert_eq!(v["data"]["resultType"], "matrix", "{v}");
    assert!(
        v["data"].get("encodingFlags").is_none(),
        "metric answers have no flags: {v}"
    );
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().expect("result") {
        let metric: BTreeMap<String, String> =
            serde_json::from_value(s["metric"].clone()).expect("metric labels");
        let points = s["values"]
            .as_array()
            .expect("values")
            .iter()
            .map(|p| {
                let t = p[0].as_f64().expect("time as a number of seconds");
                let v = p[1].as_str().expect("value as a string").to_owned();
                (t, v)
            })
            .collect();
        out.insert(metric, points);
    }
    out
}

/// For t = start, start + step, … ≤ end: the lines of `posted` that
/// `keep` takes in (t - range, t], grouped by `group`; points with none
/// left out, values made by `value`.
fn expected_windows(
    posted: &[Posted],
    (start, end, step, range): (i64, i64, i64, i64),
    keep: impl Fn(&Posted) -> bool,
    group: impl Fn(&Posted) -> BTreeMap<String, String>,
    value: impl Fn(usize) -> String,
) -> BTreeMap<BTreeMap<String, String>, Vec<(f64, String)>> {
    let mut out: BTreeMap<BTreeMap<String, String>, Vec<(f64, String)>> = BTreeMap::new();
    let groups: std::collections::BTreeSet<_> =
        posted.iter().filter(|p| keep(p)).map(&group).collect();
    for g in groups {
        let mut t = start;
        while t <= end {
            let n = posted
                .iter()
                .filter(|p| keep(p) && group(p) == g && p.time_ns > t - range && p.time_ns <= t)
                .count();
            if n > 0 {
                out.entry(g.clone())
                    .or_default()
                    .push(((t / MS) as f64 / 1000.0, value(n)));
            }
            t += step;
        }
    }
    out
}

#[test]
fn queries_and_metadata() {
    let (_dir, server) = Server::in_temp_dir(None);
    let base = (cblogs_core::time::now_ns() / S - 600) * S;
    let posted = post_lines(&server, base);
    // Part of it in the index, the rest only in memory.
    server.flush();
    let ns = |t: i64| t.to_string();
    let (start, end) = (ns(base), ns(base + 30 * S));

    // The health check ("Save & test"), byte for byte as Grafana sends it.
    let url = format!(
        "{}/loki/api/v1/query?direction=backward&query=vector%281%29%2Bvector%281%29&time=4000000000",
        server.url
    );
    let health: Value = http_client(None)
        .get(url)
        .header("X-Loki-Response-Encoding-Flags", "categorize-labels")
        .send()
        .expect("health check")
        .json()
        .expect("JSON");
    assert_eq!(health["status"], "success", "{health}");
    assert_eq!(health["data"]["resultType"], "vector", "{health}");
    let result = health["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 1, "{health}");
    assert_eq!(result[0]["metric"], json!({}), "{health}");
    assert_eq!(
        result[0]["value"][0].as_f64(),
        Some(4_000_000_000.0),
        "{health}"
    );
    assert_eq!(result[0]["value"][1], "2", "{health}");

    let hello = |p: &Posted| p.labels["job"] == "hello";
    let in_range = |p: &Posted, from: i64, to: i64| (from..to).contains(&p.time_ns);

    // Backward (Grafana's default): the newest 50 lines, newest first.
    let v = loki_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("direction", "backward"),
            ("end", &end),
            ("limit", "50"),
            ("query", r#"{job="hello"}"#),
            ("start", &start),
            ("step", "1000ms"),
        ],
    );
    let want: Vec<Posted> = posted
        .iter()
        .filter(|p| hello(p) && in_range(p, base, base + 30 * S))
        .cloned()
        .collect();
    assert_eq!(stream_lines(&v, true), want[want.len() - 50..], "newest 50");

    // A burst of 5,000 lines within 10 ms: the newest 100 found by
    // cutting the bucket that holds them again.
    let v = loki_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("direction", "backward"),
            ("end", &end),
            ("limit", "100"),
            ("query", r#"{job=~"bur.+", stream!="stderr"}"#),
            ("start", &start),
            ("step", "1000ms"),
        ],
    );
    let burst: Vec<Posted> = posted
        .iter()
        .filter(|p| p.labels["job"] == "burst")
        .cloned()
        .collect();
    assert_eq!(
        stream_lines(&v, true),
        burst[burst.len() - 100..],
        "newest 100 of the burst"
    );

    // Ending now: the lines are 10 minutes back, past the first 5
    // minutes looked at; the window grows until it holds them.
    let now = ns(cblogs_core::time::now_ns());
    let v = loki_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{job="other"} |= "ERROR""#),
            ("start", &start),
            ("end", &now),
            ("limit", "10"),
        ],
    );
    let errors: Vec<Posted> = posted
        .iter()
        .filter(|p| p.labels["job"] == "other" && p.text.contains("ERROR"))
        .cloned()
        .collect();
    assert_eq!(
        stream_lines(&v, true),
        errors[errors.len() - 10..],
        "newest 10 errors"
    );

    // Forward, every line filter: the oldest 20, oldest first.
    let query = r#"{job=~"hello|other", instance!="7"} |= "request" != "served" |~ "slow request [0-9]*5\\b" !~ "(?i)REQUEST 1\\d5\\b""#;
    let v = loki_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("direction", "forward"),
            ("end", &end),
            ("limit", "20"),
            ("query", query),
            ("start", &start),
            ("step", "1000ms"),
        ],
    );
    let matches = |p: &Posted| {
        let t = &p.text;
        let n: Option<i64> = t
            .strip_prefix("WARN slow request ")
            .and_then(|n| n.parse().ok());
        p.labels["job"] != "burst"
            && t.contains("request")
            && !t.contains("served")
            && n.is_some_and(|n| n % 10 == 5 && !(105..=195).contains(&n))
    };
    let want: Vec<Posted> = posted
        .iter()
        .filter(|p| matches(p) && in_range(p, base, base + 30 * S))
        .take(20)
        .cloned()
        .collect();
    assert_eq!(want.len(), 20, "the test's own lines");
    assert_eq!(
        stream_lines(&v, false),
        want,
        "oldest 20 matching every filter"
    );

    // The volume histogram, as Grafana's frontend writes it ($__auto = 1s).
    let window = (base, base + 30 * S, S, S);
    let v = loki_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("direction", "backward"),
            ("end", &end),
            ("limit", "1000"),
            (
                "query",
                r#"sum by (level, detected_level) (count_over_time({job="hello"} | drop __error__[1s]))"#,
            ),
            ("start", &start),
            ("step", "1000ms"),
        ],
    );
    let want = expected_windows(
        &posted,
        window,
        hello,
        |_| BTreeMap::new(),
        |n| n.to_string(),
    );
    assert_eq!(
        want.values().map(Vec::len).sum::<usize>(),
        30,
        "the test's own lines"
    );
    assert_eq!(matrix(&v), want, "volume");

    // One series per stream: windows of 5 s every 2 s (overlapping).
    let v = loki_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"count_over_time({job="hello"}[5s])"#),
            ("start", &start),
            ("end", &end),
            ("step", "2"),
        ],
    );
    let want = expected_windows(
        &posted,
        (base, base + 30 * S, 2 * S, 5 * S),
        hello,
        |p| p.labels.clone(),
        |n| n.to_string(),
    );
    assert_eq!(want.len(), 2, "stdout and stderr");
    assert_eq!(matrix(&v), want, "count_over_time per stream");

    // rate, summed by stream, over every job.
    let v = loki_json(
        &server,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                r#"sum by (stream) (rate({job=~".+"} |= "ERROR" [10s]))"#,
            ),
            ("start", &start),
            ("end", &end),
            ("step", "10s"),
        ],
    );
    let want = expected_windows(
        &posted,
        (base, base + 30 * S, 10 * S, 10 * S),
        |p| p.text.contains("ERROR"),
        |p| [("stream".to_owned(), p.labels["stream"].clone())].into(),
        |n| (n as f64 / 10.0).to_string(),
    );
    assert_eq!(matrix(&v), want, "rate by stream");

    // An instant query.
    let at = base + 20 * S;
    let v = loki_json(
        &server,
        "/loki/api/v1/query",
        &[
            ("direction", "backward"),
            ("query", r#"sum(count_over_time({job="hello"}[10s]))"#),
            ("time", &ns(at)),
        ],
    );
    let n = posted
        .iter()
        .filter(|p| hello(p) && p.time_ns > at - 10 * S && p.time_ns <= at)
        .count();
    assert_eq!(v["data"]["resultType"], "vector", "{v}");
    assert_eq!(
        v["data"]["result"],
        json!([{"metric": {}, "value": [(at / MS) as f64 / 1000.0, n.to_string()]}]),
    );

    // The label browser: start and end as RFC 3339 too.
    let (from, to) = (
        cblogs_core::time::format_rfc3339(base - 60 * S),
        cblogs_core::time::format_rfc3339(base + 60 * S),
    );
    let range = [("start", from.as_str()), ("end", to.as_str())];
    let v = loki_json(&server, "/loki/api/v1/labels", &range);
    assert_eq!(
        v["data"],
        json!(["cluster", "env", "host", "instance", "job", "process", "role", "stream"])
    );
    let v = loki_json(&server, "/loki/api/v1/label/job/values", &range);
    assert_eq!(v["data"], json!(["burst", "hello", "other"]));
    let mut with_query = range.to_vec();
    with_query.push(("query", r#"{stream="stderr"}"#));
    let v = loki_json(&server, "/loki/api/v1/label/job/values", &with_query);
    assert_eq!(v["data"], json!(["hello"]));
    let v = loki_json(&server, "/loki/api/v1/label/nothing/values", &range);
    assert_eq!(v["data"], json!([]));
    // Outside the range, nothing.
    let v = loki_json(
        &server,
        "/loki/api/v1/label/job/values",
        &[("start", &ns(base - 120 * S)), ("end", &ns(base - 60 * S))],
    );
    assert_eq!(v["data"], json!([]));
    let mut series = range.to_vec();
    series.push(("match[]", r#"{job="hello"}"#));
    series.push(("match[]", r#"{job="other"}"#));
    let v = loki_json(&server, "/loki/api/v1/series", &series);
    let mut want: Vec<BTreeMap<String, String>> = posted
        .iter()
        .filter(|p| p.labels["job"] != "burst")
        .map(|p| p.labels.clone())
        .collect();
    want.sort();
    want.dedup();
    let got: Vec<BTreeMap<String, String>> =
        serde_json::from_value(v["data"].clone()).expect("label sets");
    assert_eq!(got, want, "series");
    let (status, _, body) = loki_get(
        &server,
        "/loki/api/v1/index/stats",
        &[
            ("query", r#"{job="hello"}"#),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert_eq!(status, 200, "{body}");
    let stats: Value = serde_json::from_str(&body).expect("JSON");
    let entries = posted
        .iter()
        .filter(|p| hello(p) && in_range(p, base, base + 30 * S))
        .count();
    assert_eq!(stats["streams"], 2, "{stats}");
    assert_eq!(stats["entries"], entries, "{stats}");
    assert!(
        stats["bytes"].as_u64().unwrap_or(0) > entries as u64 * 10,
        "{stats}"
    );
    assert!(stats["chunks"].is_u64(), "{stats}");

    // Errors: Loki's plain text, naming what is wrong.
    let q = |query: &'static str| {
        vec![
            ("query", query),
            ("start", start.as_str()),
            ("end", end.as_str()),
        ]
    };
    let path = "/loki/api/v1/query_range";
    loki_refuses(
        &server,
        path,
        &q(r#"{job="hello"} | json"#),
        "unsupported LogQL feature: the pipeline stage '| json'",
    );
    loki_refuses(
        &server,
        path,
        &q(r#"topk(3, count_over_time({job="hello"}[1m]))"#),
        "the function 'topk'",
    );
    loki_refuses(
        &server,
        path,
        &q(r#"{job="hello""#),
        "parse error at line 1, col 13",
    );
    loki_refuses(
        &server,
        path,
        &q(r#"{job="hello"} |~ "(""#),
        "invalid regex",
    );
    loki_refuses(
        &server,
        "/loki/api/v1/query",
        &q(r#"{job="hello"}"#),
        "log queries are not supported as an instant query type",
    );
    let mut zero = q(r#"{job="hello"}"#);
    zero.push(("limit", "0"));
    loki_refuses(&server, path, &zero, "limit must be a positive value");
    let mut fine = q(r#"count_over_time({job="hello"}[1s])"#);
    fine.push(("step", "1ms"));
    loki_refuses(
        &server,
        path,
        &fine,
        "exceeded maximum resolution of 11000 points",
    );
    loki_refuses(
        &server,
        path,
        &[("query", r#"{job="hello"}"#), ("start", "yesterday")],
        "invalid start 'yesterday'",
    );
    loki_refuses(
        &server,
        path,
        &[("query", r#"{job="hello"}"#), ("direction", "up")],
        "invalid direction 'up'",
    );
}

#[test]
fn bearer_token_is_the_read_role() {
    let token = "grafana-read-token-0123456789";
    let config = format!(
        "[auth]\nread_tokens = [\"{token}\"]\ningest_tokens = [\"ingest-token-0123456789ab\"]\n"
    );
    let (_dir, server) = Server::in_temp_dir(Some(&config));
    let url = format!("{}/loki/api/v1/labels", server.url);
    let client = http_client(None);
    let none = client.get(&url).send().expect("GET");
    assert_eq!(none.status().as_u16(), 401);
    let wrong = client
        .get(&url)
        .bearer_auth("not-the-token-0123456789")
        .send()
        .expect("GET");
    assert_eq!(wrong.status().as_u16(), 401);
    let ok = client.get(&url).bearer_auth(token).send().expect("GET");
    assert_eq!(ok.status().as_u16(), 200);
    let body: Value = ok.json().expect("JSON");
    assert_eq!(body, json!({"status": "success", "data": []}));
}

#[test]
fn live_tail_over_a_websocket() {
    let stack = Stack::new(None);
    let task = stack.task(("www-data", "prod", "hello"), 0);
    let mut run = task.process("hello", 0);
    let first: Vec<String> = (0..20).map(text_of).collect();
    run.append_lines(Stream::Stdout, &first);
    let _shipper = stack.shipper();
    wait_until("the first lines", Duration::from_secs(60), || {
        let lines = stack.server.try_all_lines("www-data/prod/hello")?;
        (lines.len() == first.len()).then_some(())
    });

    let query = r#"{job="hello", stream="stdout"} |= "ERROR""#;
    let url = reqwest::Url::parse_with_params(
        &format!(
            "{}/loki/api/v1/tail",
            stack.server.url.replace("http://", "ws://")
        ),
        &[("query", query)],
    )
    .expect("URL");
    let (mut ws, _) = tungstenite::connect(url.as_str()).expect("a WebSocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
    }
    let mut received = Vec::new();
    // Reads messages until `last` arrives (at least `want` lines).
    let mut read_until =
        |received: &mut Vec<(BTreeMap<String, String>, i64, String)>, want: usize, last: &str| {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !(received.len() >= want && received.last().is_some_and(|r| r.2 == last)) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "lines missing after 60 s: {received:?}"
                );
                let msg = match ws.read() {
                    Ok(tungstenite::Message::Text(t)) => t,
                    Ok(_) => continue,
                    Err(tungstenite::Error::Io(e))
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        continue
                    }
                    Err(e) => panic!("the tail ended: {e}"),
                };
                let v: Value = serde_json::from_str(msg.as_str()).expect("a JSON message");
                for s in v["streams"].as_array().expect("streams") {
                    let labels: BTreeMap<String, String> =
                        serde_json::from_value(s["stream"].clone()).expect("labels");
                    for value in s["values"].as_array().expect("values") {
                        assert_eq!(value.as_array().map(Vec::len), Some(2), "{value}");
                        let t: i64 = value[0].as_str().expect("ns").parse().expect("ns");
                        received.push((
                            labels.clone(),
                            t,
                            value[1].as_str().expect("line").to_owned(),
                        ));
                    }
                }
            }
        };
    let errors = |lines: &[String]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l.contains("ERROR"))
            .cloned()
            .collect()
    };
    // The backlog: every ERROR line so far, oldest first.
    let backlog = errors(&first);
    read_until(&mut received, backlog.len(), &backlog[backlog.len() - 1]);
    let texts: Vec<String> = received.iter().map(|r| r.2.clone()).collect();
    assert_eq!(texts, backlog, "the backlog");
    assert_eq!(
        received[0].0,
        labels("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout)
    );
    // New lines: each matching one once, in order, nothing else.
    let more: Vec<String> = (20..200).map(text_of).collect();
    for chunk in more.chunks(30) {
        run.append_lines(Stream::Stdout, chunk);
        run.append_lines(Stream::Stderr, chunk);
    }
    // A last line after them: a copy of any line before it would come
    // before it.
    let last = "ERROR the last line".to_string();
    run.append_lines(Stream::Stdout, std::slice::from_ref(&last));
    let want: Vec<String> = backlog
        .iter()
        .cloned()
        .chain(errors(&more))
        .chain([last.clone()])
        .collect();
    read_until(&mut received, want.len(), &last);
    let texts: Vec<String> = received.iter().map(|r| r.2.clone()).collect();
    assert_eq!(texts, want, "each matching line once, in order");
    let times: Vec<i64> = received.iter().map(|r| r.1).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted);
}
