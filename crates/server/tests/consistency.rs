//! The store's central promise, exercised under concurrency: while lines
//! are ingested and the committer keeps moving blocks from memory into the
//! index, and splits from the local disk to the object store (published
//! every second), every reader snapshot sees each source as an unbroken prefix of
//! what was acknowledged — no line twice, none missing — and after a clean
//! restart everything is still there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::{Source, Stream};
use cblogs_server::testing::{last_lines, OwnedLine};
use cblogs_server::{Config, Service};

fn config(dir: &std::path::Path) -> Config {
    let mut c = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    // Tiny blocks and a fast committer: lines cross from memory to the
    // index all the time while the reader looks.
    c.storage.block_bytes = 2048;
    c.storage.block_max_age_ms = 50;
    c.storage.commit_interval_ms = 20;
    c.storage.split_max_age_secs = 1;
    c
}

fn source(instance: u32) -> Source {
    Source::example("www-data/prod/hello", instance, "hello", Stream::Stdout)
}

/// All lines are timed from here: now, so that retention keeps them.
fn t0() -> i64 {
    static T0: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T0.get_or_init(cblogs_core::time::now_ns)
}

/// Line `i` of every source is `line {i}`, at a known offset.
fn line(i: u64) -> String {
    format!(
        "line {i} GET /api/v1/items/{} status=200",
        i * 7919 % 10_000
    )
}

fn offset_of(i: u64) -> u64 {
    (0..i).map(|k| line(k).len() as u64 + 1).sum()
}

/// Checks one reader's view: per source, lines 0..k in order, each once.
fn check_prefixes(lines: &[OwnedLine]) -> usize {
    let mut next: HashMap<u32, u64> = HashMap::new();
    let mut by_source: Vec<&OwnedLine> = lines.iter().collect();
    by_source.sort_by_key(|l| (l.source.instance, l.offset));
    for l in by_source {
        let i = next.entry(l.source.instance).or_insert(0);
        assert_eq!(
            String::from_utf8_lossy(&l.bytes),
            line(*i),
            "instance {}: expected line {} at offset {}, got offset {}",
            l.source.instance,
            i,
            offset_of(*i),
            l.offset
        );
        *i += 1;
    }
    lines.len()
}

#[test]
fn readers_see_every_line_once_while_blocks_move_to_the_index() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let service = Service::open(config(dir.path())).expect("service opens");
    let app = service.app().clone();
    let stop = Arc::new(AtomicBool::new(false));

    // A reader that checks every snapshot it takes until told to stop.
    let reader = {
        let app = app.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut checks = 0;
            let mut most = 0;
            while !stop.load(Ordering::Relaxed) {
                let snap = app.store.snapshot(&|_| true, false);
                let lines = last_lines(&snap, 100_000, None).expect("read").lines;
                most = most.max(check_prefixes(&lines));
                checks += 1;
            }
            (checks, most)
        })
    };

    const SOURCES: u32 = 4;
    const LINES: u64 = 3_000;
    rt.block_on(async {
        for chunk in (0..LINES).collect::<Vec<_>>().chunks(25) {
            let batches = (0..SOURCES)
                .map(|inst| {
                    let lines: Vec<WireLine> = chunk
                        .iter()
                        .map(|&i| {
                            WireLine::from_bytes(offset_of(i), t0() + i as i64, line(i).as_bytes())
                        })
                        .collect();
                    let end = offset_of(chunk[chunk.len() - 1] + 1);
                    Batch {
                        source: source(inst),
                        start: offset_of(chunk[0]),
                        end,
                        lines,
                        allow_gap: false,
                    }
                })
                .collect();
            app.ingestor
                .ingest(IngestRequest { batches })
                .await
                .expect("ingest");
        }
    });
    // Let the committer move everything that is due into the index while
    // the reader keeps checking (polled, not spun: on two cores a spinning
    // wait would take the committer's CPU).
    let deadline = Instant::now() + Duration::from_secs(60);
    while app.store.blocks_to_commit(false, None).len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let (checks, most) = reader.join().expect("reader thread");
    assert!(checks > 10, "the reader ran only {checks} times");
    assert!(most > 0, "the reader never saw a line");

    let snap = app.store.snapshot(&|_| true, false);
    let all = last_lines(&snap, 100_000, None).expect("read").lines;
    assert_eq!(check_prefixes(&all), (SOURCES as u64 * LINES) as usize);
    assert!(
        snap.memory.len() < SOURCES as usize * 2,
        "most blocks should be in the index by now, {} still in memory",
        snap.memory.len()
    );
    drop(snap);
    drop(app);
    service.close();

    // A clean restart replays nothing and still holds every line.
    let service = Service::open(config(dir.path())).expect("service reopens");
    let snap = service.app().store.snapshot(&|_| true, false);
    assert!(snap.memory.is_empty(), "a clean stop commits everything");
    let all = last_lines(&snap, 100_000, None).expect("read").lines;
    assert_eq!(check_prefixes(&all), (SOURCES as u64 * LINES) as usize);
    // The newest 10 lines overall are the last lines of each source.
    let last = last_lines(&snap, 10, None).expect("read").lines;
    assert_eq!(last.len(), 10);
    assert!(last.iter().all(|l| l.time_ns >= t0() + LINES as i64 - 3));

    // `truncated` says exactly whether lines at or after `since` were left out:
    // 3 lines of each of the 4 sources are at or after t0 + LINES - 3.
    let since = Some(t0() + LINES as i64 - 3);
    for (n, truncated) in [(10, true), (11, true), (12, false), (100, false)] {
        let tail = last_lines(&snap, n, since).expect("read");
        assert_eq!(
            (tail.lines.len(), tail.truncated),
            (n.min(12), truncated),
            "n = {n}"
        );
    }
    let all_since_start = last_lines(&snap, 100, Some(t0())).expect("read");
    assert!(all_since_start.truncated, "12000 lines since t0, 100 kept");
    drop(snap);
    service.close();
}
