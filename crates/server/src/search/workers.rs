//! The cores searches may use, across all of them ([`SearchWorkers`]).
//!
//! Each search reads its blocks on a few threads of its own
//! ([`super::pipeline`]); without a common bound, eight searches at once
//! would be sixteen threads verifying blocks on two cores, and the live
//! tails' and ingest's few threads would get a small share of the CPU
//! however low the searches' priority. A worker holds a permit only while
//! it works on one block (not while it waits for the merger's window or
//! for a remote store), so a permit is never held across a wait for
//! another search and the bound cannot deadlock.

use std::sync::{Condvar, Mutex};

/// At most `total` blocks being verified at once, whatever the searches.
pub struct SearchWorkers {
    free: Mutex<usize>,
    freed: Condvar,
    total: usize,
}

/// One of the permits; given back when dropped.
pub struct WorkerPermit<'a> {
    workers: &'a SearchWorkers,
}

impl SearchWorkers {
    /// `total` permits; 0 means one per core.
    pub fn new(total: usize) -> SearchWorkers {
        let total = if total == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            total
        };
        SearchWorkers {
            free: Mutex::new(total),
            freed: Condvar::new(),
            total,
        }
    }

    /// Waits for a permit.
    pub fn acquire(&self) -> WorkerPermit<'_> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        WorkerPermit { workers: self }
    }

    pub fn total(&self) -> usize {
        self.total
    }
}

impl Drop for WorkerPermit<'_> {
    fn drop(&mut self) {
        let mut free = self.workers.free.lock().unwrap_or_else(|e| e.into_inner());
        *free += 1;
        self.workers.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn never_more_at_once_than_the_permits() {
        let workers = SearchWorkers::new(2);
        let busy = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let _p = workers.acquire();
                        let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::yield_now();
                        busy.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 2, "more than 2 at once");
        assert_eq!(*workers.free.lock().unwrap(), 2, "every permit came back");
    }

    #[test]
    fn zero_means_one_per_core() {
        assert!(SearchWorkers::new(0).total() >= 1);
    }
}
