//! The outbox: this node's hits, on their way to their group's window.
//!
//! Each alert group's window lives on one node, chosen by rendezvous
//! hashing of the rule and group over the nodes' ids (as the shipper
//! places a source), so every node that ingests lines of the group sends
//! its hits there: a burst split across two nodes still adds up. A hit is
//! kept here for its rule's window, with the node it was last delivered
//! to. When the group's node changes (a node joins, leaves or dies) every
//! hit still in the window is delivered again to the new one, which
//! counts each byte range once: so the new window holds what the old one
//! did, but for the hits of a node lost with it (see ARCHITECTURE.md).

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use cblogs_core::api::AlertGroup;
use cblogs_core::rendezvous;

use super::matcher::Hit;
use super::rules::Rules;

/// Most hits in one request to a node, and about the most bytes of
/// their lines (one line more may go past it).
pub const MAX_BATCH: usize = 1_000;
pub const MAX_BATCH_BYTES: usize = 8 << 20;

struct Kept {
    seq: u64,
    hit: Arc<Hit>,
    /// Kept until then: the hit's time plus its rule's window.
    until_ns: i64,
}

/// One group's hits, and how far they were delivered to its node.
#[derive(Default)]
struct GroupOut {
    /// In the order they were made (rising `seq`).
    hits: VecDeque<Kept>,
    /// The node they go to, as last placed, and the last hit it took.
    node: Option<String>,
    delivered_seq: u64,
}

type GroupId = (String, AlertGroup);

/// Hits to deliver to one node.
pub struct Batch {
    pub node: String,
    pub hits: Vec<Arc<Hit>>,
    bytes: usize,
    /// Per group, the last hit in the batch.
    pub marks: Vec<(GroupId, u64)>,
}

#[derive(Default)]
pub struct Outbox {
    groups: BTreeMap<GroupId, GroupOut>,
    next_seq: u64,
    /// Nodes with a batch under way: one at a time each.
    in_flight: HashSet<String>,
}

/// The key a group is placed by.
pub fn group_key(rule: &str, group: &AlertGroup) -> u64 {
    rendezvous::seed(&format!("{rule}\u{0}{}", group.key()))
}

/// The node of `nodes` (ids) a group's window is on.
pub fn owner<'a>(nodes: &'a [String], rule: &str, group: &AlertGroup) -> Option<&'a str> {
    rendezvous::owner(nodes.iter().map(String::as_str), group_key(rule, group))
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
            self.groups
                .entry((hit.rule.clone(), hit.group.clone()))
                .or_default()
                .hits
                .push_back(Kept {
                    seq: self.next_seq,
                    hit: Arc::new(hit),
                    until_ns,
                });
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
    /// stand now, a batch per node (none for a node with one under way),
    /// every hit of a group again when its node changed: marked under
    /// way until [`Outbox::delivered`].
    pub fn due(&mut self, nodes: &[String]) -> Vec<Batch> {
        let mut batches: BTreeMap<&str, Batch> = BTreeMap::new();
        for (id, g) in self.groups.iter_mut() {
            let Some(node) = owner(nodes, &id.0, &id.1) else {
                continue;
            };
            if self.in_flight.contains(node) {
                continue;
            }
            if g.node.as_deref() != Some(node) {
                g.node = Some(node.to_owned());
                g.delivered_seq = 0;
            }
            let from = g.hits.partition_point(|k| k.seq <= g.delivered_seq);
            let batch = batches.entry(node).or_insert_with(|| Batch {
                node: node.to_owned(),
                hits: Vec::new(),
                bytes: 0,
                marks: Vec::new(),
            });
            let room = MAX_BATCH.saturating_sub(batch.hits.len());
            let mut new: Vec<&Kept> = Vec::new();
            for k in g.hits.range(from..).take(room) {
                if batch.bytes >= MAX_BATCH_BYTES {
                    break;
                }
                batch.bytes +=
                    k.hit.line.text.len() + k.hit.trace.iter().map(String::len).sum::<usize>();
                new.push(k);
            }
            if let Some(last) = new.last() {
                batch.marks.push((id.clone(), last.seq));
                batch.hits.extend(new.iter().map(|k| k.hit.clone()));
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

    /// A batch's fate: its hits are delivered to `node` if `ok`, else they
    /// stay due.
    pub fn delivered(&mut self, node: &str, marks: &[(GroupId, u64)], ok: bool) {
        self.in_flight.remove(node);
        if !ok {
            return;
        }
        for (id, seq) in marks {
            if let Some(g) = self.groups.get_mut(id) {
                if g.node.as_deref() == Some(node) {
                    g.delivered_seq = g.delivered_seq.max(*seq);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::testing;
    use cblogs_core::time::now_ns;

    const RULES: &str = r#"
[[rule]]
name = "burst"
jobs = ["www-data/prod/*"]
pattern = 'BURST'
threshold = 4
window = "10m"
notify = ["hook"]
"#;

    fn hit(job: &str, offset: u64) -> Hit {
        testing::hit(job, "web", offset, 5, false)
    }
    /// Each group's hits go to its node once; when that node leaves they
    /// go to the next, all of them again; a failed batch stays due.
    #[test]
    fn hits_go_to_their_groups_node_and_again_when_it_changes() {
        let rules = testing::rules(RULES);
        let mut out = Outbox::default();
        let jobs: Vec<String> = (0..20).map(|i| format!("www-data/prod/j{i}")).collect();
        out.add(&rules, jobs.iter().map(|j| hit(j, 0)).collect());
        let three: Vec<String> = ["node-a", "node-b", "node-c"].map(String::from).to_vec();
        let batches = out.due(&three);
        assert_eq!(batches.len(), 3, "20 groups spread over 3 nodes");
        assert!(out.due(&three).is_empty(), "one batch under way per node");
        let mut on_b = 0;
        for b in &batches {
            on_b += if b.node == "node-b" { b.hits.len() } else { 0 };
            out.delivered(&b.node, &b.marks, b.node != "node-c");
        }
        let again = out.due(&three);
        assert_eq!(again.len(), 1, "node-c's failed batch stays due");
        assert_eq!(again[0].node, "node-c");
        out.delivered("node-c", &again[0].marks, true);
        assert!(out.due(&three).is_empty(), "everything delivered");
        let two: Vec<String> = ["node-a", "node-c"].map(String::from).to_vec();
        let moved = out.due(&two);
        let resent: usize = moved.iter().map(|b| b.hits.len()).sum();
        assert_eq!(resent, on_b, "node-b's groups, and only they, go again");
        out.expire(now_ns() + 601_000_000_000);
        for b in &moved {
            out.delivered(&b.node, &b.marks, false);
        }
        assert!(out.due(&two).is_empty(), "kept for the window only");
    }
}
