//! Finding every Thermos process log on the agent.
//!
//! The tree has a fixed shape (`cblogs_core::sandbox`), so the walk goes
//! level by level and never descends into what a task keeps in its sandbox
//! (which may be millions of files). `runs/latest` is a link to a run the
//! walk visits anyway, so links are never followed.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use cblogs_core::sandbox::{self, EXECUTOR_PREFIX};
use cblogs_core::{Source, Stream};

use crate::mapping::{JobMapper, TaskJob};

/// One stdout or stderr stream of one process run, as found on disk.
#[derive(Debug, Clone)]
pub struct FoundStream {
    /// The process run folder (`.logs/<process>/<run>`).
    pub dir: PathBuf,
    pub source: Source,
}

impl FoundStream {
    /// The live file's path: also the stream's key in checkpoints.
    pub fn path(&self) -> PathBuf {
        self.dir.join(self.source.stream.as_str())
    }
}

/// What one walk found.
#[derive(Debug, Default)]
pub struct Scan {
    pub streams: Vec<FoundStream>,
    /// Every folder on the way to a log file: watched for new entries.
    pub dirs: Vec<PathBuf>,
}

pub struct SandboxScanner {
    work_dir: PathBuf,
    legacy_root: Option<PathBuf>,
    cluster: String,
    host: String,
    mapper: JobMapper,
    /// Task ids mapped (or refused) before, so each is logged once.
    known_tasks: HashMap<String, Option<TaskJob>>,
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
        }
    }

    pub fn scan(&mut self) -> Scan {
        let mut scan = Scan::default();
        let mut seen_tasks = HashSet::new();
        // <work dir>/slaves/*/frameworks/*/executors/thermos-*/runs/*/sandbox/.logs
        let mut executors = Vec::new();
        let slaves = self.work_dir.join("slaves");
        scan.dirs.push(self.work_dir.clone());
        for agent in subdirs(&slaves, &mut scan) {
            for framework in subdirs(&agent.join("frameworks"), &mut scan) {
                for executor in subdirs(&framework.join("executors"), &mut scan) {
                    executors.push(executor);
                }
            }
        }
        for executor in executors {
            let name = file_name(&executor);
            let Some(task_id) = sandbox::executor_task_id(&name) else {
                continue;
            };
            let task_id = task_id.to_owned();
            let runs = subdirs(&executor.join("runs"), &mut scan);
            scan.dirs.push(executor);
            for run in runs {
                let sandbox_dir = run.join(sandbox::SANDBOX_DIR);
                scan.dirs.push(run);
                if !sandbox_dir.is_dir() {
                    continue;
                }
                let log_dir = sandbox_dir.join(sandbox::LOG_DIR);
                scan.dirs.push(sandbox_dir);
                self.scan_log_dir(&log_dir, &task_id, &mut scan);
                seen_tasks.insert(task_id.clone());
            }
        }
        // <checkpoint root>/logs/<task id>/<process>/<run>/
        if let Some(root) = self.legacy_root.clone() {
            let logs = root.join(sandbox::LEGACY_LOG_DIR);
            if root.is_dir() {
                scan.dirs.push(root);
            }
            for task in subdirs(&logs, &mut scan) {
                let task_id = file_name(&task);
                self.scan_log_dir(&task, &task_id, &mut scan);
                seen_tasks.insert(task_id);
            }
        }
        self.known_tasks.retain(|id, _| seen_tasks.contains(id));
        scan
    }

    /// `<log dir>/<process>/<run>/{stdout,stderr}` of one task.
    fn scan_log_dir(&mut self, log_dir: &Path, task_id: &str, scan: &mut Scan) {
        let processes = subdirs(log_dir, scan);
        if processes.is_empty() {
            return;
        }
        let Some(task) = self.task_job(task_id) else {
            return;
        };
        for process_dir in processes {
            let process = file_name(&process_dir);
            for run_dir in subdirs(&process_dir, scan) {
                let Some(run) = sandbox::run_number(&file_name(&run_dir)) else {
                    continue;
                };
                // Watched for writes to its live files (see watcher.rs).
                scan.dirs.push(run_dir.clone());
                for stream in [Stream::Stdout, Stream::Stderr] {
                    // A stream is found once its live file exists; until
                    // then its folder is watched.
                    if !run_dir.join(stream.as_str()).is_file() {
                        continue;
                    }
                    scan.streams.push(FoundStream {
                        dir: run_dir.clone(),
                        source: Source {
                            cluster: self.cluster.clone(),
                            host: self.host.clone(),
                            task_id: task_id.to_owned(),
                            job: task.job.clone(),
                            instance: task.instance,
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

/// The real sub-folders of `dir` (links are skipped), recording `dir` as
/// one to watch when it exists.
fn subdirs(dir: &Path, scan: &mut Scan) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    scan.dirs.push(dir.to_owned());
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
            Some(legacy),
            "c".into(),
            "h".into(),
            JobMapper::new(&[]).unwrap(),
        );
        let scan = scanner.scan();
        let mut got: Vec<String> = scan
            .streams
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
        assert_eq!(
            got,
            [
                "cbe/devel/eight_ball 0 eightball 0 stderr",
                "www-data/prod/hello 3 hello_world 0 stderr",
                "www-data/prod/hello 3 hello_world 0 stdout",
                "www-data/prod/hello 3 hello_world 1 stdout",
            ]
        );
        // Process folders are watched for new runs, run folders for writes
        // to their files.
        assert!(scan.dirs.iter().any(|d| d.ends_with(".logs/hello_world")));
        assert!(scan.dirs.iter().any(|d| d.ends_with(".logs/hello_world/1")));
    }
}
