//! Matching lines per time bucket, per stream (and per job): what the web
//! page draws above the results.
//!
//! Same selection and verification as a search, counted instead of sent.
//! Without a pattern it counts volume, and a block wholly inside one
//! bucket is counted from its line count alone, unread.

use std::collections::BTreeMap;
use std::time::Instant;

use cblogs_core::api::{HistogramResponse, HistogramSeries};
use cblogs_core::Stream;

use super::blocks::{gather, SourceBlock};
use super::pipeline::{self, Outcome};
use super::request::SearchRequest;
use super::scan;
use crate::index::{PartitionError, TimeRange};
use crate::store::ReadSnapshot;

pub struct HistogramRequest {
    pub search: SearchRequest,
    pub buckets: usize,
    /// One series per job and stream, not just per stream.
    pub by_job: bool,
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
    if req.pattern.is_none()
        && !req.invert
        && range.contains(block.t_min)
        && range.contains(block.t_max)
    {
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

pub fn run(
    snap: &ReadSnapshot,
    hreq: &HistogramRequest,
) -> Result<HistogramResponse, PartitionError> {
    let started = Instant::now();
    let req = &hreq.search;
    let sources = gather(snap, &req.term_need(), req.range())?;
    let until = req
        .filter
        .until_ns
        .unwrap_or_else(|| cblogs_core::time::now_ns() + 1);
    let since = req.filter.since_ns.unwrap_or_else(|| {
        sources
            .iter()
            .flat_map(|s| s.blocks.iter().map(|b| b.t_min))
            .min()
            .unwrap_or(until - 3_600_000_000_000)
    });
    let buckets = Buckets::new(since, until, hreq.buckets.max(1));
    let full = TimeRange {
        since_ns: Some(since),
        until_ns: Some(until),
    };
    // Series in a stable order: by job (when asked), then stream.
    let mut series_of = BTreeMap::new();
    let mut source_series = Vec::with_capacity(sources.len());
    for s in &sources {
        let job = hreq.by_job.then(|| s.source.job_key().to_string());
        let key = (job, s.source.stream);
        let next = series_of.len();
        source_series.push(*series_of.entry(key).or_insert(next));
    }
    let mut counts = vec![vec![0u64; buckets.count]; series_of.len()];
    let mut total = 0u64;
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
                let series = source_series[tasks[i].source];
                for (b, n) in c {
                    counts[series][b] += n;
                    total += n;
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
    let mut series: Vec<(usize, (Option<String>, Stream))> =
        series_of.into_iter().map(|(k, i)| (i, k)).collect();
    series.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(HistogramResponse {
        start_ns: buckets.start,
        step_ns: buckets.step,
        buckets: buckets.count,
        series: series
            .into_iter()
            .map(|(i, (job, stream))| HistogramSeries {
                job,
                stream,
                counts: std::mem::take(&mut counts[i]),
            })
            .collect(),
        total,
        truncated: outcome == Outcome::Deadline,
        reason: (outcome == Outcome::Deadline).then(|| req.time_limit_reason()),
        took_ms: started.elapsed().as_millis() as u64,
    })
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
