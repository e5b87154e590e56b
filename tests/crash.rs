//! A `kill -9` of cblogsd loses nothing it acknowledged: lines in the WAL,
//! in sealed blocks and in the index all come back, each exactly once.

use cblogs_core::Stream;
use cblogs_e2e::*;

#[test]
fn sigkill_after_acknowledgements_loses_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(&dir.path().join("data"), Some(SMALL_BLOCKS));
    let corpora = [
        corpus("HDFS_2k.log"),
        corpus("Thunderbird_2k.log"),
        corpus("BGL_2k.log"),
    ];
    let mut files: Vec<(SourceFile, &Vec<Vec<u8>>)> = (0..3u32)
        .flat_map(|i| {
            let corpus = &corpora[i as usize];
            [Stream::Stdout, Stream::Stderr].map(|s| {
                (
                    SourceFile::new(source("devcluster/data/prod/etl", i, "etl", s)),
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
    let dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(&dir.path().join("data"), Some(SMALL_BLOCKS));
    let mut cut = SourceFile::new(source("devcluster/data/prod/big", 0, "big", Stream::Stdout));
    let mut partial = SourceFile::new(source("devcluster/data/prod/big", 1, "big", Stream::Stdout));
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
