//! The lines around one line of one source: what the web page shows when a
//! result is clicked.

use std::collections::HashMap;
use std::sync::Arc;

use cblogs_core::LineView;

use super::blocks::gather;
use crate::block::LineBlock;
use crate::index::{PartitionError, TermNeed, TimeRange};
use crate::store::ReadSnapshot;

/// Up to `before` lines before the line at `offset`, the line, and up to
/// `after` lines after it, of the snapshot's source (the snapshot holds
/// one). `None` when the source holds no line at that offset.
pub fn lines_around(
    snap: &ReadSnapshot,
    offset: u64,
    before: usize,
    after: usize,
) -> Result<Option<Vec<LineView>>, PartitionError> {
    let sources = gather(snap, &TermNeed::Any, TimeRange::default())?;
    let Some(s) = sources.first() else {
        return Ok(None);
    };
    let mut read: HashMap<usize, Arc<LineBlock>> = HashMap::new();
    let mut block = |b: usize| -> Result<Arc<LineBlock>, PartitionError> {
        if let Some(lines) = read.get(&b) {
            return Ok(lines.clone());
        }
        let lines = s.blocks[b].data.read()?;
        read.insert(b, lines.clone());
        Ok(lines)
    };
    // The block holding it: the last one starting at or before it.
    let Some(b) = s
        .blocks
        .partition_point(|bl| bl.off_start <= offset)
        .checked_sub(1)
    else {
        return Ok(None);
    };
    let Some(i) = block(b)?.lines().position(|l| l.offset == offset) else {
        return Ok(None);
    };
    // Positions (block, line) from `before` lines back to `after` ahead.
    let mut positions = vec![(b, i)];
    let (mut pb, mut pi) = (b, i);
    while positions.len() <= before {
        if pi == 0 {
            if pb == 0 {
                break;
            }
            pb -= 1;
            pi = block(pb)?.len();
            continue;
        }
        pi -= 1;
        positions.insert(0, (pb, pi));
    }
    let (mut nb, mut ni) = (b, i);
    let wanted = positions.len() + after;
    while positions.len() < wanted {
        if ni + 1 >= block(nb)?.len() {
            if nb + 1 >= s.blocks.len() {
                break;
            }
            nb += 1;
            ni = 0;
            if block(nb)?.is_empty() {
                continue;
            }
        } else {
            ni += 1;
        }
        positions.push((nb, ni));
    }
    let mut out = Vec::with_capacity(positions.len());
    for (b, i) in positions {
        let lines = block(b)?;
        let l = lines.line(i);
        out.push(LineView::new(
            &s.source, l.offset, l.time_ns, l.flags, l.bytes,
        ));
    }
    Ok(Some(out))
}
