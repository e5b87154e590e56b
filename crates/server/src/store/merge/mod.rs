//! Background merges of published splits, as tantivy merges segments.
//!
//! A split is sealed every few minutes, and a quiet source leaves a block
//! of a dozen lines a minute in it: the index then holds a document per
//! source per minute, and zstd gets a dozen lines to work with. A merge
//! writes several splits of one window into one, each source's adjacent
//! small blocks combined into big ones (`merge.block_bytes`) and every
//! block compressed again at `merge.zstd_level`.
//!
//! ```text
//! policy.rs  which splits to merge: runs next to each other in time, by level (a pure function)
//! job.rs     one merge on its thread: stage, read, write, upload, one conditional commit
//! mod.rs     Merger: at most one merge at a time, started and taken up by the
//!            committer's thread (SplitSet::merge), which shows its output to readers
//! ```
//!
//! Readers see every line exactly once throughout: the metastore commit
//! that publishes the output also retires the inputs, and is refused if
//! any input was retired meanwhile (`Change::conflict`); the store then
//! swaps the inputs for the output under its lock (`Store::merged`), and
//! the inputs' objects outlive the longest search that could still be
//! reading them, as retention's do.

mod job;
mod policy;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use job::{delete_output, MergeFailure, MergeJob, Merged};
pub use policy::{plan, MergeGroup, PublishedSplit};

use crate::config::MergeConfig;
use crate::index::PartitionError;

/// After a failed merge its group waits this long before it is tried
/// again, doubled after each failure up to [`FAILED_MERGE_WAIT_MAX`]: a
/// store that is down is not asked every commit round, and a group that
/// always fails (a damaged block) does not keep the others from merging.
const FAILED_MERGE_WAIT: Duration = Duration::from_secs(30);
const FAILED_MERGE_WAIT_MAX: Duration = Duration::from_secs(3600);

/// A merge running on its thread.
struct Running {
    /// The output's id: staged in the metastore, and not abandoned.
    output: String,
    inputs: Vec<String>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<Merged, MergeFailure>>,
}

/// Runs merges one at a time, each on a thread of its own.
pub struct Merger {
    config: MergeConfig,
    /// `<data_dir>/merging/`: what merges write before their upload.
    root: PathBuf,
    running: Option<Running>,
    /// Groups that failed: when each may be tried again, and the wait after that.
    backoff: HashMap<MergeGroup, (Instant, Duration)>,
    /// A merge whose last commit failed, which the store may have written
    /// all the same: (output, inputs) until the metastore, read again,
    /// says whether it was published.
    unsure: Option<(String, Vec<String>)>,
}

impl Merger {
    /// Empties `<data_dir>/merging/`: what a merge there left at a crash
    /// or a stop was never published (its objects, if any, are staged
    /// only, and swept as abandoned).
    pub fn open(data_dir: &Path, config: MergeConfig) -> Result<Merger, PartitionError> {
        let root = data_dir.join("merging");
        let io = |source| PartitionError::Io {
            dir: root.clone(),
            source,
        };
        match std::fs::remove_dir_all(&root) {
            Ok(()) => {
                tracing::info!(dir = %root.display(), "an unfinished merge's files were deleted")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir_all(&root).map_err(io)?;
        Ok(Merger {
            config,
            root,
            running: None,
            backoff: HashMap::new(),
            unsure: None,
        })
    }

    pub fn config(&self) -> &MergeConfig {
        &self.config
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A merge may start now: merges are on, none runs, and none waits
    /// to be known published or not.
    pub fn may_start(&self) -> bool {
        self.config.enabled && self.running.is_none() && self.unsure.is_none()
    }

    /// Whether `group` may be merged now (it has not failed lately).
    pub fn may_merge(&self, group: &MergeGroup) -> bool {
        self.backoff
            .get(group)
            .is_none_or(|(at, _)| Instant::now() >= *at)
    }

    /// The merge whose commit may or may not have been written: (output, inputs).
    pub fn unsure(&self) -> Option<&(String, Vec<String>)> {
        self.unsure.as_ref()
    }

    /// The metastore said what became of the unsure merge.
    pub fn resolved(&mut self) {
        self.unsure = None;
    }

    /// A merge is running.
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// Whether split `id` is the output of the running merge, or of one
    /// not yet known published or not: its objects are not abandoned.
    pub fn is_output(&self, id: &str) -> bool {
        self.running.as_ref().is_some_and(|r| r.output == id)
            || self.unsure.as_ref().is_some_and(|(out, _)| out == id)
    }

    /// Whether split `id` is read by the running merge.
    pub fn is_input(&self, id: &str) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.inputs.iter().any(|i| i == id))
    }

    /// Starts `job` on a thread of its own.
    pub fn start(&mut self, job: MergeJob) -> Result<(), MergeFailure> {
        let out = job.create_output()?;
        let stop = job.stop.clone();
        let inputs = job.inputs.iter().map(|(id, _)| id.clone()).collect();
        let output = out.id.clone();
        let dir = out.dir().to_owned();
        let thread = std::thread::Builder::new()
            .name("split-merge".into())
            .spawn(move || job.run(out))
            .map_err(|source| PartitionError::Io { dir, source })?;
        tracing::debug!(split = %output, "merge started");
        self.running = Some(Running {
            output,
            inputs,
            stop,
            thread,
        });
        Ok(())
    }

    /// The running merge's result, once it has one.
    pub fn finished(&mut self) -> Option<Result<Merged, MergeFailure>> {
        if !self.running.as_ref()?.thread.is_finished() {
            return None;
        }
        let running = self.running.take()?;
        let result = running.thread.join().unwrap_or_else(|_| {
            // Its own clean-up did not run.
            for dir in [
                self.root.join(&running.output),
                self.root.join(format!("{}.inputs", running.output)),
            ] {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot delete what a merge left");
                }
            }
            Err(MergeFailure::Merge(crate::index::MergeError::Split(
                PartitionError::Io {
                    dir: self.root.join(&running.output),
                    source: std::io::Error::other("the merge thread panicked"),
                },
            )))
        });
        match &result {
            Ok(_) => {
                self.backoff.remove(&running.inputs);
            }
            // Another change took an input: the group is gone.
            Err(MergeFailure::Lost(_)) => {}
            Err(MergeFailure::Unknown(_)) => {
                self.unsure = Some((running.output.clone(), running.inputs.clone()));
            }
            Err(_) => {
                let wait = self
                    .backoff
                    .get(&running.inputs)
                    .map_or(FAILED_MERGE_WAIT, |(_, w)| {
                        (*w * 2).min(FAILED_MERGE_WAIT_MAX)
                    });
                self.backoff
                    .insert(running.inputs.clone(), (Instant::now() + wait, wait));
            }
        }
        let now = Instant::now();
        self.backoff.retain(|_, (at, wait)| *at + *wait > now);
        Some(result)
    }

    /// Stops the running merge (it deletes what it wrote) and waits for it.
    pub fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop.store(true, Ordering::Relaxed);
            if let Ok(Ok(merged)) = running.thread.join() {
                // It published just before it saw the stop: the next
                // start shows the output (the metastore has it).
                tracing::info!(split = %merged.entry.id, "a merge ended as cblogsd stopped");
            }
        }
    }
}
