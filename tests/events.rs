//! Whole events (issue 19), end to end: the real `cblogs-shipper` ships a
//! log4j ERROR line and its stack trace (written in two pieces, the first
//! committed to the index before the second arrives), a Python
//! `logging.exception` and its traceback, and a job cut by a
//! `[[multiline]]` rule; the real `cblogs grep --events` then prints each
//! whole event a match falls in, from its opening line, once, apart from
//! the others (one event a page: each next page starts at the cursor past
//! the last event), and still after a `kill -9` of cblogsd.

use std::time::Duration;

use cblogs_core::Stream;
use cblogs_testkit::*;
use serde_json::Value;

/// A `[[multiline]]` rule; and pages of one event, so that every
/// `grep --events` below goes from page to page by the summary's cursor.
const RULES: &str = r#"
[search]
max_results = 1

[[multiline]]
jobs = ["www-data/prod/legacy"]
firstline = '^\[\d{2}:\d{2}:\d{2}\]'
"#;

const LOG4J_BEFORE: &str =
    "2015-10-18 18:01:47,900 INFO [main] org.apache.hadoop.mapred.Task: start";
const LOG4J: [&str; 7] = LOG4J_EVENT;
const LOG4J_AFTER: &str = "2015-10-18 18:01:48,001 INFO [main] org.apache.hadoop.mapred.Task: next";

const PYTHON: [&str; 5] = [
    "ERROR:app.cart:checkout failed for order 77",
    "Traceback (most recent call last):",
    "  File \"/srv/app/handlers.py\", line 88, in post",
    "    qty = int(form[\"qty\"])",
    "ValueError: invalid literal for int() with base 10: 'three'",
];

const LEGACY: [&str; 5] = [
    "[10:00:00] starting",
    "[10:00:01] request failed:",
    "  disk full on /data",
    "  retrying in 5s",
    "[10:00:02] done",
];

/// `cblogs grep ARGS --output raw`: its lines, and its stderr.
fn grep(server: &Server, args: &[&str]) -> (Vec<String>, String) {
    let mut all = vec!["grep", "--output", "raw"];
    all.extend_from_slice(args);
    let out = server.cli(&all);
    assert!(
        out.code == 0 || out.code == 1,
        "cblogs {all:?} failed: {}",
        out.stderr
    );
    (out.stdout.lines().map(str::to_owned).collect(), out.stderr)
}

fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|s| s.to_string()).collect()
}

/// Waits until `job` holds `n` lines.
fn wait_lines(server: &Server, job: &str, n: usize) {
    wait_until(
        &format!("{job}'s {n} lines"),
        Duration::from_secs(30),
        || {
            let out = server.cli(&["tail", job, "-n", "1000", "--output", "raw"]);
            (out.code == 0 && out.stdout.lines().count() >= n).then_some(())
        },
    );
}

#[test]
fn grep_events_prints_whole_events() {
    let mut stack = Stack::new(Some(RULES));
    let _shipper = stack.shipper();
    let hello = stack.task(("www-data", "prod", "hello"), 0);
    let mut hadoop = hello.process("hadoop", 0);
    let mut web = hello.process("web", 0);
    let mut legacy = stack
        .task(("www-data", "prod", "legacy"), 0)
        .process("app", 0);

    // The first piece of the trace, stored and committed to the index.
    let mut first = vec![LOG4J_BEFORE];
    first.extend_from_slice(&LOG4J[..3]);
    hadoop.append_lines(Stream::Stderr, &first);
    wait_lines(&stack.server, "www-data/prod/hello", 4);
    stack.server.flush();
    // Another source's line between the trace's two pieces.
    web.append_lines(Stream::Stdout, &["INFO GET /health 200"]);
    wait_lines(&stack.server, "www-data/prod/hello", 5);
    let mut rest = LOG4J[3..].to_vec();
    rest.push(LOG4J_AFTER);
    hadoop.append_lines(Stream::Stderr, &rest);
    let mut python = vec!["INFO:app.cart:POST /cart"];
    python.extend_from_slice(&PYTHON);
    python.push("INFO:app.cart:POST /cart 500");
    web.append_lines(Stream::Stderr, &python);
    legacy.append_lines(Stream::Stdout, &LEGACY);
    wait_lines(&stack.server, "www-data/prod/hello", 5 + 5 + 7);
    wait_lines(&stack.server, "www-data/prod/legacy", 5);

    let check = |server: &Server| {
        // Without --events: the matching line alone.
        let (lines, _) = grep(server, &["IOException", "www-data/prod/hello"]);
        assert_eq!(lines, [LOG4J[1]]);
        // The whole event, from the ERROR line that says what failed,
        // across the two blocks it was stored in.
        let (lines, _) = grep(server, &["--events", "IOException", "www-data/prod/hello"]);
        assert_eq!(lines, owned(&LOG4J), "the log4j event, whole");
        // Two matches in one event: the event once.
        let (lines, _) = grep(
            server,
            &[
                "--events",
                "IOException|SocketException",
                "www-data/prod/hello",
            ],
        );
        assert_eq!(lines, owned(&LOG4J), "one event, printed once");
        // An event is not split by another source's line between its
        // lines' times, and events are apart.
        let (lines, _) = grep(
            server,
            &["--events", "IOException|/health", "www-data/prod/hello"],
        );
        let mut want = owned(&LOG4J);
        want.extend(owned(&["--", "INFO GET /health 200"]));
        assert_eq!(lines, want);
        // Python's logging.exception: its message line and traceback.
        let (lines, _) = grep(server, &["--events", "ValueError"]);
        assert_eq!(lines, owned(&PYTHON), "the Python event, whole");
        // A [[multiline]] rule's job.
        let (lines, _) = grep(server, &["--events", "disk full", "www-data/prod/legacy"]);
        assert_eq!(lines, owned(&LEGACY[1..4]), "the rule's event");
        // --limit counts events.
        let (lines, stderr) = grep(
            server,
            &["--events", "--limit", "1", "IOException|ValueError"],
        );
        assert!(
            lines == owned(&LOG4J) || lines == owned(&PYTHON),
            "one whole event: {lines:?}"
        );
        assert!(
            stderr.contains("stopped at --limit 1 events; more events match"),
            "{stderr}"
        );
        // JSON: the lines that continue say so; the match is no context.
        let out = server.cli(&[
            "grep",
            "--events",
            "IOException",
            "www-data/prod/hello",
            "--output",
            "json",
        ]);
        let json: Vec<Value> = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        assert_eq!(json.len(), LOG4J.len(), "{}", out.stdout);
        for (i, l) in json.iter().enumerate() {
            assert_eq!(l["continues"].as_bool().unwrap_or(false), i > 0, "{l}");
            assert_eq!(l["context"], i != 1, "{l}");
        }
    };
    check(&stack.server);
    // The marks are stored with the lines: the same after a kill -9.
    stack.server.kill9();
    stack.server.restart();
    check(&stack.server);
    // And a bad rule stops cblogsd with an error that names it.
    let config = stack.dir.path().join("bad.toml");
    std::fs::write(
        &config,
        "[[multiline]]\njobs = [\"www-data/prod/legacy\"]\nfirstline = '(unclosed'\n",
    )
    .expect("write");
    let out = std::process::Command::new(bin("cblogsd"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(stack.dir.path().join("bad-data"))
        .output()
        .expect("run cblogsd");
    assert!(!out.status.success(), "cblogsd started with a bad rule");
    let bad = String::from_utf8_lossy(&out.stderr);
    assert!(
        bad.contains("[[multiline]] number 1: 'firstline' is not a valid regex"),
        "{bad}"
    );
}
