//! Running the `cblogs` CLI as a user would and reading what it printed:
//! against one server (`--server URL`), or with any flags and environment
//! (tokens, CA certificates) and nothing inherited from the test's own
//! environment or the user's config file.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::binaries::bin;

/// What a finished command printed, and its exit code (-1: killed by a signal).
pub struct CliOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// stdout's lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }
}

impl From<Output> for CliOutput {
    fn from(out: Output) -> CliOutput {
        CliOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Runs `cblogs --server URL args…`.
pub fn cli(url: &str, args: &[&str]) -> CliOutput {
    Command::new(bin("cblogs"))
        .arg("--server")
        .arg(url)
        .args(args)
        .env_remove("CBLOGS_SERVER")
        .output()
        .expect("run cblogs")
        .into()
}

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
pub fn cli_with(args: &[&OsStr], env: &[(&str, &str)]) -> CliOutput {
    let mut cmd = Command::new(bin("cblogs"));
    cmd.args(args)
        .env("XDG_CONFIG_HOME", "/nonexistent/cblogs-e2e-config")
        .stdin(Stdio::null());
    for v in CLI_ENV {
        cmd.env_remove(v);
    }
    cmd.envs(env.iter().copied())
        .output()
        .expect("run cblogs")
        .into()
}
