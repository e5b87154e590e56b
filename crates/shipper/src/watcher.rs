//! `DirWatcher`: inotify (through `notify`) on the folders discovery walks,
//! each watched on its own (never recursively: a task's sandbox may hold
//! any number of files). A structural event only says "walk again soon":
//! discovery itself decides what is there, so a lost or merged event costs
//! at most one rescan interval.
//!
//! The run folders (`.logs/<process>/<run>/`) are watched too, so a write
//! to a live `stdout` or `stderr` names its file in [`Written`] and wakes
//! the loop, which reads just those files at once: a line reaches the
//! server in milliseconds instead of waiting for the next poll. The poll
//! stays as the fallback for lost events and filesystems without inotify.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use cblogs_core::Stream;
use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use rustc_hash::FxHashSet;
use tokio::sync::Notify;

use crate::discovery::is_interesting;

/// Live log files written since the loop last looked. A busy agent writes
/// thousands of times a second, so this is kept cheap: paths as raw
/// strings in an Fx-hashed set (hashing a `Path` parses its components).
#[derive(Default)]
pub struct Written {
    paths: Mutex<FxHashSet<OsString>>,
    /// Woken on the first write after a [`Written::take`].
    pub wake: Notify,
}

impl Written {
    fn add(&self, path: &Path) {
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        if paths.is_empty() {
            self.wake.notify_one();
        }
        if !paths.contains(path.as_os_str()) {
            paths.insert(path.as_os_str().to_owned());
        }
    }

    /// The files written since the last call, each once.
    pub fn take(&self) -> Vec<OsString> {
        let mut paths = self.paths.lock().unwrap_or_else(PoisonError::into_inner);
        paths.drain().collect()
    }
}

pub struct DirWatcher {
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Woken when something worth a rescan happened.
    pub changed: Arc<Notify>,
    /// Live log files just written.
    pub written: Arc<Written>,
    /// Whether the watch limit was already reported.
    warned_limit: bool,
}

impl DirWatcher {
    /// A watcher; if inotify is not available, the periodic rescan alone
    /// finds new files (and the log says so).
    #[allow(clippy::new_without_default)] // starts a watcher thread: not a mere default
    pub fn new() -> DirWatcher {
        let changed = Arc::new(Notify::new());
        let written = Arc::new(Written::default());
        let wake = changed.clone();
        let writes = written.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else {
                // An overflowed queue: events were lost, walk again.
                wake.notify_one();
                return;
            };
            if matches!(
                event.kind,
                EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
            ) {
                for p in &event.paths {
                    if p.file_name().is_some_and(|n| {
                        n == Stream::Stdout.as_str() || n == Stream::Stderr.as_str()
                    }) {
                        writes.add(p);
                    }
                }
                return;
            }
            let structural = matches!(
                event.kind,
                EventKind::Create(_)
                    | EventKind::Remove(_)
                    | EventKind::Modify(ModifyKind::Name(_))
            ) || event.need_rescan();
            let named = event.paths.iter().any(|p| {
                p.file_name()
                    .is_some_and(|n| is_interesting(&n.to_string_lossy()))
            });
            if event.need_rescan() || (structural && named) {
                wake.notify_one();
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("inotify is not available ({e}); new files are found by the periodic rescan only");
                None
            }
        };
        DirWatcher {
            watcher,
            watched: HashSet::new(),
            changed,
            written,
            warned_limit: false,
        }
    }

    /// Watches exactly `dirs` from now on.
    pub fn set(&mut self, dirs: &[PathBuf]) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        let wanted: HashSet<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        self.watched.retain(|d| {
            if wanted.contains(d.as_path()) {
                return true;
            }
            // Fails harmlessly when the folder is gone (the kernel dropped the watch).
            let _ = w.unwatch(d);
            false
        });
        for d in dirs {
            if self.watched.contains(d) {
                continue;
            }
            match w.watch(d, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d.clone());
                }
                Err(e) if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) => {
                    if !self.warned_limit {
                        self.warned_limit = true;
                        tracing::warn!(
                            watched = self.watched.len(),
                            "the inotify watch limit (fs.inotify.max_user_watches) is reached: \
                             folders past it are found by the periodic rescan and read by the poll"
                        );
                    }
                }
                Err(e) => tracing::debug!(dir = %d.display(), "cannot watch: {e}"),
            }
        }
    }

    pub fn watched(&self) -> usize {
        self.watched.len()
    }
}
