//! One test at a time, for the test files whose tests measure time or
//! memory, or each run several busy processes on a machine's few cores.
//! Each test binary has its own lock (a test file is its own process).

use std::sync::{Mutex, MutexGuard};

/// Held for a test's whole body: the file's other tests wait. A test that
/// panicked while holding it does not poison it for the others.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
