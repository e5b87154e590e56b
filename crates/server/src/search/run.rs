//! Running a search to its end (or its limit, deadline, or the client
//! leaving): lines mode through `merge.rs`, count and list modes here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use cblogs_core::api::{MatchSource, SearchEvent, SearchSummary, SourceCount};
use cblogs_core::Source;

use super::blocks::{gather, note_read, SourceBlocks};
use super::request::{storage_failed, Mode, ProgressTicker, SearchRequest, SearchSink};
use super::{merge, pipeline, scan};
use crate::store::ReadSnapshot;

/// Runs a search to its end (or its limit, deadline, or the client leaving),
/// sending events as they are final.
pub fn run(snap: &ReadSnapshot, req: &SearchRequest, jobs: Vec<String>, sink: &mut dyn SearchSink) {
    let started = Instant::now();
    if !sink.send(SearchEvent::Start { jobs }) || !sink.flush() {
        return;
    }
    let need = req.term_need();
    let mut summary = SearchSummary::default();
    match gather(snap, &need, req.range()) {
        Ok(sources) => {
            summary.blocks_total = sources.iter().map(|s| s.blocks.len() as u64).sum();
            match req.mode {
                Mode::Lines => merge::lines(&sources, req, sink, &mut summary),
                Mode::Count | Mode::List => counts(&sources, req, sink, &mut summary),
            }
        }
        Err(e) => storage_failed(&mut summary, &e),
    }
    summary.took_ms = started.elapsed().as_millis() as u64;
    let _ = sink.send(SearchEvent::Summary(summary)) && sink.flush();
}

fn match_source(s: &Source) -> MatchSource {
    MatchSource {
        source_id: format!("{:016x}", s.id()),
        cluster: s.cluster.clone(),
        job: s.job.role_env_name(),
        instance: s.instance,
        process: s.process.clone(),
        stream: s.stream,
        host: s.host.clone(),
    }
}

/// `mode=count` and `mode=list`: matching lines per source, sent at the end
/// (count) or as soon as a source has one (list).
fn counts(
    sources: &[SourceBlocks],
    req: &SearchRequest,
    sink: &mut dyn SearchSink,
    summary: &mut SearchSummary,
) {
    let list = req.mode == Mode::List;
    let tasks = pipeline::tasks(sources);
    let mut per_source = vec![0u64; sources.len()];
    // Listing needs one match per source: once found, its other blocks
    // are skipped unread.
    let found: Vec<AtomicBool> = sources.iter().map(|_| AtomicBool::new(false)).collect();
    let mut progress = ProgressTicker::new(req);
    let outcome = pipeline::run(
        &tasks,
        req.deadline,
        &req.workers,
        |task| {
            if list && found[task.source].load(Ordering::Relaxed) {
                return Ok(None);
            }
            scan::count(&sources[task.source].blocks[task.block], req).map(Some)
        },
        |i, count| {
            let source = tasks[i].source;
            let count = match count {
                Ok(Some(c)) => c,
                Ok(None) => return true,
                Err(e) => {
                    storage_failed(summary, &e);
                    return false;
                }
            };
            note_read(
                summary,
                &sources[source].blocks[tasks[i].block],
                req.explain,
            );
            let had = per_source[source];
            per_source[source] += count;
            summary.matched += count;
            if list && had == 0 && count > 0 {
                found[source].store(true, Ordering::Relaxed);
                let event = SearchEvent::Source(match_source(&sources[source].source));
                if !(sink.send(event) && sink.flush()) {
                    return false;
                }
            }
            let through = tasks.get(i + 1).map_or(i64::MAX, |t| t.t_min);
            progress.tick(
                sink,
                (i + 1, tasks.len()),
                summary.matched,
                (tasks[0].t_min, through),
            )
        },
    );
    if outcome == pipeline::Outcome::Deadline {
        summary.truncated = true;
        summary.reason = Some(req.time_limit_reason());
    }
    if list {
        summary.matched = per_source.iter().filter(|c| **c > 0).count() as u64;
        return;
    }
    for (s, count) in sources.iter().zip(per_source) {
        if count > 0 {
            let event = SearchEvent::Count(SourceCount {
                source: match_source(&s.source),
                count,
            });
            if !sink.send(event) {
                return;
            }
        }
    }
}
