//! The end-to-end harness: builds and runs the real `cblogsd` and `cblogs`
//! binaries, posts batches shaped like a shipper's, and reads what the CLI
//! prints. Every wait is a poll with a deadline, never a bare sleep.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::{JobKey, LineView, Source, Stream};

/// How long anything may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Small blocks and a fast committer: lines reach the index within
/// moments, so tests exercise the index path and not only memory.
pub const SMALL_BLOCKS: &str =
    "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 200\ncommit_interval_ms = 100\n";

/// The directory holding the binaries; builds them (once per test process)
/// because `cargo test` builds other packages' binaries only as test harnesses.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> (a test) or target/<profile>/<bin>
        // (the benchmark harness) -> target/<profile>
        let mut dir = exe.parent().expect("target dir").to_owned();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "cblogs-server",
            "-p",
            "cblogs-cli",
            "-p",
            "cblogs-shipper",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
pub fn wait_until<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `cblogsd`.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub port: u16,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    log: PathBuf,
}

impl Server {
    /// Starts `cblogsd` on a free port with `data_dir`, and the config text if given.
    pub fn start(data_dir: &Path, config: Option<&str>) -> Server {
        Server::start_with(data_dir, config, "127.0.0.1:0", &[])
    }

    /// Starts `cblogsd` listening on `listen` (e.g. `0.0.0.0:0`) with
    /// `env` added to its environment (e.g. `RUST_LOG`). Its stderr goes to
    /// [`Server::log_text`]; the URL is what it printed (`https://…` with
    /// `[tls]`). [`Server::restart`] brings it back on 127.0.0.1 without `env`.
    pub fn start_with(
        data_dir: &Path,
        config: Option<&str>,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Server {
        let config = config.map(|text| {
            let path = data_dir.with_extension("toml");
            std::fs::write(&path, text).expect("write config");
            path
        });
        let mut s = Server {
            child: None,
            url: String::new(),
            port: 0,
            data_dir: data_dir.to_owned(),
            config,
            log: data_dir.with_extension("log"),
        };
        s.spawn_at(listen, env);
        s
    }

    fn spawn(&mut self, port: u16) {
        self.spawn_at(&format!("127.0.0.1:{port}"), &[]);
    }

    /// Starts the process and waits for the line that says where it listens.
    fn spawn_at(&mut self, listen: &str, env: &[(&str, &str)]) {
        let mut cmd = Command::new(bin("cblogsd"));
        cmd.arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .envs(env.iter().copied());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start cblogsd");
        let stdout = lines_to_channel(child.stdout.take().expect("piped stdout"));
        self.child = Some(child);
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("cblogsd listening on ") {
                        self.port = url
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.parse().ok())
                            .expect("port in the url");
                        self.url = url.to_owned();
                        return;
                    }
                }
                Err(_) => panic!("cblogsd did not start; its log:\n{}", self.log_text()),
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: no chance to flush or commit anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL cblogsd");
            c.wait().expect("reap cblogsd");
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            assert_eq!(rc, 0, "send SIGTERM");
            let status = wait_until("cblogsd to exit after SIGTERM", DEADLINE, || {
                c.try_wait().expect("wait")
            });
            assert!(
                status.success(),
                "cblogsd exited with {status} after SIGTERM; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Starts again on the same data dir and the same port (clients reconnect to it).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        let port = self.port;
        self.spawn(port);
        assert_eq!(self.port, port);
    }

    /// POSTs a request as JSON, optionally zstd-compressed.
    pub fn post(&self, req: &IngestRequest, zstd: bool) -> (u16, serde_json::Value) {
        let json = serde_json::to_vec(req).expect("encode request");
        if zstd {
            let body = zstd::bulk::compress(&json, 3).expect("zstd");
            self.post_raw(body, Some("zstd"))
        } else {
            self.post_raw(json, None)
        }
    }

    /// POSTs `body` as it is.
    pub fn post_raw(
        &self,
        body: Vec<u8>,
        content_encoding: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::blocking::Client::new();
        let mut req = client
            .post(format!("{}/api/v1/ingest", self.url))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(enc) = content_encoding {
            req = req.header("Content-Encoding", enc);
        }
        let resp = req.send().expect("POST /api/v1/ingest");
        let status = resp.status().as_u16();
        let text = resp.text().expect("response body");
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("non-JSON answer ({status}): {text}"));
        (status, value)
    }

    /// POSTs and asserts the batch was acknowledged.
    pub fn post_ok(&self, req: &IngestRequest) -> serde_json::Value {
        let (status, body) = self.post(req, false);
        assert_eq!(status, 200, "ingest refused: {body}");
        body
    }

    /// Runs `cblogs --server URL args…`.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        cli(&self.url, args)
    }

    /// Every line of `job` as the CLI prints it with `--output json`.
    pub fn all_lines(&self, job: &str) -> Vec<LineView> {
        let out = self.cli(&["tail", job, "-n", "100000", "--output", "json"]);
        assert_eq!(out.code, 0, "tail failed: {}", out.stderr);
        parse_line_views(&out.stdout)
    }

    /// [`Server::all_lines`], or `None` while the CLI fails (e.g. no job
    /// matches yet): for polling.
    pub fn try_all_lines(&self, job: &str) -> Option<Vec<LineView>> {
        let out = self.cli(&["tail", job, "-n", "100000", "--output", "json"]);
        (out.code == 0).then(|| parse_line_views(&out.stdout))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn parse_line_views(stdout: &str) -> Vec<LineView> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a LineView per line"))
        .collect()
}

pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

pub fn cli(url: &str, args: &[&str]) -> CliOutput {
    let out = Command::new(bin("cblogs"))
        .arg("--server")
        .arg(url)
        .args(args)
        .env_remove("CBLOGS_SERVER")
        .output()
        .expect("run cblogs");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A running `cblogs tail -f` whose output lines arrive over channels.
pub struct Follower {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
}

fn lines_to_channel(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Follower {
    pub fn start(url: &str, args: &[&str]) -> Follower {
        let mut child = Command::new(bin("cblogs"))
            .arg("--server")
            .arg(url)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start cblogs -f");
        let stdout = lines_to_channel(child.stdout.take().expect("stdout"));
        let stderr = lines_to_channel(child.stderr.take().expect("stderr"));
        Follower {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits for a stdout line containing `needle`, within `within`.
    pub fn expect_line(&mut self, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "no line containing {needle:?} within {within:?}; printed so far:\n{}",
                    self.seen.join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "cblogs -f exited; stdout:\n{}\nstderr:\n{}",
                        self.seen.join("\n"),
                        self.stderr_now()
                    )
                }
            }
        }
    }

    /// Waits for the next stdout line, whatever it holds.
    pub fn next_line(&mut self, within: Duration) -> String {
        match self.stdout.recv_timeout(within) {
            Ok(l) => {
                self.seen.push(l.clone());
                l
            }
            Err(e) => panic!(
                "no new line within {within:?} ({e}); printed so far:\n{}",
                self.seen.join("\n")
            ),
        }
    }

    /// Waits for a stderr line containing `needle`.
    pub fn expect_stderr(&mut self, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(e) => panic!("no stderr line containing {needle:?} within {within:?} ({e})"),
            }
        }
    }

    fn stderr_now(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A deterministic uuid (8-4-4-4-12 hex digits) made from `seed`.
pub fn fake_uuid(seed: impl AsRef<[u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.as_ref() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 12) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// A source with a realistic task id: `role-env-name-instance-<uuid>`.
pub fn source(job: &str, instance: u32, process: &str, stream: Stream) -> Source {
    let key: JobKey = job.parse().expect("job key");
    let cluster = key.cluster.clone().unwrap_or_else(|| "devcluster".into());
    let seed: Vec<u8> = job.bytes().chain(instance.to_le_bytes()).collect();
    let uuid = fake_uuid(seed);
    Source {
        cluster,
        host: "agent1".into(),
        task_id: format!("{}-{}-{}-{instance}-{uuid}", key.role, key.env, key.name),
        job: JobKey {
            cluster: None,
            ..key
        },
        instance,
        process: process.into(),
        run: 0,
        stream,
    }
}

/// Strictly increasing times across everything a test process posts, so
/// "the newest N lines" is known exactly.
pub fn next_time() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = cblogs_core::time::now_ns();
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

/// One sandbox file as a shipper sees it: lines appended at growing offsets.
pub struct SourceFile {
    pub source: Source,
    pub offset: u64,
}

impl SourceFile {
    pub fn new(source: Source) -> Self {
        SourceFile { source, offset: 0 }
    }

    /// The next batch: `lines` (without newlines) appended to the file.
    pub fn batch<T: AsRef<[u8]>>(&mut self, lines: &[T]) -> Batch {
        let start = self.offset;
        let wire = lines
            .iter()
            .map(|l| {
                let l = l.as_ref();
                let w = WireLine::from_bytes(self.offset, next_time(), l);
                self.offset += l.len() as u64 + 1;
                w
            })
            .collect();
        Batch {
            source: self.source.clone(),
            start,
            end: self.offset,
            lines: wire,
            allow_gap: false,
        }
    }
}

pub fn request(batches: Vec<Batch>) -> IngestRequest {
    IngestRequest { batches }
}

/// The lines of a loghub sample (`Apache_2k.log`, …), each without its `\n`
/// (a `\r` before it is kept, as written).
pub fn corpus(name: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus/loghub")
        .join(name);
    let data = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The text a terminal shows for a line: lossy UTF-8, one trailing `\r` dropped.
pub fn shown(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes).into_owned();
    s.strip_suffix('\r').map(str::to_owned).unwrap_or(s)
}

// ---------------------------------------------------------------------------
// A fake Mesos agent with Thermos sandboxes, and the real `cblogs-shipper`.
// ---------------------------------------------------------------------------

/// The agent id in the fixture's `slaves/` folder.
pub const AGENT_ID: &str = "20171005-141516-16842879-5050-1234-S3";
/// The Aurora scheduler's framework id.
pub const FRAMEWORK_ID: &str = "20160902-110203-16842879-5050-4321-0000";
/// The cluster and host every shipper in these tests is started with.
pub const SHIPPER_CLUSTER: &str = "devcluster";
pub const SHIPPER_HOST: &str = "agent1";
/// The line length limit of both cblogsd (its default) and the shipper.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// Text written where the shipper must not look (the executor's own output,
/// Thermos checkpoints, foreign executors): no shipped line may contain it.
pub const NOT_A_LOG: &str = "NOT-A-TASK-LOG";

/// A shipper configuration for tests: quick polls, quick batches, quick
/// retries; a partial last line waits 2 s for its newline.
pub const SHIPPER_FAST: &str = "\
[discovery]
rescan_interval_ms = 500
[tail]
poll_interval_ms = 50
partial_line_delay_ms = 2000
max_line_bytes = 1048576
[ship]
batch_max_bytes = 1048576
batch_max_delay_ms = 50
retry_initial_ms = 100
retry_max_ms = 500
[checkpoint]
interval_ms = 1000
";

/// A Mesos agent's work dir laid out as `thermos-layout.md` describes, and
/// a Thermos checkpoint root for tasks of the older (legacy) layout.
pub struct Agent {
    /// The agent's `--work_dir`.
    pub work_dir: PathBuf,
    /// Thermos' checkpoint root (`/var/run/thermos` on a real agent).
    pub checkpoint_root: PathBuf,
    executors: PathBuf,
}

impl Agent {
    /// Lays out `<root>/mesos/slaves/<agent>/frameworks/<framework>/executors/`
    /// and an empty checkpoint root `<root>/thermos`.
    pub fn new(root: &Path) -> Agent {
        let work_dir = root.join("mesos");
        let executors = work_dir
            .join("slaves")
            .join(AGENT_ID)
            .join("frameworks")
            .join(FRAMEWORK_ID)
            .join("executors");
        mkdirs(&executors);
        // The agent keeps other things in its work dir too.
        mkdirs(&work_dir.join("meta/slaves").join(AGENT_ID));
        let checkpoint_root = root.join("thermos");
        mkdirs(&checkpoint_root);
        Agent {
            work_dir,
            checkpoint_root,
            executors,
        }
    }

    /// A running Aurora task: the executor folder `thermos-<task id>` with
    /// one container run (`runs/<container id>`, and `runs/latest` linking
    /// to it), the executor's own stdout/stderr beside the sandbox, a file
    /// the task installed, and an empty `sandbox/.logs`.
    pub fn task(&self, role: &str, env: &str, name: &str, instance: u32) -> Task {
        let task_id = format!(
            "{role}-{env}-{name}-{instance}-{}",
            fake_uuid(format!("task {role}/{env}/{name}/{instance}"))
        );
        let executor_dir = self.executors.join(format!("thermos-{task_id}"));
        let container = fake_uuid(format!("container {task_id}"));
        let runs = executor_dir.join("runs");
        let run_dir = runs.join(&container);
        let sandbox = run_dir.join("sandbox");
        let log_dir = sandbox.join(".logs");
        mkdirs(&log_dir);
        std::os::unix::fs::symlink(&container, runs.join("latest")).expect("runs/latest link");
        for stream in ["stdout", "stderr"] {
            std::fs::write(
                run_dir.join(stream),
                format!(
                    "{NOT_A_LOG}: thermos executor {stream} for {task_id}\n\
                     {NOT_A_LOG}: Writing log files to disk in {}\n",
                    log_dir.display()
                ),
            )
            .expect("executor output");
        }
        std::fs::write(
            sandbox.join("hello_world.py"),
            format!("print('{NOT_A_LOG}: a file the task installed')\n"),
        )
        .expect("sandbox file");
        Task {
            task_id,
            job: format!("{role}/{env}/{name}"),
            instance,
            log_dir,
            remove_on_delete: executor_dir,
        }
    }

    /// A task of an older Thermos, which logged to
    /// `<checkpoint root>/logs/<task id>/…`; its binary checkpoints are in
    /// `<checkpoint root>/checkpoints/<task id>/`. Its id has the creation
    /// time prefix older schedulers put there.
    pub fn legacy_task(&self, role: &str, env: &str, name: &str, instance: u32) -> Task {
        let task_id = format!(
            "1507212916123-{role}-{env}-{name}-{instance}-{}",
            fake_uuid(format!("legacy task {role}/{env}/{name}/{instance}"))
        );
        let log_dir = self.checkpoint_root.join("logs").join(&task_id);
        mkdirs(&log_dir);
        let checkpoints = self.checkpoint_root.join("checkpoints").join(&task_id);
        mkdirs(&checkpoints.join("coordinator.hello_world"));
        std::fs::write(
            checkpoints.join("runner"),
            format!("\u{1}\u{0}{NOT_A_LOG}: binary runner checkpoint\n"),
        )
        .expect("checkpoint file");
        Task {
            task_id,
            job: format!("{role}/{env}/{name}"),
            instance,
            remove_on_delete: log_dir.clone(),
            log_dir,
        }
    }

    /// An executor that is not Thermos', with a Thermos-like log tree in
    /// its sandbox: not an Aurora task, so nothing of it is shipped.
    pub fn foreign_executor(&self) -> PathBuf {
        let dir = self
            .executors
            .join("custom-executor-1")
            .join("runs")
            .join(fake_uuid("foreign container"));
        let logs = dir.join("sandbox/.logs/worker/0");
        mkdirs(&logs);
        for stream in ["stdout", "stderr"] {
            std::fs::write(
                logs.join(stream),
                format!("{NOT_A_LOG}: foreign executor\n"),
            )
            .expect("foreign log");
        }
        dir
    }
}

fn mkdirs(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
}

/// One Aurora task on the [`Agent`].
pub struct Task {
    pub task_id: String,
    /// `role/env/name`.
    pub job: String,
    pub instance: u32,
    /// Thermos' log dir: `<sandbox>/.logs`, or `<checkpoint root>/logs/<task id>`.
    pub log_dir: PathBuf,
    remove_on_delete: PathBuf,
}

impl Task {
    /// A process run folder `<log dir>/<process>/<run>/` with empty
    /// `stdout` and `stderr`, as Thermos creates them when it starts the process.
    pub fn process(&self, name: &str, run: u32) -> ProcessRun {
        let p = self.process_dir_only(name, run);
        for stream in [Stream::Stdout, Stream::Stderr] {
            std::fs::File::create(p.path(stream)).expect("create log file");
        }
        p
    }

    /// The process run folder only: its files appear with the first write.
    pub fn process_dir_only(&self, name: &str, run: u32) -> ProcessRun {
        let dir = self.log_dir.join(name).join(run.to_string());
        mkdirs(&dir);
        ProcessRun {
            task_id: self.task_id.clone(),
            job: self.job.clone(),
            instance: self.instance,
            process: name.to_owned(),
            run,
            dir,
            streams: Default::default(),
        }
    }

    /// `rm -rf` of the executor folder, as the agent's garbage collector
    /// does (for a legacy task: its log folder).
    pub fn delete(&self) {
        std::fs::remove_dir_all(&self.remove_on_delete)
            .unwrap_or_else(|e| panic!("delete {}: {e}", self.remove_on_delete.display()));
    }
}

/// A line the test expects to see: where it starts in its stream, its bytes
/// (all of them, even past the length limit), and whether it is sent
/// without its newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub offset: u64,
    pub bytes: Vec<u8>,
    pub partial: bool,
}

impl Written {
    /// What the CLI shows for it: (offset, text, cut, partial).
    pub fn view(&self) -> (u64, String, bool, bool) {
        let kept = &self.bytes[..self.bytes.len().min(MAX_LINE_BYTES)];
        (
            self.offset,
            String::from_utf8_lossy(kept).into_owned(),
            self.bytes.len() > MAX_LINE_BYTES,
            self.partial,
        )
    }
}

/// What was written to one stream so far, as lines.
#[derive(Debug, Default, Clone)]
pub struct StreamModel {
    /// Bytes written to the stream, across rotations and truncations.
    pub written: u64,
    /// Complete lines (and flushed partial ones).
    pub lines: Vec<Written>,
    /// The last line while it has no newline: its offset and bytes.
    pending: Option<(u64, Vec<u8>)>,
}

impl StreamModel {
    fn record(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let written = self.written;
            let (_, line) = self.pending.get_or_insert_with(|| (written, Vec::new()));
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    line.extend_from_slice(&bytes[..i]);
                    self.written += i as u64 + 1;
                    bytes = &bytes[i + 1..];
                    let (offset, line) = self.pending.take().expect("pending line");
                    self.lines.push(Written {
                        offset,
                        bytes: line,
                        partial: false,
                    });
                }
                None => {
                    line.extend_from_slice(bytes);
                    self.written += bytes.len() as u64;
                    bytes = &[];
                }
            }
        }
    }

    /// The last line has no newline and will be sent as it is, marked partial.
    pub fn expect_partial(&mut self) {
        let (offset, bytes) = self.pending.take().expect("a line without its newline");
        self.lines.push(Written {
            offset,
            bytes,
            partial: true,
        });
    }

    pub fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
}

/// The identity of a stream as the CLI shows it.
pub type StreamKey = (String, String, u32, Stream);

/// One run of one Thermos process: `<log dir>/<process>/<run>/{stdout,stderr}`.
/// Remembers everything written, to compare with what arrives.
#[derive(Debug)]
pub struct ProcessRun {
    pub task_id: String,
    pub job: String,
    pub instance: u32,
    pub process: String,
    pub run: u32,
    pub dir: PathBuf,
    streams: [StreamModel; 2],
}

fn stream_index(stream: Stream) -> usize {
    match stream {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
    }
}

impl ProcessRun {
    /// The live file of a stream.
    pub fn path(&self, stream: Stream) -> PathBuf {
        self.dir.join(stream.as_str())
    }

    pub fn key(&self, stream: Stream) -> StreamKey {
        (self.task_id.clone(), self.process.clone(), self.run, stream)
    }

    pub fn model(&self, stream: Stream) -> &StreamModel {
        &self.streams[stream_index(stream)]
    }

    pub fn model_mut(&mut self, stream: Stream) -> &mut StreamModel {
        &mut self.streams[stream_index(stream)]
    }

    /// Appends `bytes` as the process does (opened for append, created if
    /// missing; one write), then closes the file.
    pub fn append(&mut self, stream: Stream, bytes: &[u8]) {
        use std::io::Write;
        let path = self.path(stream);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        f.write_all(bytes)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.streams[stream_index(stream)].record(bytes);
    }

    /// Appends each of `lines` followed by a newline, in one write.
    pub fn append_lines<T: AsRef<[u8]>>(&mut self, stream: Stream, lines: &[T]) {
        let mut buf = Vec::new();
        for l in lines {
            buf.extend_from_slice(l.as_ref());
            buf.push(b'\n');
        }
        self.append(stream, &buf);
    }

    /// Thermos' `rotate` log mode: `stdout.(N-1)` → `stdout.N` … `stdout` →
    /// `stdout.1`, then a new empty `stdout`. Nothing is deleted.
    pub fn rotate(&mut self, stream: Stream) {
        let name = |n: u32| {
            if n == 0 {
                self.path(stream)
            } else {
                self.dir.join(format!("{}.{n}", stream.as_str()))
            }
        };
        let mut top = 0;
        while name(top + 1).exists() {
            top += 1;
        }
        for n in (0..=top).rev() {
            std::fs::rename(name(n), name(n + 1)).expect("rotate");
        }
        std::fs::File::create(name(0)).expect("new live file");
    }

    /// Truncates the live file to nothing (as `> stdout` would); the stream's
    /// offsets go on growing.
    pub fn truncate(&mut self, stream: Stream) {
        assert!(
            !self.model(stream).has_pending(),
            "truncate only between lines"
        );
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path(stream))
            .and_then(|f| f.set_len(0))
            .expect("truncate");
    }
}

/// A running `cblogs-shipper` for an [`Agent`].
pub struct Shipper {
    child: Option<Child>,
    args: Vec<std::ffi::OsString>,
    log: PathBuf,
    status_listen: String,
}

impl Shipper {
    /// Starts `cblogs-shipper` on the agent's work dir and checkpoint root,
    /// with `config` (TOML) and the state dir given, shipping to `server_url`
    /// as cluster `devcluster`, host `agent1`, without a status endpoint.
    /// Its stderr (the tracing log) goes to `<state dir>.log`.
    pub fn start(agent: &Agent, state_dir: &Path, server_url: &str, config: &str) -> Shipper {
        Shipper::start_with_status(agent, state_dir, server_url, config, "off")
    }

    /// [`Shipper::start`] with the status endpoint on a free local port
    /// (see [`Shipper::status`]).
    pub fn start_with_status_endpoint(
        agent: &Agent,
        state_dir: &Path,
        server_url: &str,
        config: &str,
    ) -> Shipper {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        Shipper::start_with_status(agent, state_dir, server_url, config, &addr)
    }

    /// [`Shipper::start`] with `extra_args` after the usual flags (e.g.
    /// `--token-file`, `--ca-cert`) and `env` added to (and overriding) its
    /// environment, e.g. `RUST_LOG=debug`. `CBLOGS_TOKEN` is not inherited.
    /// [`Shipper::restart`] keeps the flags but not `env`.
    pub fn start_with(
        agent: &Agent,
        state_dir: &Path,
        server_url: &str,
        config: &str,
        extra_args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
    ) -> Shipper {
        let mut s = Shipper::prepare(agent, state_dir, server_url, config, "off");
        s.args.extend(extra_args.iter().map(|a| a.to_os_string()));
        s.spawn_with(env);
        s
    }

    fn start_with_status(
        agent: &Agent,
        state_dir: &Path,
        server_url: &str,
        config: &str,
        status_listen: &str,
    ) -> Shipper {
        let mut s = Shipper::prepare(agent, state_dir, server_url, config, status_listen);
        s.spawn();
        s
    }

    /// Writes the config and sets up the flags; starts nothing.
    fn prepare(
        agent: &Agent,
        state_dir: &Path,
        server_url: &str,
        config: &str,
        status_listen: &str,
    ) -> Shipper {
        mkdirs(state_dir);
        let config_path = state_dir.with_extension("toml");
        std::fs::write(&config_path, config).expect("write shipper config");
        let args = [
            "--config".as_ref(),
            config_path.as_os_str(),
            "--work-dir".as_ref(),
            agent.work_dir.as_os_str(),
            "--checkpoint-root".as_ref(),
            agent.checkpoint_root.as_os_str(),
            "--state-dir".as_ref(),
            state_dir.as_os_str(),
            "--server".as_ref(),
            server_url.as_ref(),
            "--cluster".as_ref(),
            SHIPPER_CLUSTER.as_ref(),
            "--host".as_ref(),
            SHIPPER_HOST.as_ref(),
            "--status-listen".as_ref(),
            status_listen.as_ref(),
        ]
        .iter()
        .map(|a: &&std::ffi::OsStr| a.to_os_string())
        .collect();
        Shipper {
            child: None,
            args,
            log: state_dir.with_extension("log"),
            status_listen: status_listen.to_owned(),
        }
    }

    fn spawn(&mut self) {
        self.spawn_with(&[]);
    }

    fn spawn_with(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open shipper log");
        let child = Command::new(bin("cblogs-shipper"))
            .args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("CBLOGS_SERVER")
            .env_remove("CBLOGS_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start cblogs-shipper");
        self.child = Some(child);
    }

    /// Its status endpoint's address ("off" when started without one).
    pub fn status_listen(&self) -> &str {
        &self.status_listen
    }

    /// GET a path of its status endpoint (`/status`, `/metrics`) as text.
    pub fn status_get(&self, path: &str) -> String {
        reqwest::blocking::get(format!("http://{}{path}", self.status_listen))
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// Runs `cblogs-shipper --status` against this shipper's endpoint.
    pub fn status(&self) -> CliOutput {
        assert_ne!(
            self.status_listen, "off",
            "started without a status endpoint"
        );
        let out = Command::new(bin("cblogs-shipper"))
            .args(["--status", "--status-listen", &self.status_listen])
            .output()
            .expect("run cblogs-shipper --status");
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Everything the shipper logged, across restarts.
    /// The running process's id (for benchmarks reading /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, if the shipper has exited.
    pub fn assert_running(&mut self) {
        let status = self
            .child
            .as_mut()
            .expect("the shipper was started")
            .try_wait()
            .expect("wait");
        if let Some(status) = status {
            panic!(
                "cblogs-shipper exited with {status}; its log:\n{}",
                self.log_text()
            );
        }
    }

    /// SIGKILL: no chance to send or checkpoint anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL cblogs-shipper");
            c.wait().expect("reap cblogs-shipper");
        }
    }

    /// SIGTERM, and a clean exit (status 0) within the deadline.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            assert_eq!(rc, 0, "send SIGTERM");
            let status = wait_until("cblogs-shipper to exit after SIGTERM", DEADLINE, || {
                c.try_wait().expect("wait")
            });
            assert!(
                status.success(),
                "cblogs-shipper exited with {status} after SIGTERM; log:\n{}",
                self.log_text()
            );
        }
    }

    /// Starts again with the same flags (and so the same state dir).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the shipper first");
        self.spawn();
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Lines stored per job key (`cluster/role/env/name`), from `cblogs jobs`.
pub fn stored_per_job(server: &Server) -> std::collections::BTreeMap<String, u64> {
    let out = server.cli(&["jobs", "--output", "json"]);
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| Some((j["key"].as_str()?.to_owned(), j["lines"].as_u64()?)))
        .collect()
}

/// Lines written per job key (as the shipper names it), from the runs' models.
pub fn written_per_job(runs: &[&ProcessRun]) -> std::collections::BTreeMap<String, u64> {
    let mut want = std::collections::BTreeMap::new();
    for r in runs {
        let n: usize = [Stream::Stdout, Stream::Stderr]
            .iter()
            .map(|s| r.model(*s).lines.len())
            .sum();
        *want
            .entry(format!("{SHIPPER_CLUSTER}/{}", r.job))
            .or_insert(0) += n as u64;
    }
    want.retain(|_, n| *n > 0);
    want
}

/// Waits (polling, up to `deadline`) until cblogsd holds exactly the lines
/// written to `runs`; fails at once if it holds more, or if the shipper died.
pub fn wait_all_stored(
    server: &Server,
    shipper: &mut Shipper,
    deadline: Duration,
    runs: &[&ProcessRun],
) {
    let want = written_per_job(runs);
    let end = Instant::now() + deadline;
    loop {
        shipper.assert_running();
        let got = stored_per_job(server);
        if got == want {
            return;
        }
        for (job, n) in &got {
            let written = want.get(job).copied().unwrap_or(0);
            assert!(
                *n <= written,
                "{job}: {n} lines stored, more than the {written} written"
            );
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?}: lines written per job {want:?}, stored {got:?}; \
             shipper log:\n{}",
            shipper.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Starting the binaries with extra flags and environment (auth.rs).
// ---------------------------------------------------------------------------

/// Environment variables of the CLI that a test must not inherit.
const CLI_ENV: [&str; 4] = [
    "CBLOGS_SERVER",
    "CBLOGS_TOKEN",
    "CBLOGS_CA_CERT",
    "CBLOGS_CONFIG",
];

/// Runs `cblogs args…` (no implicit `--server`) with none of the
/// `CBLOGS_*` variables inherited, no user config file (`XDG_CONFIG_HOME`
/// points nowhere), and `env` added.
pub fn cli_with(args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = Command::new(bin("cblogs"));
    cmd.args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent/cblogs-e2e-config")
        .stdin(Stdio::null());
    for v in CLI_ENV {
        cmd.env_remove(v);
    }
    let out = cmd.envs(env.iter().copied()).output().expect("run cblogs");
    CliOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The last `n` lines of a log, without terminal colour codes.
pub fn log_tail(text: &str, n: usize) -> String {
    let mut log = String::new();
    let mut in_escape = false;
    for c in text.chars() {
        match (in_escape, c) {
            (false, '\u{1b}') => in_escape = true,
            (false, c) => log.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// Exactly once, in order: what the CLI shows against what was written.
// ---------------------------------------------------------------------------

/// How the offsets the CLI shows are checked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Offsets {
    /// Each line's offset is its byte position in the stream: bytes written
    /// before it, counted across rotations.
    Exact,
    /// Offsets only grow (after a truncation, the stream offsets go on from
    /// where the shipper was, which the test does not pin down).
    Growing,
}

pub type Shown = (u64, String, bool, bool);

pub fn shown_line(l: &LineView) -> Shown {
    (l.offset, l.text.clone(), l.flags.cut, l.flags.partial)
}

pub fn brief((offset, text, cut, partial): &Shown) -> String {
    let mut t: String = text.chars().take(70).collect();
    if t.len() < text.len() {
        t.push_str(&format!("… ({} bytes)", text.len()));
    }
    format!(
        "@{offset} {t:?}{}{}",
        if *cut { " cut" } else { "" },
        if *partial { " partial" } else { "" }
    )
}

/// Everything wrong with `got` (the CLI's lines) against what `runs` wrote;
/// empty when every line arrived exactly once, in order, with its source.
pub fn problems(got: &[LineView], runs: &[&ProcessRun], offsets: Offsets) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_key: std::collections::BTreeMap<StreamKey, Vec<&LineView>> =
        std::collections::BTreeMap::new();
    for l in got {
        by_key
            .entry((l.task_id.clone(), l.process.clone(), l.run, l.stream))
            .or_default()
            .push(l);
    }
    for run in runs {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let key = run.key(stream);
            let lines = by_key.remove(&key).unwrap_or_default();
            let name = format!("{}/{}/{}/{stream}", run.task_id, run.process, run.run);
            for l in &lines {
                let meta = (
                    l.cluster.as_str(),
                    l.host.as_str(),
                    l.job.as_str(),
                    l.instance,
                );
                let want = (
                    SHIPPER_CLUSTER,
                    SHIPPER_HOST,
                    run.job.as_str(),
                    run.instance,
                );
                if meta != want {
                    problems.push(format!(
                        "{name}: a line shows (cluster, host, job, instance) {meta:?}, want {want:?}"
                    ));
                    break;
                }
            }
            let mut want: Vec<Shown> = run.model(stream).lines.iter().map(Written::view).collect();
            let mut have: Vec<Shown> = lines.iter().map(|l| shown_line(l)).collect();
            if offsets == Offsets::Growing {
                if let Some(w) = have.windows(2).find(|w| w[0].0 >= w[1].0) {
                    problems.push(format!(
                        "{name}: offsets do not grow: {} then {}",
                        brief(&w[0]),
                        brief(&w[1])
                    ));
                }
                for s in want.iter_mut().chain(have.iter_mut()) {
                    s.0 = 0;
                }
            }
            if want != have {
                let i = want
                    .iter()
                    .zip(&have)
                    .position(|(w, h)| w != h)
                    .unwrap_or(want.len().min(have.len()));
                problems.push(format!(
                    "{name}: wrote {} lines, the CLI shows {}; first difference at line {i}: \
                     wrote {}, shown {}",
                    want.len(),
                    have.len(),
                    want.get(i).map_or("nothing".into(), brief),
                    have.get(i).map_or("nothing".into(), brief),
                ));
            }
        }
    }
    for (key, lines) in by_key {
        problems.push(format!(
            "{} lines of a source nothing was written to: {key:?}, e.g. {}",
            lines.len(),
            brief(&shown_line(lines[0]))
        ));
    }
    problems
}
