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
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--bins", "-p", "cblogs-server", "-p", "cblogs-cli"]);
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
        s.spawn(0);
        s
    }

    fn spawn(&mut self, port: u16) {
        let mut cmd = Command::new(bin("cblogsd"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(&self.data_dir);
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
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("cblogsd listening on ") {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(DEADLINE) {
            Ok(url) => {
                self.port = url
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("port in the url");
                self.url = url;
            }
            Err(_) => panic!("cblogsd did not start; its log:\n{}", self.log_text()),
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
        out.stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("a LineView per line"))
            .collect()
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

/// A source with a realistic task id: `role-env-name-instance-<uuid>`.
pub fn source(job: &str, instance: u32, process: &str, stream: Stream) -> Source {
    let key: JobKey = job.parse().expect("job key");
    let cluster = key.cluster.clone().unwrap_or_else(|| "devcluster".into());
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in job.bytes().chain(instance.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let uuid = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 12) & 0xfff,
        h & 0xffff_ffff_ffff
    );
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
