//! The blocks a search looks at: every block of the selected sources in
//! its time range, committed or in memory, in offset order per source,
//! each marked whether the index could rule it out ([`gather`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use cblogs_core::api::{BlockAt, SearchSummary};
use cblogs_core::line_event::SourceJson;
use cblogs_core::Source;

use crate::block::LineBlock;
use crate::index::{BlockRef, PartitionError, ReadCaches, SplitBlocks, TermNeed, TimeRange};
use crate::store::{open_together, ReadSnapshot, SnapshotSplit};

/// Where a block's lines are.
#[derive(Clone)]
pub enum BlockData {
    /// Committed: read (through the snapshot's caches) when needed. Only
    /// the split's blocks are held, not its index: a search keeps a
    /// split's index (and pins it in the disk cache) while it plans that
    /// split only.
    Stored {
        blocks: Arc<SplitBlocks>,
        block: BlockRef,
        caches: Arc<ReadCaches>,
    },
    Memory(Arc<LineBlock>),
}

impl BlockData {
    /// Reading it is a request to a remote store (the disk cache does
    /// not have it).
    pub fn needs_request(&self) -> bool {
        matches!(self, BlockData::Stored { blocks, block, .. } if blocks.needs_request(block))
    }

    pub fn read(&self) -> Result<Arc<LineBlock>, PartitionError> {
        match self {
            BlockData::Stored {
                blocks,
                block,
                caches,
            } => caches.block(blocks, block),
            BlockData::Memory(lines) => Ok(lines.clone()),
        }
    }
}

/// Counts block `block` as read in `summary`: its compressed bytes, and
/// with `explain`, where it is.
pub fn note_read(summary: &mut SearchSummary, block: &SourceBlock, explain: bool) {
    summary.blocks_read += 1;
    if let BlockData::Stored { blocks, block, .. } = &block.data {
        summary.read_bytes += block.data_len;
        if explain {
            summary.read_blocks.push(BlockAt {
                split: blocks.split_id().to_owned(),
                pos: block.data_pos,
                len: block.data_len,
            });
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
    /// [`Source::id`], which is a hash of a string made each time.
    pub id: u64,
    pub blocks: Vec<SourceBlock>,
    /// The number (within this list) of each block's first line.
    pub first_line: Vec<u64>,
    /// Its fields as its lines' events show them, made when the first
    /// line is: a needle search over thousands of sources needs few.
    json: OnceLock<SourceJson>,
}

impl SourceBlocks {
    pub fn json(&self) -> &SourceJson {
        self.json.get_or_init(|| SourceJson::new(&self.source))
    }
}

/// Splits on a remote store planned at once (their indexes downloaded).
const PLANNERS: usize = 8;

/// The blocks of one split for [`gather`], each with its source's id.
fn plan_split(
    snap: &ReadSnapshot,
    split: &SnapshotSplit,
    need: &TermNeed,
    wanted: &HashSet<u64>,
    range: TimeRange,
) -> Result<Vec<(u64, SourceBlock)>, PartitionError> {
    // The index is held (in the disk cache: downloaded if need be)
    // for this split's planning only.
    let part = split.open()?;
    let terms = &snap.caches.terms;
    let blocks = part
        .candidate_blocks(part.searcher(), need, wanted, range, terms)?
        .into_iter()
        .map(|sb| {
            let block = SourceBlock {
                data: BlockData::Stored {
                    blocks: part.split_blocks(),
                    block: sb.block,
                    caches: snap.caches.clone(),
                },
                t_min: sb.block.t_min,
                t_max: sb.block.t_max,
                off_start: sb.block.off_start,
                n_lines: sb.block.n_lines,
                candidate: sb.candidate,
            };
            (sb.block.source, block)
        })
        .collect();
    Ok(blocks)
}

/// Every block of the snapshot's sources in `range`, per source, each
/// marked whether `need` lets the index rule it out.
pub fn gather(
    snap: &ReadSnapshot,
    need: &TermNeed,
    range: TimeRange,
) -> Result<Vec<SourceBlocks>, PartitionError> {
    let wanted: HashSet<u64> = snap.sources.keys().copied().collect();
    // Partitions hold blocks by their first line's time.
    let splits: Vec<&SnapshotSplit> = snap
        .partitions
        .iter()
        .filter(|split| {
            !(range.until_ns.is_some_and(|u| split.start_ns >= u)
                || range.since_ns.is_some_and(|s| split.t_max < s))
        })
        .collect();
    let plan = |split: &SnapshotSplit| plan_split(snap, split, need, &wanted, range);
    let mut by_source: HashMap<u64, Vec<SourceBlock>> = HashMap::new();
    let mut keep = |blocks: Vec<(u64, SourceBlock)>| {
        for (source, b) in blocks {
            by_source.entry(source).or_default().push(b);
        }
    };
    if splits.iter().any(|s| s.is_remote()) {
        // A cold split's index is a download: those are made several at
        // once. The first error ends the planning.
        for run in open_together(&splits, PLANNERS) {
            let planned: Vec<_> = std::thread::scope(|scope| {
                let running: Vec<_> = run.iter().map(|s| scope.spawn(|| plan(s))).collect();
                running
                    .into_iter()
                    .map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                    .collect()
            });
            for blocks in planned {
                keep(blocks?);
            }
        }
    } else {
        for split in &splits {
            keep(plan(split)?);
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
                id,
                blocks,
                first_line,
                json: OnceLock::new(),
            })
        })
        .collect();
    out.sort_by_key(|s| s.id);
    Ok(out)
}
