//! One merge, run on a thread of its own ([`MergeJob::run`]): the inputs'
//! blocks read, the output written (`index::merge_into`), uploaded, and
//! published with its inputs retired in one conditional metastore commit.
//!
//! Its order is what makes a crash at any point harmless:
//!
//! 1. the output is *staged* in the metastore before any object of it is
//!    written, so that a crash leaves only objects the abandoned-split
//!    sweep deletes (`storage.abandoned_split_secs`);
//! 2. it is written in `<data_dir>/merging/`, which a start empties;
//! 3. the `Merge` commit is the one instant readers (and a restart) go
//!    from the inputs to the output. Until then the inputs are the truth,
//!    and after it the output is; a commit refused because an input was
//!    retired meanwhile (retention) deletes the output.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use cblogs_core::time::now_ns;
use cblogs_core::Source;

use crate::bucket::Bucket;
use crate::index::{merge_into, MergeCounts, MergeError, MergeInput, MergeOptions, Partition};
use crate::metastore::{Change, Metastore, MetastoreError, SplitEntry};
use crate::store::disk_cache::SplitHandle;
use crate::store::published::{split_key, upload_split, PublishError};

/// Why a merge did not publish its output.
#[derive(Debug, thiserror::Error)]
pub enum MergeFailure {
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("merge: {0}")]
    Merge(#[from] MergeError),
    /// The last commit failed: it may have been written all the same.
    #[error("merge: its commit may not have been written: {0}")]
    Unknown(MetastoreError),
    /// An input was retired (or merged) meanwhile: the output is deleted.
    #[error("merge lost to another change: {0}")]
    Lost(String),
}

impl From<MetastoreError> for MergeFailure {
    fn from(e: MetastoreError) -> Self {
        match e {
            MetastoreError::Conflict { why, .. } => MergeFailure::Lost(why),
            e => MergeFailure::Publish(e.into()),
        }
    }
}

impl From<crate::index::PartitionError> for MergeFailure {
    fn from(e: crate::index::PartitionError) -> Self {
        MergeFailure::Publish(e.into())
    }
}

/// A merge to run: its inputs, in time order, as readers see them.
pub struct MergeJob {
    pub inputs: Vec<(String, SplitHandle)>,
    /// The inputs' highest level: the output's is one more.
    pub level: u32,
    pub window_ns: i64,
    pub bucket: Arc<Bucket>,
    pub metastore: Arc<Metastore>,
    /// `<data_dir>/merging/`.
    pub root: PathBuf,
    pub options: MergeOptions,
    /// The merge thread's nice value.
    pub nice: i32,
    pub stop: Arc<AtomicBool>,
}

/// A merge published: its output (the local copy: a remote store's index
/// is moved into the disk cache from there) and what it did.
pub struct Merged {
    pub entry: SplitEntry,
    pub part: Arc<Partition>,
    pub inputs: Vec<String>,
    pub counts: MergeCounts,
    pub seconds: f64,
}

impl MergeJob {
    /// The output's id, made before the thread starts so that the sweep of
    /// abandoned splits can tell it is this node's.
    pub fn create_output(&self) -> Result<Arc<Partition>, MergeFailure> {
        Ok(Arc::new(Partition::create(&self.root, self.window_ns)?))
    }

    /// Runs the merge into `out`; whatever it leaves on failure is deleted
    /// (best effort: the sweep of abandoned splits is the backstop).
    pub fn run(self, out: Arc<Partition>) -> Result<Merged, MergeFailure> {
        crate::priority::lower_this_thread(self.nice);
        let started = Instant::now();
        let downloads = self.root.join(format!("{}.inputs", out.id));
        let result = self.merge(&out, &downloads);
        if let Err(e) = std::fs::remove_dir_all(&downloads) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %downloads.display(), error = %e, "cannot delete a merge's downloads");
            }
        }
        match result {
            Ok((entry, counts)) => Ok(Merged {
                entry,
                part: out,
                inputs: self.inputs.into_iter().map(|(id, _)| id).collect(),
                counts,
                seconds: started.elapsed().as_secs_f64(),
            }),
            Err(e) => {
                self.discard(&out, &e);
                Err(e)
            }
        }
    }

    fn merge(
        &self,
        out: &Arc<Partition>,
        downloads: &Path,
    ) -> Result<(SplitEntry, MergeCounts), MergeFailure> {
        self.metastore.commit(vec![Change::Staged {
            split: out.id.clone(),
            at_ns: now_ns(),
        }])?;
        let mut inputs = Vec::with_capacity(self.inputs.len());
        let mut sources = HashMap::new();
        for (id, handle) in &self.inputs {
            inputs.push(self.open_input(id, handle, downloads, &mut sources)?);
        }
        let counts = merge_into(out, &inputs, &sources, self.options, &self.stop)?;
        drop((inputs, sources));
        if counts.copies > 0 {
            // Fencing should publish no line twice: say so when it did.
            tracing::warn!(
                copies = counts.copies,
                "a merge found lines published twice; it writes each once"
            );
        }
        let mut entry = upload_split(&self.bucket, out)?;
        entry.level = self.level + 1;
        let committed = self.metastore.commit(vec![Change::Merge {
            split: entry.clone(),
            inputs: self.inputs.iter().map(|(id, _)| id.clone()).collect(),
            at_ns: now_ns(),
        }]);
        match committed {
            Ok(_) => Ok((entry, counts)),
            Err(e @ MetastoreError::Conflict { .. }) => Err(e.into()),
            // The store may have written the version before failing to
            // answer: until this node reads the metastore again, nobody
            // knows whether the output is published, so nothing of it is
            // deleted here (the sweep of abandoned splits decides later).
            Err(e) => Err(MergeFailure::Unknown(e)),
        }
    }

    /// Input `id`'s block list (from its index, pinned only meanwhile)
    /// and its `blocks.dat` as a file here: in place on the local store,
    /// downloaded from a remote one (one object in a few big ranged GETs,
    /// rather than one per block). Its sources are added to `sources`.
    fn open_input(
        &self,
        id: &str,
        handle: &SplitHandle,
        downloads: &Path,
        sources: &mut HashMap<u64, Source>,
    ) -> Result<MergeInput, MergeFailure> {
        let (refs, len) = {
            let pin = handle.pin(None)?;
            let refs = pin.blocks(pin.searcher(), None, None)?;
            let len = refs.iter().map(|b| b.data_pos + b.data_len).max();
            for (sid, source) in pin.load_sources()? {
                sources.entry(sid).or_insert(source);
            }
            (refs, len.unwrap_or(0))
        };
        let key = format!("{}blocks.dat", split_key(id));
        let path = match self.bucket.local_path(&key) {
            Some(path) => path,
            None => {
                let io = |source| crate::index::PartitionError::Io {
                    dir: downloads.to_owned(),
                    source,
                };
                std::fs::create_dir_all(downloads).map_err(io)?;
                let path = downloads.join(format!("{id}.dat"));
                self.bucket
                    .download_file(&key, len, &path)
                    .map_err(PublishError::from)?;
                path
            }
        };
        let blocks = File::open(&path).map_err(|source| crate::index::PartitionError::Io {
            dir: path.clone(),
            source,
        })?;
        Ok(MergeInput { refs, blocks, path })
    }

    /// Deletes what a failed merge left: its folder here, and its objects
    /// and staged entry in the store.
    fn discard(&self, out: &Partition, why: &MergeFailure) {
        tracing::warn!(split = %out.id, error = %why, "merge abandoned; its output is deleted");
        if let Err(e) = std::fs::remove_dir_all(out.dir()) {
            tracing::warn!(dir = %out.dir().display(), error = %e, "cannot delete a merge's output folder");
        }
        if !matches!(why, MergeFailure::Unknown(_)) {
            delete_output(&self.bucket, &self.metastore, &out.id);
        }
    }
}

/// Deletes the objects of merge output `id`, never published, and forgets
/// it (best effort: the sweep of abandoned splits is the backstop).
pub fn delete_output(bucket: &Bucket, metastore: &Metastore, id: &str) {
    let deleted = bucket
        .list(&split_key(id), None)
        .and_then(|keys| keys.iter().try_for_each(|k| bucket.delete(k)));
    let forgotten = deleted.map_err(PublishError::from).and_then(|()| {
        metastore
            .commit(vec![Change::Forget {
                splits: vec![id.to_owned()],
            }])
            .map_err(PublishError::from)
    });
    if let Err(e) = forgotten {
        tracing::warn!(split = %id, error = %e, "cannot delete a merge's output; the sweep of abandoned splits will");
    }
}
