//! [`FanIn`]: the local search's events, merged with the other nodes'
//! answers on their way to the client.
//!
//! Lines: the answers' lines are merged among themselves first (copies
//! dropped, in time order); each local line, as the local search sends
//! it, goes out after every answer line before it. The page's limit, its
//! cursor and the `--` breaks are the merged stream's. An answer cut at
//! the limit could hold lines after its last one that no one has sent:
//! the merged stream ends there, with `more` and the cursor to go on
//! from. Counts are added per source; listed sources are sent once.

use std::collections::{BTreeMap, HashMap, VecDeque};

use cblogs_core::api::{
    MatchSource, SearchEvent, SearchLine, SearchSummary, SourceCount, Unanswered,
};
use cblogs_core::line_event::decode_search_event;

use super::answer::NodeAnswer;
use super::events::{places, LocalEvent};
use crate::read::line_end;
use crate::search::{Mode, SearchRequest, SearchSink};

/// A place in the merged order: (time, source id in hex, offset).
type Key = (i64, String, u64);

fn key_of(line: &SearchLine, time_ns: i64) -> Key {
    (time_ns, line.line.source.clone(), line.line.offset)
}

pub struct FanIn<'a> {
    inner: &'a mut dyn SearchSink,
    mode: Mode,
    limit: Option<usize>,
    context_on: bool,
    /// `events=true`: lines go by event (`events.rs`), each at its place;
    /// the limit counts events, and a break is between two.
    events: bool,
    local_event: Option<LocalEvent>,
    /// The event of the last line sent: (source, its first line's offset).
    last_event: Option<(String, u64)>,
    /// Whether the event being sent was given its place (`last_match`).
    event_placed: bool,
    events_sent: u64,
    /// The answers' lines, merged, not yet sent, each with the time it
    /// sorts at and its event's first offset.
    others: VecDeque<(SearchLine, i64, u64)>,
    /// The earliest last match of the answers that stopped at the limit.
    cutoff: Option<Key>,
    other_jobs: Vec<String>,
    /// Counts (`mode=count`) per source, the answers' added up.
    counts: BTreeMap<String, SourceCount>,
    /// Sources (`mode=list`): the answers' not yet sent, and those sent.
    other_sources: Vec<MatchSource>,
    listed: HashMap<String, ()>,
    other_summaries: Vec<SearchSummary>,
    partial: Vec<Unanswered>,
    /// The local stream's time so far (its lines of one source keep their
    /// order even where their times do not).
    local_floor: i64,
    /// Per source, the lines sent: offset → end.
    sent: HashMap<String, BTreeMap<u64, u64>>,
    last_sent: Option<(String, u64)>,
    matches: u64,
    last_match: Option<Key>,
    /// The first match left out, past the limit.
    left_out: Option<i64>,
    /// The earliest time of a match an answer left out past its limit.
    next_time_ns: Option<i64>,
    /// The last local line received: with the local search stopped at
    /// its limit, no answer line past it may go out.
    local_last: Option<Key>,
    done: bool,
}

impl<'a> FanIn<'a> {
    /// Merges `answers` (their stale owners' events already dropped) into
    /// what the local search of `req` sends to `inner`.
    pub fn new(
        inner: &'a mut dyn SearchSink,
        req: &SearchRequest,
        answers: Vec<NodeAnswer>,
        partial: Vec<Unanswered>,
    ) -> FanIn<'a> {
        let context_on = req.before > 0 || req.after > 0;
        let page = (req.mode, req.limit, context_on, req.events);
        Self::of_page(inner, page, answers, partial)
    }

    /// [`FanIn::new`] for a page of `mode`, `limit`, context or not and
    /// events or not.
    fn of_page(
        inner: &'a mut dyn SearchSink,
        (mode, limit, context_on, events): (Mode, Option<usize>, bool, bool),
        answers: Vec<NodeAnswer>,
        partial: Vec<Unanswered>,
    ) -> FanIn<'a> {
        let mut lines = Vec::new();
        let mut fan = FanIn {
            inner,
            mode,
            limit,
            context_on,
            events,
            local_event: None,
            last_event: None,
            event_placed: false,
            events_sent: 0,
            others: VecDeque::new(),
            cutoff: None,
            other_jobs: Vec::new(),
            counts: BTreeMap::new(),
            other_sources: Vec::new(),
            listed: HashMap::new(),
            other_summaries: Vec::new(),
            partial,
            local_floor: i64::MIN,
            sent: HashMap::new(),
            last_sent: None,
            matches: 0,
            last_match: None,
            left_out: None,
            next_time_ns: None,
            local_last: None,
            done: false,
        };
        for a in answers {
            fan.other_jobs.extend(a.jobs);
            let mut last_match = None;
            let mut answer_lines = Vec::new();
            for e in a.events {
                match e {
                    SearchEvent::Line(l) => answer_lines.push(l),
                    SearchEvent::Count(c) => fan.add_count(c),
                    SearchEvent::Source(m) => fan.other_sources.push(m),
                    _ => {}
                }
            }
            let placed = match events {
                true => places(&answer_lines),
                false => answer_lines
                    .iter()
                    .map(|l| (l.line.offset, l.line.time_ns))
                    .collect(),
            };
            for (l, (start, t)) in answer_lines.into_iter().zip(placed) {
                if !l.context || events {
                    last_match = Some(key_of(&l, t));
                }
                lines.push((l, t, start));
            }
            if let Some(s) = a.summary {
                // Cut at its limit: none of its lines past its last may
                // go out before it is asked again (an answer left with no
                // match, its owner stale, holds nothing to wait for).
                if s.more {
                    fan.cutoff = match (fan.cutoff.take(), last_match) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                if s.more {
                    fan.next_time_ns = [fan.next_time_ns, s.next_time_ns]
                        .into_iter()
                        .flatten()
                        .min();
                }
                fan.other_summaries.push(s);
            }
        }
        // In time order; of lines at one place, a match before context.
        lines.sort_by(|(a, at, _), (b, bt, _)| {
            (at, &a.line.source, a.line.offset, a.context).cmp(&(
                bt,
                &b.line.source,
                b.line.offset,
                b.context,
            ))
        });
        fan.others = lines.into();
        fan
    }

    fn add_count(&mut self, c: SourceCount) {
        match self.counts.get_mut(&c.source.source_id) {
            Some(n) => n.count += c.count,
            None => {
                self.counts.insert(c.source.source_id.clone(), c);
            }
        }
    }

    fn limit_reached(&self) -> bool {
        let sent = if self.events {
            self.events_sent
        } else {
            self.matches
        };
        self.limit.is_some_and(|l| sent >= l as u64)
    }

    /// Sends `line` (its event already serialized, for a local one), or
    /// drops it as a copy; false once the page is full or the client gone.
    /// With events, `start` is its event's first offset.
    fn emit(&mut self, line: SearchLine, key: Key, start: u64, json: Option<&[u8]>) -> bool {
        if self.events {
            return self.emit_in_event(line, key, start, json);
        }
        if self.already_sent(&line) {
            return true;
        }
        let source = line.line.source.clone();
        let offset = line.line.offset;
        let follows = self
            .last_sent
            .as_ref()
            .is_some_and(|(s, e)| *s == source && *e == offset);
        if line.context {
            // Past the limit, only the last match's own trailing context.
            if self.limit_reached() && !follows {
                return true;
            }
        } else {
            let past_cutoff = self.cutoff.as_ref().is_some_and(|c| key > *c);
            if self.limit_reached() || past_cutoff {
                self.left_out = Some(line.line.time_ns);
                self.done = true;
                return false;
            }
            self.matches += 1;
            self.last_match = Some(key);
        }
        if self.context_on
            && self.last_sent.is_some()
            && !follows
            && !self.inner.send(SearchEvent::Break)
        {
            return self.gone();
        }
        self.send_line(line, json)
    }

    /// [`FanIn::emit`] with events: the limit counts events, and an event
    /// begun goes out whole.
    fn emit_in_event(
        &mut self,
        line: SearchLine,
        key: Key,
        start: u64,
        json: Option<&[u8]>,
    ) -> bool {
        if self.already_sent(&line) {
            return true;
        }
        let offset = line.line.offset;
        let event = (line.line.source.clone(), start);
        if self.last_event.as_ref() != Some(&event) {
            let past_cutoff = self.cutoff.as_ref().is_some_and(|c| key > *c);
            if self.limit_reached() || past_cutoff {
                self.left_out = Some(line.line.time_ns);
                self.done = true;
                return false;
            }
            self.events_sent += 1;
            if self.last_sent.is_some() && !self.inner.send(SearchEvent::Break) {
                return self.gone();
            }
            self.last_event = Some(event);
            self.event_placed = false;
        }
        if !line.context {
            self.matches += 1;
            // The event's place, for the next page's cursor: its first
            // match, as each node's search places it.
            if !self.event_placed {
                self.last_match = Some((line.line.time_ns, line.line.source.clone(), offset));
                self.event_placed = true;
            }
        }
        self.send_line(line, json)
    }

    /// Whether `line` lies inside one already sent (a copy).
    fn already_sent(&self, line: &SearchLine) -> bool {
        let offset = line.line.offset;
        self.sent
            .get(&line.line.source)
            .and_then(|s| s.range(..=offset).next_back())
            .is_some_and(|(_, e)| offset < *e)
    }

    /// Sends a line, and notes its bytes as sent.
    fn send_line(&mut self, line: SearchLine, json: Option<&[u8]>) -> bool {
        let source = line.line.source.clone();
        let (offset, end) = (line.line.offset, line_end(&line.line));
        self.sent
            .entry(source.clone())
            .or_default()
            .insert(offset, end);
        self.last_sent = Some((source, end));
        let ok = match json {
            Some(json) => self.inner.send_serialized(json),
            None => self.inner.send(SearchEvent::Line(line)),
        };
        ok || self.gone()
    }

    fn gone(&mut self) -> bool {
        self.done = true;
        false
    }

    /// Sends the answers' lines before `key` (all with `None`).
    fn others_before(&mut self, key: Option<&Key>) -> bool {
        while let Some((l, t, _)) = self.others.front() {
            let k = key_of(l, *t);
            if key.is_some_and(|key| k >= *key) {
                break;
            }
            let Some((l, _, start)) = self.others.pop_front() else {
                break;
            };
            if !self.emit(l, k, start, None) {
                return false;
            }
        }
        true
    }

    fn local_line(&mut self, line: SearchLine, json: &[u8]) -> bool {
        if self.events {
            return self.local_event_line(line, json);
        }
        self.local_floor = self.local_floor.max(line.line.time_ns);
        let (t, start) = (self.local_floor, line.line.offset);
        self.send_local(line, t, start, json)
    }

    fn send_local(&mut self, line: SearchLine, t: i64, start: u64, json: &[u8]) -> bool {
        let key = key_of(&line, t);
        self.local_last = Some(key.clone());
        self.others_before(Some(&key)) && self.emit(line, key, start, Some(json))
    }

    /// With events: a local line, held with its event until the event's
    /// place is known (its first match), sent at once after.
    fn local_event_line(&mut self, line: SearchLine, json: &[u8]) -> bool {
        match &mut self.local_event {
            Some(e) if e.takes(&line) => {
                if let Some(t) = e.place {
                    let start = e.start;
                    return self.send_local(line, t, start, json);
                }
            }
            _ => {
                if !self.release_local() {
                    return false;
                }
                self.local_event = Some(LocalEvent::opened_by(&line));
            }
        }
        let Some(e) = self.local_event.as_mut() else {
            return true;
        };
        let placed = !line.context;
        if placed {
            e.place = Some(line.line.time_ns);
        }
        e.held.push((line, json.to_vec()));
        !placed || self.release_local()
    }

    /// Sends the local event's held lines at its place (its first line's
    /// time if it has no match), no earlier than the local lines before.
    fn release_local(&mut self) -> bool {
        let Some(e) = self.local_event.as_mut() else {
            return true;
        };
        let held = std::mem::take(&mut e.held);
        let Some((first, _)) = held.first() else {
            return true;
        };
        let t = self.local_floor.max(e.place.unwrap_or(first.line.time_ns));
        e.place = Some(t);
        self.local_floor = t;
        let start = e.start;
        for (line, json) in held {
            if !self.send_local(line, t, start, &json) {
                return false;
            }
        }
        true
    }

    fn list(&mut self, m: MatchSource) -> bool {
        if self.listed.insert(m.source_id.clone(), ()).is_some() {
            return true;
        }
        self.inner.send(SearchEvent::Source(m)) || self.gone()
    }

    /// The local summary, with the answers' added: sent last.
    fn finish(&mut self, mut s: SearchSummary) -> bool {
        match self.mode {
            Mode::Lines => {
                if !self.done && self.release_local() {
                    // Stopped at its own limit, the local search has lines
                    // past its last that the page must not skip: the
                    // answers' go out up to it, the rest on the next page.
                    match (&self.local_last, s.more) {
                        (Some(last), true) => {
                            let last = (last.0, last.1.clone(), last.2 + 1);
                            self.others_before(Some(&last));
                        }
                        _ => {
                            self.others_before(None);
                        }
                    }
                }
                let others_more = self.other_summaries.iter().any(|o| o.more);
                s.more = s.more || self.left_out.is_some() || others_more;
                s.matched = self.matches;
                if s.more {
                    s.next_time_ns = [self.left_out, s.next_time_ns, self.next_time_ns]
                        .into_iter()
                        .flatten()
                        .min();
                    s.next_cursor = self
                        .last_match
                        .as_ref()
                        .map(|(t, source, offset)| format!("{t}.{source}.{offset}"))
                        .or(s.next_cursor);
                }
            }
            Mode::Count => {
                s.matched = self.counts.values().map(|c| c.count).sum();
                let counts = std::mem::take(&mut self.counts);
                for c in counts.into_values() {
                    if !self.inner.send(SearchEvent::Count(c)) {
                        return false;
                    }
                }
            }
            Mode::List => {
                for m in std::mem::take(&mut self.other_sources) {
                    if !self.list(m) {
                        return false;
                    }
                }
                s.matched = self.listed.len() as u64;
            }
        }
        for o in &self.other_summaries {
            s.truncated |= o.truncated;
            if s.reason.is_none() {
                s.reason.clone_from(&o.reason);
            }
            s.blocks_total += o.blocks_total;
            s.blocks_read += o.blocks_read;
            s.read_bytes += o.read_bytes;
            s.read_blocks.extend(o.read_blocks.iter().cloned());
        }
        s.partial = std::mem::take(&mut self.partial);
        self.inner.send(SearchEvent::Summary(s))
    }
}

impl SearchSink for FanIn<'_> {
    fn send(&mut self, event: SearchEvent) -> bool {
        match event {
            SearchEvent::Start { mut jobs } => {
                jobs.append(&mut self.other_jobs);
                jobs.sort();
                jobs.dedup();
                if !self.inner.send(SearchEvent::Start { jobs }) {
                    return self.gone();
                }
                // The answers' sources are known at once.
                for m in std::mem::take(&mut self.other_sources) {
                    if !self.list(m) {
                        return false;
                    }
                }
                true
            }
            SearchEvent::Line(l) => match serde_json::to_vec(&SearchEvent::Line(l.clone())) {
                Ok(json) => self.local_line(l, &json),
                Err(_) => true,
            },
            // Breaks are the merged stream's own.
            SearchEvent::Break => true,
            SearchEvent::Count(c) => {
                self.add_count(c);
                true
            }
            SearchEvent::Source(m) => self.list(m),
            // This node's part is the published splits, the bulk of a
            // long search: its progress is the search's.
            SearchEvent::Progress(p) => self.inner.send(SearchEvent::Progress(p)) || self.gone(),
            SearchEvent::Summary(s) => self.finish(s),
        }
    }

    fn send_serialized(&mut self, json: &[u8]) -> bool {
        if self.done {
            return false;
        }
        match decode_search_event(json) {
            Ok(SearchEvent::Line(l)) => self.local_line(l, json),
            Ok(other) => self.send(other),
            Err(e) => {
                tracing::error!(error = %e, "a search event this node wrote cannot be read back");
                self.gone()
            }
        }
    }

    /// Flushes even once the page is full: its summary is still to go.
    fn flush(&mut self) -> bool {
        let flushed = self.inner.flush();
        self.done |= !flushed;
        flushed && !self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::fanin::Collector;
    use cblogs_core::{LineFlags, LineView, Source, Stream};

    fn line(instance: u32, offset: u64, time_ns: i64, context: bool) -> SearchLine {
        let source = Source::example("www-data/prod/hello", instance, "hello", Stream::Stdout);
        SearchLine {
            line: LineView::new(&source, offset, time_ns, LineFlags::default(), b"a line"),
            context,
            matches: Vec::new(),
        }
    }

    fn texts(events: &[SearchEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                SearchEvent::Line(l) => format!("{}@{}", l.line.instance, l.line.time_ns),
                SearchEvent::Break => "--".into(),
                _ => "?".into(),
            })
            .collect()
    }

    /// The local search's events, as `search::run` sends them.
    fn run_local(fan: &mut FanIn, lines: &[SearchLine]) {
        fan.send(SearchEvent::Start { jobs: Vec::new() });
        for l in lines {
            let json = serde_json::to_vec(&SearchEvent::Line(l.clone())).unwrap();
            if !fan.send_serialized(&json) {
                break;
            }
        }
        fan.send(SearchEvent::Summary(SearchSummary::default()));
    }

    #[test]
    fn lines_of_the_answers_go_out_between_the_local_ones_in_time_order() {
        // b's answer: lines at 2 and 4, and a copy of a local line.
        let answer = NodeAnswer {
            events: [
                line(1, 0, 2, false),
                line(1, 7, 4, false),
                line(0, 7, 30, false),
            ]
            .into_iter()
            .map(SearchEvent::Line)
            .collect(),
            ..NodeAnswer::default()
        };
        let mut out = Collector::default();
        let mut fan = FanIn::of_page(
            &mut out,
            (Mode::Lines, Some(4), false, false),
            vec![answer],
            Vec::new(),
        );
        run_local(
            &mut fan,
            &[
                line(0, 0, 1, false),
                line(0, 7, 3, false),
                line(0, 14, 5, false),
            ],
        );
        // The copy (instance 0, offset 7, another time) is not sent again;
        // the page ends at 4 matches, the fifth left out.
        assert_eq!(texts(&out.answer.events), ["0@1", "1@2", "0@3", "1@4"]);
        let s = out.answer.summary.expect("summary");
        assert!(s.more && s.matched == 4, "{s:?}");
        assert_eq!(s.next_time_ns, Some(5));
        let b = format!(
            "{:016x}",
            Source::example("www-data/prod/hello", 1, "hello", Stream::Stdout).id()
        );
        assert_eq!(s.next_cursor, Some(format!("4.{b}.7")));
    }

    #[test]
    fn with_events_an_event_goes_out_whole_at_its_first_matchs_time_and_the_limit_counts_events() {
        let continued = |instance, offset, time_ns, context| {
            let mut l = line(instance, offset, time_ns, context);
            l.line.flags.continues = true;
            l
        };
        // b's answer: one event, its first line at 2, its match at 5.
        // (a's local lines are one-line events.)
        let answer = || NodeAnswer {
            events: [
                line(1, 0, 2, true),
                continued(1, 7, 5, false),
                continued(1, 14, 6, true),
            ]
            .into_iter()
            .map(SearchEvent::Line)
            .collect(),
            ..NodeAnswer::default()
        };
        let local = [line(0, 0, 3, false), line(0, 7, 8, false)];
        // b's event is placed at its match (5), after a's line at 3.
        for (limit, want) in [
            (None, &["0@3", "--", "1@2", "1@5", "1@6", "--", "0@8"][..]),
            (Some(2), &["0@3", "--", "1@2", "1@5", "1@6"][..]),
        ] {
            let mut out = Collector::default();
            let mut fan = FanIn::of_page(
                &mut out,
                (Mode::Lines, limit, false, true),
                vec![answer()],
                Vec::new(),
            );
            run_local(&mut fan, &local);
            assert_eq!(texts(&out.answer.events), want, "limit {limit:?}");
            let s = out.answer.summary.expect("summary");
            assert_eq!(s.more, limit.is_some(), "{s:?}");
        }
    }

    #[test]
    fn with_events_a_local_event_waits_for_its_match_to_be_placed() {
        let mut matched = line(0, 7, 9, false);
        matched.line.flags.continues = true;
        // a's event opens at 1 and matches at 9; b's line at 5 goes first.
        let local = [line(0, 0, 1, true), matched];
        let answer = NodeAnswer {
            events: vec![SearchEvent::Line(line(1, 0, 5, false))],
            ..NodeAnswer::default()
        };
        let mut out = Collector::default();
        let mut fan = FanIn::of_page(
            &mut out,
            (Mode::Lines, None, false, true),
            vec![answer],
            Vec::new(),
        );
        run_local(&mut fan, &local);
        assert_eq!(texts(&out.answer.events), ["1@5", "--", "0@1", "0@9"]);
    }

    #[test]
    fn an_answer_cut_at_the_limit_ends_the_page_where_it_was_cut_and_breaks_are_the_merged_ones() {
        // b stopped at its limit after its line at 2: a line of b's after
        // it may exist, so nothing later than 2 is sent.
        let answer = NodeAnswer {
            events: vec![
                SearchEvent::Line(line(1, 0, 2, false)),
                SearchEvent::Line(line(1, 7, 3, true)),
            ],
            summary: Some(SearchSummary {
                more: true,
                ..SearchSummary::default()
            }),
            ..NodeAnswer::default()
        };
        let mut out = Collector::default();
        let mut fan = FanIn::of_page(
            &mut out,
            (Mode::Lines, Some(10), true, false),
            vec![answer],
            Vec::new(),
        );
        run_local(
            &mut fan,
            &[
                line(0, 0, 1, false),
                line(0, 7, 4, true),
                line(0, 14, 5, false),
            ],
        );
        assert_eq!(
            texts(&out.answer.events),
            ["0@1", "--", "1@2", "1@3", "--", "0@4"]
        );
        let s = out.answer.summary.expect("summary");
        assert!(s.more && s.matched == 2, "{s:?}");
    }

    #[test]
    fn counts_add_up_and_listed_sources_go_out_once() {
        let count = |instance: u32, n: u64| {
            let source = Source::example("www-data/prod/hello", instance, "hello", Stream::Stdout);
            SearchEvent::Count(SourceCount {
                source: MatchSource {
                    source_id: format!("{:016x}", source.id()),
                    cluster: source.cluster.clone(),
                    job: "www-data/prod/hello".into(),
                    instance,
                    process: "hello".into(),
                    stream: Stream::Stdout,
                    host: source.host.clone(),
                },
                count: n,
            })
        };
        let answer = NodeAnswer {
            events: vec![count(0, 2), count(1, 5)],
            ..NodeAnswer::default()
        };
        let mut out = Collector::default();
        let mut fan = FanIn::of_page(
            &mut out,
            (Mode::Count, None, false, false),
            vec![answer],
            Vec::new(),
        );
        fan.send(SearchEvent::Start { jobs: Vec::new() });
        fan.send(count(0, 3));
        fan.send(SearchEvent::Summary(SearchSummary::default()));
        let counts: Vec<(u32, u64)> = out
            .answer
            .events
            .iter()
            .filter_map(|e| match e {
                SearchEvent::Count(c) => Some((c.source.instance, c.count)),
                _ => None,
            })
            .collect();
        let mut sorted = counts.clone();
        sorted.sort();
        assert_eq!(sorted, [(0, 5), (1, 5)]);
        assert_eq!(out.answer.summary.expect("summary").matched, 10);
    }
}
