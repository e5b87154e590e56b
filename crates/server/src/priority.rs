//! Thread priorities. Work nobody waits on line by line (a search's
//! scans, a merge) runs below the work someone does wait on (ingest, the
//! WAL's fsync, live tails), so that when every core is busy the latter
//! get them first. On Linux the nice value is per thread and a thread
//! inherits its creator's, so a search's worker threads follow its own.

/// Lowers the calling thread's priority to `nice` (0-19; higher is lower).
/// A thread cannot raise its priority again without privileges, so only
/// threads that end with their task are lowered, never a pool's.
pub fn lower_this_thread(nice: i32) {
    // SAFETY: setpriority with PRIO_PROCESS and who = 0 changes only the
    // calling thread on Linux; it has no memory effects. A failure (not
    // permitted) leaves the priority as it was, which is harmless.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, nice);
    }
}
