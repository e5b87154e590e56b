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

use std::collections::VecDeque;

/// The splits this node published itself (uploads, not merges), with the
/// metastore version of each publish: the newest [`KEPT`].
pub(super) struct OwnPublishes {
    recent: VecDeque<(u64, String)>,
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

impl OwnPublishes {
    /// At the start: everything this node published before is in the
    /// metastore up to `version`.
    pub(super) fn new(version: u64) -> OwnPublishes {
        OwnPublishes {
            recent: VecDeque::new(),
            floor: version,
        }
    }

    pub(super) fn published(&mut self, version: u64, split: &str) {
        if self.recent.len() == KEPT {
            if let Some((v, _)) = self.recent.pop_front() {
                self.floor = self.floor.max(v);
            }
        }
        self.recent.push_back((version, split.to_owned()));
    }

    /// The splits this node published after `version`, every one still
    /// shown (`shown`), or the version the asker must reach first.
    pub(super) fn after(
        &self,
        version: u64,
        shown: impl Fn(&str) -> bool,
        newest: u64,
    ) -> Result<Vec<&str>, FollowFirst> {
        if version < self.floor {
            return Err(FollowFirst(self.floor));
        }
        let mut splits = Vec::new();
        for (v, id) in self.recent.iter().filter(|(v, _)| *v > version) {
            if !shown(id) {
                // Merged (or retired) since: the merge is newer than
                // anything this node has seen.
                return Err(FollowFirst(newest.max(*v)));
            }
            splits.push(id.as_str());
        }
        Ok(splits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_answers_after_a_version_it_still_knows_its_publishes_of() {
        let mut own = OwnPublishes::new(10);
        own.published(12, "a");
        own.published(15, "b");
        let all = |_: &str| true;
        assert_eq!(
            own.after(9, all, 20),
            Err(FollowFirst(10)),
            "before the start"
        );
        assert_eq!(own.after(10, all, 20), Ok(vec!["a", "b"]));
        assert_eq!(own.after(12, all, 20), Ok(vec!["b"]));
        assert_eq!(own.after(15, all, 20), Ok(vec![]));
        // "a" merged away: an asker before it must first follow the merge.
        let merged = |id: &str| id != "a";
        assert_eq!(own.after(11, merged, 20), Err(FollowFirst(20)));
        assert_eq!(own.after(12, merged, 20), Ok(vec!["b"]));
        // The oldest publishes are forgotten, and the floor rises.
        for v in 0..KEPT as u64 {
            own.published(100 + v, "x");
        }
        assert_eq!(own.after(12, all, 2_000), Err(FollowFirst(15)));
    }
}
