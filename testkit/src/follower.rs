//! A running `cblogs tail -f`: its stdout and stderr lines arrive over
//! channels, so a test waits for a line with a deadline and keeps every
//! line printed so far for its failure message.

use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::binaries::bin;
use crate::line_reader::lines_to_channel;

/// A running `cblogs tail -f` whose output lines arrive over channels.
pub struct Follower {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
    /// Every stdout line received so far.
    pub seen: Vec<String>,
}

impl Follower {
    /// Starts `cblogs --server URL args…`.
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
