//! The outbox: this node's hits, on their way to their group's window.
//!
//! Each alert group's window lives on one node, chosen by rendezvous
//! hashing of the rule and group over the nodes' ids (as the shipper
//! places a source), so every node that ingests lines of the group sends
//! its hits there: a burst split across two nodes still adds up. A hit is
//! kept here for its rule's window (the newest [`MAX_KEPT`] of a group),
//! with how far its group's node took them. When the group's node
//! changes (a node joins, leaves or dies), or restarts (its answers name
//! a new boot), every hit still kept goes again, and the node counts each
//! byte range once: so the new window holds what the old one did, but
//! for the hits of a node lost with it (see ARCHITECTURE.md).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::api::AlertGroup;
use cblogs_core::rendezvous;

use super::matcher::Hit;
use super::rules::Rules;

/// Most hits in one request to another node, and about the most bytes
/// of their lines and traces (one hit more may go past it).
const MAX_BATCH: usize = 1_000;
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Most hits kept per group: far past any threshold worth alerting on.
/// A window holds more only if they reach it as they come.
const MAX_KEPT: usize = 10_000;

struct Kept {
    seq: u64,
    hit: Arc<Hit>,
    /// Kept until then: the hit's time plus its rule's window.
    until_ns: i64,
}

/// One group's hits, and how far they were delivered to its node.
struct GroupOut {
    /// Where it is placed ([`group_key`]).
    key: u64,
    /// In the order they were made (rising `seq`).
    hits: VecDeque<Kept>,
    /// The node they go to, as last placed, and the last hit it took.
    node: Option<String>,
    delivered_seq: u64,
    /// Bumped whenever the cursor goes back to the start (a new node, a
    /// node's new boot): an answer to a batch sent before does not move it.
    epoch: u64,
}

pub type GroupId = (String, AlertGroup);

/// Hits to deliver to one node.
pub struct Batch {
    pub node: String,
    pub hits: Vec<Arc<Hit>>,
    bytes: usize,
    /// Per group, the last hit in the batch, and the group's epoch.
    marks: Vec<(GroupId, u64, u64)>,
}

/// What became of a batch.
pub enum Fate {
    /// The node took it, but for the groups it does not hold as it sees
    /// the nodes (`refused`: due again later); it names its boot, which
    /// changes when it restarts.
    Taken { boot: String, refused: Vec<GroupId> },
    /// Not now (the node is unreachable, starting, busy): due again after
    /// a wait.
    Again,
    /// Refused for good (a node of another version, a request too big):
    /// dropped, not to hold back the node's other hits.
    Dropped,
}

/// The waits before a node that did not take a batch is sent one again.
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Outbox {
    groups: BTreeMap<GroupId, GroupOut>,
    next_seq: u64,
    /// Nodes with a batch under way: one at a time each.
    in_flight: HashSet<String>,
    /// Each node's boot, as its last answer named it.
    boots: HashMap<String, String>,
    /// Nodes not to send to before then, and the wait after the next miss.
    retry: HashMap<String, (Instant, Duration)>,
}

/// The key a group is placed by.
pub fn group_key(rule: &str, group: &AlertGroup) -> u64 {
    rendezvous::seed(&format!("{rule}\u{0}{}", group.key()))
}

/// The node of `nodes` (ids) a group's window is on.
pub fn owner<'a>(nodes: &'a [String], rule: &str, group: &AlertGroup) -> Option<&'a str> {
    owner_by_key(nodes, group_key(rule, group))
}

fn owner_by_key(nodes: &[String], key: u64) -> Option<&str> {
    rendezvous::owner(nodes.iter().map(String::as_str), key)
}

impl Outbox {
    pub fn add(&mut self, rules: &Rules, hits: Vec<Hit>) {
        for hit in hits {
            let Some(rule) = rules.rules.iter().find(|r| r.name == hit.rule) else {
                continue;
            };
            let until_ns = hit
                .line
                .time_ns
                .saturating_add(rule.window.as_nanos() as i64);
            self.next_seq += 1;
            let g = self
                .groups
                .entry((hit.rule.clone(), hit.group.clone()))
                .or_insert_with(|| GroupOut {
                    key: group_key(&hit.rule, &hit.group),
                    hits: VecDeque::new(),
                    node: None,
                    delivered_seq: 0,
                    epoch: 0,
                });
            g.hits.push_back(Kept {
                seq: self.next_seq,
                hit: Arc::new(hit),
                until_ns,
            });
            if g.hits.len() > MAX_KEPT {
                g.hits.pop_front();
            }
        }
    }

    /// Forgets the hits whose window is over.
    pub fn expire(&mut self, now: i64) {
        for g in self.groups.values_mut() {
            g.hits.retain(|k| k.until_ns > now);
        }
        self.groups.retain(|_, g| !g.hits.is_empty());
    }

    /// The hits not yet delivered to their group's node as `nodes` (ids)
    /// stand now, a batch per node (none for a node with one under way,
    /// or waiting to be tried again), every hit of a group again when
    /// its node changed: marked under way until [`Outbox::delivered`].
    /// The batch for `me` (counted in process) is not bounded.
    pub fn due(&mut self, nodes: &[String], me: &str) -> Vec<Batch> {
        let now = Instant::now();
        let mut batches: BTreeMap<&str, Batch> = BTreeMap::new();
        for (id, g) in self.groups.iter_mut() {
            let Some(node) = owner_by_key(nodes, g.key) else {
                continue;
            };
            let waiting = self.retry.get(node).is_some_and(|(at, _)| *at > now);
            if self.in_flight.contains(node) || waiting {
                continue;
            }
            if g.node.as_deref() != Some(node) {
                g.node = Some(node.to_owned());
                g.delivered_seq = 0;
                g.epoch += 1;
            }
            let from = g.hits.partition_point(|k| k.seq <= g.delivered_seq);
            let batch = batches.entry(node).or_insert_with(|| Batch {
                node: node.to_owned(),
                hits: Vec::new(),
                bytes: 0,
                marks: Vec::new(),
            });
            let mut last = None;
            for k in g.hits.range(from..) {
                let full = batch.hits.len() >= MAX_BATCH || batch.bytes >= MAX_BATCH_BYTES;
                if full && node != me {
                    break;
                }
                batch.bytes +=
                    k.hit.line.text.len() + k.hit.trace.iter().map(String::len).sum::<usize>();
                batch.hits.push(k.hit.clone());
                last = Some(k.seq);
            }
            if let Some(seq) = last {
                batch.marks.push((id.clone(), seq, g.epoch));
            }
        }
        let batches: Vec<Batch> = batches
            .into_values()
            .filter(|b| !b.hits.is_empty())
            .collect();
        for b in &batches {
            self.in_flight.insert(b.node.clone());
        }
        batches
    }

    /// Whether a batch may be due now: some group has hits its node has
    /// not taken (as last placed), and that node is not waited for.
    pub fn pending(&self) -> bool {
        let now = Instant::now();
        self.groups.values().any(|g| {
            let waiting = g
                .node
                .as_ref()
                .and_then(|n| self.retry.get(n))
                .is_some_and(|(at, _)| *at > now);
            !waiting && g.hits.back().is_some_and(|k| k.seq > g.delivered_seq)
        })
    }

    /// A batch's fate. A node that names a new boot lost its windows: every
    /// hit of its groups is due again. A node that did not take it all is
    /// waited for a while (longer each time) before the next batch.
    pub fn delivered(&mut self, batch: &Batch, fate: Fate) {
        let node = batch.node.as_str();
        self.in_flight.remove(node);
        let refused = match fate {
            Fate::Again => {
                self.wait_for(node);
                return;
            }
            Fate::Dropped => Vec::new(),
            Fate::Taken { boot, refused } => {
                let before = self.boots.insert(node.to_owned(), boot.clone());
                if before.is_some_and(|b| b != boot) {
                    for g in self.groups.values_mut() {
                        if g.node.as_deref() == Some(node) {
                            g.delivered_seq = 0;
                            g.epoch += 1;
                        }
                    }
                    return;
                }
                refused
            }
        };
        if refused.is_empty() {
            self.retry.remove(node);
        } else {
            self.wait_for(node);
        }
        for (id, seq, epoch) in &batch.marks {
            if refused.contains(id) {
                continue;
            }
            if let Some(g) = self.groups.get_mut(id) {
                if g.node.as_deref() == Some(node) && g.epoch == *epoch {
                    g.delivered_seq = g.delivered_seq.max(*seq);
                }
            }
        }
    }

    /// `node` is not sent to for a while: 250 ms, doubling to 2 s.
    fn wait_for(&mut self, node: &str) {
        let wait = self
            .retry
            .get(node)
            .map_or(FIRST_RETRY, |(_, w)| (*w * 2).min(MAX_RETRY));
        self.retry
            .insert(node.to_owned(), (Instant::now() + wait, wait));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::testing;
    use cblogs_core::time::now_ns;

    fn hit(job: &str, offset: u64) -> Hit {
        testing::hit(job, "web", offset, 5, false)
    }
    /// Each group's hits go to its node once; when that node leaves they
    /// go to the next, all of them again; a failed batch stays due.
    #[test]
    fn hits_go_to_their_groups_node_and_again_when_it_changes() {
        let rules = testing::burst_rules();
        let mut out = Outbox::default();
        let jobs: Vec<String> = (0..20).map(|i| format!("www-data/prod/j{i}")).collect();
        out.add(&rules, jobs.iter().map(|j| hit(j, 0)).collect());
        let three: Vec<String> = ["node-a", "node-b", "node-c"].map(String::from).to_vec();
        let taken = |boot: &str| Fate::Taken {
            boot: boot.into(),
            refused: Vec::new(),
        };
        let batches = out.due(&three, "node-a");
        assert_eq!(batches.len(), 3, "20 groups spread over 3 nodes");
        assert!(
            out.due(&three, "node-a").is_empty(),
            "one batch under way per node"
        );
        let mut on = BTreeMap::new();
        for b in &batches {
            on.insert(b.node.clone(), b.hits.len());
            let fate = if b.node == "node-c" {
                Fate::Again
            } else {
                taken("1")
            };
            out.delivered(b, fate);
        }
        assert!(!out.pending(), "node-c is waited for");
        assert!(out.due(&three, "node-a").is_empty());
        out.retry.clear();
        let again = out.due(&three, "node-a");
        assert_eq!(again.len(), 1, "node-c's failed batch stays due");
        assert_eq!(again[0].node, "node-c");
        out.delivered(&again[0], taken("1"));
        assert!(!out.pending());
        assert!(out.due(&three, "node-a").is_empty(), "everything delivered");
        let two: Vec<String> = ["node-a", "node-c"].map(String::from).to_vec();
        let moved = out.due(&two, "node-a");
        let resent: usize = moved.iter().map(|b| b.hits.len()).sum();
        assert_eq!(
            resent, on["node-b"],
            "node-b's groups, and only they, go again"
        );
        for b in &moved {
            out.delivered(b, taken("1"));
        }
        // node-c restarted: its answer names a new boot, and all its
        // groups' hits go again.
        let on_c: Vec<&String> = jobs
            .iter()
            .filter(|j| owner(&two, "burst", &hit(j, 0).group) == Some("node-c"))
            .collect();
        out.add(&rules, vec![hit(on_c[0], 10)]);
        let one = out.due(&two, "node-a");
        assert_eq!((one.len(), one[0].hits.len()), (1, 1), "only the new hit");
        out.delivered(&one[0], taken("2"));
        let all = out.due(&two, "node-a");
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].hits.len(),
            on_c.len() + 1,
            "every hit of node-c's groups again"
        );
        // A node that refuses one group takes the others.
        let refused = vec![("burst".to_owned(), hit(on_c[0], 0).group)];
        let all_hits = all[0].hits.len();
        out.delivered(
            &all[0],
            Fate::Taken {
                boot: "2".into(),
                refused,
            },
        );
        out.retry.clear();
        let left = out.due(&two, "node-a");
        assert_eq!(
            left[0].hits.len(),
            2,
            "of {all_hits}: the refused group's two hits"
        );
        out.delivered(&left[0], Fate::Again);
        out.expire(now_ns() + 601_000_000_000);
        assert!(
            out.due(&two, "node-a").is_empty(),
            "kept for the window only"
        );
    }
}
