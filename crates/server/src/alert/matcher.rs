//! Matching: every line this node applies is matched against the rules
//! that watch its source, as it is applied. A match becomes a [`Hit`]:
//! the line, where it lies in its source, and, when the line is part of
//! a Python traceback or a Java stack trace, the whole trace: a hit in a
//! trace waits (up to [`TRACE_WAIT`]) for the trace's end, so that the
//! notification it may cause carries it whole.
//!
//! Matching happens where the lines are; counting happens where the
//! group's window is (`window.rs`, on the group's node: `outbox.rs`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use cblogs_core::api::AlertGroup;
use cblogs_core::time::now_ns;
use cblogs_core::{LineView, Source};
use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

use super::rules::{GroupBy, Rule, Rules};
use super::trace::{self, TraceKind};
use crate::block::LineBlock;

/// How long a hit in a trace waits for the rest of it.
pub const TRACE_WAIT: Duration = Duration::from_millis(800);
/// Lines kept per watched source, to find the start of a trace a match is in.
const RECENT_LINES: usize = 64;
/// A source with no line for this long is forgotten (its recent lines and
/// the rules that watch it; both come back with a line).
const FORGET_SOURCE_AFTER: Duration = Duration::from_secs(600);
/// Most lines a trace holds, and most bytes of each.
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
    /// The trace the line is part of, whole: on the first hit of a trace
    /// only (the others of it have `in_trace` and no copy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trace: Vec<String>,
    #[serde(default)]
    pub in_trace: bool,
}

/// Hits of one rule in one trace of one source, waiting for its end.
struct Pending {
    hits: Vec<Hit>,
    source: u64,
    rule: usize,
    kind: TraceKind,
    trace: Vec<String>,
    deadline_ns: i64,
}

impl Pending {
    /// The hits, the first with the trace as it got.
    fn done(self) -> impl Iterator<Item = Hit> {
        let mut trace = Some(self.trace);
        self.hits.into_iter().map(move |mut h| {
            h.trace = trace.take().unwrap_or_default();
            h.in_trace = true;
            h
        })
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
    recent: HashMap<u64, VecDeque<String>>,
    /// When each source last had lines: sources gone quiet for
    /// [`FORGET_SOURCE_AFTER`] are forgotten (tasks come and go).
    last_seen: HashMap<u64, i64>,
    pending: Vec<Pending>,
    /// A batch's lines joined, reused from batch to batch.
    joined: Vec<u8>,
}

impl Matcher {
    pub fn new(rules: &Rules) -> Matcher {
        Matcher {
            set: pattern_set(rules),
            anchored: anchored(rules),
            watchers: HashMap::new(),
            recent: HashMap::new(),
            last_seen: HashMap::new(),
            pending: Vec::new(),
            joined: Vec::new(),
        }
    }

    /// New rules: the hits waiting for their trace are handed back as they
    /// are (their rule may be gone or another now).
    pub fn replace_rules(&mut self, rules: &Rules) -> Vec<Hit> {
        let recent = std::mem::take(&mut self.recent);
        let last_seen = std::mem::take(&mut self.last_seen);
        let waiting = std::mem::take(&mut self.pending);
        *self = Matcher::new(rules);
        self.recent = recent;
        self.last_seen = last_seen;
        waiting.into_iter().flat_map(Pending::done).collect()
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
        let mut waiting = self.pending.iter().any(|p| p.source == id);
        let mut out = Vec::new();
        let n = lines.len();
        let mut before: Option<Vec<String>> = None;
        for (i, l) in lines.lines().enumerate() {
            // Only a line that may match or go on a trace needs its text.
            if candidates.is_empty() && !waiting {
                continue;
            }
            let text = shown(l.bytes);
            if waiting {
                self.feed_pending(id, &text, &mut out);
            }
            for &r in &candidates {
                let rule = &rules.rules[r];
                if !rule.pattern.is_match(l.bytes) {
                    continue;
                }
                let hit = Hit {
                    rule: rule.name.clone(),
                    group: group_of(rule, source),
                    source: id,
                    end: l.offset + l.bytes.len() as u64 + u64::from(!l.flags.partial),
                    line: LineView::new(source, l.offset, l.time_ns, l.flags, l.bytes),
                    trace: Vec::new(),
                    in_trace: false,
                };
                // The lines before it: the earlier batches' last ones, then
                // this batch's up to it (made once a batch, and only when
                // the line may be in a trace).
                let prev = match i {
                    0 => self.recent.get(&id).and_then(|q| q.back().cloned()),
                    _ => lines.lines().nth(i - 1).map(|p| shown(p.bytes)),
                };
                let maybe_trace = trace::header(&text).is_some()
                    || prev.is_some_and(|p| {
                        trace::header(&p).is_some()
                            || trace::continues(TraceKind::Python, &p)
                            || trace::continues(TraceKind::Java, &p)
                    });
                if !maybe_trace {
                    out.push(hit);
                    continue;
                }
                let before = before.get_or_insert_with(|| {
                    let mut b: Vec<String> = self
                        .recent
                        .get(&id)
                        .map(|q| q.iter().cloned().collect())
                        .unwrap_or_default();
                    b.extend(lines.lines().map(|l| shown(l.bytes)));
                    b
                });
                let upto = before.len() - (n - i);
                let from = upto.saturating_sub(RECENT_LINES);
                let (trace, kind) = trace::look_back(&before[from..upto], &text);
                let trace = trace.iter().map(|l| trace_line(l)).collect();
                self.hold_for_trace(hit, r, trace, kind, &mut out);
            }
            waiting = self.pending.iter().any(|p| p.source == id);
        }
        // The batch's last lines, for a trace the next batch's match is in.
        self.last_seen.insert(id, now_ns());
        let recent = self.recent.entry(id).or_default();
        for l in lines.lines().skip(n.saturating_sub(RECENT_LINES)) {
            recent.push_back(shown(l.bytes));
            if recent.len() > RECENT_LINES {
                recent.pop_front();
            }
        }
        out
    }

    /// A hit in a trace that may go on waits for it (with the hits of the
    /// same rule already waiting on that trace); one that ends it, or is
    /// in none, is ready.
    fn hold_for_trace(
        &mut self,
        mut hit: Hit,
        rule: usize,
        trace: Vec<String>,
        kind: Option<TraceKind>,
        out: &mut Vec<Hit>,
    ) {
        let Some(kind) = kind else {
            hit.in_trace = !trace.is_empty();
            hit.trace = trace;
            out.push(hit);
            return;
        };
        let source = hit.source;
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.source == source && p.rule == rule)
        {
            p.hits.push(hit);
            return;
        }
        self.pending.push(Pending {
            hits: vec![hit],
            source,
            rule,
            kind,
            trace,
            deadline_ns: now_ns() + TRACE_WAIT.as_nanos() as i64,
        });
    }

    /// Gives a line of `source` to the traces that wait for it; a trace
    /// that it ends lets its hits go.
    fn feed_pending(&mut self, source: u64, text: &str, out: &mut Vec<Hit>) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.source != source {
                i += 1;
                continue;
            }
            let done = if trace::continues(p.kind, text) {
                p.trace.push(trace_line(text));
                p.trace.len() >= MAX_TRACE_LINES
            } else {
                // A Python traceback ends with its exception line.
                if p.kind == TraceKind::Python && trace::ends_python(text) {
                    p.trace.push(trace_line(text));
                }
                true
            };
            if done {
                out.extend(self.pending.remove(i).done());
            } else {
                i += 1;
            }
        }
    }

    /// The hits whose trace's wait is over; forgets quiet sources.
    pub fn tick(&mut self, now: i64) -> Vec<Hit> {
        let quiet = now - FORGET_SOURCE_AFTER.as_nanos() as i64;
        if self.last_seen.values().any(|t| *t < quiet) {
            self.last_seen.retain(|_, t| *t >= quiet);
            let seen = &self.last_seen;
            self.recent.retain(|id, _| seen.contains_key(id));
            self.watchers.retain(|id, _| seen.contains_key(id));
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline_ns <= now {
                out.extend(self.pending.remove(i).done());
            } else {
                i += 1;
            }
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

    fn batch(lines: &[&str]) -> LineBlock {
        let mut b = LineBlock::new();
        let mut offset = 0;
        for l in lines {
            b.push(offset, now_ns(), LineFlags::default(), l.as_bytes());
            offset += l.len() as u64 + 1;
        }
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
        let py = batch(&[
            "INFO before",
            "Traceback (most recent call last):",
            "ValueError: x",
        ]);
        let out = m.on_lines(&rules, &source("web"), &py);
        assert_eq!(
            out.len(),
            1,
            "in the middle of a batch, (?-m)^ still means the line's start"
        );
    }

    #[test]
    fn a_hit_in_a_trace_carries_it_whole_and_waits_for_its_end() {
        let rules = crate::alert::testing::rules(RULES);
        let mut m = Matcher::new(&rules);
        let py = batch(&[
            "INFO before",
            "Traceback (most recent call last):",
            "  File \"a.py\", line 1, in <module>",
            "ValueError: bad",
            "INFO after",
        ]);
        let out = m.on_lines(&rules, &source("web"), &py);
        assert_eq!(out.len(), 1, "the trace ended within the batch");
        assert_eq!(out[0].rule, "py");
        assert_eq!(out[0].trace.len(), 3, "{:?}", out[0].trace);
        assert_eq!(
            (out[0].line.offset, out[0].end),
            (12, 12 + 35),
            "the line's bytes, its newline included"
        );
        let java = batch(&[
            "Exception in thread \"main\" java.lang.IllegalStateException: boom",
            "\tat a.B.c(B.java:1)",
        ]);
        // The trace may go on in the next batch: it waits.
        assert!(m.on_lines(&rules, &source("worker"), &java).is_empty());
        let out = m.on_lines(&rules, &source("worker"), &batch(&["INFO next"]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].rule, "java");
        assert_eq!(out[0].trace.len(), 2);
        // A line that is in no trace goes at once, without one.
        let out = m.on_lines(&rules, &source("web"), &batch(&["Traceback is a word"]));
        assert_eq!(out.len(), 1);
        assert!(out[0].trace.is_empty(), "{:?}", out[0].trace);
        // A wait that is over lets its hit go.
        assert!(m.on_lines(&rules, &source("worker"), &java).is_empty());
        assert_eq!(m.tick(now_ns() + TRACE_WAIT.as_nanos() as i64).len(), 1);
    }
}
