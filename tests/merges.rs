//! Background merges on the real cblogsd with its embedded object store
//! (issue 17): published splits are merged, each source's small blocks
//! combined and compressed again; readers see every line exactly once
//! before, during and after each merge, also while retention races the
//! merges for the same splits; a merge's inputs leave the bucket once no
//! search can still read them; what a merge killed midway left is
//! deleted, and nothing is lost. (On S3, and killed mid-upload:
//! tests/object_store.rs.)

use std::collections::BTreeSet;
use std::path::Path;

use cblogs_core::time::now_ns;
use cblogs_core::Stream;
use cblogs_testkit::*;
use serde_json::Value;

const DAY_NS: i64 = 86_400_000_000_000;
const JOB: &str = "www-data/prod/merge";

/// Small blocks, a split a second, merges of every two splits of a level.
const MERGING: &str = "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 100\n\
     commit_interval_ms = 50\nsplit_max_age_secs = 1\npartition_secs = 3600\n\
     [search]\nmax_query_secs = 1\n[merge]\nmerge_factor = 2\nblock_bytes = 65536\n";

fn file(instance: u32) -> SourceFile {
    SourceFile::of(
        &format!("devcluster/{JOB}"),
        instance,
        "merge",
        Stream::Stdout,
    )
}

/// The merges section of `GET /api/v1/storage`.
fn merges(server: &Server) -> Value {
    server.storage()["merges"].clone()
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

/// The split folders in the embedded store.
fn bucket_splits(data: &Path) -> BTreeSet<String> {
    std::fs::read_dir(data.join("bucket").join("splits"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The splits `GET /api/v1/storage` lists as published.
fn published_splits(server: &Server) -> BTreeSet<String> {
    server.storage()["splits"]
        .as_array()
        .expect("splits")
        .iter()
        .filter(|s| s["state"] == "published")
        .filter_map(|s| s["id"].as_str().map(str::to_owned))
        .collect()
}

/// Waits until no merge runs or is due, and returns the merges section.
fn merges_settled(server: &Server) -> Value {
    wait_until("merges to settle", DEADLINE, || {
        let m = merges(server);
        (count(&m, "pending") == 0 && m["running"] == false).then_some(m)
    })
}

/// The readers' side of issue 17's rule: every line exactly once, at
/// every instant. A writer posts numbered lines of one source (every
/// other line of a second, quiet source: small blocks to combine), and
/// with every other batch old lines in an old window that retention
/// retires while the settled window's merges want the same splits (one
/// of the two loses, never a line). Greps and `tail -n` run meanwhile:
/// each must show a prefix of the numbered lines, none twice and none
/// missing that was acknowledged before it began; a follow must print
/// every line once, in order.
#[test]
fn readers_see_each_line_once_while_splits_are_merged_and_retired() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    const PER_ROUND: usize = 20;
    let config = MERGING.replace(
        "partition_secs = 3600\n",
        "partition_secs = 3600\nretention_days = 14\nretention_check_secs = 1\n",
    );
    let (_dir, server) = Server::in_temp_dir(Some(&config));
    let numbered = |i: usize| format!("now {i:05} a line long enough to fill a block soon");
    let mut busy = file(0);
    server.post_ok(&request(vec![busy.batch(&[numbered(0)])]));
    let mut follow = Follower::start(
        &server.url,
        &["tail", JOB, "-f", "-n", "1", "--output", "raw"],
    );
    follow.expect_line(&numbered(0), DEADLINE);

    let written = WriteProgress::new(1);
    let enough = AtomicBool::new(false);
    let mut rounds = 0;
    let started = std::time::Instant::now();
    let storage = std::thread::scope(|scope| {
        scope.spawn(|| {
            let (mut quiet, mut old) = (file(1), file(2));
            let long_ago = now_ns() - 20 * DAY_NS;
            let mut round = 0i64;
            while !enough.load(SeqCst) {
                written.write(PER_ROUND, |lines| {
                    let texts: Vec<String> = lines.map(numbered).collect();
                    let mut batches = vec![busy.batch(&texts)];
                    if round % 2 == 0 {
                        batches.push(quiet.batch(&[format!("quiet {round}")]));
                    } else {
                        // Two rounds' old lines in one window of an hour:
                        // two splits there, which the settled window's
                        // merge and retention both want.
                        let at = long_ago + (round / 4 % 48) * 3_600_000_000_000 + round;
                        batches.push(old.batch_at(&[(at, format!("old {round}"))]));
                    }
                    server.post_ok(&request(batches));
                });
                round += 1;
                // Paced, so that readers run between the writes.
                std::thread::sleep(std::time::Duration::from_millis(60));
            }
        });
        let _writer_ends = SetOnDrop(&enough);
        loop {
            reads_are_acknowledged_prefixes(&server, JOB, &written, &numbered);
            rounds += 1;

            // On until it really ran across merges of several levels.
            let s = server.storage();
            let done = count(&s["merges"], "done");
            if done >= 6 && rounds >= 5 {
                enough.store(true, SeqCst);
                break s;
            }
            assert!(
                started.elapsed() < 2 * DEADLINE,
                "{done} merges after {rounds} rounds of reads: {s}"
            );
        }
    });
    let total = written.acked();
    follow_shows_numbered_once(
        &mut follow,
        total,
        &numbered,
        &format!("{rounds} rounds of grep and tail; {storage}"),
    );
    let m = &storage["merges"];
    assert!(
        count(m, "blocks_out") < count(m, "blocks_in"),
        "the quiet source's small blocks were combined: {m}"
    );
    let metrics = server
        .metric("cblogs_merges_total")
        .expect("merges counted");
    assert!(metrics >= 6.0, "{metrics}");
}

/// Quiet sources leave a block of a line or two per split; once merged,
/// each source's lines are in one block, the bucket holds fewer bytes,
/// every line is still there once (also after a restart, clean or not),
/// and the inputs' objects have left the bucket.
#[test]
fn a_quiet_sources_small_blocks_become_one_and_the_inputs_leave_the_bucket() {
    const SOURCES: u32 = 6;
    let held = MERGING.replace("[merge]\n", "[merge]\nenabled = false\n");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, Some(&held));
    let mut files: Vec<SourceFile> = (0..SOURCES).map(file).collect();
    let mut want = Vec::new();
    for round in 0..40 {
        let batches = files
            .iter_mut()
            .enumerate()
            .map(|(i, f)| {
                let text = format!(
                    "quiet source {i} says {round:03} [{}]",
                    "x".repeat(round % 7)
                );
                want.push(text.clone());
                f.batch(&[text])
            })
            .collect();
        server.post_ok(&request(batches));
        // Lines of a round seal together, a split a second: several splits.
        std::thread::sleep(std::time::Duration::from_millis(150));
    }
    server.flush();
    want.sort();
    let lines = |server: &Server| {
        let mut got: Vec<String> = server.all_lines(JOB).into_iter().map(|l| l.text).collect();
        got.sort();
        got
    };
    assert_eq!(lines(&server), want);
    let before = server.storage();
    let blocks = |s: &Value| -> u64 {
        s["splits"]
            .as_array()
            .expect("splits")
            .iter()
            .map(|x| x["blocks"].as_u64().expect("blocks"))
            .sum()
    };
    let splits_before = published_splits(&server);
    assert!(splits_before.len() >= 3, "{before}");
    assert!(blocks(&before) >= 3 * u64::from(SOURCES), "{before}");

    // Merges on: two at a time, then their outputs, and so on.
    server.stop();
    std::fs::write(data.with_extension("toml"), MERGING).expect("config");
    server.restart();
    let m = wait_until("merges of two levels", DEADLINE, || {
        let m = merges(&server);
        (count(&m, "done") >= 2 && count(&m, "pending") == 0 && m["running"] == false).then_some(m)
    });
    let after = server.storage();
    assert!(
        blocks(&after) < blocks(&before),
        "fewer blocks: {before}\n{after}"
    );
    assert!(count(&m, "blocks_out") < count(&m, "blocks_in"), "{m}");
    assert!(
        count(&after, "bucket_bytes") < count(&before, "bucket_bytes"),
        "fewer bytes: {before}\n{after}"
    );
    assert_eq!(lines(&server), want, "each line once, after merges");
    let splits_after = published_splits(&server);
    assert!(splits_after.len() < splits_before.len(), "{after}");
    // The inputs' objects go once no search can read them (1 s + 5 s).
    wait_until("the merged inputs to leave the bucket", DEADLINE, || {
        (bucket_splits(&data) == published_splits(&server)).then_some(())
    });
    assert!(server.log_text().contains("splits merged"));

    server.kill9();
    server.restart();
    assert_eq!(lines(&server), want, "each line once, after a crash");
    assert_eq!(published_splits(&server), splits_after);
    server.stop();
    server.restart();
    assert_eq!(
        lines(&server),
        want,
        "each line once, after a clean restart"
    );
}

/// A merge killed at any point loses nothing and shows nothing twice: its
/// output was staged, not published. The next start empties `merging/`,
/// the sweep of abandoned splits deletes the output's objects, and the
/// merges run again.
#[test]
fn a_merge_killed_midway_loses_nothing_and_its_leftovers_go() {
    // Every merge compresses at zstd's slowest level: long enough to be
    // caught running.
    let config = MERGING
        .replace(
            "split_max_age_secs = 1\n",
            "split_max_age_secs = 1\nabandoned_split_secs = 1\n",
        )
        .replace(
            "block_bytes = 65536\n",
            "block_bytes = 65536\nzstd_level = 22\n",
        );
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, Some(&config));
    let mut files: Vec<SourceFile> = (0..4).map(file).collect();
    let mut want = Vec::new();
    let mut killed_running = 0;
    for attempt in 0..40 {
        for _ in 0..4 {
            let batches = files
                .iter_mut()
                .enumerate()
                .map(|(i, f)| {
                    let texts: Vec<String> = (0..200)
                        .map(|k| format!("kill {attempt} source {i} line {k} {}", k * 7919 % 1000))
                        .collect();
                    want.extend(texts.iter().cloned());
                    f.batch(&texts)
                })
                .collect();
            server.post_ok(&request(batches));
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
        // Killed as soon as a merge is seen running (if one is, within 5 s).
        let look_until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut caught = false;
        while !caught && std::time::Instant::now() < look_until {
            caught = merges(&server)["running"] == true;
        }
        server.kill9();
        killed_running += usize::from(caught);
        server.restart();
        let mut got: Vec<String> = server.all_lines(JOB).into_iter().map(|l| l.text).collect();
        got.sort();
        let mut sorted = want.clone();
        sorted.sort();
        assert_eq!(got.len(), sorted.len(), "after kill {attempt}");
        assert_eq!(got, sorted, "each line once after kill {attempt}");
        if killed_running >= 3 {
            break;
        }
    }
    assert!(
        killed_running >= 3,
        "merges were caught running only {killed_running} times"
    );
    // What the killed merges left goes: merging/ at the start, their
    // staged objects once abandoned.
    merges_settled(&server);
    wait_until("only published splits left in the bucket", DEADLINE, || {
        let merging_empty = std::fs::read_dir(data.join("merging"))
            .map(|d| d.count() == 0)
            .unwrap_or(true);
        (merging_empty && bucket_splits(&data) == published_splits(&server)).then_some(())
    });
}
