//! The limits that keep one client from taking the service from the others,
//! on the real binaries: each refusal has its status (413, 429, 503) and a
//! JSON error naming the setting to raise, 429 and 503 say when to come
//! back (`Retry-After`), nothing accepted before is lost, and `/metrics`
//! (cblogsd's and the shipper's) counts what happened.
//!
//! (A body over the default `ingest.max_body_bytes` and a line over the
//! default `ingest.max_line_bytes` are in bad_input.rs; here the settings are
//! set small, to show they are the ones in force.)

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cblogs_core::{LineView, Stream};
use cblogs_testkit::*;
use serde_json::Value;

const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// cblogsd's configuration: small blocks and a quick committer (as
/// [`SMALL_BLOCKS`]), with `sections` (TOML without a `[storage]` table).
fn config(sections: &str) -> String {
    format!("{SMALL_BLOCKS}{sections}")
}

/// An answer: status, `Retry-After` if any, and the body as JSON (or as a
/// string when it is not JSON).
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<u64>,
    body: Value,
}

impl Answer {
    fn read(resp: reqwest::blocking::Response) -> Answer {
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get(reqwest::header::RETRY_AFTER).map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("Retry-After {v:?} is not a number of seconds"))
        });
        let text = resp.text().expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            retry_after,
            body,
        }
    }

    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    /// Asserts the status, and an error message that names `setting`.
    fn assert_refused(&self, status: u16, setting: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.error().contains(setting),
            "the error should name {setting}: {self:?}"
        );
    }
}

fn get(server: &Server, path: &str, params: &[(&str, &str)]) -> Answer {
    let resp = http_client(None)
        .get(format!("{}{path}", server.url))
        .query(params)
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    Answer::read(resp)
}

fn post_ingest(server: &Server, body: Vec<u8>, zstd: bool) -> Answer {
    let mut req = http_client(None)
        .post(format!("{}/api/v1/ingest", server.url))
        .header("Content-Type", "application/json")
        .body(body);
    if zstd {
        req = req.header("Content-Encoding", "zstd");
    }
    Answer::read(req.send().expect("POST /api/v1/ingest"))
}

fn post_request(server: &Server, req: &cblogs_core::wire::IngestRequest) -> Answer {
    post_ingest(server, serde_json::to_vec(req).expect("json"), false)
}

/// One series of a Prometheus text exposition.
#[derive(Debug)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses Prometheus/OpenMetrics text (`name{k="v",…} value`).
fn parse_metrics(text: &str) -> Vec<Series> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("metrics line without a value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("metrics value not a number: {line}"));
        let (name, labels) = match series.find('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some(i) => (
                series[..i].to_owned(),
                parse_labels(&series[i + 1..series.len() - 1]),
            ),
        };
        out.push(Series {
            name,
            labels,
            value,
        });
    }
    out
}

fn parse_labels(s: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return labels;
        }
        assert_eq!(
            chars.next(),
            Some('"'),
            "label {key} without a quoted value"
        );
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => {}
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
}

/// The value of the series `name` whose labels include `labels`.
fn metric(rows: &[Series], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    rows.iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

fn server_metrics(server: &Server) -> Vec<Series> {
    let resp = http_client(None)
        .get(format!("{}/metrics", server.url))
        .send()
        .expect("GET /metrics");
    assert_eq!(resp.status().as_u16(), 200, "GET /metrics");
    parse_metrics(&resp.text().expect("metrics text"))
}

/// `n` lines `"{tag} {i:05} …"`, each `len` bytes long.
fn numbered(tag: &str, range: std::ops::Range<usize>, len: usize) -> Vec<String> {
    range
        .map(|i| {
            let mut l = format!("{tag} {i:05} ");
            while l.len() < len {
                l.push_str("lorem ipsum dolor ");
            }
            l.truncate(len);
            l
        })
        .collect()
}

fn texts(lines: &[LineView]) -> Vec<&str> {
    lines.iter().map(|l| l.text.as_str()).collect()
}

fn hello(instance: u32) -> SourceFile {
    SourceFile::of(
        "devcluster/www-data/prod/hello",
        instance,
        "hello",
        Stream::Stdout,
    )
}

#[test]
fn ingest_size_limits_are_named_and_nothing_accepted_is_lost() {
    let (_dir, server) = Server::in_temp_dir(Some(&config(
        "[ingest]\nmax_body_bytes = 200000\nmax_lines_per_request = 10\nmax_line_bytes = 1000\n",
    )));
    let mut f0 = hello(0);
    let mut f1 = hello(1);
    server.post_ok(&request(vec![f0.batch(&["good before"])]));

    // 11 lines over two batches: 413 naming the setting, nothing stored.
    let (mut g0, mut g1) = (f0.clone_at_offset(), f1.clone_at_offset());
    let too_many = request(vec![
        g0.batch(&numbered("too many", 0..6, 20)),
        g1.batch(&numbered("too many", 6..11, 20)),
    ]);
    post_request(&server, &too_many).assert_refused(413, "ingest.max_lines_per_request");
    // Exactly at the limit is fine.
    let at_limit = request(vec![
        f0.batch(&numbered("at limit", 0..5, 20)),
        f1.batch(&numbered("at limit", 5..10, 20)),
    ]);
    assert_eq!(server.post_ok(&at_limit)["accepted"].as_u64(), Some(10));

    // A plain body over ingest.max_body_bytes, and a small zstd body that
    // decompresses past it: 413 both, naming the setting.
    let big = serde_json::to_vec(&request(vec![f0.clone_at_offset().batch(&numbered(
        "big",
        0..5,
        999,
    ))]))
    .expect("json");
    let mut padded = big.clone();
    padded.extend(std::iter::repeat_n(b' ', 200_001));
    assert!(padded.len() > 200_000);
    post_ingest(&server, padded.clone(), false).assert_refused(413, "ingest.max_body_bytes");
    let bomb = zstd::bulk::compress(&padded, 19).expect("zstd");
    assert!(bomb.len() < 10_000, "{} bytes compressed", bomb.len());
    post_ingest(&server, bomb, true).assert_refused(413, "ingest.max_body_bytes");
    // The same lines in a body within the limit are taken.
    let a = post_ingest(&server, big, false);
    assert_eq!(a.status, 200, "{a:?}");
    f0.offset += 5 * 1000;

    // A line over ingest.max_line_bytes is stored cut at it, and marked.
    let long = "x".repeat(5000);
    let a = post_request(&server, &request(vec![f0.batch(&[long.as_str(), "short"])]));
    assert_eq!(
        (
            a.status,
            a.body["accepted"].as_u64(),
            a.body["cut"].as_u64()
        ),
        (200, Some(2), Some(1)),
        "{a:?}"
    );
    server.post_ok(&request(vec![f1.batch(&["good after"])]));

    let lines = server.all_lines("www-data/prod/hello");
    let mut want: Vec<String> = vec!["good before".into()];
    want.extend(numbered("at limit", 0..10, 20));
    want.extend(numbered("big", 0..5, 999));
    want.push("x".repeat(1000));
    want.push("short".into());
    want.push("good after".into());
    let mut got: Vec<&str> = texts(&lines);
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want, "exactly the accepted lines");
    let cut: Vec<bool> = lines
        .iter()
        .filter(|l| l.text.starts_with('x'))
        .map(|l| l.flags.cut)
        .collect();
    assert_eq!(cut, [true], "the long line is marked cut");
    assert!(lines
        .iter()
        .filter(|l| !l.text.starts_with('x'))
        .all(|l| !l.flags.cut));
    let out = server.cli(&["tail", "www-data/prod/hello/0", "-n", "2"]);
    assert!(
        out.lines().iter().any(|l| l.ends_with(" [cut]")),
        "{}",
        out.stdout
    );

    // What /metrics counted.
    let m = server_metrics(&server);
    let refused = |reason| {
        metric(
            &m,
            "cblogs_requests_refused_total",
            &[("endpoint", "ingest"), ("reason", reason)],
        )
    };
    assert_eq!(refused("too_many_lines"), Some(1.0));
    assert_eq!(refused("too_large"), Some(2.0));
    assert_eq!(
        metric(&m, "cblogs_ingest_lines_total", &[]),
        Some(want.len() as f64)
    );
}

/// A copy of a file's position, for a batch that will never be sent.
trait CloneAtOffset {
    fn clone_at_offset(&self) -> SourceFile;
}

impl CloneAtOffset for SourceFile {
    fn clone_at_offset(&self) -> SourceFile {
        let mut f = SourceFile::new(self.source.clone());
        f.offset = self.offset;
        f
    }
}

/// Lines of `job` as (task id, process, run, stream) → (offset, text).
fn by_stream(lines: &[LineView]) -> BTreeMap<StreamKey, Vec<(u64, String)>> {
    let mut m: BTreeMap<StreamKey, Vec<(u64, String)>> = BTreeMap::new();
    for l in lines {
        m.entry((l.task_id.clone(), l.process.clone(), l.run, l.stream))
            .or_default()
            .push((l.offset, l.text.clone()));
    }
    m
}

fn written(runs: &[&ProcessRun]) -> BTreeMap<StreamKey, Vec<(u64, String)>> {
    let mut m = BTreeMap::new();
    for r in runs {
        for s in BOTH {
            let lines: Vec<(u64, String)> = r
                .model(s)
                .lines
                .iter()
                .map(|w| {
                    let (offset, text, _, _) = w.view();
                    (offset, text)
                })
                .collect();
            if !lines.is_empty() {
                m.insert(r.key(s), lines);
            }
        }
    }
    m
}

#[test]
fn ingest_rate_limit_answers_429_and_the_shipper_backs_off_and_delivers_everything() {
    let (dir, server) = Server::in_temp_dir(Some(&config(
        "[ingest]\nmax_bytes_per_sec_per_token = 20000\n",
    )));
    let direct = |i| {
        SourceFile::of(
            "devcluster/www-data/prod/direct",
            i,
            "direct",
            Stream::Stdout,
        )
    };
    let mut f = direct(0);

    // One second's allowance goes in at once (and more: the bucket may go
    // into debt); the next request is refused until it is paid. A debt of
    // 2 s, so that the next request is refused even when the first one's
    // fsync is slow on a loaded machine.
    let first = request(vec![f.batch(&numbered("direct", 0..60, 1000))]);
    let sent = Instant::now();
    let a = post_request(&server, &first);
    assert_eq!(a.status, 200, "{a:?}");
    let second = request(vec![f.batch(&numbered("direct", 60..61, 1000))]);
    let refused = post_request(&server, &second);
    refused.assert_refused(429, "ingest.max_bytes_per_sec_per_token");
    let wait = refused.retry_after.expect("a 429 says when to retry");
    // 2 s less the time since the first request was let in, rounded up:
    // 1 when its fsync took over a second.
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        server.all_lines("www-data/prod/direct").len(),
        60,
        "the refused request stored nothing, the accepted one is whole"
    );
    // Once the debt is paid, the same request is taken.
    wait_until("the rate limit to let a request in", DEADLINE, || {
        let a = post_request(&server, &second);
        match a.status {
            200 => Some(()),
            429 => None,
            _ => panic!("{a:?}"),
        }
    });
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "60000 bytes at 20000 bytes/s leave a debt of 2 s, taken in {took:?}"
    );
    assert_eq!(server.all_lines("www-data/prod/direct").len(), 61);

    // The real shipper, under that limit, with 240 KB in four files: it is
    // answered 429 many times, waits as told, and delivers every line once.
    let agent = Agent::new(&dir.path().join("agent"));
    let mut runs: Vec<ProcessRun> = (0..2)
        .map(|i| {
            agent
                .task("www-data", "prod", "hello", i)
                .process("hello", 0)
        })
        .collect();
    for (i, run) in runs.iter_mut().enumerate() {
        for (j, s) in BOTH.into_iter().enumerate() {
            let tag = format!("shipped {i}/{j}");
            for chunk in numbered(&tag, 0..600, 100).chunks(50) {
                run.append_lines(s, chunk);
            }
        }
    }
    let shipper_config =
        SHIPPER_FAST.replace("batch_max_bytes = 1048576", "batch_max_bytes = 16384");
    let mut shipper = Shipper::start_with_status_endpoint(
        &agent,
        &dir.path().join("shipper-state"),
        &server.url,
        &shipper_config,
    );
    let run_refs: Vec<&ProcessRun> = runs.iter().collect();
    let want = written(&run_refs);
    let total: usize = want.values().map(Vec::len).sum();
    let started = Instant::now();
    let end = started + Duration::from_secs(50);
    loop {
        shipper.assert_running();
        let got = server
            .try_all_lines("www-data/prod/hello")
            .unwrap_or_default();
        assert!(
            got.len() <= total,
            "{} lines stored, {total} written",
            got.len()
        );
        if got.len() == total {
            assert!(by_stream(&got) == want, "every line once, in order");
            break;
        }
        assert!(
            Instant::now() < end,
            "timed out: {} of {total} lines stored; shipper log:\n{}",
            got.len(),
            shipper.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    eprintln!("240 KB at 20000 bytes/s took {took:?}");
    assert!(
        took >= Duration::from_secs(8),
        "240 KB of lines at 20000 bytes/s cannot arrive in {took:?}"
    );

    // The shipper's /metrics: the 429s, every line acknowledged, no lag.
    let m = wait_until("the shipper's lag to reach 0", DEADLINE, || {
        let m = parse_metrics(&shipper.status_get("/metrics"));
        (metric(&m, "cblogs_shipper_lag_bytes_total", &[]) == Some(0.0)).then_some(m)
    });
    let retries_429 = metric(&m, "cblogs_shipper_retries_total", &[("reason", "429")]);
    assert!(
        retries_429.is_some_and(|n| n > 0.0),
        "429 retries {retries_429:?}"
    );
    assert_eq!(
        metric(&m, "cblogs_shipper_lines_acked_total", &[]),
        Some(total as f64)
    );
    for run in &runs {
        for s in BOTH {
            let path = run.path(s);
            let path = path.to_str().expect("utf-8 path");
            assert_eq!(
                metric(&m, "cblogs_shipper_lag_bytes", &[("path", path)]),
                Some(0.0),
                "lag of {path}"
            );
            assert_eq!(
                metric(&m, "cblogs_shipper_acked_offset_bytes", &[("path", path)]),
                Some(run.model(s).written as f64),
                "acked offset of {path}"
            );
        }
    }
    // And cblogsd counted its refusals.
    let sm = server_metrics(&server);
    let rate = metric(
        &sm,
        "cblogs_requests_refused_total",
        &[("endpoint", "ingest"), ("reason", "rate")],
    );
    assert!(
        rate.is_some_and(|n| n >= 1.0 + retries_429.unwrap_or(0.0)),
        "refused for rate {rate:?}, the shipper retried {retries_429:?} after a 429"
    );
}

/// A connection with a tiny receive window: a response the test does not
/// read soon fills it, and the server's writes block.
fn small_window_connection(port: u16) -> TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns; the
    // pointers are to live locals of the right sizes.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let size: libc::c_int = 4096;
        let rc = libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

/// Starts `GET path_and_query` and reads only the answer's head (status
/// line and headers); the body is left unread.
fn start_unread_get(server: &Server, path_and_query: &str) -> (TcpStream, String) {
    let mut s = small_window_connection(server.port);
    write!(
        s,
        "GET {path_and_query} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
        server.port
    )
    .expect("send the request");
    s.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read the answer's head");
        assert_eq!(n, 1, "the connection closed before the head ended");
        head.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

#[test]
fn search_max_concurrent_busy_answers_503_and_the_cli_says_so() {
    let (_dir, server) = Server::in_temp_dir(Some("[search]\nmax_concurrent = 1\n"));
    // 3000 lines of "a a a …": every line matches `a` 500 times, so the
    // answer (each match's byte range, with its line) is some 20 MB.
    let mut f = hello(0);
    let line = "a ".repeat(500);
    for _ in 0..6 {
        let lines = vec![line.as_str(); 500];
        server.post_ok(&request(vec![f.batch(&lines)]));
    }
    server.post_ok(&request(vec![f.batch(&["needle"])]));

    // A search whose answer is not read holds the only slot.
    let (held, head) = start_unread_get(&server, "/api/v1/search?pattern=a&limit=0");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_searches_running", &[]), Some(1.0));

    // Another search, or a histogram: 503, Retry-After, the setting named.
    let a = get(&server, "/api/v1/search", &[("pattern", "needle")]);
    a.assert_refused(503, "search.max_concurrent");
    assert!(a.retry_after.is_some_and(|s| s >= 1), "{a:?}");
    let a = get(&server, "/api/v1/histogram", &[("pattern", "needle")]);
    a.assert_refused(503, "search.max_concurrent");
    assert!(a.retry_after.is_some(), "{a:?}");
    // The CLI says so, and exits 2 (an error, not "no match").
    let out = server.cli(&["grep", "needle"]);
    assert_eq!(out.code, 2, "stdout {} stderr {}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("search.max_concurrent") && out.stdout.is_empty(),
        "{}",
        out.stderr
    );
    // Other reads do not wait for a search slot.
    let out = server.cli(&["tail", "hello", "-n", "1", "--output", "raw"]);
    assert_eq!(out.lines(), ["needle"], "{}", out.stderr);

    // The held search ends when its client goes away; searches work again.
    drop(held);
    let out = wait_until("the search slot to be given back", DEADLINE, || {
        let out = server.cli(&["grep", "needle", "--output", "raw"]);
        (out.code != 2).then_some(out)
    });
    assert_eq!(
        (out.code, out.lines()),
        (0, vec!["needle"]),
        "{}",
        out.stderr
    );
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_searches_running", &[]), Some(0.0));
    assert!(
        metric(
            &m,
            "cblogs_requests_refused_total",
            &[("endpoint", "read"), ("reason", "search_limit")]
        )
        .is_some_and(|n| n >= 3.0),
        "refusals counted"
    );
}

/// A search's NDJSON answer, as events.
fn search_events(server: &Server, params: &[(&str, &str)]) -> Vec<Value> {
    let resp = http_client(None)
        .get(format!("{}/api/v1/search", server.url))
        .query(params)
        .send()
        .expect("GET /api/v1/search");
    assert_eq!(resp.status().as_u16(), 200);
    resp.text()
        .expect("body")
        .lines()
        .map(|l| serde_json::from_str(l).expect("an event per line"))
        .collect()
}

#[test]
fn search_max_results_ends_a_page_and_the_cli_follows_the_cursor() {
    let (_dir, server) = Server::in_temp_dir(Some(&config("[search]\nmax_results = 5\n")));
    // 25 matching lines among others, in two sources; six of them (in
    // both sources) share one time, across a page boundary; the first half
    // is flushed to the index.
    let (mut f0, mut f1) = (hello(0), hello(1));
    let mut want: Vec<String> = Vec::new();
    for round in 0..4 {
        let m0 = numbered(&format!("match r{round} i0"), 0..3, 30);
        let m1 = numbered(&format!("match r{round} i1"), 0..3, 30);
        let mut b0 = f0.batch(&[m0[0].as_str(), "other", &m0[1], "other", &m0[2]]);
        let mut b1 = f1.batch(&[m1[0].as_str(), "other", &m1[1], &m1[2]]);
        if round == 1 {
            // Every line of this round at one time, in both sources.
            let t = b0.lines[4].time_ns;
            for l in b0.lines.iter_mut().chain(b1.lines.iter_mut()) {
                l.time_ns = t;
            }
        }
        server.post_ok(&request(vec![b0]));
        server.post_ok(&request(vec![b1]));
        want.extend(m0);
        want.extend(m1);
        if round == 1 {
            server.flush();
        }
    }
    let extra = numbered("match late", 0..1, 30);
    server.post_ok(&request(vec![f1.batch(&extra)]));
    want.extend(extra);
    assert_eq!(want.len(), 25);

    // The API: a page of 5 lines, then more=true with a cursor.
    let events = search_events(&server, &[("pattern", "^match"), ("limit", "0")]);
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["start", "line", "line", "line", "line", "line", "summary"],
        "{events:?}"
    );
    let summary = &events[6];
    assert_eq!(summary["more"], true, "{summary}");
    assert_eq!(summary["matched"], 5, "{summary}");
    let cursor = summary["next_cursor"].as_str().expect("next_cursor");
    // The next page starts where the first ended.
    let next = search_events(
        &server,
        &[("pattern", "^match"), ("limit", "0"), ("cursor", cursor)],
    );
    let page = |events: &[Value]| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["type"] == "line")
            .map(|e| e["text"].as_str().unwrap().to_owned())
            .collect()
    };
    let (p1, p2) = (page(&events), page(&next));
    assert_eq!(p2.len(), 5);
    assert!(p1.iter().all(|l| !p2.contains(l)), "{p1:?} then {p2:?}");

    // `--limit 0`: every matching line, in time order, once each.
    let out = server.cli(&["grep", "^match", "--limit", "0", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("more lines match"), "{}", out.stderr);
    let got: Vec<LineView> = out
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).expect("a line as JSON"))
        .collect();
    let times: Vec<i64> = got.iter().map(|l| l.time_ns).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "in time order: {times:?}"
    );
    let mut texts: Vec<String> = got.iter().map(|l| l.text.clone()).collect();
    assert_eq!(&texts[..5], &p1[..], "the first page first");
    texts.sort();
    let mut sorted_want = want.clone();
    sorted_want.sort();
    assert_eq!(texts, sorted_want, "each matching line once");
    // Lines of distinct times keep the order they were sent in; the six
    // of one time come together.
    let shown: Vec<String> = got.iter().map(|l| l.text.clone()).collect();
    assert_eq!(shown[..6], want[..6]);
    assert_eq!(shown[12..], want[12..]);
    let mut tie: Vec<&String> = shown[6..12].iter().collect();
    tie.sort();
    let mut want_tie: Vec<&String> = want[6..12].iter().collect();
    want_tie.sort();
    assert_eq!(tie, want_tie);

    // `--limit 7`: the first 7, and a note that more match.
    let out = server.cli(&["grep", "^match", "--limit", "7", "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), shown[..7]);
    assert!(
        out.stderr.contains("--limit 7") && out.stderr.contains("more lines match"),
        "{}",
        out.stderr
    );
    // The default --limit (1000) is over max_results too: all 25.
    let out = server.cli(&["grep", "^match", "--output", "raw"]);
    assert_eq!(out.lines(), shown, "{}", out.stderr);
}

/// Opens `/api/v1/follow` for `job` and returns the open response.
fn open_follow(server: &Server, job: &str) -> Result<reqwest::blocking::Response, Answer> {
    let resp = http_client(None)
        .get(format!("{}/api/v1/follow", server.url))
        .query(&[("job", job), ("n", "1")])
        .send()
        .expect("GET /api/v1/follow");
    if resp.status().as_u16() == 200 {
        Ok(resp)
    } else {
        Err(Answer::read(resp))
    }
}

#[test]
fn follows_per_client_and_tail_lines_are_limited() {
    let (_dir, server) = Server::in_temp_dir(Some(&config(
        "[read]\nmax_follows_per_client = 2\nmax_tail_lines = 50\n",
    )));
    let mut f = hello(0);
    server.post_ok(&request(vec![f.batch(&numbered("line", 0..60, 20))]));

    // read.max_tail_lines: n over it is 413, naming it; at it is fine.
    let a = get(
        &server,
        "/api/v1/tail",
        &[("job", "www-data/prod/hello"), ("n", "51")],
    );
    a.assert_refused(413, "read.max_tail_lines");
    let a = get(
        &server,
        "/api/v1/tail",
        &[("job", "www-data/prod/hello"), ("n", "50")],
    );
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.body["lines"].as_array().map(Vec::len), Some(50));
    let out = server.cli(&["tail", "hello", "-n", "51"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(out.stderr.contains("read.max_tail_lines"), "{}", out.stderr);
    let a = get(
        &server,
        "/api/v1/follow",
        &[("job", "www-data/prod/hello"), ("n", "51")],
    );
    a.assert_refused(413, "read.max_tail_lines");

    // read.max_follows_per_client: two live tails, the third is 429.
    let first = open_follow(&server, "hello").expect("first follow");
    let second = open_follow(&server, "hello").expect("second follow");
    let refused = open_follow(&server, "hello").expect_err("a third follow");
    refused.assert_refused(429, "read.max_follows_per_client");
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_live_tails", &[]), Some(2.0));
    // The CLI says so too.
    let out = server.cli(&["tail", "-f", "hello", "-n", "1"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(
        out.stderr.contains("read.max_follows_per_client"),
        "{}",
        out.stderr
    );
    // The two open ones still get new lines.
    server.post_ok(&request(vec![f.batch(&["live line"])]));
    let (mut first, mut second) = (first, second);
    for resp in [&mut first, &mut second] {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("live line") {
            let n = resp.read(&mut buf).expect("read the follow stream");
            assert!(n > 0, "the follow stream ended");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    // Closing one gives its slot back (once the server sees it gone).
    drop(first);
    let closed = Instant::now();
    let third = wait_until("a follow slot to be given back", DEADLINE, || {
        open_follow(&server, "hello").ok()
    });
    eprintln!(
        "a follow slot came back {:?} after its client closed",
        closed.elapsed()
    );
    let refused = open_follow(&server, "hello").expect_err("over the limit again");
    refused.assert_refused(429, "read.max_follows_per_client");
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_live_tails", &[]), Some(2.0));
    drop((second, third));
    assert!(
        metric(
            &m,
            "cblogs_requests_refused_total",
            &[("endpoint", "read"), ("reason", "follow_limit")]
        )
        .is_some_and(|n| n >= 3.0),
        "follow refusals counted"
    );
}

#[test]
fn cblogsd_metrics_count_ingest_commits_queries_and_live_tails() {
    let (_dir, server) = Server::in_temp_dir(
        // Default blocks: the lines stay in open blocks (and the WAL)
        // until the flush.
        Some("[ingest]\nmax_lines_per_request = 100\n"),
    );
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_ingest_lines_total", &[]), Some(0.0));

    let (mut f0, mut f1) = (hello(0), hello(1));
    let mut sent = 0usize;
    for round in 0..10 {
        let l0 = numbered(&format!("r{round} i0"), 0..40, 80);
        let l1 = numbered(&format!("r{round} i1"), 0..30, 50);
        sent += l0.len() + l1.len();
        server.post_ok(&request(vec![f0.batch(&l0), f1.batch(&l1)]));
    }
    // Refused: too many lines (nothing of it counted as ingested).
    let mut g = hello(2);
    let big = request(vec![g.batch(&numbered("too many", 0..101, 10))]);
    post_request(&server, &big).assert_refused(413, "ingest.max_lines_per_request");
    // A resend of lines already held: acknowledged as duplicates.
    let mut again = hello(0);
    let dup = server.post_ok(&request(vec![again.batch(&numbered("r0 i0", 0..40, 80))]));
    assert_eq!(dup["duplicates"].as_u64(), Some(40), "{dup}");

    let m = server_metrics(&server);
    let wal = metric(&m, "cblogs_wal_bytes", &[]).expect("wal_bytes");
    assert!(wal > 0.0, "the WAL holds the lines not yet committed");
    let unindexed = metric(&m, "cblogs_unindexed_bytes", &[]).expect("unindexed_bytes");
    assert!(
        unindexed > 0.0,
        "lines in open blocks, not in the index yet"
    );
    server.flush();
    let m = server_metrics(&server);
    assert_eq!(
        metric(&m, "cblogs_ingest_lines_total", &[]),
        Some(sent as f64)
    );
    assert_eq!(
        metric(&m, "cblogs_ingest_duplicate_lines_total", &[]),
        Some(40.0)
    );
    assert_eq!(
        metric(
            &m,
            "cblogs_requests_refused_total",
            &[("endpoint", "ingest"), ("reason", "too_many_lines")]
        ),
        Some(1.0)
    );
    assert!(metric(&m, "cblogs_wal_bytes", &[]).is_some(), "wal_bytes");
    let index = metric(&m, "cblogs_index_bytes", &[]).expect("index_bytes");
    assert!(index > 0.0, "index bytes after a flush: {index}");
    assert_eq!(metric(&m, "cblogs_partitions", &[]), Some(1.0));
    assert_eq!(metric(&m, "cblogs_unindexed_bytes", &[]), Some(0.0));
    assert_eq!(metric(&m, "cblogs_ingest_available", &[]), Some(1.0));
    let commits = metric(&m, "cblogs_commit_seconds_count", &[]).expect("commit histogram");
    assert!(commits >= 1.0, "commits {commits}");
    assert!(metric(&m, "cblogs_commit_seconds_sum", &[]).is_some_and(|s| s > 0.0));
    assert_eq!(
        metric(&m, "cblogs_commit_seconds_bucket", &[("le", "+Inf")]),
        Some(commits)
    );
    assert_eq!(
        metric(&m, "cblogs_query_seconds_count", &[("kind", "search")]),
        None,
        "no search yet"
    );
    assert_eq!(metric(&m, "cblogs_live_tails", &[]), Some(0.0));
    // The storage API agrees on the sizes.
    let storage = get(&server, "/api/v1/storage", &[]);
    assert_eq!(storage.body["disk_bytes"].as_f64(), Some(index));

    // A search, and a tail: timed by kind.
    let out = server.cli(&["grep", "r3 i1 00007"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let m = wait_until("the search to be timed", DEADLINE, || {
        let m = server_metrics(&server);
        metric(&m, "cblogs_query_seconds_count", &[("kind", "search")]).map(|_| m)
    });
    assert_eq!(
        metric(&m, "cblogs_query_seconds_count", &[("kind", "search")]),
        Some(1.0)
    );
    assert!(metric(&m, "cblogs_query_seconds_count", &[("kind", "tail")]).is_none());
    server.all_lines("hello");
    let m = server_metrics(&server);
    assert_eq!(
        metric(&m, "cblogs_query_seconds_count", &[("kind", "tail")]),
        Some(1.0)
    );

    // A live tail while it is open, and not after.
    let mut follower = Follower::start(&server.url, &["tail", "-f", "hello", "-n", "1"]);
    follower.expect_line("r9 i1 00029", DEADLINE);
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_live_tails", &[]), Some(1.0));
    drop(follower);
    wait_until("the live tail to be counted off", DEADLINE, || {
        (metric(&server_metrics(&server), "cblogs_live_tails", &[]) == Some(0.0)).then_some(())
    });
}

/// `cblogs_ingest_bytes_total` is "Bytes of lines accepted (durable)", as
/// `cblogs_ingest_lines_total` counts lines accepted: lines resent that the
/// server already held are not accepted, and a cut line is stored (and
/// accepted) with `ingest.max_line_bytes` bytes.
#[test]
fn cblogsd_ingest_bytes_total_counts_the_bytes_accepted() {
    let (_dir, server) = Server::in_temp_dir(Some(&config("[ingest]\nmax_line_bytes = 100\n")));
    let mut f = hello(0);
    let lines = numbered("line", 0..10, 50);
    server.post_ok(&request(vec![f.batch(&lines)]));
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_ingest_lines_total", &[]), Some(10.0));
    assert_eq!(metric(&m, "cblogs_ingest_bytes_total", &[]), Some(500.0));

    // The same lines again: duplicates, nothing accepted.
    let mut again = hello(0);
    let dup = server.post_ok(&request(vec![again.batch(&lines)]));
    assert_eq!(dup["duplicates"].as_u64(), Some(10), "{dup}");
    // A 1000-byte line, stored cut at 100 bytes.
    let long = "y".repeat(1000);
    let cut = server.post_ok(&request(vec![f.batch(&[long.as_str()])]));
    assert_eq!(cut["cut"].as_u64(), Some(1), "{cut}");
    let m = server_metrics(&server);
    assert_eq!(metric(&m, "cblogs_ingest_lines_total", &[]), Some(11.0));
    assert_eq!(
        metric(&m, "cblogs_ingest_bytes_total", &[]),
        Some(600.0),
        "bytes of the lines accepted: 500 + the cut line's 100"
    );
}

/// `cblogs tail -f` reconnects after cblogsd restarts and resumes where it
/// was, on a server whose `read.max_tail_lines` is below the API's largest
/// `n` (the resume must ask for no more than the server allows).
#[test]
fn a_follow_resumes_after_a_restart_under_a_small_max_tail_lines() {
    let (_dir, mut server) = Server::in_temp_dir(Some(&config("[read]\nmax_tail_lines = 50\n")));
    let mut f = hello(0);
    server.post_ok(&request(vec![f.batch(&["before the restart"])]));
    let mut follower = Follower::start(&server.url, &["tail", "-f", "hello", "-n", "1"]);
    follower.expect_line("before the restart", DEADLINE);
    server.stop();
    server.restart();
    server.post_ok(&request(vec![f.batch(&["after the restart"])]));
    follower.expect_line("after the restart", DEADLINE);
}
