//! One Aurora task on the fake agent: its Thermos log dir, where each
//! process run gets a folder, and what the agent's garbage collector
//! removes when the task is long gone.

use std::io;
use std::path::PathBuf;

use crate::fs::{mkdirs, with_path};
use crate::process::ProcessRunDir;

/// One Aurora task on an [`crate::Agent`].
#[derive(Debug, Clone)]
pub struct Task {
    pub task_id: String,
    /// `role/env/name`.
    pub job: String,
    pub instance: u32,
    /// Thermos' log dir: `<sandbox>/.logs`, or `<checkpoint root>/logs/<task id>`.
    pub log_dir: PathBuf,
    /// What the agent's garbage collector deletes: the executor folder
    /// (for a legacy task, its log folder).
    remove_on_delete: PathBuf,
}

impl Task {
    pub(crate) fn new(
        task_id: String,
        job: String,
        instance: u32,
        log_dir: PathBuf,
        remove_on_delete: PathBuf,
    ) -> Task {
        Task {
            task_id,
            job,
            instance,
            log_dir,
            remove_on_delete,
        }
    }

    /// A process run folder `<log dir>/<process>/<run>/` with `stdout` and
    /// `stderr`, as Thermos creates them when it starts the process (empty,
    /// or kept as they are if they exist).
    pub fn process(&self, name: &str, run: u32) -> io::Result<ProcessRunDir> {
        let p = self.process_dir_only(name, run)?;
        p.create_files()?;
        Ok(p)
    }

    /// The process run folder only: its files appear with the first write.
    pub fn process_dir_only(&self, name: &str, run: u32) -> io::Result<ProcessRunDir> {
        let dir = self.log_dir.join(name).join(run.to_string());
        mkdirs(&dir)?;
        Ok(ProcessRunDir {
            task_id: self.task_id.clone(),
            job: self.job.clone(),
            instance: self.instance,
            process: name.to_owned(),
            run,
            dir,
        })
    }

    /// `rm -rf` of the executor folder, as the agent's garbage collector
    /// does (for a legacy task: its log folder).
    pub fn delete(&self) -> io::Result<()> {
        std::fs::remove_dir_all(&self.remove_on_delete)
            .map_err(|e| with_path(e, "delete", &self.remove_on_delete))
    }
}
