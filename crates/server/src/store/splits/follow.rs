//! Following the metastore, in a cluster: what the other nodes publish,
//! merge and retire is shown to this node's readers within a commit
//! round, so that any node answers for every published line (the
//! published half of a fan-out read).
//!
//! The versions are taken up change by change (`Metastore::changes_since`,
//! read with every round's refresh), skipping this node's own: its own
//! pipeline (publish, merge, retention) shows what it did, at the moment
//! it is safe to. A node too far behind for the versions kept reads the
//! whole list of splits instead.

use std::collections::HashSet;

use super::{open_published, SplitSet};
use crate::metastore::{Change, SplitEntry, SplitState};
use crate::store::merge::PublishedSplit;
use crate::store::store::Store;

impl SplitSet {
    /// Shows readers what other nodes committed since the last call (the
    /// metastore refreshed by the caller).
    pub(super) fn follow_published(&mut self, store: &Store) {
        // Held while the round is shown: a pinned snapshot sees all of
        // it, with the version it reaches, or none of it.
        let mut shown = store.following();
        let Some(applied) = self.metastore.changes_since(self.followed) else {
            self.follow_whole(store);
            *shown = self.followed;
            return;
        };
        for a in applied {
            if !a.mine {
                for change in a.changes.iter() {
                    self.take_up(store, change);
                }
            }
            self.followed = a.version;
        }
        *shown = self.followed;
    }

    fn take_up(&mut self, store: &Store, change: &Change) {
        match change {
            Change::Publish { split, sources } => {
                if !self.in_bucket.contains_key(&split.id) {
                    self.show_elsewhere(store, split, sources);
                }
            }
            Change::Merge { split, inputs, .. } => {
                if self.in_bucket.contains_key(&split.id) {
                    return;
                }
                match open_published(&self.bucket, &self.cache, split) {
                    Ok(handle) => {
                        store.merged(inputs, handle);
                        for id in inputs {
                            self.in_bucket.remove(id);
                        }
                        self.in_bucket
                            .insert(split.id.clone(), PublishedSplit::of(split));
                    }
                    Err(e) => {
                        tracing::error!(split = %split.id, error = %e, "cannot open a split another node merged; its inputs stay shown")
                    }
                }
            }
            Change::Retire { splits, .. } => {
                for id in splits {
                    // The node that retired it deletes its objects, after
                    // the longest query that could still be reading them.
                    if self.in_bucket.remove(id).is_some() {
                        store.remove_partition(id);
                    }
                }
            }
            Change::Staged { .. } | Change::Forget { .. } | Change::Own { .. } => {}
        }
    }

    /// Another node's published split, shown to readers.
    fn show_elsewhere(
        &mut self,
        store: &Store,
        split: &SplitEntry,
        ends: &[crate::metastore::SourceAdvance],
    ) {
        let shown = open_published(&self.bucket, &self.cache, split)
            .map_err(|e| e.to_string())
            .and_then(|handle| {
                store
                    .show_published_elsewhere(handle, ends)
                    .map_err(|e| e.to_string())
            });
        match shown {
            Ok(()) => {
                self.in_bucket
                    .insert(split.id.clone(), PublishedSplit::of(split));
            }
            Err(e) => {
                tracing::error!(split = %split.id, error = %e, "cannot show a split another node published; tried again when the metastore is read whole")
            }
        }
    }

    /// Too far behind for the versions kept: every published split not
    /// shown is shown, every one shown that is no longer published goes.
    fn follow_whole(&mut self, store: &Store) {
        self.followed = self.metastore.version();
        let splits = self.metastore.splits();
        let own: HashSet<&str> = self
            .building
            .values()
            .map(|b| b.part.id.as_str())
            .chain(self.sealed.iter().map(|s| s.part.id.as_str()))
            .collect();
        let gone: Vec<String> = self
            .in_bucket
            .keys()
            .filter(|id| !matches!(splits.get(*id), Some(SplitState::Published { .. })))
            .cloned()
            .collect();
        for id in gone {
            self.in_bucket.remove(&id);
            store.remove_partition(&id);
        }
        let new: Vec<&SplitEntry> = splits
            .iter()
            .filter(|(id, _)| !own.contains(id.as_str()) && !self.in_bucket.contains_key(*id))
            .filter_map(|(_, s)| match s {
                SplitState::Published { entry } => Some(entry),
                _ => None,
            })
            .collect();
        for entry in new {
            self.show_elsewhere(store, entry, &[]);
        }
    }
}
