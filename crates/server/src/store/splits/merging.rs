//! Background merges as the committer's thread drives them: take up the
//! merge that ended (show its output in place of its inputs), settle one
//! whose commit was not answered, and start the next one due
//! (`store/merge/`: the policy, the job, the `Merger`).

use std::sync::Arc;
use std::time::Instant;

use cblogs_core::time::now_ns;

use super::retire::Retired;
use super::{open_published, SplitSet};
use crate::index::{MergeOptions, Partition};
use crate::metastore::{SplitEntry, SplitState};
use crate::store::merge::{
    delete_output, plan, MergeFailure, MergeGroup, MergeJob, Merged, PublishedSplit,
};
use crate::store::published::{split_key, PublishError};
use crate::store::store::Store;

/// Free disk a merge leaves beyond what it writes.
const MERGE_DISK_MARGIN: u64 = 256 << 20;

impl SplitSet {
    /// Takes up a merge that ended, and starts the next one due
    /// (`store/merge/`): one at a time, on a thread of its own.
    pub(in crate::store) fn merge(&mut self, store: &Store) {
        match self.merger.finished() {
            Some(Ok(merged)) => {
                let Merged {
                    entry,
                    part,
                    inputs,
                    counts,
                    seconds,
                } = merged;
                self.show_merged(store, entry, &inputs, Some(&part));
                self.status.merged(&counts, seconds);
                tracing::info!(
                    inputs = inputs.len(),
                    blocks_in = counts.blocks_in,
                    blocks_out = counts.blocks_out,
                    bytes_in = counts.bytes_in,
                    bytes_out = counts.bytes_out,
                    seconds,
                    "splits merged"
                );
            }
            Some(Err(MergeFailure::Lost(why))) => {
                tracing::info!(
                    why,
                    "a merge lost to another change; its output was deleted"
                );
                self.status.merge_failed(why);
            }
            Some(Err(e)) => {
                tracing::error!(error = %e, "merge failed; its inputs stay as they are, and it is tried again later");
                self.status.merge_failed(e.to_string());
            }
            None => {}
        }
        self.resolve_unsure(store);
        let due = self.merges_due();
        let next = due.iter().position(|g| {
            self.merger.may_merge(g) && g.iter().all(|id| self.metastore.is_published(id))
        });
        let starts = self.merger.may_start() && next.is_some() && self.room_to_merge(&due, next);
        self.status.set_merges_pending(
            (due.len() - usize::from(starts)) as u64,
            starts || self.merger.is_running(),
        );
        let (true, Some(next)) = (starts, next) else {
            return;
        };
        let group = due[next].clone();
        let Some(handles) = store.published_handles(&group) else {
            return;
        };
        let splits: Vec<&PublishedSplit> = group
            .iter()
            .filter_map(|id| self.in_bucket.get(id))
            .collect();
        let (Some(first), Some(level)) = (splits.first(), splits.iter().map(|s| s.level).max())
        else {
            return;
        };
        let config = self.merger.config();
        let job = MergeJob {
            inputs: group.iter().cloned().zip(handles).collect(),
            level,
            window_ns: first.window_ns,
            bucket: self.bucket.clone(),
            metastore: self.metastore.clone(),
            root: self.merger.root().to_owned(),
            options: MergeOptions {
                block_bytes: config.block_bytes,
                zstd_level: config.zstd_level,
                writer_bytes: self.config.index_writer_bytes,
            },
            nice: config.nice,
            stop: Default::default(),
        };
        if let Err(e) = self.merger.start(job) {
            tracing::error!(error = %e, "cannot start a merge");
            self.status.merge_failed(e.to_string());
        }
    }

    /// Whether this disk has room for merging `due[next]`: its output, and
    /// its inputs' blocks too when they come from a remote store, with
    /// room to spare (ingest must never find the disk full because of a
    /// merge).
    fn room_to_merge(&self, due: &[MergeGroup], next: Option<usize>) -> bool {
        let Some(group) = next.and_then(|i| due.get(i)) else {
            return false;
        };
        let bytes: u64 = group
            .iter()
            .filter_map(|id| self.in_bucket.get(id))
            .map(|s| s.bytes)
            .sum();
        let copies = if self.bucket.is_local() { 1 } else { 2 };
        let need = bytes * copies + MERGE_DISK_MARGIN;
        let free = crate::disk::free_bytes(self.merger.root()).unwrap_or(u64::MAX);
        if free < need {
            tracing::warn!(free, need, "a merge waits for disk space");
        }
        free >= need
    }

    /// Settles a merge whose commit failed without saying whether the
    /// store wrote it: once the metastore is read again, it is shown if it
    /// was published, and its output deleted if not.
    fn resolve_unsure(&mut self, store: &Store) {
        let Some((output, inputs)) = self.merger.unsure().cloned() else {
            return;
        };
        if let Err(e) = self.metastore.refresh() {
            tracing::warn!(split = %output, error = %e, "cannot read the metastore to learn whether a merge was published; tried again");
            return;
        }
        match self.metastore.split(&output) {
            Some(SplitState::Published { entry }) => {
                tracing::info!(split = %output, "a merge whose commit seemed to fail was published");
                self.show_merged(store, entry, &inputs, None);
            }
            _ => delete_output(&self.bucket, &self.metastore, &output),
        }
        self.merger.resolved();
    }

    /// The merges the policy would start now, the running one's inputs
    /// left out. Windows settle by line time: the newest line published
    /// (a benchmark posting a past day in minutes settles its windows as
    /// the day would), but never past the clock (a line dated in the
    /// future would settle every window).
    fn merges_due(&self) -> Vec<MergeGroup> {
        if !self.merger.config().enabled {
            return Vec::new();
        }
        let splits: Vec<&PublishedSplit> = self
            .in_bucket
            .values()
            .filter(|s| !self.merger.is_input(&s.id))
            .collect();
        let newest = splits.iter().map(|s| s.t_max).max().unwrap_or(i64::MIN);
        plan(&splits, self.merger.config(), newest.min(now_ns()))
    }

    /// A merge was published: readers are shown its output in place of its
    /// inputs, whose objects are deleted once no reader holds them and no
    /// running search can still read them. `part` is the output's local
    /// copy, if this node has it (a remote store's index is moved into
    /// the disk cache from there).
    fn show_merged(
        &mut self,
        store: &Store,
        entry: SplitEntry,
        inputs: &[String],
        part: Option<&Arc<Partition>>,
    ) {
        let remote = self.bucket.local_path(&split_key(&entry.id)).is_none();
        let shown = match part {
            Some(part) if remote => self.cache.adopt(part).map_err(PublishError::from),
            _ => Ok(()),
        }
        .and_then(|()| open_published(&self.bucket, &self.cache, &entry));
        if let Some(part) = part {
            if let Err(e) = std::fs::remove_dir_all(part.dir()) {
                tracing::warn!(dir = %part.dir().display(), error = %e, "a merged split's local copy could not be deleted");
            }
        }
        let handle = match shown {
            Ok(handle) => handle,
            Err(e) => {
                // Published, and its inputs retired, in the metastore: the
                // inputs stay shown (and kept) here until the next start.
                tracing::error!(split = %entry.id, error = %e, "a merged split is published but cannot be opened; its inputs are read instead until cblogsd restarts");
                self.status.merge_failed(e.to_string());
                return;
            }
        };
        let replaced = store.merged(inputs, handle);
        let at = Instant::now() + self.retired_grace;
        for id in inputs {
            self.in_bucket.remove(id);
            let held = replaced.iter().find(|h| h.id() == id).cloned();
            self.retired.push(Retired {
                id: id.clone(),
                at,
                held,
            });
        }
        tracing::info!(split = %entry.id, level = entry.level, "merged split shown");
        self.in_bucket
            .insert(entry.id.clone(), PublishedSplit::of(&entry));
        self.show_bucket_bytes();
    }

    /// Stops a running merge (cblogsd is stopping): what it wrote is deleted.
    pub(in crate::store) fn stop_merging(&mut self) {
        self.merger.stop();
    }
}
