//! Reading one candidate block and verifying its lines with the pattern;
//! with context, also the lines around each match, from the neighbouring
//! blocks of the same source when a match sits near an edge (with
//! `events`, the whole event instead: `events.rs`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use cblogs_core::line_event::write_search_line;

use super::blocks::{SourceBlock, SourceBlocks};
use super::request::SearchRequest;
use crate::block::LineBlock;
use crate::index::PartitionError;

/// A line to send: a match, or context around one.
pub struct Hit {
    /// With `events`: the event it is in.
    pub group: Option<EventOf>,
    /// The line's number within its source's block list: adjacent lines
    /// have adjacent numbers.
    pub ordinal: u64,
    pub context: bool,
    pub time_ns: i64,
    pub offset: u64,
    /// Its `line` event: these bytes of [`BlockHits::events`].
    pub event: Range<usize>,
}

/// What one block gave: its lines to send, their events serialized here
/// (on the worker that found them, in parallel, rather than on the one
/// thread that merges) back to back in one buffer.
#[derive(Default)]
pub struct BlockHits {
    pub hits: Vec<Hit>,
    pub events: Arc<Vec<u8>>,
}

/// Lines of `block` in the request's time range that it selects.
pub fn count(block: &SourceBlock, req: &SearchRequest) -> Result<u64, PartitionError> {
    let range = req.range();
    // A volume count of a block wholly in range needs no reading.
    if req.selects_every_line() && range.contains(block.t_min) && range.contains(block.t_max) {
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

/// A line to send, by the block that holds it.
pub struct Wanted {
    pub block: Arc<LineBlock>,
    pub index: usize,
    /// Whether it matches, when known (a line of the block searched that
    /// is not one of its matches does not; one of a neighbouring block is
    /// checked).
    pub is_match: Option<bool>,
    /// With `events`: the event it is in.
    pub group: Option<EventOf>,
}

/// With `events`: which event a line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOf {
    /// The ordinal of its first line: tells events apart in one search.
    pub first: u64,
    /// (time, offset) of its first match: its place in the search's
    /// order across pages (a cursor names it).
    pub key: (i64, u64),
}

impl Wanted {
    fn new(block: &Arc<LineBlock>, index: usize, is_match: Option<bool>) -> Wanted {
        Wanted {
            block: block.clone(),
            index,
            is_match,
            group: None,
        }
    }
}

/// The matches of block `b` of `s`, with their context lines (or their
/// events), by ordinal.
pub fn hits(s: &SourceBlocks, b: usize, req: &SearchRequest) -> Result<BlockHits, PartitionError> {
    let lines = s.blocks[b].data.read()?;
    let base = s.first_line[b];
    let matches = selected(&lines, req);
    if matches.is_empty() {
        return Ok(BlockHits::default());
    }
    if req.events {
        return super::events::hits(s, b, lines, &matches, req);
    }
    if req.before == 0 && req.after == 0 {
        let wanted = matches
            .iter()
            .map(|&i| (base + i as u64, Wanted::new(&lines, i, Some(true))));
        return Ok(serialize(s, req, wanted));
    }
    // Every line to send, by ordinal.
    let mut wanted: BTreeMap<u64, Wanted> = BTreeMap::new();
    let n = lines.len();
    for &m in &matches {
        let first = m.saturating_sub(req.before);
        let last = (m + req.after).min(n - 1);
        for i in first..=last {
            wanted.insert(base + i as u64, Wanted::new(&lines, i, Some(false)));
        }
    }
    for &m in &matches {
        if let Some(w) = wanted.get_mut(&(base + m as u64)) {
            w.is_match = Some(true);
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
    let range = req.range();
    let wanted = wanted.into_iter().filter_map(|(ordinal, mut w)| {
        let l = w.block.line(w.index);
        if w.is_match != Some(true) && !range.contains(l.time_ns) {
            return None;
        }
        w.is_match = Some(w.is_match.unwrap_or_else(|| req.selects(l.bytes)));
        Some((ordinal, w))
    });
    Ok(serialize(s, req, wanted))
}

/// The events of `wanted` lines (each known to match or not), by ordinal.
pub(super) fn serialize(
    s: &SourceBlocks,
    req: &SearchRequest,
    wanted: impl Iterator<Item = (u64, Wanted)>,
) -> BlockHits {
    let json = s.json();
    let mut events = Vec::new();
    let hits = wanted
        .map(|(ordinal, w)| {
            let is_match = w.is_match == Some(true);
            let l = w.block.line(w.index);
            // Highlights index the text as shown (invalid UTF-8 replaced).
            let text = String::from_utf8_lossy(l.bytes);
            let spans = if is_match {
                req.spans(text.as_bytes())
            } else {
                Vec::new()
            };
            let start = events.len();
            write_search_line(
                &mut events,
                json,
                l.time_ns,
                l.offset,
                l.flags,
                &text,
                !is_match,
                &spans,
            );
            Hit {
                group: w.group,
                ordinal,
                context: !is_match,
                time_ns: l.time_ns,
                offset: l.offset,
                event: start..events.len(),
            }
        })
        .collect();
    BlockHits {
        hits,
        events: Arc::new(events),
    }
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
    wanted: &mut BTreeMap<u64, Wanted>,
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
            wanted
                .entry(s.first_line[at] + i as u64)
                .or_insert_with(|| Wanted::new(&lines, i, None));
        }
        count -= take;
    }
    Ok(())
}
