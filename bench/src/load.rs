//! The load run: live tails and searches while logs are written, all at
//! once, through the real binaries.
//!
//! A real `cblogsd` (its follow limit raised to the tails plus 8, as every
//! tail comes from one address; `search.max_concurrent` left at its
//! default) and a real `cblogs-shipper` on a generated agent (the corpus
//! layout: 20 jobs × 5 instances × 2 processes × stdout/stderr). A writer
//! appends generated lines (the corpus generator's, busy jobs more than
//! quiet ones) to the sandbox files at `--rate-mb` MB/s, one write(2) per
//! line, each line ending in a stamp ` cbload:FILE:SEQ:NANOS` (which file,
//! its sequence number in that file, and when it was written, on a
//! monotonic clock shared with the readers).
//!
//! Meanwhile `--tails` SSE clients follow `GET /api/v1/follow` (a mix of
//! single jobs, single instances and globs that together cover every job,
//! one of them `*`), and `--searches` clients loop over five searches
//! (`GET /api/v1/search`, the NDJSON read to its summary). Every tail must
//! receive every line of its selection, in order, exactly once — or have
//! been told, by a `lagged` event before the gap, that it fell behind. A
//! search refused with 503 because `search.max_concurrent` searches run is
//! "asked to wait": it is retried after `Retry-After`, counted, and is no
//! error. Anything else unexpected is an error, and the run fails.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_core::api::{SearchEvent, SEARCH_PATH};
use cblogs_core::{JobKey, Selector};
use cblogs_fake_agent::lines::{LineGen, Templates};
use cblogs_testkit::Shipper;
use serde::{Deserialize, Serialize};

use crate::corpus::{lay_out, FileSpec, JOBS};
use crate::ingest::stored_lines;
use crate::procs::{cpu_secs, peak_rss_mib, MB};
use crate::rawhttp;

const STAMP: &str = " cbload:";
/// How long the tails get, once cblogsd holds every line, to show it.
const TAIL_DRAIN: Duration = Duration::from_secs(30);
/// A tail idle this long, with every missing line excused by a `lagged`
/// event, is done.
const TAIL_IDLE: Duration = Duration::from_secs(3);
/// Error messages kept for the report (all are counted).
const KEEP_ERRORS: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub secs: u64,
    pub rate_mb: f64,
    pub tails: usize,
    pub searches: usize,
}

/// What a load run measured.
pub struct Outcome {
    pub files: usize,
    pub secs: f64,
    pub written_lines: u64,
    pub written_bytes: u64,
    pub ingest_bytes: f64,
    pub stored_lines: u64,
    pub drain_secs: f64,
    pub server_peak_rss_mib: f64,
    pub shipper_peak_rss_mib: f64,
    pub server_cpu_secs: f64,
    pub shipper_cpu_secs: f64,
    pub bench_cpu_secs: f64,
    pub tails: Vec<TailResult>,
    pub searches: Vec<SearchRecord>,
    pub errors: Vec<String>,
    pub error_count: usize,
}

// ---------------------------------------------------------------- writer

/// Appends generated, stamped lines to the sandbox files, busy files more
/// often than quiet ones (the corpus weights), one write(2) per line.
struct Writer<'a> {
    files: Vec<File>,
    gens: Vec<LineGen<'a>>,
    cumulative: Vec<f64>,
    rng: fastrand::Rng,
    /// The last sequence number written to each file (0: the warm-up line).
    last: Vec<u64>,
    lines: u64,
    bytes: u64,
    buf: Vec<u8>,
    epoch: Instant,
}

impl<'a> Writer<'a> {
    fn open(templates: &'a Templates, specs: &[FileSpec], epoch: Instant) -> Result<Writer<'a>> {
        let (files, gens) = crate::corpus::open_for_append(templates, specs)?;
        let mut acc = 0.0;
        let cumulative = specs
            .iter()
            .map(|s| {
                acc += s.weight;
                acc
            })
            .collect();
        Ok(Writer {
            files,
            gens,
            cumulative,
            rng: fastrand::Rng::with_seed(0x10ad),
            last: vec![0; specs.len()],
            lines: 0,
            bytes: 0,
            buf: Vec::with_capacity(512),
            epoch,
        })
    }

    /// One line, sequence `seq`, into file `f`.
    fn write(&mut self, f: usize, seq: u64) -> Result<()> {
        self.buf.clear();
        self.gens[f].next_line(&mut self.buf);
        let ns = self.epoch.elapsed().as_nanos() as u64;
        write!(self.buf, "{STAMP}{f}:{seq}:{ns}").expect("write to a Vec");
        self.buf.push(b'\n');
        self.files[f]
            .write_all(&self.buf)
            .context("write a sandbox file")?;
        self.last[f] = seq;
        Ok(())
    }

    /// The next line of a file picked by weight.
    fn write_next(&mut self) -> Result<()> {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = self.rng.f64() * total;
        let f = self
            .cumulative
            .partition_point(|&c| c <= x)
            .min(self.files.len() - 1);
        self.write(f, self.last[f] + 1)?;
        self.lines += 1;
        self.bytes += self.buf.len() as u64;
        Ok(())
    }
}

// ---------------------------------------------------------------- latency histogram

/// Latencies in buckets 1 % wide (from 1 µs to hours), and the exact maximum.
#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    pub n: u64,
    max_us: u64,
}

const GROWTH: f64 = 1.01;
const BUCKETS: usize = 2400;

impl Default for Hist {
    fn default() -> Hist {
        Hist::new()
    }
}

impl Hist {
    pub fn new() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            n: 0,
            max_us: 0,
        }
    }

    fn index(us: u64) -> usize {
        if us == 0 {
            0
        } else {
            ((us as f64).ln() / GROWTH.ln()) as usize + 1
        }
        .min(BUCKETS - 1)
    }

    pub fn add(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The nearest-rank percentile, in ms (the middle of its bucket).
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        if p >= 100.0 {
            return Some(self.max_us as f64 / 1000.0);
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let us = if i == 0 {
                    0.0
                } else {
                    GROWTH.powi(i as i32 - 1) * (1.0 + GROWTH) / 2.0
                };
                return Some(us.min(self.max_us as f64) / 1000.0);
            }
        }
        Some(self.max_us as f64 / 1000.0)
    }
}

// ---------------------------------------------------------------- tails

/// What one tail follows.
#[derive(Debug, Clone)]
pub struct TailSpec {
    pub selector: String,
    /// `job`, `instance`, `glob` or `all`.
    pub kind: &'static str,
    /// Per file of the layout: is it in the selection?
    wanted: Vec<bool>,
}

/// Globs that together cover every job; `*` first and only once.
const GLOBS: [&str; 16] = [
    "*",
    "payments/*",
    "*/devel/*",
    "mail/*",
    "search/*/*",
    "ads/*",
    "*/staging?/*",
    "data/*",
    "infra/*",
    "mobile/*",
    "ml/*",
    "web/*",
    "www-data/*",
    "cbe/*",
    "*/prod/*_*",
    "*/prod/*-*",
];

/// The tails' selectors: in turn a job, an instance, and two globs.
pub fn tail_specs(n: usize, specs: &[FileSpec]) -> Result<Vec<TailSpec>> {
    let mut out = Vec::with_capacity(n);
    let mut globs = 0;
    for i in 0..n {
        let round = i / 4;
        let (selector, kind) = match i % 4 {
            0 => {
                let (r, e, name, _) = JOBS[round % JOBS.len()];
                (format!("{r}/{e}/{name}"), "job")
            }
            1 => {
                let (r, e, name, _) = JOBS[(round * 7 + 3) % JOBS.len()];
                let instance = round as u32 % crate::corpus::INSTANCES;
                (format!("{r}/{e}/{name}/{instance}"), "instance")
            }
            _ => {
                let g = if globs == 0 {
                    0
                } else {
                    1 + (globs - 1) % (GLOBS.len() - 1)
                };
                globs += 1;
                let kind = if g == 0 { "all" } else { "glob" };
                (GLOBS[g].to_owned(), kind)
            }
        };
        let sel = Selector::parse(&selector).with_context(|| format!("selector {selector}"))?;
        let mut wanted = Vec::with_capacity(specs.len());
        for s in specs {
            let key: JobKey = s.job.parse().with_context(|| format!("job {}", s.job))?;
            wanted.push(sel.matches_job(&key) && sel.instances().contains(s.instance));
        }
        if !wanted.iter().any(|w| *w) {
            bail!("the tail selector {selector} matches no file");
        }
        out.push(TailSpec {
            selector,
            kind,
            wanted,
        });
    }
    Ok(out)
}

/// A tail's bookkeeping, shared between its reader thread and the run.
struct TailState {
    /// Per file: the next sequence number due (1 is the first after the warm-up).
    next: Vec<u64>,
    /// Per file: `lagged` events received before its last line arrived.
    lag_at_last: Vec<u64>,
    lagged_events: u64,
    missed_batches: u64,
    received: u64,
    /// Lines skipped after a `lagged` event (excused).
    skipped_after_lag: u64,
    /// Gaps with no `lagged` event before them, and their lines.
    silent_gaps: u64,
    silent_lines: u64,
    /// Lines that came again, or before one already received.
    disordered: u64,
    hist: Hist,
    ready: bool,
    last_event: Instant,
    /// `partial` line pieces by source, joined with what follows.
    pending: HashMap<String, String>,
}

impl TailState {
    fn new(files: usize) -> TailState {
        TailState {
            next: vec![1; files],
            lag_at_last: vec![0; files],
            lagged_events: 0,
            missed_batches: 0,
            received: 0,
            skipped_after_lag: 0,
            silent_gaps: 0,
            silent_lines: 0,
            disordered: 0,
            hist: Hist::new(),
            ready: false,
            last_event: Instant::now(),
            pending: HashMap::new(),
        }
    }
}

/// One tail's results.
#[derive(Clone, Serialize)]
pub struct TailResult {
    pub selector: String,
    pub kind: &'static str,
    pub files: usize,
    pub lines: u64,
    pub lagged_events: u64,
    pub lagged_batches: u64,
    pub lines_skipped_after_lag: u64,
    /// Gaps (and lines never received) with no `lagged` event to explain them.
    pub silent_gaps: u64,
    pub silent_lines: u64,
    pub lines_never_received: u64,
    pub disordered: u64,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    #[serde(skip)]
    pub hist: Hist,
}

impl TailResult {
    /// Did it miss, repeat or reorder lines without being told it lagged?
    pub fn fell_behind_silently(&self) -> bool {
        self.silent_gaps > 0 || self.lines_never_received > 0 || self.disordered > 0
    }
}

/// The part of a follow `line` event the check reads.
#[derive(Deserialize)]
struct LineEvent<'a> {
    #[serde(borrow)]
    text: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    job: Cow<'a, str>,
    instance: u32,
    #[serde(default)]
    partial: bool,
}

#[derive(Deserialize)]
struct LaggedEvent {
    missed: u64,
}

/// What every reader thread shares.
struct Shared {
    url: String,
    epoch: Instant,
    stopping: AtomicBool,
    searches_done: AtomicUsize,
    errors: Mutex<(usize, Vec<String>)>,
    specs: Vec<FileSpec>,
}

impl Shared {
    fn error(&self, msg: String) {
        let mut e = self.errors.lock().expect("errors lock");
        e.0 += 1;
        if e.1.len() < KEEP_ERRORS {
            eprintln!("  error: {msg}");
            e.1.push(msg);
        }
    }
}

/// Reads one follow stream until the run shuts its connection.
fn follow(shared: &Shared, spec: &TailSpec, state: &Mutex<TailState>, resp: rawhttp::Response) {
    let mut body = resp.body;
    let mut line = String::with_capacity(1024);
    let mut event = String::new();
    let mut data = String::new();
    let mut data_at = 0u64;
    loop {
        line.clear();
        match body.read_line(&mut line) {
            Ok(0) | Err(_) => {
                if !shared.stopping.load(Ordering::Relaxed) {
                    shared.error(format!(
                        "the follow stream of {} ended before the run did",
                        spec.selector
                    ));
                }
                return;
            }
            Ok(_) => {}
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if l.is_empty() {
            if !data.is_empty() || !event.is_empty() {
                let mut st = state.lock().expect("tail lock");
                st.last_event = Instant::now();
                handle_event(shared, spec, &mut st, &event, &data, data_at);
            }
            event.clear();
            data.clear();
        } else if let Some(v) = l.strip_prefix("event:") {
            event.clear();
            event.push_str(v.trim_start());
        } else if let Some(v) = l.strip_prefix("data:") {
            if data.is_empty() {
                data_at = shared.epoch.elapsed().as_nanos() as u64;
            } else {
                data.push('\n');
            }
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
        // `:` comments (keep-alives) and other fields are ignored.
    }
}

fn handle_event(
    shared: &Shared,
    spec: &TailSpec,
    st: &mut TailState,
    event: &str,
    data: &str,
    at_ns: u64,
) {
    match event {
        "jobs" => st.ready = true,
        "lagged" => {
            st.lagged_events += 1;
            st.missed_batches += serde_json::from_str::<LaggedEvent>(data).map_or(0, |l| l.missed);
        }
        "line" => {
            let ev: LineEvent = match serde_json::from_str(data) {
                Ok(ev) => ev,
                Err(e) => {
                    shared.error(format!(
                        "tail {}: a line event that does not parse ({e}): {data}",
                        spec.selector
                    ));
                    return;
                }
            };
            if ev.partial {
                st.pending
                    .entry(ev.source.into_owned())
                    .or_default()
                    .push_str(&ev.text);
                return;
            }
            let joined;
            let text: &str = match st.pending.remove(ev.source.as_ref()) {
                Some(mut p) => {
                    p.push_str(&ev.text);
                    joined = p;
                    &joined
                }
                None => &ev.text,
            };
            let Some((f, seq, written_ns)) = parse_stamp(text) else {
                shared.error(format!(
                    "tail {}: a line without a stamp: {text}",
                    spec.selector
                ));
                return;
            };
            let matches_file = shared
                .specs
                .get(f)
                .is_some_and(|s| s.job == ev.job && s.instance == ev.instance);
            if !matches_file || !spec.wanted[f] {
                shared.error(format!(
                    "tail {}: a line of {}/{} (file {f}), outside its selection or not its file",
                    spec.selector, ev.job, ev.instance
                ));
                return;
            }
            if seq == 0 {
                // A warm-up line: written before the tail started.
                return;
            }
            st.received += 1;
            st.hist.add(at_ns.saturating_sub(written_ns) / 1000);
            let due = st.next[f];
            if seq < due {
                st.disordered += 1;
                return;
            }
            if seq > due {
                if st.lagged_events > st.lag_at_last[f] {
                    st.skipped_after_lag += seq - due;
                } else {
                    st.silent_gaps += 1;
                    st.silent_lines += seq - due;
                }
            }
            st.next[f] = seq + 1;
            st.lag_at_last[f] = st.lagged_events;
        }
        _ => {}
    }
}

/// `(file, sequence, written at)` from a line's stamp.
fn parse_stamp(text: &str) -> Option<(usize, u64, u64)> {
    let at = text.rfind(STAMP)?;
    let mut it = text[at + STAMP.len()..].split(':');
    let f = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let ns = it.next()?.trim_end().parse().ok()?;
    Some((f, seq, ns))
}

// ---------------------------------------------------------------- searches

/// One of the searches the searchers loop over.
pub struct SearchCase {
    pub id: &'static str,
    pub what: &'static str,
    job: Option<&'static str>,
    pattern: &'static str,
    fixed: bool,
    ignore_case: bool,
    /// Only the last this many seconds.
    last_secs: Option<i64>,
}

pub const SEARCHES: [SearchCase; 5] = [
    SearchCase {
        id: "rare_literal",
        what: "rare literal, every job (`-F OutOfMemoryError`)",
        job: None,
        pattern: "OutOfMemoryError",
        fixed: true,
        ignore_case: false,
        last_secs: None,
    },
    SearchCase {
        id: "regex_literal",
        what: "regex with a literal, every job (`Exception in thread \"worker-\\d+\" java\\.lang\\.\\w+`)",
        job: None,
        pattern: r#"Exception in thread "worker-\d+" java\.lang\.\w+"#,
        fixed: false,
        ignore_case: false,
        last_secs: None,
    },
    SearchCase {
        id: "ignore_case",
        what: "case-insensitive literal, every job (`-i 'connection reset'`)",
        job: None,
        pattern: "connection reset",
        fixed: true,
        ignore_case: true,
        last_secs: None,
    },
    SearchCase {
        id: "one_job",
        what: "literal in one job (`-F 'pool exhausted' payments/prod/ledger`)",
        job: Some("payments/prod/ledger"),
        pattern: "pool exhausted",
        fixed: true,
        ignore_case: false,
        last_secs: None,
    },
    SearchCase {
        id: "last_minute",
        what: "regex, every job, the last minute (`Traceback|Exception`, since now − 60 s)",
        job: None,
        pattern: "Traceback|Exception",
        fixed: false,
        ignore_case: false,
        last_secs: Some(60),
    },
];

impl SearchCase {
    fn path(&self) -> String {
        let mut p = format!("{SEARCH_PATH}?pattern={}", rawhttp::encode(self.pattern));
        if self.fixed {
            p.push_str("&fixed=true");
        }
        if self.ignore_case {
            p.push_str("&ignore_case=true");
        }
        if let Some(j) = self.job {
            p.push_str(&format!("&job={}", rawhttp::encode(j)));
        }
        if let Some(s) = self.last_secs {
            let since = cblogs_core::time::now_ns() - s * 1_000_000_000;
            p.push_str(&format!("&since_ns={since}"));
        }
        p
    }
}

/// One search, done.
#[derive(Debug, Clone)]
pub struct SearchRecord {
    pub case: usize,
    /// From the request that was served to its summary.
    pub served_ms: f64,
    /// From the first request, waits after 503 included.
    pub total_ms: f64,
    pub waits: u64,
    pub matched: u64,
    pub truncated: bool,
}

/// Loops over the searches until the run stops.
fn searcher(shared: &Shared, first: usize) -> Vec<SearchRecord> {
    let mut out = Vec::new();
    let mut i = first;
    while !shared.stopping.load(Ordering::Relaxed) {
        let case = i % SEARCHES.len();
        i += 1;
        match search_once(shared, case) {
            Ok(Some(r)) => {
                out.push(r);
                shared.searches_done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => break,
            Err(e) => {
                shared.error(format!("search {}: {e:#}", SEARCHES[case].id));
                // Do not spin on a broken server.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    out
}

/// One search, retried after each 503 search_limit; `None` if the run
/// stopped while it waited.
fn search_once(shared: &Shared, case: usize) -> Result<Option<SearchRecord>> {
    let c = &SEARCHES[case];
    let first = Instant::now();
    let mut waits = 0;
    loop {
        let started = Instant::now();
        let resp = rawhttp::get(&shared.url, &c.path(), Some(Duration::from_secs(120)))
            .context("request")?;
        match resp.status {
            200 => {}
            503 => {
                let retry = resp
                    .header("retry-after")
                    .and_then(|v| v.parse::<u64>().ok());
                let body = resp.text().unwrap_or_default();
                let Some(secs) = retry.filter(|_| body.contains("search.max_concurrent")) else {
                    bail!("503 without Retry-After or not for search.max_concurrent: {body}");
                };
                waits += 1;
                let until = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < until {
                    if shared.stopping.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                continue;
            }
            s => bail!("HTTP {s}: {}", resp.text().unwrap_or_default()),
        }
        let mut body = resp.body;
        let mut line = String::new();
        let mut summary = None;
        loop {
            line.clear();
            if body.read_line(&mut line).context("read the answer")? == 0 {
                break;
            }
            if line.contains(r#""type":"summary""#) {
                match serde_json::from_str::<SearchEvent>(&line) {
                    Ok(SearchEvent::Summary(s)) => summary = Some(s),
                    _ => bail!("a summary that does not parse: {line}"),
                }
            }
        }
        let Some(s) = summary else {
            bail!("the answer ended without a summary");
        };
        let served_ms = started.elapsed().as_secs_f64() * 1000.0;
        return Ok(Some(SearchRecord {
            case,
            served_ms,
            total_ms: first.elapsed().as_secs_f64() * 1000.0,
            waits,
            matched: s.matched,
            truncated: s.truncated,
        }));
    }
}

// ---------------------------------------------------------------- the run

/// `cblogs_ingest_bytes_total` from cblogsd's /metrics.
fn ingest_bytes(url: &str) -> Result<f64> {
    let resp = rawhttp::get(
        url,
        cblogs_core::api::METRICS_PATH,
        Some(Duration::from_secs(30)),
    )
    .context("GET /metrics")?;
    if resp.status != 200 {
        bail!("/metrics answered {}", resp.status);
    }
    let text = resp.text().context("read /metrics")?;
    text.lines()
        .find_map(|l| l.strip_prefix("cblogs_ingest_bytes_total "))
        .and_then(|v| v.trim().parse().ok())
        .context("no cblogs_ingest_bytes_total in /metrics")
}

fn wait_stored(url: &str, lines: u64, within: Duration) -> Result<u64> {
    let deadline = Instant::now() + within;
    loop {
        let stored = stored_lines(url)?;
        if stored >= lines || Instant::now() > deadline {
            return Ok(stored);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn run(templates: &Templates, dir: &Path, s: &Settings) -> Result<Outcome> {
    let extra = format!(
        "[read]\nmax_follows_per_client = {}\n",
        (s.tails + 8).max(64)
    );
    let server = crate::start_cblogsd_with(&dir.join("data"), Some(&extra));
    let (agent, specs) = lay_out(&dir.join("agent"))?;
    let mut shipper = Shipper::start(&agent, &dir.join("state"), &server.url, "");
    let server_pid = server.pid().context("cblogsd is not running")?;
    let shipper_pid = shipper.pid().context("the shipper is not running")?;
    let epoch = Instant::now();
    let mut writer = Writer::open(templates, &specs, epoch)?;

    // A first line in every file: the jobs exist before anyone follows them.
    for f in 0..specs.len() {
        writer.write(f, 0)?;
    }
    let warm = specs.len() as u64;
    let stored = wait_stored(&server.url, warm, Duration::from_secs(60))?;
    if stored != warm {
        bail!("cblogsd holds {stored} lines a minute after the {warm} warm-up lines were written");
    }

    eprintln!(
        "  cblogsd and the shipper up, {warm} warm-up lines stored ({:.1} s)",
        epoch.elapsed().as_secs_f64()
    );
    let tails = tail_specs(s.tails, &specs)?;
    let shared = Arc::new(Shared {
        url: server.url.clone(),
        epoch,
        stopping: AtomicBool::new(false),
        searches_done: AtomicUsize::new(0),
        errors: Mutex::new((0, Vec::new())),
        specs: specs.clone(),
    });
    let mut states = Vec::new();
    let mut conns = Vec::new();
    let mut readers = Vec::new();
    for t in &tails {
        let path = format!(
            "{}?job={}&n=0",
            cblogs_core::api::FOLLOW_PATH,
            rawhttp::encode(&t.selector)
        );
        let resp = rawhttp::get(&server.url, &path, None)
            .with_context(|| format!("follow {}", t.selector))?;
        if resp.status != 200 {
            let status = resp.status;
            bail!(
                "follow {} answered {status}: {}",
                t.selector,
                resp.text().unwrap_or_default()
            );
        }
        let state = Arc::new(Mutex::new(TailState::new(specs.len())));
        conns.push(resp.conn.try_clone().context("clone a connection")?);
        let (sh, sp, st) = (shared.clone(), t.clone(), state.clone());
        readers.push(std::thread::spawn(move || follow(&sh, &sp, &st, resp)));
        states.push(state);
    }
    let ready_by = Instant::now() + Duration::from_secs(30);
    while !states.iter().all(|s| s.lock().expect("tail lock").ready) {
        if Instant::now() > ready_by {
            bail!("not every follow stream had started within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "  {} tails following; {} searchers; writing {} MB/s for {} s",
        tails.len(),
        s.searches,
        s.rate_mb,
        s.secs
    );

    let searchers: Vec<_> = (0..s.searches)
        .map(|i| {
            let sh = shared.clone();
            std::thread::spawn(move || searcher(&sh, i))
        })
        .collect();

    // The writer, paced: every 2 ms, as many lines as the rate allows by then.
    let cpu0 = (
        cpu_secs(server_pid),
        cpu_secs(shipper_pid),
        cpu_secs(std::process::id()),
    );
    let bytes0 = ingest_bytes(&server.url)?;
    let started = Instant::now();
    let rate = s.rate_mb * MB;
    let run_for = Duration::from_secs(s.secs);
    let mut report_at = started + Duration::from_secs(10);
    loop {
        let elapsed = started.elapsed();
        if elapsed >= run_for {
            break;
        }
        let due = (elapsed.as_secs_f64() * rate) as u64;
        // Catching up (the writer was not scheduled): never past the end.
        let mut n = 0u32;
        while writer.bytes < due {
            writer.write_next()?;
            n += 1;
            if n.is_multiple_of(256) && started.elapsed() >= run_for {
                break;
            }
        }
        if Instant::now() >= report_at {
            eprintln!(
                "  {:.0} s: {:.1} MB written, {} searches done",
                elapsed.as_secs_f64(),
                writer.bytes as f64 / MB,
                shared.searches_done.load(Ordering::Relaxed)
            );
            report_at += Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes1 = ingest_bytes(&server.url)?;
    let cpu1 = (
        cpu_secs(server_pid),
        cpu_secs(shipper_pid),
        cpu_secs(std::process::id()),
    );
    shared.stopping.store(true, Ordering::Relaxed);
    let mut records = Vec::new();
    for h in searchers {
        records.extend(h.join().unwrap_or_default());
    }

    // Every line stored, then every tail shown it (or told it lagged).
    let total = warm + writer.lines;
    let stopped = Instant::now();
    let stored = wait_stored(&server.url, total, Duration::from_secs(120))?;
    let drain_secs = stopped.elapsed().as_secs_f64();
    if stored != total {
        shared.error(format!(
            "cblogsd holds {stored} lines, {total} were written (after {drain_secs:.0} s)"
        ));
    }
    let last = writer.last.clone();
    let tails_by = Instant::now() + TAIL_DRAIN;
    loop {
        let done = states.iter().zip(&tails).all(|(st, t)| {
            let st = st.lock().expect("tail lock");
            let mut all_in = true;
            let mut excused = true;
            for f in (0..last.len()).filter(|&f| t.wanted[f]) {
                if st.next[f] <= last[f] {
                    all_in = false;
                    excused &= st.lagged_events > st.lag_at_last[f];
                }
            }
            all_in || (excused && st.last_event.elapsed() > TAIL_IDLE)
        });
        if done || Instant::now() > tails_by {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for c in &conns {
        rawhttp::shut(c);
    }
    for h in readers {
        let _ = h.join();
    }

    let mut results = Vec::new();
    for (st, t) in states.iter().zip(&tails) {
        let st = st.lock().expect("tail lock");
        let (mut never, mut skipped_end) = (0, 0);
        for f in (0..last.len()).filter(|&f| t.wanted[f]) {
            if st.next[f] <= last[f] {
                let n = last[f] + 1 - st.next[f];
                if st.lagged_events > st.lag_at_last[f] {
                    skipped_end += n;
                } else {
                    never += n;
                }
            }
        }
        results.push(TailResult {
            selector: t.selector.clone(),
            kind: t.kind,
            files: t.wanted.iter().filter(|w| **w).count(),
            lines: st.received,
            lagged_events: st.lagged_events,
            lagged_batches: st.missed_batches,
            lines_skipped_after_lag: st.skipped_after_lag + skipped_end,
            silent_gaps: st.silent_gaps,
            silent_lines: st.silent_lines,
            lines_never_received: never,
            disordered: st.disordered,
            latency_p50_ms: st.hist.percentile_ms(50.0),
            latency_p99_ms: st.hist.percentile_ms(99.0),
            latency_max_ms: st.hist.percentile_ms(100.0),
            hist: st.hist.clone(),
        });
    }
    let (error_count, errors) = {
        let e = shared.errors.lock().expect("errors lock");
        (e.0, e.1.clone())
    };
    let outcome = Outcome {
        files: specs.len(),
        secs,
        written_lines: writer.lines,
        written_bytes: writer.bytes,
        ingest_bytes: bytes1 - bytes0,
        stored_lines: stored,
        drain_secs,
        server_peak_rss_mib: peak_rss_mib(server_pid),
        shipper_peak_rss_mib: peak_rss_mib(shipper_pid),
        server_cpu_secs: cpu1.0 - cpu0.0,
        shipper_cpu_secs: cpu1.1 - cpu0.1,
        bench_cpu_secs: cpu1.2 - cpu0.2,
        tails: results,
        searches: records,
        errors,
        error_count,
    };
    shipper.stop();
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse_back() {
        assert_eq!(
            parse_stamp("GET /x 200 cbload:12:345:6789"),
            Some((12, 345, 6789))
        );
        assert_eq!(parse_stamp("no stamp"), None);
    }

    #[test]
    fn histogram_percentiles_within_a_percent() {
        let mut h = Hist::new();
        for us in 1..=10_000u64 {
            h.add(us * 100);
        }
        let p50 = h.percentile_ms(50.0).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.01, "{p50}");
        assert_eq!(h.percentile_ms(100.0), Some(1000.0));
    }

    #[test]
    fn the_tails_cover_every_job_and_all_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let (_, specs) = lay_out(dir.path()).expect("the layout");
        let tails = tail_specs(64, &specs).unwrap();
        assert_eq!(tails.iter().filter(|t| t.kind == "all").count(), 1);
        for kind in ["job", "instance", "glob"] {
            assert!(tails.iter().any(|t| t.kind == kind), "{kind}");
        }
        // The globs other than `*` cover every file between them.
        for f in 0..specs.len() {
            assert!(tails.iter().any(|t| t.kind == "glob" && t.wanted[f]));
        }
        let inst = tails.iter().find(|t| t.kind == "instance").unwrap();
        assert_eq!(inst.wanted.iter().filter(|w| **w).count(), 4);
    }

    #[test]
    fn gaps_are_silent_unless_a_lagged_event_came_first() {
        let dir = tempfile::tempdir().unwrap();
        let (_, specs) = lay_out(dir.path()).expect("the layout");
        let tails = tail_specs(1, &specs).unwrap();
        let spec = &tails[0]; // www-data/prod/hello
        let f = spec.wanted.iter().position(|w| *w).unwrap();
        let g = spec.wanted.iter().rposition(|w| *w).unwrap();
        let other = spec.wanted.iter().position(|w| !*w).unwrap();
        let shared = Shared {
            url: String::new(),
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            searches_done: AtomicUsize::new(0),
            errors: Mutex::new((0, Vec::new())),
            specs: specs.clone(),
        };
        let line = |file: usize, seq: u64, partial: bool, text: &str| {
            serde_json::json!({
                "text": format!("{text}{STAMP}{file}:{seq}:5"),
                "source": format!("s{file}"),
                "job": specs[file].job,
                "instance": specs[file].instance,
                "partial": partial,
            })
            .to_string()
        };
        let mut st = TailState::new(specs.len());
        let feed = |st: &mut TailState, event: &str, data: &str| {
            handle_event(&shared, spec, st, event, data, 1_000_005)
        };
        feed(&mut st, "line", &line(f, 1, false, "a"));
        feed(&mut st, "line", &line(f, 2, false, "b"));
        assert_eq!((st.received, st.silent_gaps, st.disordered), (2, 0, 0));
        // 3 and 4 never came, nobody said so.
        feed(&mut st, "line", &line(f, 5, false, "c"));
        assert_eq!((st.silent_gaps, st.silent_lines), (1, 2));
        // A repeat.
        feed(&mut st, "line", &line(f, 5, false, "c"));
        assert_eq!(st.disordered, 1);
        // Told first: excused, for every file.
        feed(&mut st, "lagged", r#"{"missed":7}"#);
        feed(&mut st, "line", &line(f, 9, false, "d"));
        feed(&mut st, "line", &line(g, 4, false, "e"));
        assert_eq!((st.silent_gaps, st.skipped_after_lag), (1, 3 + 3));
        assert_eq!((st.lagged_events, st.missed_batches), (1, 7));
        // ...but only for the gap right after it.
        feed(&mut st, "line", &line(f, 11, false, "f"));
        assert_eq!(st.silent_gaps, 2);
        // A partial piece joins what follows; the stamp is on the whole line.
        let piece = serde_json::json!({
            "text": "first half ", "source": format!("s{g}"),
            "job": specs[g].job, "instance": specs[g].instance, "partial": true,
        })
        .to_string();
        feed(&mut st, "line", &piece);
        feed(&mut st, "line", &line(g, 5, false, "second half"));
        assert_eq!(st.next[g], 6);
        assert_eq!(st.silent_gaps, 2);
        // 1 ms from write to receipt.
        assert_eq!(st.hist.max_us, 1000);
        // A line of a file outside the selection is an error.
        feed(&mut st, "line", &line(other, 1, false, "x"));
        assert_eq!(shared.errors.lock().unwrap().0, 1);
    }
}
