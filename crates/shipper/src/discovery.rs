//! Finding every Thermos process log on the agent.
//!
//! The tree has a fixed shape (`cblogs_core::sandbox`), so the walk goes
//! level by level and never descends into what a task keeps in its sandbox
//! (which may be millions of files). `runs/latest` is a link to a run the
//! walk visits anyway, so links are never followed.
//!
//! The shape also tells where any folder stands ([`Place`]), so a walk can
//! start anywhere: when inotify names a new folder, only that folder's
//! subtree is walked ([`SandboxScanner::scan_under`]), not the whole agent.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

use cblogs_core::sandbox::{self, EXECUTOR_PREFIX};
use cblogs_core::{Source, Stream};

use crate::mapping::{JobMapper, TaskJob};

/// One stream as found on disk: the stdout or stderr of one process run,
/// or a file outside sandboxes (`[[files]]`, `files.rs`).
#[derive(Debug, Clone)]
pub struct FoundStream {
    /// The folder of its live file (`.logs/<process>/<run>` for a sandbox's).
    pub dir: PathBuf,
    /// The live file's name (`stdout`, `stderr`, `mesos-agent.log`); its
    /// rotated files are `<name>.1`, `<name>.2`, … (Thermos' and logrotate's).
    pub file: String,
    pub source: Source,
    /// A rotated file may still be written (logrotate's `create` mode: the
    /// program writes on through its old descriptor until it reopens), so
    /// it is read until it has been quiet a while. Thermos never writes a
    /// rotated file: false for a sandbox's streams.
    pub linger: bool,
}

impl FoundStream {
    /// The live file's path: also the stream's key in checkpoints (made
    /// to its size: ten thousand of them are kept).
    pub fn path(&self) -> PathBuf {
        let mut path = self.dir.join(&self.file);
        path.shrink_to_fit();
        path
    }
}

/// What a walk tells as it goes.
pub trait Visit {
    /// A folder on the way to log files (watched for new entries), told
    /// before the walk lists it: a watch set then misses nothing created
    /// after the listing. `writes`: a process run folder, whose files'
    /// writes matter too.
    fn folder(&mut self, dir: &Path, writes: bool);
    /// A folder of `[[files]]` (`files.rs`): any file in it may be a stream.
    fn files_folder(&mut self, dir: &Path) {
        self.folder(dir, true);
    }
    /// Whether the live file `path` is tailed already: then it is not
    /// reported again.
    fn known(&self, path: &Path) -> bool;
}

/// What one walk found: the streams not known yet.
pub type Scan = Vec<FoundStream>;

/// Where a folder stands in the agent's fixed shape, with what the path
/// above it says (the task id, the process).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// `<work dir>/slaves`
    Slaves,
    /// `slaves/<agent>`
    Agent,
    /// `slaves/<agent>/frameworks`
    Frameworks,
    /// `frameworks/<framework>`
    Framework,
    /// `frameworks/<framework>/executors`
    Executors,
    /// `executors/thermos-<task id>`
    Executor(String),
    /// `thermos-<task id>/runs`
    Runs(String),
    /// `runs/<container id>`
    Run(String),
    /// `<container id>/sandbox`
    Sandbox(String),
    /// `sandbox/.logs`, or a legacy `<checkpoint root>/logs/<task id>`
    LogDir(String),
    /// `.logs/<process>`
    Process(String, String),
    /// `.logs/<process>/<run>`: holds the stream files.
    ProcessRun(String, String, u32),
    /// `<checkpoint root>/logs`
    LegacyLogs,
}

pub struct SandboxScanner {
    work_dir: PathBuf,
    legacy_root: Option<PathBuf>,
    cluster: String,
    host: String,
    mapper: JobMapper,
    /// Task ids mapped (or refused) before, so each is logged once.
    known_tasks: HashMap<String, Option<TaskJob>>,
    /// Tasks seen by the walk under way (a full one forgets the others).
    seen_tasks: HashSet<String>,
}

impl SandboxScanner {
    pub fn new(
        work_dir: PathBuf,
        legacy_root: Option<PathBuf>,
        cluster: String,
        host: String,
        mapper: JobMapper,
    ) -> Self {
        SandboxScanner {
            work_dir,
            legacy_root,
            cluster,
            host,
            mapper,
            known_tasks: HashMap::new(),
            seen_tasks: HashSet::new(),
        }
    }

    /// Walks everything: the work dir, and the legacy log root.
    pub fn scan(&mut self, visit: &mut dyn Visit) -> Scan {
        let mut scan = Scan::default();
        self.seen_tasks.clear();
        // <work dir>/slaves/*/frameworks/*/executors/thermos-*/runs/*/sandbox/.logs
        visit.folder(&self.work_dir.clone(), false);
        self.walk(
            &self.work_dir.join("slaves"),
            Place::Slaves,
            &mut scan,
            visit,
        );
        // <checkpoint root>/logs/<task id>/<process>/<run>/
        if let Some(root) = self.legacy_root.clone() {
            if root.is_dir() {
                visit.folder(&root, false);
            }
            let logs = root.join(sandbox::LEGACY_LOG_DIR);
            self.walk(&logs, Place::LegacyLogs, &mut scan, visit);
        }
        let seen = std::mem::take(&mut self.seen_tasks);
        self.known_tasks.retain(|id, _| seen.contains(id));
        scan
    }

    /// Walks the subtrees of `dirs` only (folders inotify named); one that
    /// is not a folder of the agent's shape is skipped, and so is one
    /// inside another of `dirs` (its subtree is walked already).
    pub fn scan_under(&mut self, dirs: &[PathBuf], visit: &mut dyn Visit) -> Scan {
        let mut scan = Scan::default();
        let mut tops: Vec<&PathBuf> = dirs.iter().collect();
        tops.sort();
        tops.dedup();
        let mut last: Option<&PathBuf> = None;
        for dir in tops {
            if last.is_some_and(|l| dir.starts_with(l)) {
                continue;
            }
            last = Some(dir);
            if dir == &self.work_dir {
                visit.folder(dir, false);
                self.walk(&dir.join("slaves"), Place::Slaves, &mut scan, visit);
            } else if Some(dir) == self.legacy_root.as_ref() {
                visit.folder(dir, false);
                let logs = dir.join(sandbox::LEGACY_LOG_DIR);
                self.walk(&logs, Place::LegacyLogs, &mut scan, visit);
            } else if let Some(place) = self.place(dir) {
                self.walk(dir, place, &mut scan, visit);
            }
        }
        scan
    }

    /// Where `dir` stands, from its path alone.
    fn place(&self, dir: &Path) -> Option<Place> {
        if let Ok(rel) = dir.strip_prefix(&self.work_dir) {
            let c = names(rel)?;
            let fixed = |i: usize, name: &str| c.get(i).is_some_and(|n| n == name);
            if !fixed(0, "slaves")
                || (c.len() > 2 && !fixed(2, "frameworks"))
                || (c.len() > 4 && !fixed(4, "executors"))
            {
                return None;
            }
            let task = || {
                c.get(5)
                    .and_then(|n| sandbox::executor_task_id(n))
                    .map(str::to_owned)
            };
            return Some(match c.len() {
                1 => Place::Slaves,
                2 => Place::Agent,
                3 => Place::Frameworks,
                4 => Place::Framework,
                5 => Place::Executors,
                6 => Place::Executor(task()?),
                7 if fixed(6, "runs") => Place::Runs(task()?),
                8 if fixed(6, "runs") => Place::Run(task()?),
                9 if fixed(8, sandbox::SANDBOX_DIR) => Place::Sandbox(task()?),
                10 if fixed(9, sandbox::LOG_DIR) => Place::LogDir(task()?),
                11 if fixed(9, sandbox::LOG_DIR) => Place::Process(task()?, c[10].clone()),
                12 if fixed(9, sandbox::LOG_DIR) => {
                    Place::ProcessRun(task()?, c[10].clone(), sandbox::run_number(&c[11])?)
                }
                _ => return None,
            });
        }
        let rel = dir.strip_prefix(self.legacy_root.as_ref()?).ok()?;
        let c = names(rel)?;
        if c.first().map(String::as_str) != Some(sandbox::LEGACY_LOG_DIR) {
            return None;
        }
        Some(match c.len() {
            1 => Place::LegacyLogs,
            2 => Place::LogDir(c[1].clone()),
            3 => Place::Process(c[1].clone(), c[2].clone()),
            4 => Place::ProcessRun(c[1].clone(), c[2].clone(), sandbox::run_number(&c[3])?),
            _ => return None,
        })
    }

    /// Walks `dir`, which stands at `place`, down to the stream files.
    fn walk(&mut self, dir: &Path, place: Place, scan: &mut Scan, visit: &mut dyn Visit) {
        match place {
            Place::Slaves => {
                for agent in subdirs(dir, visit) {
                    self.walk(&agent, Place::Agent, scan, visit);
                }
            }
            Place::Agent => {
                visit.folder(dir, false);
                self.walk(&dir.join("frameworks"), Place::Frameworks, scan, visit);
            }
            Place::Frameworks => {
                for framework in subdirs(dir, visit) {
                    self.walk(&framework, Place::Framework, scan, visit);
                }
            }
            Place::Framework => {
                visit.folder(dir, false);
                self.walk(&dir.join("executors"), Place::Executors, scan, visit);
            }
            Place::Executors => {
                for executor in subdirs(dir, visit) {
                    if let Some(task) = sandbox::executor_task_id(&file_name(&executor)) {
                        self.walk(&executor, Place::Executor(task.to_owned()), scan, visit);
                    }
                }
            }
            Place::Executor(task) => {
                visit.folder(dir, false);
                self.walk(&dir.join("runs"), Place::Runs(task), scan, visit);
            }
            Place::Runs(task) => {
                for run in subdirs(dir, visit) {
                    self.walk(&run, Place::Run(task.clone()), scan, visit);
                }
            }
            Place::Run(task) => {
                visit.folder(dir, false);
                let sandbox_dir = dir.join(sandbox::SANDBOX_DIR);
                if sandbox_dir.is_dir() {
                    self.walk(&sandbox_dir, Place::Sandbox(task), scan, visit);
                }
            }
            Place::Sandbox(task) => {
                visit.folder(dir, false);
                self.walk(
                    &dir.join(sandbox::LOG_DIR),
                    Place::LogDir(task),
                    scan,
                    visit,
                );
            }
            Place::LegacyLogs => {
                for task in subdirs(dir, visit) {
                    let id = file_name(&task);
                    self.walk(&task, Place::LogDir(id), scan, visit);
                }
            }
            Place::LogDir(task) => {
                let processes = subdirs(dir, visit);
                self.seen_tasks.insert(task.clone());
                if processes.is_empty() || self.task_job(&task).is_none() {
                    return;
                }
                for process in processes {
                    let name = file_name(&process);
                    self.walk(&process, Place::Process(task.clone(), name), scan, visit);
                }
            }
            Place::Process(task, process) => {
                if self.task_job(&task).is_none() {
                    return;
                }
                for run_dir in subdirs(dir, visit) {
                    if let Some(run) = sandbox::run_number(&file_name(&run_dir)) {
                        let place = Place::ProcessRun(task.clone(), process.clone(), run);
                        self.walk(&run_dir, place, scan, visit);
                    }
                }
            }
            Place::ProcessRun(task, process, run) => {
                let Some(job) = self.task_job(&task) else {
                    return;
                };
                // Watched for writes to its live files (see watcher.rs).
                visit.folder(dir, true);
                for stream in [Stream::Stdout, Stream::Stderr] {
                    // A stream is found once its live file exists; until
                    // then its folder is watched.
                    let live = dir.join(stream.as_str());
                    if visit.known(&live) || !live.is_file() {
                        continue;
                    }
                    scan.push(FoundStream {
                        dir: dir.to_owned(),
                        file: stream.as_str().to_owned(),
                        linger: false,
                        source: Source {
                            cluster: self.cluster.clone(),
                            host: self.host.clone(),
                            task_id: task.clone(),
                            job: job.job.clone(),
                            instance: job.instance,
                            process: process.clone(),
                            run,
                            stream,
                        },
                    });
                }
            }
        }
    }

    fn task_job(&mut self, task_id: &str) -> Option<TaskJob> {
        if let Some(known) = self.known_tasks.get(task_id) {
            return known.clone();
        }
        let mapped = match self.mapper.map(task_id) {
            Ok(t) => {
                tracing::info!(
                    task_id,
                    job = %t.job,
                    instance = t.instance,
                    "new task: job decided by {}",
                    t.rule
                );
                Some(t)
            }
            Err(e) => {
                tracing::warn!(
                    task_id,
                    "not shipping this task's logs: {e}; add a job_rules entry for it"
                );
                None
            }
        };
        self.known_tasks.insert(task_id.to_owned(), mapped.clone());
        mapped
    }
}

/// A relative path's names, or `None` if it has anything else (`..`).
fn names(rel: &Path) -> Option<Vec<String>> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// The real sub-folders of `dir` (links are skipped); `dir` is told to
/// `visit` first (to be watched).
fn subdirs(dir: &Path, visit: &mut dyn Visit) -> Vec<PathBuf> {
    visit.folder(dir, false);
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Is `name` worth a rescan when it appears in a watched folder? Tasks
/// write freely into their sandbox; only our own path's names matter there.
pub fn is_interesting(name: &str) -> bool {
    name != sandbox::LATEST_LINK
        && (name.starts_with(EXECUTOR_PREFIX)
            || !name.contains('.')
            || name == sandbox::LOG_DIR
            || sandbox::log_file(name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11";

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"").unwrap();
    }

    /// Records the folders told (those that exist), and knows `known`.
    #[derive(Default)]
    struct Recorder {
        dirs: Vec<PathBuf>,
        known: Vec<PathBuf>,
    }

    impl Visit for Recorder {
        fn folder(&mut self, dir: &Path, _writes: bool) {
            if dir.is_dir() {
                self.dirs.push(dir.to_owned());
            }
        }
        fn known(&self, path: &Path) -> bool {
            self.known.iter().any(|k| k == path)
        }
    }

    fn described(scan: &Scan) -> Vec<String> {
        let mut got: Vec<String> = scan
            .iter()
            .map(|s| {
                format!(
                    "{} {} {} {} {}",
                    s.source.job,
                    s.source.instance,
                    s.source.process,
                    s.source.run,
                    s.source.stream
                )
            })
            .collect();
        got.sort();
        got
    }

    #[test]
    fn finds_sandbox_and_legacy_logs_once() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("mesos");
        let task = format!("www-data-prod-hello-3-{UUID}");
        let executors = work.join("slaves/S3/frameworks/F0/executors");
        let run = executors.join(format!("thermos-{task}/runs/c1"));
        let logs = run.join("sandbox/.logs");
        touch(&run.join("stdout")); // the executor's own output: not a task log
        touch(&logs.join("hello_world/0/stdout"));
        touch(&logs.join("hello_world/0/stderr"));
        touch(&logs.join("hello_world/1/stdout"));
        touch(&logs.join("hello_world/1/stdout.1"));
        std::os::unix::fs::symlink("c1", executors.join(format!("thermos-{task}/runs/latest")))
            .unwrap();
        touch(&executors.join("not-thermos/runs/c2/sandbox/.logs/p/0/stdout"));
        let legacy = tmp.path().join("thermos");
        let old = format!("1475000000000-cbe-devel-eight_ball-0-{UUID}");
        touch(&legacy.join(format!("logs/{old}/eightball/0/stderr")));
        touch(&legacy.join(format!("checkpoints/{old}/runner")));

        let mut scanner = SandboxScanner::new(
            work,
            Some(legacy.clone()),
            "c".into(),
            "h".into(),
            JobMapper::new(&[]).unwrap(),
        );
        let mut rec = Recorder::default();
        let scan = scanner.scan(&mut rec);
        assert_eq!(
            described(&scan),
            [
                "cbe/devel/eight_ball 0 eightball 0 stderr",
                "www-data/prod/hello 3 hello_world 0 stderr",
                "www-data/prod/hello 3 hello_world 0 stdout",
                "www-data/prod/hello 3 hello_world 1 stdout",
            ]
        );
        // Process folders are watched for new runs, run folders for writes
        // to their files.
        assert!(rec.dirs.iter().any(|d| d.ends_with(".logs/hello_world")));
        assert!(rec.dirs.iter().any(|d| d.ends_with(".logs/hello_world/1")));
        // Never below a process run, nor into other executors.
        assert!(!rec.dirs.iter().any(|d| d.ends_with("not-thermos/runs")));

        // A walk from one folder: just its subtree, by its place in the shape.
        let mut rec = Recorder::default();
        let sub = scanner.scan_under(&[logs.join("hello_world")], &mut rec);
        assert_eq!(
            described(&sub),
            [
                "www-data/prod/hello 3 hello_world 0 stderr",
                "www-data/prod/hello 3 hello_world 0 stdout",
                "www-data/prod/hello 3 hello_world 1 stdout",
            ]
        );
        assert!(rec
            .dirs
            .iter()
            .all(|d| d.starts_with(logs.join("hello_world"))));
        // Streams tailed already are not reported again; folders outside
        // the shape are not walked.
        let mut rec = Recorder {
            known: vec![logs.join("hello_world/0/stdout")],
            ..Recorder::default()
        };
        let sub = scanner.scan_under(
            &[
                logs.join("hello_world/0"),
                executors.join("not-thermos"),
                run.join("sandbox/some-data"),
            ],
            &mut rec,
        );
        assert_eq!(
            described(&sub),
            ["www-data/prod/hello 3 hello_world 0 stderr"]
        );
        assert_eq!(rec.dirs, [logs.join("hello_world/0")]);
        let sub = scanner.scan_under(
            &[legacy.join(format!("logs/{old}"))],
            &mut Recorder::default(),
        );
        assert_eq!(
            described(&sub),
            ["cbe/devel/eight_ball 0 eightball 0 stderr"]
        );
    }
}
