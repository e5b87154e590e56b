//! Matching: every line this node applies is matched against the rules
//! that watch its source, as it is applied. A match becomes a [`Hit`]:
//! the line, where it lies in its source, and the whole event it is in
//! (its opening line and the lines that continue it: a log record and its
//! Python traceback or Java stack trace, as ingest marked them,
//! `multiline/`). A rule counts an event once, however many of its lines
//! match: the first match is the hit. A hit waits for its event to end
//! (the source's next opening line, or [`EVENT_WAIT`] without one) so
//! that the notification it may cause carries the event whole.
//!
//! Matching happens where the lines are; counting happens where the
//! group's window is (`window.rs`, on the group's node: `outbox.rs`).

use std::collections::HashMap;
use std::time::Duration;

use cblogs_core::api::AlertGroup;
use cblogs_core::time::now_ns;
use cblogs_core::{LineView, Source};
use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

use super::rules::{GroupBy, Rule, Rules};
use crate::block::LineBlock;

/// How long a hit waits for more of its event after the event's last line.
pub const EVENT_WAIT: Duration = Duration::from_millis(800);
/// A source with no line for this long is forgotten (its open event and
/// the rules that watch it; both come back with a line).
const FORGET_SOURCE_AFTER: Duration = Duration::from_secs(600);
/// Most lines of an event a hit carries (its first ones), and most bytes
/// of each.
const MAX_TRACE_LINES: usize = 200;
const MAX_TRACE_LINE: usize = 4096;

/// One line that matched one rule: what its group's window counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    pub rule: String,
    pub group: AlertGroup,
    /// [`Source::id`]; with the line's `[offset, end)` it names the bytes
    /// that matched, whichever node read them: a line sent again after a
    /// failover is the same hit (rule 7 of issue 18).
    pub source: u64,
    pub end: u64,
    pub line: LineView,
    /// The event the line is in, whole (its opening line first), when it
    /// has more than one line: a message and its trace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<String>,
    /// The line is in an event of several lines: `trace` holds it. (A node
    /// of the version before sent it without `trace` on all but an
    /// event's first hit; `window.rs` keeps the trace it had for those.)
    #[serde(default)]
    pub in_trace: bool,
}

/// A watched source's event that is still open: its lines from earlier
/// batches, and the hits in it waiting for its end.
#[derive(Default)]
struct OpenEvent {
    lines: Vec<String>,
    /// The rules that matched in it, by name (a reload keeps it): each
    /// counts it once.
    matched: Vec<String>,
    waiting: Vec<Hit>,
    deadline_ns: i64,
}

impl OpenEvent {
    /// Its waiting hits, each with the event as it got (`rest`: its lines
    /// in the batch at hand).
    fn release<'a>(&mut self, rest: impl Iterator<Item = &'a [u8]>) -> Vec<Hit> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        self.add(rest);
        let whole = self.lines.len() > 1;
        let trace = if whole {
            self.lines.clone()
        } else {
            Vec::new()
        };
        std::mem::take(&mut self.waiting)
            .into_iter()
            .map(|mut h| {
                h.trace = trace.clone();
                h.in_trace = whole;
                h
            })
            .collect()
    }

    fn add<'a>(&mut self, lines: impl Iterator<Item = &'a [u8]>) {
        let room = MAX_TRACE_LINES.saturating_sub(self.lines.len());
        self.lines
            .extend(lines.take(room).map(|l| trace_line(&shown(l))));
    }
}

pub struct Matcher {
    /// Every rule's pattern in one set: a line is matched against all the
    /// rules in one pass, not one regex per rule.
    set: Option<RegexSet>,
    /// Per rule: its pattern anchors at the text's start or end even in
    /// multi-line mode (`\A`, `\z`, `(?-m)^`), which in the joined batch
    /// means its first or last line only: such a rule is checked on every line.
    anchored: Vec<bool>,
    /// Per source id: the rules that watch it (filled on first sight).
    watchers: HashMap<u64, Vec<usize>>,
    /// Per watched source: the event its last line is in.
    open: HashMap<u64, OpenEvent>,
    /// When each source last had lines: sources gone quiet for
    /// [`FORGET_SOURCE_AFTER`] are forgotten (tasks come and go).
    last_seen: HashMap<u64, i64>,
    /// A batch's lines joined, reused from batch to batch.
    joined: Vec<u8>,
}

impl Matcher {
    pub fn new(rules: &Rules) -> Matcher {
        Matcher {
            set: pattern_set(rules),
            anchored: anchored(rules),
            watchers: HashMap::new(),
            open: HashMap::new(),
            last_seen: HashMap::new(),
            joined: Vec::new(),
        }
    }

    /// New rules: the hits waiting for their event are handed back as
    /// they are (their rule may be gone or another now).
    pub fn replace_rules(&mut self, rules: &Rules) -> Vec<Hit> {
        let mut open = std::mem::take(&mut self.open);
        let last_seen = std::mem::take(&mut self.last_seen);
        *self = Matcher::new(rules);
        let mut out = Vec::new();
        for event in open.values_mut() {
            out.extend(event.release(std::iter::empty()));
        }
        self.open = open;
        self.last_seen = last_seen;
        out
    }

    fn watchers(&mut self, rules: &Rules, source: &Source) -> &[usize] {
        self.watchers.entry(source.id()).or_insert_with(|| {
            (0..rules.rules.len())
                .filter(|&i| rules.rules[i].watches(source))
                .collect()
        })
    }

    /// Matches one applied batch of lines: the hits ready now.
    ///
    /// Most batches match no rule, so the batch is first matched whole:
    /// its lines joined by `\n`, against the set compiled in multi-line
    /// mode (`^`/`$` at line ends). A rule that matches a line matches
    /// there too, so a rule the set does not report is skipped; the rules
    /// it does report are checked line by line with their own pattern.
    pub fn on_lines(&mut self, rules: &Rules, source: &Source, lines: &LineBlock) -> Vec<Hit> {
        let watchers = self.watchers(rules, source).to_vec();
        if watchers.is_empty() {
            return Vec::new();
        }
        let id = source.id();
        let candidates: Vec<usize> = match &self.set {
            Some(set) => {
                self.joined.clear();
                for l in lines.lines() {
                    self.joined.extend_from_slice(l.bytes);
                    self.joined.push(b'\n');
                }
                let matched = set.matches(&self.joined);
                let anchored = &self.anchored;
                watchers
                    .into_iter()
                    .filter(|&r| matched.matched(r) || anchored[r])
                    .collect()
            }
            None => Vec::new(),
        };
        let mut out = Vec::new();
        let mut event = self.open.remove(&id).unwrap_or_default();
        // Where the open event's lines in this batch start.
        let mut start = 0;
        for (i, l) in lines.lines().enumerate() {
            if !l.flags.continues {
                let rest = lines.lines().skip(start).take(i - start).map(|l| l.bytes);
                out.extend(event.release(rest));
                event = OpenEvent::default();
                start = i;
            }
            for &r in &candidates {
                let rule = &rules.rules[r];
                if event.matched.contains(&rule.name) || !rule.pattern.is_match(l.bytes) {
                    continue;
                }
                event.matched.push(rule.name.clone());
                event.waiting.push(Hit {
                    rule: rule.name.clone(),
                    group: group_of(rule, source),
                    source: id,
                    end: l.offset + l.bytes.len() as u64 + u64::from(!l.flags.partial),
                    line: LineView::new(source, l.offset, l.time_ns, l.flags, l.bytes),
                    trace: Vec::new(),
                    in_trace: false,
                });
            }
        }
        // The open event's lines of this batch, for a hit in it now or in
        // the next batch; its hits wait for more of it.
        event.add(lines.lines().skip(start).map(|l| l.bytes));
        let now = now_ns();
        event.deadline_ns = now + EVENT_WAIT.as_nanos() as i64;
        self.open.insert(id, event);
        self.last_seen.insert(id, now);
        out
    }

    /// The hits whose event's wait is over; forgets quiet sources.
    pub fn tick(&mut self, now: i64) -> Vec<Hit> {
        let mut out = Vec::new();
        for event in self.open.values_mut() {
            if event.deadline_ns <= now {
                out.extend(event.release(std::iter::empty()));
            }
        }
        let quiet = now - FORGET_SOURCE_AFTER.as_nanos() as i64;
        if self.last_seen.values().any(|t| *t < quiet) {
            self.last_seen.retain(|_, t| *t >= quiet);
            let seen = &self.last_seen;
            self.open.retain(|id, _| seen.contains_key(id));
            self.watchers.retain(|id, _| seen.contains_key(id));
        }
        out
    }
}

/// A line of a trace, cut at [`MAX_TRACE_LINE`] bytes: a trace travels
/// between nodes and into notifications.
fn trace_line(text: &str) -> String {
    let mut end = text.len().min(MAX_TRACE_LINE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

fn shown(b: &[u8]) -> String {
    let t = String::from_utf8_lossy(b);
    t.strip_suffix('\r').unwrap_or(&t).to_owned()
}

/// The group a rule counts a line of `source` in.
pub fn group_of(rule: &Rule, source: &Source) -> AlertGroup {
    AlertGroup {
        job: source.job_key().to_string(),
        instance: (rule.group_by == GroupBy::JobInstance).then_some(source.instance),
    }
}

/// Per rule: whether its pattern, read in multi-line mode as the set reads
/// it, still anchors at the start or end of the whole text.
fn anchored(rules: &Rules) -> Vec<bool> {
    fn walk(h: &regex_syntax::hir::Hir) -> bool {
        use regex_syntax::hir::{HirKind, Look};
        match h.kind() {
            HirKind::Look(Look::Start | Look::End) => true,
            HirKind::Capture(c) => walk(&c.sub),
            HirKind::Repetition(r) => walk(&r.sub),
            HirKind::Concat(hs) | HirKind::Alternation(hs) => hs.iter().any(walk),
            _ => false,
        }
    }
    rules
        .rules
        .iter()
        .map(|r| {
            let o = r.pattern.options();
            regex_syntax::ParserBuilder::new()
                .utf8(false)
                .case_insensitive(o.ignore_case)
                .multi_line(true)
                .build()
                .parse(&o.expression())
                .map_or(true, |h| walk(&h))
        })
        .collect()
}

/// All the rules' patterns as one set, in rule order. The patterns were
/// compiled one by one within the size limit already; a set too big for
/// the regex crate falls back to nothing matching, loudly.
fn pattern_set(rules: &Rules) -> Option<RegexSet> {
    let expressions = rules.rules.iter().map(|r| {
        let o = r.pattern.options();
        if o.ignore_case {
            format!("(?i:{})", o.expression())
        } else {
            o.expression()
        }
    });
    match RegexSetBuilder::new(expressions)
        .multi_line(true)
        .size_limit(256 << 20)
        .build()
    {
        Ok(set) => Some(set),
        Err(e) => {
            tracing::error!(error = %e, "the alert rules' patterns do not fit in one set; no rule will match");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::{LineFlags, Stream};

    fn source(process: &str) -> Source {
        Source::example("www-data/prod/hello", 0, process, Stream::Stderr)
    }

    /// Lines as ingest marks them (`multiline/`).
    fn batch_of(source: &Source, lines: &[&str]) -> LineBlock {
        let mut b = LineBlock::new();
        let mut offset = 0;
        for l in lines {
            b.push(offset, now_ns(), LineFlags::default(), l.as_bytes());
            offset += l.len() as u64 + 1;
        }
        let rules = std::sync::Arc::new(crate::multiline::MultilineRules::default());
        crate::multiline::EventMarker::new(rules).mark(source, &mut b, false, false);
        b
    }

    const RULES: &str = r#"
[[rule]]
name = "py"
jobs = ["www-data/prod/hello"]
pattern = '^Traceback'
threshold = 1
window = "1m"
notify = ["hook"]
[[rule]]
name = "java"
jobs = ["www-data/prod/hello"]
pattern = 'Exception in thread'
threshold = 1
window = "1m"
notify = ["hook"]
"#;

    #[test]
    fn a_text_anchored_rule_is_checked_on_every_line() {
        let rules = crate::alert::testing::rules(
            &RULES.replace("pattern = '^Traceback'", "pattern = '(?-m)^Traceback'"),
        );
        let mut m = Matcher::new(&rules);
        let py = batch_of(
            &source("web"),
            &[
                "INFO before",
                "Traceback (most recent call last):",
                "ValueError: x",
            ],
        );
        let out = m.on_lines(&rules, &source("web"), &py);
        assert!(out.is_empty(), "its event may go on");
        let out = m.tick(now_ns() + EVENT_WAIT.as_nanos() as i64);
        assert_eq!(
            out.len(),
            1,
            "in the middle of a batch, (?-m)^ still means the line's start"
        );
    }

    #[test]
    fn a_hit_carries_its_whole_event_and_waits_for_its_end() {
        let rules = crate::alert::testing::rules(RULES);
        let mut m = Matcher::new(&rules);
        let web = source("web");
        let py = batch_of(
            &web,
            &[
                "INFO before",
                "ERROR:app:checkout failed",
                "Traceback (most recent call last):",
                "  File \"a.py\", line 1, in <module>",
                "ValueError: bad",
                "INFO after",
            ],
        );
        let out = m.on_lines(&rules, &web, &py);
        assert_eq!(out.len(), 1, "the event ended within the batch");
        assert_eq!(out[0].rule, "py");
        assert_eq!(
            out[0].trace,
            [
                "ERROR:app:checkout failed",
                "Traceback (most recent call last):",
                "  File \"a.py\", line 1, in <module>",
                "ValueError: bad"
            ],
            "the event from its opening line"
        );
        assert_eq!(
            (out[0].line.offset, out[0].end),
            (38, 38 + 35),
            "the line's bytes, its newline included"
        );
        let worker = source("worker");
        let java = [
            "Exception in thread \"main\" java.lang.IllegalStateException: boom",
            "\tat a.B.c(B.java:1)",
            "Caused by: java.lang.IllegalStateException: Exception in thread \"x\"",
        ];
        // The event may go on in the next batch: it waits.
        assert!(m
            .on_lines(&rules, &worker, &batch_of(&worker, &java))
            .is_empty());
        let mut next = batch_of(&worker, &["INFO next"]);
        next.shift(1000);
        let out = m.on_lines(&rules, &worker, &next);
        assert_eq!(out.len(), 1, "two matching lines, one event: one hit");
        assert_eq!(out[0].rule, "java");
        assert_eq!(out[0].trace.len(), 3);
        // A line in an event of its own goes with no trace.
        let out = m.on_lines(&rules, &web, &batch_of(&web, &["Traceback is a word"]));
        assert!(out.is_empty(), "it waits for the next line");
        let out = m.tick(now_ns() + EVENT_WAIT.as_nanos() as i64);
        assert_eq!(out.len(), 1);
        assert!(out[0].trace.is_empty(), "{:?}", out[0].trace);
    }
}
