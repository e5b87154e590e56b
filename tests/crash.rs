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
