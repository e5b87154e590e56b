//! Retention on the real cblogsd: whole time partitions are deleted when
//! their newest line is older than `storage.retention_days`, and the oldest
//! ones while the partitions are over `storage.max_disk_bytes`. What was
//! deleted, and why, shows in `GET /api/v1/storage` and `/metrics`; every
//! line of the partitions kept is still served.

use std::collections::BTreeSet;
use std::path::Path;

use cblogs_core::time::{format_rfc3339, now_ns};
use cblogs_core::Stream;
use cblogs_testkit::*;
use serde_json::Value;

const HOUR_NS: i64 = 3_600_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

/// `start_ns` of each partition held, oldest first.
fn partition_starts(storage: &Value) -> Vec<i64> {
    storage["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["start_ns"].as_i64().expect("start_ns"))
        .collect()
}

/// (start, reason) of each partition deleted, in the order deleted.
fn deleted(storage: &Value) -> Vec<(String, String)> {
    storage["deleted"]
        .as_array()
        .expect("deleted")
        .iter()
        .map(|d| {
            (
                d["start"].as_str().expect("start").to_owned(),
                d["reason"].as_str().expect("reason").to_owned(),
            )
        })
        .collect()
}

fn partition_start(time_ns: i64) -> i64 {
    time_ns - time_ns.rem_euclid(HOUR_NS)
}

/// A batch of `lines` for `file`, the i-th at `first_ns + i` ms.
fn batch_at(file: &mut SourceFile, lines: &[String], first_ns: i64) -> cblogs_core::wire::Batch {
    let mut b = file.batch(lines);
    for (i, l) in b.lines.iter_mut().enumerate() {
        l.time_ns = first_ns + i as i64 * 1_000_000;
    }
    b
}

fn lines(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag} {i:04} the quick brown fox jumps over the lazy dog {i:x}"))
        .collect()
}

fn job_file(instance: u32) -> SourceFile {
    SourceFile::of(
        "devcluster/www-data/prod/kept",
        instance,
        "kept",
        Stream::Stdout,
    )
}

/// Every line's text that `cblogs tail` serves for the job.
fn served(server: &Server) -> BTreeSet<String> {
    server
        .all_lines("www-data/prod/kept")
        .into_iter()
        .map(|l| l.text)
        .collect()
}

fn write_config(data_dir: &Path, text: &str) {
    // Where Server::start put it, and where a restart reads it again.
    std::fs::write(data_dir.with_extension("toml"), text).expect("write config");
}

#[test]
fn a_partition_past_retention_days_is_deleted_and_the_recent_lines_stay() {
    let (_dir, mut server) = Server::in_temp_dir(Some(
        "[storage]\npartition_secs = 3600\nretention_days = 14\nretention_check_secs = 1\n\
             commit_interval_ms = 100\n",
    ));
    // Lines of 20 days ago (one source) and of now (another).
    let old_ns = now_ns() - 20 * DAY_NS;
    let old = lines("old", 50);
    let recent = lines("recent", 50);
    let (mut f_old, mut f_new) = (job_file(0), job_file(1));
    server.post_ok(&request(vec![batch_at(&mut f_old, &old, old_ns)]));
    let recent_batch = f_new.batch(&recent);
    server.post_ok(&request(vec![recent_batch]));
    // While in memory, both are served.
    assert_eq!(served(&server).len(), 100);
    server.flush();

    let old_start = partition_start(old_ns);
    let s = wait_until(
        "the old partition to be deleted for its age",
        DEADLINE,
        || {
            let s = server.storage();
            (!deleted(&s).is_empty()).then_some(s)
        },
    );
    assert_eq!(
        deleted(&s),
        [(format_rfc3339(old_start), "age".to_owned())],
        "{s}"
    );
    assert_eq!(s["retention_days"], 14);
    let starts = partition_starts(&s);
    assert!(!starts.contains(&old_start), "{s}");
    assert_eq!(starts.len(), 1, "the partition of now is kept: {s}");
    assert!(
        s["deleted"][0]["bytes"].as_u64().is_some_and(|b| b > 0),
        "{s}"
    );

    // The recent lines are served, the old ones not.
    let want: BTreeSet<String> = recent.iter().cloned().collect();
    assert_eq!(served(&server), want);
    let out = server.cli(&["grep", "^old", "--output", "raw"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{}", out.stderr);
    let out = server.cli(&["grep", "^recent", "--output", "raw", "--limit", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), recent);

    assert_eq!(
        server.metric("cblogs_retention_deleted_partitions_total{kind=\"age\"}"),
        Some(1.0)
    );
    assert_eq!(
        server.metric("cblogs_retention_deleted_partitions_total{kind=\"disk\"}"),
        None
    );
    assert_eq!(server.metric("cblogs_partitions"), Some(1.0));

    // Deleted for good: a restart (which replays the WAL) brings nothing back.
    server.stop();
    server.restart();
    assert_eq!(served(&server), want);
    let s = server.storage();
    assert_eq!(partition_starts(&s), starts, "{s}");
}

/// Issue 16, rule 1: a source's held end is a record of its own in the
/// metastore, not derived from the partitions that still exist. Before,
/// after retention deleted every line of a quiet source, a restart held it
/// at offset 0: its next batch was refused with `held_end` 0, and the
/// shipper then sent the whole file again, stored twice with new times.
#[test]
fn a_source_whose_lines_retention_deleted_keeps_its_held_end_after_a_restart() {
    let (_dir, mut server) = Server::in_temp_dir(Some(
        "[storage]\npartition_secs = 3600\nretention_days = 14\nretention_check_secs = 1\n\
             commit_interval_ms = 100\n",
    ));
    let old = lines("quiet", 50);
    let mut file = job_file(7);
    let first = batch_at(&mut file, &old, now_ns() - 20 * DAY_NS);
    let end = first.end;
    server.post_ok(&request(vec![first.clone()]));
    server.flush();
    wait_until(
        "the quiet source's partition to be deleted",
        DEADLINE,
        || (!deleted(&server.storage()).is_empty()).then_some(()),
    );
    let out = server.cli(&["tail", "www-data/prod/kept"]);
    assert_eq!(
        out.code, 1,
        "retention deleted every line of the job: {}",
        out.stdout
    );
    assert!(out.stderr.contains("no job matches"), "{}", out.stderr);

    // No clean stop: the record must already be durable.
    server.kill9();
    server.restart();

    // The whole first batch again (a shipper that lost its checkpoint):
    // every line is known, none is stored again.
    let again = server.post_ok(&request(vec![first]));
    assert_eq!(
        (again["accepted"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(50)),
        "{again}"
    );
    assert_eq!(
        again["batches"][0]["acked_end"].as_u64(),
        Some(end),
        "{again}"
    );
    // The file goes on where it was: taken, not refused as a gap.
    let next = lines("later", 10);
    let later = file.batch(&next);
    assert_eq!(later.start, end);
    let ack = server.post_ok(&request(vec![later]));
    assert_eq!(ack["accepted"].as_u64(), Some(10), "{ack}");
    assert_eq!(
        served(&server),
        next.iter().cloned().collect::<BTreeSet<_>>()
    );
}

#[test]
fn over_max_disk_bytes_the_oldest_partitions_are_deleted_until_the_rest_fit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let base = "[storage]\npartition_secs = 3600\nretention_check_secs = 1\n";
    let mut server = Server::start(&data, Some(base));

    // Lines in four different hours of the last two days, oldest first.
    let now = now_ns();
    let hours = [40, 30, 20, 5].map(|h| partition_start(now - h * HOUR_NS));
    let mut written: Vec<Vec<String>> = Vec::new();
    for (i, start) in hours.iter().enumerate() {
        let mut f = job_file(i as u32);
        let l = lines(&format!("hour{i}"), 300);
        server.post_ok(&request(vec![batch_at(&mut f, &l, start + 60_000_000_000)]));
        written.push(l);
    }
    server.flush();
    let s = server.storage();
    assert_eq!(partition_starts(&s), hours, "{s}");
    assert!(deleted(&s).is_empty(), "{s}");
    let sizes: Vec<u64> = s["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["bytes"].as_u64().expect("bytes"))
        .collect();
    assert!(sizes.iter().all(|b| *b > 1000), "{sizes:?}");
    assert_eq!(s["disk_bytes"].as_u64(), Some(sizes.iter().sum()), "{s}");

    // A budget the newest two fit in, with half the second oldest to spare.
    let budget = sizes[2] + sizes[3] + sizes[1] / 2;
    server.stop();
    write_config(&data, &format!("{base}max_disk_bytes = {budget}\n"));
    server.restart();

    let s = wait_until(
        "the oldest partitions to be deleted for the disk budget",
        DEADLINE,
        || {
            let s = server.storage();
            (deleted(&s).len() >= 2).then_some(s)
        },
    );
    assert_eq!(
        deleted(&s),
        [
            (format_rfc3339(hours[0]), "disk".to_owned()),
            (format_rfc3339(hours[1]), "disk".to_owned()),
        ],
        "the oldest first: {s}"
    );
    assert_eq!(partition_starts(&s), hours[2..], "{s}");
    assert_eq!(s["max_disk_bytes"].as_u64(), Some(budget));
    let disk = s["disk_bytes"].as_u64().expect("disk_bytes");
    assert!(
        disk <= budget,
        "{disk} bytes on disk, the budget is {budget}"
    );

    // Every line of the hours kept, and none of the others.
    let want: BTreeSet<String> = written[2..].iter().flatten().cloned().collect();
    assert_eq!(served(&server), want);
    let out = server.cli(&["grep", "^hour[01] ", "--output", "raw"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{}", out.stderr);
    assert_eq!(
        server.metric("cblogs_retention_deleted_partitions_total{kind=\"disk\"}"),
        Some(2.0)
    );
}
