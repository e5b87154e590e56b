//! Windows: per rule and group, the hits of the last `window`, on the
//! node that owns the group. A group fires when its window holds
//! `threshold` hits, is notified again every `repeat` while it does, and
//! resolves when the window drops below the threshold.
//!
//! Hits come from every node that ingests lines of the group, and the
//! same bytes may come twice: a node that dies before publishing has its
//! lines read and sent again to the source's next node, which matches
//! them again (with a new read time, and maybe cut differently). So a hit
//! counts once per byte range of its source: one that overlaps a counted
//! hit's `[offset, end)` is dropped (rule 7 of issue 18).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cblogs_core::api::{AlertGroup, AlertGroupState, AlertRuleState};
use cblogs_core::time::{format_rfc3339, now_ns};
use cblogs_core::LineView;
use serde::{Deserialize, Serialize};

use super::matcher::Hit;
use super::notify::Payload;
use super::rules::Rules;

/// Hits kept per group (the count is exact up to this many).
const MAX_HITS: usize = 100_000;

/// What a group remembers beyond its window: what the object store keeps
/// (`shared.rs`), so that it survives its node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupMemory {
    pub firing: bool,
    pub since_ns: Option<i64>,
    pub last_notified_ns: Option<i64>,
    /// When it last changed: of two memories of a group, the newer wins.
    #[serde(default)]
    pub updated_ns: i64,
    /// Taken over (a restart, another node's loss) the window is empty: a
    /// group that was firing is not resolved before one window has passed.
    #[serde(skip)]
    pub hold_until_ns: Option<i64>,
}

#[derive(Debug, Default)]
struct Group {
    memory: GroupMemory,
    /// The hits in the window, by (time, source, offset).
    hits: BTreeSet<(i64, u64, u64)>,
    /// Per source, the counted hits' byte ranges (offset → end): they
    /// never overlap.
    counted: HashMap<u64, BTreeMap<u64, u64>>,
    /// The first matching line since the window was last empty, and the
    /// latest: what a notification shows (no copy of every match is kept).
    first: Option<Arc<LineView>>,
    latest: Option<Arc<LineView>>,
    /// The event the latest hit is in, when it has more lines than one
    /// (empty otherwise), and its source.
    trace: Vec<String>,
    trace_source: u64,
    /// Its memory is in the object store (written, or read from there).
    written: bool,
}

impl Group {
    /// Counts `hit` unless its bytes were counted already.
    fn count(&mut self, hit: &Hit) -> bool {
        let counted = self.counted.entry(hit.source).or_default();
        let overlaps = counted
            .range(..hit.end)
            .next_back()
            .is_some_and(|(_, end)| *end > hit.line.offset);
        if overlaps {
            return false;
        }
        counted.insert(hit.line.offset, hit.end);
        self.hits
            .insert((hit.line.time_ns, hit.source, hit.line.offset));
        let view = Arc::new(hit.line.clone());
        if self.first.is_none() {
            self.first = Some(view.clone());
        }
        self.latest = Some(view);
        if !hit.trace.is_empty() {
            self.trace = hit.trace.clone();
            self.trace_source = hit.source;
        } else if !hit.in_trace || hit.source != self.trace_source {
            // In no trace, or in one whose first hit this window lacks.
            self.trace.clear();
        }
        if self.hits.len() > MAX_HITS {
            self.forget_oldest();
        }
        true
    }

    fn forget_oldest(&mut self) {
        if let Some((_, source, offset)) = self.hits.pop_first() {
            if let Some(c) = self.counted.get_mut(&source) {
                c.remove(&offset);
                if c.is_empty() {
                    self.counted.remove(&source);
                }
            }
        }
    }

    /// Drops the hits older than `oldest`.
    fn expire(&mut self, oldest: i64) {
        while self.hits.first().is_some_and(|(t, _, _)| *t < oldest) {
            self.forget_oldest();
        }
        if self.hits.is_empty() {
            self.first = None;
            self.latest = None;
            self.trace.clear();
        }
    }
}

/// A notification to send. (By rule name, not index: a reload may come between.)
pub struct Outgoing {
    pub payload: Payload,
}

/// What changed of a group's memory, to be written to the object store:
/// `None` when the group is over (its object is deleted).
pub type MemoryChange = (String, AlertGroup, Option<GroupMemory>);

pub struct Windows {
    /// Per rule (in the rules' order): its groups.
    groups: Vec<BTreeMap<AlertGroup, Group>>,
    last_fired: Vec<Option<i64>>,
    base_url: String,
    /// Whether this node may notify: not before it has read what the
    /// object store says of the groups it owns, so that a group another
    /// node fired is not fired again by the node that takes it over.
    pub ready: bool,
    changed: BTreeMap<(String, AlertGroup), Option<GroupMemory>>,
}

impl Windows {
    pub fn new(rules: &Rules, base_url: &str) -> Windows {
        let n = rules.rules.len();
        Windows {
            groups: (0..n).map(|_| BTreeMap::new()).collect(),
            last_fired: vec![None; n],
            base_url: base_url.trim_end_matches('/').to_owned(),
            ready: false,
            changed: BTreeMap::new(),
        }
    }

    /// New rules; groups of rules that keep their name keep their state.
    pub fn replace_rules(&mut self, old: &Rules, new: &Rules) {
        let mut groups: HashMap<String, BTreeMap<AlertGroup, Group>> = old
            .rules
            .iter()
            .map(|r| r.name.clone())
            .zip(std::mem::take(&mut self.groups))
            .collect();
        self.groups = new
            .rules
            .iter()
            .map(|r| groups.remove(&r.name).unwrap_or_default())
            .collect();
        self.last_fired = vec![None; new.rules.len()];
    }

    /// Counts `hit` in its group's window; a firing it causes, if this
    /// node owns the group (`owned`) and may notify.
    pub fn add(&mut self, rules: &Rules, hit: &Hit, owned: bool) -> Option<Outgoing> {
        let r = rules.rules.iter().position(|r| r.name == hit.rule)?;
        let group = self.groups[r].entry(hit.group.clone()).or_default();
        if !group.count(hit) || !owned {
            return None;
        }
        self.fire_if_due(rules, r, &hit.group, now_ns())
    }

    /// Fires the group if its window reached the threshold.
    fn fire_if_due(
        &mut self,
        rules: &Rules,
        r: usize,
        key: &AlertGroup,
        now: i64,
    ) -> Option<Outgoing> {
        let rule = &rules.rules[r];
        let group = self.groups[r].get_mut(key)?;
        if !self.ready || group.memory.firing || (group.hits.len() as u64) < rule.threshold {
            return None;
        }
        group.memory.firing = true;
        group.memory.since_ns = Some(now);
        group.memory.last_notified_ns = Some(now);
        group.memory.hold_until_ns = None;
        let trace = group.trace.clone();
        self.last_fired[r] = Some(now);
        self.note_change(rules, r, key, now);
        let mut payload = self.payload(rules, r, key, "firing");
        payload.trace = trace;
        Some(Outgoing { payload })
    }

    /// A group's memory changed at `now`: to be written.
    fn note_change(&mut self, rules: &Rules, r: usize, key: &AlertGroup, now: i64) {
        let Some(g) = self.groups[r].get_mut(key) else {
            return;
        };
        g.memory.updated_ns = now;
        g.written = true;
        self.changed.insert(
            (rules.rules[r].name.clone(), key.clone()),
            Some(g.memory.clone()),
        );
    }

    /// The memories changed since last asked: what to write.
    pub fn take_changes(&mut self) -> Vec<MemoryChange> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .map(|((rule, group), memory)| (rule, group, memory))
            .collect()
    }

    /// What the object store says of a group this node owns, unless what
    /// this node knows of it is newer: a group that was firing goes on
    /// firing (held one window before it may resolve), and is not fired
    /// again.
    pub fn restore(&mut self, rules: &Rules, rule: &str, key: AlertGroup, mut memory: GroupMemory) {
        let Some(r) = rules.rules.iter().position(|x| x.name == rule) else {
            return;
        };
        if memory.firing {
            memory.hold_until_ns = Some(now_ns() + rules.rules[r].window.as_nanos() as i64);
        }
        let group = self.groups[r].entry(key).or_default();
        group.written = true;
        // A memory never changed here (0: the group only counted hits, or
        // was just made) yields to any stored one, an old version's too.
        if group.memory.updated_ns == 0 || memory.updated_ns > group.memory.updated_ns {
            group.memory = memory;
        }
    }

    /// Expires windows; resolves, repeats and fires (`owned` says which
    /// groups are this node's: the others are dropped, without a word,
    /// and their memory left to their owner). What is due now.
    pub fn tick(
        &mut self,
        rules: &Rules,
        owned: impl Fn(&str, &AlertGroup) -> bool,
    ) -> Vec<Outgoing> {
        let now = now_ns();
        let mut out = Vec::new();
        for r in 0..rules.rules.len() {
            let rule = &rules.rules[r];
            let (window, threshold, repeat) = (
                rule.window.as_nanos() as i64,
                rule.threshold,
                rule.repeat.as_nanos() as i64,
            );
            self.groups[r].retain(|key, _| owned(&rule.name, key));
            let mut due = Vec::new();
            for (key, g) in self.groups[r].iter_mut() {
                g.expire(now - window);
                let count = g.hits.len() as u64;
                if !g.memory.firing {
                    if count >= threshold {
                        due.push((key.clone(), "fire"));
                    }
                    continue;
                }
                if !self.ready {
                    continue;
                }
                let held = g.memory.hold_until_ns.is_some_and(|h| now < h);
                if count < threshold && !held {
                    g.memory.firing = false;
                    g.memory.hold_until_ns = None;
                    due.push((key.clone(), "resolved"));
                } else if g.memory.last_notified_ns.is_some_and(|t| now - t >= repeat)
                    && count >= threshold
                {
                    g.memory.last_notified_ns = Some(now);
                    due.push((key.clone(), "firing"));
                }
            }
            for (key, status) in due {
                if status == "fire" {
                    out.extend(self.fire_if_due(rules, r, &key, now));
                    continue;
                }
                let mut payload = self.payload(rules, r, &key, status);
                if status == "firing" {
                    self.last_fired[r] = Some(now);
                    payload.trace = self.groups[r]
                        .get(&key)
                        .map(|g| g.trace.clone())
                        .unwrap_or_default();
                }
                self.note_change(rules, r, &key, now);
                out.push(Outgoing { payload });
            }
            let over: Vec<(AlertGroup, bool)> = self.groups[r]
                .iter()
                .filter(|(_, g)| !g.memory.firing && g.hits.is_empty())
                .map(|(k, g)| (k.clone(), g.written))
                .collect();
            for (key, written) in over {
                self.groups[r].remove(&key);
                if written {
                    self.changed
                        .insert((rules.rules[r].name.clone(), key), None);
                }
            }
        }
        out
    }

    fn payload(
        &self,
        rules: &Rules,
        r: usize,
        group: &AlertGroup,
        status: &'static str,
    ) -> Payload {
        let rule = &rules.rules[r];
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

    /// Every rule with its groups, for the API; each group named with
    /// `node` (in a cluster: the node its window is on).
    pub fn states(&self, rules: &Rules, node: Option<&str>) -> Vec<AlertRuleState> {
        let time = |t: Option<i64>| t.map(format_rfc3339);
        rules
            .rules
            .iter()
            .zip(&self.groups)
            .zip(&self.last_fired)
            .map(|((r, groups), fired)| AlertRuleState {
                name: r.name.clone(),
                severity: serde_json::to_value(r.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                threshold: r.threshold,
                window_secs: r.window.as_secs(),
                groups: groups
                    .iter()
                    .map(|(k, g)| AlertGroupState {
                        group: k.clone(),
                        state: if g.memory.firing { "firing" } else { "ok" }.into(),
                        count: g.hits.len() as u64,
                        since: time(g.memory.since_ns.filter(|_| g.memory.firing)),
                        last_notified: time(g.memory.last_notified_ns),
                        node: node.map(str::to_owned),
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
    use crate::alert::testing::burst_rules;

    fn hit(process: &str, offset: u64, len: u64, partial: bool) -> Hit {
        crate::alert::testing::hit("www-data/prod/hello", process, offset, len, partial)
    }
    /// A hit sent again (the same line, a later read, a partial piece of
    /// it, the whole line after its piece) counts once; a burst whose
    /// hits come from two sources reaches the threshold.
    #[test]
    fn a_range_counts_once_and_a_burst_over_two_sources_fires_once() {
        let rules = burst_rules();
        let mut w = Windows::new(&rules, "http://x");
        w.ready = true;
        let fired = |w: &mut Windows, h: Hit| w.add(&rules, &h, true).is_some();
        assert!(!fired(&mut w, hit("web", 0, 9, false)));
        assert!(
            !fired(&mut w, hit("web", 0, 9, false)),
            "the same bytes again"
        );
        assert!(
            !fired(&mut w, hit("web", 0, 4, true)),
            "a partial piece of it"
        );
        assert!(!fired(&mut w, hit("web", 20, 4, true)));
        assert!(
            !fired(&mut w, hit("web", 20, 9, false)),
            "the whole line after its piece"
        );
        assert!(!fired(&mut w, hit("worker", 0, 9, false)));
        assert!(
            fired(&mut w, hit("worker", 10, 9, false)),
            "the 4th distinct line"
        );
        assert!(!fired(&mut w, hit("worker", 20, 9, false)), "fires once");
        let states = w.states(&rules, None);
        assert_eq!(states[0].groups[0].count, 5);
        assert_eq!(states[0].groups[0].state, "firing");
        let changes = w.take_changes();
        assert_eq!(changes.len(), 1);
        assert!(changes[0].2.as_ref().is_some_and(|m| m.firing));
    }

    /// A node that has not read the shared state yet counts but does not
    /// fire; once it has, a group it takes over firing is not fired again.
    #[test]
    fn no_firing_before_the_shared_state_is_read_and_none_again_after() {
        let rules = burst_rules();
        let mut w = Windows::new(&rules, "http://x");
        for i in 0..4 {
            assert!(w.add(&rules, &hit("web", i * 10, 9, false), true).is_none());
        }
        let memory = GroupMemory {
            firing: true,
            since_ns: Some(1),
            last_notified_ns: Some(now_ns()),
            updated_ns: now_ns(),
            hold_until_ns: None,
        };
        let key = hit("web", 0, 1, false).group;
        w.restore(&rules, "burst", key, memory);
        w.ready = true;
        assert!(w.tick(&rules, |_, _| true).is_empty(), "already firing");
        // A group this node no longer owns is dropped without a word.
        assert!(w.tick(&rules, |_, _| false).is_empty());
        assert!(w.states(&rules, None)[0].groups.is_empty());
        assert!(w.take_changes().is_empty(), "its memory is its owner's now");
    }
}
