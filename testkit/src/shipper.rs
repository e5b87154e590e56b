//! `cblogs-shipper` as a test runs it: on a fake agent's work dir and
//! checkpoint root, shipping to a test's `cblogsd` as cluster `devcluster`,
//! host `agent1`, with a config text; its status endpoint off or on a free
//! port; stopped, killed and started again from its checkpoints. And the
//! configs tests run it with.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use cblogs_fake_agent::Agent;

use crate::binaries::bin;
use crate::cli::CliOutput;
use crate::daemon::Daemon;

/// The cluster every shipper in the tests is started with.
pub const SHIPPER_CLUSTER: &str = "devcluster";
/// The host every shipper in the tests is started with.
pub const SHIPPER_HOST: &str = "agent1";

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

/// A running `cblogs-shipper` for an [`Agent`].
pub struct Shipper {
    daemon: Daemon,
    args: Vec<OsString>,
    status_listen: String,
    /// The binary: this version's `cblogs-shipper`, or another (an upgrade test).
    program: PathBuf,
}

impl Shipper {
    /// Starts `cblogs-shipper` on the agent's work dir and checkpoint root,
    /// with `config` (TOML) and the state dir given, shipping to `server_url`
    /// as cluster `devcluster`, host `agent1`, without a status endpoint.
    /// Its stderr (the tracing log) goes to `<state dir>.log`.
    pub fn start(agent: &Agent, state_dir: &Path, server_url: &str, config: &str) -> Shipper {
        let mut s = Shipper::prepare(agent, state_dir, server_url, config, "off");
        s.spawn(&[]);
        s
    }

    /// [`Shipper::start`] with the status endpoint on a free local port
    /// (see [`Shipper::status`]).
    pub fn start_with_status_endpoint(
        agent: &Agent,
        state_dir: &Path,
        server_url: &str,
        config: &str,
    ) -> Shipper {
        Shipper::start_program(&bin("cblogs-shipper"), agent, state_dir, server_url, config)
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
        extra_args: &[&OsStr],
        env: &[(&str, &str)],
    ) -> Shipper {
        let mut s = Shipper::prepare(agent, state_dir, server_url, config, "off");
        s.args.extend(extra_args.iter().map(|a| a.to_os_string()));
        s.spawn(env);
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
        std::fs::create_dir_all(state_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", state_dir.display()));
        let config_path = state_dir.with_extension("toml");
        std::fs::write(&config_path, config).expect("write shipper config");
        let os = OsStr::new;
        let mut args: Vec<&OsStr> = vec![
            os("--config"),
            config_path.as_os_str(),
            os("--work-dir"),
            agent.work_dir.as_os_str(),
        ];
        if let Some(root) = &agent.checkpoint_root {
            args.extend([os("--checkpoint-root"), root.as_os_str()]);
        }
        args.extend([
            os("--state-dir"),
            state_dir.as_os_str(),
            os("--server"),
            os(server_url),
            os("--cluster"),
            os(SHIPPER_CLUSTER),
            os("--host"),
            os(SHIPPER_HOST),
            os("--status-listen"),
            os(status_listen),
        ]);
        Shipper {
            daemon: Daemon::new("cblogs-shipper", &state_dir.with_extension("log")),
            args: args.into_iter().map(OsStr::to_os_string).collect(),
            status_listen: status_listen.to_owned(),
            program: bin("cblogs-shipper"),
        }
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("RUST_LOG", "info")
            .env_remove("CBLOGS_SERVER")
            .env_remove("CBLOGS_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        self.daemon.spawn(&mut cmd);
    }

    /// [`Shipper::start_with_status_endpoint`] of another `cblogs-shipper`
    /// binary (e.g. [`crate::previous_bin`]); a restart runs it again.
    pub fn start_program(
        program: &Path,
        agent: &Agent,
        state_dir: &Path,
        server_url: &str,
        config: &str,
    ) -> Shipper {
        let addr = format!("127.0.0.1:{}", crate::server::free_port());
        let mut s = Shipper::prepare(agent, state_dir, server_url, config, &addr);
        s.program = program.to_owned();
        s.spawn(&[]);
        s
    }

    /// Starts `program` (another version of `cblogs-shipper`) with the same
    /// flags and state dir, once this one is stopped: an upgrade or a downgrade.
    pub fn restart_as(&mut self, program: &Path) {
        self.program = program.to_owned();
        self.restart();
    }

    /// The files of its status endpoint (`GET /status`), as JSON; none
    /// while it does not answer.
    pub fn files(&self) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.status_get("/status"))
            .ok()
            .and_then(|s| s["files"].as_array().cloned())
            .unwrap_or_default()
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
        Command::new(bin("cblogs-shipper"))
            .args(["--status", "--status-listen", &self.status_listen])
            .output()
            .expect("run cblogs-shipper --status")
            .into()
    }

    /// The running process's id (for benchmarks reading /proc).
    pub fn pid(&self) -> Option<u32> {
        self.daemon.pid()
    }

    /// Everything the shipper logged, across restarts.
    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }

    /// Panics, with the log, if the shipper has exited.
    pub fn assert_running(&mut self) {
        self.daemon.assert_running();
    }

    /// SIGKILL: no chance to send or checkpoint anything.
    pub fn kill9(&mut self) {
        self.daemon.kill9();
    }

    /// SIGTERM, and a clean exit (status 0) within the deadline.
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    /// Starts again with the same flags (and so the same state dir).
    pub fn restart(&mut self) {
        self.spawn(&[]);
    }
}
