//! Splits on the real cblogsd with its embedded object store (issue 16):
//! sealed blocks are built into a split on the local disk, published to
//! the object store (`<data>/bucket/splits/<id>/`) in one metastore
//! commit, and read there; the WAL keeps every line until its split is
//! published; a crash at any point of a publish shows no line twice; and
//! a data dir of the older layout (`partitions/`) is converted once.

use std::collections::BTreeSet;
use std::path::Path;

use cblogs_core::time::now_ns;
use cblogs_core::Stream;
use cblogs_testkit::*;
use serde_json::Value;

const DAY_NS: i64 = 86_400_000_000_000;

/// Small blocks, a fast committer, and splits that are published only
/// when a test flushes (or after an hour).
const HELD: &str =
    "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 200\ncommit_interval_ms = 100\n\
                    split_max_age_secs = 3600\n";

fn file(instance: u32) -> SourceFile {
    SourceFile::of(
        "devcluster/www-data/prod/split",
        instance,
        "split",
        Stream::Stdout,
    )
}

fn lines(tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{tag} {i:04} a line that is long enough to fill blocks quickly {i:x}"))
        .collect()
}

/// The folders under `dir` (split ids), sorted.
fn folders(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// `GET /api/v1/ingest/published`: the incarnation, and (published end,
/// held end) of the one source there is.
fn ends(server: &Server) -> (String, (u64, u64)) {
    let v = server.published();
    let source = &v["sources"][0];
    (
        v["incarnation"].as_str().expect("incarnation").to_owned(),
        (
            source["published_end"].as_u64().expect("published_end"),
            source["held_end"].as_u64().expect("held_end"),
        ),
    )
}

/// (id, state) of every split `GET /api/v1/storage` lists.
fn splits(storage: &Value) -> Vec<(String, String)> {
    storage["splits"]
        .as_array()
        .expect("splits")
        .iter()
        .map(|s| {
            (
                s["id"].as_str().expect("id").to_owned(),
                s["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect()
}

/// Every line's text the CLI serves for the job, in order; each must be
/// there once.
fn served_once(server: &Server) -> Vec<String> {
    let texts: Vec<String> = server
        .all_lines("www-data/prod/split")
        .into_iter()
        .map(|l| l.text)
        .collect();
    let distinct: BTreeSet<&String> = texts.iter().collect();
    assert_eq!(
        distinct.len(),
        texts.len(),
        "a line is served twice: {texts:?}"
    );
    texts
}

#[test]
fn a_flush_publishes_every_split_and_the_wal_keeps_its_lines_until_then() {
    let (dir, mut server) = Server::in_temp_dir(Some(HELD));
    let data = dir.path().join("data");
    let written = lines("held", 300);
    let mut f = file(0);
    let batch = f.batch(&written);
    let end = batch.end;
    let ack = server.post_ok(&request(vec![batch]));

    // Committed into a split being built, which is not published yet.
    let s = wait_until("the lines to be committed to a split", DEADLINE, || {
        let s = server.storage();
        let committed =
            s["unindexed_bytes"] == 0 && s["splits"][0]["blocks"].as_u64().is_some_and(|b| b > 0);
        committed.then_some(s)
    });
    let building = folders(&data.join("building"));
    assert_eq!(
        splits(&s),
        [(building[0].clone(), "unpublished".to_owned())],
        "{s}"
    );
    assert!(folders(&data.join("bucket/splits")).is_empty(), "{s}");
    let wal_before = s["wal_bytes"].as_u64().expect("wal_bytes");
    assert!(
        wal_before > 0,
        "the WAL keeps the lines of a split not published: {s}"
    );
    assert_eq!(s["unpublished_splits"], 1, "{s}");
    assert!(
        s["upload_lag_secs"].as_f64().is_some_and(|l| l > 0.0),
        "{s}"
    );
    assert_eq!(served_once(&server), written);
    // Durable here (the WAL), not yet in the object store.
    let (incarnation, held) = ends(&server);
    assert_eq!(held, (0, end));
    assert_eq!(ack["incarnation"].as_str(), Some(incarnation.as_str()));

    server.flush();
    let s = server.storage();
    assert_eq!(
        splits(&s),
        [(building[0].clone(), "published".to_owned())],
        "{s}"
    );
    assert_eq!(
        (
            s["unpublished_splits"].as_u64(),
            s["upload_lag_secs"].as_f64()
        ),
        (Some(0), Some(0.0)),
        "{s}"
    );
    assert_eq!(ends(&server), (incarnation.clone(), (end, end)));
    assert!(folders(&data.join("building")).is_empty(), "{s}");
    let published = data.join("bucket/splits").join(&building[0]);
    for name in ["blocks.dat", "sources.json", "index/meta.json", "terms.dat"] {
        assert!(
            published.join(name).is_file(),
            "{name} in {}",
            published.display()
        );
    }
    assert!(
        s["wal_bytes"].as_u64().expect("wal_bytes") < wal_before,
        "the WAL is trimmed once the split is published: {s}"
    );
    assert!(
        !folders(&data.join("bucket/metastore")).is_empty(),
        "the metastore is in the object store"
    );
    assert_eq!(served_once(&server), written);
    // Staged, blocks.dat, sources.json, the index's files, published.
    let puts = server
        .metric("cblogs_object_store_requests_total{kind=\"put\"}")
        .expect("object-store puts are counted");
    assert!(puts >= 5.0, "{puts} puts");
    let out = server.cli(&["grep", "held 0042 ", "--output", "raw"]);
    assert_eq!(out.lines(), [written[42].as_str()], "{}", out.stderr);

    // Read from the object store after a crash: the same lines, once; the
    // same incarnation (nothing held was lost).
    server.kill9();
    server.restart();
    assert_eq!(served_once(&server), written);
    assert_eq!(splits(&server.storage()), splits(&s));
    assert_eq!(ends(&server), (incarnation, (end, end)));
    // A partial word looks its terms up in the split's term list, which
    // the split keeps (terms.dat): read, not walked from the index again.
    let out = server.cli(&["grep", "eld 0042 ", "--output", "raw"]);
    assert_eq!(out.lines(), [written[42].as_str()], "{}", out.stderr);
    let lists = |kind: &str| {
        server
            .metric(&format!("cblogs_term_lists_total{{kind=\"{kind}\"}}"))
            .unwrap_or(0.0)
    };
    assert_eq!((lists("stored"), lists("built")), (1.0, 0.0));
}

#[test]
fn a_split_published_just_before_a_crash_is_shown_once() {
    let (dir, mut server) = Server::in_temp_dir(Some(HELD));
    let data = dir.path().join("data");
    let written = lines("once", 200);
    let mut f = file(1);
    server.post_ok(&request(vec![f.batch(&written)]));
    server.flush();
    let ids = folders(&data.join("bucket/splits"));
    assert_eq!(ids.len(), 1);
    server.stop();
    // The instant between the metastore commit that publishes a split and
    // the removal of its local copy: both are on disk.
    copy_dir(
        &data.join("bucket/splits").join(&ids[0]),
        &data.join("building").join(&ids[0]),
    );
    server.restart();
    assert_eq!(served_once(&server), written);
    assert!(folders(&data.join("building")).is_empty());
    assert_eq!(
        splits(&server.storage()),
        [(ids[0].clone(), "published".to_owned())]
    );
}

#[test]
fn a_data_dir_of_the_older_layout_is_converted_once_and_never_looks_empty() {
    let (dir, mut server) = Server::in_temp_dir(Some(HELD));
    let data = dir.path().join("data");
    // Two windows of line time: today and three days ago.
    let (old, new) = (lines("older", 100), lines("newer", 100));
    let (mut a, mut b) = (file(2), file(3));
    let mut old_batch = a.batch(&old);
    let three_days_ago = now_ns() - 3 * DAY_NS;
    for (i, l) in old_batch.lines.iter_mut().enumerate() {
        l.time_ns = three_days_ago + i as i64;
    }
    server.post_ok(&request(vec![old_batch, b.batch(&new)]));
    server.flush();
    let s = server.storage();
    assert_eq!(s["partitions"].as_array().map(Vec::len), Some(2), "{s}");
    server.stop();

    // The layout before splits: partitions/p-<window start secs>/ with the
    // same three things in it, and no object store.
    let partitions = data.join("partitions");
    for split in s["splits"].as_array().expect("splits") {
        let id = split["id"].as_str().expect("id");
        let window_secs = id
            .strip_prefix('w')
            .and_then(|r| r.split('_').next())
            .expect("the window in the id");
        copy_dir(
            &data.join("bucket/splits").join(id),
            &partitions.join(format!("p-{window_secs}")),
        );
    }
    std::fs::remove_dir_all(data.join("bucket")).expect("remove the object store");

    server.restart();
    let mut want: Vec<String> = old.iter().chain(&new).cloned().collect();
    let mut got = served_once(&server);
    want.sort();
    got.sort();
    assert_eq!(got, want, "every line of the older layout is served");
    assert!(!partitions.exists(), "partitions/ is converted, not kept");
    // Then published (on the upload thread, soon after the start).
    let s = wait_until("the converted splits to be published", DEADLINE, || {
        let s = server.storage();
        let states: Vec<String> = splits(&s).into_iter().map(|(_, st)| st).collect();
        (states == ["published", "published"]).then_some(s)
    });
    assert_eq!(folders(&data.join("bucket/splits")).len(), 2);
    assert!(server.log_text().contains("older layout becomes a split"));

    // Converted once: a second start finds the same splits.
    server.stop();
    server.restart();
    assert_eq!(splits(&server.storage()), splits(&s));
    assert_eq!(served_once(&server).len(), 200);
}

#[test]
fn a_retired_splits_files_outlive_the_longest_search_then_go() {
    let (dir, server) = Server::in_temp_dir(Some(
        "[storage]\nretention_days = 14\nretention_check_secs = 1\ncommit_interval_ms = 100\n\
         [search]\nmax_query_secs = 2\n",
    ));
    let data = dir.path().join("data");
    let mut f = file(4);
    let mut batch = f.batch(&lines("ancient", 20));
    let long_ago = now_ns() - 20 * DAY_NS;
    for (i, l) in batch.lines.iter_mut().enumerate() {
        l.time_ns = long_ago + i as i64;
    }
    server.post_ok(&request(vec![batch]));
    server.flush();
    wait_until("the old split to be retired", DEADLINE, || {
        server.storage()["deleted"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
            .then_some(())
    });
    let retired_at = std::time::Instant::now();
    // Gone from readers at once...
    let out = server.cli(&["grep", "ancient", "--output", "raw"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    // ...but its files stay for search.max_query_secs + 5 s: a search that
    // began before could still be reading them.
    let bucket = data.join("bucket/splits");
    assert_eq!(
        folders(&bucket).len(),
        1,
        "the files are not deleted at once"
    );
    wait_until("the retired split's files to be deleted", DEADLINE, || {
        folders(&bucket).is_empty().then_some(())
    });
    assert!(
        retired_at.elapsed() >= std::time::Duration::from_secs(5),
        "deleted after {:?}, before the longest search could end",
        retired_at.elapsed()
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for e in std::fs::read_dir(from).expect("read dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy file");
        }
    }
}

/// Issue 16, rule 1: a gap the node accepted (`allow_gap`: bytes the
/// shipper no longer has) is recorded with the source's published end in
/// the metastore, so it is known after a restart, and after the node's
/// disk is lost, as lost and not as still to come.
#[test]
fn a_gap_accepted_through_allow_gap_is_recorded_with_the_published_end() {
    let (dir, mut server) = Server::in_temp_dir(Some(HELD));
    let mut f = file(0);
    let first = lines("before", 20);
    server.post_ok(&request(vec![f.batch(&first)]));
    let held = f.offset;
    // 1000 bytes of the file are gone: the shipper says so.
    f.offset += 1000;
    let mut batch = f.batch(&lines("after", 20));
    batch.allow_gap = true;
    server.post_ok(&request(vec![batch]));
    let gaps = |server: &Server| server.published()["sources"][0]["gaps"].clone();
    assert_eq!(gaps(&server), serde_json::json!([[held, held + 1000]]));
    assert!(
        server.log_text().contains(&format!(
            "a gap was accepted (allow_gap): bytes {held}..{}",
            held + 1000
        )),
        "{}",
        server.log_text()
    );
    server.flush();
    assert_eq!(ends(&server).1, (f.offset, f.offset));

    // Published with the end: without the WAL (nothing replayed), the
    // metastore still says so after a restart.
    server.kill9();
    std::fs::remove_dir_all(dir.path().join("data").join("wal")).expect("remove the WAL");
    server.restart();
    assert_eq!(gaps(&server), serde_json::json!([[held, held + 1000]]));
    assert_eq!(ends(&server).1, (f.offset, f.offset));
    assert_eq!(served_once(&server).len(), 40);
}

/// Rule: a reader sees each line exactly once while splits are sealed,
/// published (the local copy swapped for the published one) and retired
/// under it. A writer posts numbered lines of one source, and with them
/// old lines of another in a new window each time, which retention
/// retires as soon as they are published. Meanwhile greps and `tail -n`
/// run again and again: each must show a prefix of the numbered lines,
/// no line twice and none missing that was acknowledged before it began,
/// and a follow must print every numbered line once, in order.
#[test]
fn searches_and_tails_see_each_line_once_while_splits_are_published_and_retired() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    const PER_ROUND: usize = 25;
    let (_dir, server) = Server::in_temp_dir(Some(
        "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 100\ncommit_interval_ms = 50\n\
         split_max_age_secs = 1\npartition_secs = 3600\nretention_days = 14\n\
         retention_check_secs = 1\n[search]\nmax_query_secs = 2\n",
    ));
    let job = "www-data/prod/split";
    let numbered = |i: usize| format!("now {i:05} a line that is long enough to fill blocks");
    let mut current = file(0);
    server.post_ok(&request(vec![current.batch(&[numbered(0)])]));
    let mut follow = Follower::start(
        &server.url,
        &["tail", job, "-f", "-n", "1", "--output", "raw"],
    );
    follow.expect_line(&numbered(0), DEADLINE);

    let written = WriteProgress::new(1);
    let enough = AtomicBool::new(false);
    let mut rounds = 0;
    let started = std::time::Instant::now();
    let storage = std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut old = file(1);
            let long_ago = now_ns() - 20 * DAY_NS;
            let mut round = 0i64;
            while !enough.load(SeqCst) {
                written.write(PER_ROUND, |lines| {
                    let texts: Vec<String> = lines.map(numbered).collect();
                    let at = long_ago + round * 3_600_000_000_000;
                    let ancient: Vec<(i64, String)> = (0..5)
                        .map(|i| (at + i, format!("old {round} {i}")))
                        .collect();
                    server.post_ok(&request(vec![
                        current.batch(&texts),
                        old.batch_at(&ancient),
                    ]));
                });
                round += 1;
                // Paced, so that readers run between the writes.
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        });
        let _writer_ends = SetOnDrop(&enough);
        loop {
            reads_are_acknowledged_prefixes(&server, job, &written, &numbered);
            rounds += 1;

            // On until it really ran across publishes and retirements.
            let s = server.storage();
            let published = s["published_splits"].as_u64().expect("published_splits");
            let retired = s["deleted"].as_array().map_or(0, Vec::len);
            if published >= 6 && retired >= 3 && rounds >= 5 {
                enough.store(true, SeqCst);
                break s;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "{published} splits published and {retired} retired after {rounds} rounds of reads: {s}"
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
}

/// A server sealing splits at a minute of the clock or of line time,
/// blocks at `block_max_age_ms`, committing every 100 ms.
fn minute_splits(block_max_age_ms: u64) -> (tempfile::TempDir, Server) {
    Server::in_temp_dir(Some(&format!(
        "[storage]\nblock_max_age_ms = {block_max_age_ms}\ncommit_interval_ms = 100\n\
         split_max_age_secs = 60\n"
    )))
}

/// Issue 17: sealing follows line time as well as the clock. A block is
/// sealed once its lines span `storage.block_max_age_ms` of line time, and
/// a split once its blocks span `storage.split_max_age_secs`, however fast
/// the lines come: a day posted in minutes (the quiet-cluster benchmark)
/// is cut as the day would be.
#[test]
fn blocks_and_splits_are_sealed_by_line_time_as_well() {
    // A minute, of the clock or of line time: the test takes seconds of
    // the clock, so only line time can seal here.
    let (_dir, server) = minute_splits(60_000);
    let day: i64 = 86_400_000_000_000;
    let min: i64 = 60_000_000_000;
    let now = now_ns();
    // A minute into a window (of a day) that has 10 minutes behind it.
    let window = (now - 10 * min).div_euclid(day) * day;
    let t0 = if now - window > 15 * min {
        window
    } else {
        window - day
    } + min;
    let mut f = file(0);
    let at = |secs: i64, text: &str| vec![(t0 + secs * 1_000_000_000, text.to_owned())];
    // 0 s, 30 s, 70 s: one block spanning 70 s of line time, sealed; and a
    // split holding 70 s, sealed and published without a flush.
    for (secs, text) in [(0, "zero"), (30, "thirty"), (70, "seventy")] {
        server.post_ok(&request(vec![f.batch_at(&at(secs, text))]));
    }
    let s = wait_until(
        "a split sealed by line time to be published",
        DEADLINE,
        || {
            let s = server.storage();
            (s["published_splits"].as_u64() >= Some(1)).then_some(s)
        },
    );
    let published: Vec<u64> = s["splits"]
        .as_array()
        .expect("splits")
        .iter()
        .filter(|x| x["state"] == "published")
        .map(|x| x["blocks"].as_u64().expect("blocks"))
        .collect();
    assert_eq!(published, [1], "one block of three lines: {s}");
    // 130 s, 200 s: a second block (sealed at 70 s of span again).
    for (secs, text) in [(130, "one-thirty"), (200, "two hundred")] {
        server.post_ok(&request(vec![f.batch_at(&at(secs, text))]));
    }
    server.flush();
    let s = server.storage();
    let blocks: u64 = s["splits"]
        .as_array()
        .expect("splits")
        .iter()
        .map(|x| x["blocks"].as_u64().expect("blocks"))
        .sum();
    assert_eq!(blocks, 2, "{s}");
    assert_eq!(
        served_once(&server),
        ["zero", "thirty", "seventy", "one-thirty", "two hundred"]
    );
}

/// Splits are sealed when the line clock (the newest line time seen) has
/// moved `split_max_age_secs` since the split was opened, not when its
/// own lines span that much: a shipper catching up on a backlog two hours
/// old beside a live source would otherwise make every split span two
/// hours, and a split would be sealed at every commit round.
#[test]
fn a_backlog_beside_live_lines_does_not_seal_a_split_each_round() {
    let (_dir, server) = minute_splits(200);
    let hour: i64 = 3_600_000_000_000;
    // One window of line time (a day), two days back: the backlog's lines
    // at 01:00, the live source's at 03:00, both moving a second a round.
    let window = (now_ns() - 2 * DAY_NS).div_euclid(DAY_NS) * DAY_NS;
    let (mut backlog, mut live) = (file(0), file(1));
    let rounds = 10;
    for r in 0..rounds {
        let at =
            |base: i64, tag: &str| vec![(window + base + r * 1_000_000_000, format!("{tag} {r}"))];
        server.post_ok(&request(vec![
            backlog.batch_at(&at(hour, "backlog")),
            live.batch_at(&at(3 * hour, "live")),
        ]));
        // Each round's lines sealed into blocks and committed into the
        // split being built before the next round.
        wait_until("the round's lines to be committed", DEADLINE, || {
            (server.storage()["unindexed_bytes"].as_u64() == Some(0)).then_some(())
        });
    }
    let s = server.storage();
    let splits = s["splits"].as_array().expect("splits").len();
    assert!(
        splits <= 2,
        "ten rounds of a backlog beside live lines made {splits} splits: {s}"
    );
    server.flush();
    assert_eq!(served_once(&server).len(), 2 * rounds as usize);
}

/// `explain=blocks`: a search names each stored block it read, by split
/// and place in the split's `blocks.dat`, and the summary counts their
/// compressed bytes (what the bench decompresses again for a search's
/// floor). Each named block decompresses, and together they hold every
/// match.
#[test]
fn a_search_explains_where_the_blocks_it_read_are() {
    let (dir, server) = Server::in_temp_dir(Some(HELD));
    // Four sources: four blocks at least.
    let batches = (0..4)
        .map(|instance| file(instance).batch(&lines("explain", 100)))
        .collect();
    server.post_ok(&request(batches));
    server.flush();
    let path = format!(
        "{}/api/v1/search?pattern=explain%20%5Cd%2B0%20&limit=0&explain=blocks",
        server.url
    );
    let text = reqwest::blocking::get(&path)
        .and_then(|r| r.text())
        .expect("search");
    let summary: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == "summary")
        .unwrap_or_else(|| panic!("a summary in {text}"));
    let matched = summary["matched"].as_u64().expect("matched");
    assert_eq!(matched, 40, "lines 0000, 0010, ... 0090 of each: {summary}");
    let read = summary["read_blocks"].as_array().expect("read_blocks");
    let blocks_read = summary["blocks_read"].as_u64().expect("blocks_read");
    assert!(
        blocks_read >= 4,
        "a block of each source at least: {summary}"
    );
    assert_eq!(read.len() as u64, blocks_read, "every block read is stored");
    let (mut bytes, mut found) = (0, 0);
    for b in read {
        let (split, pos, len) = (
            b["split"].as_str().expect("split"),
            b["pos"].as_u64().expect("pos"),
            b["len"].as_u64().expect("len"),
        );
        let data = std::fs::read(
            dir.path()
                .join("data/bucket/splits")
                .join(split)
                .join("blocks.dat"),
        )
        .expect("the split's blocks.dat");
        let block = &data[pos as usize..(pos + len) as usize];
        let decoded = zstd::decode_all(block).expect("a zstd frame");
        let text = String::from_utf8_lossy(&decoded);
        found += (0..100)
            .filter(|i| i % 10 == 0)
            .filter(|i| text.contains(&format!("explain {i:04} ")))
            .count();
        bytes += len;
    }
    assert_eq!(found, 40, "the blocks read hold every match");
    assert_eq!(summary["read_bytes"].as_u64(), Some(bytes), "{summary}");
}
