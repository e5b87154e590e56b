//! Other senders, for the push tests (tests/push.rs): the real Python
//! clients (the OpenTelemetry SDK's OTLP/HTTP log exporter and
//! `python-logging-loki`, in the virtual environment `scripts/test`
//! makes), and [`AnswerDropper`], a proxy that loses the answer to a
//! request it forwarded, so a client sends it again.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::tools::{find_program, require_tool};

/// The Python with the clients installed: `$CBLOGS_PUSH_PYTHON`, else the
/// virtual environment `scripts/test` makes under target/.
pub fn push_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CBLOGS_PUSH_PYTHON") {
        return PathBuf::from(p);
    }
    let installed =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/push-venv/bin/python");
    if let Some(p) = find_program(&installed.to_string_lossy()) {
        return p;
    }
    require_tool(
        "target/push-venv/bin/python",
        "the push tests (the OpenTelemetry SDK and python-logging-loki)",
        "scripts/test installs them: python3 -m venv target/push-venv && target/push-venv/bin/pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http python-logging-loki",
    )
}

/// Runs `script` with the clients' Python; its stdout, or a panic with
/// its stderr.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(push_python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "the Python client failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A proxy on loopback that forwards each connection to a server, and,
/// while told to, reads the server's answer to a connection's first
/// request and closes the connection instead of passing it on: the
/// request was taken, and the client must think it was not.
pub struct AnswerDropper {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Answers still to drop.
    to_drop: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl AnswerDropper {
    /// Forwards to `target` (`host:port`).
    pub fn start(target: &str) -> AnswerDropper {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let to_drop = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let target = target.to_owned();
        {
            let (to_drop, dropped) = (to_drop.clone(), dropped.clone());
            std::thread::spawn(move || {
                for client in listener.incoming().flatten() {
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    let drop_this = to_drop
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let dropped = dropped.clone();
                    std::thread::spawn(move || relay(client, server, drop_this, &dropped));
                }
            });
        }
        AnswerDropper {
            endpoint: format!("http://127.0.0.1:{port}"),
            to_drop,
            dropped,
        }
    }

    /// Drops the answers of the next `n` connections.
    pub fn drop_next(&self, n: u64) {
        self.to_drop.store(n, Ordering::SeqCst);
    }

    /// Answers dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::SeqCst)
    }
}

fn relay(client: TcpStream, server: TcpStream, drop_answer: bool, dropped: &AtomicU64) {
    let (Ok(mut client_read), Ok(mut server_write)) = (client.try_clone(), server.try_clone())
    else {
        return;
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        while let Ok(n) = client_read.read(&mut buf) {
            if n == 0 || server_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let (mut server_read, mut client_write) = (server, client);
    let _ = server_read.set_read_timeout(Some(Duration::from_secs(60)));
    let mut buf = [0u8; 16 << 10];
    if drop_answer {
        // The server's answer arrives (the request was taken), and goes
        // nowhere: the client's connection is closed unanswered.
        if matches!(server_read.read(&mut buf), Ok(n) if n > 0) {
            dropped.fetch_add(1, Ordering::SeqCst);
        }
        let _ = client_write.shutdown(Shutdown::Both);
        let _ = server_read.shutdown(Shutdown::Both);
        return;
    }
    while let Ok(n) = server_read.read(&mut buf) {
        if n == 0 || client_write.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client_write.shutdown(Shutdown::Both);
}
