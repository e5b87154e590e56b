//! The events the service's loops emit: each says what happened, and
//! updates the metrics that count it. A loop that counts something names
//! the event, not the metric: the event's wording is the loop's, the
//! metric's name and labels are here and in `mod.rs`.

use super::registry::{metrics, Kind, Refusal, RuleStatus};

/// Something worth counting happened.
pub trait Event {
    fn emit(self);
}

/// Counts `event`.
pub fn emit(event: impl Event) {
    event.emit();
}

/// An ingest request was answered 200: its lines are durable.
pub struct Ingested {
    pub lines: u64,
    pub bytes: u64,
    /// Lines the server already held (a retry's), dropped.
    pub duplicates: u64,
}

impl Event for Ingested {
    fn emit(self) {
        let m = metrics();
        m.lines_in.inc_by(self.lines);
        m.bytes_in.inc_by(self.bytes);
        m.duplicate_lines.inc_by(self.duplicates);
    }
}

/// A request was refused (auth, a limit, bad input, no room).
pub struct RequestRefused<'a> {
    /// The role of the endpoint: ingest, read or admin.
    pub endpoint: &'a str,
    pub reason: &'a str,
}

impl Event for RequestRefused<'_> {
    fn emit(self) {
        metrics()
            .refused
            .get_or_create(&Refusal {
                endpoint: self.endpoint.to_owned(),
                reason: self.reason.to_owned(),
            })
            .inc();
    }
}

/// A read request was answered, to its last byte.
pub struct QueryAnswered<'a> {
    /// search, histogram, tail or context.
    pub kind: &'a str,
    pub seconds: f64,
}

impl Event for QueryAnswered<'_> {
    fn emit(self) {
        metrics()
            .query_seconds
            .get_or_create(&Kind {
                kind: self.kind.to_owned(),
            })
            .observe(self.seconds);
    }
}

/// The committer ended a round (compress, write, index, fsync, commit).
pub struct CommitDone {
    pub seconds: f64,
}

impl Event for CommitDone {
    fn emit(self) {
        metrics().commit_seconds.observe(self.seconds);
    }
}

/// Retention deleted a partition.
pub struct PartitionDeleted<'a> {
    /// age or disk.
    pub reason: &'a str,
}

impl Event for PartitionDeleted<'_> {
    fn emit(self) {
        metrics()
            .retention_deleted
            .get_or_create(&Kind {
                kind: self.reason.to_owned(),
            })
            .inc();
    }
}

/// The alert engine sent (or held back, silenced) a notification.
pub struct AlertNotified<'a> {
    pub rule: &'a str,
    /// firing or resolved.
    pub status: &'a str,
}

impl Event for AlertNotified<'_> {
    fn emit(self) {
        metrics()
            .alert_notifications
            .get_or_create(&RuleStatus {
                rule: self.rule.to_owned(),
                status: self.status.to_owned(),
            })
            .inc();
    }
}

/// A request to the object store was answered (or failed).
pub struct ObjectStoreRequest<'a> {
    /// put, get, list or delete.
    pub kind: &'a str,
    pub ok: bool,
}

impl Event for ObjectStoreRequest<'_> {
    fn emit(self) {
        let m = metrics();
        let kind = Kind {
            kind: self.kind.to_owned(),
        };
        m.object_store_requests.get_or_create(&kind).inc();
        if !self.ok {
            m.object_store_errors.get_or_create(&kind).inc();
        }
    }
}

/// A reader needed a published split's index from the disk cache
/// (`cache.max_bytes`): there (a hit), or downloaded (a miss).
pub struct SplitCacheUsed {
    pub hit: bool,
}

impl Event for SplitCacheUsed {
    fn emit(self) {
        let m = metrics();
        if self.hit {
            m.cache_hits.inc();
        } else {
            m.cache_misses.inc();
        }
    }
}

/// A segment's term list was taken into the term cache: read from its
/// split's `terms.dat` (`stored`), or walked from the index (`built`).
pub struct TermListLoaded {
    pub stored: bool,
}

impl Event for TermListLoaded {
    fn emit(self) {
        let kind = Kind {
            kind: if self.stored { "stored" } else { "built" }.to_owned(),
        };
        metrics().term_lists.get_or_create(&kind).inc();
    }
}

/// A split's index was deleted from the disk cache to stay within
/// `cache.max_bytes` (the split stays published).
pub struct SplitCacheEvicted;

impl Event for SplitCacheEvicted {
    fn emit(self) {
        metrics().cache_evictions.inc();
    }
}

/// A merge of published splits ended: published, or failed.
pub struct MergeEnded {
    pub ok: bool,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub seconds: f64,
}

impl Event for MergeEnded {
    fn emit(self) {
        let m = metrics();
        if !self.ok {
            m.merge_failures.inc();
            return;
        }
        m.merges.inc();
        m.merge_bytes_read.inc_by(self.bytes_read);
        m.merge_bytes_written.inc_by(self.bytes_written);
        m.merge_seconds.observe(self.seconds);
    }
}
