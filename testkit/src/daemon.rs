//! A long-running child a test starts, SIGKILLs, stops cleanly and starts
//! again: `cblogsd` and `cblogs-shipper` are both driven through this, so
//! killing, stopping, checking it still runs and reaping it on drop are
//! written once. Its stderr (the tracing log) is appended to one file
//! across restarts, for failure messages.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;

use crate::wait::{wait_until, DEADLINE};

/// One daemon process (while it runs) and its log file.
pub struct Daemon {
    /// The binary's name, for messages.
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
}

impl Daemon {
    /// Nothing runs yet; `log` collects its stderr.
    pub fn new(name: &'static str, log: &Path) -> Daemon {
        Daemon {
            name,
            child: None,
            log: log.to_owned(),
        }
    }

    /// Spawns `cmd` (with stderr appended to the log) as this daemon.
    pub fn spawn(&mut self, cmd: &mut Command) -> &mut Child {
        assert!(
            self.child.is_none(),
            "stop or kill {} before starting it again",
            self.name
        );
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("open {}: {e}", self.log.display()));
        // The kernel kills the child when the thread that started it
        // ends: a daemon shared by a test binary's tests ([`shared`]),
        // never dropped, goes with the process rather than outliving it.
        // SAFETY: prctl(2) is async-signal-safe, and nothing else runs
        // between fork and exec here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.name));
        self.child.insert(child)
    }

    /// Everything it logged, across restarts.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it was started and has not been stopped or killed.
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Panics, with the log, if the process has exited.
    pub fn assert_running(&mut self) {
        let child = self
            .child
            .as_mut()
            .unwrap_or_else(|| panic!("{} was not started", self.name));
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "{} exited with {status}; its log:\n{}",
                self.name,
                self.log_text()
            );
        }
    }

    /// SIGKILL: no chance to flush, commit, send or checkpoint anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill()
                .unwrap_or_else(|e| panic!("SIGKILL {}: {e}", self.name));
            c.wait()
                .unwrap_or_else(|e| panic!("reap {}: {e}", self.name));
        }
    }

    /// SIGSTOP (`stopped`) or SIGCONT: the process freezes with its
    /// sockets open (connections are accepted by the kernel, never
    /// answered), as a node does in a long GC pause or a hung disk.
    pub fn freeze(&mut self, stopped: bool) {
        let Some(c) = self.child.as_ref() else {
            panic!("{} is not running", self.name)
        };
        let sig = if stopped {
            libc::SIGSTOP
        } else {
            libc::SIGCONT
        };
        // SAFETY: kill(2) with a pid we own and a valid signal number.
        let rc = unsafe { libc::kill(c.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "send SIGSTOP/SIGCONT to {}", self.name);
    }

    /// SIGTERM, and a clean exit (status 0) within the deadline.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) with a pid we own and a valid signal number.
            let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            assert_eq!(rc, 0, "send SIGTERM to {}", self.name);
            let status = wait_until(
                &format!("{} to exit after SIGTERM", self.name),
                DEADLINE,
                || c.try_wait().expect("wait"),
            );
            assert!(
                status.success(),
                "{} exited with {status} after SIGTERM; log:\n{}",
                self.name,
                self.log_text()
            );
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One `T` (a ZooKeeper, a SeaweedFS) for every test of a test binary
/// that asks `cell` for it: started by `start` once, on a thread that
/// lives as long as the process, so that its daemon, which dies with the
/// thread that started it (see [`Daemon::spawn`]), dies with the test
/// binary and not with the first test. Tests that stop or restart one
/// start their own.
pub fn shared<T: Send + Sync + 'static>(
    cell: &'static OnceLock<T>,
    start: fn() -> T,
) -> &'static T {
    cell.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(start());
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .expect("the shared daemon's thread panicked while starting it")
    })
}
