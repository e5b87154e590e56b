//! `cblogs tail` and `cblogs jobs` against the real server: two jobs with
//! several instances, processes and both streams, read from memory, then
//! from the index, then after a restart.

use cblogs_core::{LineView, Stream};
use cblogs_testkit::*;

/// What was posted, in time order: (job key, instance, process, stream, bytes).
struct Posted {
    job: &'static str,
    instance: u32,
    process: &'static str,
    stream: Stream,
    bytes: Vec<u8>,
}

impl Posted {
    fn pretty(&self, show_job: bool) -> String {
        let who = if show_job {
            format!(
                "{}/{}",
                self.job.rsplit('/').next().unwrap_or(self.job),
                self.instance
            )
        } else {
            self.instance.to_string()
        };
        format!(
            "{who} {}/{} │ {}",
            self.process,
            self.stream,
            shown(&self.bytes)
        )
    }
}

const HELLO: &str = "devcluster/www-data/prod/hello";
const API: &str = "devcluster/bob/devel/api";

/// Posts interleaved rounds to every source and returns the model.
fn post_fixture(server: &Server) -> Vec<Posted> {
    let apache = sample(LogKind::WebServerErrors);
    let hdfs = sample(LogKind::Hdfs);
    let ssh = sample(LogKind::Sshd);
    let mut files = Vec::new();
    for instance in 0..3 {
        for stream in [Stream::Stdout, Stream::Stderr] {
            files.push((HELLO, instance, "hello", stream, &apache));
        }
    }
    for instance in 0..2 {
        for (process, lines) in [("api", &hdfs), ("fetch_package", &ssh)] {
            for stream in [Stream::Stdout, Stream::Stderr] {
                files.push((API, instance, process, stream, lines));
            }
        }
    }
    let mut writers: Vec<SourceFile> = files
        .iter()
        .map(|(job, i, p, s, _)| SourceFile::of(job, *i, p, *s))
        .collect();
    let mut posted = Vec::new();
    for round in 0..6 {
        let mut batches = Vec::new();
        for (k, (job, instance, process, stream, lines)) in files.iter().enumerate() {
            // stderr gets fewer lines than stdout, like real processes.
            let count = if *stream == Stream::Stderr { 2 } else { 9 };
            let chunk: Vec<Vec<u8>> = (0..count)
                .map(|j| lines[(round * 37 + k * 11 + j) % lines.len()].clone())
                .collect();
            batches.push(writers[k].batch(&chunk));
            posted.extend(chunk.into_iter().map(|bytes| Posted {
                job,
                instance: *instance,
                process,
                stream: *stream,
                bytes,
            }));
        }
        server.post_ok(&request(batches));
    }
    posted
}

fn expect_tail(server: &Server, args: &[&str], expected: Vec<String>) {
    let out = server.cli(args);
    assert_eq!(out.code, 0, "cblogs {args:?} failed: {}", out.stderr);
    assert!(!expected.is_empty(), "a check must expect something");
    assert_eq!(out.lines(), expected, "cblogs {args:?}");
}

fn last<'a>(posted: impl Iterator<Item = &'a Posted>, n: usize) -> Vec<&'a Posted> {
    let all: Vec<&Posted> = posted.collect();
    all[all.len().saturating_sub(n)..].to_vec()
}

fn check_reads(server: &Server, posted: &[Posted]) {
    // The newest 5 lines of one job, in order, with the stern-like prefix.
    let want = last(posted.iter().filter(|p| p.job == HELLO), 5)
        .iter()
        .map(|p| p.pretty(false))
        .collect();
    expect_tail(server, &["tail", "www-data/prod/hello", "-n", "5"], want);

    // One instance, everything.
    let want = posted
        .iter()
        .filter(|p| p.job == HELLO && p.instance == 1)
        .map(|p| p.pretty(false))
        .collect();
    expect_tail(
        server,
        &["tail", HELLO, "--instance", "1", "-n", "1000"],
        want,
    );

    // Instances through the selector itself.
    let want = posted
        .iter()
        .filter(|p| p.job == HELLO && p.instance != 1)
        .map(|p| p.pretty(false))
        .collect();
    expect_tail(
        server,
        &["tail", "www-data/prod/hello/0,2", "-n", "1000"],
        want,
    );

    // Only stderr; a bare name that is unique.
    let want = posted
        .iter()
        .filter(|p| p.job == API && p.stream == Stream::Stderr)
        .map(|p| p.pretty(false))
        .collect();
    expect_tail(
        server,
        &["tail", "api", "--stream", "stderr", "-n", "1000"],
        want,
    );

    // One process, a few lines, raw output.
    let want = last(
        posted
            .iter()
            .filter(|p| p.job == API && p.process == "fetch_package"),
        7,
    )
    .iter()
    .map(|p| shown(&p.bytes))
    .collect();
    expect_tail(
        server,
        &[
            "tail",
            "bob/devel/api",
            "--process",
            "fetch_package",
            "-n",
            "7",
            "--output",
            "raw",
        ],
        want,
    );

    // A glob over both jobs: the prefix names the job.
    let want = last(posted.iter(), 12)
        .iter()
        .map(|p| p.pretty(true))
        .collect();
    expect_tail(server, &["tail", "*/*/*", "-n", "12"], want);

    // JSON: every field, offsets growing per source.
    let lines: Vec<LineView> = server.all_lines(API);
    let want: Vec<&Posted> = posted.iter().filter(|p| p.job == API).collect();
    assert_eq!(lines.len(), want.len());
    let mut offsets = std::collections::HashMap::new();
    for (l, p) in lines.iter().zip(&want) {
        assert_eq!(
            (l.job.as_str(), l.instance, l.process.as_str(), l.stream),
            ("bob/devel/api", p.instance, p.process, p.stream)
        );
        assert_eq!(l.cluster, "devcluster");
        assert_eq!(
            l.text.as_bytes(),
            &p.bytes[..],
            "the stored line keeps its bytes, \\r included"
        );
        assert!(l
            .task_id
            .starts_with(&format!("bob-devel-api-{}-", p.instance)));
        let prev = offsets.insert(l.source.clone(), l.offset);
        assert!(prev.is_none_or(|o| o < l.offset), "offsets grow per source");
    }

    // jobs: both, with instances and counts.
    let out = server.cli(&["jobs"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let rows = out.lines();
    assert_eq!(
        rows[0].split_whitespace().collect::<Vec<_>>(),
        ["JOB", "INSTANCES", "LINES", "LAST", "SEEN"]
    );
    let hello_lines = posted.iter().filter(|p| p.job == HELLO).count().to_string();
    let api_lines = posted.iter().filter(|p| p.job == API).count().to_string();
    let row = |key: &str| {
        rows.iter()
            .find(|r| r.starts_with(key))
            .map(|r| r.split_whitespace().collect::<Vec<_>>())
    };
    assert_eq!(
        row(API).expect("api row")[1..3],
        ["0-1", api_lines.as_str()]
    );
    assert_eq!(
        row(HELLO).expect("hello row")[1..3],
        ["0-2", hello_lines.as_str()]
    );

    let out = server.cli(&["jobs", "bob/*", "--output", "raw"]);
    assert_eq!(out.lines(), [API]);
    let out = server.cli(&["jobs", "--output", "json"]);
    let jobs: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[1]["instances"].as_array().map(Vec::len), Some(3));

    // An unknown job: a clear message, exit 1.
    let out = server.cli(&["tail", "nosuch"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr.trim(), "cblogs: no job matches 'nosuch'");
    assert!(out.stdout.is_empty());
}

#[test]
fn tail_and_jobs_from_memory_from_the_index_and_after_a_restart() {
    for config in [None, Some(SMALL_BLOCKS)] {
        let (_dir, mut server) = Server::in_temp_dir(config);
        let posted = post_fixture(&server);
        check_reads(&server, &posted);
        // After a clean stop everything is committed to the index.
        server.stop();
        server.restart();
        check_reads(&server, &posted);
    }
}

#[test]
fn an_ambiguous_name_lists_the_candidates() {
    let (_dir, server) = Server::in_temp_dir(None);
    for job in [
        "devcluster/www-data/prod/hello",
        "devcluster/bob/devel/hello",
    ] {
        let mut f = SourceFile::of(job, 0, "hello", Stream::Stdout);
        server.post_ok(&request(vec![f.batch(&["hi"])]));
    }
    let out = server.cli(&["tail", "hello"]);
    assert_eq!(out.code, 1, "stdout: {}", out.stdout);
    assert!(
        out.stderr
            .starts_with("cblogs: job 'hello' is ambiguous: it matches 2 jobs"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\n  devcluster/bob/devel/hello\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("\n  devcluster/www-data/prod/hello\n"),
        "{}",
        out.stderr
    );
    // The full key settles it; a glob is not ambiguous, it means both.
    assert_eq!(
        server
            .cli(&["tail", "bob/devel/hello", "--output", "raw"])
            .lines(),
        ["hi"]
    );
    assert_eq!(
        server.cli(&["tail", "hel*", "--output", "raw"]).lines(),
        ["hi", "hi"]
    );
}

#[test]
fn an_unreachable_server_is_one_clear_line() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    for args in [&["jobs"][..], &["tail", "hello"], &["tail", "hello", "-f"]] {
        let out = cli(&format!("http://127.0.0.1:{port}"), args);
        assert_eq!(out.code, 1, "{args:?}");
        assert_eq!(
            out.stderr,
            format!(
                "cblogs: cannot reach cblogsd at http://127.0.0.1:{port}: connection refused\n"
            )
        );
    }
}

#[test]
fn since_and_timestamps() {
    let (_dir, server) = Server::in_temp_dir(None);
    let mut f = SourceFile::of("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout);
    server.post_ok(&request(vec![f.batch(&["old one", "old two"])]));
    let cut = cblogs_core::time::format_rfc3339(next_time());
    server.post_ok(&request(vec![f.batch(&["new one", "new two"])]));

    let raw = |args: &[&str]| {
        let mut all = vec!["tail", "hello", "--output", "raw"];
        all.extend_from_slice(args);
        let out = server.cli(&all);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        out.stdout
    };
    assert_eq!(raw(&["--since", &cut]), "new one\nnew two\n");
    assert_eq!(
        raw(&["--since", "1h"]),
        "old one\nold two\nnew one\nnew two\n"
    );
    assert_eq!(raw(&["--since", "1h", "-n", "1"]), "new two\n");

    // -t: each line starts with its time, which sorts like the lines.
    let stamped = raw(&["-t"]);
    let times: Vec<&str> = stamped
        .lines()
        .map(|l| l.split(' ').next().unwrap_or_default())
        .collect();
    assert_eq!(times.len(), 4);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(
        times
            .iter()
            .all(|t| cblogs_core::time::parse_rfc3339(t).is_some()),
        "{times:?}"
    );
    assert!(stamped
        .lines()
        .last()
        .is_some_and(|l| l.ends_with(" new two")));

    for (bad, why) in [
        ("2099-01-01T00:00:00Z", "is in the future"),
        ("yesterday", "is not a time"),
    ] {
        let out = server.cli(&["tail", "hello", "--since", bad]);
        assert_eq!(out.code, 2, "{bad}");
        assert!(out.stderr.contains(why), "{}", out.stderr);
    }
}
