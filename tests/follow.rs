//! `cblogs tail -f`: a new line shows within a second, and following goes on
//! across server restarts without repeating or losing a line.

use std::time::{Duration, Instant};

use cblogs_core::Stream;
use cblogs_testkit::*;

#[test]
fn follow_prints_new_lines_at_once_and_survives_restarts() {
    let (_dir, mut server) = Server::in_temp_dir(Some(SMALL_BLOCKS));
    let mut out = SourceFile::of("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout);
    let mut err = SourceFile::of("devcluster/www-data/prod/hello", 1, "hello", Stream::Stderr);
    let backlog: Vec<String> = (0..20).map(|i| format!("backlog {i}")).collect();
    server.post_ok(&request(vec![out.batch(&backlog)]));

    let mut f = Follower::start(
        &server.url,
        &[
            "tail",
            "www-data/prod/hello",
            "-f",
            "-n",
            "5",
            "--output",
            "raw",
        ],
    );
    f.expect_line("backlog 19", DEADLINE);
    let mut expected: Vec<String> = backlog[15..].to_vec();

    // A line posted now is printed within a second.
    let post = |server: &Server, f: &mut SourceFile, text: String, expected: &mut Vec<String>| {
        server.post_ok(&request(vec![f.batch(&[text.as_str()])]));
        expected.push(text);
    };
    for i in 0..5 {
        let text = format!("live {i}");
        let sent = Instant::now();
        post(
            &server,
            if i % 2 == 0 { &mut out } else { &mut err },
            text.clone(),
            &mut expected,
        );
        f.expect_line(&text, Duration::from_secs(1));
        assert!(sent.elapsed() < Duration::from_secs(1));
    }

    // Both kinds of restart; lines written right after the restart (maybe
    // before the follower is back) must show exactly once.
    for (round, hard) in [(0, true), (1, false)] {
        if hard {
            server.kill9();
        } else {
            server.stop();
        }
        f.expect_stderr("lost connection", DEADLINE);
        server.restart();
        for i in 0..3 {
            post(
                &server,
                &mut out,
                format!("after restart {round}.{i}"),
                &mut expected,
            );
        }
        f.expect_stderr("reconnected", DEADLINE);
        f.expect_line(&format!("after restart {round}.2"), DEADLINE);
        let text = format!("live again {round}");
        post(&server, &mut err, text.clone(), &mut expected);
        f.expect_line(&text, Duration::from_secs(1));
    }
    assert_eq!(
        f.seen, expected,
        "every line once, in order, across two restarts"
    );
}

#[test]
fn a_glob_follow_takes_in_jobs_that_appear_later() {
    let (_dir, server) = Server::in_temp_dir(None);
    let mut first = SourceFile::of("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout);
    server.post_ok(&request(vec![first.batch(&["from hello"])]));

    let mut f = Follower::start(&server.url, &["tail", "www-data/prod/*", "-f"]);
    f.expect_line("0 hello/stdout │ from hello", DEADLINE);
    let mut later = SourceFile::of("devcluster/www-data/prod/goodbye", 2, "bye", Stream::Stderr);
    server.post_ok(&request(vec![later.batch(&["from goodbye"])]));
    f.expect_line(
        "goodbye/2 bye/stderr │ from goodbye",
        Duration::from_secs(1),
    );
    // A job outside the glob stays out.
    let mut other = SourceFile::of("devcluster/bob/prod/hello", 0, "hello", Stream::Stdout);
    server.post_ok(&request(vec![
        other.batch(&["from bob"]),
        first.batch(&["hello again"]),
    ]));
    f.expect_line("hello again", Duration::from_secs(1));
    assert!(
        !f.seen.iter().any(|l| l.contains("from bob")),
        "{:?}",
        f.seen
    );
}

/// The first `count` event names of a follow stream.
fn follow_events(url: &str, query: &str, count: usize) -> Vec<String> {
    use std::io::BufRead;
    let resp = reqwest::blocking::Client::new()
        .get(format!("{url}/api/v1/follow?{query}"))
        .send()
        .expect("GET /api/v1/follow");
    assert_eq!(resp.status(), 200);
    std::io::BufReader::new(resp)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("event: ").map(str::to_owned))
        .take(count)
        .collect()
}

#[test]
fn a_resume_that_cannot_send_everything_says_so() {
    let (_dir, server) = Server::in_temp_dir(None);
    let mut f = SourceFile::of("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout);
    let since = next_time();
    server.post_ok(&request(vec![f.batch(&["one", "two", "three"])]));
    let query = format!("job=hello&since_ns={since}");
    assert_eq!(
        follow_events(&server.url, &format!("{query}&n=2"), 4),
        ["jobs", "truncated", "line", "line"]
    );
    assert_eq!(
        follow_events(&server.url, &format!("{query}&n=3"), 4),
        ["jobs", "line", "line", "line"]
    );
}
