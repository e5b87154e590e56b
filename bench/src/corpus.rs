//! The benchmark corpus: deterministic, realistic, and laid out as a Mesos
//! agent.
//!
//! Lines come from a directory of real logs (`--corpus DIR`, every `*.log`
//! file in it) or, without one, from the built-in templates; the template
//! sets and the line generator are `cblogs_fake_agent::lines` (shared with
//! the end-to-end tests and `cblogsd --demo`). This file decides which
//! file gets which set: instances of a job run the same program, the side
//! process another, and stderr files also get Python tracebacks (even
//! jobs) or Java stack traces (odd jobs).
//!
//! The agent has 20 jobs × 5 instances × 2 processes, each with stdout and
//! stderr (400 files), laid out by `cblogs-fake-agent` exactly as
//! `thermos-layout.md` describes. Busy jobs get more bytes than quiet ones
//! (a Zipf-like weight), main processes more than their side processes,
//! stdout more than stderr. Everything is seeded: the same size and
//! templates give the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cblogs_core::Stream;
use cblogs_fake_agent::lines::{LineGen, Templates, TraceKind};
use cblogs_fake_agent::Agent;

/// `(role, env, name, main process)`: names with `-` and `_` as real ones have.
pub const JOBS: [(&str, &str, &str, &str); 20] = [
    ("www-data", "prod", "hello", "hello_world"),
    ("payments", "prod", "ledger", "ledger_server"),
    ("payments", "staging1", "ledger", "ledger_server"),
    ("search", "prod", "indexer-v2", "indexer"),
    ("search", "prod", "query_frontend", "frontend"),
    ("ads", "prod", "bid-router", "router"),
    ("ads", "devel", "bid-router", "router"),
    ("cbe", "devel", "eightball_api", "api_server"),
    ("mail", "prod", "smtp-relay", "postfix"),
    ("mail", "prod", "spam_filter", "classifier"),
    ("data", "prod", "hdfs-datanode", "datanode"),
    ("data", "prod", "spark_history", "history_server"),
    ("infra", "prod", "zk-observer", "zookeeper"),
    ("infra", "prod", "dns_cache", "unbound"),
    ("mobile", "prod", "push-gateway", "gateway"),
    ("mobile", "staging2", "push-gateway", "gateway"),
    ("ml", "prod", "feature_store", "store"),
    ("ml", "devel", "trainer-gpu", "trainer"),
    ("web", "prod", "static-assets", "nginx"),
    ("web", "prod", "session_svc", "session_server"),
];
pub const INSTANCES: u32 = 5;
/// Every job's second process.
pub const SIDE_PROCESS: &str = "health-check";

/// One sandbox file of the agent.
#[derive(Debug, Clone)]
pub struct FileSpec {
    pub path: PathBuf,
    /// `role/env/name`.
    pub job: String,
    pub job_index: usize,
    pub instance: u32,
    pub task_id: String,
    pub process: String,
    pub stream: Stream,
    /// Share of the corpus's bytes this file gets.
    pub weight: f64,
}

/// Lays out the agent under `root` (its work dir is `root/mesos`): every
/// task, process run and empty stdout/stderr file.
pub fn lay_out(root: &Path) -> Result<(Agent, Vec<FileSpec>)> {
    lay_out_instances(root, INSTANCES)
}

/// [`lay_out`] with `instances` instances of every job (4 files each).
pub fn lay_out_instances(root: &Path, instances: u32) -> Result<(Agent, Vec<FileSpec>)> {
    let agent = Agent::new(root).context("lay out the agent")?;
    let mut files = Vec::new();
    for (j, (role, env, name, main)) in JOBS.iter().enumerate() {
        let job_weight = 1.0 / ((j + 1) as f64).powf(0.7);
        for instance in 0..instances {
            let task = agent.task(role, env, name, instance)?;
            for (process, process_weight) in [(*main, 0.85), (SIDE_PROCESS, 0.15)] {
                let run = task.process(process, 0)?;
                for (stream, stream_weight) in [(Stream::Stdout, 0.85), (Stream::Stderr, 0.15)] {
                    files.push(FileSpec {
                        path: run.path(stream),
                        job: format!("{role}/{env}/{name}"),
                        job_index: j,
                        instance,
                        task_id: task.task_id.clone(),
                        process: process.to_owned(),
                        stream,
                        weight: job_weight * process_weight * stream_weight,
                    });
                }
            }
        }
    }
    let total: f64 = files.iter().map(|f| f.weight).sum();
    for f in &mut files {
        f.weight /= total;
    }
    Ok((agent, files))
}

/// The generated agent's files and what they hold.
pub struct Corpus {
    pub files: Vec<GeneratedFile>,
    pub bytes: u64,
    pub lines: u64,
}

pub struct GeneratedFile {
    pub spec: FileSpec,
    pub lines: u64,
}

/// Writes about `size` bytes of log lines into a new agent under `root`.
pub fn generate(root: &Path, size: u64, templates: &Templates) -> Result<Corpus> {
    let (_, specs) = lay_out(root)?;
    let mut files = Vec::with_capacity(specs.len());
    let (mut bytes, mut lines) = (0, 0);
    for (i, spec) in specs.into_iter().enumerate() {
        let target = (size as f64 * spec.weight).ceil() as u64;
        let file =
            File::create(&spec.path).with_context(|| format!("create {}", spec.path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut gen = line_gen(templates, &spec, i as u64);
        let (mut b, mut n) = (0u64, 0u64);
        let mut line = Vec::with_capacity(512);
        while b < target {
            line.clear();
            gen.next_line(&mut line);
            line.push(b'\n');
            out.write_all(&line)?;
            b += line.len() as u64;
            n += 1;
        }
        out.flush()
            .with_context(|| format!("write {}", spec.path.display()))?;
        bytes += b;
        lines += n;
        files.push(GeneratedFile { spec, lines: n });
    }
    Ok(Corpus {
        files,
        bytes,
        lines,
    })
}

/// The line generator of one file: the set of its job's program (the
/// side process runs another), and the traces of its job on stderr.
pub fn line_gen<'a>(templates: &'a Templates, spec: &FileSpec, file_seed: u64) -> LineGen<'a> {
    let set_index = if spec.process == SIDE_PROCESS {
        spec.job_index + 5
    } else {
        spec.job_index
    };
    let traces = (spec.stream == Stream::Stderr).then_some(if spec.job_index.is_multiple_of(2) {
        TraceKind::Python
    } else {
        TraceKind::Java
    });
    LineGen::new(templates.set(set_index), file_seed, traces)
}

/// `specs`' files opened for appending, each with its own line generator.
pub fn open_for_append<'a>(
    templates: &'a Templates,
    specs: &[FileSpec],
) -> Result<(Vec<File>, Vec<LineGen<'a>>)> {
    let files = specs
        .iter()
        .map(|s| std::fs::OpenOptions::new().append(true).open(&s.path))
        .collect::<std::io::Result<_>>()
        .context("open the sandbox files")?;
    let gens = specs
        .iter()
        .enumerate()
        .map(|(i, s)| line_gen(templates, s, i as u64))
        .collect();
    Ok((files, gens))
}

/// Appends generated lines to many files in turn: the background load of
/// the latency and shipper measurements.
pub struct RoundRobinWriter<'a> {
    files: Vec<File>,
    gens: Vec<LineGen<'a>>,
    written: usize,
    line: Vec<u8>,
}

impl<'a> RoundRobinWriter<'a> {
    /// Opens `specs`' files for appending, each with its own line generator.
    pub fn open(templates: &'a Templates, specs: &[FileSpec]) -> Result<RoundRobinWriter<'a>> {
        let (files, gens) = open_for_append(templates, specs)?;
        Ok(RoundRobinWriter {
            files,
            gens,
            written: 0,
            line: Vec::with_capacity(512),
        })
    }

    /// Writes `count` lines, each whole in one write(2), to the next files.
    pub fn write(&mut self, count: usize) -> Result<()> {
        for _ in 0..count {
            let i = self.written % self.files.len();
            self.written += 1;
            self.line.clear();
            self.gens[i].next_line(&mut self.line);
            self.line.push(b'\n');
            self.files[i]
                .write_all(&self.line)
                .context("write a sandbox file")?;
        }
        Ok(())
    }

    /// Lines written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// The file of spec `i`, to write something else into.
    pub fn file(&mut self, i: usize) -> &mut File {
        &mut self.files[i]
    }
}
