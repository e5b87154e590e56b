//! `cblogsd` as a test runs it: on a free port and a data dir of the
//! test's, with a config text if given, waited for until it says where it
//! listens; stopped, killed and started again on the same port and data.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::binaries::bin;
use crate::daemon::Daemon;
use crate::line_reader::lines_to_channel;
use crate::wait::DEADLINE;

/// When set, the `cblogsd` program every [`Server::start`] runs instead of
/// the one built from this tree: another build to compare with, or a
/// script that runs cblogsd under a profiler.
pub const CBLOGSD_ENV: &str = "CBLOGS_CBLOGSD";

/// Small blocks and a fast committer: lines reach the index within
/// moments, so tests exercise the index path and not only memory.
pub const SMALL_BLOCKS: &str =
    "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 200\ncommit_interval_ms = 100\n";

/// A free port on loopback (for a server that is to be asked before it
/// says where it listens, or a browser's driver).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running `cblogsd`.
pub struct Server {
    daemon: Daemon,
    pub url: String,
    pub port: u16,
    data_dir: PathBuf,
    config: Option<PathBuf>,
    /// The binary: this version's `cblogsd`, or another (an upgrade test).
    program: PathBuf,
}

impl Server {
    /// Starts `cblogsd` on a free port with `data_dir`, and the config text
    /// if given (written to `<data dir>.toml`, where a restart reads it again).
    pub fn start(data_dir: &Path, config: Option<&str>) -> Server {
        Server::start_with(data_dir, config, "127.0.0.1:0", &[])
    }

    /// A new temporary folder and a `cblogsd` whose data dir is `<it>/data`:
    /// the start of most tests. Keep the folder until the server is done.
    pub fn in_temp_dir(config: Option<&str>) -> (tempfile::TempDir, Server) {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Server::start(&dir.path().join("data"), config);
        (dir, server)
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
        // Another build to compare with, or a wrapper that runs cblogsd
        // under a profiler (bench/README.md, "Comparing two builds").
        let program = std::env::var_os(CBLOGSD_ENV).map_or_else(|| bin("cblogsd"), PathBuf::from);
        Server::start_program(&program, data_dir, config, listen, env)
    }

    /// [`Server::start_with`] of another `cblogsd` binary (e.g.
    /// [`crate::previous_bin`]); a restart runs it again.
    pub fn start_program(
        program: &Path,
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
            daemon: Daemon::new("cblogsd", &data_dir.with_extension("log")),
            url: String::new(),
            port: 0,
            data_dir: data_dir.to_owned(),
            config,
            program: program.to_owned(),
        };
        s.spawn_at(listen, env);
        s
    }

    /// Starts the process and waits for the line that says where it listens.
    fn spawn_at(&mut self, listen: &str, env: &[(&str, &str)]) {
        let mut cmd = Command::new(&self.program);
        cmd.arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let child = self.daemon.spawn(&mut cmd);
        let stdout = lines_to_channel(child.stdout.take().expect("piped stdout"));
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

    /// Everything it logged (stderr), across restarts.
    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// SIGKILL: no chance to flush or commit anything.
    pub fn kill9(&mut self) {
        self.daemon.kill9();
    }

    /// SIGSTOP: frozen, its connections accepted and never answered.
    pub fn sigstop(&mut self) {
        self.daemon.freeze(true);
    }

    /// SIGCONT after [`Server::sigstop`].
    pub fn sigcont(&mut self) {
        self.daemon.freeze(false);
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Starts `program` (another version of `cblogsd`) on the same data dir
    /// and port, once this one is stopped: an upgrade or a downgrade.
    pub fn restart_as(&mut self, program: &Path) {
        self.program = program.to_owned();
        self.restart();
    }

    /// Starts again on the same data dir and the same port (clients reconnect to it).
    pub fn restart(&mut self) {
        let port = self.port;
        self.spawn_at(&format!("127.0.0.1:{port}"), &[]);
        assert_eq!(self.port, port);
    }
}
