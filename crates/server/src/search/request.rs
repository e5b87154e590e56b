//! One search as the endpoint checked it ([`SearchRequest`]), what it
//! produces ([`Mode`]), where a page ends ([`Cursor`]), and where its
//! events go ([`SearchSink`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::api::{SearchEvent, SearchProgress, SearchSummary};
use cblogs_core::pattern::Pattern;

use super::plan::Need;
use super::prefilter::Prefilter;
use super::workers::SearchWorkers;
use crate::index::{PartitionError, TermNeed, TimeRange};
use crate::read::LineFilter;

/// What a search produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Matching lines (and context).
    Lines,
    /// Matching lines per source.
    Count,
    /// Sources with a matching line.
    List,
}

/// One search, parsed and checked.
pub struct SearchRequest {
    /// `None`: every line matches (a histogram of volume).
    pub pattern: Option<Pattern>,
    /// Finds a block's candidate lines without the regex, when it can.
    pub prefilter: Option<Prefilter>,
    pub invert: bool,
    /// Regexes a selected line must also match (`and=`), and must not
    /// (`not=`): LogQL's chained line filters.
    pub and: Vec<Pattern>,
    pub not: Vec<Pattern>,
    pub filter: LineFilter,
    /// Matching lines to send at most (lines mode); `None` for all.
    pub limit: Option<usize>,
    pub before: usize,
    pub after: usize,
    /// `events=true`: each match with its whole event; `limit` counts
    /// events.
    pub events: bool,
    /// Matches at or before this (time, source id, offset) were shown by
    /// an earlier page.
    pub cursor: Option<Cursor>,
    pub mode: Mode,
    /// When to stop and answer with what was found.
    pub deadline: Instant,
    /// The configured time limit, to name it when it is reached.
    pub time_limit: Duration,
    /// The cores every search shares (`search.workers`).
    pub workers: Arc<SearchWorkers>,
    /// `explain=blocks`: the summary lists every stored block read.
    pub explain: bool,
    /// `progress=MS`: a `progress` event at most this often.
    pub progress: Option<Duration>,
    /// Matches carry the byte ranges the pattern matched (`matches`);
    /// `highlight=false` leaves them empty, for clients that print text
    /// alone: finding each match's ranges is a second regex search.
    pub highlight: bool,
}

impl SearchRequest {
    pub(super) fn range(&self) -> TimeRange {
        TimeRange {
            since_ns: self.filter.since_ns,
            until_ns: self.filter.until_ns,
        }
    }

    /// The index terms a block must hold to be read.
    pub(super) fn term_need(&self) -> TermNeed {
        let need = |p: &Pattern| match p.options().hir() {
            Ok(hir) => Need::of(&hir).terms(),
            Err(_) => TermNeed::Any,
        };
        // An inverted search wants lines *without* the literals: the
        // index cannot tell which blocks have none.
        let main = self.pattern.iter().filter(|_| !self.invert);
        TermNeed::all(main.chain(&self.and).map(need).collect())
    }

    /// Whether a line is selected.
    pub(super) fn selects(&self, line: &[u8]) -> bool {
        (self.pattern.as_ref().is_none_or(|p| p.is_match(line)) != self.invert)
            && self.and.iter().all(|p| p.is_match(line))
            && !self.not.iter().any(|p| p.is_match(line))
    }

    /// Whether every line in range is selected (a volume count): a
    /// block's line count then answers without reading it.
    pub(super) fn selects_every_line(&self) -> bool {
        self.pattern.is_none() && !self.invert && self.and.is_empty() && self.not.is_empty()
    }

    pub(super) fn spans(&self, line: &[u8]) -> Vec<[usize; 2]> {
        match &self.pattern {
            Some(p) if !self.invert && self.highlight => p.spans(line),
            _ => Vec::new(),
        }
    }

    pub(crate) fn time_limit_reason(&self) -> String {
        format!(
            "the search reached its time limit (search.max_query_secs = {} s); narrow it with a job, --since/--until or a more specific pattern",
            self.time_limit.as_secs()
        )
    }
}

/// A place in a search's order: (time, source id, offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub time_ns: i64,
    pub source: u64,
    pub offset: u64,
}

impl Cursor {
    /// `TIME.SOURCE.OFFSET` (source in hex), as summaries give it.
    pub fn parse(s: &str) -> Option<Cursor> {
        let mut parts = s.split('.');
        let c = Cursor {
            time_ns: parts.next()?.parse().ok()?,
            source: u64::from_str_radix(parts.next()?, 16).ok()?,
            offset: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(c)
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:016x}.{}", self.time_ns, self.source, self.offset)
    }
}

/// Where search events go. `false` from any call: the client is gone, stop.
pub trait SearchSink {
    fn send(&mut self, event: SearchEvent) -> bool;
    /// An event already serialized as JSON (lines are, by the workers).
    fn send_serialized(&mut self, json: &[u8]) -> bool;
    /// Everything sent so far should reach the client now.
    fn flush(&mut self) -> bool;
}

/// Sends `progress` events, at most every `every`.
pub(super) struct ProgressTicker {
    every: Option<Duration>,
    last: Instant,
    from_ns: Option<i64>,
}

impl ProgressTicker {
    pub(super) fn new(req: &SearchRequest) -> ProgressTicker {
        ProgressTicker {
            every: req.progress,
            last: Instant::now(),
            from_ns: None,
        }
    }

    /// After a block: `done` of `total` blocks, `matched` so far, every
    /// block up to `through_ns` read (its first, `first_ns`). False: the
    /// client is gone.
    pub(super) fn tick(
        &mut self,
        sink: &mut dyn SearchSink,
        (done, total): (usize, usize),
        matched: u64,
        (first_ns, through_ns): (i64, i64),
    ) -> bool {
        let Some(every) = self.every else {
            return true;
        };
        let from_ns = *self.from_ns.get_or_insert(first_ns);
        if self.last.elapsed() < every || done == total {
            return true;
        }
        self.last = Instant::now();
        sink.send(SearchEvent::Progress(SearchProgress {
            blocks_read: done as u64,
            blocks_total: total as u64,
            matched,
            from_ns,
            through_ns,
        })) && sink.flush()
    }
}

/// Marks a search that could not read the store as incomplete, saying why.
pub(super) fn storage_failed(summary: &mut SearchSummary, e: &PartitionError) {
    tracing::error!(error = %e, "search: cannot read the store");
    summary.truncated = true;
    summary.reason = Some(format!("storage error: {e}"));
}
