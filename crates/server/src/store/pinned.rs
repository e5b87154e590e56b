//! Pinning a fan-out read to one metastore version (rule 3 of issue 18).
//!
//! A node that answers a search for the whole cluster reads the published
//! splits it shows (its own, and the others' as followed up to version
//! `V`), and asks every node for the rest: what that node holds that is
//! not published as of `V`. That is its lines in memory, its splits not
//! yet published, and the splits it published itself after `V`; between
//! the two, each line is read once, even while splits are published
//! during the query.
//!
//! A node cannot answer for a version it no longer knows what it
//! published after: older than its start, or than the publishes it
//! remembers, or one after which a split it published has been merged
//! away (its lines are now in the merge, which the asker shows once it
//! has followed it). It then names the version the asker must have
//! followed first, and the asker asks again.
//!
//! A split counts as published from its metastore commit, not from when
//! this node's store shows it so (its committer's next round): the
//! upload records it here at once.

use std::collections::{HashSet, VecDeque};

/// The splits this node published itself (uploads, not merges), with the
/// metastore version of each publish: the newest [`KEPT`]. Recorded by
/// the upload as soon as its commit returns, before the store shows the
/// split as published: from then on an asker that has followed that
/// version shows it, so this node must no longer answer it.
pub struct OwnPublishes {
    /// (version, split, whether the version is the publish's own: a
    /// publish found already made, its answer lost, is recorded at the
    /// version read after it).
    recent: VecDeque<(u64, String, bool)>,
    /// No version below this can be answered: the version at the start,
    /// or of the newest publish forgotten.
    floor: u64,
}

/// Publishes remembered: at one a second, over a quarter of an hour, far
/// more than any asker lags (a commit round, or a few while the
/// metastore cannot be read).
const KEPT: usize = 1_024;

/// A version this node cannot answer after: the asker must have followed
/// the metastore up to this one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowFirst(pub u64);

/// This node's own published splits as an asker pinned to a version sees
/// them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SplitAt<'a> {
    /// Published after the version: this node answers them.
    pub after: HashSet<&'a str>,
    /// Published at or before it: the asker shows them, whether or not
    /// this node's store shows them as published yet.
    pub before: HashSet<&'a str>,
}

impl SplitAt<'_> {
    /// Whether a split this node shows (`published` or not) is in its
    /// answer to an asker pinned to the version.
    pub fn answers(&self, id: &str, published: bool) -> bool {
        self.after.contains(id) || (!published && !self.before.contains(id))
    }
}

impl OwnPublishes {
    /// At the start: everything this node published before is in the
    /// metastore up to `version`.
    pub fn new(version: u64) -> OwnPublishes {
        OwnPublishes {
            recent: VecDeque::new(),
            floor: version,
        }
    }

    /// `split` was published by the metastore's `version` (`exact`: by
    /// that very version).
    pub fn published(&mut self, version: u64, split: &str, exact: bool) {
        if self.recent.len() == KEPT {
            if let Some((v, _, _)) = self.recent.pop_front() {
                self.floor = self.floor.max(v);
            }
        }
        self.recent.push_back((version, split.to_owned(), exact));
    }

    /// This node's splits as seen after `version`: those published after
    /// it (every one still shown, `shown`) and those at or before it; or
    /// the version the asker must reach first.
    pub fn at(
        &self,
        version: u64,
        shown: impl Fn(&str) -> bool,
        newest: u64,
    ) -> Result<SplitAt<'_>, FollowFirst> {
        if version < self.floor {
            return Err(FollowFirst(self.floor));
        }
        let mut at = SplitAt::default();
        for (v, id, exact) in &self.recent {
            if *v <= version {
                at.before.insert(id.as_str());
            } else if !exact {
                // Published at this version or before it: which, is lost.
                return Err(FollowFirst(*v));
            } else if !shown(id) {
                // Merged (or retired) since: the merge is newer than
                // anything this node has seen.
                return Err(FollowFirst(newest.max(*v)));
            } else {
                at.after.insert(id.as_str());
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids<'a>(set: &HashSet<&'a str>) -> Vec<&'a str> {
        let mut v: Vec<&str> = set.iter().copied().collect();
        v.sort();
        v
    }

    #[test]
    fn a_node_answers_after_a_version_it_still_knows_its_publishes_of() {
        let mut own = OwnPublishes::new(10);
        own.published(12, "a", true);
        own.published(15, "b", true);
        let all = |_: &str| true;
        assert_eq!(own.at(9, all, 20), Err(FollowFirst(10)), "before the start");
        let at = own.at(10, all, 20).unwrap();
        assert_eq!((ids(&at.after), ids(&at.before)), (vec!["a", "b"], vec![]));
        let at = own.at(12, all, 20).unwrap();
        assert_eq!((ids(&at.after), ids(&at.before)), (vec!["b"], vec!["a"]));
        // "a" is published as of 12 even while this store still shows it
        // unpublished (its upload's commit returned, the store not yet
        // told): not answered.
        assert!(!at.answers("a", false) && at.answers("b", true) && at.answers("c", false));
        assert!(!at.answers("old", true));
        // "a" merged away: an asker before it must first follow the merge.
        let merged = |id: &str| id != "a";
        assert_eq!(own.at(11, merged, 20).err(), Some(FollowFirst(20)));
        assert!(own.at(12, merged, 20).is_ok());
        // A publish whose version is not known exactly.
        own.published(18, "c", false);
        assert_eq!(own.at(16, all, 20).err(), Some(FollowFirst(18)));
        assert!(own.at(18, all, 20).unwrap().before.contains("c"));
        // The oldest publishes are forgotten, and the floor rises.
        for v in 0..KEPT as u64 {
            own.published(100 + v, "x", true);
        }
        assert_eq!(own.at(12, all, 2_000).err(), Some(FollowFirst(18)));
    }
}
