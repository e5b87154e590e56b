//! Ingest back-pressure: past `storage.max_unindexed_bytes` of lines waiting
//! for the index, ingest waits for the committer. It must still make
//! progress when those bytes are spread over many open blocks that no size
//! rule would seal (many quiet sources): the committer seals them early.

use cblogs_core::Stream;
use cblogs_testkit::*;

#[test]
fn many_quiet_sources_past_the_memory_budget_do_not_stall_ingest() {
    // Blocks would seal at 1 MiB or after an hour; the budget is 64 KiB.
    let (_dir, server) = Server::in_temp_dir(Some(
        "[storage]\nblock_bytes = 1048576\nblock_max_age_ms = 3600000\n\
         commit_interval_ms = 100\nmax_unindexed_bytes = 65536\n",
    ));
    let line = vec![b'x'; 1000];
    let lines = [&line[..]; 4];
    // 64 sources × 4 KB: four times the budget, no block anywhere near full.
    // Without early sealing, requests past the budget would wait out the
    // 30 s patience and be answered 503.
    for instance in 0..64 {
        let mut f = SourceFile::of("www-data/prod/hello", instance, "hello", Stream::Stdout);
        let (status, body) = server.post(&request(vec![f.batch(&lines)]), true);
        assert_eq!(status, 200, "instance {instance}: {body}");
    }
    let stored = server.all_lines("www-data/prod/hello");
    assert_eq!(stored.len(), 64 * 4);
    assert!(stored.iter().all(|l| l.text.as_bytes() == line.as_slice()));
}
