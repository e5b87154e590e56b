//! A `kill -9` of cblogsd loses nothing it acknowledged: lines in the WAL,
//! in sealed blocks and in the index all come back, each exactly once.

use cblogs_core::Stream;
use cblogs_testkit::*;

#[test]
fn sigkill_after_acknowledgements_loses_nothing() {
    let (_dir, mut server) = Server::in_temp_dir(Some(SMALL_BLOCKS));
    let corpora = [
        sample(LogKind::Hdfs),
        sample(LogKind::ClusterSyslog),
        sample(LogKind::Supercomputer),
    ];
    let mut files: Vec<(SourceFile, &Vec<Vec<u8>>)> = (0..3u32)
        .flat_map(|i| {
            let corpus = &corpora[i as usize];
            [Stream::Stdout, Stream::Stderr].map(|s| {
                (
                    SourceFile::of("devcluster/data/prod/etl", i, "etl", s),
                    corpus,
                )
            })
        })
        .collect();
    let mut acked: Vec<Vec<String>> = vec![Vec::new(); files.len()];
    let mut next = 0usize;
    for round in 0..4 {
        // A few hundred acknowledged batches, then SIGKILL at once.
        for _ in 0..60 {
            let batches = files
                .iter_mut()
                .zip(acked.iter_mut())
                .map(|((f, corpus), acked)| {
                    let chunk: Vec<&Vec<u8>> =
                        (0..7).map(|j| &corpus[(next + j) % corpus.len()]).collect();
                    acked.extend(
                        chunk
                            .iter()
                            .map(|l| String::from_utf8_lossy(l).into_owned()),
                    );
                    f.batch(&chunk)
                })
                .collect();
            next += 7;
            server.post_ok(&request(batches));
        }
        server.kill9();
        server.restart();
        let stored = server.all_lines("data/prod/etl");
        let total: usize = acked.iter().map(Vec::len).sum();
        assert_eq!(
            stored.len(),
            total,
            "round {round}: every acknowledged line, once"
        );
        for ((f, _), want) in files.iter().zip(&acked) {
            let got: Vec<&str> = stored
                .iter()
                .filter(|l| l.task_id == f.source.task_id && l.stream == f.source.stream)
                .map(|l| l.text.as_str())
                .collect();
            assert_eq!(got, *want, "round {round}: {} in order", f.source.key());
        }
    }
    assert!(
        server.log_text().contains("write-ahead log replayed"),
        "restarts replayed the WAL"
    );
}

#[test]
fn the_held_end_survives_a_restart_even_after_a_cut_or_partial_line() {
    let (_dir, mut server) = Server::in_temp_dir(Some(SMALL_BLOCKS));
    let mut cut = SourceFile::of("devcluster/data/prod/big", 0, "big", Stream::Stdout);
    let mut partial = SourceFile::of("devcluster/data/prod/big", 1, "big", Stream::Stdout);
    // The last line of one source is cut at 1 MiB: only the batch's end
    // says where the next byte is. The other ends in a line with no newline.
    let giant = vec![b'y'; 3 << 20];
    let b1 = cut.batch(&[&b"small"[..], &giant[..]]);
    let mut b2 = partial.batch(&["done", "half a li"]);
    b2.lines[1].partial = true;
    b2.end -= 1; // no newline after a partial line
    partial.offset -= 1;
    server.post_ok(&request(vec![b1, b2]));
    for restart in ["kill -9", "clean stop"] {
        if restart == "kill -9" {
            server.kill9();
        } else {
            server.stop();
        }
        server.restart();
        // The next bytes continue exactly where the held end is: no false gap.
        let resp = server.post_ok(&request(vec![
            cut.batch(&[restart]),
            partial.batch(&[restart]),
        ]));
        assert_eq!(resp["accepted"], 2, "after {restart}: {resp}");
    }
    let lines = server.all_lines("data/prod/big");
    let texts: Vec<(u32, usize, bool)> = lines
        .iter()
        .map(|l| (l.instance, l.text.len(), l.flags.cut || l.flags.partial))
        .collect();
    assert_eq!(
        texts,
        [
            (0, 5, false),
            (0, 1 << 20, true),
            (1, 4, false),
            (1, 9, true),
            (0, 7, false),
            (1, 7, false),
            (0, 10, false),
            (1, 10, false)
        ]
    );
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn a_quiet_source_cannot_make_the_wal_grow_past_its_budget() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // Blocks never seal by age during the test: only the budget can free the WAL.
    let config =
        "[storage]\nblock_bytes = 4096\nblock_max_age_ms = 600000\ncommit_interval_ms = 50\n\
                  wal_segment_bytes = 16384\nwal_max_bytes = 65536\n";
    let mut server = Server::start(&data, Some(config));
    let mut quiet = SourceFile::of("devcluster/data/prod/quiet", 0, "cron", Stream::Stdout);
    let mut busy = SourceFile::of("devcluster/data/prod/busy", 0, "etl", Stream::Stdout);
    server.post_ok(&request(vec![
        quiet.batch(&["the only line of a quiet source"])
    ]));
    let lines = sample(LogKind::Logcat);
    for chunk in lines.chunks(50) {
        server.post_ok(&request(vec![busy.batch(chunk)]));
    }
    let wal = data.join("wal");
    let posted: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    assert!(
        posted > 4 * 65536,
        "the busy source writes well past the budget"
    );
    wait_until("the WAL to shrink within its budget", DEADLINE, || {
        (dir_bytes(&wal) <= 65536).then_some(())
    });
    server.kill9();
    server.restart();
    assert_eq!(server.all_lines("quiet").len(), 1);
    assert_eq!(server.all_lines("busy").len(), lines.len());
}
