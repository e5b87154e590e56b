//! Retries never show a line twice: the same batches posted again, batches
//! overlapping what is held, and copies sent at once all leave every line
//! exactly once.

use cblogs_core::Stream;
use cblogs_testkit::*;

#[test]
fn resent_and_overlapping_batches_show_every_line_once() {
    let (_dir, server) = Server::in_temp_dir(Some(SMALL_BLOCKS));
    let lines = sample(LogKind::Syslog);
    let mut files: Vec<SourceFile> = (0..3)
        .flat_map(|i| {
            [Stream::Stdout, Stream::Stderr]
                .map(|s| SourceFile::of("devcluster/ops/prod/cron", i, "cron", s))
        })
        .collect();
    let mut all = Vec::new();
    for round in 0..4 {
        let batches: Vec<_> = files
            .iter_mut()
            .enumerate()
            .map(|(k, f)| f.batch(&lines[(round * 50 + k * 7)..(round * 50 + k * 7 + 40)]))
            .collect();
        let req = request(batches);
        let first = server.post_ok(&req);
        assert_eq!(first["accepted"], 6 * 40);
        assert_eq!(first["duplicates"], 0);
        // The same request again, plain and compressed: all duplicates.
        for zstd in [false, true] {
            let (status, again) = server.post(&req, zstd);
            assert_eq!(status, 200, "{again}");
            assert_eq!(again["accepted"], 0);
            assert_eq!(again["duplicates"], 6 * 40);
            assert_eq!(again["batches"][0]["acked_end"], req.batches[0].end);
        }
        all.push(req);
    }
    // Overlaps: the second half of one batch plus the first half of the next,
    // re-cut differently (a shipper that restarted mid-way).
    for f in 0..6 {
        let mut lines = all[1].batches[f].lines[20..].to_vec();
        lines.extend_from_slice(&all[2].batches[f].lines[..20]);
        let overlap = cblogs_core::wire::Batch {
            source: all[1].batches[f].source.clone(),
            start: lines[0].offset,
            end: all[2].batches[f].lines[20].offset,
            lines,
            allow_gap: false,
        };
        let resp = server.post_ok(&request(vec![overlap]));
        assert_eq!(
            (resp["accepted"].as_u64(), resp["duplicates"].as_u64()),
            (Some(0), Some(40))
        );
    }
    // A batch that is half old, half new: only the new half is taken.
    let mut half = files[0].batch(&lines[1000..1010]);
    let old = all[3].batches[0].lines[35..].to_vec();
    half.start = old[0].offset;
    half.lines.splice(0..0, old);
    let new_half: Vec<(u64, String)> = half.lines[5..]
        .iter()
        .map(|l| (l.offset, l.text.clone().unwrap_or_default()))
        .collect();
    let resp = server.post_ok(&request(vec![half]));
    assert_eq!(
        (resp["accepted"].as_u64(), resp["duplicates"].as_u64()),
        (Some(10), Some(5))
    );

    // Every line exactly once, in order, per source.
    let stored = server.all_lines("ops/prod/cron");
    assert_eq!(stored.len(), 4 * 6 * 40 + 10);
    for (k, f) in files.iter().enumerate() {
        let mine: Vec<_> = stored
            .iter()
            .filter(|l| l.task_id == f.source.task_id && l.stream == f.source.stream)
            .collect();
        let mut want: Vec<(u64, String)> = all
            .iter()
            .flat_map(|r| {
                r.batches[k]
                    .lines
                    .iter()
                    .map(|l| (l.offset, l.text.clone().unwrap_or_default()))
            })
            .collect();
        if k == 0 {
            want.extend(new_half.iter().cloned());
        }
        let got: Vec<(u64, String)> = mine.iter().map(|l| (l.offset, l.text.clone())).collect();
        assert_eq!(got, want, "source {k}");
    }
}

#[test]
fn copies_sent_at_once_are_taken_once() {
    let (_dir, server) = Server::in_temp_dir(None);
    let lines = sample(LogKind::MacOs);
    let mut f = SourceFile::of("devcluster/ops/prod/racer", 0, "racer", Stream::Stdout);
    let req = request(vec![f.batch(&lines[..500])]);
    let accepted: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| server.post_ok(&req)["accepted"].as_u64().unwrap_or(0)))
            .collect();
        handles.into_iter().map(|h| h.join().expect("poster")).sum()
    });
    assert_eq!(
        accepted, 500,
        "eight concurrent copies: exactly one is taken"
    );
    assert_eq!(server.all_lines("racer").len(), 500);
}

#[test]
fn a_batch_that_would_leave_a_hole_is_refused_until_the_hole_is_filled() {
    let (_dir, server) = Server::in_temp_dir(None);
    let lines = sample(LogKind::DesktopProxy);
    let mut f = SourceFile::of("devcluster/ops/prod/proxy", 0, "proxy", Stream::Stdout);
    let first = f.batch(&lines[..10]);
    let mut second = f.batch(&lines[10..20]);
    let third = f.batch(&lines[20..30]);
    // Every source starts at 0: a first batch further on is a hole too.
    let (status, resp) = server.post(&request(vec![second.clone()]), false);
    assert_eq!(
        (status, resp["held_end"].as_u64()),
        (409, Some(0)),
        "{resp}"
    );
    // Unless the sender says those bytes are lost (a tailer that started at
    // the end of an existing file); then what lies before counts as held.
    second.allow_gap = true;
    server.post_ok(&request(vec![second]));
    let (status, resp) = server.post(&request(vec![first]), false);
    assert_eq!(
        (status, resp["duplicates"].as_u64()),
        (200, Some(10)),
        "{resp}"
    );

    // A fresh source sent out of order, as several batches in flight can be.
    let mut g = SourceFile::of("devcluster/ops/prod/proxy", 1, "proxy", Stream::Stdout);
    let a = g.batch(&lines[..10]);
    let b = g.batch(&lines[10..20]);
    let c = g.batch(&lines[20..30]);
    server.post_ok(&request(vec![a]));
    let (status, resp) = server.post(&request(vec![c.clone()]), true);
    assert_eq!(status, 409, "{resp}");
    assert_eq!(resp["held_end"].as_u64(), Some(b.start));
    // A request holding a gap stores nothing of any of its batches.
    let (status, _) = server.post(&request(vec![third.clone(), c.clone()]), false);
    assert_eq!(status, 409);
    // In order, both go in; every line of source 1 is there once, in order.
    server.post_ok(&request(vec![b, c, third]));
    let stored = server.all_lines("proxy/1");
    let want: Vec<String> = lines[..30]
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    assert_eq!(
        stored.iter().map(|l| l.text.clone()).collect::<Vec<_>>(),
        want
    );
    assert_eq!(
        server.all_lines("proxy/0").len(),
        20,
        "source 0: the second and third batches"
    );
}
