//! The agent: its work dir, where every executor of the Aurora framework
//! has a folder, and Thermos' checkpoint root, where tasks of an older
//! Thermos kept their logs. The folder names come from `cblogs_core::sandbox`
//! (what the shipper looks for), the tree from `thermos-layout.md`.

use std::io;
use std::path::{Path, PathBuf};

use cblogs_core::sandbox::{EXECUTOR_PREFIX, LATEST_LINK, LEGACY_LOG_DIR, LOG_DIR, SANDBOX_DIR};

use crate::fs::{mkdirs, with_path, write};
use crate::ids::{self, fake_uuid, AGENT_ID, FRAMEWORK_ID};
use crate::task::Task;

/// Text written where a shipper must not look (the executor's own output,
/// Thermos checkpoints, a foreign executor's files, files a task
/// installed): no shipped line may contain it.
pub const NOT_A_LOG: &str = "NOT-A-TASK-LOG";

/// A Mesos agent's work dir with the Aurora framework's executors folder,
/// and (optionally) a Thermos checkpoint root for legacy tasks.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The agent's `--work_dir` (`/var/lib/mesos` on a real agent).
    pub work_dir: PathBuf,
    /// Thermos' checkpoint root (`/var/run/thermos` on a real agent).
    pub checkpoint_root: Option<PathBuf>,
    /// `<work dir>/slaves/<agent>/frameworks/<framework>/executors`.
    pub executors: PathBuf,
}

impl Agent {
    /// Lays out `<root>/mesos` as the work dir, with the layout page's agent
    /// and framework ids, and an empty checkpoint root `<root>/thermos`.
    pub fn new(root: &Path) -> io::Result<Agent> {
        let mut agent = Agent::in_work_dir(&root.join("mesos"), AGENT_ID, FRAMEWORK_ID)?;
        let checkpoint_root = root.join("thermos");
        mkdirs(&checkpoint_root)?;
        agent.checkpoint_root = Some(checkpoint_root);
        Ok(agent)
    }

    /// Lays out `work_dir` (kept if it is there) for the agent and framework
    /// ids given, with no checkpoint root.
    pub fn in_work_dir(work_dir: &Path, agent_id: &str, framework_id: &str) -> io::Result<Agent> {
        let executors = work_dir
            .join("slaves")
            .join(agent_id)
            .join("frameworks")
            .join(framework_id)
            .join("executors");
        mkdirs(&executors)?;
        // The agent keeps other things in its work dir too.
        mkdirs(&work_dir.join("meta/slaves").join(agent_id))?;
        Ok(Agent {
            work_dir: work_dir.to_owned(),
            checkpoint_root: None,
            executors,
        })
    }

    /// A running Aurora task: the executor folder `thermos-<task id>` with
    /// one container run (`runs/<container id>`, and `runs/latest` linking
    /// to it), the executor's own stdout/stderr beside the sandbox, a file
    /// the task installed, and `sandbox/.logs`. What is there already is
    /// kept (a log file is never emptied).
    pub fn task(&self, role: &str, env: &str, name: &str, instance: u32) -> io::Result<Task> {
        let task_id = ids::task_id(role, env, name, instance);
        let executor_dir = self.executors.join(format!("{EXECUTOR_PREFIX}{task_id}"));
        let container = ids::container_id(&task_id);
        let runs = executor_dir.join("runs");
        let run_dir = runs.join(&container);
        let sandbox = run_dir.join(SANDBOX_DIR);
        let log_dir = sandbox.join(LOG_DIR);
        mkdirs(&log_dir)?;
        let latest = runs.join(LATEST_LINK);
        if std::fs::symlink_metadata(&latest).is_err() {
            std::os::unix::fs::symlink(&container, &latest)
                .map_err(|e| with_path(e, "link", &latest))?;
        }
        for stream in ["stdout", "stderr"] {
            write(
                &run_dir.join(stream),
                format!(
                    "{NOT_A_LOG}: thermos executor {stream} for {task_id}\n\
                     {NOT_A_LOG}: Writing log files to disk in {}\n",
                    log_dir.display()
                ),
            )?;
        }
        write(
            &sandbox.join("hello_world.py"),
            format!("print('{NOT_A_LOG}: a file the task installed')\n"),
        )?;
        Ok(Task::new(
            task_id,
            format!("{role}/{env}/{name}"),
            instance,
            log_dir,
            executor_dir,
        ))
    }

    /// A task of an older Thermos, which logged to
    /// `<checkpoint root>/logs/<task id>/…`; its binary checkpoints are in
    /// `<checkpoint root>/checkpoints/<task id>/`. Its id has the creation
    /// time prefix older schedulers put there.
    pub fn legacy_task(
        &self,
        role: &str,
        env: &str,
        name: &str,
        instance: u32,
    ) -> io::Result<Task> {
        let root = self.checkpoint_root.as_deref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "this agent was laid out without a Thermos checkpoint root",
            )
        })?;
        let task_id = ids::legacy_task_id(role, env, name, instance);
        let log_dir = root.join(LEGACY_LOG_DIR).join(&task_id);
        mkdirs(&log_dir)?;
        let checkpoints = root.join("checkpoints").join(&task_id);
        mkdirs(&checkpoints.join("coordinator.hello_world"))?;
        write(
            &checkpoints.join("runner"),
            format!("\u{1}\u{0}{NOT_A_LOG}: binary runner checkpoint\n"),
        )?;
        Ok(Task::new(
            task_id,
            format!("{role}/{env}/{name}"),
            instance,
            log_dir.clone(),
            log_dir,
        ))
    }

    /// An executor that is not Thermos', with a Thermos-like log tree in
    /// its sandbox: not an Aurora task, so nothing of it may be shipped.
    /// Returns its run folder.
    pub fn foreign_executor(&self) -> io::Result<PathBuf> {
        let dir = self
            .executors
            .join("custom-executor-1")
            .join("runs")
            .join(fake_uuid("foreign container"));
        let logs = dir.join(SANDBOX_DIR).join(LOG_DIR).join("worker/0");
        mkdirs(&logs)?;
        for stream in ["stdout", "stderr"] {
            write(
                &logs.join(stream),
                format!("{NOT_A_LOG}: foreign executor\n"),
            )?;
        }
        Ok(dir)
    }
}
