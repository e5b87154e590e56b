//! How long anything may take, and the one way tests wait: a poll with a
//! deadline that fails naming what it waited for.

use std::time::{Duration, Instant};

/// How long anything may take before a test gives up.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `f` (every 20 ms) until it returns `Some`, or panics with `what`
/// at the deadline.
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

/// Sets its flag when dropped: a test's helper thread looping until the
/// flag is set also ends when the test panics, so a failing test reports
/// its panic instead of waiting forever in `std::thread::scope`.
pub struct SetOnDrop<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
