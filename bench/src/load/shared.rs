//! What the load run's reader threads (tails and searchers) share with
//! the run: the server's address, the clock stamps count from, the stop
//! flag, the corpus layout, and the errors (all counted, the first few kept).

use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Mutex;
use std::time::Instant;

use crate::corpus::FileSpec;

/// Error messages kept for the report (all are counted).
const KEEP_ERRORS: usize = 20;

pub struct Shared {
    pub url: String,
    pub epoch: Instant,
    pub stopping: AtomicBool,
    pub searches_done: AtomicUsize,
    /// (count, the first [`KEEP_ERRORS`] messages).
    pub errors: Mutex<(usize, Vec<String>)>,
    pub specs: Vec<FileSpec>,
}

impl Shared {
    pub fn new(url: &str, epoch: Instant, specs: &[FileSpec]) -> Shared {
        Shared {
            url: url.to_owned(),
            epoch,
            stopping: AtomicBool::new(false),
            searches_done: AtomicUsize::new(0),
            errors: Mutex::new((0, Vec::new())),
            specs: specs.to_vec(),
        }
    }

    /// Counts an unexpected event (and keeps and prints the first few).
    pub fn error(&self, msg: String) {
        let mut e = self.errors.lock().expect("errors lock");
        e.0 += 1;
        if e.1.len() < KEEP_ERRORS {
            eprintln!("  error: {msg}");
            e.1.push(msg);
        }
    }

    /// Nanoseconds since the run's epoch (the stamps' clock).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}
