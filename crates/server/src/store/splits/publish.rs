//! Publishing sealed splits, oldest first: one upload at a time on the
//! `split-upload` thread (staged, finished into one segment, uploaded,
//! published with its sources' ends in one metastore commit), taken up by
//! the committer's thread, which shows the published copy to readers.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cblogs_core::time::now_ns;

use super::{open_published, SplitSet};
use crate::bucket::Bucket;
use crate::index::Partition;
use crate::metastore::{Change, Metastore, MetastoreError, SourceAdvance, SplitEntry, SplitState};
use crate::store::merge::PublishedSplit;
use crate::store::pinned::OwnPublishes;
use crate::store::published::{split_key, upload_split, PublishError};
use crate::store::store::Store;

/// After a failed publish the next try waits this long, doubled after
/// each failure up to [`PUBLISH_BACKOFF_MAX`]: a store that is down is
/// not asked every commit round.
const PUBLISH_BACKOFF: Duration = Duration::from_secs(1);
const PUBLISH_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// An upload running on its thread: the split's id, its sources' ends as
/// of its sealing, and what the thread answers.
pub(super) struct Upload {
    pub(super) id: String,
    ends: Vec<SourceAdvance>,
    thread: std::thread::JoinHandle<Result<SplitEntry, PublishError>>,
}

/// What an upload needs, apart from the set (it runs on another thread).
struct Uploader {
    bucket: Arc<Bucket>,
    metastore: Arc<Metastore>,
    writer_bytes: usize,
    /// Told of the publish as soon as its commit returns (`pinned.rs`).
    own_publishes: Arc<Mutex<OwnPublishes>>,
}

impl Uploader {
    /// Stages the split, finishes its index, uploads its files and
    /// publishes it with its sources' `ends` in one metastore commit.
    fn upload(
        &self,
        part: &Arc<Partition>,
        ends: &[SourceAdvance],
    ) -> Result<SplitEntry, PublishError> {
        self.metastore.commit(vec![Change::Staged {
            split: part.id.clone(),
            at_ns: now_ns(),
        }])?;
        // Its last writer (if any) was dropped at sealing: a fresh one
        // merges what is committed into one segment.
        part.writer(self.writer_bytes)?.finish()?;
        let entry = upload_split(&self.bucket, part)?;
        let version = self.metastore.commit(vec![Change::Publish {
            split: entry.clone(),
            sources: ends.to_vec(),
        }])?;
        self.own_publishes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .published(version, &part.id, true);
        Ok(entry)
    }
}

impl SplitSet {
    /// Publishes the sealed splits, oldest first, until one fails (it
    /// and the rest are tried again after a backoff; `now` tries at once,
    /// a flush). Returns how many were published.
    pub(in crate::store) fn publish(&mut self, store: &Store, now: bool) -> usize {
        let done = self.publish_sealed(store, now);
        let building = self.building.values().map(|b| b.created);
        let sealed = self.sealed.iter().map(|s| s.created);
        self.status
            .set_oldest_unpublished(building.chain(sealed).min());
        done
    }

    /// Publishes the sealed splits in order. The oldest one's upload runs
    /// on a thread; each call takes it up when it is done (a flush, `now`,
    /// waits for it) and shows it, then starts the next one's.
    fn publish_sealed(&mut self, store: &Store, now: bool) -> usize {
        let mut done = 0;
        // Refusals taken up by dropping sources another node took: a
        // few at most (a failing delete must not loop here).
        let mut fenced = 0;
        while let Some(first) = self.sealed.first() {
            let part = first.part.clone();
            let (entry, ends) = match self.uploading.take() {
                Some(up) if up.thread.is_finished() || now => {
                    let entry = up.thread.join().unwrap_or_else(|_| {
                        Err(PublishError::Split(part.io_error(std::io::Error::other(
                            "the upload thread panicked",
                        ))))
                    });
                    debug_assert_eq!(up.id, part.id);
                    (entry, up.ends)
                }
                Some(up) => {
                    self.uploading = Some(up);
                    break;
                }
                None => {
                    if !now && self.retry.is_some_and(|(at, _)| Instant::now() < at) {
                        break;
                    }
                    let mut ends = store.ends_once_published(&part.id);
                    let left = self.left_behind(&ends);
                    if !left.is_empty() {
                        if let Err(e) = self.drop_from(store, &part, &left) {
                            self.publish_failed(&part, &PublishError::Split(e));
                            break;
                        }
                        ends = store.ends_once_published(&part.id);
                    }
                    let ends = self.under_ownership(ends);
                    // A split the metastore has published already (an
                    // earlier try failed after that commit) is only shown
                    // (published by the version read: when exactly is lost).
                    if let Some(SplitState::Published { entry }) = self.metastore.split(&part.id) {
                        store
                            .own_publishes()
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .published(self.metastore.version(), &part.id, false);
                        (Ok(entry), ends)
                    } else {
                        match self.start_upload(store, &part, ends) {
                            Ok(()) => continue,
                            Err(e) => (Err(e), Vec::new()),
                        }
                    }
                }
            };
            match entry.and_then(|entry| self.show_published(store, &part, entry, &ends)) {
                Ok(entry) => {
                    self.in_bucket
                        .insert(entry.id.clone(), PublishedSplit::of(&entry));
                    self.show_bucket_bytes();
                    self.sealed.remove(0);
                    self.retry = None;
                    self.status.published();
                    done += 1;
                }
                Err(PublishError::Metastore(e @ MetastoreError::Conflict { .. }))
                    if fenced < 3 && !self.lost_in(&ends).is_empty() =>
                {
                    fenced += 1;
                    // Another node took some of the split's sources (a
                    // takeover while this node was cut off): their blocks
                    // leave the split, and it is published without them.
                    let lost = self.lost_in(&ends);
                    tracing::warn!(split = %part.id, sources = lost.len(), refused = %e, "publish refused: sources taken by another node; publishing without them");
                    self.drop_lost(store, &part, &lost);
                }
                Err(e) => {
                    self.publish_failed(&part, &e);
                    break;
                }
            }
        }
        done
    }

    /// `part` could not be published: it is tried again after a backoff.
    fn publish_failed(&mut self, part: &Partition, e: &PublishError) {
        let wait = self
            .retry
            .map_or(PUBLISH_BACKOFF, |(_, w)| (w * 2).min(PUBLISH_BACKOFF_MAX));
        self.retry = Some((Instant::now() + wait, wait));
        self.status.failed(e.to_string());
        tracing::error!(split = %part.id, error = %e, retry_in_ms = wait.as_millis() as u64, "cannot publish a split; it stays on the local disk, in the WAL, and readable, and is tried again");
    }

    /// Starts `part`'s upload on a thread of its own.
    fn start_upload(
        &mut self,
        store: &Store,
        part: &Arc<Partition>,
        ends: Vec<SourceAdvance>,
    ) -> Result<(), PublishError> {
        let uploader = Uploader {
            bucket: self.bucket.clone(),
            metastore: self.metastore.clone(),
            writer_bytes: self.config.index_writer_bytes,
            own_publishes: store.own_publishes(),
        };
        let (split, sources) = (part.clone(), ends.clone());
        let thread = std::thread::Builder::new()
            .name("split-upload".into())
            .spawn(move || uploader.upload(&split, &sources))
            .map_err(|e| PublishError::Split(part.io_error(e)))?;
        self.uploading = Some(Upload {
            id: part.id.clone(),
            ends,
            thread,
        });
        Ok(())
    }

    /// After its publish: the split is shown to readers as published (the
    /// store's copy replaces the local one) and its local folder goes.
    fn show_published(
        &self,
        store: &Store,
        part: &Arc<Partition>,
        entry: SplitEntry,
        ends: &[SourceAdvance],
    ) -> Result<SplitEntry, PublishError> {
        let folder = split_key(&part.id);
        if self.bucket.local_path(&folder).is_none() {
            self.cache.adopt(part)?;
        }
        let published = open_published(&self.bucket, &self.cache, &entry)?;
        store.published(&part.id, published, ends);
        if let Err(e) = std::fs::remove_dir_all(part.dir()) {
            tracing::warn!(dir = %part.dir().display(), error = %e, "a published split's local copy could not be deleted");
        }
        tracing::info!(split = %part.id, bytes = entry.bytes(), "split published");
        Ok(entry)
    }
}
