//! `DirWatcher`: inotify (through `notify`) on the folders discovery walks,
//! each watched on its own (never recursively: a task's sandbox may hold
//! any number of files). An event only says "walk again soon": discovery
//! itself decides what is there, so a lost or merged event costs at most
//! one rescan interval.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::event::{EventKind, ModifyKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::Notify;

use crate::discovery::is_interesting;

pub struct DirWatcher {
    watcher: Option<RecommendedWatcher>,
    watched: HashSet<PathBuf>,
    /// Woken when something worth a rescan happened.
    pub changed: Arc<Notify>,
}

impl DirWatcher {
    /// A watcher; if inotify is not available, the periodic rescan alone
    /// finds new files (and the log says so).
    #[allow(clippy::new_without_default)] // starts a watcher thread: not a mere default
    pub fn new() -> DirWatcher {
        let changed = Arc::new(Notify::new());
        let wake = changed.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let Ok(event) = res else {
                // An overflowed queue: events were lost, walk again.
                wake.notify_one();
                return;
            };
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
                Err(e) => tracing::debug!(dir = %d.display(), "cannot watch: {e}"),
            }
        }
    }

    pub fn watched(&self) -> usize {
        self.watched.len()
    }
}
