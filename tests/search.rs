//! `cblogs grep` and the search API (issue 5), end to end: the real
//! `cblogsd`, `cblogs-shipper` and `cblogs` on a fake agent laid out as
//! `thermos-layout.md` describes.
//!
//! - `differential_against_ripgrep`: dozens of patterns and flags over
//!   lines of the built-in template sets (web server errors, HDFS, syslog,
//!   sshd, logcat, Windows CBS and more, most with CRLF endings), stack
//!   traces, Unicode, invalid UTF-8, long lines and odd tokens, part in the index and part only in memory; for every
//!   sandbox file, the lines `cblogs grep` prints are exactly the lines
//!   `rg` finds in that file, in file order (and the match ranges agree).
//! - `context_lines`: `-A/-B/-C` as GNU grep prints them, `--` included,
//!   across block boundaries and from the index into memory; context
//!   never comes from another source interleaved in time.
//! - `count_and_list`: `-c` and `-l` (text and JSON), `--limit` and its
//!   note, and the exit codes 0 (matched) and 1 (nothing matched).
//! - `since_until_and_instances`: `--since`/`--until` around a time
//!   between two waves, `--instance`, and bad time ranges (exit 2).
//! - `bad_input`: a bad regex (from the CLI itself, and 400 from the API),
//!   an unknown job, a pattern over `search.regex_size_limit`.
//! - `streaming_and_bounded_memory`: a big result arrives while the search
//!   still runs and does not pile up in `cblogsd`'s memory; the NDJSON API
//!   ends with a `summary` that counts its `line` events.
//! - `histogram`: totals and buckets per stream (and per job) over a range.
//!
//! The contract is `search-spec.md` (issue 5). The tests in this file run
//! one at a time (see [`serial`]): one of them measures time and memory.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cblogs_core::Stream;
use cblogs_testkit::*;
use serde_json::Value;

const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// Jobs whose roles and names hold `-` and `_`.
const HELLO: (&str, &str, &str) = ("www-data", "prod", "hello");
const EIGHT_BALL: (&str, &str, &str) = ("cbe-team", "devel", "eight_ball-api");
const CRUNCH: (&str, &str, &str) = ("data_eng", "staging2", "log-crunch_v2");
const TINY: (&str, &str, &str) = ("bob", "test", "tiny");

/// How long shipping a few megabytes may take (debug binaries, 2 cores).
const SHIP_DEADLINE: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// Talking to cblogsd and cblogs.
// ---------------------------------------------------------------------------

/// `cblogs grep ARGS…`.
fn grep(server: &Server, args: &[&str]) -> CliOutput {
    let mut all = vec!["grep"];
    all.extend_from_slice(args);
    server.cli(&all)
}

/// A line as `cblogs grep --output json` prints it.
#[derive(Debug, Clone)]
struct Hit {
    job: String,
    instance: u32,
    task_id: String,
    process: String,
    run: u32,
    stream: Stream,
    offset: u64,
    time_ns: i64,
    text: String,
    context: bool,
    matches: Vec<(usize, usize)>,
}

impl Hit {
    fn key(&self) -> StreamKey {
        (
            self.task_id.clone(),
            self.process.clone(),
            self.run,
            self.stream,
        )
    }
}

fn field<'a>(v: &'a Value, name: &str, line: &str) -> &'a Value {
    v.get(name)
        .unwrap_or_else(|| panic!("no {name:?} in a JSON line of cblogs grep: {line}"))
}

fn as_u64(v: &Value, name: &str, line: &str) -> u64 {
    field(v, name, line)
        .as_u64()
        .unwrap_or_else(|| panic!("{name:?} is not a number: {line}"))
}

fn as_str<'a>(v: &'a Value, name: &str, line: &str) -> &'a str {
    field(v, name, line)
        .as_str()
        .unwrap_or_else(|| panic!("{name:?} is not a string: {line}"))
}

/// A `line` object (CLI `--output json`, or an API `line` event).
fn parse_hit(line: &str) -> Hit {
    let v: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("cblogs grep printed a line that is not JSON ({e}): {line}"));
    let matches = field(&v, "matches", line)
        .as_array()
        .unwrap_or_else(|| panic!("\"matches\" is not an array: {line}"))
        .iter()
        .map(|m| match m.as_array().map(Vec::as_slice) {
            Some([s, e]) => (
                s.as_u64().expect("match start") as usize,
                e.as_u64().expect("match end") as usize,
            ),
            _ => panic!("a match is not [start, end]: {line}"),
        })
        .collect();
    Hit {
        job: as_str(&v, "job", line).to_owned(),
        instance: as_u64(&v, "instance", line) as u32,
        task_id: as_str(&v, "task_id", line).to_owned(),
        process: as_str(&v, "process", line).to_owned(),
        run: as_u64(&v, "run", line) as u32,
        stream: as_str(&v, "stream", line)
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {line}")),
        offset: as_u64(&v, "offset", line),
        time_ns: field(&v, "time_ns", line)
            .as_i64()
            .unwrap_or_else(|| panic!("\"time_ns\" is not a number: {line}")),
        text: as_str(&v, "text", line).to_owned(),
        context: field(&v, "context", line)
            .as_bool()
            .unwrap_or_else(|| panic!("\"context\" is not a bool: {line}")),
        matches,
    }
}

fn parse_hits(stdout: &str) -> Vec<Hit> {
    stdout.lines().map(parse_hit).collect()
}

/// `cblogs grep ARGS… --output json`, which must exit 0 (something matched).
fn grep_hits(server: &Server, args: &[&str]) -> Vec<Hit> {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = grep(server, &all);
    assert_eq!(
        out.code, 0,
        "cblogs grep {all:?} exited {}: {}",
        out.code, out.stderr
    );
    parse_hits(&out.stdout)
}

/// GET `path` with `params` (percent-encoded): status and body.
fn http_get(server: &Server, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let url = reqwest::Url::parse_with_params(&format!("{}{path}", server.url), params)
        .expect("a valid URL");
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("HTTP client")
        .get(url)
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().expect("response body"))
}

/// GET a JSON answer that must be 200.
fn http_get_json(server: &Server, path: &str, params: &[(&str, &str)]) -> Value {
    let (status, body) = http_get(server, path, params);
    assert_eq!(status, 200, "GET {path} {params:?}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// `POST /api/v1/admin/flush`: everything acknowledged so far goes into the index.
fn flush(server: &Server) {
    let body = server.flush();
    assert_eq!(
        body["unindexed_bytes"].as_u64(),
        Some(0),
        "after a flush with nothing arriving, every line is in the index: {body}"
    );
}

/// The run and stream a line printed by the CLI came from.
fn run_of<'a>(runs: &[&'a ProcessRun], key: &StreamKey) -> Option<&'a ProcessRun> {
    runs.iter()
        .copied()
        .find(|r| r.task_id == key.0 && r.process == key.1 && r.run == key.2)
}

/// `job/instance process/run/stream`, for messages.
fn label(run: &ProcessRun, stream: Stream) -> String {
    format!(
        "{}/{} {}/{}/{stream}",
        run.job, run.instance, run.process, run.run
    )
}

/// The line written at `offset`, for messages.
fn line_at(run: &ProcessRun, stream: Stream, offset: u64) -> Option<&Written> {
    let lines = &run.model(stream).lines;
    lines
        .binary_search_by_key(&offset, |w| w.offset)
        .ok()
        .map(|i| &lines[i])
}

fn brief(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let mut t: String = s.chars().take(90).collect();
    if t.len() < s.len() {
        t.push_str(&format!("… ({} bytes)", bytes.len()));
    }
    format!("{t:?}")
}

// ---------------------------------------------------------------------------
// Line content: samples of the built-in template sets, and what they lack.
// ---------------------------------------------------------------------------

const SHA1: &str = "3f786850e387550fdab836ed7e6dc881de23001b";
const SHA256: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const SHA256_PIECE: &str = "c55ad015a3bf4f1b";
const NEEDLE: &str = "needle_in_the_haystack";

fn lines_of(texts: &[&str]) -> Vec<Vec<u8>> {
    texts.iter().map(|t| t.as_bytes().to_vec()).collect()
}

/// Application lines full of tokens joined by `_`, `.`, `/`, `-`, long
/// numbers, hashes, and fixed strings with regex metacharacters.
fn token_block(n: usize, rng: &mut Rng) -> Vec<Vec<u8>> {
    const IDS: [u64; 7] = [1182736, 11827360, 5018273, 736, 90736, 1182737, 42];
    let id = IDS[n % IDS.len()];
    let req = ["req-7f3a-b2", "req-7f3a-c9", "req-9e1d-b2"][n % 3];
    let user = [42, 7, 1042, 4242][n % 4];
    let mut block = vec![format!(
        "2024-03-{:02}T12:{:02}:{:02}.{:03}Z INFO com.example.svc.ItemHandler request_id={req} \
         user_id={user} GET /api/v1/items/{id} took_ms={}",
        1 + n % 28,
        n % 60,
        (n * 7) % 60,
        n % 1000,
        10 + n % 990
    )];
    block.push(match n % 9 {
        0 => format!(
            "user alice logged in from 10.0.{}.7 via /api/v2/login",
            n % 256
        ),
        1 => format!("deploy {n} commit {SHA1} by build_bot"),
        2 => format!("artifact sha256:{SHA256} size=1182736 ok"),
        3 => format!(
            "cache key {} evicted after {}s",
            rng.hex(40 + n % 24),
            n % 90
        ),
        4 => "metrics: com.example.svc.latency_p99=18273us order_id=91182736".to_owned(),
        5 => "config key a.b = 1 and aXb = 2, see (x) below".to_owned(),
        6 => "[ERROR] disk /dev/sda1 full; level=ERROR without brackets too".to_owned(),
        7 => format!(
            "[E] short tag, f(x) plain x, ts={} [done]",
            1_709_640_001_123u64 + n as u64
        ),
        _ => format!(
            "WARN upstream timeout after {}ms on /api/v1/items",
            1000 + n
        ),
    });
    block.into_iter().map(String::into_bytes).collect()
}

/// Greek (final and medial sigma, with and without accents), German
/// sharp s (small and capital), accents, CJK, emoji.
fn unicode_block(n: usize) -> Vec<Vec<u8>> {
    let all = [
        "Η οδος είναι κλειστή λόγω έργων",
        "ΟΔΟΣ ΑΘΗΝΑΣ 12: διακοπή ρεύματος",
        "Οδός Πανεπιστημίου (accented, so not ΟΔΟΣ under -i)",
        "οδοσ with a medial sigma at the end",
        "Hauptstraße 5 gesperrt",
        "HAUPTSTRAẞE 7 offen",
        "Hauptstrasse 9 has no sharp s",
        "café crème brûlée naïve CAFÉ",
        "日本語のログメッセージ: 東京で接続エラー",
        "中文日志: 连接超时 timeout",
        "emoji 🚀 deploy done ✅",
    ];
    vec![all[n % all.len()].as_bytes().to_vec()]
}

/// Lines that are not UTF-8 (and hold no NUL byte); the words in them are
/// set off by spaces.
fn invalid_utf8_block(n: usize) -> Vec<Vec<u8>> {
    let all: [&[u8]; 5] = [
        b"latin1 caf\xe9 cr\xe8me ERROR",
        b"stray \xff\xfe bytes user_id=7",
        b"cut utf8 \xe2\x82 euro WARN",
        b"\xc3\x28 bad continuation Connection refused",
        b"overlong \xc0\xaf slash /api/v1/items",
    ];
    vec![all[n % all.len()].to_vec()]
}

fn python_traceback(n: usize) -> Vec<Vec<u8>> {
    let last = match n % 3 {
        0 => "requests.exceptions.ConnectionError: HTTPConnectionPool(host='db-7', port=5432): \
              Max retries exceeded with url: /api/v1/items (Caused by NewConnectionError(\
              'Failed to establish a new connection: [Errno 111] Connection refused'))"
            .to_owned(),
        1 => "TimeoutError: timed out".to_owned(),
        _ => format!("KeyError: 'user_id' (request {n})"),
    };
    let mut b = lines_of(&[
        "",
        "Traceback (most recent call last):",
        "  File \"/srv/app/worker.py\", line 42, in handle",
        "    result = client.fetch(url, timeout=30)",
        "  File \"/usr/lib/python3.11/site-packages/requests/api.py\", line 73, in get",
        "    return request(\"get\", url, params=params, **kwargs)",
    ]);
    b.push(last.into_bytes());
    b
}

fn java_stack_trace(n: usize) -> Vec<Vec<u8>> {
    let mut b = vec![format!(
        "Exception in thread \"worker-{}\" java.lang.OutOfMemoryError: Java heap space",
        n % 8
    )
    .into_bytes()];
    b.extend(lines_of(&[
        "\tat com.example.Foo.bar(Foo.java:42)",
        "\tat com.example.svc.ItemHandler.handle(ItemHandler.java:118)",
        "\tat java.base/java.lang.Thread.run(Thread.java:833)",
        "2024-03-05 12:00:03,001 WARN com.example.svc.Pool connection pool exhausted",
        "java.net.SocketTimeoutException: Read timed out",
        "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)",
        "Caused by: java.io.IOException: Connection reset by peer",
        "\t... 12 more",
        "    at Object.<anonymous> (/srv/app/index.js:10:15)",
    ]));
    b
}

/// `base` with a block from `special` after every `every` lines.
fn sprinkle(
    base: Vec<Vec<u8>>,
    every: usize,
    mut special: impl FnMut(usize) -> Vec<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (i, l) in base.into_iter().enumerate() {
        if i % every == 0 {
            out.extend(special(i / every));
        }
        out.push(l);
    }
    out
}

/// A line of about `len` bytes: space-separated words from `word`, with
/// `middle` in the middle and `tail` at the end.
fn long_line(
    len: usize,
    middle: &str,
    tail: &str,
    mut word: impl FnMut(usize) -> String,
) -> Vec<u8> {
    let mut s = String::with_capacity(len + 64);
    let mut i = 0;
    while s.len() < len / 2 {
        s.push_str(&word(i));
        s.push(' ');
        i += 1;
    }
    s.push_str(middle);
    while s.len() < len - tail.len() - 1 {
        s.push(' ');
        s.push_str(&word(i));
        i += 1;
    }
    s.push(' ');
    s.push_str(tail);
    assert!((100_000..=300_000).contains(&s.len()), "{}", s.len());
    s.into_bytes()
}

// ---------------------------------------------------------------------------
// 1. Differential test against ripgrep.
// ---------------------------------------------------------------------------

/// One process run of the differential fixture, and everything it will
/// write per stream; `wave2_only` runs start after the flush.
struct Planned {
    run: ProcessRun,
    lines: [Vec<Vec<u8>>; 2],
    wave2_only: bool,
}

fn plan_differential(env: &Stack) -> Vec<Planned> {
    let mut plan = Vec::new();
    let mut add = |run: ProcessRun, stdout: Vec<Vec<u8>>, stderr: Vec<Vec<u8>>, wave2_only| {
        plan.push(Planned {
            run,
            lines: [stdout, stderr],
            wave2_only,
        })
    };
    for i in 0..3 {
        let t = env.task(HELLO, i);
        let n = i as usize;
        let stdout = sprinkle(
            sample_from(LogKind::WebServerErrors, n * 500, 500),
            20,
            |k| token_block(k + n * 100, &mut Rng(k as u64)),
        );
        let mut stderr = sprinkle(
            sample_from(LogKind::HealthApp, n * 200, 200),
            10,
            |k| match k % 3 {
                0 => python_traceback(k),
                1 => unicode_block(k),
                _ => invalid_utf8_block(k),
            },
        );
        if i == 1 {
            // The last lines are wave 2's: a long line only in memory.
            let mut words = Rng(11);
            stderr.push(long_line(
                101_000,
                "java.lang.RuntimeException: ERROR",
                "end of payload",
                |_| words.hex(32),
            ));
        }
        add(t.process("hello_world", 0), stdout, stderr, false);
        let fetch = (0..30)
            .map(|k| {
                format!(
                    "Fetching hello_world.pex ({} bytes) sha256:{}",
                    1_182_736 + k * 1000,
                    Rng(k as u64).hex(64)
                )
                .into_bytes()
            })
            .collect();
        add(t.process("fetch_package", 0), fetch, Vec::new(), false);
        if i == 1 {
            // A restart whose lines all come after the flush: only in memory.
            let stdout = sprinkle(sample_from(LogKind::WebServerErrors, 1700, 100), 10, |k| {
                token_block(k + 7, &mut Rng(99))
            });
            let stderr = (0..6).flat_map(python_traceback).collect();
            add(t.process("hello_world", 1), stdout, stderr, true);
        }
    }
    for i in 0..4 {
        let t = env.task(EIGHT_BALL, i);
        let n = i as usize;
        let stdout = sprinkle(sample_from(LogKind::Hdfs, n * 400, 400), 25, |k| {
            token_block(k * 3 + n, &mut Rng(k as u64 + 1000))
        });
        let mut stderr = sprinkle(sample_from(LogKind::Logcat, n * 150, 150), 8, |k| {
            if k % 4 == 3 {
                unicode_block(k)
            } else {
                java_stack_trace(k)
            }
        });
        if i == 2 {
            let huge = long_line(
                299_000,
                "java.lang.IllegalStateException: payload follows",
                "utOfMemoryError",
                |w| format!("chunk{w:06}=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"),
            );
            stderr.insert(40, huge);
        }
        add(t.process("eight_ball", 0), stdout, stderr, false);
        if i < 2 {
            let stdout = sample_from(LogKind::Hdfs, 1600 + n * 200, 200);
            let stderr = (0..10).flat_map(|k| java_stack_trace(k + n)).collect();
            add(t.process("eight_ball", 1), stdout, stderr, false);
        }
    }
    for i in 0..2 {
        let t = env.task(CRUNCH, i);
        let n = i as usize;
        let mut base = sample_from(LogKind::Syslog, n * 300, 300);
        base.extend(sample_from(LogKind::Sshd, n * 300, 300));
        // The desktop proxy's lines end with a bare \n; the others with \r\n.
        base.extend(sample_from(LogKind::DesktopProxy, n * 300, 300));
        let stdout = sprinkle(base, 30, |k| token_block(k + 500, &mut Rng(k as u64 + 7)));
        let mut stderr = sprinkle(
            sample_from(LogKind::Supercomputer, n * 200, 200),
            6,
            |k| match k % 4 {
                0 => unicode_block(k),
                1 => invalid_utf8_block(k),
                2 => token_block(k, &mut Rng(3)),
                _ => python_traceback(k),
            },
        );
        if i == 0 {
            let mut words = Rng(77);
            let needle = long_line(150_000, NEEDLE, "ERROR", |w| format!("lorem{w}"));
            let hashes = long_line(250_000, SHA256, "done", |_| words.hex(40));
            let refused = {
                let mut l = vec![b'x'; 120_000];
                l.extend_from_slice(b" Connection refused");
                l
            };
            stderr.splice(3..3, [needle, hashes, refused]);
        }
        add(t.process("crunch", 0), stdout, stderr, false);
        let mut stdout = sample_from(LogKind::ClusterSyslog, n * 300, 300);
        stdout.extend(sample_from(LogKind::MacOs, n * 300, 300));
        add(
            t.process("syslog", 0),
            stdout,
            sample_from(LogKind::ClusterNodes, n * 200, 200),
            false,
        );
    }
    // A small job for -v.
    let t = env.task(TINY, 0);
    let mut stdout = Vec::new();
    for k in 0..8 {
        stdout.extend(token_block(k, &mut Rng(k as u64)));
        stdout.extend(unicode_block(k));
        stdout.extend(invalid_utf8_block(k));
    }
    stdout.push(format!("a short line with the {NEEDLE} too").into_bytes());
    let stderr = java_stack_trace(1);
    add(t.process("tiny", 0), stdout, stderr, false);
    plan
}

/// Lines from `p` for one wave: wave 1 is the first 70 % of each stream
/// (all of it for a run that exists only in wave 2 is wave 2's).
fn wave(p: &Planned, stream: Stream, second: bool) -> &[Vec<u8>] {
    let lines = &p.lines[if stream == Stream::Stdout { 0 } else { 1 }];
    let cut = if p.wave2_only {
        0
    } else {
        lines.len() * 7 / 10
    };
    if second {
        &lines[cut..]
    } else {
        &lines[..cut]
    }
}

/// Writes each stream's lines in writes of up to 100 lines, as a process would.
fn write_wave(plan: &mut [Planned], second: bool) {
    for p in plan.iter_mut() {
        if p.wave2_only && !second {
            continue;
        }
        for stream in BOTH {
            let lines: Vec<Vec<u8>> = wave(p, stream, second).to_vec();
            for chunk in lines.chunks(100) {
                p.run.append_lines(stream, chunk);
            }
        }
    }
}

type FileFilter = Box<dyn Fn(&ProcessRun, Stream) -> bool>;

/// One search: flags, pattern, the selection (job selectors and
/// `--instance`/`--stream`/`--process`) and the files that selection means.
struct Case {
    flags: Vec<String>,
    pattern: String,
    selection: Vec<String>,
    files: FileFilter,
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// Over every job.
fn everywhere(flags: &[&str], pattern: &str) -> Case {
    Case {
        flags: strings(flags),
        pattern: pattern.to_owned(),
        selection: Vec::new(),
        files: Box::new(|_, _| true),
    }
}

/// Over a selection, and the files it means.
fn within(
    flags: &[&str],
    pattern: &str,
    selection: &[&str],
    files: impl Fn(&ProcessRun, Stream) -> bool + 'static,
) -> Case {
    Case {
        flags: strings(flags),
        pattern: pattern.to_owned(),
        selection: strings(selection),
        files: Box::new(files),
    }
}

fn job_is((role, env, name): (&str, &str, &str), run: &ProcessRun) -> bool {
    run.job == format!("{role}/{env}/{name}")
}

fn differential_cases() -> Vec<Case> {
    let mut cases = vec![
        // Fixed strings holding regex metacharacters, and the same as regexes.
        everywhere(&["-F"], "a.b"),
        everywhere(&[], "a.b"),
        everywhere(&["-F"], "[ERROR]"),
        everywhere(&[], "[ERROR]"),
        everywhere(&["-F"], "(x)"),
        everywhere(&["-F"], "example.svc"),
        everywhere(&["-F", "-i"], "CAFÉ CRÈME"),
        // Rare and common literals.
        everywhere(&[], NEEDLE),
        everywhere(&[], "INFO"),
        everywhere(&[], "blk_"),
        everywhere(&[], "sshd"),
        everywhere(&[], "Caused by: "),
        // Regexes with and without usable literals.
        everywhere(&[], r"\d{4}-\d{2}-\d{2}"),
        everywhere(&[], r"^\s+at "),
        everywhere(&[], r"\b[A-Z][a-z]+[A-Z]\w+\b"),
        everywhere(&[], r"java\.lang\.\w+Error"),
        everywhere(&[], r"\d{5,}"),
        everywhere(&[], r"[0-9a-f]{40,}"),
        everywhere(&[], r"(\d+\.){3}\d+"),
        // Case-insensitive, non-ASCII included.
        everywhere(&["-i"], "straße"),
        everywhere(&["-i"], "ΟΔΟΣ"),
        everywhere(&["-i"], "οδοσ"),
        everywhere(&["-i"], "outofmemoryerror"),
        everywhere(&["-i"], "café"),
        // Anchors; CRLF lines end with \r, before which $ does not match.
        everywhere(&[], "^Traceback"),
        everywhere(&[], r"^\d{4}-"),
        everywhere(&[], r"\]$"),
        everywhere(&[], r"\]\r$"),
        everywhere(&[], r"\d$"),
        everywhere(&[], "^$"),
        everywhere(&[], r"\bERROR\b"),
        // Unicode classes.
        everywhere(&[], r"\p{Greek}+"),
        everywhere(&[], r"\p{Han}"),
        everywhere(&[], "日本語"),
        // Tokens split by _ . / -, and pieces of tokens.
        everywhere(&[], "user_id"),
        everywhere(&[], "example.svc"),
        everywhere(&[], "api/v1"),
        everywhere(&[], "7f3a-b2"),
        everywhere(&[], "Connec"),
        everywhere(&[], "Exception"),
        everywhere(&[], "utOfMemo"),
        // Long numbers (indexed by prefix) and their parts.
        everywhere(&[], "1182736"),
        everywhere(&[], "18273"),
        everywhere(&[], "736"),
        everywhere(&[], "1709640001"),
        // A hash past the index's token length, and a piece of one.
        everywhere(&[], SHA256),
        everywhere(&[], SHA256_PIECE),
        everywhere(&[], SHA1),
        // Words.
        everywhere(&["-w"], "user"),
        everywhere(&["-w"], "42"),
        everywhere(&["-w", "-i"], "error"),
        everywhere(&["-w"], "id"),
        // Alternations.
        everywhere(&[], "ERROR|WARN"),
        everywhere(&[], "(?i)timeout|refused"),
        // Nothing.
        everywhere(&[], "zq9xj_never_written"),
        everywhere(&["-F", "-i"], "QQ.never.WRITTEN"),
    ];
    // Inverted, on one small job.
    cases.push(within(&["-v"], "ERROR", &["bob/test/tiny"], |r, _| {
        job_is(TINY, r)
    }));
    cases.push(within(
        &["-v", "-i"],
        "warn|user",
        &["tiny", "--stream", "stdout"],
        |r, s| job_is(TINY, r) && s == Stream::Stdout,
    ));
    // Selections.
    cases.push(within(
        &[],
        "Step_LSC|Traceback",
        &[
            "www-data/prod/hello",
            "--instance",
            "0,2",
            "--stream",
            "stderr",
        ],
        |r, s| job_is(HELLO, r) && [0, 2].contains(&r.instance) && s == Stream::Stderr,
    ));
    cases.push(within(
        &[],
        "Exception",
        &["cbe-team/devel/eight_ball-api/1-2"],
        |r, _| job_is(EIGHT_BALL, r) && (1..=2).contains(&r.instance),
    ));
    cases.push(within(
        &["-i"],
        "error",
        &["cbe-*/*/*", "--stream", "stdout"],
        |r, s| job_is(EIGHT_BALL, r) && s == Stream::Stdout,
    ));
    cases.push(within(
        &[],
        "sha256",
        &["hello", "--process", "fetch_package"],
        |r, _| job_is(HELLO, r) && r.process == "fetch_package",
    ));
    cases.push(within(
        &[],
        "ERROR|refused",
        &["www-data/prod/hello", "bob/test/tiny"],
        |r, _| job_is(HELLO, r) || job_is(TINY, r),
    ));
    cases.push(within(
        &["-F"],
        "user_id=42",
        &["devcluster/data_eng/staging2/log-crunch_v2/1"],
        |r, _| job_is(CRUNCH, r) && r.instance == 1,
    ));
    cases
}

/// What `rg` reports for one line: its offset and its match ranges.
type RgLine = (u64, Vec<(usize, usize)>);

/// `rg --json -a` over `files`: per file, the matching lines in file order.
fn ripgrep(flags: &[String], pattern: &str, files: &[PathBuf]) -> BTreeMap<PathBuf, Vec<RgLine>> {
    let out = Command::new("rg")
        .args(["--no-config", "--json", "-a", "--encoding", "none"])
        .args(flags)
        .arg("-e")
        .arg(pattern)
        .arg("--")
        .args(files)
        .output()
        .expect("run rg");
    let code = out.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "rg {flags:?} {pattern:?} exited {code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found: BTreeMap<PathBuf, Vec<RgLine>> = BTreeMap::new();
    for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).expect("rg --json prints JSON");
        if v["type"] != "match" {
            continue;
        }
        let d = &v["data"];
        let path = d["path"]["text"].as_str().expect("paths are UTF-8");
        let ranges = d["submatches"]
            .as_array()
            .expect("submatches")
            .iter()
            .map(|m| {
                (
                    m["start"].as_u64().expect("start") as usize,
                    m["end"].as_u64().expect("end") as usize,
                )
            })
            .collect();
        let offset = d["absolute_offset"].as_u64().expect("absolute_offset");
        found
            .entry(PathBuf::from(path))
            .or_default()
            .push((offset, ranges));
    }
    found
}

/// Everything wrong with what `cblogs grep` printed for `case`, against `rg`.
/// Returns the problems and the number of lines rg found.
fn compare_with_ripgrep(
    server: &Server,
    runs: &[&ProcessRun],
    case: &Case,
) -> (Vec<String>, usize) {
    let what = format!(
        "cblogs grep {:?} {} {}",
        case.pattern,
        case.selection.join(" "),
        case.flags.join(" ")
    );
    let files: Vec<(PathBuf, &ProcessRun, Stream)> = runs
        .iter()
        .flat_map(|r| BOTH.map(|s| (r.path(s), *r, s)))
        .filter(|(_, r, s)| (case.files)(r, *s))
        .collect();
    assert!(!files.is_empty(), "{what}: the selection means no file");
    let paths: Vec<PathBuf> = files.iter().map(|(p, _, _)| p.clone()).collect();
    let want = ripgrep(&case.flags, &case.pattern, &paths);
    let want_total: usize = want.values().map(Vec::len).sum();

    let mut args: Vec<&str> = vec![&case.pattern];
    args.extend(case.selection.iter().map(String::as_str));
    args.extend(case.flags.iter().map(String::as_str));
    args.extend(["--limit", "0", "--output", "json"]);
    let out = grep(server, &args);
    let mut problems = Vec::new();
    let want_code = if want_total > 0 { 0 } else { 1 };
    if out.code != want_code {
        problems.push(format!(
            "{what}: exit code {} (rg found {want_total} lines, so {want_code} is due); stderr: {}",
            out.code,
            out.stderr.trim()
        ));
        if out.code == 2 || out.code < 0 {
            return (problems, want_total);
        }
    }
    let hits = parse_hits(&out.stdout);

    if let Some(w) = hits.windows(2).find(|w| w[0].time_ns > w[1].time_ns) {
        problems.push(format!(
            "{what}: not merged by time: {} @{} (t {}) printed before {} @{} (t {})",
            w[0].task_id, w[0].offset, w[0].time_ns, w[1].task_id, w[1].offset, w[1].time_ns
        ));
    }
    let mut got: BTreeMap<PathBuf, Vec<&Hit>> = BTreeMap::new();
    for h in &hits {
        if h.context {
            problems.push(format!("{what}: a context line without -A/-B/-C: {h:?}"));
        }
        match run_of(runs, &h.key()) {
            Some(r) if (h.job.as_str(), h.instance) == (r.job.as_str(), r.instance) => {
                got.entry(r.path(h.stream)).or_default().push(h)
            }
            _ => problems.push(format!(
                "{what}: a line of a source nothing was written to (or with the wrong job or \
                 instance): {} {} {}/{}/{} @{}",
                h.job, h.instance, h.task_id, h.process, h.run, h.offset
            )),
        }
    }
    // Match ranges are compared where they mean the same: rg's are into the
    // raw bytes, cblogs' into the text, so only for UTF-8 lines; -v has
    // none, and rg 13's -w reports its own.
    let compare_ranges = !case.flags.iter().any(|f| f == "-v" || f == "-w");
    for (path, run, stream) in &files {
        let want_lines = want.get(path).map(Vec::as_slice).unwrap_or_default();
        let got_lines = got.remove(path).unwrap_or_default();
        let want_offsets: Vec<u64> = want_lines.iter().map(|(o, _)| *o).collect();
        let got_offsets: Vec<u64> = got_lines.iter().map(|h| h.offset).collect();
        if want_offsets != got_offsets {
            let i = want_offsets
                .iter()
                .zip(&got_offsets)
                .position(|(w, g)| w != g)
                .unwrap_or(want_offsets.len().min(got_offsets.len()));
            let show = |o: Option<&u64>| match o {
                None => "nothing".to_owned(),
                Some(o) => format!(
                    "@{o} {}",
                    line_at(run, *stream, *o)
                        .map_or("(no line starts there)".into(), |w| brief(&w.bytes))
                ),
            };
            let missing = want_offsets
                .iter()
                .filter(|o| !got_offsets.contains(o))
                .count();
            let extra = got_offsets
                .iter()
                .filter(|o| !want_offsets.contains(o))
                .count();
            problems.push(format!(
                "{what}: {}: rg finds {} lines, cblogs prints {} ({missing} missing, {extra} \
                 extra); first difference at #{i}: rg {}, cblogs {}",
                label(run, *stream),
                want_offsets.len(),
                got_offsets.len(),
                show(want_offsets.get(i)),
                show(got_offsets.get(i)),
            ));
            continue;
        }
        if !compare_ranges {
            continue;
        }
        for ((offset, ranges), h) in want_lines.iter().zip(&got_lines) {
            let utf8 = line_at(run, *stream, *offset)
                .is_some_and(|w| std::str::from_utf8(&w.bytes).is_ok());
            let empty_match = ranges.iter().any(|(s, e)| s == e);
            if utf8 && !empty_match && &h.matches != ranges {
                problems.push(format!(
                    "{what}: {} @{offset}: match ranges {:?}, rg's {ranges:?} in {}",
                    label(run, *stream),
                    h.matches,
                    brief(h.text.as_bytes())
                ));
                break;
            }
        }
    }
    for (path, lines) in got {
        problems.push(format!(
            "{what}: {} lines from {} which the selection does not hold",
            lines.len(),
            path.display()
        ));
    }
    (problems, want_total)
}

#[test]
fn differential_against_ripgrep() {
    let _serial = serial();
    require_tool(
        "rg",
        "tests/search.rs (cblogs grep is compared with ripgrep)",
        "apt-get install ripgrep",
    );
    // Blocks are sealed by size or line count, never by age, so what is
    // written after the flush stays in memory (unless a block fills up).
    let env = Stack::new(Some("[storage]\nblock_max_age_ms = 3600000\n"));
    let mut shipper = env.shipper();
    let mut plan = plan_differential(&env);

    write_wave(&mut plan, false);
    let runs: Vec<&ProcessRun> = plan.iter().map(|p| &p.run).collect();
    wait_all_stored(&env.server, &mut shipper, SHIP_DEADLINE, &runs);
    flush(&env.server);

    // Wave 2: appended to the same files (and a new run), not flushed.
    write_wave(&mut plan, true);
    let runs: Vec<&ProcessRun> = plan.iter().map(|p| &p.run).collect();
    wait_all_stored(&env.server, &mut shipper, SHIP_DEADLINE, &runs);

    let cases = differential_cases();
    assert!(cases.len() >= 40, "{} patterns", cases.len());
    let mut problems = Vec::new();
    let mut total = 0;
    let mut matching_nothing = Vec::new();
    for case in &cases {
        let (p, n) = compare_with_ripgrep(&env.server, &runs, case);
        problems.extend(p);
        total += n;
        if n == 0 {
            matching_nothing.push(case.pattern.as_str());
        }
        eprintln!(
            "{n:>6} lines: {:?} {} {}",
            case.pattern,
            case.selection.join(" "),
            case.flags.join(" ")
        );
    }
    assert!(
        problems.is_empty(),
        "{} problems over {} patterns:\n  {}",
        problems.len(),
        cases.len(),
        problems.join("\n  ")
    );
    // The comparison means something only if rg found plenty.
    assert!(
        total >= 20_000,
        "rg found only {total} lines over all patterns"
    );
    assert_eq!(
        matching_nothing,
        ["zq9xj_never_written", "QQ.never.WRITTEN"],
        "only these patterns are meant to match nothing"
    );
}

// ---------------------------------------------------------------------------
// 2. Context lines.
// ---------------------------------------------------------------------------

/// Blocks of 16 lines, sealed by line count (or a flush), never by age.
const SIXTEEN_LINE_BLOCKS: &str =
    "[storage]\nblock_max_lines = 16\nblock_max_age_ms = 3600000\ncommit_interval_ms = 100\n";

/// What grep prints with `before`/`after` lines of context over one source:
/// the line numbers shown, each with whether it is context, and `None`
/// for a `--` between groups that are not adjacent.
fn context_model(
    lines: &[String],
    is_match: impl Fn(&str) -> bool,
    before: usize,
    after: usize,
) -> Vec<Option<(usize, bool)>> {
    let mut shown: Vec<Option<bool>> = vec![None; lines.len()];
    for (m, _) in lines.iter().enumerate().filter(|(_, l)| is_match(l)) {
        for s in &mut shown[m.saturating_sub(before)..=(m + after).min(lines.len() - 1)] {
            s.get_or_insert(true);
        }
        shown[m] = Some(false);
    }
    let mut out = Vec::new();
    let mut prev: Option<usize> = None;
    for (i, s) in shown.iter().enumerate() {
        if let Some(context) = s {
            if prev.is_some_and(|p| p + 1 != i) {
                out.push(None);
            }
            out.push(Some((i, *context)));
            prev = Some(i);
        }
    }
    out
}

/// `-A N`, `-B N`, `-C N` → (before, after).
fn before_after(args: &[&str]) -> (usize, usize) {
    let (mut before, mut after) = (0, 0);
    for pair in args.chunks(2) {
        let n: usize = pair[1].parse().expect("a number of lines");
        match pair[0] {
            "-A" => after = n,
            "-B" => before = n,
            "-C" => (before, after) = (n, n),
            other => panic!("not a context flag: {other}"),
        }
    }
    (before, after)
}

/// GNU grep's output for `args PATTERN FILE`.
fn gnu_grep(args: &[&str], pattern: &str, file: &Path) -> String {
    let out = Command::new("grep")
        .args(args)
        .arg("--color=never")
        .arg("-e")
        .arg(pattern)
        .arg("--")
        .arg(file)
        .env("LC_ALL", "C")
        .output()
        .expect("run grep");
    assert_eq!(out.status.code(), Some(0), "grep {args:?} {pattern}");
    String::from_utf8(out.stdout).expect("ASCII lines")
}

/// Stream offsets of lines written back to back.
fn offsets_of(lines: &[String]) -> Vec<u64> {
    lines
        .iter()
        .scan(0u64, |at, l| {
            let o = *at;
            *at += l.len() as u64 + 1;
            Some(o)
        })
        .collect()
}

#[test]
fn context_lines() {
    let _serial = serial();
    require_tool(
        "grep",
        "tests/search.rs (context lines are compared with GNU grep's)",
        "apt-get install grep",
    );
    let (dir, server) = Server::in_temp_dir(Some(SIXTEEN_LINE_BLOCKS));
    const JOB: &str = "devcluster/alice/test/context";
    // x (stdout): matches at the edges of its 16-line blocks (15|16, 31|32,
    // 47|48, 63|64) and across the flush (lines 96.. stay in memory).
    let x_matches = [0, 3, 5, 15, 32, 40, 47, 51, 63, 64, 80, 94, 99];
    let x: Vec<String> = (0..100)
        .map(|i| {
            if x_matches.contains(&i) {
                format!("x{i:03} MATCH here")
            } else {
                format!("x{i:03} quiet")
            }
        })
        .collect();
    // y (stderr of the same process): written in turns with x, so their
    // lines interleave in time; it matches every 7th line.
    let y: Vec<String> = (0..100)
        .map(|i| {
            if i % 7 == 0 {
                format!("y{i:03} MATCH too")
            } else {
                format!("y{i:03} quiet")
            }
        })
        .collect();
    let mut xf = SourceFile::of(JOB, 0, "ctx", Stream::Stdout);
    let mut yf = SourceFile::of(JOB, 0, "ctx", Stream::Stderr);
    let mut post_in_turns = |from: usize, to: usize| {
        for c in (from..to).step_by(4) {
            server.post_ok(&request(vec![xf.batch(&x[c..c + 4])]));
            server.post_ok(&request(vec![yf.batch(&y[c..c + 4])]));
        }
    };
    post_in_turns(0, 96);
    flush(&server);
    post_in_turns(96, 100);

    let x_file = dir.path().join("x.log");
    std::fs::write(
        &x_file,
        x.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .expect("write x.log");
    let is_match = |l: &str| l.contains("MATCH");
    let x_offsets = offsets_of(&x);
    let y_offsets = offsets_of(&y);

    let contexts: [&[&str]; 7] = [
        &["-A", "2"],
        &["-B", "3"],
        &["-C", "2"],
        &["-C", "1"],
        &["-A", "1", "-B", "4"],
        &["-B", "5"],
        &["-A", "3"],
    ];
    for ctx in contexts {
        let (before, after) = before_after(ctx);
        // GNU grep over the same lines is the reference; the model (used
        // for the JSON checks) must agree with it.
        let want = gnu_grep(ctx, "MATCH", &x_file);
        let model = context_model(&x, is_match, before, after);
        let model_raw: String = model
            .iter()
            .map(|l| match l {
                Some((i, _)) => format!("{}\n", x[*i]),
                None => "--\n".to_owned(),
            })
            .collect();
        assert_eq!(model_raw, want, "the test's own model of {ctx:?}");
        assert!(want.contains("--\n"), "{ctx:?} must make separate groups");

        let mut args = vec!["MATCH", "alice/test/context", "--stream", "stdout"];
        args.extend_from_slice(ctx);
        args.extend(["--limit", "0", "--output", "raw"]);
        let out = grep(&server, &args);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stdout, want,
            "cblogs grep {args:?} against grep {ctx:?}"
        );

        // Both streams: each source's lines and context are its own,
        // although the two sources' lines interleave in time.
        let mut args = vec!["MATCH", "alice/test/context"];
        args.extend_from_slice(ctx);
        args.extend(["--limit", "0"]);
        let hits = grep_hits(&server, &args);
        for (stream, lines, offsets) in [
            (Stream::Stdout, &x, &x_offsets),
            (Stream::Stderr, &y, &y_offsets),
        ] {
            let want: Vec<(u64, bool)> = context_model(lines, is_match, before, after)
                .into_iter()
                .flatten()
                .map(|(i, context)| (offsets[i], context))
                .collect();
            let got: Vec<(u64, bool)> = hits
                .iter()
                .filter(|h| h.stream == stream)
                .map(|h| (h.offset, h.context))
                .collect();
            assert_eq!(
                got, want,
                "{stream} of cblogs grep {args:?}: (offset, context)"
            );
        }
        for h in &hits {
            assert_eq!(
                h.matches.is_empty(),
                h.context,
                "a match line has match ranges, a context line none: {h:?}"
            );
        }
    }

    // pretty: ` │ ` for a match, ` ┆ ` for context, `--` between groups.
    let out = grep(
        &server,
        &[
            "MATCH",
            "alice/test/context",
            "--stream",
            "stdout",
            "-A",
            "1",
            "--limit",
            "0",
            "--color",
            "never",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let want: Vec<String> = context_model(&x, is_match, 0, 1)
        .into_iter()
        .map(|l| match l {
            Some((i, false)) => format!("0 ctx/stdout │ {}", x[i]),
            Some((i, true)) => format!("0 ctx/stdout ┆ {}", x[i]),
            None => "--".to_owned(),
        })
        .collect();
    assert_eq!(out.lines(), want, "pretty output with -A 1");
}

// ---------------------------------------------------------------------------
// 3. Counts and lists.
// ---------------------------------------------------------------------------

fn has_refused(w: &Written) -> bool {
    w.bytes.windows(7).any(|x| x == b"refused")
}

#[test]
fn count_and_list() {
    let _serial = serial();
    let env = Stack::new(None);
    let mut shipper = env.shipper();
    let hello: Vec<Task> = (0..3).map(|i| env.task(HELLO, i)).collect();
    let eight: Vec<Task> = (0..2).map(|i| env.task(EIGHT_BALL, i)).collect();
    let mut runs = vec![
        hello[0].process("hello_world", 0),
        hello[0].process("fetch_package", 0),
        hello[1].process("hello_world", 0),
        hello[1].process("fetch_package", 0),
        hello[2].process("hello_world", 0),
        eight[0].process("eight_ball", 0),
        eight[0].process("eight_ball", 1),
        eight[1].process("eight_ball", 0),
        eight[1].process("eight_ball", 1),
    ];
    // (run, stream, lines, every how many lines one says "refused"; 0: none).
    // hello/2 and hello/1's fetch_package never match; eight_ball-api/1
    // matches only in run 1; more than 1000 lines match in all.
    let writes = [
        (0, Stream::Stdout, 300, 3),
        (0, Stream::Stderr, 100, 4),
        (1, Stream::Stdout, 50, 10),
        (2, Stream::Stdout, 300, 5),
        (2, Stream::Stderr, 100, 0),
        (3, Stream::Stdout, 50, 0),
        (4, Stream::Stdout, 200, 0),
        (4, Stream::Stderr, 50, 0),
        (5, Stream::Stdout, 1200, 2),
        (5, Stream::Stderr, 200, 3),
        (6, Stream::Stdout, 400, 2),
        (7, Stream::Stdout, 200, 0),
        (8, Stream::Stderr, 100, 7),
    ];
    for (r, stream, n, every) in writes {
        let lines: Vec<String> = (0..n)
            .map(|j| {
                if every > 0 && j % every == 0 {
                    format!("{j} connect to db-7:5432: Connection refused")
                } else {
                    format!("{j} Connection accepted from 10.0.0.{}", j % 250)
                }
            })
            .collect();
        for chunk in lines.chunks(200) {
            runs[r].append_lines(stream, chunk);
        }
    }
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    wait_all_stored(&env.server, &mut shipper, SHIP_DEADLINE, &refs);

    // What -c and -l must say, from what was written.
    let counts = |streams: &[Stream]| {
        let mut c: BTreeMap<(String, u32), usize> = BTreeMap::new();
        for r in &runs {
            for s in streams {
                let n = r.model(*s).lines.iter().filter(|w| has_refused(w)).count();
                if n > 0 {
                    *c.entry((format!("{SHIPPER_CLUSTER}/{}", r.job), r.instance))
                        .or_default() += n;
                }
            }
        }
        c
    };
    let all_counts = counts(&BOTH);
    let total: usize = all_counts.values().sum();
    assert!(total > 1000, "{total} matching lines written");
    let lines_of_counts = |c: &BTreeMap<(String, u32), usize>| -> Vec<String> {
        c.iter()
            .map(|((job, i), n)| format!("{job}/{i}:{n}"))
            .collect()
    };
    let listed: BTreeSet<(String, u32, String)> = runs
        .iter()
        .filter(|r| {
            BOTH.iter()
                .any(|s| r.model(*s).lines.iter().any(has_refused))
        })
        .map(|r| {
            (
                format!("{SHIPPER_CLUSTER}/{}", r.job),
                r.instance,
                r.process.clone(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 5);

    let out = grep(&env.server, &["refused", "-c"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), lines_of_counts(&all_counts), "grep -c");
    let out = grep(&env.server, &["REFUSED", "-i", "--count"]);
    assert_eq!(out.lines(), lines_of_counts(&all_counts), "grep -i --count");
    let out = grep(&env.server, &["refused", "-c", "--stream", "stderr"]);
    assert_eq!(
        out.lines(),
        lines_of_counts(&counts(&[Stream::Stderr])),
        "grep -c --stream stderr"
    );
    let out = grep(
        &env.server,
        &["refused", "-c", "hello", "--instance", "1-2"],
    );
    assert_eq!(
        out.lines(),
        [format!("{SHIPPER_CLUSTER}/www-data/prod/hello/1:60")],
        "grep -c hello --instance 1-2"
    );

    let out = grep(&env.server, &["refused", "-c", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let got: BTreeMap<(String, u32), usize> = out
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON");
            assert_eq!(v["cluster"], SHIPPER_CLUSTER, "{l}");
            (
                (
                    format!("{SHIPPER_CLUSTER}/{}", as_str(&v, "job", l)),
                    as_u64(&v, "instance", l) as u32,
                ),
                as_u64(&v, "count", l) as usize,
            )
        })
        .collect();
    assert_eq!(got, all_counts, "grep -c --output json");
    assert_eq!(out.lines().len(), all_counts.len());

    let want: Vec<String> = listed
        .iter()
        .map(|(job, i, p)| format!("{job}/{i} {p}"))
        .collect();
    let out = grep(&env.server, &["refused", "-l"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), want, "grep -l");
    let out = grep(
        &env.server,
        &["refused", "--files-with-matches", "--output", "json"],
    );
    let got: Vec<(String, u32, String)> = out
        .stdout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("JSON");
            (
                format!("{}/{}", as_str(&v, "cluster", l), as_str(&v, "job", l)),
                as_u64(&v, "instance", l) as u32,
                as_str(&v, "process", l).to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        listed.into_iter().collect::<Vec<_>>(),
        "grep -l --output json"
    );

    // Nothing matched: exit 1 and nothing printed, in every mode.
    for args in [
        &["no_such_words_anywhere"][..],
        &["no_such_words_anywhere", "-c"],
        &["no_such_words_anywhere", "-l"],
        &["refused", "www-data/prod/hello/2"],
    ] {
        let out = grep(&env.server, args);
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
    }

    // --limit: 1000 lines by default, then a note; 0 is no limit.
    let raw = |args: &[&str]| {
        let mut all = vec!["refused", "--output", "raw"];
        all.extend_from_slice(args);
        let out = grep(&env.server, &all);
        assert_eq!(out.code, 0, "{all:?}: {}", out.stderr);
        out
    };
    let out = raw(&[]);
    assert_eq!(out.lines().len(), 1000);
    assert!(
        out.stderr
            .contains("stopped at --limit 1000 matching lines"),
        "{}",
        out.stderr
    );
    let out = raw(&["--limit", "3"]);
    assert_eq!(out.lines().len(), 3);
    assert!(out
        .lines()
        .iter()
        .all(|l| l.ends_with("Connection refused")));
    assert!(
        out.stderr.contains("stopped at --limit 3 matching lines"),
        "{}",
        out.stderr
    );
    let out = raw(&["--limit", "0"]);
    assert_eq!(out.lines().len(), total);
    assert!(!out.stderr.contains("stopped at"), "{}", out.stderr);
}

// ---------------------------------------------------------------------------
// 4. Time ranges and instances.
// ---------------------------------------------------------------------------

/// (task id, stream, offset) of each line, sorted.
type LineIds = Vec<(String, Stream, u64)>;

fn ids_of(hits: &[Hit]) -> LineIds {
    let mut ids: LineIds = hits
        .iter()
        .map(|h| (h.task_id.clone(), h.stream, h.offset))
        .collect();
    ids.sort();
    ids
}

#[test]
fn since_until_and_instances() {
    let _serial = serial();
    let env = Stack::new(None);
    let mut shipper = env.shipper();
    let mut runs: Vec<ProcessRun> = (0..5)
        .map(|i| env.task(HELLO, i).process("hello_world", 0))
        .collect();
    let write_wave = |runs: &mut [ProcessRun], wave: &str| {
        for r in runs.iter_mut() {
            let i = r.instance;
            for (stream, n, every) in [(Stream::Stdout, 40, 4), (Stream::Stderr, 12, 3)] {
                let lines: Vec<String> = (0..n)
                    .map(|j| {
                        if j % every == 0 {
                            format!("{wave} {i} {j} upstream timeout after 30s")
                        } else {
                            format!("{wave} {i} {j} ok")
                        }
                    })
                    .collect();
                r.append_lines(stream, &lines);
            }
        }
    };
    write_wave(&mut runs, "wave-A");
    wait_all_stored(
        &env.server,
        &mut shipper,
        SHIP_DEADLINE,
        &runs.iter().collect::<Vec<_>>(),
    );
    // Every line of A was read (and timed) before now; B is written after.
    let boundary_ns = cblogs_core::time::now_ns();
    let boundary = cblogs_core::time::format_rfc3339(boundary_ns);
    wait_until("the clock to pass the boundary", DEADLINE, || {
        (cblogs_core::time::now_ns() > boundary_ns + 2_000_000).then_some(())
    });
    let wave_a_lines: Vec<[usize; 2]> = runs
        .iter()
        .map(|r| BOTH.map(|s| r.model(s).lines.len()))
        .collect();
    write_wave(&mut runs, "wave-B");
    wait_all_stored(
        &env.server,
        &mut shipper,
        SHIP_DEADLINE,
        &runs.iter().collect::<Vec<_>>(),
    );

    // The matching lines of a wave (None: both) and instances.
    let expect = |wave_b: Option<bool>, instances: &[u32]| -> LineIds {
        let mut ids = Vec::new();
        for (r, a_end) in runs.iter().zip(&wave_a_lines) {
            if !instances.contains(&r.instance) {
                continue;
            }
            for (k, s) in BOTH.into_iter().enumerate() {
                for (n, w) in r.model(s).lines.iter().enumerate() {
                    let in_wave = wave_b.is_none_or(|b| b == (n >= a_end[k]));
                    if in_wave && w.bytes.ends_with(b"timeout after 30s") {
                        ids.push((r.task_id.clone(), s, w.offset));
                    }
                }
            }
        }
        ids.sort();
        assert!(!ids.is_empty());
        ids
    };
    let all = [0, 1, 2, 3, 4];
    let some = [0, 1, 3];
    let cases: Vec<(Vec<&str>, LineIds)> = vec![
        (vec!["hello"], expect(None, &all)),
        (
            vec!["hello", "--since", &boundary],
            expect(Some(true), &all),
        ),
        (
            vec!["hello", "--until", &boundary],
            expect(Some(false), &all),
        ),
        (
            vec!["hello", "--since", "1h", "--until", &boundary],
            expect(Some(false), &all),
        ),
        (vec!["hello", "--instance", "0-1,3"], expect(None, &some)),
        (vec!["www-data/prod/hello/0-1,3"], expect(None, &some)),
        (
            vec!["hello", "--instance", "0-1,3", "--since", &boundary],
            expect(Some(true), &some),
        ),
        (
            vec!["--until", &boundary, "--instance", "4"],
            expect(Some(false), &[4]),
        ),
    ];
    for (args, want) in cases {
        let mut all_args = vec!["timeout"];
        all_args.extend(&args);
        all_args.extend(["--limit", "0"]);
        let got = ids_of(&grep_hits(&env.server, &all_args));
        assert_eq!(got, want, "cblogs grep {all_args:?}");
    }

    // Bad ranges: exit 2, a message naming the problem, nothing printed.
    let future = cblogs_core::time::format_rfc3339(boundary_ns + 3_600_000_000_000);
    let out = grep(&env.server, &["timeout", "--since", &future]);
    assert_eq!(out.code, 2, "--since in the future: {}", out.stderr);
    assert!(out.stderr.contains("in the future"), "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let earlier = cblogs_core::time::format_rfc3339(boundary_ns - 1_000_000_000);
    for (since, until) in [
        (boundary.as_str(), boundary.as_str()),
        (boundary.as_str(), earlier.as_str()),
        ("1h", "2h"),
    ] {
        let out = grep(
            &env.server,
            &["timeout", "--since", since, "--until", until],
        );
        assert_eq!(
            out.code, 2,
            "--since {since} --until {until}: {}",
            out.stderr
        );
        let err = out.stderr.to_lowercase();
        assert!(
            err.starts_with("cblogs: ") && (err.contains("until") || err.contains("empty")),
            "--since {since} --until {until}: the message must name the empty range: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    // The API refuses them too.
    let b = boundary_ns.to_string();
    let f = (boundary_ns + 3_600_000_000_000).to_string();
    for params in [
        vec![
            ("pattern", "timeout"),
            ("since_ns", b.as_str()),
            ("until_ns", b.as_str()),
        ],
        vec![("pattern", "timeout"), ("since_ns", f.as_str())],
    ] {
        let (status, body) = http_get(&env.server, "/api/v1/search", &params);
        assert_eq!(status, 400, "{params:?}: {body}");
        let v: Value = serde_json::from_str(&body).expect("a JSON error");
        assert!(v["error"].is_string(), "{body}");
    }
}

// ---------------------------------------------------------------------------
// 5. Bad input.
// ---------------------------------------------------------------------------

/// The regex crate's error shows the pattern, and under it a `^` at the
/// fault: the caret must be under byte `at` of `pattern`.
fn assert_caret(stderr: &str, pattern: &str, at: usize) {
    let lines: Vec<&str> = stderr.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.contains(pattern))
        .unwrap_or_else(|| panic!("the message quotes {pattern:?}: {stderr}"));
    let want = lines[i].find(pattern).expect("found") + at;
    let caret = lines.get(i + 1).and_then(|l| l.find('^'));
    assert_eq!(caret, Some(want), "a caret under the fault:\n{stderr}");
}

fn error_of(body: &str) -> String {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not a JSON error ({e}): {body}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no \"error\" string: {body}"))
        .to_owned()
}

#[test]
fn bad_input() {
    let _serial = serial();
    let (_dir, server) = Server::in_temp_dir(None);
    let mut f = SourceFile::of("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout);
    server.post_ok(&request(vec![
        f.batch(&["foo(bar) is a literal here", "ERROR something"])
    ]));

    // The CLI checks the regex itself, before any request: the same answer
    // with no server at all.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    for url in [server.url.clone(), format!("http://127.0.0.1:{port}")] {
        let out = cli(&url, &["grep", "foo(bar"]);
        assert_eq!(out.code, 2, "{url}: {}", out.stderr);
        assert!(out.stderr.starts_with("cblogs: "), "{}", out.stderr);
        assert!(out.stderr.contains("unclosed group"), "{}", out.stderr);
        assert_caret(&out.stderr, "foo(bar", 3);
        assert!(out.stdout.is_empty());
    }
    // As a fixed string it is fine, and matches.
    let out = grep(&server, &["-F", "foo(bar", "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), ["foo(bar) is a literal here"]);

    // An unknown job.
    let out = grep(&server, &["ERROR", "nosuchjob"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("cblogs: ") && out.stderr.contains("nosuchjob"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty());

    // The API: 400 for a bad regex, 404 for an unknown job, each with a
    // JSON error; a good request still works.
    let (status, body) = http_get(&server, "/api/v1/search", &[("pattern", "foo(bar")]);
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("unclosed group"), "{body}");
    let (status, body) = http_get(
        &server,
        "/api/v1/search",
        &[("pattern", "ERROR"), ("job", "nosuchjob")],
    );
    assert_eq!(status, 404, "{body}");
    assert!(error_of(&body).contains("nosuchjob"), "{body}");
    let (status, body) = http_get(&server, "/api/v1/search", &[("pattern", "ERROR")]);
    assert_eq!(status, 200, "{body}");
    let last: Value = serde_json::from_str(body.lines().last().expect("events")).expect("JSON");
    assert_eq!(last["type"], "summary", "{body}");
    assert_eq!(last["matched"], 1, "{body}");
    // Its match carries the ranges to highlight, unless asked not to (as
    // `cblogs grep` does when it paints nothing); the line is the same.
    let line_of = |body: &str| -> Value {
        body.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("JSON"))
            .find(|v| v["type"] == "line")
            .unwrap_or_else(|| panic!("no line event: {body}"))
    };
    let shown = line_of(&body);
    assert_ne!(shown["matches"], serde_json::json!([]), "{body}");
    let (status, plain) = http_get(
        &server,
        "/api/v1/search",
        &[("pattern", "ERROR"), ("highlight", "false")],
    );
    assert_eq!(status, 200, "{plain}");
    let plain = line_of(&plain);
    assert_eq!(plain["matches"], serde_json::json!([]), "{plain}");
    assert_eq!(plain["text"], shown["text"]);
    assert_eq!(plain["offset"], shown["offset"]);
    let (status, body) = http_get(
        &server,
        "/api/v1/search",
        &[("pattern", "ERROR"), ("highlight", "maybe")],
    );
    assert_eq!(status, 400, "{body}");
    assert!(error_of(&body).contains("highlight"), "{body}");

    // A pattern too big for search.regex_size_limit.
    let (_small, server) = Server::in_temp_dir(Some("[search]\nregex_size_limit = 10000\n"));
    let mut f = SourceFile::of("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout);
    server.post_ok(&request(vec![f.batch(&["ERROR word7x here"])]));
    let alternation = (0..2000)
        .map(|i| format!("word{i}x"))
        .collect::<Vec<_>>()
        .join("|");
    for pattern in [r"\w{500}", alternation.as_str()] {
        let (status, body) = http_get(&server, "/api/v1/search", &[("pattern", pattern)]);
        assert_eq!(
            status,
            400,
            "{}…: {body}",
            &pattern[..20.min(pattern.len())]
        );
        assert!(
            error_of(&body).contains("search.regex_size_limit"),
            "the error names the setting: {body}"
        );
    }
    let out = grep(&server, &[alternation.as_str()]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("search.regex_size_limit"),
        "{}",
        out.stderr
    );
    // The limit does not refuse ordinary patterns.
    let out = grep(&server, &["ERROR|word7x", "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), ["ERROR word7x here"]);
}

// ---------------------------------------------------------------------------
// 6. Streaming and bounded memory.
// ---------------------------------------------------------------------------

/// The peak resident set of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb * 1024
}

/// POSTs, retrying while cblogsd is busy (503) committing what came before.
fn post_accepted(server: &Server, req: &cblogs_core::wire::IngestRequest) {
    wait_until("an ingest request accepted", DEADLINE, || {
        let (status, body) = server.post(req, false);
        match status {
            200 => Some(()),
            503 => None,
            _ => panic!("ingest refused ({status}): {body}"),
        }
    });
}

/// What a pipe reader saw of a command's output.
struct Piped {
    first_line: Option<Duration>,
    end: Duration,
    bytes: u64,
    lines: u64,
}

/// Runs `cblogs ARGS` reading its stdout through a pipe as it comes.
fn run_piped(server: &Server, args: &[&str], deadline: Duration) -> (Piped, CliOutput) {
    let start = Instant::now();
    let mut child = Command::new(bin("cblogs"))
        .arg("--server")
        .arg(&server.url)
        .args(args)
        .env_remove("CBLOGS_SERVER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cblogs");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Piped {
            first_line: None,
            end: Duration::ZERO,
            bytes: 0,
            lines: 0,
        };
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = stdout.read(&mut buf).expect("read cblogs' stdout");
            if n == 0 {
                break;
            }
            let newlines = buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            if newlines > 0 && seen.first_line.is_none() {
                seen.first_line = Some(start.elapsed());
            }
            seen.bytes += n as u64;
            seen.lines += newlines;
        }
        seen.end = start.elapsed();
        let _ = tx.send(seen);
    });
    let seen = match rx.recv_timeout(deadline) {
        Ok(seen) => seen,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cblogs {args:?} did not finish within {deadline:?}");
        }
    };
    let mut err = String::new();
    stderr.read_to_string(&mut err).expect("read stderr");
    let status = child.wait().expect("wait for cblogs");
    let out = CliOutput {
        code: status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: err,
    };
    (seen, out)
}

#[test]
fn streaming_and_bounded_memory() {
    let _serial = serial();
    // Debug builds scan slowly: no time cap cuts this search short.
    // No caches: the memory measured is the search's own, not the decoded
    // blocks and terms that caches would keep for next time.
    let (_dir, mut server) = Server::in_temp_dir(Some(
        "[search]\nmax_query_secs = 600\nblock_cache_bytes = 0\nterm_cache_bytes = 0\n",
    ));
    const JOB: &str = "devcluster/bulk/prod/firehose";
    const STORE_BYTES: u64 = 200 << 20;
    let pool: Vec<Vec<u8>> = [
        LogKind::WebServerErrors,
        LogKind::Hdfs,
        LogKind::Syslog,
        LogKind::WindowsCbs,
        LogKind::MacOs,
        LogKind::ClusterSyslog,
    ]
    .iter()
    .flat_map(|kind| sample(*kind))
    .collect();
    // Four instances, each a busy stdout and a quieter stderr; 9 lines in
    // 10 hold `pump_seq=N`.
    let mut files: Vec<(SourceFile, usize)> = (0..4)
        .flat_map(|i| {
            [
                (SourceFile::of(JOB, i, "pump", Stream::Stdout), 3000),
                (SourceFile::of(JOB, i, "pump", Stream::Stderr), 200),
            ]
        })
        .collect();
    let (mut n, mut stored, mut matching, mut matching_in_api_source) = (0usize, 0u64, 0u64, 0u64);
    while stored < STORE_BYTES {
        let mut batches = Vec::new();
        for (k, (f, per)) in files.iter_mut().enumerate() {
            let lines: Vec<Vec<u8>> = (0..*per)
                .map(|_| {
                    n += 1;
                    let tag = if n % 10 == 0 { "pump_skip" } else { "pump_seq" };
                    let mut l = format!("{tag}={n} ").into_bytes();
                    l.extend_from_slice(&pool[(n * 7919) % pool.len()]);
                    l
                })
                .collect();
            let m = lines.iter().filter(|l| l.starts_with(b"pump_seq")).count() as u64;
            matching += m;
            if k == 1 {
                // instance 0, stderr: what the API part reads
                matching_in_api_source += m;
            }
            stored += lines.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
            batches.push(f.batch(&lines));
        }
        post_accepted(&server, &request(batches));
    }
    flush(&server);
    // A fresh process: its peak RSS starts from what opening the store takes.
    server.stop();
    server.restart();
    let pid = server.pid().expect("cblogsd runs");
    let warm = grep(
        &server,
        &[r"pump_seq=\d+", "--limit", "5", "--output", "raw"],
    );
    assert_eq!(warm.code, 0, "{}", warm.stderr);
    assert_eq!(warm.lines().len(), 5);
    let peak_before = peak_rss(pid);

    let (seen, out) = run_piped(
        &server,
        &["grep", r"pump_seq=\d+", "--limit", "0", "--output", "raw"],
        Duration::from_secs(600),
    );
    let peak_after = peak_rss(pid);
    eprintln!(
        "cblogs grep: {} lines, {} MiB, first line after {:?}, done after {:?}; \
         cblogsd peak RSS {} -> {} MiB",
        seen.lines,
        seen.bytes >> 20,
        seen.first_line,
        seen.end,
        peak_before >> 20,
        peak_after >> 20
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        seen.lines, matching,
        "every matching line, once; stderr: {}",
        out.stderr
    );
    let first = seen.first_line.expect("a first line");
    assert!(
        first < seen.end / 4,
        "the first line came at {first:?} of {:?}: the result is not streamed",
        seen.end
    );
    let growth = peak_after.saturating_sub(peak_before);
    assert!(
        growth < seen.bytes / 3,
        "cblogsd's peak RSS grew by {} MiB ({} -> {} MiB) for a {} MiB result",
        growth >> 20,
        peak_before >> 20,
        peak_after >> 20,
        seen.bytes >> 20
    );

    // The API streams NDJSON: start, the lines, and a summary that counts them.
    let events = |limit: &str| -> Vec<Value> {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/search", server.url),
            &[
                ("pattern", r"pump_seq=\d+"),
                ("job", "bulk/prod/firehose"),
                ("instance", "0"),
                ("stream", "stderr"),
                ("limit", limit),
            ],
        )
        .expect("URL");
        let resp = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("HTTP client")
            .get(url)
            .send()
            .expect("GET /api/v1/search");
        assert_eq!(resp.status().as_u16(), 200);
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(ctype.contains("ndjson"), "Content-Type {ctype}");
        BufReader::new(resp)
            .lines()
            .map(|l| serde_json::from_str(&l.expect("read the stream")).expect("an NDJSON event"))
            .collect()
    };
    let all = events("0");
    assert_eq!(all.first().map(|e| &e["type"]), Some(&Value::from("start")));
    let summary = all.last().expect("events");
    assert_eq!(summary["type"], "summary", "the last event");
    let lines: Vec<Hit> = all
        .iter()
        .filter(|e| e["type"] == "line")
        .map(|e| parse_hit(&e.to_string()))
        .collect();
    assert_eq!(lines.len() as u64, matching_in_api_source);
    assert_eq!(
        summary["matched"].as_u64(),
        Some(lines.len() as u64),
        "{summary}"
    );
    assert_eq!(summary["more"], false, "{summary}");
    assert_eq!(summary["truncated"], false, "{summary}");
    assert!(lines
        .iter()
        .all(|h| h.instance == 0 && h.stream == Stream::Stderr && h.text.starts_with("pump_seq=")));
    assert!(
        lines.windows(2).all(|w| w[0].offset < w[1].offset),
        "file order"
    );
    assert_eq!(all.len(), lines.len() + 2, "start, lines, summary");

    let five = events("5");
    let summary = five.last().expect("events");
    assert_eq!(summary["type"], "summary");
    assert_eq!(five.iter().filter(|e| e["type"] == "line").count(), 5);
    assert_eq!(summary["more"], true, "more lines match: {summary}");
}

// ---------------------------------------------------------------------------
// 7. Histogram.
// ---------------------------------------------------------------------------

/// `role/env/name` of a job key with or without its cluster.
fn short_job(key: &str) -> String {
    let parts: Vec<&str> = key.split('/').collect();
    parts[parts.len().saturating_sub(3)..].join("/")
}

/// Checks a histogram answer against the times of the lines it must count,
/// per (job or None, stream).
fn check_histogram(what: &str, h: &Value, want: &BTreeMap<(Option<String>, Stream), Vec<i64>>) {
    assert_eq!(h["buckets"], 10, "{what}: {h}");
    assert_eq!(h["truncated"], false, "{what}: {h}");
    let start = h["start_ns"].as_i64().expect("start_ns");
    let step = h["step_ns"].as_i64().expect("step_ns");
    assert!(step > 0, "{what}: {h}");
    let total: usize = want.values().map(Vec::len).sum();
    assert!(total > 0);
    assert_eq!(h["total"].as_u64(), Some(total as u64), "{what}: total");
    let mut seen = BTreeSet::new();
    for s in h["series"].as_array().expect("series") {
        let job = s["job"].as_str().map(short_job);
        let stream: Stream = s["stream"]
            .as_str()
            .expect("stream")
            .parse()
            .expect("a stream");
        let counts: Vec<u64> = s["counts"]
            .as_array()
            .expect("counts")
            .iter()
            .map(|c| c.as_u64().expect("a count"))
            .collect();
        assert_eq!(counts.len(), 10, "{what}: {s}");
        let mut expected = vec![0u64; 10];
        for t in want.get(&(job.clone(), stream)).into_iter().flatten() {
            let b = (t - start).div_euclid(step);
            assert!(
                (0..10).contains(&b),
                "{what}: a line at {t} is outside the buckets from {start} by {step}"
            );
            expected[b as usize] += 1;
        }
        assert_eq!(counts, expected, "{what}: series {job:?} {stream}");
        assert!(seen.insert((job, stream)), "{what}: a series twice: {s}");
    }
    for (key, times) in want {
        assert!(
            times.is_empty() || seen.contains(key),
            "{what}: no series for {key:?}: {h}"
        );
    }
}

#[test]
fn histogram() {
    let _serial = serial();
    let (_dir, server) = Server::in_temp_dir(None);
    const MS: i64 = 1_000_000;
    let base = (cblogs_core::time::now_ns() / 1_000_000_000 - 600) * 1_000_000_000;
    // 200 lines a millisecond apart per source, each source at its own
    // fraction of the millisecond, so no line sits on a range or bucket edge.
    let sources = [
        ("devcluster/bob/prod/metrics", Stream::Stdout, 333_333, 3),
        ("devcluster/bob/prod/metrics", Stream::Stderr, 583_333, 5),
        ("devcluster/bob/prod/other", Stream::Stdout, 433_333, 4),
    ];
    let mut posted: Vec<(String, Stream, i64, bool)> = Vec::new();
    let mut batches = Vec::new();
    for (job, stream, within, every) in sources {
        let mut f = SourceFile::of(job, 0, "app", stream);
        let lines: Vec<(i64, String)> = (0..200i64)
            .map(|i| {
                let text = if i % every == 0 {
                    format!("{i} ERROR boom")
                } else {
                    format!("{i} fine")
                };
                (base + i * MS + within, text)
            })
            .collect();
        posted.extend(
            lines
                .iter()
                .map(|(t, l)| (short_job(job), stream, *t, l.contains("ERROR"))),
        );
        batches.push(f.batch_at(&lines));
    }
    server.post_ok(&request(batches));
    let since = base + 50 * MS + 833_333;
    let until = since + 100 * MS;
    let (since_s, until_s) = (since.to_string(), until.to_string());

    let want = |matching: bool, by_job: bool, only: &dyn Fn(&str, Stream) -> bool| {
        let mut w: BTreeMap<(Option<String>, Stream), Vec<i64>> = BTreeMap::new();
        for (job, stream, t, m) in &posted {
            if (since..until).contains(t) && (*m || !matching) && only(job, *stream) {
                w.entry((by_job.then(|| job.clone()), *stream))
                    .or_default()
                    .push(*t);
            }
        }
        w
    };
    let hist = |extra: &[(&str, &str)]| {
        let mut p = vec![
            ("since_ns", since_s.as_str()),
            ("until_ns", until_s.as_str()),
            ("buckets", "10"),
        ];
        p.extend_from_slice(extra);
        http_get_json(&server, "/api/v1/histogram", &p)
    };
    let any = |_: &str, _: Stream| true;
    check_histogram(
        "pattern=ERROR",
        &hist(&[("pattern", "ERROR")]),
        &want(true, false, &any),
    );
    check_histogram(
        "pattern=error, ignore_case",
        &hist(&[("pattern", "error"), ("ignore_case", "true")]),
        &want(true, false, &any),
    );
    check_histogram("no pattern", &hist(&[]), &want(false, false, &any));
    check_histogram(
        "pattern=ERROR by job",
        &hist(&[("pattern", "ERROR"), ("by", "job")]),
        &want(true, true, &any),
    );
    check_histogram(
        "pattern=ERROR, stderr",
        &hist(&[("pattern", "ERROR"), ("stream", "stderr")]),
        &want(true, false, &|_, s| s == Stream::Stderr),
    );
    check_histogram(
        "pattern=ERROR, job=bob/prod/other",
        &hist(&[("pattern", "ERROR"), ("job", "bob/prod/other")]),
        &want(true, false, &|j, _| j == "bob/prod/other"),
    );

    // The same range through cblogs grep -c agrees with the histogram.
    let since_arg = cblogs_core::time::format_rfc3339(since);
    let until_arg = cblogs_core::time::format_rfc3339(until);
    let out = grep(
        &server,
        &["ERROR", "--since", &since_arg, "--until", &until_arg, "-c"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let per_job = want(true, true, &any);
    let count = |job: &str| -> usize {
        BOTH.iter()
            .map(|s| per_job.get(&(Some(job.to_owned()), *s)).map_or(0, Vec::len))
            .sum()
    };
    assert_eq!(
        out.lines(),
        [
            format!(
                "devcluster/bob/prod/metrics/0:{}",
                count("bob/prod/metrics")
            ),
            format!("devcluster/bob/prod/other/0:{}", count("bob/prod/other")),
        ]
    );
}

/// Lines read in one round share one time: a page that ends among them
/// must continue with the very next line, not repeat or skip any.
#[test]
fn pages_continue_exactly_at_the_cursor() {
    let _serial = serial();
    let (_dir, server) = Server::in_temp_dir(None);
    let t = cblogs_core::time::now_ns() - 1_000_000_000;
    let mut batches = Vec::new();
    let mut written = BTreeSet::new();
    for instance in 0..2 {
        let mut f = SourceFile::of(
            "devcluster/www-data/prod/hello",
            instance,
            "hello",
            Stream::Stdout,
        );
        let lines: Vec<(i64, String)> = (0..300)
            .map(|i| (t, format!("tick {i} on {instance}")))
            .collect();
        let batch = f.batch_at(&lines);
        written.extend(batch.lines.iter().map(|l| (instance, l.offset)));
        batches.push(batch);
    }
    server.post_ok(&request(batches));
    let mut seen = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut params = vec![("pattern", "tick".to_owned()), ("limit", "250".to_owned())];
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
            params.push((
                "since_ns",
                c.split('.').next().unwrap_or_default().to_owned(),
            ));
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = http_get(&server, "/api/v1/search", &params);
        assert_eq!(status, 200, "{body}");
        let mut summary = Value::Null;
        for line in body.lines() {
            let v: Value = serde_json::from_str(line).expect("NDJSON");
            match v["type"].as_str() {
                Some("line") => {
                    let key = (
                        as_u64(&v, "instance", line) as u32,
                        as_u64(&v, "offset", line),
                    );
                    assert!(seen.insert(key), "{key:?} shown twice (page {pages})");
                }
                Some("summary") => summary = v,
                _ => {}
            }
        }
        pages += 1;
        assert!(pages <= 3, "more pages than 600 lines need at 250 a page");
        if summary["more"] != true {
            break;
        }
        cursor = Some(
            summary["next_cursor"]
                .as_str()
                .expect("a next_cursor with more")
                .to_owned(),
        );
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, written, "every line once across the pages");
}
