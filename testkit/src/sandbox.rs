//! The fake agent as tests use it. The layout is `cblogs-fake-agent`'s
//! (the one `cblogsd --demo` and the benchmark write into); what this adds
//! is what a test needs on top: an I/O error fails the test, naming the
//! path, and every process run remembers what was written to each of its
//! streams ([`StreamModel`]) so that what arrives can be compared with it.
//!
//! Each type derefs to the fake agent's, so a run's `task_id`, `job`,
//! `dir` or `path()` read as there; the methods defined here (laying out,
//! writing, rotating) take their place.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use cblogs_core::{JobKey, Source, Stream};
use cblogs_fake_agent::{joined_lines, ProcessRunDir};

use crate::model::{StreamKey, StreamModel};
use crate::shipper::{SHIPPER_CLUSTER, SHIPPER_HOST};

/// A Mesos agent's work dir laid out as `thermos-layout.md` describes, and
/// a Thermos checkpoint root for tasks of the older (legacy) layout.
pub struct Agent {
    layout: cblogs_fake_agent::Agent,
}

impl Deref for Agent {
    type Target = cblogs_fake_agent::Agent;
    fn deref(&self) -> &Self::Target {
        &self.layout
    }
}

impl Agent {
    /// Lays out `<root>/mesos/slaves/<agent>/frameworks/<framework>/executors/`
    /// and an empty checkpoint root `<root>/thermos`.
    pub fn new(root: &Path) -> Agent {
        let layout = cblogs_fake_agent::Agent::new(root)
            .unwrap_or_else(|e| panic!("lay out the fake agent: {e}"));
        Agent { layout }
    }

    /// A running Aurora task (see [`cblogs_fake_agent::Agent::task`]).
    pub fn task(&self, role: &str, env: &str, name: &str, instance: u32) -> Task {
        let task = self
            .layout
            .task(role, env, name, instance)
            .unwrap_or_else(|e| panic!("lay out task {role}/{env}/{name}/{instance}: {e}"));
        Task { task }
    }

    /// A task of an older Thermos, logging under the checkpoint root.
    pub fn legacy_task(&self, role: &str, env: &str, name: &str, instance: u32) -> Task {
        let task = self
            .layout
            .legacy_task(role, env, name, instance)
            .unwrap_or_else(|e| panic!("lay out legacy task {role}/{env}/{name}/{instance}: {e}"));
        Task { task }
    }

    /// An executor that is not Thermos', with a Thermos-like log tree in
    /// its sandbox: nothing of it may be shipped.
    pub fn foreign_executor(&self) -> PathBuf {
        self.layout
            .foreign_executor()
            .unwrap_or_else(|e| panic!("lay out a foreign executor: {e}"))
    }
}

/// One Aurora task on the [`Agent`].
pub struct Task {
    task: cblogs_fake_agent::Task,
}

impl Deref for Task {
    type Target = cblogs_fake_agent::Task;
    fn deref(&self) -> &Self::Target {
        &self.task
    }
}

impl Task {
    /// A process run folder `<log dir>/<process>/<run>/` with empty
    /// `stdout` and `stderr`, as Thermos creates them when it starts the process.
    pub fn process(&self, name: &str, run: u32) -> ProcessRun {
        let dir = self
            .task
            .process(name, run)
            .unwrap_or_else(|e| panic!("start process {name} run {run}: {e}"));
        ProcessRun::new(dir)
    }

    /// The process run folder only: its files appear with the first write.
    pub fn process_dir_only(&self, name: &str, run: u32) -> ProcessRun {
        let dir = self
            .task
            .process_dir_only(name, run)
            .unwrap_or_else(|e| panic!("create the folder of process {name} run {run}: {e}"));
        ProcessRun::new(dir)
    }

    /// `rm -rf` of the executor folder, as the agent's garbage collector
    /// does (for a legacy task: its log folder).
    pub fn delete(&self) {
        self.task
            .delete()
            .unwrap_or_else(|e| panic!("delete task {}: {e}", self.task.task_id));
    }
}

/// One run of one Thermos process: `<log dir>/<process>/<run>/{stdout,stderr}`.
/// Remembers everything written, to compare with what arrives.
#[derive(Debug)]
pub struct ProcessRun {
    dir: ProcessRunDir,
    streams: [StreamModel; 2],
}

impl Deref for ProcessRun {
    type Target = ProcessRunDir;
    fn deref(&self) -> &Self::Target {
        &self.dir
    }
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl ProcessRun {
    fn new(dir: ProcessRunDir) -> ProcessRun {
        ProcessRun {
            dir,
            streams: Default::default(),
        }
    }

    /// The stream's identity as the CLI shows it.
    pub fn key(&self, stream: Stream) -> StreamKey {
        (
            self.dir.task_id.clone(),
            self.dir.process.clone(),
            self.dir.run,
            stream,
        )
    }

    /// The source a test shipper (cluster `devcluster`, host `agent1`)
    /// ships the stream as.
    pub fn source(&self, stream: Stream) -> Source {
        Source {
            cluster: SHIPPER_CLUSTER.into(),
            host: SHIPPER_HOST.into(),
            task_id: self.dir.task_id.clone(),
            job: self.dir.job.parse::<JobKey>().expect("a job key"),
            instance: self.dir.instance,
            process: self.dir.process.clone(),
            run: self.dir.run,
            stream,
        }
    }

    /// What was written to the stream so far.
    pub fn model(&self, stream: Stream) -> &StreamModel {
        &self.streams[stream_index(stream)]
    }

    pub fn model_mut(&mut self, stream: Stream) -> &mut StreamModel {
        &mut self.streams[stream_index(stream)]
    }

    /// Appends `bytes` as the process does (opened for append, created if
    /// missing; one write), then closes the file.
    pub fn append(&mut self, stream: Stream, bytes: &[u8]) {
        self.dir
            .append(stream, bytes)
            .unwrap_or_else(|e| panic!("{e}"));
        self.streams[stream_index(stream)].record(bytes);
    }

    /// Appends each of `lines` followed by a newline, in one write.
    pub fn append_lines<T: AsRef<[u8]>>(&mut self, stream: Stream, lines: &[T]) {
        self.append(stream, &joined_lines(lines));
    }

    /// Thermos' `rotate` log mode: `stdout.(N-1)` → `stdout.N` … `stdout` →
    /// `stdout.1`, then a new empty `stdout`. Nothing is deleted.
    pub fn rotate(&mut self, stream: Stream) {
        self.dir.rotate(stream).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Truncates the live file to nothing (as `> stdout` would); the stream's
    /// offsets go on growing.
    pub fn truncate(&mut self, stream: Stream) {
        assert!(
            !self.model(stream).has_pending(),
            "truncate only between lines"
        );
        self.dir.truncate(stream).unwrap_or_else(|e| panic!("{e}"));
    }
}
