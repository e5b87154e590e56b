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

mod histogram;
pub mod report;
mod searchers;
mod shared;
mod sse;
mod tail_check;
mod tail_specs;
mod tails;
mod writer;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_fake_agent::lines::Templates;
use cblogs_testkit::Shipper;
use serde::Serialize;

use crate::corpus::lay_out;
use crate::ingest::stored_lines;
use crate::procs::{cpu_secs, peak_rss_mib, MB};
use crate::rawhttp;
use searchers::{searcher, SearchRecord};
use shared::Shared;
use tail_check::TailResult;
use tail_specs::tail_specs;
use tails::Tails;
use writer::Writer;

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

/// CPU seconds so far of cblogsd, the shipper and this harness.
fn cpu_of(server_pid: u32, shipper_pid: u32) -> (f64, f64, f64) {
    (
        cpu_secs(server_pid),
        cpu_secs(shipper_pid),
        cpu_secs(std::process::id()),
    )
}

pub fn run(templates: &Templates, dir: &Path, s: &Settings) -> Result<Outcome> {
    let extra = format!(
        "[read]\nmax_follows_per_client = {}\n",
        (s.tails + 8).max(64)
    );
    let server = crate::cblogsd::start_with(&dir.join("data"), Some(&extra));
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
    let shared = Arc::new(Shared::new(&server.url, epoch, &specs));
    let tails = Tails::open(&shared, tail_specs(s.tails, &specs)?)?;
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

    let cpu0 = cpu_of(server_pid, shipper_pid);
    let bytes0 = ingest_bytes(&server.url)?;
    let wrote_for =
        writer.write_paced(s.rate_mb * MB, Duration::from_secs(s.secs), |at, bytes| {
            eprintln!(
                "  {:.0} s: {:.1} MB written, {} searches done",
                at.as_secs_f64(),
                bytes as f64 / MB,
                shared.searches_done.load(Ordering::Relaxed)
            )
        })?;
    let secs = wrote_for.as_secs_f64();
    let bytes1 = ingest_bytes(&server.url)?;
    let cpu1 = cpu_of(server_pid, shipper_pid);
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
    let results = tails.finish(&writer.last);
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
