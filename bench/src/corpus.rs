//! The benchmark corpus: deterministic, realistic, and laid out as a Mesos
//! agent.
//!
//! Lines come from a directory of real logs (`--corpus DIR`, every `*.log`
//! file in it; CI uses `../shared/corpus/loghub`) or, without one, from the
//! built-in templates below. Each repetition of a template line moves its
//! numbers the way ids, sizes and timestamps move in a real log: every
//! number in every template line gets its own step, and each repetition adds
//! that step plus a little noise, keeping the number's width. So the result
//! compresses like a log (not like random digits, not like plain repeats).
//! stderr files also get Python tracebacks and Java stack traces.
//!
//! The agent has 20 jobs × 5 instances × 2 processes, each with stdout and
//! stderr (400 files), built with the end-to-end tests' [`Agent`] so its
//! layout is exactly the one `thermos-layout.md` describes. Busy jobs get
//! more bytes than quiet ones (a Zipf-like weight), main processes more than
//! their side processes, stdout more than stderr. Everything is seeded: the
//! same size and templates give the same bytes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cblogs_core::Stream;
use cblogs_e2e::Agent;

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
pub fn lay_out(root: &Path) -> (Agent, Vec<FileSpec>) {
    let agent = Agent::new(root);
    let mut files = Vec::new();
    for (j, (role, env, name, main)) in JOBS.iter().enumerate() {
        let job_weight = 1.0 / ((j + 1) as f64).powf(0.7);
        for instance in 0..INSTANCES {
            let task = agent.task(role, env, name, instance);
            for (process, process_weight) in [(*main, 0.85), (SIDE_PROCESS, 0.15)] {
                let run = task.process(process, 0);
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
    (agent, files)
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
    let (_, specs) = lay_out(root);
    let mut files = Vec::with_capacity(specs.len());
    let (mut bytes, mut lines) = (0, 0);
    for (i, spec) in specs.into_iter().enumerate() {
        let target = (size as f64 * spec.weight).ceil() as u64;
        let file =
            File::create(&spec.path).with_context(|| format!("create {}", spec.path.display()))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut gen = LineGen::new(templates, &spec, i as u64);
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

/// Template lines, in sets: one set per log file (one program's output).
pub struct Templates {
    sets: Vec<TemplateSet>,
    pub from: String,
}

struct TemplateSet {
    lines: Vec<Template>,
}

/// A line cut into literal text and numbers.
struct Template {
    segs: Vec<Seg>,
}

enum Seg {
    Text(Vec<u8>),
    Num {
        value: u64,
        width: u32,
        padded: bool,
    },
}

impl Templates {
    /// Every `*.log` file of `dir`, one set each (sorted by name).
    pub fn from_dir(dir: &Path) -> Result<Templates> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("read corpus dir {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        paths.sort();
        let mut sets = Vec::new();
        for p in &paths {
            let data = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            let lines: Vec<Template> = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty() && *l != b"\r")
                .map(Template::parse)
                .collect();
            if !lines.is_empty() {
                sets.push(TemplateSet { lines });
            }
        }
        if sets.is_empty() {
            bail!("{} holds no non-empty *.log file", dir.display());
        }
        Ok(Templates {
            sets,
            from: dir.display().to_string(),
        })
    }

    /// The built-in templates: a web server, a Python service and a Java service.
    pub fn builtin() -> Templates {
        let sets = BUILTIN
            .iter()
            .map(|set| TemplateSet {
                lines: set.iter().map(|l| Template::parse(l.as_bytes())).collect(),
            })
            .collect();
        Templates {
            sets,
            from: "built-in templates".into(),
        }
    }
}

impl Template {
    fn parse(line: &[u8]) -> Template {
        let mut segs = Vec::new();
        let mut i = 0;
        while i < line.len() {
            let start = i;
            let digits = line[i].is_ascii_digit();
            while i < line.len() && line[i].is_ascii_digit() == digits {
                i += 1;
            }
            let run = &line[start..i];
            // Up to 18 digits fit a u64 with room for the steps.
            if digits && run.len() <= 18 {
                let value = run.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
                segs.push(Seg::Num {
                    value,
                    width: run.len() as u32,
                    padded: run[0] == b'0' || run.len() <= 2,
                });
            } else {
                match segs.last_mut() {
                    Some(Seg::Text(t)) => t.extend_from_slice(run),
                    _ => segs.push(Seg::Text(run.to_vec())),
                }
            }
        }
        Template { segs }
    }
}

/// splitmix64: a good 64-bit mix for deriving per-number steps from seeds.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The lines of one file, in order.
pub struct LineGen<'a> {
    set: &'a TemplateSet,
    seed: u64,
    next: usize,
    rep: u64,
    rng: fastrand::Rng,
    traces: Option<TraceKind>,
    /// Lines of a trace still to write, last first.
    pending: Vec<Vec<u8>>,
}

#[derive(Clone, Copy)]
enum TraceKind {
    Python,
    Java,
}

impl<'a> LineGen<'a> {
    pub fn new(templates: &'a Templates, spec: &FileSpec, file_seed: u64) -> LineGen<'a> {
        let set_index = if spec.process == SIDE_PROCESS {
            spec.job_index + 5
        } else {
            spec.job_index
        };
        let set = &templates.sets[set_index % templates.sets.len()];
        // Instances of a job run the same program: same templates, their own
        // numbers and their own place in the program's output.
        let seed = mix(file_seed ^ 0x00c0_ffee);
        let traces =
            (spec.stream == Stream::Stderr).then_some(if spec.job_index.is_multiple_of(2) {
                TraceKind::Python
            } else {
                TraceKind::Java
            });
        LineGen {
            set,
            seed,
            next: (seed % set.lines.len() as u64) as usize,
            rep: 0,
            rng: fastrand::Rng::with_seed(seed),
            traces,
            pending: Vec::new(),
        }
    }

    /// Appends the next line (without its newline) to `out`.
    pub fn next_line(&mut self, out: &mut Vec<u8>) {
        if let Some(line) = self.pending.pop() {
            out.extend_from_slice(&line);
            return;
        }
        if let Some(kind) = self.traces {
            if self.rng.u32(0..40) == 0 {
                let mut trace = match kind {
                    TraceKind::Python => python_traceback(&mut self.rng),
                    TraceKind::Java => java_stack_trace(&mut self.rng),
                };
                trace.reverse();
                self.pending = trace;
                if let Some(line) = self.pending.pop() {
                    out.extend_from_slice(&line);
                }
                return;
            }
        }
        let index = self.next;
        let template = &self.set.lines[index];
        for seg in &template.segs {
            match seg {
                Seg::Text(t) => out.extend_from_slice(t),
                Seg::Num {
                    value,
                    width,
                    padded,
                } => {
                    let modulus = 10u64.saturating_pow(*width);
                    let magnitude = 10u64.saturating_pow(width.div_ceil(2));
                    // One step per field width and file: a repetition
                    // moves every timestamp (or counter) of the file by the
                    // same amount, so neighbouring lines keep sharing their
                    // leading digits, as in a real log.
                    let step = 1 + mix(self.seed ^ u64::from(*width)) % magnitude;
                    // Mostly the step alone; now and then a little more.
                    let noise = if self.rng.u8(0..4) == 0 {
                        self.rng.u64(0..=step / 4)
                    } else {
                        0
                    };
                    let v = value
                        .wrapping_add(self.rep.wrapping_mul(step))
                        .wrapping_add(noise)
                        % modulus;
                    if *padded {
                        push_padded(out, v, *width);
                    } else {
                        push_number(out, v);
                    }
                }
            }
        }
        self.next += 1;
        if self.next == self.set.lines.len() {
            self.next = 0;
            self.rep += 1;
        }
    }
}

/// Appends generated lines to many files in turn: the background load of
/// the latency and shipper measurements.
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
        .map(|(i, s)| LineGen::new(templates, s, i as u64))
        .collect();
    Ok((files, gens))
}

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

fn push_number(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_padded(out: &mut Vec<u8>, v: u64, width: u32) {
    let start = out.len();
    push_number(out, v);
    let len = (out.len() - start) as u32;
    if len < width {
        let pad = (width - len) as usize;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

fn pick<'s>(rng: &mut fastrand::Rng, items: &[&'s str]) -> &'s str {
    items[rng.usize(0..items.len())]
}

fn python_traceback(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    const MODULES: [&str; 6] = [
        "handlers",
        "db/pool",
        "rpc/client",
        "cache",
        "views",
        "tasks",
    ];
    const FUNCS: [&str; 6] = ["handle", "get_conn", "call", "fetch", "render", "run"];
    const CODE: [&str; 5] = [
        "return self._pool.acquire(timeout=self.timeout)",
        "resp = self._session.post(url, json=payload)",
        "value = self._store[key]",
        "rows = cursor.fetchall()",
        "raise ValueError(f\"bad record {rid}\")",
    ];
    const ERRORS: [&str; 5] = [
        "KeyError: 'user_",
        "TimeoutError: timed out after ",
        "ConnectionResetError: [Errno 104] Connection reset by peer, request ",
        "ValueError: bad record ",
        "psycopg2.OperationalError: could not connect to server, attempt ",
    ];
    let mut lines = vec![b"Traceback (most recent call last):".to_vec()];
    for _ in 0..rng.usize(2..6) {
        lines.push(
            format!(
                "  File \"/usr/lib/python3.11/site-packages/app/{}.py\", line {}, in {}",
                pick(rng, &MODULES),
                rng.u32(10..900),
                pick(rng, &FUNCS)
            )
            .into_bytes(),
        );
        lines.push(format!("    {}", pick(rng, &CODE)).into_bytes());
    }
    lines.push(format!("{}{}", pick(rng, &ERRORS), rng.u32(1000..99999)).into_bytes());
    lines
}

fn java_stack_trace(rng: &mut fastrand::Rng) -> Vec<Vec<u8>> {
    const CLASSES: [&str; 6] = [
        "com.example.ledger.LedgerService",
        "com.example.rpc.ClientPool",
        "com.example.store.SegmentReader",
        "org.eclipse.jetty.server.HttpChannel",
        "io.netty.channel.AbstractChannelHandlerContext",
        "java.util.concurrent.ThreadPoolExecutor",
    ];
    const METHODS: [&str; 5] = ["handle", "invoke", "read", "runWorker", "process"];
    // OutOfMemoryError is the rare one: about one trace in 25.
    let exception = if rng.u32(0..25) == 0 {
        "java.lang.OutOfMemoryError: Java heap space".to_owned()
    } else {
        let e = pick(
            rng,
            &[
                "java.lang.IllegalStateException: pool exhausted, waiters=",
                "java.util.concurrent.TimeoutException: no answer after ms=",
                "java.lang.NullPointerException: segment ",
            ],
        );
        format!("{e}{}", rng.u32(1..5000))
    };
    let mut lines = vec![format!(
        "Exception in thread \"worker-{}\" {exception}",
        rng.u32(0..64)
    )
    .into_bytes()];
    for _ in 0..rng.usize(5..16) {
        let class = pick(rng, &CLASSES);
        let file = class.rsplit('.').next().unwrap_or(class);
        lines.push(
            format!(
                "\tat {class}.{}({file}.java:{})",
                pick(rng, &METHODS),
                rng.u32(20..2000)
            )
            .into_bytes(),
        );
    }
    if rng.bool() {
        lines.push(b"Caused by: java.io.IOException: Connection reset by peer".to_vec());
        lines.push(b"\tat sun.nio.ch.FileDispatcherImpl.read0(Native Method)".to_vec());
        lines.push(format!("\t... {} more", rng.u32(3..30)).into_bytes());
    }
    lines
}

const BUILTIN: [&[&str]; 3] = [
    &[
        "10.0.3.17 - - [25/Nov/2026:02:10:11 +0000] \"GET /hello HTTP/1.1\" 200 4242 \"-\" \"Mozilla/5.0\"",
        "10.0.6.80 - - [25/Nov/2026:02:10:11 +0000] \"GET /health HTTP/1.1\" 200 131 \"-\" \"curl/8.4.0\"",
        "10.0.1.9 - - [25/Nov/2026:02:10:12 +0000] \"POST /api/v2/orders/118273 HTTP/1.1\" 201 877 \"-\" \"okhttp/4.12\"",
        "[error] [client 10.0.1.9] File does not exist: /var/www/html/favicon.ico",
    ],
    &[
        "2026-11-25 02:10:11,201 INFO  app.handlers request_id=6f1c2a7e user=4411 path=/v1/answer status=200 took_ms=13",
        "2026-11-25 02:10:11,377 DEBUG app.cache hit key=answer:8812 ttl=300",
        "2026-11-25 02:10:12,004 WARNING app.db slow query took_ms=1204 rows=3312",
        "2026-11-25 02:10:12,150 INFO  app.handlers request_id=6f1c2a91 user=3002 path=/v1/ask status=200 took_ms=41",
    ],
    &[
        "2026-11-25T02:10:11.201Z INFO  [worker-12] c.e.ledger.LedgerService - posted entry 88127731 amount=1200 currency=EUR",
        "2026-11-25T02:10:11.377Z INFO  [worker-3] c.e.ledger.LedgerService - balance account=400112 value=88121",
        "2026-11-25T02:10:12.004Z WARN  [gc] jvm pause young=41ms heap=812M/2048M",
        "2026-11-25T02:10:12.150Z INFO  [http-8080-7] o.e.jetty.RequestLog - GET /ledger/400112 200 17ms",
    ],
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_move_but_keep_their_width_and_the_text_stays() {
        let t = Templates::builtin();
        let spec = FileSpec {
            path: PathBuf::new(),
            job: "a/b/c".into(),
            job_index: 1,
            instance: 0,
            task_id: String::new(),
            process: "main".into(),
            stream: Stream::Stdout,
            weight: 1.0,
        };
        let mut g = LineGen::new(&t, &spec, 7);
        let lines: Vec<String> = (0..40)
            .map(|_| {
                let mut l = Vec::new();
                g.next_line(&mut l);
                String::from_utf8(l).expect("utf-8")
            })
            .collect();
        // Four templates, ten repetitions: the same text, other numbers.
        let shape = |s: &str| {
            let mut out = String::new();
            for c in s.chars() {
                let d = c.is_ascii_digit();
                if !d || !out.ends_with('#') {
                    out.push(if d { '#' } else { c });
                }
            }
            out
        };
        for i in 0..36 {
            assert_eq!(shape(&lines[i]), shape(&lines[i + 4]));
        }
        assert!((0..36).all(|i| lines[i] != lines[i + 4]));
        assert!(
            lines
                .iter()
                .any(|l| l.contains("INFO  app.handlers request_id=")),
            "{lines:?}"
        );
        // Deterministic.
        let mut again = LineGen::new(&t, &spec, 7);
        let mut first = Vec::new();
        again.next_line(&mut first);
        assert_eq!(first, lines[0].as_bytes());
    }

    #[test]
    fn padding_keeps_leading_zeros() {
        let mut out = Vec::new();
        push_padded(&mut out, 7, 3);
        push_number(&mut out, 0);
        push_number(&mut out, 1234);
        assert_eq!(out, b"00701234");
    }
}
