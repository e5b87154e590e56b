//! Reading and verifying candidate blocks on every core, handing the
//! results on in one fixed order.
//!
//! Blocks are worked on in the order of their first line's time, so the
//! merger can send a line as soon as every block that could hold an
//! earlier one is done. Workers take the next block from a shared counter
//! but stay within [`WINDOW`] blocks of the one the merger waits for: a
//! slow block cannot make the others pile up in memory.
//!
//! Blocks only a remote store has are read by more threads than there
//! are cores ([`REMOTE_READERS`]): each read is mostly a wait for the
//! store, and a cold search is as slow as its requests one after another.
//! Once the disk cache has them, reading is work for the cores again.
//!
//! However many searches run, at most [`SearchWorkers`] blocks are worked
//! on at once (one per core by default), and the whole search runs at a
//! lower priority than ingest and live tails (`api/search.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::blocks::SourceBlocks;
use super::workers::SearchWorkers;

/// How far ahead of the merger workers may go, in blocks (twice the
/// workers while they wait on a remote store).
const WINDOW: usize = 16;

/// Workers when some blocks are only in a remote store: requests in
/// flight at once. Measured with `cblogs-bench objstore` (cold needle grep).
const REMOTE_READERS: usize = 16;

/// One candidate block to read: `sources[source].blocks[block]`.
#[derive(Debug, Clone, Copy)]
pub struct Task {
    pub source: usize,
    pub block: usize,
    /// The block's first line time, raised to that of any earlier block
    /// of its source: tasks of one source stay in offset order even if
    /// its clock went back.
    pub t_min: i64,
    /// Reading it is a request to a remote store.
    pub request: bool,
}

/// The candidate blocks of every source, in the order they are read.
pub fn tasks(sources: &[SourceBlocks]) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (si, s) in sources.iter().enumerate() {
        let mut floor = i64::MIN;
        for (bi, b) in s.blocks.iter().enumerate() {
            floor = floor.max(b.t_min);
            if b.candidate {
                tasks.push(Task {
                    source: si,
                    block: bi,
                    t_min: floor,
                    request: b.data.needs_request(),
                });
            }
        }
    }
    tasks.sort_by_key(|t| (t.t_min, t.source, t.block));
    tasks
}

/// Where the consumer is, as the workers see it. `stop` lives here too:
/// set under the same lock a worker checks it under before it waits, so
/// the wake-up that follows cannot fall between the check and the wait.
struct Window {
    wanted: usize,
    sleepers: usize,
    stop: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every task was consumed.
    Done,
    /// The consumer said stop.
    Stopped,
    /// The deadline passed first.
    Deadline,
}

/// Runs `work` on every task on all cores and gives each result to
/// `consume` in task order; `consume` returns false to stop early. Each
/// block worked on holds one of `workers`' permits (a remote read does
/// not: it is mostly a wait).
pub fn run<T: Send>(
    tasks: &[Task],
    deadline: Instant,
    workers: &SearchWorkers,
    work: impl Fn(&Task) -> T + Sync,
    mut consume: impl FnMut(usize, T) -> bool,
) -> Outcome {
    if tasks.is_empty() {
        return Outcome::Done;
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let requests = tasks.iter().filter(|t| t.request).count();
    let threads = cores.max(requests.min(REMOTE_READERS)).min(tasks.len());
    let window = if requests > 0 {
        WINDOW.max(2 * threads)
    } else {
        WINDOW
    };
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // The index of the task the consumer waits for, and how many workers
    // wait for it to move (so that it wakes them only then).
    let wanted = Mutex::new(Window {
        wanted: 0,
        sleepers: 0,
        stop: false,
    });
    let moved = Condvar::new();
    let (tx, rx) = std::sync::mpsc::channel::<(usize, T)>();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (next, stop, wanted, moved, work) = (&next, &stop, &wanted, &moved, &work);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= tasks.len() || stop.load(Ordering::Relaxed) {
                    return;
                }
                {
                    let mut w = wanted.lock().unwrap_or_else(|e| e.into_inner());
                    while i >= w.wanted + window && !w.stop {
                        w.sleepers += 1;
                        w = moved.wait(w).unwrap_or_else(|e| e.into_inner());
                        w.sleepers -= 1;
                    }
                }
                let task = &tasks[i];
                let permit = (!task.request).then(|| workers.acquire());
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let result = work(task);
                drop(permit);
                if tx.send((i, result)).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut outcome = Outcome::Done;
        let mut pending = BTreeMap::new();
        let mut want = 0usize;
        'receive: loop {
            let timeout = deadline.saturating_duration_since(Instant::now());
            let (i, result) = match rx.recv_timeout(timeout) {
                Ok(r) => r,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    outcome = Outcome::Deadline;
                    break;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            };
            pending.insert(i, result);
            while let Some(result) = pending.remove(&want) {
                let go_on = consume(want, result);
                want += 1;
                {
                    let mut w = wanted.lock().unwrap_or_else(|e| e.into_inner());
                    w.wanted = want;
                    if w.sleepers > 0 {
                        moved.notify_all();
                    }
                }
                if !go_on {
                    outcome = Outcome::Stopped;
                    break 'receive;
                }
                if Instant::now() >= deadline && want < tasks.len() {
                    outcome = Outcome::Deadline;
                    break 'receive;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        wanted.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        moved.notify_all();
        drop(rx);
        outcome
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(n: usize) -> Vec<Task> {
        (0..n)
            .map(|i| Task {
                source: 0,
                block: i,
                t_min: i as i64,
                request: false,
            })
            .collect()
    }

    #[test]
    fn results_come_in_task_order() {
        let t = tasks(500);
        let mut seen = Vec::new();
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let outcome = run(
            &t,
            far,
            &SearchWorkers::new(0),
            |task| {
                // Uneven work, so workers finish out of order.
                let spin = (task.block * 7919) % 2000;
                (0..spin).fold(0u64, |a, b| a.wrapping_add(b as u64))
                    ^ task.block as u64
                    ^ (0..spin).fold(0u64, |a, b| a.wrapping_add(b as u64))
            },
            |i, r| {
                seen.push((i, r));
                true
            },
        );
        assert_eq!(outcome, Outcome::Done);
        assert_eq!(seen.len(), 500);
        assert!(seen
            .iter()
            .enumerate()
            .all(|(k, (i, r))| k == *i && *r == k as u64));
    }

    #[test]
    fn stops_when_asked_and_at_the_deadline() {
        let t = tasks(10_000);
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let mut n = 0;
        assert_eq!(
            run(
                &t,
                far,
                &SearchWorkers::new(0),
                |t| t.block,
                |_, _| {
                    n += 1;
                    n < 10
                }
            ),
            Outcome::Stopped
        );
        assert_eq!(n, 10);
        let past = Instant::now();
        let outcome = run(
            &t,
            past,
            &SearchWorkers::new(0),
            |t| {
                std::thread::sleep(std::time::Duration::from_millis(1));
                t.block
            },
            |_, _| true,
        );
        assert_eq!(outcome, Outcome::Deadline);
    }

    #[test]
    fn searches_side_by_side_share_the_permits() {
        let t = tasks(300);
        let workers = SearchWorkers::new(1);
        let at_once = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let work = |task: &Task| {
            let now = at_once.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::yield_now();
            at_once.fetch_sub(1, Ordering::SeqCst);
            task.block
        };
        let outcomes: Vec<(Outcome, usize)> = std::thread::scope(|s| {
            let searches: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut n = 0;
                        let outcome = run(&t, far, &workers, work, |i, b| {
                            n += usize::from(i == b);
                            true
                        });
                        (outcome, n)
                    })
                })
                .collect();
            searches
                .into_iter()
                .map(|h| h.join().expect("search"))
                .collect()
        });
        assert!(outcomes.iter().all(|o| *o == (Outcome::Done, 300)));
        assert_eq!(most.load(Ordering::SeqCst), 1, "one block at a time");
    }

    #[test]
    fn remote_blocks_are_read_by_many_workers_at_once_and_still_in_order() {
        let t: Vec<Task> = tasks(200)
            .into_iter()
            .map(|t| Task { request: true, ..t })
            .collect();
        let at_once = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let far = Instant::now() + std::time::Duration::from_secs(60);
        let mut seen = Vec::new();
        let outcome = run(
            &t,
            far,
            &SearchWorkers::new(0),
            |task| {
                // A request's wait: the others run meanwhile.
                let now = at_once.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(2));
                at_once.fetch_sub(1, Ordering::SeqCst);
                task.block
            },
            |i, b| {
                seen.push((i, b));
                true
            },
        );
        assert_eq!(outcome, Outcome::Done);
        assert!(seen
            .iter()
            .enumerate()
            .all(|(k, (i, b))| k == *i && *b == k));
        assert_eq!(seen.len(), 200);
        // More than the cores of any machine this runs on would allow.
        assert!(most.load(Ordering::SeqCst) > 4, "{most:?} at once");
    }
}
