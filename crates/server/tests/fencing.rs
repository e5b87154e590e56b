//! Fencing between two nodes of a cluster, driven in one process (rule 2
//! of issue 18): a source moves back and forth between nodes `a` and `b`
//! (sharing one bucket and metastore) while lines are written throughout,
//! and the node it leaves goes on taking a few requests after the move,
//! as a shipper that has not noticed yet would send them. Whatever
//! either node had accepted when the other took the source, applied or
//! still on its way to the store, the published splits hold every line
//! exactly once.
//!
//! The processes' version of this (a frozen node, a killed one) is in
//! `tests/cluster.rs`; here the moves come dozens of times a second
//! apart from requests still in flight, which real processes reach only
//! by chance.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::{Source, Stream};
use cblogs_server::testing::{last_lines, IngestError};
use cblogs_server::{Config, Service};

/// More than are ever sent: the test ends after its moves.
const LINES: usize = 200_000;
const CHUNK: usize = 10;
/// How often the source moves.
const MOVES: usize = 14;

fn config(dir: &std::path::Path, node: &str) -> Config {
    let mut c = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    c.storage.block_bytes = 2048;
    c.storage.block_max_age_ms = 50;
    c.storage.commit_interval_ms = 20;
    c.storage.split_max_age_secs = 1;
    c.cluster.node_id = node.to_owned();
    // A static list: a cluster without ZooKeeper. Nothing here asks the
    // other node over HTTP; they meet in the metastore.
    c.cluster.nodes = vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()];
    c
}

fn source() -> Source {
    Source::example("www-data/prod/hello", 0, "hello", Stream::Stdout)
}

/// Line `i`, the same whichever node it is sent to.
fn line(i: usize) -> String {
    format!(
        "line {i} GET /api/v1/items/{} status=200",
        i * 7919 % 10_000
    )
}

/// Every line's offset, and the end of the last.
fn offsets() -> Arc<Vec<u64>> {
    let mut at = vec![0u64];
    for i in 0..LINES {
        at.push(at[i] + line(i).len() as u64 + 1);
    }
    Arc::new(at)
}

/// A sender of lines `from..` to one node: sends a chunk, and goes on
/// from what the node says it holds (past the chunk when it took it, back
/// where it holds up to when it refused a gap). Returns where it stands.
async fn send_chunk(service: &Service, at: &[u64], from: usize) -> usize {
    let to = (from + CHUNK).min(LINES);
    // Now: splits are sealed by their lines' time (`split_max_age_secs`).
    let t0 = cblogs_core::time::now_ns();
    let batch = Batch {
        source: source(),
        start: at[from],
        end: at[to],
        lines: (from..to)
            .map(|i| WireLine::from_bytes(at[i], t0, line(i).as_bytes()))
            .collect(),
        allow_gap: false,
    };
    // A shipper's pace: a few thousand lines a second.
    tokio::time::sleep(Duration::from_millis(2)).await;
    let held = match service
        .app()
        .ingestor
        .ingest(IngestRequest {
            batches: vec![batch],
        })
        .await
    {
        Ok(resp) => resp.batches[0].acked_end,
        Err(IngestError::Gap { held_end, .. }) => held_end,
        Err(e) => panic!("ingest failed: {e}"),
    };
    at.binary_search(&held)
        .unwrap_or_else(|_| panic!("node holds up to {held}, not a line's end"))
}

#[test]
fn a_source_moved_while_requests_are_in_flight_is_published_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (dir_a, dir_b, dir_c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    // One bucket for all: the embedded one of `a`, linked from the others.
    std::fs::create_dir_all(dir_a.join("bucket")).expect("bucket");
    for d in [&dir_b, &dir_c] {
        std::fs::create_dir_all(d).expect("data dir");
        std::os::unix::fs::symlink(dir_a.join("bucket"), d.join("bucket")).expect("link");
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let nodes = [
        Arc::new(Service::open(config(&dir_a, "a")).expect("a opens")),
        Arc::new(Service::open(config(&dir_b, "b")).expect("b opens")),
    ];
    let at = offsets();
    let mut next = 0;
    rt.block_on(async {
        for moves in 0..=MOVES {
            let (from, to) = (moves % 2, (moves + 1) % 2);
            // A while on one node (long enough, now and then, for a split
            // to be published), then the source moves to the other.
            let stay = Duration::from_millis(fastrand::u64(30..1_200));
            let until = Instant::now() + stay;
            while Instant::now() < until {
                next = send_chunk(&nodes[from], &at, next).await;
            }
            if moves == MOVES {
                break;
            }
            // The node left behind still takes a few requests, sent at
            // once with the other node's first ones.
            let stop = Arc::new(AtomicBool::new(false));
            let straggler = {
                let (node, at, stop) = (nodes[from].clone(), at.clone(), stop.clone());
                let mut own = next;
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        own = send_chunk(&node, &at, own).await;
                    }
                })
            };
            let lag = Instant::now() + Duration::from_millis(fastrand::u64(0..80));
            while Instant::now() < lag {
                next = send_chunk(&nodes[to], &at, next).await;
            }
            stop.store(true, Ordering::Relaxed);
            straggler.await.expect("straggler");
        }
    });
    assert!(next > 1_000, "only {next} lines held at the end");
    drop(rt);
    // A clean stop publishes what each still holds under its epoch.
    for node in nodes {
        Arc::into_inner(node).expect("one owner").close();
    }

    // A third node reads only what the two published.
    let reader = Service::open(Config {
        data_dir: dir_c,
        ..Config::default()
    })
    .expect("reader opens");
    let snap = reader.app().store.snapshot(&|_| true, false);
    let mut lines = last_lines(&snap, 10 * next, None).expect("read").lines;
    lines.sort_by_key(|l| l.offset);
    let shown: Vec<u64> = lines.iter().map(|l| l.offset).collect();
    let twice: Vec<u64> = shown
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    assert!(
        twice.is_empty(),
        "{} lines published twice after {MOVES} moves, the first at offsets {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(shown, at[..next], "every line held at the end, in order");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(String::from_utf8_lossy(&l.bytes), line(i));
    }
    drop(snap);
    reader.close();
}
