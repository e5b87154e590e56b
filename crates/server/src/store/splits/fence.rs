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
use std::sync::Arc;

use super::SplitSet;
use crate::index::{Partition, PartitionError};
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
        tracing::warn!(
            sources = ids.len(),
            splits = dropped_from.len(),
            "sources taken by another node: what this node held of them unpublished is dropped"
        );
    }

    /// After a publish refused: the sources of `ends` (the split's) whose
    /// lines were taken under an ownership that is no longer the source's,
    /// as the metastore now says. The refusal read every version before
    /// it, so this is current.
    pub(super) fn lost_in(&self, ends: &[SourceAdvance]) -> Vec<u64> {
        ends.iter()
            .filter(|a| a.owner.is_some() && self.metastore.owner(a.source.id()).0 != a.owner)
            .map(|a| a.source.id())
            .collect()
    }

    /// Drops from `part` (whose publish was refused) the sources `lost`
    /// it holds under an ownership gone. Those another node holds now are
    /// fenced (dropped from every split and from memory). Those this node
    /// took back since (the split was uploading when the other node took
    /// them, so the fence left it alone) leave this split only: what the
    /// node holds of them under its new epoch is its to publish.
    pub(super) fn drop_lost(&mut self, store: &Store, part: &Arc<Partition>, lost: &[u64]) {
        let owner_now = |id: u64| self.metastore.owner(id).0;
        let (taken_back, mut gone): (Vec<u64>, Vec<u64>) = lost.iter().partition(|&&id| {
            let own = self.ownerships.as_ref().and_then(|o| o.of(id));
            own.is_some() && own == owner_now(id)
        });
        if !taken_back.is_empty() {
            if let Err(e) = self.drop_from(store, part, &taken_back) {
                // Published again as they are, its old lines would go
                // out under the new epoch: they are dropped whole
                // instead, everywhere (the shipper sends them again).
                tracing::error!(split = %part.id, error = %e, "cannot drop the blocks of an ownership lost from a split; dropping all this node holds of those sources");
                gone.extend(taken_back);
            }
        }
        self.fence(store, &gone);
    }

    /// Deletes sources `ids`' blocks from split `part` alone (not
    /// published), and the store's view of it follows.
    pub(super) fn drop_from(
        &self,
        store: &Store,
        part: &Arc<Partition>,
        ids: &[u64],
    ) -> Result<(), PartitionError> {
        let mut writer = part.writer(self.config.index_writer_bytes)?;
        writer.delete_sources(ids);
        writer.commit()?;
        store.drop_from_split(ids, &part.id);
        Ok(())
    }

    /// Sources of `ends` (a split's) whose lines this node dropped when
    /// another took them, but whose blocks a failed delete left in the
    /// split: they must leave it before it is published.
    pub(super) fn left_behind(&self, ends: &[SourceAdvance]) -> Vec<u64> {
        let Some(own) = &self.ownerships else {
            return Vec::new();
        };
        ends.iter()
            .map(|a| a.source.id())
            .filter(|id| own.was_dropped(*id))
            .collect()
    }

    /// In a cluster: each source's advance carries the ownership its lines
    /// were taken under. That is the one held now: lines accepted under
    /// an epoch are applied only while it is held (`Store::apply`), and
    /// losing it drops them from memory and every split but one being
    /// uploaded, whose publish is then refused (`drop_lost`). A source
    /// this node no longer holds has none to publish.
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
        own.take(&unowned, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
