//! The blocks a search looks at: every block of the selected sources in
//! its time range, committed or in memory, in offset order per source,
//! each marked whether the index could rule it out ([`gather`]).

use std::collections::HashMap;
use std::sync::Arc;

use cblogs_core::Source;

use crate::block::LineBlock;
use crate::index::{BlockRef, PartitionError, ReadCaches, SplitBlocks, TermNeed, TimeRange};
use crate::store::ReadSnapshot;

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
    for split in &snap.partitions {
        // Partitions hold blocks by their first line's time.
        if range.until_ns.is_some_and(|u| split.start_ns >= u)
            || range.since_ns.is_some_and(|s| split.t_max < s)
        {
            continue;
        }
        // The index is held (in the disk cache: downloaded if need be)
        // for this split's planning only.
        let part = split.open()?;
        let terms = &snap.caches.terms;
        for sb in part.candidate_blocks(part.searcher(), need, &wanted, range, terms)? {
            by_source
                .entry(sb.block.source)
                .or_default()
                .push(SourceBlock {
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
