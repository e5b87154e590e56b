//! Files outside sandboxes (`[[files]]` in shipper.toml): the Mesos
//! agent's own log, the Aurora scheduler's, any file a glob names, each
//! shown under the job its entry gives.
//!
//! Each file the glob matches is a stream, tailed as a sandbox's is
//! (`tailer.rs`): held by descriptor, followed across rotation (its
//! rotated files are `<name>.1`, `<name>.2`, … as logrotate and Thermos
//! name them), checkpointed by its path, each line once. Names that are a
//! rotation (`x.log.1`) or compressed (`.gz`, `.xz`, `.bz2`, `.zst`) are never
//! streams of their own. The folders are watched, so a new file is found
//! when it appears.

use std::fs;
use std::path::{Path, PathBuf};

use cblogs_core::{JobKey, Source};
use globset::{Glob, GlobMatcher};

use crate::config::FilesEntry;
use crate::discovery::{FoundStream, Scan, Visit};

/// Suffixes of files that are never live (compressed rotations).
const COMPRESSED: [&str; 4] = [".gz", ".xz", ".bz2", ".zst"];

/// One `[[files]]` entry, checked.
pub struct FilesWatch {
    dir: PathBuf,
    name: GlobMatcher,
    /// The source of its files, but for the task id and process.
    template: Source,
    /// The entry's process name; empty: each file's name.
    process: String,
}

impl FilesWatch {
    pub fn new(entry: &FilesEntry, cluster: &str, host: &str) -> Result<FilesWatch, String> {
        let bad = |why: &str| format!("[[files]] path '{}': {why}", entry.path);
        let path = Path::new(&entry.path);
        if !path.is_absolute() {
            return Err(bad("must be an absolute path"));
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(bad("must name files in a folder"));
        };
        let wild = |s: &str| s.contains(['*', '?', '[', '{']);
        if wild(&dir.to_string_lossy()) {
            return Err(bad("only the file name may hold a glob"));
        }
        let name = Glob::new(&name.to_string_lossy())
            .map_err(|e| bad(&e.to_string()))?
            .compile_matcher();
        let job: JobKey = entry
            .job
            .parse()
            .map_err(|e| format!("[[files]] job '{}': {e}", entry.job))?;
        if job.cluster.as_deref().is_some_and(|c| c != cluster) {
            return Err(format!(
                "[[files]] job '{}': its cluster is not this shipper's ({cluster})",
                entry.job
            ));
        }
        if entry.process.contains('/') {
            return Err(format!(
                "[[files]] process '{}' must not contain '/'",
                entry.process
            ));
        }
        Ok(FilesWatch {
            dir: dir.to_owned(),
            name,
            template: Source {
                cluster: cluster.to_owned(),
                host: host.to_owned(),
                task_id: String::new(),
                job: JobKey {
                    cluster: None,
                    ..job
                },
                instance: entry.instance,
                process: entry.process.clone(),
                run: 0,
                stream: entry.stream,
            },
            process: entry.process.clone(),
        })
    }

    /// Whether `name` is a live file of this entry.
    fn is_live(&self, name: &str) -> bool {
        if !self.name.is_match(name) || COMPRESSED.iter().any(|c| name.ends_with(c)) {
            return false;
        }
        // `x.log.1` is a rotation of `x.log`, whatever the glob says.
        match name.rsplit_once('.') {
            Some((_, n)) => cblogs_core::sandbox::run_number(n).is_none(),
            None => true,
        }
    }

    /// The source of the file `name` of this entry.
    fn source(&self, name: &str) -> Source {
        let path = self.dir.join(name);
        let mut source = self.template.clone();
        // The task id tells files apart (a hash of the path: no '/').
        source.task_id = format!(
            "file-{:016x}",
            cblogs_core::fnv1a(path.to_string_lossy().as_bytes())
        );
        source.process = if self.process.is_empty() {
            name.replace(|c: char| c.is_control(), "_")
        } else {
            self.process.clone()
        };
        source
    }
}

/// Every `[[files]]` entry.
pub struct FilesScanner {
    watches: Vec<FilesWatch>,
}

impl FilesScanner {
    pub fn new(entries: &[FilesEntry], cluster: &str, host: &str) -> Result<FilesScanner, String> {
        let watches = entries
            .iter()
            .map(|e| FilesWatch::new(e, cluster, host))
            .collect::<Result<_, _>>()?;
        Ok(FilesScanner { watches })
    }

    /// Whether `dir` holds files of an entry (a change there is a scan).
    pub fn covers(&self, dir: &Path) -> bool {
        self.watches.iter().any(|w| w.dir == dir)
    }

    /// The live files not tailed yet; every entry's folder watched.
    pub fn scan(&self, visit: &mut dyn Visit) -> Scan {
        let mut scan = Scan::default();
        for w in &self.watches {
            visit.files_folder(&w.dir);
            let Ok(entries) = fs::read_dir(&w.dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let path = w.dir.join(&name);
                // A link to the live file (glog's `mesos-agent.INFO`) is
                // followed: the name is the stream, the file it points at
                // what is read.
                if !w.is_live(&name) || visit.known(&path) || !path.is_file() {
                    continue;
                }
                // Two entries naming one file: the first has it.
                if scan.iter().any(|f: &FoundStream| f.path() == path) {
                    continue;
                }
                scan.push(FoundStream {
                    dir: w.dir.clone(),
                    source: w.source(&name),
                    file: name,
                    linger: true,
                });
            }
        }
        scan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> FilesEntry {
        FilesEntry {
            path: path.into(),
            job: "mesos/prod/agent".into(),
            instance: 0,
            process: String::new(),
            stream: cblogs_core::Stream::Stdout,
        }
    }

    struct NoneKnown;
    impl Visit for NoneKnown {
        fn folder(&mut self, _dir: &Path, _writes: bool) {}
        fn known(&self, _path: &Path) -> bool {
            false
        }
    }

    #[test]
    fn live_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "agent.log",
            "agent.log.1",
            "agent.log.2.gz",
            "other.txt",
            "sched.log",
        ] {
            fs::write(tmp.path().join(name), b"x\n").unwrap();
        }
        let glob = format!("{}/*.log*", tmp.path().display());
        let scanner = FilesScanner::new(&[entry(&glob)], "devcluster", "agent1").unwrap();
        let mut found: Vec<(String, String)> = scanner
            .scan(&mut NoneKnown)
            .into_iter()
            .map(|f| (f.file, f.source.process))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("agent.log".into(), "agent.log".into()),
                ("sched.log".into(), "sched.log".into())
            ]
        );
        let s = scanner.watches[0].source("agent.log");
        assert_eq!(s.job_key().to_string(), "devcluster/mesos/prod/agent");
        assert!(s.validate().is_ok());
        assert_ne!(s.id(), scanner.watches[0].source("sched.log").id());
    }

    #[test]
    fn entries_are_checked() {
        let e = |path: &str, job: &str| {
            let mut f = entry(path);
            f.job = job.into();
            FilesWatch::new(&f, "devcluster", "h")
                .err()
                .unwrap_or_default()
        };
        assert!(e("var/log/x.log", "a/prod/c").contains("absolute"));
        assert!(e("/var/*/x.log", "a/prod/c").contains("only the file name"));
        assert!(e("/var/log/x.log", "not-a-job").contains("[[files]] job"));
        assert!(e("/var/log/x.log", "west/a/prod/c").contains("cluster"));
        assert_eq!(e("/var/log/x.log", "a/prod/c"), "");
        assert_eq!(e("/var/log/x.log", "devcluster/a/prod/c"), "");
    }
}
