//! Fencing, in a cluster: when another node has taken a source from this
//! one (`cluster/ownership.rs`), this node drops what it holds of it
//! unpublished, before it could publish a range the new owner publishes
//! too. Its blocks leave the splits not yet published (deleted from
//! their index: tantivy's deletes, applied when the split is finished),
//! its lines in memory are forgotten, and its end goes back to its
//! published end. The WAL keeps its records until their splits are
//! published, as for any line; a restart drops them again (what the
//! metastore says of the source's owner is read at every start).

use std::collections::HashMap;

use super::SplitSet;
use crate::index::PartitionError;
use crate::metastore::SourceAdvance;
use crate::store::store::Store;

impl SplitSet {
    /// Drops what this node holds unpublished of sources `ids`, which
    /// another node has taken. The split being uploaded is left alone
    /// (its writer is the upload's): its publish is refused, and the
    /// refusal (`publish.rs`) drops them from it then.
    pub(in crate::store) fn fence(&mut self, store: &Store, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        let uploading = self.uploading.as_ref().map(|u| u.id.clone());
        let mut parts: Vec<_> = self.building.values().map(|b| b.part.clone()).collect();
        parts.extend(self.sealed.iter().map(|s| s.part.clone()));
        for (_, b) in self.building.iter_mut() {
            // A writer held open would lock the index: the delete below
            // opens its own, and the next commit makes one again.
            b.writer = None;
        }
        let mut dropped_from = Vec::new();
        for part in parts
            .iter()
            .filter(|p| uploading.as_deref() != Some(p.id.as_str()))
        {
            let result: Result<(), PartitionError> = (|| {
                let mut writer = part.writer(self.config.index_writer_bytes)?;
                writer.delete_sources(ids);
                writer.commit()
            })();
            match result {
                Ok(()) => dropped_from.push(part.id.clone()),
                Err(e) => {
                    tracing::error!(split = %part.id, error = %e, "cannot drop the blocks of sources taken by another node from a split; its publish will be refused and tried again")
                }
            }
        }
        let published_ends: HashMap<u64, u64> = ids
            .iter()
            .map(|id| (*id, self.metastore.owner(*id).1))
            .collect();
        store.drop_unpublished(&published_ends, &dropped_from);
        if let Some(own) = &self.ownerships {
            own.dropped(ids);
        }
        tracing::warn!(
            sources = ids.len(),
            splits = dropped_from.len(),
            "sources taken by another node: what this node held of them unpublished is dropped"
        );
    }

    /// After a publish refused: the sources of `ends` (the split's) that
    /// are no longer this node's, as the metastore now says. The refusal
    /// read every version before it, so this is current.
    pub(super) fn lost_in(&self, ends: &[SourceAdvance]) -> Vec<u64> {
        ends.iter()
            .filter(|a| a.owner.is_some() && self.metastore.owner(a.source.id()).0 != a.owner)
            .map(|a| a.source.id())
            .collect()
    }

    /// In a cluster: each source's advance carries the ownership it was
    /// taken under; a source this node no longer holds has none to
    /// publish (its blocks were dropped from the split, or are dropped
    /// when the publish is refused).
    pub(super) fn under_ownership(&self, mut ends: Vec<SourceAdvance>) -> Vec<SourceAdvance> {
        let Some(own) = &self.ownerships else {
            return ends;
        };
        ends.retain_mut(|a| {
            a.owner = own.of(a.source.id());
            a.owner.is_some()
        });
        ends
    }

    /// Takes up, at the start, what the metastore says of the sources
    /// this node holds unpublished lines of (replayed from the WAL):
    /// those another node has taken are dropped; those nobody owns (held
    /// before this node joined a cluster) are taken. Returns why taking
    /// failed, if it did: they are taken with their next lines then.
    pub fn settle_ownership(&mut self, store: &Store) -> Result<(), String> {
        let Some(own) = self.ownerships.clone() else {
            return Ok(());
        };
        let mut taken_by_others = Vec::new();
        let mut unowned = Vec::new();
        for e in store.ends(&|_| true) {
            let id = e.source.id();
            if e.held_end <= e.published_end || own.of(id).is_some() {
                continue;
            }
            match self.metastore.owner(id).0 {
                Some(_) => taken_by_others.push(id),
                None => unowned.push((*e.source).clone()),
            }
        }
        self.fence(store, &taken_by_others);
        if unowned.is_empty() {
            return Ok(());
        }
        own.take(&unowned).map(|_| ()).map_err(|e| e.to_string())
    }
}
