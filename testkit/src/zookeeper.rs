//! A real ZooKeeper (Debian's `zookeeper` package, a standalone server)
//! on a loopback port, for the tests of a cluster of cblogsd nodes.
//! `scripts/test` installs the package; a test started without it fails
//! naming it.
//!
//! `tickTime` is 500 ms so that a session may be as short as 1 s (the
//! server's minimum is two ticks): a node cut off leaves the serverset
//! within seconds.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::server::free_port;

/// Where Debian's package puts ZooKeeper's jars (and those it needs).
const JARS: &str = "/usr/share/java";

pub struct ZooKeeper {
    daemon: Daemon,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The server's class path: its jar, whose manifest names the jars it
/// needs (as Debian's own `/etc/zookeeper/conf/environment` has it).
fn class_path() -> PathBuf {
    let jar = Path::new(JARS).join("zookeeper.jar");
    assert!(
        jar.exists(),
        "the cluster tests need ZooKeeper ({}, Debian's zookeeper package), \
         which is not installed; scripts/test installs it as root (apt-get install zookeeper)",
        jar.display()
    );
    jar
}

impl ZooKeeper {
    /// Starts it on a free loopback port and waits until it serves.
    pub fn start() -> ZooKeeper {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut zk = ZooKeeper {
            daemon: Daemon::new("zookeeper", &dir.path().join("zookeeper.log")),
            port: free_port(),
            dir,
        };
        zk.restart();
        zk
    }

    /// The one ZooKeeper of this test binary, for tests that neither
    /// stop nor restart it (each uses a serverset path of its own).
    pub fn shared() -> &'static ZooKeeper {
        static ONE: OnceLock<ZooKeeper> = OnceLock::new();
        crate::daemon::shared(&ONE, ZooKeeper::start)
    }

    /// `host:port`, for `[cluster] zookeeper`.
    pub fn connect(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts it (again, on the same port and data) and waits until it
    /// answers `srvr`.
    pub fn restart(&mut self) {
        let data = self.dir.path().join("data");
        std::fs::create_dir_all(&data).expect("zookeeper data dir");
        let cfg = self.dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=srvr\n",
                data.display(),
                self.port
            ),
        )
        .expect("write zoo.cfg");
        self.daemon.spawn(
            Command::new("java")
                .arg("-cp")
                .arg(class_path())
                .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
                .arg(&cfg)
                .stdout(Stdio::null()),
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.daemon.assert_running();
            if self.serving() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after 60s waiting for ZooKeeper on port {}; its log:\n{}",
                    self.port,
                    self.daemon.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// It answers the `srvr` command as a standalone server.
    fn serving(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut out = String::new();
        s.write_all(b"srvr").is_ok()
            && s.read_to_string(&mut out).is_ok()
            && out.contains("Mode: standalone")
    }

    /// Down at once (SIGKILL: the JVM ends on SIGTERM with status 143,
    /// which the test kit would take for a failure); its data stays, for
    /// [`ZooKeeper::restart`].
    pub fn stop(&mut self) {
        self.daemon.kill9();
    }
}
