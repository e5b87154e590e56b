//! What the metastore records, and how a version's changes apply to it.
//!
//! Per split: its entry (time range, sources with their offset ranges,
//! files and sizes) and its state. A split is *staged* before its upload
//! (so cleanup knows whose objects may be half-written), *published* in
//! the commit that also moves its sources' published ends (readers see
//! exactly the published ones), *retired* when retention takes it from
//! readers (its objects are deleted later, when no running search can
//! still read them), and forgotten once its objects are gone.
//!
//! Per source: `published_end`, the end of its contiguous published
//! prefix. It is a record of its own, not derived from the data that
//! still exists: retention may delete every line of a quiet source, and
//! its end must still hold, or a restarted node would take the whole file
//! again from the shipper. Nothing ever lowers it.
//!
//! Per source, in a cluster, also its owner: the node that takes its
//! lines, and the epoch of that node's takeover. Every takeover (a node
//! taking a source it does not hold) bumps the epoch ([`Change::Own`]),
//! and a node publishes a source's lines only under the epoch it holds
//! ([`SourceAdvance::owner`]): a node that was stopped or cut off, and
//! comes back, cannot publish ranges that the new owner has published
//! already ([`Change::conflict`]). That is the fencing of scale-out.md's
//! decision 5.

use std::collections::BTreeMap;
use std::sync::Arc;

use cblogs_core::Source;
use serde::{Deserialize, Serialize};

/// One source's published end, as a change records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceAdvance {
    pub source: Source,
    pub published_end: u64,
    /// Byte ranges below `published_end` accepted as lost (`allow_gap`)
    /// since the source's last advance: inside the published prefix, but
    /// not there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<(u64, u64)>,
    /// The ownership the lines were taken under (a cluster's node): the
    /// change is refused unless it is still the source's owner. `None`: a
    /// node alone, which owns every source it is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Ownership>,
}

/// Which node takes a source's lines, since which takeover.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Ownership {
    pub node: String,
    /// 1 for the first owner; each takeover adds one.
    pub epoch: u64,
}

/// A node takes a source: at `epoch`, one more than the source's epoch
/// as the node read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub source: Source,
    pub owner: Ownership,
}

/// How many gaps a source's record keeps (the newest).
pub const GAPS_KEPT: usize = 64;

/// One source's part of a split.
///
/// Its `source` is shared with the source's record in the state
/// ([`MetastoreState::apply`]): a quiet cluster has 10,000 sources in
/// every split, and one copy of each per split took gigabytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSource {
    #[serde(with = "shared_source")]
    pub source: Arc<Source>,
    /// The offsets its blocks in the split cover: `[off_start, off_end)`.
    pub off_start: u64,
    pub off_end: u64,
    pub lines: u64,
    pub bytes: u64,
    pub t_max: i64,
}

/// A split as published: everything a reader needs to know before it
/// reads an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitEntry {
    pub id: String,
    /// The start of the `storage.partition_secs` window of line time
    /// its blocks belong to.
    pub window_ns: i64,
    pub t_min: i64,
    pub t_max: i64,
    pub blocks: u64,
    /// Its files, relative to its folder, with their sizes.
    pub files: Vec<(String, u64)>,
    /// Every file but `blocks.dat` is in one object, `index.bundle`, back
    /// to back in the order of `files` (remote stores: one PUT and one GET
    /// instead of one per file). Otherwise each file is an object.
    #[serde(default)]
    pub bundled: bool,
    pub sources: Vec<SplitSource>,
    /// How many merges made it: 0 for a split built from ingest, one more
    /// than the highest of its inputs for a merge's output (the merge
    /// policy merges splits of one level together, as tantivy's log merge
    /// policy does).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub level: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SplitEntry {
    /// Bytes of its objects.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|(_, n)| n).sum()
    }
}

/// What one version changes. A version written by a newer cblogsd with
/// a change this one does not know is refused at open, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    /// A split's upload begins.
    Staged { split: String, at_ns: i64 },
    /// A split becomes visible, and its sources' published ends move up:
    /// one change, so that no reader or restart sees one without the other.
    Publish {
        split: SplitEntry,
        sources: Vec<SourceAdvance>,
    },
    /// Splits leave readers (retention); their objects go later. Written
    /// only while every one is published ([`Change::conflict`]): one a
    /// merge took is retired as part of the merge's output.
    Retire {
        splits: Vec<String>,
        at_ns: i64,
        reason: String,
    },
    /// The objects of these (retired or abandoned) splits are deleted.
    Forget { splits: Vec<String> },
    /// A merge's output becomes visible and its inputs leave readers, in
    /// one change: two would show every line twice (or not at all) in
    /// between. Written only while every input is published
    /// ([`Change::conflict`]), so that of a merge and a retention (or two
    /// merges) taking the same split, one loses.
    Merge {
        split: SplitEntry,
        inputs: Vec<String>,
        at_ns: i64,
    },
    /// Nodes take sources (a cluster's takeovers). Written only while
    /// each claim's epoch is above the source's ([`Change::conflict`]): of
    /// two nodes taking one source at once, one wins.
    Own { claims: Vec<Claim> },
}

impl Change {
    /// Why this change cannot follow `state`, if it cannot: a merge or a
    /// retirement of a split that is no longer published (retired, or
    /// merged by another), or forgetting a published one (whose objects
    /// must never have been deleted).
    ///
    /// In a cluster also: a publish of a source under an ownership that
    /// is no longer its owner (a takeover came between), and a claim of a
    /// source at an epoch another claim reached first.
    pub fn conflict(&self, state: &MetastoreState) -> Option<String> {
        let published =
            |id: &String| matches!(state.splits.get(id), Some(SplitState::Published { .. }));
        let (ids, what) = match self {
            Change::Publish { sources, .. } => {
                return sources.iter().find_map(|a| {
                    let under = a.owner.as_ref()?;
                    let owner = state.owner(a.source.id());
                    (owner != Some(under)).then(|| {
                        format!(
                            "source {} is {}: its lines were taken under node {}'s epoch {}",
                            a.source.key(),
                            describe_owner(owner),
                            under.node,
                            under.epoch
                        )
                    })
                })
            }
            Change::Own { claims } => {
                return claims.iter().find_map(|c| {
                    let owner = state.owner(c.source.id());
                    owner.filter(|o| o.epoch >= c.owner.epoch).map(|o| {
                        format!(
                            "source {} was taken by node {} at epoch {} first",
                            c.source.key(),
                            o.node,
                            o.epoch
                        )
                    })
                })
            }
            Change::Merge { inputs, .. } => (inputs, "an input of the merge"),
            Change::Retire { splits, .. } => (splits, "to be retired"),
            Change::Forget { splits } => {
                return splits
                    .iter()
                    .find(|id| published(id))
                    .map(|id| format!("split {id}, to be forgotten, is published"));
            }
            _ => return None,
        };
        ids.iter()
            .find(|id| !published(id))
            .map(|id| format!("split {id}, {what}, is no longer published"))
    }
}

fn describe_owner(owner: Option<&Ownership>) -> String {
    match owner {
        Some(o) => format!("owned by node {} since epoch {}", o.node, o.epoch),
        None => "owned by no node".to_owned(),
    }
}

/// Where a split is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SplitState {
    Staged { at_ns: i64 },
    Published { entry: SplitEntry },
    Retired { entry: SplitEntry, at_ns: i64 },
}

/// A source's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    #[serde(with = "shared_source")]
    pub source: Arc<Source>,
    pub published_end: u64,
    /// Gaps accepted through `allow_gap`, oldest first (the newest [`GAPS_KEPT`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<(u64, u64)>,
    /// In a cluster: the node that takes its lines, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Ownership>,
}

/// The state after `version`: what a checkpoint holds whole.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetastoreState {
    pub version: u64,
    /// By source id.
    pub sources: BTreeMap<u64, SourceRecord>,
    /// By split id.
    #[serde(default)]
    pub splits: BTreeMap<String, SplitState>,
}

impl MetastoreState {
    /// Applies version `version`'s changes.
    pub(super) fn apply(&mut self, version: u64, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Staged { split, at_ns } => {
                    self.splits
                        .entry(split.clone())
                        .or_insert(SplitState::Staged { at_ns: *at_ns });
                }
                Change::Publish { split, sources } => {
                    self.advance(sources);
                    let entry = self.shared(split);
                    self.splits
                        .insert(split.id.clone(), SplitState::Published { entry });
                }
                Change::Retire { splits, at_ns, .. } => self.retire(splits, *at_ns),
                Change::Forget { splits } => {
                    for id in splits {
                        self.splits.remove(id);
                    }
                }
                Change::Merge {
                    split,
                    inputs,
                    at_ns,
                } => {
                    // Its writer checked every input is published
                    // ([`Change::conflict`]): the version applies whole.
                    self.retire(inputs, *at_ns);
                    let entry = self.shared(split);
                    self.splits
                        .insert(split.id.clone(), SplitState::Published { entry });
                }
                Change::Own { claims } => {
                    for c in claims {
                        let r = self.record(&c.source);
                        // Its writer checked the epoch is the highest.
                        if r.owner.as_ref().is_none_or(|o| o.epoch < c.owner.epoch) {
                            r.owner = Some(c.owner.clone());
                        }
                    }
                }
            }
        }
        self.version = version;
    }

    /// `entry` with each of its sources shared with the source's record,
    /// where there is one.
    fn shared(&self, entry: &SplitEntry) -> SplitEntry {
        let mut entry = entry.clone();
        self.share_sources(&mut entry);
        entry
    }

    fn share_sources(&self, entry: &mut SplitEntry) {
        for s in &mut entry.sources {
            if let Some(r) = self.sources.get(&s.source.id()) {
                if r.source == s.source {
                    s.source = r.source.clone();
                }
            }
        }
    }

    /// Shares every split's sources with their records: after a whole
    /// state was read (a checkpoint), where each is a copy of its own.
    pub(super) fn share_all_sources(&mut self) {
        let mut splits = std::mem::take(&mut self.splits);
        for state in splits.values_mut() {
            if let SplitState::Published { entry } | SplitState::Retired { entry, .. } = state {
                self.share_sources(entry);
            }
        }
        self.splits = splits;
    }

    fn retire(&mut self, splits: &[String], at_ns: i64) {
        for id in splits {
            if let Some(SplitState::Published { entry }) = self.splits.remove(id) {
                self.splits
                    .insert(id.clone(), SplitState::Retired { entry, at_ns });
            }
        }
    }

    /// Source `source`'s record, made if it has none.
    fn record(&mut self, source: &Source) -> &mut SourceRecord {
        self.sources
            .entry(source.id())
            .or_insert_with(|| SourceRecord {
                source: Arc::new(source.clone()),
                published_end: 0,
                gaps: Vec::new(),
                owner: None,
            })
    }

    /// Source `id`'s owner, in a cluster.
    pub fn owner(&self, id: u64) -> Option<&Ownership> {
        self.sources.get(&id)?.owner.as_ref()
    }

    fn advance(&mut self, sources: &[SourceAdvance]) {
        for a in sources {
            let r = self.record(&a.source);
            r.published_end = r.published_end.max(a.published_end);
            for gap in &a.gaps {
                if !r.gaps.contains(gap) {
                    r.gaps.push(*gap);
                }
            }
            let extra = r.gaps.len().saturating_sub(GAPS_KEPT);
            r.gaps.drain(..extra);
        }
    }

    /// Every source's published end, by id.
    #[cfg(test)]
    pub fn published_ends(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.sources.iter().map(|(id, r)| (*id, r.published_end))
    }
}

/// A shared source written and read as the plain source it points to,
/// as before it was shared.
mod shared_source {
    use std::sync::Arc;

    use cblogs_core::Source;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(source: &Arc<Source>, s: S) -> Result<S::Ok, S::Error> {
        Source::serialize(source, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Source>, D::Error> {
        Source::deserialize(d).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_end_only_moves_up() {
        let s = Source::example(
            "www-data/prod/hello",
            0,
            "hello",
            cblogs_core::Stream::Stdout,
        );
        let at = |end| Change::Publish {
            split: SplitEntry {
                id: format!("split-{end}"),
                window_ns: 0,
                t_min: 0,
                t_max: 0,
                blocks: 0,
                files: Vec::new(),
                bundled: false,
                sources: Vec::new(),
                level: 0,
            },
            sources: vec![SourceAdvance {
                source: s.clone(),
                published_end: end,
                gaps: Vec::new(),
                owner: None,
            }],
        };
        let mut state = MetastoreState::default();
        state.apply(1, &[at(100)]);
        state.apply(2, &[at(40)]);
        assert_eq!(state.version, 2);
        assert_eq!(state.published_ends().collect::<Vec<_>>(), [(s.id(), 100)]);
        let json = serde_json::to_string(&at(5)).expect("serialize");
        assert!(json.contains("\"op\":\"publish\""), "{json}");
        assert_eq!(state.splits.len(), 2);
    }
}
