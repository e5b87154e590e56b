//! Matching lines per time bucket, per stream (and per job): what the web
//! page draws above the results.
//!
//! Same selection and verification as a search, counted instead of sent.
//! Without a pattern it counts volume, and a block wholly inside one
//! bucket is counted from its line count alone, unread.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use cblogs_core::api::{HistogramResponse, HistogramSeries, SeriesLabels};
use cblogs_core::{Source, Stream};

use super::blocks::{gather, SourceBlock};
use super::pipeline::{self, Outcome};
use super::request::SearchRequest;
use super::scan;
use crate::index::{PartitionError, TimeRange};
use crate::store::ReadSnapshot;

pub struct HistogramRequest {
    pub search: SearchRequest,
    pub buckets: usize,
    /// Buckets of exactly this width from the range's start (their
    /// number then follows from the range), not `buckets` of them.
    pub step_ns: Option<i64>,
    pub by: SeriesBy,
}

/// What one series counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SeriesBy {
    /// Each stream (stdout, stderr) of all jobs.
    Stream,
    /// Each job's streams.
    Job,
    /// Each job's streams per host, instance and process ([`SeriesLabels`]).
    Labels,
}

/// Another node's counts of one source, in the same buckets.
pub struct MoreCounts {
    pub job: String,
    pub stream: Stream,
    pub labels: SeriesLabels,
    pub counts: Vec<u64>,
}

/// The buckets: `[start + i * step, start + (i + 1) * step)`.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    start: i64,
    step: i64,
    count: usize,
}

impl Buckets {
    /// `range` cut into `count` equal buckets (at least 1 ns, whole
    /// milliseconds when a bucket is longer than one).
    fn new(since: i64, until: i64, count: usize) -> Buckets {
        let span = (until - since).max(1);
        let mut step = (span + count as i64 - 1) / count as i64;
        if step > 1_000_000 {
            step = (step + 999_999) / 1_000_000 * 1_000_000;
        }
        Buckets {
            start: since,
            step: step.max(1),
            count,
        }
    }

    /// `[since, until)` cut into buckets of `step` (the last may end past `until`).
    fn with_step(since: i64, until: i64, step: i64) -> Buckets {
        let step = step.max(1);
        let span = (until - since).max(1);
        Buckets {
            start: since,
            step,
            count: usize::try_from((span + step - 1) / step).unwrap_or(usize::MAX),
        }
    }

    fn of(&self, t: i64) -> Option<usize> {
        let i = (t - self.start).div_euclid(self.step);
        usize::try_from(i).ok().filter(|i| *i < self.count)
    }
}

/// Counts of one block: (bucket, lines) pairs.
fn block_counts(
    block: &SourceBlock,
    req: &SearchRequest,
    buckets: Buckets,
) -> Result<Vec<(usize, u64)>, PartitionError> {
    let range = req.range();
    if req.selects_every_line() && range.contains(block.t_min) && range.contains(block.t_max) {
        if let (Some(a), Some(b)) = (buckets.of(block.t_min), buckets.of(block.t_max)) {
            if a == b {
                return Ok(vec![(a, block.n_lines)]);
            }
        }
    }
    let lines = block.data.read()?;
    let mut counts: BTreeMap<usize, u64> = BTreeMap::new();
    for i in scan::selected(&lines, req) {
        if let Some(b) = buckets.of(lines.line(i).time_ns) {
            *counts.entry(b).or_default() += 1;
        }
    }
    Ok(counts.into_iter().collect())
}

/// Matching lines per bucket, per source, and the buckets.
pub struct SourceCounts {
    /// The range the buckets were cut from (what another node's count of
    /// the same buckets is asked with).
    since_ns: i64,
    until_ns: i64,
    pub start_ns: i64,
    pub step_ns: i64,
    pub buckets: usize,
    /// Each selected source with blocks in range, and its counts.
    pub sources: Vec<(Arc<Source>, Vec<u64>)>,
    pub truncated: bool,
}

/// Counts matching lines per bucket and source; in the buckets of
/// `[since, until)` when `fixed` (another node's count's, to be added).
pub fn count_by_source(
    snap: &ReadSnapshot,
    hreq: &HistogramRequest,
    fixed: Option<(i64, i64)>,
) -> Result<SourceCounts, PartitionError> {
    let req = &hreq.search;
    let range = fixed.map_or_else(
        || req.range(),
        |(since, until)| TimeRange {
            since_ns: Some(since),
            until_ns: Some(until),
        },
    );
    let sources = gather(snap, &req.term_need(), range)?;
    let until = range
        .until_ns
        .unwrap_or_else(|| cblogs_core::time::now_ns() + 1);
    let since = range.since_ns.unwrap_or_else(|| {
        sources
            .iter()
            .flat_map(|s| s.blocks.iter().map(|b| b.t_min))
            .min()
            .unwrap_or(until - 3_600_000_000_000)
    });
    let buckets = match hreq.step_ns {
        Some(step) => Buckets::with_step(since, until, step),
        None => Buckets::new(since, until, hreq.buckets.max(1)),
    };
    let full = TimeRange {
        since_ns: Some(since),
        until_ns: Some(until),
    };
    let mut counts = vec![vec![0u64; buckets.count]; sources.len()];
    let tasks = pipeline::tasks(&sources);
    let mut failed = None;
    let outcome = pipeline::run(
        &tasks,
        req.deadline,
        &req.workers,
        |task| {
            let block = &sources[task.source].blocks[task.block];
            if !full.overlaps(block.t_min, block.t_max) {
                return Ok(Vec::new());
            }
            block_counts(block, req, buckets)
        },
        |i, result| match result {
            Ok(c) => {
                for (b, n) in c {
                    counts[tasks[i].source][b] += n;
                }
                true
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        },
    );
    if let Some(e) = failed {
        return Err(e);
    }
    Ok(SourceCounts {
        since_ns: since,
        until_ns: until,
        start_ns: buckets.start,
        step_ns: buckets.step,
        buckets: buckets.count,
        sources: sources
            .iter()
            .zip(counts)
            .map(|(s, c)| (s.source.clone(), c))
            .collect(),
        truncated: outcome == Outcome::Deadline,
    })
}

impl SourceCounts {
    /// `[since, until)` its buckets were cut from: counted with the
    /// same range and number, another node's buckets are the same.
    pub fn range(&self) -> (i64, i64) {
        (self.since_ns, self.until_ns)
    }

    /// The histogram: one series per what `by` says, in a stable order;
    /// `more` (other nodes' counts of the same buckets) added in.
    pub fn series(
        self,
        by: SeriesBy,
        more: impl IntoIterator<Item = MoreCounts>,
    ) -> (Vec<HistogramSeries>, u64) {
        type Key = (Option<String>, Stream, Option<SeriesLabels>);
        let mut series: BTreeMap<Key, Vec<u64>> = BTreeMap::new();
        let mut total = 0;
        let ours = self.sources.into_iter().map(|(s, counts)| MoreCounts {
            job: s.job_key().to_string(),
            stream: s.stream,
            // Copies of host and process for every source, only if kept.
            labels: if by == SeriesBy::Labels {
                SeriesLabels::of(&s)
            } else {
                SeriesLabels::default()
            },
            counts,
        });
        for more in ours.chain(more) {
            let key = (
                (by != SeriesBy::Stream).then_some(more.job),
                more.stream,
                (by == SeriesBy::Labels).then_some(more.labels),
            );
            let sum = series.entry(key).or_insert_with(|| vec![0; self.buckets]);
            for (b, n) in more.counts.into_iter().enumerate().take(self.buckets) {
                sum[b] += n;
                total += n;
            }
        }
        let series = series
            .into_iter()
            .map(|((job, stream, labels), counts)| HistogramSeries {
                job,
                stream,
                labels,
                counts,
            })
            .collect();
        (series, total)
    }
}

pub fn run(
    snap: &ReadSnapshot,
    hreq: &HistogramRequest,
) -> Result<HistogramResponse, PartitionError> {
    let started = Instant::now();
    let counts = count_by_source(snap, hreq, None)?;
    Ok(counts.respond(hreq, Vec::new(), false, started))
}

impl SourceCounts {
    /// The answer: these counts and `more` (other nodes' counts of the
    /// same buckets, `more_truncated` if any was cut short) as series.
    pub fn respond(
        self,
        hreq: &HistogramRequest,
        more: Vec<MoreCounts>,
        more_truncated: bool,
        started: Instant,
    ) -> HistogramResponse {
        let (start_ns, step_ns, buckets) = (self.start_ns, self.step_ns, self.buckets);
        let truncated = self.truncated || more_truncated;
        let (series, total) = self.series(hreq.by, more);
        HistogramResponse {
            start_ns,
            step_ns,
            buckets,
            series,
            total,
            truncated,
            reason: truncated.then(|| hreq.search.time_limit_reason()),
            took_ms: started.elapsed().as_millis() as u64,
            partial: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_the_range() {
        let b = Buckets::new(0, 60_000_000_000, 60);
        assert_eq!(b.step, 1_000_000_000);
        assert_eq!(b.of(0), Some(0));
        assert_eq!(b.of(59_999_999_999), Some(59));
        assert_eq!(b.of(60_000_000_000), None);
        assert_eq!(b.of(-1), None);
        let tiny = Buckets::new(10, 13, 10);
        assert_eq!((tiny.step, tiny.of(12)), (1, Some(2)));
    }
}
