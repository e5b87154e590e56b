//! Lines mode: merging the verified blocks' lines by time and sending each
//! once it is final.
//!
//! Blocks come from the pipeline in the order of their first line's time,
//! so after block `k` no block still to come holds a line earlier than
//! block `k + 1`'s first: every waiting line before that time is sent, in
//! time order (ties by source, then position). Lines of one source never
//! overtake each other, whatever their times say. Context lines read twice
//! (after one match, before the next) are sent once; a line that is both
//! is sent as a match.
//!
//! A page ends one match past `limit` with `more`; its summary's
//! `next_cursor` (time, source id, offset of the last match sent) lets the
//! next request start exactly after it (`cursor=`): a shipper stamps a
//! whole read round with one time, so a time alone would not do.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use cblogs_core::api::{SearchEvent, SearchSummary};

use super::blocks::{note_read, SourceBlocks};
use super::pipeline::{self, Outcome};
use super::request::{storage_failed, Cursor, ProgressTicker, SearchRequest, SearchSink};
use super::scan::{self, BlockHits, Hit};

/// A line waiting to be sent.
struct Waiting {
    /// (time, source, ordinal, 0 for a match / 1 for context)
    key: (i64, usize, u64, u8),
    hit: Hit,
    /// The buffer its event is in.
    events: Arc<Vec<u8>>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

struct Merger<'a> {
    sources: &'a [SourceBlocks],
    req: &'a SearchRequest,
    sink: &'a mut dyn SearchSink,
    waiting: BinaryHeap<Reverse<Waiting>>,
    /// Per source: the latest time given to one of its lines (so none of
    /// its later lines sorts before it), and the last ordinal sent.
    floor: Vec<i64>,
    sent: Vec<Option<u64>>,
    /// The last line sent: (source, ordinal), for `--` separators.
    last: Option<(usize, u64)>,
    /// With events: the event of the last line sent (source, its first
    /// line's ordinal), and how many events were sent.
    last_event: Option<(usize, u64)>,
    events_sent: u64,
    /// The last match sent, once the limit is reached: its trailing
    /// context may still go out.
    limit_reached_at: Option<(usize, u64)>,
    matches_sent: u64,
    /// More matches than the limit: stop.
    full: bool,
    next_time_ns: Option<i64>,
    /// The last match sent, and where the next page starts.
    last_match: Cursor,
    next_cursor: Option<Cursor>,
    client_gone: bool,
}

impl Merger<'_> {
    fn push(&mut self, source: usize, t_min: i64, found: BlockHits) {
        // With events, an event's lines all sort at its place (its first
        // matching line's time, the time its cursor names; later only if
        // its source's clock went back): no other source's line comes
        // between them, and the pages' order is the cursors'.
        let mut event: Option<(u64, i64)> = None;
        for hit in found.hits {
            let mut t = hit.time_ns.max(t_min).max(self.floor[source]);
            if let Some(group) = hit.group {
                match event {
                    Some((g, at)) if g == group.first => t = at,
                    _ => {
                        t = group.key.0.max(t_min).max(self.floor[source]);
                        event = Some((group.first, t));
                    }
                }
            }
            self.floor[source] = t;
            let key = (t, source, hit.ordinal, u8::from(hit.context));
            let events = found.events.clone();
            self.waiting.push(Reverse(Waiting { key, hit, events }));
        }
    }

    /// Sends every waiting line earlier than `frontier`; false to stop.
    fn send_before(&mut self, frontier: i64) -> bool {
        while let Some(Reverse(w)) = self.waiting.peek() {
            if w.key.0 >= frontier {
                break;
            }
            let Some(Reverse(w)) = self.waiting.pop() else {
                break;
            };
            if !self.send(w) {
                return false;
            }
        }
        self.sink.flush() || {
            self.client_gone = true;
            false
        }
    }

    fn send(&mut self, w: Waiting) -> bool {
        let (_, source, ordinal, _) = w.key;
        if self.sent[source].is_some_and(|s| ordinal <= s) {
            return true;
        }
        let context_on = self.req.before > 0 || self.req.after > 0;
        // A line's place: its own, or with events its event's (each line
        // of an event is shown or skipped with it).
        let (time_ns, offset) = w.hit.group.map_or((w.hit.time_ns, w.hit.offset), |g| g.key);
        let cursor = Cursor {
            time_ns,
            source: self.sources[source].id,
            offset,
        };
        // Shown by an earlier page (its context too).
        if self.req.cursor.is_some_and(|c| cursor <= c) {
            return true;
        }
        let group = w.hit.group.map(|g| (source, g.first));
        let new_event = group.is_some() && group != self.last_event;
        if new_event {
            // With events, the limit counts events; the cursor is the
            // place of the last one sent.
            if self.req.limit.is_some_and(|l| self.events_sent >= l as u64) {
                self.full = true;
                self.next_time_ns = Some(w.hit.time_ns);
                self.next_cursor = Some(self.last_match);
                return false;
            }
            self.events_sent += 1;
        }
        if group.is_some() {
            self.last_match = cursor;
            self.matches_sent += u64::from(!w.hit.context);
        } else if !w.hit.context {
            if self
                .req
                .limit
                .is_some_and(|l| self.matches_sent >= l as u64)
            {
                self.full = true;
                self.next_time_ns = Some(w.hit.time_ns);
                self.next_cursor = Some(self.last_match);
                return false;
            }
            self.matches_sent += 1;
            self.last_match = cursor;
            if self
                .req
                .limit
                .is_some_and(|l| self.matches_sent >= l as u64)
            {
                self.limit_reached_at = Some((source, ordinal));
            }
        } else if let Some((s, o)) = self.limit_reached_at {
            // Past the limit, only the last match's own trailing context.
            if s != source || ordinal > o + self.req.after as u64 {
                return true;
            }
        }
        let adjacent = self.last == Some((source, ordinal.wrapping_sub(1)));
        let apart = match group {
            Some(_) => new_event,
            None => context_on && !adjacent,
        };
        self.last_event = group;
        if apart && self.last.is_some() && !self.sink.send(SearchEvent::Break) {
            self.client_gone = true;
            return false;
        }
        self.sent[source] = Some(ordinal);
        self.last = Some((source, ordinal));
        if !self.sink.send_serialized(&w.events[w.hit.event]) {
            self.client_gone = true;
            return false;
        }
        true
    }
}

/// Sends the matching lines (and context) of `sources`, merged by time.
pub fn lines(
    sources: &[SourceBlocks],
    req: &SearchRequest,
    sink: &mut dyn SearchSink,
    summary: &mut SearchSummary,
) {
    let tasks = pipeline::tasks(sources);
    let mut m = Merger {
        sources,
        req,
        sink,
        waiting: BinaryHeap::new(),
        floor: vec![i64::MIN; sources.len()],
        sent: vec![None; sources.len()],
        last: None,
        last_event: None,
        events_sent: 0,
        limit_reached_at: None,
        matches_sent: 0,
        full: false,
        next_time_ns: None,
        last_match: Cursor {
            time_ns: i64::MIN,
            source: 0,
            offset: 0,
        },
        next_cursor: None,
        client_gone: false,
    };
    let mut failed = None;
    let mut progress = ProgressTicker::new(req);
    let outcome = pipeline::run(
        &tasks,
        req.deadline,
        &req.workers,
        |task| scan::hits(&sources[task.source], task.block, req),
        |i, hits| {
            let task = &tasks[i];
            note_read(
                summary,
                &sources[task.source].blocks[task.block],
                req.explain,
            );
            match hits {
                Ok(hits) => m.push(tasks[i].source, tasks[i].t_min, hits),
                Err(e) => {
                    failed = Some(e);
                    return false;
                }
            }
            let frontier = tasks.get(i + 1).map_or(i64::MAX, |t| t.t_min);
            if !m.send_before(frontier) {
                return false;
            }
            let ticked = progress.tick(
                &mut *m.sink,
                (i + 1, tasks.len()),
                m.matches_sent,
                (tasks[0].t_min, frontier),
            );
            m.client_gone |= !ticked;
            ticked
        },
    );
    if let Some(e) = failed {
        storage_failed(summary, &e);
    }
    if outcome == Outcome::Deadline {
        summary.truncated = true;
        summary.reason = Some(req.time_limit_reason());
    }
    // What was found and not sent yet: all of it is final now (the rest
    // of the store was read, or will not be).
    if !m.full && !m.client_gone {
        m.send_before(i64::MAX);
    }
    summary.matched = m.matches_sent;
    summary.more = m.full;
    summary.next_time_ns = m.next_time_ns;
    summary.next_cursor = m.next_cursor.map(|c| c.to_string());
}
