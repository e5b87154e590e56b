//! `SlowProxy`: a TCP proxy on loopback that delays every chunk it
//! forwards, each way: a slow object store (or a slow network to it)
//! in front of a real one, for the fault tests.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct SlowProxy {
    /// `http://127.0.0.1:<port>`: where clients connect instead.
    pub endpoint: String,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SlowProxy {
    /// Forwards connections to `target` (`host:port`), each chunk `delay` late.
    pub fn start(target: &str, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let stop = Arc::new(AtomicBool::new(false));
        let target = target.to_owned();
        {
            let (delay_ms, stop) = (delay_ms.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(&target) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    for (from, to) in [
                        (client.try_clone(), server.try_clone()),
                        (server.try_clone(), client.try_clone()),
                    ] {
                        if let (Ok(from), Ok(to)) = (from, to) {
                            let delay_ms = delay_ms.clone();
                            std::thread::spawn(move || pipe(from, to, &delay_ms));
                        }
                    }
                }
            });
        }
        SlowProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            delay_ms,
            stop,
        }
    }

    /// Changes the delay of every chunk from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// Copies `from` to `to`, each chunk after the delay, until either end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream, delay_ms: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The fault this proxy injects: not a wait for an event.
        std::thread::sleep(Duration::from_millis(delay_ms.load(Ordering::SeqCst)));
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
