//! Reading one candidate block and verifying its lines with the pattern;
//! with context, also the lines around each match, from the neighbouring
//! blocks of the same source when a match sits near an edge.

use std::collections::BTreeMap;
use std::sync::Arc;

use cblogs_core::api::{SearchEvent, SearchLine};
use cblogs_core::LineView;

use super::blocks::{SourceBlock, SourceBlocks};
use super::request::SearchRequest;
use crate::block::LineBlock;
use crate::index::PartitionError;

/// A line to send: a match, or context around one.
pub struct Hit {
    /// The line's number within its source's block list: adjacent lines
    /// have adjacent numbers.
    pub ordinal: u64,
    pub context: bool,
    pub time_ns: i64,
    pub offset: u64,
    /// Its `line` event, serialized here: on the worker that found it,
    /// in parallel, rather than on the one thread that merges.
    pub event: Vec<u8>,
}

/// Lines of `block` in the request's time range that it selects.
pub fn count(block: &SourceBlock, req: &SearchRequest) -> Result<u64, PartitionError> {
    let range = req.range();
    // A volume count of a block wholly in range needs no reading.
    if req.pattern.is_none()
        && !req.invert
        && range.contains(block.t_min)
        && range.contains(block.t_max)
    {
        return Ok(block.n_lines);
    }
    let lines = block.data.read()?;
    Ok(selected(&lines, req).len() as u64)
}

/// The lines of `lines` in the request's time range that it selects.
pub fn selected(lines: &LineBlock, req: &SearchRequest) -> Vec<usize> {
    let range = req.range();
    let wanted = |i: &usize| {
        let l = lines.line(*i);
        range.contains(l.time_ns) && req.selects(l.bytes)
    };
    match &req.prefilter {
        Some(p) => p
            .candidate_lines(lines)
            .into_iter()
            .filter(wanted)
            .collect(),
        None => (0..lines.len()).filter(wanted).collect(),
    }
}

/// The matches of block `b` of `s`, with their context lines, by ordinal.
pub fn hits(s: &SourceBlocks, b: usize, req: &SearchRequest) -> Result<Vec<Hit>, PartitionError> {
    let range = req.range();
    let lines = s.blocks[b].data.read()?;
    let base = s.first_line[b];
    let matches = selected(&lines, req);
    if matches.is_empty() {
        return Ok(Vec::new());
    }
    // Every line to send, by ordinal, with the block that holds it.
    let mut wanted: BTreeMap<u64, (Arc<LineBlock>, usize)> = BTreeMap::new();
    let n = lines.len();
    for &m in &matches {
        let first = m.saturating_sub(req.before);
        let last = (m + req.after).min(n - 1);
        for i in first..=last {
            wanted.insert(base + i as u64, (lines.clone(), i));
        }
    }
    if req.before > 0 && matches[0] < req.before {
        neighbours(s, b, req.before - matches[0], Direction::Back, &mut wanted)?;
    }
    let last = matches[matches.len() - 1];
    if req.after > 0 && last + req.after >= n {
        neighbours(
            s,
            b,
            last + req.after + 1 - n,
            Direction::Forward,
            &mut wanted,
        )?;
    }
    Ok(wanted
        .into_iter()
        .filter_map(|(ordinal, (block, i))| {
            let l = block.line(i);
            if !range.contains(l.time_ns) {
                return None;
            }
            let is_match = req.selects(l.bytes);
            let line = LineView::new(&s.source, l.offset, l.time_ns, l.flags, l.bytes);
            let event = SearchEvent::Line(SearchLine {
                // Highlights index the text as shown (invalid UTF-8 replaced).
                matches: if is_match {
                    req.spans(line.text.as_bytes())
                } else {
                    Vec::new()
                },
                line,
                context: !is_match,
            });
            // Room for the text (escaped) and the fields around it, so
            // the buffer is not grown line by line.
            let mut json = Vec::with_capacity(l.bytes.len() * 5 / 4 + 512);
            serde_json::to_writer(&mut json, &event).ok()?;
            Some(Hit {
                ordinal,
                context: !is_match,
                time_ns: l.time_ns,
                offset: l.offset,
                event: json,
            })
        })
        .collect())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Back,
    Forward,
}

/// Adds the `count` lines just before (or after) block `b` of `s`, from as
/// many neighbouring blocks as it takes.
fn neighbours(
    s: &SourceBlocks,
    b: usize,
    mut count: usize,
    dir: Direction,
    wanted: &mut BTreeMap<u64, (Arc<LineBlock>, usize)>,
) -> Result<(), PartitionError> {
    let mut at = b;
    while count > 0 {
        at = match dir {
            Direction::Back if at > 0 => at - 1,
            Direction::Forward if at + 1 < s.blocks.len() => at + 1,
            _ => return Ok(()),
        };
        let lines = s.blocks[at].data.read()?;
        let n = lines.len();
        let take = count.min(n);
        let indexes = match dir {
            Direction::Back => n - take..n,
            Direction::Forward => 0..take,
        };
        for i in indexes {
            wanted.insert(s.first_line[at] + i as u64, (lines.clone(), i));
        }
        count -= take;
    }
    Ok(())
}
