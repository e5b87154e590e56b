//! Sources (one file stream of one process run) and lines as the API shows them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::JobKey;

/// Which of a process's two files a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stream {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Stream::Stdout),
            "stderr" => Ok(Stream::Stderr),
            other => Err(format!(
                "unknown stream '{other}' (expected stdout or stderr)"
            )),
        }
    }
}

/// One file stream: the stdout or stderr of one run of one process of one
/// task. Rotated files (`stdout.1`, …) continue the same source, so byte
/// offsets count from the start of the stream, not of a file.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    pub cluster: String,
    pub host: String,
    pub task_id: String,
    /// `role/env/name`; the cluster is the field above.
    pub job: JobKey,
    pub instance: u32,
    pub process: String,
    pub run: u32,
    pub stream: Stream,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("source field '{0}' must not be empty")]
    Empty(&'static str),
    #[error("source field '{field}' must not contain '/' or control characters: {value:?}")]
    BadChar { field: &'static str, value: String },
    #[error(
        "source job '{job}' names cluster '{job_cluster}' but the source says cluster '{cluster}'"
    )]
    ClusterMismatch {
        job: String,
        job_cluster: String,
        cluster: String,
    },
}

impl Source {
    /// The canonical key: `cluster/host/task_id/process/run/stream`.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}/{}",
            self.cluster, self.host, self.task_id, self.process, self.run, self.stream
        )
    }

    /// A stable 64-bit id of [`Source::key`] (FNV-1a): the same source gets
    /// the same id in every process and across restarts.
    pub fn id(&self) -> u64 {
        fnv1a(self.key().as_bytes())
    }

    /// The job key with the cluster filled in.
    pub fn job_key(&self) -> JobKey {
        self.job.clone().with_cluster(&self.cluster)
    }

    /// Checks what serde cannot: no empty names, no separators inside them.
    pub fn validate(&self) -> Result<(), SourceError> {
        for (field, value) in [
            ("cluster", &self.cluster),
            ("host", &self.host),
            ("task_id", &self.task_id),
            ("process", &self.process),
        ] {
            if value.is_empty() {
                return Err(SourceError::Empty(field));
            }
            if value.chars().any(|c| c == '/' || c.is_control()) {
                return Err(SourceError::BadChar {
                    field,
                    value: value.clone(),
                });
            }
        }
        if let Some(c) = &self.job.cluster {
            if c != &self.cluster {
                return Err(SourceError::ClusterMismatch {
                    job: self.job.to_string(),
                    job_cluster: c.clone(),
                    cluster: self.cluster.clone(),
                });
            }
        }
        Ok(())
    }

    /// A source of run 0 of `process` of instance `instance` of `job`
    /// (`role/env/name`) on cluster `c`, host `agent1`, with a task id of
    /// the real shape: the one every unit test of every crate builds.
    ///
    /// Panics if `job` is not a job key: for tests and examples only.
    #[doc(hidden)]
    pub fn example(job: &str, instance: u32, process: &str, stream: Stream) -> Source {
        let job: JobKey = job
            .parse()
            .expect("an example source needs a valid job key");
        Source {
            cluster: "c".into(),
            host: "agent1".into(),
            task_id: format!(
                "{}-{}-{}-{instance}-5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11",
                job.role, job.env, job.name
            ),
            job,
            instance,
            process: process.into(),
            run: 0,
            stream,
        }
    }
}

/// FNV-1a, 64 bits: a stable id of bytes, the same in every process and
/// across restarts (a source's id; a pushed stream's or a file's task id).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Marks on a stored line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineFlags {
    /// The line was longer than the limit and was cut there.
    #[serde(default, skip_serializing_if = "is_false")]
    pub cut: bool,
    /// The line had no newline yet when it was sent; the next line continues it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub partial: bool,
    /// The line continues the event (a log record of several lines: a
    /// message and its stack trace) that its source's previous line is
    /// in; a line without it opens one. Marked as the line is ingested
    /// (the server's `multiline/`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub continues: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl LineFlags {
    pub fn to_bits(self) -> u8 {
        u8::from(self.cut) | (u8::from(self.partial) << 1) | (u8::from(self.continues) << 2)
    }
    pub fn from_bits(bits: u8) -> Self {
        LineFlags {
            cut: bits & 1 != 0,
            partial: bits & 2 != 0,
            continues: bits & 4 != 0,
        }
    }
}

/// A line as the read API returns it (JSON objects in `tail`, SSE `data:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineView {
    /// RFC 3339, UTC, nanoseconds.
    pub time: String,
    pub time_ns: i64,
    pub cluster: String,
    pub host: String,
    /// `role/env/name`.
    pub job: String,
    pub instance: u32,
    pub task_id: String,
    pub process: String,
    pub run: u32,
    pub stream: Stream,
    /// Byte offset of the line in its stream.
    pub offset: u64,
    /// The line's bytes without the newline; invalid UTF-8 shown as U+FFFD.
    pub text: String,
    #[serde(flatten)]
    pub flags: LineFlags,
    /// [`Source::id`] in hex: what identifies the stream for de-duplication.
    pub source: String,
}

impl LineView {
    /// One line of `source` as the read API shows it: the tail, follow,
    /// search and context endpoints and alert notifications all build it
    /// here, so a line looks the same wherever it is shown.
    pub fn new(source: &Source, offset: u64, time_ns: i64, flags: LineFlags, bytes: &[u8]) -> Self {
        LineView {
            time: crate::time::format_rfc3339_nanos(time_ns),
            time_ns,
            cluster: source.cluster.clone(),
            host: source.host.clone(),
            job: source.job.role_env_name(),
            instance: source.instance,
            task_id: source.task_id.clone(),
            process: source.process.clone(),
            run: source.run,
            stream: source.stream,
            offset,
            text: String::from_utf8_lossy(bytes).into_owned(),
            flags,
            source: format!("{:016x}", source.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Source {
        Source {
            cluster: "devcluster".into(),
            host: "agent1".into(),
            task_id: "www-data-prod-hello-0-5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11".into(),
            job: "www-data/prod/hello".parse().unwrap(),
            instance: 0,
            process: "hello".into(),
            run: 0,
            stream: Stream::Stderr,
        }
    }

    #[test]
    fn key_and_id_are_stable() {
        let s = source();
        assert_eq!(s.key(), "devcluster/agent1/www-data-prod-hello-0-5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11/hello/0/stderr");
        assert_eq!(s.id(), fnv1a(s.key().as_bytes()));
        let mut other = source();
        other.stream = Stream::Stdout;
        assert_ne!(s.id(), other.id());
        assert_eq!(s.job_key().to_string(), "devcluster/www-data/prod/hello");
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = source();
        s.process = String::new();
        assert_eq!(s.validate(), Err(SourceError::Empty("process")));
        let mut s = source();
        s.host = "a/b".into();
        assert!(matches!(
            s.validate(),
            Err(SourceError::BadChar { field: "host", .. })
        ));
        let mut s = source();
        s.job = "other/www-data/prod/hello".parse().unwrap();
        assert!(matches!(
            s.validate(),
            Err(SourceError::ClusterMismatch { .. })
        ));
        assert!(source().validate().is_ok());
    }

    #[test]
    fn flags_round_trip() {
        for f in [
            LineFlags::default(),
            LineFlags {
                cut: true,
                partial: false,
                continues: false,
            },
            LineFlags {
                cut: true,
                partial: true,
                continues: false,
            },
            LineFlags {
                cut: false,
                partial: false,
                continues: true,
            },
        ] {
            assert_eq!(LineFlags::from_bits(f.to_bits()), f);
        }
    }
}
