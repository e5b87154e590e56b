//! `events=true`: each match sent with the whole event it falls in, the
//! lines from the one that opens the event to the last that continues it
//! (`LineFlags::continues`, marked at ingest: `multiline/`), from the
//! neighbouring blocks of its source when the event crosses an edge.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::blocks::SourceBlocks;
use super::request::SearchRequest;
use super::scan::{serialize, BlockHits, EventOf, Wanted};
use crate::block::LineBlock;
use crate::index::PartitionError;

/// Lines walked at most from a match to its event's first or last line:
/// more than any event holds (`multiline::MAX_RULE_LINES`). The walk also
/// stops at the first or last block the search gathered (its time range).
const MAX_WALK: usize = 100_000;

/// A line of a source's block list: (block, index in it).
type At = (usize, usize);

/// The source's blocks, each read once.
struct Reader<'a> {
    s: &'a SourceBlocks,
    read: HashMap<usize, Arc<LineBlock>>,
}

impl Reader<'_> {
    fn block(&mut self, b: usize) -> Result<Arc<LineBlock>, PartitionError> {
        if let Some(lines) = self.read.get(&b) {
            return Ok(lines.clone());
        }
        let lines = self.s.blocks[b].data.read()?;
        self.read.insert(b, lines.clone());
        Ok(lines)
    }

    fn continues(&mut self, (b, i): At) -> Result<bool, PartitionError> {
        Ok(self.block(b)?.line(i).flags.continues)
    }

    /// The line before `at`, across blocks (empty ones skipped).
    fn before(&mut self, (mut b, i): At) -> Result<Option<At>, PartitionError> {
        if i > 0 {
            return Ok(Some((b, i - 1)));
        }
        while b > 0 {
            b -= 1;
            let n = self.block(b)?.len();
            if n > 0 {
                return Ok(Some((b, n - 1)));
            }
        }
        Ok(None)
    }

    /// The line after `at`, across blocks.
    fn after(&mut self, (mut b, i): At) -> Result<Option<At>, PartitionError> {
        if i + 1 < self.block(b)?.len() {
            return Ok(Some((b, i + 1)));
        }
        while b + 1 < self.s.blocks.len() {
            b += 1;
            if !self.block(b)?.is_empty() {
                return Ok(Some((b, 0)));
            }
        }
        Ok(None)
    }

    fn ordinal(&self, (b, i): At) -> u64 {
        self.s.first_line[b] + i as u64
    }
}

/// The matches of block `b` of `s` (`matches`: their indexes in `lines`),
/// each with the whole event it is in ([`EventOf`] on every line of it).
pub fn hits(
    s: &SourceBlocks,
    b: usize,
    lines: Arc<LineBlock>,
    matches: &[usize],
    req: &SearchRequest,
) -> Result<BlockHits, PartitionError> {
    let mut r = Reader {
        s,
        read: HashMap::from([(b, lines)]),
    };
    let mut wanted: BTreeMap<u64, Wanted> = BTreeMap::new();
    let mut last_end: Option<u64> = None;
    for &m in matches {
        let at = (b, m);
        if last_end.is_some_and(|end| r.ordinal(at) <= end) {
            // In the event of an earlier match of this block.
            continue;
        }
        let mut first = at;
        for _ in 0..MAX_WALK {
            if !r.continues(first)? {
                break;
            }
            match r.before(first)? {
                Some(p) => first = p,
                None => break,
            }
        }
        let mut last = at;
        for _ in 0..MAX_WALK {
            match r.after(last)? {
                Some(n) if r.continues(n)? => last = n,
                _ => break,
            }
        }
        let mut lines = vec![first];
        while let Some(&p) = lines.last().filter(|p| **p != last) {
            match r.after(p)? {
                Some(n) => lines.push(n),
                None => break,
            }
        }
        // Its place across pages: its first match (a line in the time
        // range the pattern selects), which is also where a cluster's
        // fan-in, seeing only which lines match, places it.
        let range = req.range();
        let mut key = None;
        for &p in &lines {
            let block = r.block(p.0)?;
            let l = block.line(p.1);
            if p == at || (range.contains(l.time_ns) && req.selects(l.bytes)) {
                key = Some((l.time_ns, l.offset));
                break;
            }
        }
        let event = EventOf {
            first: r.ordinal(first),
            key: key.unwrap_or((0, 0)),
        };
        for p in lines {
            let is_match = (p == at).then_some(true).or((p.0 == b).then_some(false));
            wanted.insert(
                r.ordinal(p),
                Wanted {
                    block: r.block(p.0)?,
                    index: p.1,
                    is_match,
                    group: Some(event),
                },
            );
        }
        last_end = Some(r.ordinal(last));
    }
    // Matches of this block inside an event found by an earlier one.
    for &m in matches {
        if let Some(w) = wanted.get_mut(&(s.first_line[b] + m as u64)) {
            w.is_match = Some(true);
        }
    }
    let range = req.range();
    let wanted = wanted.into_iter().map(|(ordinal, mut w)| {
        // A line of another block is checked here; one out of the time
        // range is shown (its event is) but is no match.
        let l = w.block.line(w.index);
        let is_match = w
            .is_match
            .unwrap_or_else(|| range.contains(l.time_ns) && req.selects(l.bytes));
        w.is_match = Some(is_match);
        (ordinal, w)
    });
    Ok(serialize(s, req, wanted))
}
