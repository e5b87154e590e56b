//! `SlowProxy`: a TCP proxy on loopback that delays every chunk it
//! forwards, each way: a slow object store (or a slow network to it)
//! in front of a real one, for the fault tests. Paused, it holds every
//! chunk until resumed, and counts those it holds: a request caught in
//! the middle, while the test changes what is behind it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct SlowProxy {
    /// `http://127.0.0.1:<port>`: where clients connect instead.
    pub endpoint: String,
    knobs: Arc<Knobs>,
    stop: Arc<AtomicBool>,
}

/// What the test turns while the proxy runs.
#[derive(Default)]
struct Knobs {
    delay_ms: AtomicU64,
    paused: AtomicBool,
    /// Chunks that arrived while paused.
    held: AtomicU64,
}

impl SlowProxy {
    /// Forwards connections to `target` (`host:port`), each chunk `delay` late.
    pub fn start(target: &str, delay: Duration) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let knobs = Arc::new(Knobs::default());
        knobs
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
        let stop = Arc::new(AtomicBool::new(false));
        let target = target.to_owned();
        {
            let (knobs, stop) = (knobs.clone(), stop.clone());
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
                            let knobs = knobs.clone();
                            std::thread::spawn(move || pipe(from, to, &knobs));
                        }
                    }
                }
            });
        }
        SlowProxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            knobs,
            stop,
        }
    }

    /// Changes the delay of every chunk from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.knobs
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Holds every chunk from now on, until [`SlowProxy::resume`].
    pub fn pause(&self) {
        self.knobs.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.knobs.paused.store(false, Ordering::SeqCst);
    }

    /// How many chunks arrived while paused.
    pub fn held(&self) -> u64 {
        self.knobs.held.load(Ordering::SeqCst)
    }
}

impl Drop for SlowProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Held chunks go, so that no pipe waits for ever.
        self.knobs.paused.store(false, Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(self.endpoint.trim_start_matches("http://"));
    }
}

/// Copies `from` to `to`, each chunk after the delay (and, paused, once
/// resumed), until either end closes.
fn pipe(mut from: TcpStream, mut to: TcpStream, knobs: &Knobs) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The faults this proxy injects: not waits for an event.
        if knobs.paused.load(Ordering::SeqCst) {
            knobs.held.fetch_add(1, Ordering::SeqCst);
            while knobs.paused.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        std::thread::sleep(Duration::from_millis(knobs.delay_ms.load(Ordering::SeqCst)));
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
