//! cblogsd on a real S3-compatible store: SeaweedFS on loopback ports,
//! one per test (issue 16). The real shipper ships into it, splits are
//! published to the bucket, and `tail`, `grep` and follow read them back;
//! a node that loses its whole disk comes back from the bucket alone, and
//! the shipper sends again what it had not published; the store going
//! away loses nothing; retention deletes from the bucket; a missing
//! bucket, wrong credentials and an unreachable store are said plainly at
//! start-up.

use std::process::{Command, Stdio};
use std::time::Duration;

use cblogs_core::time::now_ns;
use cblogs_core::Stream;
use cblogs_testkit::*;

/// Small blocks, a fast committer, splits published every second.
const FAST: &str =
    "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 200\ncommit_interval_ms = 100\n\
                    split_max_age_secs = 1\n";

const JOB: &str = "www-data/prod/s3";

fn lines(tag: &str, n: usize) -> Vec<String> {
    numbered_lines(tag, n)
}

/// Every line of the job, once each and in file order (else panics with
/// what is wrong).
fn assert_exactly_once(server: &Server, shipper: &mut Shipper, runs: &[&ProcessRun], ctx: &str) {
    assert_job_exactly_once(server, shipper, runs, JOB, ctx);
}

/// The split objects under `prefix`, by file name.
fn split_files(weed: &Seaweed, prefix: &str) -> Vec<String> {
    weed.keys(&format!("{prefix}/splits/"))
        .into_iter()
        .filter_map(|k| k.rsplit('/').next().map(str::to_owned))
        .collect()
}

#[test]
fn shipped_lines_are_published_to_s3_and_survive_the_loss_of_the_nodes_disk() {
    let weed = Seaweed::start();
    let config = format!("{FAST}{}", weed.config("node-loss"));
    let stack = Stack::new(Some(&config));
    let mut server = stack.server;
    let task = stack.agent.task("www-data", "prod", "s3", 0);
    let mut run = task.process("s3", 0);
    run.append_lines(Stream::Stdout, &lines("first", 300));
    run.append_lines(Stream::Stderr, &lines("err", 20));
    let mut shipper = Shipper::start(
        &stack.agent,
        &stack.dir.path().join("shipper-state"),
        &server.url,
        SHIPPER_FAST,
    );
    assert_exactly_once(&server, &mut shipper, &[&run], "shipped to S3");

    // Published: the blocks are in the bucket, not on the local disk.
    server.flush();
    let files = split_files(&weed, "node-loss");
    assert!(files.iter().any(|f| f == "blocks.dat"), "{files:?}");
    // The index and sources.json in one object: one PUT, one GET.
    assert!(files.iter().any(|f| f == "index.bundle"), "{files:?}");
    assert!(!files.iter().any(|f| f == "meta.json"), "{files:?}");
    let s = server.storage();
    assert!(
        s["object_store"]
            .as_str()
            .is_some_and(|o| o.contains(&weed.endpoint)),
        "{s}"
    );
    assert!(
        s["splits"]
            .as_array()
            .is_some_and(|l| !l.is_empty() && l.iter().all(|x| x["state"] == "published")),
        "{s}"
    );
    let data = stack.dir.path().join("data");
    assert!(
        !has_file_named(&data, "blocks.dat"),
        "a published split's blocks are read from the store"
    );

    // grep reads blocks with ranged GETs; a follow sees new lines.
    let gets = server
        .metric("cblogs_object_store_requests_total{kind=\"get\"}")
        .unwrap_or(0.0);
    let out = server.cli(&["grep", "first 0123 ", "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), [lines("first", 300)[123].as_str()]);
    let after = server
        .metric("cblogs_object_store_requests_total{kind=\"get\"}")
        .expect("gets counted");
    assert!(after > gets, "the block was fetched from the store");
    let mut follow = Follower::start(&server.url, &["tail", JOB, "-f", "-n", "1"]);
    // The newest line first: the follow is subscribed from here on.
    follow.next_line(DEADLINE);
    run.append_lines(Stream::Stdout, &["followed on S3".to_owned()]);
    follow.expect_line("followed on S3", DEADLINE);
    drop(follow);
    assert_exactly_once(&server, &mut shipper, &[&run], "before the node is lost");
    server.flush();

    // The node loses its whole disk and comes back on the same bucket: a
    // new incarnation, and each source's ends from the metastore.
    let before = server.published();
    server.kill9();
    std::fs::remove_dir_all(&data).expect("wipe the data dir");
    server.restart();
    let after = server.published();
    assert_ne!(after["incarnation"], before["incarnation"]);
    assert_eq!(after["sources"], before["sources"], "{after}");
    assert_exactly_once(&server, &mut shipper, &[&run], "after the disk was lost");
    // The split's term list came down with its bundle: a partial word is
    // looked up in it, not in a list walked from the index again.
    let out = server.cli(&["grep", "irst 0123 ", "--output", "raw"]);
    assert_eq!(
        out.lines(),
        [lines("first", 300)[123].as_str()],
        "{}",
        out.stderr
    );
    assert!(
        server
            .metric("cblogs_term_lists_total{kind=\"stored\"}")
            .is_some_and(|n| n >= 1.0),
        "{:?}",
        server.metric("cblogs_term_lists_total{kind=\"built\"}")
    );
    // Its held ends came from the metastore: the shipper goes on.
    run.append_lines(Stream::Stdout, &lines("after", 50));
    assert_exactly_once(&server, &mut shipper, &[&run], "lines written after");
    shipper.stop();
}

/// Issue 16, rules 2 and 3: lines acknowledged but not yet published are
/// on the node's disk only. When that disk is lost, the node comes back
/// with a new incarnation holding each source up to its published end;
/// the shipper notices (it asks every `incarnation_check_ms`) and sends
/// every stream again from there, across files: from a rotated file it
/// kept open, and from a finished task whose sandbox the agent has deleted
/// since — and a quiet stream too, that no new line would bring to a 409.
#[test]
fn lines_not_yet_published_are_sent_again_after_the_node_loses_its_disk() {
    let weed = Seaweed::start();
    // Splits are published on a flush only: at the kill, the newest lines
    // are in the WAL and nowhere else on the server.
    let config = format!(
        "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 200\ncommit_interval_ms = 100\n\
         split_max_age_secs = 3600\n{}",
        weed.config("resend")
    );
    let stack = Stack::new(Some(&config));
    let mut server = stack.server;
    let task = stack.agent.task("www-data", "prod", "s3", 1);
    let mut run = task.process("s3", 0);
    let finished_task = stack.agent.task("www-data", "prod", "s3", 2);
    let mut finished = finished_task.process("s3", 0);
    run.append_lines(Stream::Stdout, &lines("published", 100));
    run.append_lines(Stream::Stderr, &lines("published-err", 10));
    finished.append_lines(Stream::Stdout, &lines("finished-published", 10));
    let shipper_config = SHIPPER_FAST.replace("[ship]\n", "[ship]\nincarnation_check_ms = 200\n");
    let mut shipper = Shipper::start_with_status_endpoint(
        &stack.agent,
        &stack.dir.path().join("shipper-state"),
        &server.url,
        &shipper_config,
    );
    let runs = [&run, &finished];
    assert_exactly_once(&server, &mut shipper, &runs, "shipped");
    server.flush();
    // A rotation: the rotated file is read to its end, and kept open.
    run.append_lines(Stream::Stdout, &lines("unpublished", 50));
    run.rotate(Stream::Stdout);
    run.append_lines(Stream::Stdout, &lines("after-rotation", 20));
    // From here on stderr is quiet.
    run.append_lines(Stream::Stderr, &lines("unpublished-err", 5));
    // The task finishes, and the agent's garbage collector deletes its sandbox.
    finished.append_lines(Stream::Stdout, &lines("finished-last", 10));
    let runs = [&run, &finished];
    assert_exactly_once(&server, &mut shipper, &runs, "shipped, not published");
    finished_task.delete();
    let stdout = run.path(Stream::Stdout).display().to_string();
    let gone = finished.path(Stream::Stdout).display().to_string();
    wait_until(
        "the shipper to keep the unpublished files",
        DEADLINE,
        || {
            let status = shipper.files();
            let live = status.iter().find(|f| f["path"] == stdout.as_str())?;
            let deleted = status.iter().find(|f| f["path"] == gone.as_str())?;
            (live["open_files"] == 2 && deleted["deleted"] == true).then_some(())
        },
    );
    let before = server.published();
    let sources = before["sources"].as_array().expect("sources");
    assert_eq!(
        sources.len(),
        3,
        "two streams and the finished one: {before}"
    );
    for s in sources {
        let end = |name: &str| s[name].as_u64().expect(name);
        assert!(
            end("published_end") < end("held_end"),
            "acknowledged but not published: {before}"
        );
    }

    server.kill9();
    std::fs::remove_dir_all(stack.dir.path().join("data")).expect("wipe the data dir");
    server.restart();
    // Nothing more is written: every stream comes back by the shipper's
    // question alone.
    assert_exactly_once(&server, &mut shipper, &runs, "after the disk was lost");
    assert!(
        shipper
            .log_text()
            .contains("the server has a new incarnation"),
        "{}",
        log_tail(&shipper.log_text(), 20)
    );
    // Once published, the rotated file is closed and the deleted task's
    // stream forgotten.
    server.flush();
    wait_until(
        "the shipper to let the published files go",
        DEADLINE,
        || {
            let status = shipper.files();
            let live = status.iter().find(|f| f["path"] == stdout.as_str())?;
            let forgotten = !status.iter().any(|f| f["path"] == gone.as_str());
            (live["open_files"] == 1 && forgotten).then_some(())
        },
    );
    run.append_lines(Stream::Stdout, &lines("after", 20));
    assert_exactly_once(
        &server,
        &mut shipper,
        &[&run, &finished],
        "lines written after",
    );
    shipper.stop();
}

fn has_file_named(dir: &std::path::Path, name: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                has_file_named(&p, name)
            } else {
                e.file_name() == name
            }
        })
    })
}

#[test]
fn while_the_store_is_down_ingest_goes_on_and_nothing_is_lost() {
    let mut weed = Seaweed::start();
    let config = format!("{FAST}{}", weed.config("outage"));
    let (_dir, server) = Server::in_temp_dir(Some(&config));
    let mut f = SourceFile::of(&format!("devcluster/{JOB}"), 0, "s3", Stream::Stdout);
    let before = lines("before", 100);
    server.post_ok(&request(vec![f.batch(&before)]));
    server.flush();

    weed.stop();
    // Ingest goes on into the WAL; the newest lines are served from the
    // local disk.
    let during = lines("during", 100);
    server.post_ok(&request(vec![f.batch(&during)]));
    let out = server.cli(&["tail", JOB, "-n", "5", "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.lines(),
        during[95..].iter().map(String::as_str).collect::<Vec<_>>()
    );
    // A search that needs blocks only the store has says which store.
    let out = server.cli(&["grep", "before 0042", "--output", "raw"]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(out.stderr.contains(&weed.endpoint), "{}", out.stderr);
    // Publishing fails and is retried with a backoff, not every round.
    wait_until("a failed publish to be logged", DEADLINE, || {
        server
            .log_text()
            .contains("cannot publish a split")
            .then_some(())
    });

    weed.restart();
    wait_until("every split to be published", DEADLINE, || {
        let s = server.storage();
        let all = s["splits"]
            .as_array()
            .is_some_and(|l| l.iter().all(|x| x["state"] == "published") && l.len() >= 2);
        all.then_some(())
    });
    let want: Vec<String> = before.iter().chain(&during).cloned().collect();
    let got: Vec<String> = server.all_lines(JOB).into_iter().map(|l| l.text).collect();
    assert_eq!(got, want, "every line once, in order");
}

#[test]
fn retention_deletes_splits_from_the_bucket_by_age_and_never_for_the_local_disk_budget() {
    let weed = Seaweed::start();
    // A disk budget of one byte: on the local store it would delete every
    // published split but the newest. With a remote store it deletes
    // nothing (it bounds this disk, and the splits are in the bucket).
    let config = format!(
        "[storage]\nretention_days = 14\nretention_check_secs = 1\ncommit_interval_ms = 100\n\
         max_disk_bytes = 1\n[search]\nmax_query_secs = 5\n{}",
        weed.config("retention")
    );
    let (_dir, server) = Server::in_temp_dir(Some(&config));
    assert!(
        server
            .log_text()
            .contains("storage.max_disk_bytes deletes nothing with a remote object store"),
        "{}",
        server.log_text()
    );
    let at = |instance: u32, tag: &str, days: i64| {
        let mut f = SourceFile::of(&format!("devcluster/{JOB}"), instance, "s3", Stream::Stdout);
        let mut batch = f.batch(&lines(tag, 30));
        let t0 = now_ns() - days * 86_400_000_000_000;
        for (i, l) in batch.lines.iter_mut().enumerate() {
            l.time_ns = t0 + i as i64;
        }
        batch
    };
    server.post_ok(&request(vec![
        at(1, "ancient", 20),
        at(2, "older", 2),
        at(3, "recent", 0),
    ]));
    server.flush();
    let splits = |weed: &Seaweed| {
        let mut ids: Vec<String> = weed
            .keys("retention/splits/")
            .into_iter()
            .filter_map(|k| k.split('/').nth(2).map(str::to_owned))
            .collect();
        ids.dedup();
        ids
    };
    assert_eq!(splits(&weed).len(), 3, "{:?}", splits(&weed));
    wait_until(
        "the old split's objects to leave the bucket",
        DEADLINE,
        || (splits(&weed).len() == 2).then_some(()),
    );
    let s = server.storage();
    let deleted = s["deleted"].as_array().expect("deleted");
    assert_eq!(deleted.len(), 1, "{s}");
    assert_eq!(deleted[0]["reason"], "age", "{s}");
    let out = server.cli(&["grep", "^older", "--output", "raw", "--limit", "0"]);
    assert_eq!(out.lines().len(), 30, "{}", out.stderr);
}

/// A slow store: every chunk to and from SeaweedFS waits 200 ms (a
/// loopback proxy). Ingest does not wait for it; the upload lag shows it;
/// a flush returns once everything is published; reads go through it; and
/// nothing is lost or doubled.
#[test]
fn a_slow_store_slows_publishing_only() {
    let weed = Seaweed::start();
    let proxy = SlowProxy::start(
        weed.endpoint.trim_start_matches("http://"),
        Duration::from_millis(200),
    );
    let config = format!(
        "{FAST}{}",
        weed.config("slow").replace(&weed.endpoint, &proxy.endpoint)
    );
    let (_dir, server) = Server::in_temp_dir(Some(&config));
    let mut f = SourceFile::of(&format!("devcluster/{JOB}"), 0, "s3", Stream::Stdout);
    let mut want = Vec::new();
    for round in 0..5 {
        let l = lines(&format!("slow{round}"), 100);
        server.post_ok(&request(vec![f.batch(&l)]));
        want.extend(l);
    }
    wait_until("the upload lag to show the slow store", DEADLINE, || {
        let s = server.storage();
        (s["upload_lag_secs"].as_f64() > Some(1.0)).then_some(())
    });
    // Ingest goes on meanwhile, into the WAL, while splits wait.
    for round in 5..10 {
        let l = lines(&format!("slow{round}"), 100);
        server.post_ok(&request(vec![f.batch(&l)]));
        want.extend(l);
    }
    let s = server.storage();
    assert!(
        s["unpublished_splits"].as_u64() > Some(0),
        "acknowledged before their split was published: {s}"
    );
    server.flush();
    let s = server.storage();
    assert_eq!(s["unpublished_splits"], 0, "{s}");
    assert!(s["publish_error"].is_null(), "{s}");
    let got: Vec<String> = server.all_lines(JOB).into_iter().map(|l| l.text).collect();
    assert_eq!(got, want, "every line once, in order");
    let out = server.cli(&["grep", "slow3 0042 ", "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), [lines("slow3", 100)[42].as_str()]);
}

/// Issue 16, rule 5: a split is staged before its upload; a node that
/// crashes mid-upload and loses its disk leaves objects no one will
/// publish. Once `storage.abandoned_split_secs` have passed, a node
/// deletes them and the metastore forgets the split.
#[test]
fn a_split_abandoned_mid_upload_is_deleted_after_its_grace() {
    let weed = Seaweed::start();
    // Each request to the store takes seconds: the upload can be caught
    // between its first object and its publish.
    let proxy = SlowProxy::start(weed.endpoint.trim_start_matches("http://"), Duration::ZERO);
    let config = format!(
        "{FAST}abandoned_split_secs = 1\n{}",
        weed.config("abandon")
            .replace(&weed.endpoint, &proxy.endpoint)
    );
    let (dir, mut server) = Server::in_temp_dir(Some(&config));
    proxy.set_delay(Duration::from_secs(1));
    let mut f = SourceFile::of(&format!("devcluster/{JOB}"), 0, "s3", Stream::Stdout);
    server.post_ok(&request(vec![f.batch(&lines("abandoned", 50))]));
    let objects = |weed: &Seaweed| weed.keys("abandon/splits/");
    wait_until("the upload to have begun", DEADLINE, || {
        objects(&weed)
            .iter()
            .any(|k| k.ends_with("/blocks.dat"))
            .then_some(())
    });
    server.kill9();
    assert!(
        !objects(&weed).iter().any(|k| k.ends_with("/index.bundle")),
        "killed before the upload ended: {:?}",
        objects(&weed)
    );
    std::fs::remove_dir_all(dir.path().join("data")).expect("wipe the data dir");
    proxy.set_delay(Duration::ZERO);
    server.restart();
    // Its objects go first, then the metastore forgets it, then the log
    // says so.
    wait_until("the abandoned split's objects to go", DEADLINE, || {
        objects(&weed).is_empty().then_some(())
    });
    wait_until(
        "the log to say the abandoned split was deleted",
        DEADLINE,
        || {
            server
                .log_text()
                .contains("abandoned staged splits deleted")
                .then_some(())
        },
    );
    let s = server.storage();
    assert_eq!(s["splits"].as_array().map(Vec::len), Some(0), "{s}");
}

/// `storage.max_bucket_bytes` bounds the published splits in the bucket:
/// past it the oldest go first, until the rest fit.
#[test]
fn over_max_bucket_bytes_the_oldest_splits_leave_the_bucket() {
    let weed = Seaweed::start();
    let base = format!(
        "[storage]\npartition_secs = 3600\nretention_check_secs = 1\ncommit_interval_ms = 100\n\
         [search]\nmax_query_secs = 5\n{}",
        weed.config("budget")
    );
    let (dir, mut server) = Server::in_temp_dir(Some(&base));
    let hour = 3_600_000_000_000;
    let mut written = Vec::new();
    for (i, hours_ago) in [30, 20, 5].into_iter().enumerate() {
        let mut f = SourceFile::of(&format!("devcluster/{JOB}"), i as u32, "s3", Stream::Stdout);
        let tag = format!("hour{i}");
        let mut batch = f.batch(&lines(&tag, 200));
        let t0 = now_ns() - hours_ago * hour;
        for (k, l) in batch.lines.iter_mut().enumerate() {
            l.time_ns = t0 + k as i64;
        }
        server.post_ok(&request(vec![batch]));
        written.push(tag);
    }
    server.flush();
    let s = server.storage();
    let total = s["bucket_bytes"].as_u64().expect("bucket_bytes");
    assert!(total > 3000, "{s}");
    let split_ids = |weed: &Seaweed| {
        let mut ids: Vec<String> = weed
            .keys("budget/splits/")
            .into_iter()
            .filter_map(|k| k.split('/').nth(2).map(str::to_owned))
            .collect();
        ids.dedup();
        ids
    };
    assert_eq!(split_ids(&weed).len(), 3);

    // One byte less than the three take: the oldest goes, and only it.
    server.stop();
    std::fs::write(
        dir.path().join("data.toml"),
        base.replace(
            "[storage]\n",
            &format!("[storage]\nmax_bucket_bytes = {}\n", total - 1),
        ),
    )
    .expect("write config");
    server.restart();
    wait_until("the oldest split to leave the bucket", DEADLINE, || {
        (split_ids(&weed).len() == 2).then_some(())
    });
    let s = server.storage();
    let deleted = s["deleted"].as_array().expect("deleted");
    assert_eq!(deleted.len(), 1, "{s}");
    assert_eq!(deleted[0]["reason"], "bucket", "{s}");
    assert!(s["bucket_bytes"].as_u64() < Some(total), "{s}");
    let out = server.cli(&["grep", "^hour0 ", "--output", "raw"]);
    assert_eq!((out.code, out.stdout.as_str()), (1, ""), "{}", out.stderr);
    let out = server.cli(&["grep", "^hour[12] ", "--output", "raw", "--limit", "0"]);
    assert_eq!(out.lines().len(), 400, "{}", out.stderr);
}

#[test]
fn wrong_credentials_stop_the_start_with_a_clear_error() {
    let mut weed = Seaweed::start();
    weed.require_credentials();
    let dir = tempfile::tempdir().expect("temp dir");
    // The right key works...
    let ok = weed.config("creds");
    let mut child = spawn_cblogsd(dir.path(), &ok);
    let first = lines_to_channel(child.stdout.take().expect("stdout"))
        .recv_timeout(DEADLINE)
        .expect("cblogsd says where it listens");
    assert!(first.contains("listening on"), "{first:?}");
    let _ = child.kill();
    let _ = child.wait();
    // ...a wrong secret is refused at start, and said so.
    let creds = dir.path().join("wrong.toml");
    std::fs::write(
        &creds,
        "access_key_id = \"cblogs-test\"\nsecret_access_key = \"not-the-secret\"\n",
    )
    .expect("write credentials");
    let wrong = ok
        .lines()
        .map(|l| {
            if l.starts_with("credentials_file") {
                format!("credentials_file = \"{}\"", creds.display())
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let out = spawn_cblogsd(dir.path(), &wrong)
        .wait_with_output()
        .expect("cblogsd ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(stderr.contains(&weed.endpoint), "{stderr}");
}

/// cblogsd started by hand: its start-up may not reach "listening".
fn spawn_cblogsd(dir: &std::path::Path, config: &str) -> std::process::Child {
    spawn_cblogsd_on(dir, config, 0)
}

fn spawn_cblogsd_on(dir: &std::path::Path, config: &str, port: u16) -> std::process::Child {
    let path = dir.join("cblogsd.toml");
    std::fs::write(&path, format!("listen = \"127.0.0.1:{port}\"\n{config}"))
        .expect("write config");
    Command::new(bin("cblogsd"))
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cblogsd")
}

#[test]
fn a_missing_bucket_stops_the_start_and_an_unreachable_store_is_waited_for() {
    let mut weed = Seaweed::start();
    let dir = tempfile::tempdir().expect("temp dir");

    let missing = weed
        .config("x")
        .replace("s3://cblogs/", "s3://no-such-bucket/");
    let out = spawn_cblogsd(dir.path(), &missing)
        .wait_with_output()
        .expect("cblogsd ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("the bucket does not exist"), "{stderr}");
    assert!(stderr.contains("no-such-bucket"), "{stderr}");

    // The store is down at start: cblogsd says so, naming it, and starts
    // once it is back. Meanwhile it answers, but takes nothing (rule 4: a
    // node that has not read the metastore does not know what each source
    // published).
    weed.stop();
    let port = free_port();
    let mut child = spawn_cblogsd_on(dir.path(), &weed.config("later"), port);
    let stderr = lines_to_channel(child.stderr.take().expect("stderr"));
    let said = wait_until(
        "cblogsd to say the store cannot be reached",
        DEADLINE,
        || {
            stderr
                .recv_timeout(Duration::from_millis(100))
                .ok()
                .filter(|l| l.contains("cannot be reached"))
        },
    );
    assert!(said.contains(&weed.endpoint), "{said}");
    assert!(
        child.try_wait().expect("status").is_none(),
        "it keeps trying"
    );
    let batch = {
        let mut f = SourceFile::of(&format!("devcluster/{JOB}"), 0, "s3", Stream::Stdout);
        request(vec![f.batch(&lines("too early", 3))])
    };
    let early = wait_until("the port to answer while starting", DEADLINE, || {
        reqwest::blocking::Client::new()
            .post(format!("http://127.0.0.1:{port}/api/v1/ingest"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&batch).expect("json"))
            .send()
            .ok()
    });
    assert_eq!(early.status().as_u16(), 503);
    assert!(early.headers().contains_key("retry-after"));
    let said = early.text().expect("body");
    assert!(
        said.contains("starting") && said.contains("metastore"),
        "{said}"
    );
    assert!(said.contains(&weed.endpoint), "{said}");
    weed.restart();
    // It retries at most every 30 s: it starts within a minute.
    let first = lines_to_channel(child.stdout.take().expect("stdout"))
        .recv_timeout(Duration::from_secs(60))
        .expect("cblogsd starts once the store is back");
    assert!(first.contains("listening on"), "{first:?}");
    let _ = child.kill();
    let _ = child.wait();
}

/// Issue 17: merges work the same on S3. Splits are merged (their
/// blocks downloaded in a few big ranged GETs, the output uploaded and
/// published with its inputs retired in one commit); a node killed
/// mid-merge that loses its disk too leaves only a staged output, which
/// the sweep of abandoned splits deletes; every line is served once
/// throughout, and in the end the bucket holds exactly the published
/// splits.
#[test]
fn merges_on_s3_lose_nothing_when_the_node_dies_midway() {
    let weed = Seaweed::start();
    let proxy = SlowProxy::start(weed.endpoint.trim_start_matches("http://"), Duration::ZERO);
    let config = format!(
        "{FAST}abandoned_split_secs = 1\npartition_secs = 3600\n\
         [search]\nmax_query_secs = 1\n[merge]\nmerge_factor = 2\n{}",
        weed.config("merge")
            .replace(&weed.endpoint, &proxy.endpoint)
    );
    let (dir, mut server) = Server::in_temp_dir(Some(&config));
    let data = dir.path().join("data");
    let mut files: Vec<SourceFile> = (0..3)
        .map(|i| SourceFile::of(&format!("devcluster/{JOB}"), i, "s3", Stream::Stdout))
        .collect();
    let mut want = Vec::new();
    let mut post = |server: &Server, round: usize| -> Vec<String> {
        let mut texts = Vec::new();
        let batches = files
            .iter_mut()
            .enumerate()
            .map(|(i, f)| {
                let some = lines(&format!("merge{round} source{i}"), 30);
                texts.extend(some.iter().cloned());
                f.batch(&some)
            })
            .collect();
        server.post_ok(&request(batches));
        // A split a second: each round in a split of its own.
        std::thread::sleep(Duration::from_millis(1200));
        texts
    };
    for round in 0..4 {
        want.extend(post(&server, round));
    }
    let served = |server: &Server| {
        let mut got: Vec<String> = server.all_lines(JOB).into_iter().map(|l| l.text).collect();
        got.sort();
        got
    };
    let same = |got: Vec<String>, want: &[String], ctx: &str| {
        let missing = want.iter().filter(|l| !got.contains(l)).count();
        assert!(
            got == want,
            "{ctx}: {} lines served, {} written, {missing} missing",
            got.len(),
            want.len()
        );
    };
    wait_until("a merge on S3", DEADLINE, || {
        (server.storage()["merges"]["done"].as_u64() >= Some(1)).then_some(())
    });
    let mut sorted = want.clone();
    sorted.sort();
    same(served(&server), &sorted, "each line once after a merge");

    // The store turns slow: the next merge is caught midway, and the node
    // dies with its disk.
    proxy.set_delay(Duration::from_millis(500));
    for round in 4..8 {
        want.extend(post(&server, round));
    }
    // Published, every line: what the lost disk held is in the bucket
    // (lines only in the WAL would need a shipper to send them again).
    server.flush();
    let split_ids = |weed: &Seaweed| {
        let mut ids: Vec<String> = weed
            .keys("merge/splits/")
            .into_iter()
            .filter_map(|k| k.split('/').nth(2).map(str::to_owned))
            .collect();
        ids.dedup();
        ids
    };
    let published = |server: &Server| {
        let mut ids: Vec<String> = server.storage()["splits"]
            .as_array()
            .expect("splits")
            .iter()
            .filter(|s| s["state"] == "published")
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    wait_until("a merge to be running", DEADLINE, || {
        (server.storage()["merges"]["running"] == true).then_some(())
    });
    let before = split_ids(&weed);
    // Its output's objects appear (staged, uploading): the node dies then.
    let output = wait_until("the merge's output to be uploaded", DEADLINE, || {
        split_ids(&weed).into_iter().find(|id| !before.contains(id))
    });
    server.kill9();
    std::fs::remove_dir_all(&data).expect("wipe the data dir");
    proxy.set_delay(Duration::ZERO);
    server.restart();
    let mut sorted = want.clone();
    sorted.sort();
    same(
        served(&server),
        &sorted,
        "each line once after the node died mid-merge",
    );
    assert!(
        !published(&server).contains(&output),
        "the output of the merge cut short is not published"
    );
    wait_until("the staged output to be swept", DEADLINE, || {
        (!split_ids(&weed).contains(&output)).then_some(())
    });
    wait_until("only published splits in the bucket", DEADLINE, || {
        let m = &server.storage()["merges"];
        let idle = m["pending"] == 0 && m["running"] == false;
        (idle && split_ids(&weed) == published(&server)).then_some(())
    });
    same(served(&server), &sorted, "each line once in the end");
}
