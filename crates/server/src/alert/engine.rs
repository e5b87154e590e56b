//! The engine: this node's part of alerting, without I/O. Lines it applies
//! are matched (`matcher.rs`) into hits; each hit goes to the window of
//! its group (`window.rs`) on the node the group is placed on
//! (`outbox.rs`: here, or another node); the windows of the groups
//! placed here take every node's hits and say what to notify.

use cblogs_core::api::{AlertRuleState, Silence};
use cblogs_core::time::now_ns;
use cblogs_core::Source;

use super::matcher::{Hit, Matcher};
use super::outbox::{owner, Batch, Fate, GroupId, Outbox};
use super::rules::Rules;
use super::shared::SavedGroup;
use super::window::{MemoryChange, Outgoing, Windows};
use crate::block::LineBlock;
use crate::cluster::AlertNodes;

/// How long a node waits for the object store's alert state before it
/// notifies without it (a store that cannot be read must not silence
/// every alert; a group fired before may then fire again).
const READ_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

pub struct Engine {
    pub rules: Rules,
    matcher: Matcher,
    windows: Windows,
    outbox: Outbox,
    pub silences: Vec<Silence>,
    /// The nodes groups are placed on, as last looked at; `None` while
    /// not known (hits wait in the outbox, and received ones count here).
    nodes: Option<AlertNodes>,
    ids: Vec<String>,
    /// Bumped whenever the nodes change: the shared groups are read again
    /// under this number, and this node notifies only once it has them
    /// (or [`READ_WAIT`] has passed since they were asked for).
    pub generation: u64,
    asked_ns: i64,
    /// The node's id, for the API (in a cluster).
    node: Option<String>,
    /// Silences made here that no listing of the object store showed yet
    /// (their write may be under way, or tried again).
    made: Vec<Silence>,
}

impl Engine {
    pub fn new(rules: Rules, base_url: &str) -> Engine {
        Engine {
            matcher: Matcher::new(&rules),
            windows: Windows::new(&rules, base_url),
            rules,
            outbox: Outbox::default(),
            silences: Vec::new(),
            nodes: None,
            ids: Vec::new(),
            generation: 0,
            asked_ns: 0,
            node: None,
            made: Vec::new(),
        }
    }

    /// New rules; groups of rules that keep their name keep their state.
    /// Hits that waited for their event are counted as they are.
    pub fn replace_rules(&mut self, rules: Rules) {
        let waiting = self.matcher.replace_rules(&rules);
        self.windows.replace_rules(&self.rules, &rules);
        self.rules = rules;
        self.outbox.add(&self.rules, waiting);
    }

    pub fn on_lines(&mut self, source: &Source, lines: &LineBlock) -> bool {
        let hits = self.matcher.on_lines(&self.rules, source, lines);
        let any = !hits.is_empty();
        self.outbox.add(&self.rules, hits);
        any
    }

    /// Whether the group's window is on this node.
    fn owned(
        nodes: &Option<AlertNodes>,
        ids: &[String],
        rule: &str,
        group: &cblogs_core::api::AlertGroup,
    ) -> bool {
        match nodes {
            None => true,
            Some(n) => owner(ids, rule, group) == Some(n.me.as_str()),
        }
    }

    /// Hits for windows here (this node's own, or another node's).
    pub fn on_hits<'a>(&mut self, hits: impl IntoIterator<Item = &'a Hit>) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for hit in hits {
            let owned = Self::owned(&self.nodes, &self.ids, &hit.rule, &hit.group);
            out.extend(self.windows.add(&self.rules, hit, owned));
        }
        out
    }

    /// The nodes as they stand now: whether they changed to a known set
    /// (the shared groups must then be read again before this node
    /// notifies). While they are not known, it does not notify.
    pub fn set_nodes(&mut self, nodes: Option<AlertNodes>, cluster: bool) -> bool {
        if nodes == self.nodes {
            return false;
        }
        self.node = cluster
            .then(|| nodes.as_ref().map(|n| n.me.clone()))
            .flatten();
        self.ids = nodes.as_ref().map(AlertNodes::ids).unwrap_or_default();
        self.windows.ready = false;
        self.generation += 1;
        self.asked_ns = now_ns();
        let known = nodes.is_some();
        self.nodes = nodes;
        known
    }

    /// The shared state, read as `generation`: the groups placed here are
    /// taken up (unless this node knows newer), the silences replace
    /// those known, and this node may notify (if the nodes did not change
    /// meanwhile).
    pub fn state_read(&mut self, generation: u64, groups: Vec<SavedGroup>, silences: Vec<Silence>) {
        if generation != self.generation || self.nodes.is_none() {
            return;
        }
        for g in groups {
            if Self::owned(&self.nodes, &self.ids, &g.rule, &g.group) {
                self.windows
                    .restore(&self.rules, &g.rule, g.group, g.memory);
            }
        }
        self.silences_read(silences);
        self.windows.ready = true;
    }

    /// Of hits another node sent, those for groups placed here, and the
    /// groups not placed here as this node sees the nodes (they differ a
    /// moment when one joins or leaves; while it knows none, every group):
    /// the sender keeps those and sends them again later.
    pub fn sort_received(&self, hits: Vec<Hit>) -> (Vec<Hit>, Vec<GroupId>) {
        let mut refused: Vec<GroupId> = Vec::new();
        let taken = hits
            .into_iter()
            .filter(|h| {
                let here =
                    self.nodes.is_some() && Self::owned(&self.nodes, &self.ids, &h.rule, &h.group);
                if !here && !refused.iter().any(|(r, g)| *r == h.rule && *g == h.group) {
                    refused.push((h.rule.clone(), h.group.clone()));
                }
                here
            })
            .collect();
        (taken, refused)
    }

    /// Hits whose event's wait is over; windows expired, resolved, repeated.
    pub fn tick(&mut self) -> Vec<Outgoing> {
        let now = now_ns();
        if !self.windows.ready
            && self.nodes.is_some()
            && now - self.asked_ns > READ_WAIT.as_nanos() as i64
        {
            tracing::warn!("the alert state in the object store could not be read for {READ_WAIT:?}: notifying without it (a group that fired before may fire again)");
            self.windows.ready = true;
        }
        let hits = self.matcher.tick(now);
        self.outbox.add(&self.rules, hits);
        self.outbox.expire(now);
        self.silences.retain(|s| s.until_ns > now);
        let (nodes, ids) = (&self.nodes, &self.ids);
        self.windows.tick(&self.rules, |rule, group| {
            Self::owned(nodes, ids, rule, group)
        })
    }

    /// The hits to deliver: those for this node are counted here at once
    /// (what that fires is returned), the others' batches are returned to
    /// be sent, each with its node's URL.
    pub fn due(&mut self) -> (Vec<Outgoing>, Vec<(Batch, String)>) {
        let Some(nodes) = self.nodes.clone() else {
            return (Vec::new(), Vec::new());
        };
        let mut out = Vec::new();
        let mut remote = Vec::new();
        for batch in self.outbox.due(&self.ids, &nodes.me) {
            if batch.node == nodes.me {
                out.extend(self.on_hits(batch.hits.iter().map(|h| &**h)));
                let taken = Fate::Taken {
                    boot: String::new(),
                    refused: Vec::new(),
                };
                self.outbox.delivered(&batch, taken);
            } else if let Some(url) = nodes.url(&batch.node) {
                remote.push((batch, url.to_owned()));
            } else {
                self.outbox.delivered(&batch, Fate::Again);
            }
        }
        (out, remote)
    }

    /// A remote batch's fate; whether hits may be due again now.
    pub fn delivered(&mut self, batch: &Batch, fate: Fate) -> bool {
        self.outbox.delivered(batch, fate);
        self.outbox.pending()
    }

    pub fn take_changes(&mut self) -> Vec<MemoryChange> {
        self.windows.take_changes()
    }

    /// A silence made on this node.
    pub fn silence(&mut self, silence: Silence) {
        self.made.push(silence.clone());
        self.silences.push(silence);
    }

    /// The silences the object store holds (every node's), and those
    /// made here that it does not show yet.
    pub fn silences_read(&mut self, mut listed: Vec<Silence>) {
        let now = now_ns();
        self.made
            .retain(|s| s.until_ns > now && !listed.contains(s));
        listed.extend(self.made.iter().cloned());
        self.silences = listed;
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

    /// Every rule with the groups whose window is here.
    pub fn states(&self) -> Vec<AlertRuleState> {
        self.windows.states(&self.rules, self.node.as_deref())
    }
}
