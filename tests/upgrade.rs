//! Upgrades (issue 16, rule 8): a shipper one version older against the new
//! cblogsd, and the new shipper against a cblogsd one version older; each
//! shipper taking over the other's checkpoints; and a data dir of the older
//! cblogsd opened by the new one. "One version older" is
//! [`PREVIOUS_VERSION`], built from this repository's history on first use.

use cblogs_core::Stream;
use cblogs_testkit::*;

const JOB: &str = "www-data/prod/upgrade";

/// The shipper settings both versions know (the older one refuses keys it
/// does not).
const SHIPPER_BOTH: &str = SHIPPER_FAST;

/// Splits published every second, so the new server's published ends move.
const NEW_SERVER: &str =
    "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 200\ncommit_interval_ms = 100\n\
     split_max_age_secs = 1\n";

fn lines(tag: &str, n: usize) -> Vec<String> {
    numbered_lines(tag, n)
}

/// The status of `stream`'s file in the shipper's status endpoint.
fn file_status(shipper: &Shipper, run: &ProcessRun, stream: Stream) -> Option<serde_json::Value> {
    let path = run.path(stream).display().to_string();
    shipper
        .files()
        .into_iter()
        .find(|f| f["path"] == path.as_str())
}

#[test]
fn a_shipper_one_version_older_ships_to_the_new_server_and_is_upgraded_in_place() {
    let stack = Stack::new(Some(NEW_SERVER));
    let mut server = stack.server;
    let task = stack.agent.task("www-data", "prod", "upgrade", 0);
    let mut run = task.process("web", 0);
    run.append_lines(Stream::Stdout, &lines("old-shipper", 200));
    run.append_lines(Stream::Stderr, &lines("old-shipper-err", 20));
    let mut shipper = Shipper::start_program(
        &previous_bin("cblogs-shipper"),
        &stack.agent,
        &stack.dir.path().join("shipper-state"),
        &server.url,
        SHIPPER_BOTH,
    );
    assert_job_exactly_once(&server, &mut shipper, &[&run], JOB, "older shipper");
    // Answers carry fields it does not know (the incarnation); a rotation
    // and a restart of the new server change nothing for it.
    run.rotate(Stream::Stdout);
    run.append_lines(Stream::Stdout, &lines("rotated", 50));
    server.kill9();
    server.restart();
    run.append_lines(Stream::Stdout, &lines("after-restart", 50));
    assert_job_exactly_once(
        &server,
        &mut shipper,
        &[&run],
        JOB,
        "after the server restarted",
    );

    // The upgrade: the new shipper takes over the older one's checkpoints.
    shipper.stop();
    run.append_lines(Stream::Stdout, &lines("while-upgrading", 30));
    shipper.restart_as(&bin("cblogs-shipper"));
    run.append_lines(Stream::Stderr, &lines("new-shipper-err", 10));
    assert_job_exactly_once(&server, &mut shipper, &[&run], JOB, "upgraded shipper");
    // It learns what the new server has published.
    server.flush();
    wait_until(
        "the upgraded shipper to learn the published end",
        DEADLINE,
        || {
            let f = file_status(&shipper, &run, Stream::Stdout)?;
            (f["published"] == f["acked"] && f["acked"].as_u64() > Some(0)).then_some(())
        },
    );
    shipper.stop();
}

#[test]
fn the_new_shipper_ships_to_a_server_one_version_older_then_both_are_upgraded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = Server::start_program(
        &previous_bin("cblogsd"),
        &data,
        Some(SMALL_BLOCKS),
        "127.0.0.1:0",
        &[],
    );
    let agent = Agent::new(&dir.path().join("agent"));
    let task = agent.task("www-data", "prod", "upgrade", 1);
    let mut run = task.process("web", 0);
    run.append_lines(Stream::Stdout, &lines("new-shipper", 200));
    run.append_lines(Stream::Stderr, &lines("new-shipper-err", 20));
    let state = dir.path().join("shipper-state");
    // Settings both versions know: the older shipper, later, reads this
    // file too (and refuses keys it does not know).
    let mut shipper =
        Shipper::start_with_status_endpoint(&agent, &state, &server.url, SHIPPER_BOTH);
    assert_job_exactly_once(&server, &mut shipper, &[&run], JOB, "older server");
    // The older server says nothing of what it published: the new shipper
    // says so once, and keeps no rotated file open for it.
    wait_until("the shipper to see an older server", DEADLINE, || {
        shipper
            .log_text()
            .contains("an older cblogsd")
            .then_some(())
    });
    run.rotate(Stream::Stdout);
    run.append_lines(Stream::Stdout, &lines("rotated", 50));
    assert_job_exactly_once(&server, &mut shipper, &[&run], JOB, "after a rotation");
    wait_until("the rotated file to be closed", DEADLINE, || {
        let f = file_status(&shipper, &run, Stream::Stdout)?;
        (f["open_files"] == 1).then_some(())
    });
    // The downgrade: the older shipper takes over the new one's checkpoints.
    shipper.stop();
    run.append_lines(Stream::Stdout, &lines("older-again", 30));
    shipper.restart_as(&previous_bin("cblogs-shipper"));
    assert_job_exactly_once(&server, &mut shipper, &[&run], JOB, "downgraded shipper");

    // The server's upgrade: the new cblogsd converts the older data dir
    // once, at start, and holds every source's end (no line twice).
    server.stop();
    run.append_lines(Stream::Stdout, &lines("while-the-server-upgrades", 30));
    server.restart_as(&bin("cblogsd"));
    assert_job_exactly_once(&server, &mut shipper, &[&run], JOB, "upgraded server");
    let storage = server.storage();
    assert!(
        storage["splits"].as_array().is_some_and(|s| !s.is_empty()),
        "the older partitions are splits now: {storage}"
    );
    server.kill9();
    server.restart();
    run.append_lines(Stream::Stderr, &lines("at-the-end", 10));
    assert_job_exactly_once(&server, &mut shipper, &[&run], JOB, "after another restart");
    shipper.stop();
}
