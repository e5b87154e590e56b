//! `DirWatcher`: inotify on the folders discovery walks, each watched on
//! its own (never recursively: a task's sandbox may hold any number of
//! files), read inside the shipper's loop.
//!
//! Two kinds of events matter:
//! - A write to a live `stdout` or `stderr` names its file in
//!   [`DirWatcher::take_written`] (only process run folders report writes:
//!   a task writes what it likes in its sandbox; and `[[files]]` folders,
//!   where any file may be a stream): the loop reads just those files, so
//!   a line reaches the server in milliseconds and a quiet file costs
//!   nothing until it is written.
//! - A name created, removed or renamed names what changed in
//!   [`DirWatcher::take_changes`]: the loop walks just that subtree and
//!   looks at the streams there (a rotation, a deletion). Discovery itself
//!   decides what is there. An overflowed queue (events lost) asks for a
//!   full walk, and a slow full walk catches anything else.
//!
//! The `inotify` crate is used directly rather than through `notify`:
//! `notify` watches with a fixed mask that includes `IN_OPEN`, so every walk
//! of ten thousand folders raised ten thousand events of its own, and it
//! keeps two more maps of every watched path on a thread of its own.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cblogs_core::Stream;
use futures_util::{FutureExt, StreamExt};
use inotify::{EventMask, EventOwned, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
use rustc_hash::FxHashSet;

use cblogs_core::sandbox;

use crate::discovery::is_interesting;

/// What a watched folder reports: names created, removed and renamed in
/// it, and its own removal or move. Not `IN_OPEN` or `IN_CLOSE_*`: a walk
/// opens folders, and a write's `IN_MODIFY` is enough.
const NAMES: WatchMask = WatchMask::CREATE
    .union(WatchMask::DELETE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE_SELF)
    .union(WatchMask::MOVE_SELF)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::EXCL_UNLINK);

/// A process run folder reports writes to its files too.
const NAMES_AND_WRITES: WatchMask = NAMES.union(WatchMask::MODIFY);

/// Bytes read from inotify at a time (each event is 16 bytes and a name).
const EVENT_BUFFER: usize = 64 << 10;

/// Events handled in one go before the loop gets its turn again.
const EVENTS_PER_TURN: usize = 4096;

/// Past this many paths waiting, a full walk is cheaper than walking each.
const MAX_CHANGED_PATHS: usize = 4096;

/// What changed: the paths events named, or `lost` (walk everything).
#[derive(Debug, Default)]
pub struct Changes {
    pub paths: Vec<PathBuf>,
    pub lost: bool,
}

struct Watched {
    wd: WatchDescriptor,
    /// The last full walk that passed by it (see [`DirWatcher::begin_walk`]).
    walk: u64,
    /// A folder of `[[files]]`: every name in it may be a stream (writes
    /// and names are reported whatever the name).
    any_name: bool,
}

pub struct DirWatcher {
    events: Option<EventStream<Vec<u8>>>,
    watches: Option<Watches>,
    by_wd: HashMap<WatchDescriptor, Arc<Path>>,
    by_dir: HashMap<Arc<Path>, Watched>,
    /// Full walks begun.
    walks: u64,
    /// Folders that could not be watched (past the inotify watch limit, not
    /// allowed) since the last full walk began.
    unwatched: usize,
    /// Whether the watch limit was already reported.
    warned_limit: bool,
    written: FxHashSet<PathBuf>,
    changes: Changes,
}

impl DirWatcher {
    /// A watcher; if inotify is not available, the periodic rescan alone
    /// finds new files and the poll reads them (and the log says so).
    #[allow(clippy::new_without_default)] // registers with the runtime: not a mere default
    pub fn new() -> DirWatcher {
        let events = Inotify::init().and_then(|i| i.into_event_stream(vec![0u8; EVENT_BUFFER]));
        let events = match events {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!("inotify is not available ({e}); new files are found by the periodic rescan and read by the poll only");
                None
            }
        };
        DirWatcher {
            watches: events.as_ref().map(EventStream::watches),
            events,
            by_wd: HashMap::new(),
            by_dir: HashMap::new(),
            walks: 0,
            unwatched: 0,
            warned_limit: false,
            written: FxHashSet::default(),
            changes: Changes::default(),
        }
    }

    /// Waits for events (for ever without inotify) and takes in what is
    /// there. Cancel-safe: nothing is taken until an event is ready.
    pub async fn next(&mut self) {
        let Some(events) = self.events.as_mut() else {
            return std::future::pending().await;
        };
        let first = events.next().await;
        self.take_in(first);
        self.take_ready();
    }

    /// Takes in the events ready now, without waiting (up to a turn's worth).
    pub fn take_ready(&mut self) {
        for _ in 0..EVENTS_PER_TURN {
            let Some(ready) = self.events.as_mut().and_then(|e| e.next().now_or_never()) else {
                return;
            };
            self.take_in(ready);
        }
    }

    fn take_in(&mut self, ev: Option<io::Result<EventOwned>>) {
        match ev {
            Some(Ok(ev)) => self.handle(ev),
            Some(Err(e)) => {
                tracing::warn!("reading inotify events failed ({e}): walking the work dir again");
                self.lost();
            }
            None => {}
        }
    }

    fn handle(&mut self, ev: EventOwned) {
        if ev.mask.contains(EventMask::Q_OVERFLOW) {
            self.lost();
            return;
        }
        let Some(dir) = self.by_wd.get(&ev.wd).cloned() else {
            return;
        };
        if ev.mask.contains(EventMask::IGNORED) {
            // The kernel dropped the watch: the folder is gone.
            self.forget(&ev.wd, &dir);
            return;
        }
        if ev
            .mask
            .intersects(EventMask::DELETE_SELF | EventMask::MOVE_SELF)
        {
            // Forgotten at once: a folder moved away keeps its watch (under
            // its new name), and one deleted while something holds it open
            // reports `IN_IGNORED` late; a new folder at the same path must
            // be watched anew.
            self.forget(&ev.wd, &dir);
            if let Some(w) = self.watches.as_mut() {
                let _ = w.remove(ev.wd);
            }
            self.changed(dir.to_path_buf());
            return;
        }
        let Some(name) = ev.name else { return };
        // Looked up only past the sandbox's own names: a write to a
        // sandbox stream (the busy path) costs no path hashing more.
        let any_name = || self.by_dir.get(&dir).is_some_and(|w| w.any_name);
        if ev.mask.contains(EventMask::MODIFY) {
            if name == Stream::Stdout.as_str() || name == Stream::Stderr.as_str() || any_name() {
                self.written.insert(dir.join(name));
            }
            return;
        }
        // A folder of any name may be a process, a run or a (legacy) task
        // folder; of files, only our own names matter.
        let folder = ev.mask.contains(EventMask::ISDIR);
        if (folder && name != sandbox::LATEST_LINK)
            || is_interesting(&name.to_string_lossy())
            || any_name()
        {
            self.changed(dir.join(name));
        }
    }

    fn forget(&mut self, wd: &WatchDescriptor, dir: &Arc<Path>) {
        self.by_wd.remove(wd);
        if self.by_dir.get(dir).is_some_and(|w| &w.wd == wd) {
            self.by_dir.remove(dir);
        }
    }

    fn changed(&mut self, path: PathBuf) {
        if self.changes.lost {
            return;
        }
        if self.changes.paths.len() >= MAX_CHANGED_PATHS {
            self.lost();
            return;
        }
        self.changes.paths.push(path);
    }

    fn lost(&mut self) {
        self.changes.lost = true;
        self.changes.paths = Vec::new();
    }

    /// The live files written since the last call, each once.
    pub fn take_written(&mut self) -> Vec<OsString> {
        self.written.drain().map(PathBuf::into_os_string).collect()
    }

    pub fn has_written(&self) -> bool {
        !self.written.is_empty()
    }

    /// What changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    pub fn has_changes(&self) -> bool {
        self.changes.lost || !self.changes.paths.is_empty()
    }

    /// A full walk begins: folders it does not pass by are unwatched at
    /// [`DirWatcher::end_walk`].
    pub fn begin_walk(&mut self) {
        self.walks += 1;
        self.unwatched = 0;
    }

    /// A full walk ended: folders it did not pass by are no longer watched.
    pub fn end_walk(&mut self) {
        let walk = self.walks;
        let mut stale = Vec::new();
        self.by_dir.retain(|_, w| {
            let keep = w.walk == walk;
            if !keep {
                stale.push(w.wd.clone());
            }
            keep
        });
        for wd in stale {
            self.by_wd.remove(&wd);
            if let Some(w) = self.watches.as_mut() {
                // Fails harmlessly when the folder is gone (the kernel dropped the watch).
                let _ = w.remove(wd);
            }
        }
    }

    /// Watches `dir` (if not yet), for writes to its files too when
    /// `writes`. Called by a walk before it lists `dir`, so nothing created
    /// there after the listing goes unreported.
    pub fn watch(&mut self, dir: &Path, writes: bool) {
        self.watch_as(dir, writes, false);
    }

    /// Watches a folder of `[[files]]`: writes and names of any file in it.
    pub fn watch_files(&mut self, dir: &Path) {
        self.watch_as(dir, true, true);
    }

    fn watch_as(&mut self, dir: &Path, writes: bool, any_name: bool) {
        let walk = self.walks;
        if let Some(w) = self.by_dir.get_mut(dir) {
            w.walk = walk;
            w.any_name |= any_name;
            return;
        }
        let Some(watches) = self.watches.as_mut() else {
            return;
        };
        let mask = if writes { NAMES_AND_WRITES } else { NAMES };
        match watches.add(dir, mask) {
            Ok(wd) => {
                let dir: Arc<Path> = Arc::from(dir);
                // The same folder under another name has the same descriptor.
                if let Some(old) = self.by_wd.insert(wd.clone(), dir.clone()) {
                    self.by_dir.remove(&old);
                }
                self.by_dir.insert(dir, Watched { wd, walk, any_name });
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                self.unwatched += 1;
                if !self.warned_limit {
                    self.warned_limit = true;
                    tracing::warn!(
                        watched = self.by_dir.len(),
                        "the inotify watch limit (fs.inotify.max_user_watches) is reached: \
                         folders past it are found by the periodic rescan and read by the poll"
                    );
                }
            }
            // Not there (yet, or any more): its parent's watch reports its
            // creation (the caller sees to a root, which has none).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                self.unwatched += 1;
                tracing::debug!(dir = %dir.display(), "cannot watch: {e}");
            }
        }
    }

    /// Whether inotify watches every folder discovery found: then events
    /// say what changed, and walks and polls can be rare.
    pub fn complete(&self) -> bool {
        self.events.is_some() && self.unwatched == 0
    }

    /// A folder that must be watched is not (a root not there yet): walks
    /// stay frequent until a full walk watches it.
    pub fn missed(&mut self) {
        self.unwatched += 1;
    }

    pub fn is_watched(&self, dir: &Path) -> bool {
        self.by_dir.contains_key(dir)
    }

    pub fn watched(&self) -> usize {
        self.by_dir.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;
    use std::time::Duration;

    /// Waits (up to 5 s) until `done` holds after taking in events.
    async fn until(w: &mut DirWatcher, done: impl Fn(&DirWatcher) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !done(w) {
            tokio::select! {
                () = w.next() => {}
                () = tokio::time::sleep_until(deadline) => panic!("no such event within 5 s"),
            }
        }
    }

    #[tokio::test]
    async fn writes_name_their_file_and_changes_name_their_path() {
        let tmp = tempfile::tempdir().unwrap();
        let run = tmp.path().join("0");
        fs::create_dir(&run).unwrap();
        let mut w = DirWatcher::new();
        w.begin_walk();
        w.watch(&run, true);
        w.watch(&tmp.path().join("not-there"), false);
        w.end_walk();
        assert!(w.complete() && w.is_watched(&run) && w.watched() == 1);

        // A new stream file is a change; a write to it names it.
        let mut f = fs::File::create(run.join("stdout")).unwrap();
        until(&mut w, |w| w.has_changes()).await;
        assert_eq!(w.take_changes().paths, [run.join("stdout")]);
        f.write_all(b"a line\n").unwrap();
        until(&mut w, DirWatcher::has_written).await;
        assert_eq!(w.take_written(), [run.join("stdout").into_os_string()]);
        // Files that are not streams are neither writes nor changes.
        fs::write(run.join("notes.txt"), b"x").unwrap();
        fs::write(run.join("stderr"), b"x\n").unwrap();
        until(&mut w, DirWatcher::has_written).await;
        assert_eq!(w.take_written(), [run.join("stderr").into_os_string()]);
        let changes = w.take_changes();
        assert_eq!(changes.paths, [run.join("stderr")], "{changes:?}");

        // The folder's removal is a change to it, and its watch is dropped.
        drop(f);
        fs::remove_dir_all(&run).unwrap();
        until(&mut w, |w| w.watched() == 0).await;
        let changes = w.take_changes();
        assert!(changes.paths.contains(&run), "{changes:?}");

        // A folder watched for names only reports no writes; a new folder
        // is a change whatever its name (a process may have a dot in it).
        let sandbox = tmp.path().join("sandbox");
        fs::create_dir(&sandbox).unwrap();
        w.watch(&sandbox, false);
        fs::write(sandbox.join("stdout"), b"the executor's own\n").unwrap();
        fs::create_dir(sandbox.join("my.proc")).unwrap();
        let dotted = sandbox.join("my.proc");
        until(&mut w, |w| w.changes.paths.contains(&dotted)).await;
        assert!(!w.has_written());
        w.take_changes();

        // A full walk that no longer passes by a folder unwatches it.
        fs::create_dir(&run).unwrap();
        w.begin_walk();
        w.watch(&run, true);
        w.end_walk();
        assert!(w.is_watched(&run));
        w.begin_walk();
        w.end_walk();
        assert!(!w.is_watched(&run) && w.watched() == 0);
    }
}
