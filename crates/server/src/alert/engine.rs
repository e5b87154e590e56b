//! Evaluation: every ingested line is matched against the rules that watch
//! its source as it is applied; per rule and group, matching line times
//! sit in a sliding window. A group fires when its window holds `threshold`
//! lines, is notified again every `repeat` while it does, and resolves when
//! the window drops below the threshold.
//!
//! A firing waits (up to [`TRACE_WAIT`]) for the rest of a traceback or
//! stack trace its latest match starts, so the notification carries it whole.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cblogs_core::api::AlertGroup;
use cblogs_core::time::{format_rfc3339, now_ns};
use cblogs_core::{LineView, Source};
use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize};

use super::notify::Payload;
use super::rules::{GroupBy, Rule, Rules};
use super::trace::{self, TraceKind};
use crate::block::LineBlock;

/// How long a firing waits for the rest of a trace.
pub const TRACE_WAIT: Duration = Duration::from_millis(800);
/// Lines kept per watched source, to find the start of a trace a match is in.
const RECENT_LINES: usize = 64;
/// Matches kept per group (the count is exact up to this many).
const MAX_HITS: usize = 100_000;
/// A source with no line for this long is forgotten by the engine (its
/// recent lines and the rules that watch it; both come back with a line).
const FORGET_SOURCE_AFTER: Duration = Duration::from_secs(600);
/// Most lines a trace in a notification holds.
const MAX_TRACE_LINES: usize = 200;

/// What a group remembers; `firing`, `since` and `last_notified` survive a
/// restart (`state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupMemory {
    pub firing: bool,
    pub since_ns: Option<i64>,
    pub last_notified_ns: Option<i64>,
    /// After a restart the window is empty: a group that was firing is not
    /// resolved before one window has passed.
    #[serde(skip)]
    pub hold_until_ns: Option<i64>,
}

#[derive(Debug, Default)]
struct Group {
    memory: GroupMemory,
    /// Times of the matching lines in the window, oldest first.
    hits: VecDeque<i64>,
    /// The first matching line since the window was last empty, and the
    /// latest: what a notification shows (no copy of every match is kept).
    first: Option<Arc<LineView>>,
    latest: Option<Arc<LineView>>,
}

/// A notification waiting for the end of a trace.
struct Pending {
    payload: Payload,
    source: u64,
    kind: Option<TraceKind>,
    deadline_ns: i64,
}

/// What the engine asks to be sent.
/// (By rule name, not index: a reload may come between.)
pub struct Outgoing {
    pub payload: Payload,
}

pub struct Engine {
    pub rules: Rules,
    /// Every rule's pattern in one set: a line is matched against all the
    /// rules in one pass, not one regex per rule.
    set: Option<RegexSet>,
    groups: Vec<BTreeMap<AlertGroup, Group>>,
    /// Per source id: the rules that watch it (filled on first sight).
    watchers: HashMap<u64, Vec<usize>>,
    recent: HashMap<u64, VecDeque<String>>,
    /// When each source last had lines: sources gone quiet for
    /// [`FORGET_SOURCE_AFTER`] are forgotten (tasks come and go).
    last_seen: HashMap<u64, i64>,
    pending: Vec<Pending>,
    base_url: String,
    /// Something worth saving changed.
    pub dirty: bool,
    pub silences: Vec<cblogs_core::api::Silence>,
    /// A batch's lines joined, reused from batch to batch.
    joined: Vec<u8>,
    /// Per rule: its pattern anchors at the text's start or end even in
    /// multi-line mode (`\A`, `\z`, `(?-m)^`), which in the joined batch
    /// means its first or last line only: such a rule is checked on every line.
    anchored: Vec<bool>,
    last_fired: Vec<Option<i64>>,
}

impl Engine {
    pub fn new(rules: Rules, base_url: &str) -> Engine {
        let n = rules.rules.len();
        Engine {
            set: pattern_set(&rules),
            rules,
            groups: (0..n).map(|_| BTreeMap::new()).collect(),
            watchers: HashMap::new(),
            recent: HashMap::new(),
            last_seen: HashMap::new(),
            pending: Vec::new(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            dirty: false,
            last_fired: vec![None; n],
            silences: Vec::new(),
            joined: Vec::new(),
            anchored: Vec::new(),
        }
        .with_anchors()
    }

    /// New rules; groups of rules that keep their name keep their state.
    /// Firings still waiting for their trace are handed back, to be sent.
    pub fn replace_rules(&mut self, rules: Rules) -> Vec<Outgoing> {
        let mut old: HashMap<String, BTreeMap<AlertGroup, Group>> = self
            .rules
            .rules
            .iter()
            .map(|r| r.name.clone())
            .zip(std::mem::take(&mut self.groups))
            .collect();
        self.groups = rules
            .rules
            .iter()
            .map(|r| old.remove(&r.name).unwrap_or_default())
            .collect();
        self.last_fired = vec![None; rules.rules.len()];
        self.set = pattern_set(&rules);
        self.rules = rules;
        self.anchored = anchored(&self.rules);
        self.watchers.clear();
        self.dirty = true;
        self.pending
            .drain(..)
            .map(|p| Outgoing { payload: p.payload })
            .collect()
    }

    /// Restores what `state.json` said: rule name → group → memory.
    pub fn restore(&mut self, saved: BTreeMap<String, Vec<(AlertGroup, GroupMemory)>>) {
        let now = now_ns();
        for (i, rule) in self.rules.rules.iter().enumerate() {
            for (group, mut memory) in saved.get(&rule.name).cloned().unwrap_or_default() {
                if memory.firing {
                    memory.hold_until_ns = Some(now + rule.window.as_nanos() as i64);
                }
                self.groups[i].insert(
                    group,
                    Group {
                        memory,
                        hits: VecDeque::new(),
                        first: None,
                        latest: None,
                    },
                );
            }
        }
    }

    /// What `state.json` holds.
    pub fn saved(&self) -> BTreeMap<String, Vec<(AlertGroup, GroupMemory)>> {
        self.rules
            .rules
            .iter()
            .zip(&self.groups)
            .map(|(r, groups)| {
                let kept = groups
                    .iter()
                    .filter(|(_, g)| g.memory.firing || g.memory.last_notified_ns.is_some())
                    .map(|(k, g)| (k.clone(), g.memory.clone()))
                    .collect();
                (r.name.clone(), kept)
            })
            .collect()
    }

    fn watchers(&mut self, source: &Source) -> &[usize] {
        let rules = &self.rules.rules;
        self.watchers.entry(source.id()).or_insert_with(|| {
            (0..rules.len())
                .filter(|&i| rules[i].watches(source))
                .collect()
        })
    }

    /// Matches one applied batch of lines; returns notifications due now.
    ///
    /// Most batches match no rule, so the batch is first matched whole:
    /// its lines joined by `\n`, against the set compiled in multi-line
    /// mode (`^`/`$` at line ends). A rule that matches a line matches
    /// there too, so a rule the set does not report is skipped; the rules
    /// it does report are checked line by line with their own pattern.
    pub fn on_lines(&mut self, source: &Source, lines: &LineBlock) -> Vec<Outgoing> {
        let watchers = self.watchers(source).to_vec();
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
        let shown = |b: &[u8]| {
            let t = String::from_utf8_lossy(b);
            t.strip_suffix('\r').unwrap_or(&t).to_owned()
        };
        for (i, l) in lines.lines().enumerate() {
            // Only a line that may match or go on a trace needs its text.
            if candidates.is_empty() && !waiting {
                continue;
            }
            let text = shown(l.bytes);
            if waiting {
                self.feed_pending(id, &text, &mut out);
                waiting = self.pending.iter().any(|p| p.source == id);
            }
            for &r in &candidates {
                if !self.rules.rules[r].pattern.is_match(l.bytes) {
                    continue;
                }
                let view = Arc::new(LineView::new(source, l.offset, l.time_ns, l.flags, l.bytes));
                let before: Vec<String> = lines
                    .lines()
                    .skip(i.saturating_sub(RECENT_LINES))
                    .take(i.min(RECENT_LINES))
                    .map(|b| shown(b.bytes))
                    .collect();
                self.hit(r, source, view, &text, &before, &mut out);
                // A firing may now wait for this trace's next lines.
                waiting = self.pending.iter().any(|p| p.source == id);
            }
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

    fn group_of(rule: &Rule, source: &Source) -> AlertGroup {
        AlertGroup {
            job: source.job_key().to_string(),
            instance: (rule.group_by == GroupBy::JobInstance).then_some(source.instance),
        }
    }

    fn hit(
        &mut self,
        r: usize,
        source: &Source,
        view: Arc<LineView>,
        text: &str,
        before_in_batch: &[String],
        out: &mut Vec<Outgoing>,
    ) {
        let rule = &self.rules.rules[r];
        let key = Self::group_of(rule, source);
        let group = self.groups[r].entry(key.clone()).or_default();
        if group.hits.is_empty() {
            group.first = Some(view.clone());
        }
        group.hits.push_back(view.time_ns);
        group.latest = Some(view);
        if group.hits.len() > MAX_HITS {
            group.hits.pop_front();
        }
        let count = group.hits.len() as u64;
        if group.memory.firing || count < rule.threshold {
            return;
        }
        let now = now_ns();
        group.memory.firing = true;
        group.memory.since_ns = Some(now);
        group.memory.last_notified_ns = Some(now);
        group.memory.hold_until_ns = None;
        self.dirty = true;
        self.last_fired[r] = Some(now);
        let payload = self.payload(r, &key, "firing");
        // Wait for the rest of a trace the match starts or is in.
        // The lines before it: the earlier batches' last ones, then this
        // batch's up to it.
        let mut before: Vec<String> = self
            .recent
            .get(&source.id())
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default();
        before.extend(before_in_batch.iter().cloned());
        let from = before.len().saturating_sub(RECENT_LINES);
        let before = &before[from..];
        let (lines, kind) = trace::look_back(before, text);
        let mut pending = Pending {
            payload,
            source: source.id(),
            kind,
            deadline_ns: now + TRACE_WAIT.as_nanos() as i64,
        };
        pending.payload.trace = lines;
        if kind.is_none() {
            out.push(Outgoing {
                payload: pending.payload,
            });
        } else {
            self.pending.push(pending);
        }
    }

    /// Gives a line of `source` to the traces that wait for it; a trace that
    /// it ends is sent.
    fn feed_pending(&mut self, source: u64, text: &str, out: &mut Vec<Outgoing>) {
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            if p.source != source {
                i += 1;
                continue;
            }
            let Some(kind) = p.kind else {
                i += 1;
                continue;
            };
            let done = if trace::continues(kind, text) {
                p.payload.trace.push(text.to_owned());
                p.payload.trace.len() >= MAX_TRACE_LINES
            } else {
                // A Python traceback ends with its exception line.
                if kind == TraceKind::Python && trace::ends_python(text) {
                    p.payload.trace.push(text.to_owned());
                }
                true
            };
            if done {
                let p = self.pending.remove(i);
                out.push(Outgoing { payload: p.payload });
            } else {
                i += 1;
            }
        }
    }

    fn payload(&self, r: usize, group: &AlertGroup, status: &'static str) -> Payload {
        let rule = &self.rules.rules[r];
        let g = self.groups[r].get(group);
        let first = g.and_then(|g| g.first.as_deref()).cloned();
        let latest = g.and_then(|g| g.latest.as_deref()).cloned();
        let count = g.map_or(0, |g| g.hits.len() as u64);
        let since = g.and_then(|g| g.memory.since_ns).unwrap_or_else(now_ns);
        let mut link = url_params(&[
            ("q", rule.pattern.options().pattern.as_str()),
            ("job", &group.job),
        ]);
        if let Some(i) = group.instance {
            link.push_str(&format!("&instance={i}"));
        }
        if rule.pattern.options().ignore_case {
            link.push_str("&i=1");
        }
        Payload {
            status,
            rule: rule.name.clone(),
            severity: rule.severity,
            labels: rule.labels.clone(),
            group: group.clone(),
            count,
            threshold: rule.threshold,
            window_secs: rule.window.as_secs(),
            first,
            latest,
            trace: Vec::new(),
            link: format!("{}/?{link}&range={}", self.base_url, range_for(rule.window)),
            started_at: format_rfc3339(since),
            sent_at: format_rfc3339(now_ns()),
        }
    }

    /// Expires windows, resolves, repeats, and sends traces whose wait is
    /// over; what is due now.
    pub fn tick(&mut self) -> Vec<Outgoing> {
        let now = now_ns();
        let quiet = now - FORGET_SOURCE_AFTER.as_nanos() as i64;
        if self.last_seen.values().any(|t| *t < quiet) {
            self.last_seen.retain(|_, t| *t >= quiet);
            let seen = &self.last_seen;
            self.recent.retain(|id, _| seen.contains_key(id));
            self.watchers.retain(|id, _| seen.contains_key(id));
        }
        let before = self.silences.len();
        self.silences.retain(|s| s.until_ns > now);
        self.dirty |= self.silences.len() != before;
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].deadline_ns <= now {
                let p = self.pending.remove(i);
                out.push(Outgoing { payload: p.payload });
            } else {
                i += 1;
            }
        }
        for r in 0..self.rules.rules.len() {
            let rule = &self.rules.rules[r];
            let (window, threshold, repeat) = (
                rule.window.as_nanos() as i64,
                rule.threshold,
                rule.repeat.as_nanos() as i64,
            );
            let mut due = Vec::new();
            for (key, g) in self.groups[r].iter_mut() {
                while g.hits.front().is_some_and(|t| *t < now - window) {
                    g.hits.pop_front();
                }
                if !g.memory.firing {
                    continue;
                }
                let held = g.memory.hold_until_ns.is_some_and(|h| now < h);
                if (g.hits.len() as u64) < threshold && !held {
                    g.memory.firing = false;
                    g.memory.hold_until_ns = None;
                    due.push((key.clone(), "resolved"));
                } else if g.memory.last_notified_ns.is_some_and(|t| now - t >= repeat)
                    && (g.hits.len() as u64) >= threshold
                {
                    g.memory.last_notified_ns = Some(now);
                    due.push((key.clone(), "firing"));
                }
            }
            for (key, status) in due {
                self.dirty = true;
                if status == "firing" {
                    self.last_fired[r] = Some(now);
                }
                let payload = self.payload(r, &key, status);
                out.push(Outgoing { payload });
            }
            self.groups[r].retain(|_, g| g.memory.firing || !g.hits.is_empty());
        }
        out
    }

    /// Whether a silence holds this notification back. Resolves always go:
    /// an incident opened before the silence must still be closed.
    pub fn silenced(&self, o: &Outgoing) -> bool {
        if o.payload.status == "resolved" {
            return false;
        }
        let now = now_ns();
        self.silences
            .iter()
            .any(|s| s.covers(&o.payload.rule, &o.payload.group, now))
    }

    /// Every rule with its groups, for the API.
    pub fn states(&self) -> Vec<cblogs_core::api::AlertRuleState> {
        let time = |t: Option<i64>| t.map(format_rfc3339);
        self.rules
            .rules
            .iter()
            .zip(&self.groups)
            .zip(&self.last_fired)
            .map(|((r, groups), fired)| cblogs_core::api::AlertRuleState {
                name: r.name.clone(),
                severity: serde_json::to_value(r.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                threshold: r.threshold,
                window_secs: r.window.as_secs(),
                groups: groups
                    .iter()
                    .map(|(k, g)| cblogs_core::api::AlertGroupState {
                        group: k.clone(),
                        state: if g.memory.firing { "firing" } else { "ok" }.into(),
                        count: g.hits.len() as u64,
                        since: time(g.memory.since_ns.filter(|_| g.memory.firing)),
                        last_notified: time(g.memory.last_notified_ns),
                    })
                    .collect(),
                last_fired: time(fired.or_else(|| {
                    groups
                        .values()
                        .filter_map(|g| g.memory.last_notified_ns)
                        .max()
                })),
            })
            .collect()
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

impl Engine {
    fn with_anchors(mut self) -> Engine {
        self.anchored = anchored(&self.rules);
        self
    }
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

/// The web page's range that covers a window.
fn range_for(window: Duration) -> &'static str {
    match window.as_secs() {
        0..=900 => "15m",
        901..=3600 => "1h",
        3601..=21_600 => "6h",
        21_601..=86_400 => "24h",
        _ => "7d",
    }
}

fn url_params(pairs: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
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
[[notifier]]
name = "hook"
kind = "webhook"
url = "http://127.0.0.1:9/"
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
        let rules = RULES.replace("pattern = '^Traceback'", "pattern = '(?-m)^Traceback'");
        let rules = Rules::parse(&rules, "test", 1 << 20).unwrap();
        let mut e = Engine::new(rules, "http://x");
        let py = batch(&[
            "INFO before",
            "Traceback (most recent call last):",
            "ValueError: x",
        ]);
        let out = e.on_lines(&source("web"), &py);
        assert_eq!(
            out.len(),
            1,
            "in the middle of a batch, (?-m)^ still means the line's start"
        );
    }

    #[test]
    fn each_rule_that_matches_a_line_of_a_batch_fires_with_its_trace() {
        let rules = Rules::parse(RULES, "test", 1 << 20).unwrap();
        let mut e = Engine::new(rules, "http://x");
        let py = batch(&[
            "INFO before",
            "Traceback (most recent call last):",
            "  File \"a.py\", line 1, in <module>",
            "ValueError: bad",
            "INFO after",
        ]);
        let out = e.on_lines(&source("web"), &py);
        assert_eq!(out.len(), 1, "the trace ended within the batch");
        assert_eq!(out[0].payload.rule, "py");
        assert_eq!(out[0].payload.trace.len(), 3, "{:?}", out[0].payload.trace);
        let java = batch(&[
            "Exception in thread \"main\" java.lang.IllegalStateException: boom",
            "\tat a.B.c(B.java:1)",
        ]);
        // The trace may go on in the next batch: it waits.
        assert!(e.on_lines(&source("worker"), &java).is_empty());
        let out = e.on_lines(&source("worker"), &batch(&["INFO next"]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload.rule, "java");
        assert_eq!(out[0].payload.trace.len(), 2);
        let none = e.on_lines(
            &source("web"),
            &batch(&["INFO quiet", "Traceback is a word here"]),
        );
        assert!(
            none.is_empty(),
            "already firing: counted, not notified again"
        );
    }
}
