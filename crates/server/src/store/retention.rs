//! Retention: which partitions go, and the record of what went.
//!
//! Every `storage.retention_check_secs` the committer's thread deletes the
//! partitions whose newest line is older than `storage.retention_days`,
//! then the oldest while the partitions' bytes exceed
//! `storage.max_disk_bytes`. The newest partition is never deleted for the
//! budget: it is where lines arrive. Each deletion is kept in the
//! [`RetentionLog`] for `GET /api/v1/storage`, and counted in `/metrics`
//! once its files are gone.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Instant;

use cblogs_core::api::DeletedPartition;
use cblogs_core::time::{format_rfc3339, now_ns};

use super::partitions::PartitionSet;
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
    fn record(&self, start_ns: i64, bytes: u64, reason: &str) {
        let mut log = self.deleted.lock().unwrap_or_else(|p| p.into_inner());
        log.push_back(DeletedPartition {
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
}

impl Retention {
    pub fn new(config: StorageConfig, log: std::sync::Arc<RetentionLog>) -> Retention {
        Retention {
            config,
            last_run: None,
            log,
        }
    }

    /// Whether `retention_check_secs` have passed since it last ran.
    pub fn due(&self) -> bool {
        self.last_run
            .is_none_or(|t| t.elapsed() >= self.config.retention_check())
    }

    /// Applies retention if it is [`due`](Retention::due).
    pub fn run_if_due(&mut self, store: &Store, partitions: &mut PartitionSet) {
        if !self.due() {
            return;
        }
        self.last_run = Some(Instant::now());
        self.apply(store, partitions);
    }

    /// Deletes partitions past `retention_days`, then the oldest ones while
    /// the rest are over `max_disk_bytes`.
    fn apply(&mut self, store: &Store, partitions: &mut PartitionSet) {
        if self.config.retention_days > 0 {
            let keep_ns = i64::try_from(
                self.config
                    .retention_days
                    .saturating_mul(86_400_000_000_000),
            )
            .unwrap_or(i64::MAX);
            let cutoff = now_ns().saturating_sub(keep_ns);
            for start in store.expired_partitions(cutoff) {
                self.delete(store, partitions, start, "age");
            }
        }
        let budget = self.config.max_disk_bytes;
        if budget == 0 {
            return;
        }
        let usage = disk_usage(store);
        let mut total = usage.bytes;
        let count = usage.partitions.len();
        for p in usage.partitions.iter().take(count.saturating_sub(1)) {
            if total <= budget {
                break;
            }
            self.delete(store, partitions, p.start_ns, "disk");
            total = total.saturating_sub(p.bytes);
        }
        if total > budget {
            tracing::warn!(
                bytes = total,
                budget,
                "partitions still over storage.max_disk_bytes: the newest partition alone is larger"
            );
        }
    }

    fn delete(&self, store: &Store, partitions: &mut PartitionSet, start: i64, reason: &str) {
        let Some((dir, bytes, removed)) = partitions.delete(store, start) else {
            return;
        };
        tracing::info!(dir = %dir.display(), bytes, reason, "retention: partition deleted");
        self.log.record(start, bytes, reason);
        match removed {
            Ok(()) => emit(PartitionDeleted { reason }),
            Err(e) => tracing::error!(error = %e, reason, "retention: cannot delete a partition"),
        }
    }
}
