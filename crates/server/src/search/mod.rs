//! Search: grep over the selected sources, narrowed by the index.
//!
//! A search takes a [`ReadSnapshot`] (so each line is seen once, in memory
//! or in the index), lists the selected sources' blocks in the time range
//! and asks the index which of them may hold a match ([`plan`] turns the
//! pattern into the index's `TermNeed`; `Partition::candidate_blocks`
//! evaluates it). The candidate blocks are read and every line verified
//! with the real regex on every core ([`pipeline`]), in the order of their
//! first line's time; the results are merged by time ([`merge`]) and sent as
//! they become final: a line is sent once no block still to be read can
//! hold an earlier one. Memory holds the blocks in flight and the lines
//! waiting for that moment, whatever the size of the answer.
//!
//! ```text
//! plan.rs       pattern → literals every match contains (Need) → index terms (TermNeed)
//! pipeline.rs   candidate blocks read and verified on every core, in first-line-time order
//! scan.rs       one block: prefilter, regex, context from neighbouring blocks
//! prefilter.rs  Aho-Corasick over a block's text for the regex's prefix literals
//! merge.rs      lines mode: a heap by time; what is final is sent; limit and cursor
//! histogram.rs  matching lines per bucket and stream (and job)
//! around.rs     the lines around one line (the page's context view)
//! ```
//!
//! Why it is exact: the index only rules blocks out, and every step of the
//! plan only widens (a literal split by an unknown part gives two needs,
//! an unknown class ends a literal, an alternation with an unknown branch
//! needs nothing); every line of a block read is checked with the real
//! regex. `crates/server/tests/index_narrowing.rs` checks on a real
//! partition that no block holding a match is ruled out; `tests/search.rs`
//! compares `cblogs grep` with `rg` over the same files.

mod around;
pub mod histogram;
mod merge;
mod pipeline;
pub mod plan;
mod prefilter;
mod scan;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::api::{MatchSource, SearchEvent, SearchSummary, SourceCount};
use cblogs_core::pattern::Pattern;
use cblogs_core::Source;

use crate::block::LineBlock;
use crate::index::{BlockRef, Partition, PartitionError, ReadCaches, TermNeed, TimeRange};
use crate::read::LineFilter;
use crate::store::ReadSnapshot;
pub use around::lines_around;
use plan::Need;
pub use prefilter::Prefilter;

/// What a search produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Matching lines (and context).
    Lines,
    /// Matching lines per source.
    Count,
    /// Sources with a matching line.
    List,
}

/// One search, parsed and checked.
pub struct SearchRequest {
    /// `None`: every line matches (a histogram of volume).
    pub pattern: Option<Pattern>,
    /// Finds a block's candidate lines without the regex, when it can.
    pub prefilter: Option<Prefilter>,
    pub invert: bool,
    pub filter: LineFilter,
    /// Matching lines to send at most (lines mode); `None` for all.
    pub limit: Option<usize>,
    pub before: usize,
    pub after: usize,
    /// Matches at or before this (time, source id, offset) were shown by
    /// an earlier page.
    pub cursor: Option<Cursor>,
    pub mode: Mode,
    /// When to stop and answer with what was found.
    pub deadline: Instant,
    /// The configured time limit, to name it when it is reached.
    pub time_limit: Duration,
}

impl SearchRequest {
    fn range(&self) -> TimeRange {
        TimeRange {
            since_ns: self.filter.since_ns,
            until_ns: self.filter.until_ns,
        }
    }

    /// The index terms a block must hold to be read.
    fn term_need(&self) -> TermNeed {
        match &self.pattern {
            // An inverted search wants lines *without* the literals: the
            // index cannot tell which blocks have none.
            Some(p) if !self.invert => match p.options().hir() {
                Ok(hir) => Need::of(&hir).terms(),
                Err(_) => TermNeed::Any,
            },
            _ => TermNeed::Any,
        }
    }

    /// Whether a line is selected.
    fn selects(&self, line: &[u8]) -> bool {
        self.pattern.as_ref().is_none_or(|p| p.is_match(line)) != self.invert
    }

    fn spans(&self, line: &[u8]) -> Vec<[usize; 2]> {
        match &self.pattern {
            Some(p) if !self.invert => p.spans(line),
            _ => Vec::new(),
        }
    }

    fn time_limit_reason(&self) -> String {
        format!(
            "the search reached its time limit (search.max_query_secs = {} s); narrow it with a job, --since/--until or a more specific pattern",
            self.time_limit.as_secs()
        )
    }
}

/// A place in a search's order: (time, source id, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub time_ns: i64,
    pub source: u64,
    pub offset: u64,
}

impl Cursor {
    /// `TIME.SOURCE.OFFSET` (source in hex), as summaries give it.
    pub fn parse(s: &str) -> Option<Cursor> {
        let mut parts = s.split('.');
        let c = Cursor {
            time_ns: parts.next()?.parse().ok()?,
            source: u64::from_str_radix(parts.next()?, 16).ok()?,
            offset: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(c)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:016x}.{}", self.time_ns, self.source, self.offset)
    }
}

/// Where search events go. `false` from any call: the client is gone, stop.
pub trait SearchSink {
    fn send(&mut self, event: SearchEvent) -> bool;
    /// An event already serialized as JSON (lines are, by the workers).
    fn send_serialized(&mut self, json: &[u8]) -> bool;
    /// Everything sent so far should reach the client now.
    fn flush(&mut self) -> bool;
}

/// Where a block's lines are.
#[derive(Clone)]
pub enum BlockData {
    /// Committed: read (through the snapshot's caches) when needed.
    Stored {
        part: Arc<Partition>,
        block: BlockRef,
        caches: Arc<ReadCaches>,
    },
    Memory(Arc<LineBlock>),
}

impl BlockData {
    pub fn read(&self) -> Result<Arc<LineBlock>, PartitionError> {
        match self {
            BlockData::Stored {
                part,
                block,
                caches,
            } => caches.block(part, block),
            BlockData::Memory(lines) => Ok(lines.clone()),
        }
    }
}

/// One block of a selected source.
#[derive(Clone)]
pub struct SourceBlock {
    pub data: BlockData,
    pub t_min: i64,
    pub t_max: i64,
    pub off_start: u64,
    pub n_lines: u64,
    /// The index could not rule it out: it must be read.
    pub candidate: bool,
}

/// A selected source and its blocks in the time range, in offset order.
pub struct SourceBlocks {
    pub source: Arc<Source>,
    pub blocks: Vec<SourceBlock>,
    /// The number (within this list) of each block's first line.
    pub first_line: Vec<u64>,
}

/// Every block of the snapshot's sources in `range`, per source, each
/// marked whether `need` lets the index rule it out.
pub fn gather(
    snap: &ReadSnapshot,
    need: &TermNeed,
    range: TimeRange,
) -> Result<Vec<SourceBlocks>, PartitionError> {
    let wanted = snap.sources.keys().copied().collect();
    let mut by_source: HashMap<u64, Vec<SourceBlock>> = HashMap::new();
    for (part, searcher, t_max) in &snap.partitions {
        // Partitions hold blocks by their first line's time.
        if range.until_ns.is_some_and(|u| part.start_ns >= u)
            || range.since_ns.is_some_and(|s| *t_max < s)
        {
            continue;
        }
        let terms = &snap.caches.terms;
        for sb in part.candidate_blocks(searcher, need, &wanted, range, terms)? {
            by_source
                .entry(sb.block.source)
                .or_default()
                .push(SourceBlock {
                    data: BlockData::Stored {
                        part: part.clone(),
                        block: sb.block,
                        caches: snap.caches.clone(),
                    },
                    t_min: sb.block.t_min,
                    t_max: sb.block.t_max,
                    off_start: sb.block.off_start,
                    n_lines: sb.block.n_lines,
                    candidate: sb.candidate,
                });
        }
    }
    for (source, lines) in &snap.memory {
        let Some((t_min, t_max)) = lines.time_range() else {
            continue;
        };
        if !range.overlaps(t_min, t_max) {
            continue;
        }
        by_source.entry(source.id()).or_default().push(SourceBlock {
            data: BlockData::Memory(lines.clone()),
            t_min,
            t_max,
            off_start: lines.first_offset().unwrap_or_default(),
            n_lines: lines.len() as u64,
            candidate: true,
        });
    }
    let mut out: Vec<SourceBlocks> = by_source
        .into_iter()
        .filter_map(|(id, mut blocks)| {
            let source = snap.sources.get(&id)?.clone();
            blocks.sort_by_key(|b| b.off_start);
            let first_line = blocks
                .iter()
                .scan(0u64, |n, b| {
                    let first = *n;
                    *n += b.n_lines;
                    Some(first)
                })
                .collect();
            Some(SourceBlocks {
                source,
                blocks,
                first_line,
            })
        })
        .collect();
    out.sort_by_key(|s| s.source.id());
    Ok(out)
}

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

fn storage_failed(summary: &mut SearchSummary, e: &PartitionError) {
    tracing::error!(error = %e, "search: cannot read the store");
    summary.truncated = true;
    summary.reason = Some(format!("storage error: {e}"));
}

fn match_source(s: &Source) -> MatchSource {
    MatchSource {
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
    let outcome = pipeline::run(
        &tasks,
        req.deadline,
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
            summary.blocks_read += 1;
            let had = per_source[source];
            per_source[source] += count;
            summary.matched += count;
            if list && had == 0 && count > 0 {
                found[source].store(true, Ordering::Relaxed);
                let event = SearchEvent::Source(match_source(&sources[source].source));
                return sink.send(event) && sink.flush();
            }
            true
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
