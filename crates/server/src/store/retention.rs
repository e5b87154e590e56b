//! Retention: which splits go, and the record of what went.
//!
//! Every `storage.retention_check_secs` the committer's thread retires the
//! published splits whose newest line is older than
//! `storage.retention_days`, then the oldest while the splits' bytes
//! exceed `storage.max_disk_bytes` (on the local store only: it bounds
//! this disk), then the oldest while the published splits in the object
//! store exceed `storage.max_bucket_bytes`. Splits not yet published are
//! never deleted, nor the newest published one for a budget. A retired split
//! leaves readers at once (one metastore commit); its objects are deleted
//! once no running search can still read them ([`SplitSet`]). Each
//! retirement is kept in the [`RetentionLog`] for `GET /api/v1/storage`,
//! and counted in `/metrics`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use cblogs_core::api::DeletedPartition;
use cblogs_core::time::{format_rfc3339, now_ns};

use super::splits::SplitSet;
use super::store::Store;
use super::usage::disk_usage;
use crate::config::StorageConfig;
use crate::metrics::{emit, PartitionDeleted};

/// How many deletions the log keeps.
const LOG_LEN: usize = 100;

/// What retention deleted since the start (the last [`LOG_LEN`]).
#[derive(Default)]
pub struct RetentionLog {
    deleted: Mutex<VecDeque<DeletedPartition>>,
}

impl RetentionLog {
    fn record(&self, split: &str, start_ns: i64, bytes: u64, reason: &str) {
        let mut log = self.deleted.lock().unwrap_or_else(|p| p.into_inner());
        log.push_back(DeletedPartition {
            split: split.to_owned(),
            start: format_rfc3339(start_ns),
            bytes,
            reason: reason.to_owned(),
            at: format_rfc3339(now_ns()),
        });
        if log.len() > LOG_LEN {
            log.pop_front();
        }
    }

    /// Oldest first.
    pub fn list(&self) -> Vec<DeletedPartition> {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

pub struct Retention {
    config: StorageConfig,
    last_run: Option<Instant>,
    log: std::sync::Arc<RetentionLog>,
    local_store: bool,
}

impl Retention {
    /// `local_store`: the published splits are on this disk (the embedded
    /// default). Only then does `max_disk_bytes` delete any: with a remote
    /// store this disk holds the WAL, the splits being built and cached
    /// indexes, and deleting from the bucket would free none of it.
    pub fn new(
        config: StorageConfig,
        log: std::sync::Arc<RetentionLog>,
        local_store: bool,
    ) -> Retention {
        if !local_store && config.max_disk_bytes > 0 {
            tracing::warn!(
                max_disk_bytes = config.max_disk_bytes,
                "storage.max_disk_bytes deletes nothing with a remote object store: it bounds splits on this disk, and the published ones are in the store"
            );
        }
        Retention {
            config,
            last_run: None,
            log,
            local_store,
        }
    }

    /// Whether `retention_check_secs` have passed since it last ran.
    pub fn due(&self) -> bool {
        self.last_run
            .is_none_or(|t| t.elapsed() >= self.config.retention_check())
    }

    /// Applies retention if it is [`due`](Retention::due).
    pub fn run_if_due(&mut self, store: &Store, splits: &mut SplitSet) {
        if !self.due() {
            return;
        }
        self.last_run = Some(Instant::now());
        self.apply(store, splits);
    }

    /// Retires splits past `retention_days`, then the oldest ones while
    /// the rest are over `max_disk_bytes`, then over `max_bucket_bytes`.
    fn apply(&mut self, store: &Store, splits: &mut SplitSet) {
        if self.config.retention_days > 0 {
            let keep_ns = i64::try_from(
                self.config
                    .retention_days
                    .saturating_mul(86_400_000_000_000),
            )
            .unwrap_or(i64::MAX);
            let cutoff = now_ns().saturating_sub(keep_ns);
            let expired = store.expired_partitions(cutoff);
            self.retire(store, splits, &expired, "age");
        }
        self.apply_disk_budget(store, splits);
        let budget = self.config.max_bucket_bytes;
        if budget > 0 {
            let over = splits.over_bucket_budget(budget);
            self.retire(store, splits, &over, "bucket");
        }
    }

    fn apply_disk_budget(&mut self, store: &Store, splits: &mut SplitSet) {
        let budget = self.config.max_disk_bytes;
        if budget == 0 || !self.local_store {
            return;
        }
        let usage = disk_usage(store);
        let mut total = usage.bytes;
        let published: Vec<_> = usage.partitions.iter().filter(|p| p.published).collect();
        let mut over = Vec::new();
        for p in published.iter().take(published.len().saturating_sub(1)) {
            if total <= budget {
                break;
            }
            over.push(p.id.clone());
            total = total.saturating_sub(p.bytes);
        }
        self.retire(store, splits, &over, "disk");
        if total > budget {
            tracing::warn!(
                bytes = total,
                budget,
                "splits still over storage.max_disk_bytes: the newest published split and those not yet published are kept"
            );
        }
    }

    fn retire(&self, store: &Store, splits: &mut SplitSet, ids: &[String], reason: &str) {
        match splits.retire(store, ids, reason) {
            Ok(retired) => {
                for (split, bytes) in retired {
                    tracing::info!(split = %split.id(), bytes, reason, "retention: split retired");
                    self.log.record(split.id(), split.start_ns(), bytes, reason);
                    emit(PartitionDeleted { reason });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, reason, "retention: cannot retire splits; tried again at the next check")
            }
        }
    }
}
