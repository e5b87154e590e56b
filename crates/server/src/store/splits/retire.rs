//! The end of a split's life: retired from readers (retention, or a
//! merge's inputs), its objects deleted once no reader holds it and no
//! running search can still read it, then forgotten; and the sweep of
//! splits staged and never published (a crash mid-upload or mid-merge).

use std::time::{Duration, Instant};

use cblogs_core::time::now_ns;

use super::SplitSet;
use crate::index::split_window;
use crate::metastore::{Change, SplitState};
use crate::store::disk_cache::{dir_bytes, SplitHandle};
use crate::store::merge::PublishedSplit;
use crate::store::published::{split_key, PublishError};
use crate::store::store::Store;

/// How often abandoned staged splits are looked for (at most; more often
/// when `storage.abandoned_split_secs` is shorter).
pub(super) const STAGED_CHECK: Duration = Duration::from_secs(60);

/// A retired split still held by a reader (a snapshot: a slow `tail -n`
/// on a remote store has no time limit) keeps its objects past its grace,
/// but at most this long.
pub(super) const RETIRED_HOLD_MAX: Duration = Duration::from_secs(3600);

/// A retired split whose objects are still in the store.
pub(super) struct Retired {
    pub(super) id: String,
    /// Not deleted before this: the longest search that could still be
    /// reading it.
    pub(super) at: Instant,
    /// What readers were shown of it, if this process showed it: its
    /// objects are kept while a reader still holds it (up to
    /// [`RETIRED_HOLD_MAX`] past `at`).
    pub(super) held: Option<SplitHandle>,
}

impl Retired {
    fn due(&self, now: Instant) -> bool {
        let released = self.held.as_ref().is_none_or(|h| !h.is_shared());
        self.at <= now && (released || self.at + RETIRED_HOLD_MAX <= now)
    }
}

impl SplitSet {
    /// Takes published splits from readers for retention (one metastore
    /// commit); their objects are deleted once no running search can
    /// still read them. Returns the splits retired, with their folder
    /// and bytes.
    pub(in crate::store) fn retire(
        &mut self,
        store: &Store,
        ids: &[String],
        reason: &str,
    ) -> Result<Vec<(SplitHandle, u64)>, PublishError> {
        // A split the metastore no longer has published (a merge took it
        // and this node has not shown the output yet) is left for later:
        // one such id must not keep retention from retiring the rest.
        let ids: Vec<String> = ids
            .iter()
            .filter(|id| self.metastore.is_published(id))
            .cloned()
            .collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.metastore.commit(vec![Change::Retire {
            splits: ids.clone(),
            at_ns: now_ns(),
            reason: reason.to_owned(),
        }])?;
        let at = Instant::now() + self.retired_grace;
        let mut retired = Vec::new();
        for id in ids {
            // Its size in the store (a cached split's folder here holds
            // only its index, or nothing).
            let in_bucket = self.in_bucket.remove(&id).map(|b| b.bytes);
            let shown = store.remove_partition(&id);
            self.retired.push(Retired {
                id,
                at,
                held: shown.clone(),
            });
            if let Some(split) = shown {
                let bytes = in_bucket.unwrap_or_else(|| dir_bytes(&split.dir()));
                retired.push((split, bytes));
            }
        }
        self.show_bucket_bytes();
        Ok(retired)
    }

    /// The published splits to retire, oldest first, for the rest to fit
    /// in `budget` bytes of the object store; never the newest one.
    pub(in crate::store) fn over_bucket_budget(&self, budget: u64) -> Vec<String> {
        let mut by_age: Vec<(&String, &PublishedSplit)> = self.in_bucket.iter().collect();
        by_age.sort_by_key(|(id, b)| (b.window_ns, b.t_max, *id));
        let mut total: u64 = by_age.iter().map(|(_, b)| b.bytes).sum();
        let mut over = Vec::new();
        for (id, b) in by_age.iter().take(by_age.len().saturating_sub(1)) {
            if total <= budget {
                break;
            }
            over.push((*id).clone());
            total = total.saturating_sub(b.bytes);
        }
        over
    }

    /// This node becomes the cluster's housekeeper: the splits the
    /// metastore lists as retired and this node does not hold for
    /// deletion (another node retired them, and stopped before it
    /// deleted them) are deleted after the grace, as its own.
    pub(in crate::store) fn take_over_retired(&mut self) {
        let held: std::collections::HashSet<String> =
            self.retired.iter().map(|r| r.id.clone()).collect();
        let at = Instant::now() + self.retired_grace;
        for (id, state) in self.metastore.splits() {
            if matches!(state, SplitState::Retired { .. }) && !held.contains(&id) {
                self.retired.push(Retired { id, at, held: None });
            }
        }
    }

    /// Deletes the objects of retired splits whose grace has passed and
    /// that no reader holds, then forgets them in the metastore.
    pub(in crate::store) fn delete_retired(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|r| r.due(now));
        self.retired = later;
        let mut gone = Vec::new();
        for r in due {
            match self.delete_objects(&r.id) {
                Ok(()) => gone.push(r.id),
                Err(e) => {
                    tracing::warn!(split = %r.id, error = %e, "cannot delete a retired split's objects; tried again");
                    self.retired.push(r);
                }
            }
        }
        if !gone.is_empty() {
            if let Err(e) = self.metastore.commit(vec![Change::Forget { splits: gone }]) {
                tracing::warn!(error = %e, "cannot forget deleted splits in the metastore");
            }
        }
    }

    /// Deletes the objects of splits staged more than
    /// `storage.abandoned_split_secs`
    /// ago that are neither published nor held here, and forgets them.
    /// Every object a split has is written after its staging, so this
    /// leaves no orphan behind a crash.
    pub(in crate::store) fn delete_abandoned(&mut self) {
        let grace = Duration::from_secs(self.config.abandoned_split_secs);
        if self
            .staged_checked
            .is_some_and(|t| t.elapsed() < STAGED_CHECK.min(grace))
        {
            return;
        }
        self.staged_checked = Some(Instant::now());
        // What this node knows may be stale (a commit whose answer was
        // lost): objects are deleted only on what the store says now.
        if let Err(e) = self.metastore.refresh() {
            tracing::warn!(error = %e, "cannot read the metastore to look for abandoned splits; tried again");
            return;
        }
        let grace_ns = i64::try_from(grace.as_nanos()).unwrap_or(i64::MAX);
        let before = now_ns().saturating_sub(grace_ns);
        let ours = |id: &str| {
            self.sealed.iter().any(|s| s.part.id == id)
                || self.building.values().any(|b| b.part.id == id)
                || self.merger.is_output(id)
        };
        let abandoned: Vec<String> = self
            .metastore
            .staged_before(before)
            .into_iter()
            .filter(|id| !ours(id) && split_window(id).is_some())
            .collect();
        let mut gone = Vec::new();
        for id in abandoned {
            match self.delete_objects(&id) {
                Ok(()) => gone.push(id),
                Err(e) => {
                    tracing::warn!(split = %id, error = %e, "cannot delete an abandoned split's objects; tried again")
                }
            }
        }
        if gone.is_empty() {
            return;
        }
        tracing::info!(splits = gone.len(), "abandoned staged splits deleted");
        if let Err(e) = self.metastore.commit(vec![Change::Forget { splits: gone }]) {
            tracing::warn!(error = %e, "cannot forget abandoned splits in the metastore");
        }
    }

    fn delete_objects(&self, id: &str) -> Result<(), crate::bucket::BucketError> {
        for key in self.bucket.list(&split_key(id), None)? {
            self.bucket.delete(&key)?;
        }
        self.cache.forget(id);
        Ok(())
    }
}
