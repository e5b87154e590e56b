//! A full disk under cblogsd: ingest answers 503 (shippers hold their
//! checkpoints and retry), nothing stored is corrupted, and once space is
//! freed ingest resumes by itself and every line arrives exactly once.
//!
//! The data dir is a small tmpfs, mounted by the test: as root directly;
//! otherwise the test runs itself again in a user namespace (`unshare
//! -rm`), where it may mount, or fails saying why it cannot (see
//! `cblogs_testkit::privilege`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cblogs_core::{LineView, Stream};
use cblogs_testkit::*;

const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// A tmpfs mounted for the test's life.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it, as root or in a user namespace: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system holding `path` with one file, to the last byte.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = [0x55u8; 64 << 10];
    let mut written = 0u64;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // The last partial chunks, down to single bytes.
    for size in [4096usize, 1] {
        while f.write(&chunk[..size]).is_ok_and(|n| n > 0) {
            written += size as u64;
        }
    }
    let _ = f.sync_all();
    written
}

/// Lines tagged `tag` numbered from `from`, each distinct and ~150 bytes.
fn lines(tag: &str, from: usize, n: usize) -> Vec<String> {
    let hdfs = sample(LogKind::Hdfs);
    (from..from + n)
        .map(|i| {
            format!(
                "{tag} {i:06} {}",
                String::from_utf8_lossy(&hdfs[i % hdfs.len()])
            )
        })
        .collect()
}

/// Every line written to `runs`, once each, in file order, and nothing else.
fn assert_exactly_once(server: &Server, runs: &[&ProcessRun]) {
    let got: Vec<LineView> = server.all_lines("*");
    let problems = problems(&got, runs, Offsets::Exact);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_full_disk_refuses_ingest_then_recovers_without_loss_when_space_returns() {
    if as_root("a_full_disk_refuses_ingest_then_recovers_without_loss_when_space_returns")
        == AsRoot::RanInUserNamespace
    {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "16m");

    // Small WAL segments (several roll while the disk is full), a fast
    // committer, and short retention checks.
    let config = format!("{SMALL_BLOCKS}wal_segment_bytes = 65536\nretention_check_secs = 1\n");
    let mut server = Server::start(&data, Some(&config));
    let agent = Agent::new(&dir.path().join("agent"));
    let mut runs = [
        agent
            .task("www-data", "prod", "hello", 0)
            .process("hello_world", 0),
        agent
            .task("www-data", "prod", "hello", 1)
            .process("hello_world", 0),
    ];
    let mut shipper = Shipper::start_with_status_endpoint(
        &agent,
        &dir.path().join("shipper-state"),
        &server.url,
        SHIPPER_FAST,
    );

    // Before: lines arrive and are committed to the index.
    for (i, run) in runs.iter_mut().enumerate() {
        for stream in BOTH {
            run.append_lines(stream, &lines(&format!("before-{i}-{stream}"), 0, 300));
        }
    }
    {
        let refs: Vec<&ProcessRun> = runs.iter().collect();
        wait_all_stored(&server, &mut shipper, DEADLINE, &refs);
    }

    // The disk fills up; lines keep being written to the sandboxes.
    let filler = data.join("filler");
    let filled = fill(&filler);
    assert!(
        filled > 1 << 20,
        "the tmpfs had room to fill: {filled} bytes"
    );
    let mut written_while_full = 0usize;
    let refused = wait_until("ingest to be refused for a full disk", DEADLINE, || {
        for (i, run) in runs.iter_mut().enumerate() {
            for stream in BOTH {
                run.append_lines(
                    stream,
                    &lines(&format!("full-{i}-{stream}"), written_while_full, 20),
                );
            }
        }
        written_while_full += 20;
        let s = server.storage();
        (s["ingest_available"] == false).then_some(s)
    });
    let why = refused["ingest_error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        why.contains("No space left on device"),
        "the storage API says why: {refused}"
    );
    assert_eq!(server.metric("cblogs_ingest_available"), Some(0.0));
    // While full, lines are held back: the shipper is answered 503 and
    // retries, holding its checkpoints.
    for (i, run) in runs.iter_mut().enumerate() {
        run.append_lines(Stream::Stdout, &lines(&format!("held-{i}"), 0, 200));
    }
    let retried = wait_until("the shipper to be told 503", DEADLINE, || {
        shipper
            .status_get("/metrics")
            .lines()
            .find(|l| l.starts_with("cblogs_shipper_retries_total{reason=\"503\"}"))
            .map(str::to_owned)
    });
    let stored_while_full: u64 = stored_per_job(&server).values().sum();
    let written: u64 = written_per_job(&runs.iter().collect::<Vec<_>>())
        .values()
        .sum();
    assert!(
        stored_while_full < written,
        "with the disk full not everything can be stored ({stored_while_full} of {written}); shipper: {retried}"
    );
    // Reads still work, and what was stored before is intact.
    let before = server.cli(&["grep", "-c", "before-0-stdout", "www-data/prod/hello"]);
    assert_eq!(
        before.stdout.trim(),
        "devcluster/www-data/prod/hello/0:300",
        "{}",
        before.stderr
    );

    // Space returns: ingest resumes by itself, nothing lost or doubled.
    let freed_at = Instant::now();
    std::fs::remove_file(&filler).expect("free the disk");
    wait_until("ingest to resume", DEADLINE, || {
        (server.storage()["ingest_available"] == true).then_some(())
    });
    let resumed_after = freed_at.elapsed();
    {
        let refs: Vec<&ProcessRun> = runs.iter().collect();
        wait_all_stored(&server, &mut shipper, DEADLINE, &refs);
        assert_exactly_once(&server, &refs);
    }
    assert!(
        resumed_after < Duration::from_secs(10),
        "resumed {resumed_after:?} after space returned"
    );
    let log = server.log_text();
    assert!(log.contains("ingest resumed"), "the log says so:\n{log}");
    if std::env::var_os("CBLOGS_SHOW_LOG").is_some() {
        eprintln!("{log}");
    }

    // Nothing on disk is corrupt: a restart replays and reopens all of it.
    shipper.stop();
    server.stop();
    server.restart();
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    assert_exactly_once(&server, &refs);
}
