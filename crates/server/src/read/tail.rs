//! `tail`: the last N lines of the selected sources in time order, from
//! memory first and then committed blocks newest first, stopping as soon
//! as no older block can hold one of the newest N.

use std::sync::Arc;

use cblogs_core::{LineFlags, LineView, Source};
use tantivy::Searcher;

use super::selection::QueryError;
use crate::block::LineBlock;
use crate::index::{BlockRef, Partition, PartitionError};
use crate::store::{open_together, ReadSnapshot};

/// One line with its source, owned.
#[derive(Debug, Clone)]
pub struct OwnedLine {
    pub source: Arc<Source>,
    pub offset: u64,
    pub time_ns: i64,
    pub flags: LineFlags,
    pub bytes: Vec<u8>,
}

impl OwnedLine {
    /// Time order; ties broken by source and offset so the order is total and stable.
    fn key(&self) -> (i64, u64, u64) {
        (self.time_ns, self.source.id(), self.offset)
    }

    pub fn view(&self) -> LineView {
        LineView::new(
            &self.source,
            self.offset,
            self.time_ns,
            self.flags,
            &self.bytes,
        )
    }
}

/// Keeps the newest `n` lines seen so far, and knows how old a line must
/// be to no longer matter.
struct Newest {
    n: usize,
    since_ns: Option<i64>,
    lines: Vec<OwnedLine>,
    /// Once `n` lines are held: the oldest time among them. Blocks whose
    /// newest line is older cannot contribute.
    threshold: Option<i64>,
    /// Lines that qualified were left out because there were more than `n`.
    left_out: bool,
}

impl Newest {
    fn push_block(&mut self, source: &Arc<Source>, block: &LineBlock) {
        for l in block.lines() {
            if self.since_ns.is_some_and(|s| l.time_ns < s) {
                continue;
            }
            self.lines.push(OwnedLine {
                source: source.clone(),
                offset: l.offset,
                time_ns: l.time_ns,
                flags: l.flags,
                bytes: l.bytes.to_vec(),
            });
        }
        // Pruning is linear, so do it only when the held lines double:
        // memory stays within 2n lines and the work stays linear overall.
        if self.lines.len() >= 2 * self.n
            || (self.threshold.is_none() && self.lines.len() >= self.n)
        {
            self.prune();
        }
    }

    /// Drops all but the newest `n` (in linear time) and updates the threshold.
    fn prune(&mut self) {
        if self.lines.len() > self.n {
            self.left_out = true;
            let cut = self.lines.len() - self.n;
            self.lines.select_nth_unstable_by_key(cut, OwnedLine::key);
            self.lines.drain(..cut);
        }
        if self.lines.len() >= self.n {
            self.threshold = self.lines.iter().map(|l| l.time_ns).min();
        }
    }

    fn finish(mut self) -> LastLines {
        self.prune();
        self.lines.sort_unstable_by_key(OwnedLine::key);
        LastLines {
            lines: self.lines,
            truncated: self.left_out,
        }
    }
}

/// The answer of [`last_lines`].
pub struct LastLines {
    /// Oldest first.
    pub lines: Vec<OwnedLine>,
    /// With `since_ns`: lines at or after it were left out (the oldest ones)
    /// because more than `n` qualified. A follower resuming after an outage
    /// must say so rather than skip them in silence.
    pub truncated: bool,
}

/// The last `n` lines of the snapshot's sources (at or after `since_ns`),
/// oldest first. Memory first, then committed blocks newest first, stopping
/// as soon as no older block can hold one of the newest `n`.
pub fn last_lines(
    snap: &ReadSnapshot,
    n: usize,
    since_ns: Option<i64>,
) -> Result<LastLines, QueryError> {
    if n == 0 {
        return Ok(LastLines {
            lines: Vec::new(),
            truncated: false,
        });
    }
    let mut newest = Newest {
        n,
        since_ns,
        lines: Vec::new(),
        threshold: None,
        left_out: false,
    };
    for (source, block) in &snap.memory {
        newest.push_block(source, block);
    }
    let ids: Vec<u64> = snap.sources.keys().copied().collect();
    read_overlapping_ahead(snap, &ids, since_ns, newest.threshold, n);
    for split in &snap.partitions {
        let t_max = split.t_max;
        if since_ns.is_some_and(|s| t_max < s) {
            continue;
        }
        // Without a lower bound, a partition wholly older than the newest n
        // is skipped unread. With one, it is looked at (fast fields only), so
        // that `truncated` is exact: the first block in it says so and stops.
        if since_ns.is_none() && newest.threshold.is_some_and(|t| t_max < t) {
            continue;
        }
        // The index is held (in the disk cache: downloaded if need be)
        // while this split is read.
        let part = split.open()?;
        let blocks = newest_first(snap, &part, part.searcher(), &ids, since_ns)?;
        // From a remote store, the next blocks that may still hold one of
        // the newest n are fetched together (one request each, at once);
        // the rest is read one at a time as before.
        let wave = if part.blocks_are_remote() { WAVE } else { 1 };
        let mut next = 0;
        'blocks: while next < blocks.len() {
            let ahead: Vec<&BlockRef> = blocks[next..]
                .iter()
                .take(wave)
                .take_while(|b| newest.threshold.is_none_or(|t| b.t_max >= t))
                .collect();
            let read = read_together(snap, &part, &ahead);
            next += ahead.len().max(1);
            for (b, block) in ahead.iter().zip(read) {
                if newest.threshold.is_some_and(|t| b.t_max < t) {
                    // This block holds a qualifying line (its newest one)
                    // that is older than all n kept.
                    newest.left_out = true;
                    break 'blocks;
                }
                if let Some(source) = snap.sources.get(&b.source) {
                    newest.push_block(source, &*block?);
                }
            }
            if ahead.is_empty() {
                newest.left_out = true;
                break;
            }
        }
    }
    Ok(newest.finish())
}

/// The blocks of `part` that hold lines of the snapshot's sources (at or
/// after `since_ns`), newest first.
fn newest_first(
    snap: &ReadSnapshot,
    part: &Partition,
    searcher: &Searcher,
    ids: &[u64],
    since_ns: Option<i64>,
) -> Result<Vec<BlockRef>, PartitionError> {
    let mut blocks = part.blocks(searcher, Some(ids), since_ns)?;
    blocks.retain(|b| snap.sources.contains_key(&b.source));
    blocks.sort_unstable_by_key(|b| std::cmp::Reverse(b.t_max));
    Ok(blocks)
}

/// Splits `tail -n` opens at once.
const AHEAD: usize = 8;

/// Opens together the remote splits that overlap the newest one in time
/// (their indexes downloaded side by side) and reads the newest blocks of
/// each into the block cache, before they are read one after another:
/// splits built side by side hold lines of the same minutes, and the
/// newest n lines are likely spread over all of them. A split that does
/// not overlap, or is older than the newest n lines found in memory
/// (`threshold`), is opened only if the tail gets to it. Failures are
/// left for the read to meet and report.
fn read_overlapping_ahead(
    snap: &ReadSnapshot,
    ids: &[u64],
    since_ns: Option<i64>,
    threshold: Option<i64>,
    n: usize,
) {
    let mut splits = snap.partitions.iter().filter(|s| {
        since_ns.is_none_or(|since| s.t_max >= since) && threshold.is_none_or(|t| s.t_max >= t)
    });
    let Some(from) = splits.next().and_then(|s| s.is_remote().then_some(s)) else {
        return;
    };
    let Some(t_min) = from.t_min() else {
        return;
    };
    let overlapping: Vec<_> = std::iter::once(from)
        .chain(splits.filter(|s| s.is_remote() && s.t_max >= t_min))
        .collect();
    let Some(overlapping) = open_together(&overlapping, AHEAD).into_iter().next() else {
        return;
    };
    if overlapping.len() < 2 {
        return;
    }
    std::thread::scope(|scope| {
        for split in overlapping {
            scope.spawn(move || {
                let Ok(part) = split.open() else {
                    return;
                };
                if let Ok(blocks) = newest_first(snap, &part, part.searcher(), ids, since_ns) {
                    let first: Vec<&BlockRef> = blocks.iter().take(WAVE.min(n)).collect();
                    drop(read_together(snap, &part, &first));
                }
            });
        }
    });
}

/// Blocks read at once from a remote store by `tail -n`.
const WAVE: usize = 16;

/// Reads `blocks` of `part` through the snapshot's block cache, each on a
/// thread of its own when there are several (each is a request to the
/// store).
fn read_together(
    snap: &ReadSnapshot,
    part: &Partition,
    blocks: &[&BlockRef],
) -> Vec<Result<Arc<LineBlock>, PartitionError>> {
    let file = part.split_blocks();
    let read = |b: &BlockRef| snap.caches.block(&file, b);
    if blocks.len() <= 1 {
        return blocks.iter().map(|b| read(b)).collect();
    }
    std::thread::scope(|scope| {
        let reads: Vec<_> = blocks.iter().map(|b| scope.spawn(|| read(b))).collect();
        reads
            .into_iter()
            .map(|r| {
                r.join().unwrap_or_else(|_| {
                    Err(PartitionError::Io {
                        dir: part.dir().to_owned(),
                        source: std::io::Error::other("a block reader panicked"),
                    })
                })
            })
            .collect()
    })
}
