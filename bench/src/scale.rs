//! The busy workload's scaling curve (issue 17): the corpus of `ingest`
//! and `search` at several sizes (2, 8 and 32 GiB), each size ingested by
//! a cblogsd of its own, to see how each cost grows with the store.
//!
//! One run of one size:
//! 1. the corpus posted as in `ingest` (four posters, requests built
//!    before the clock starts) and flushed: sustained ingest with merges
//!    running beside it, as they do in production;
//! 2. the line clock moved on by one line of another source two days
//!    later (flushed: windows settle by the newest line published), so
//!    the hour ingested settles and is merged whole, and every
//!    merge waited for: storage after merges against per-file `zstd -3`,
//!    and what the merges cost per GB;
//! 3. cblogsd stopped and started again on the full store: start-up time,
//!    its memory then, and its first search;
//! 4. the reads: a needle (one line planted in the middle of the busiest
//!    file, found once), the dense regex of `search` against the
//!    decompression of the blocks it read, `tail -n 100`.
//!
//! ripgrep over the raw files is the needle's and the dense regex's
//! baseline, once per size; the per-line tantivy baseline of `ingest` is
//! left out (at 32 GiB neither the disk nor the time would hold it).
//! The lines are given times two days back, so that the clock line
//! settles their window (`storage.partition_secs`, a day) and nothing
//! settles it before.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_core::wire::{Batch, IngestRequest, WireLine, INGEST_PATH};
use cblogs_core::{Source, Stream};
use cblogs_fake_agent::lines::Templates;
use cblogs_testkit::{SHIPPER_CLUSTER, SHIPPER_HOST};

use crate::corpus::{self, Corpus};
use crate::figures::run_dir;
use crate::procs::{cpu_secs, rss_mib, MB};
use crate::report::{self, Figure, Goal};
use crate::search::{self, Case};
use crate::{baselines, ingest, quiet};

/// What the scale run is asked for: sizes, and runs of each.
pub struct ScalePlan {
    pub sizes: Vec<u64>,
    pub runs: Vec<usize>,
}

/// The planted line: no generated line holds any of its tokens.
const NEEDLE: &str = "scale-needle-5e1f0c";

/// The needle search: a fixed string over every job.
const NEEDLE_CASE: Case = Case {
    id: "scale.needle",
    what: "needle (one line), every job",
    job: None,
    stream: None,
    pattern: NEEDLE,
    fixed: true,
    max_ratio: 1.0,
    max_floor_ratio: None,
};

/// `search.dense_regex`: `Exception.*\d+` over one job's stderr.
const DENSE: &Case = &search::CASES[3];

/// Timed repeats of each read within a run (after a warm-up).
const READS: usize = 5;

/// What one run of one size measured.
struct Measured {
    ingest_mb_s: f64,
    acked_secs: f64,
    peak_rss_mib: f64,
    cpu_secs_per_gb: f64,
    merge_secs_per_gb: f64,
    merges: u64,
    merged_in: u64,
    merged_out: u64,
    storage: f64,
    blocks_share: f64,
    index_share: f64,
    splits: usize,
    blocks: u64,
    startup_secs: f64,
    rss_after_start_mib: f64,
    first_needle_ms: f64,
    needle_s: f64,
    needle_inside_ms: f64,
    needle_blocks: (u64, u64),
    dense_s: f64,
    dense_matches: u64,
    dense_floor_s: f64,
    dense_inside_ms: f64,
    dense_blocks: (u64, u64),
    tail_ms: f64,
}

/// Every size of the plan, `runs` runs each: the report's figures, handed
/// to `done` after each size (a 32 GiB size takes most of an hour: what
/// came before it is kept even if it fails).
pub fn scale_figures(
    plan: &ScalePlan,
    templates: &Templates,
    work: &Path,
    mut done: impl FnMut(&[Figure]) -> Result<()>,
) -> Result<()> {
    let mut figures = Vec::new();
    for (i, &size) in plan.sizes.iter().enumerate() {
        let runs = plan.runs.get(i).or(plan.runs.last()).copied().unwrap_or(1);
        figures.extend(one_size(size, runs, templates, work)?);
        done(&figures)?;
    }
    Ok(())
}

/// `2 GiB`, or bytes when the size is not whole GiB or MiB.
fn size_label(size: u64) -> String {
    if size.is_multiple_of(1 << 30) {
        format!("{} GiB", size >> 30)
    } else if size.is_multiple_of(1 << 20) {
        format!("{} MiB", size >> 20)
    } else {
        format!("{size} B")
    }
}

fn one_size(size: u64, runs: usize, templates: &Templates, work: &Path) -> Result<Vec<Figure>> {
    let label = size_label(size);
    let dir = run_dir(work, &format!("scale-{}", label.replace(' ', "")), 0)?;
    eprintln!("{label}: generating the corpus");
    let corpus = corpus::generate(&dir.join("corpus"), size, templates)?;
    plant_needle(&corpus)?;
    let raw = corpus.bytes as f64;
    eprintln!("{label}: zstd -3 of every file");
    let zstd_ratio = baselines::zstd3(&corpus)?.bytes as f64 / raw;
    eprintln!("{label}: building the ingest requests");
    let two_days_ago = cblogs_core::time::now_ns() - 2 * 86_400 * 1_000_000_000;
    let bodies = ingest::build_bodies_ending(&corpus, two_days_ago)?;
    let mut all = Vec::new();
    for run in 0..runs {
        let m = one_run(&corpus, &bodies, &run_dir(&dir, "run", run)?)?;
        eprintln!(
            "{label} run {}: ingest {:.1} MB/s, storage {:.3} × raw, start-up {:.2} s, needle {:.0} ms inside, dense {:.3} s (floor {:.3} s), tail {:.1} ms",
            run + 1,
            m.ingest_mb_s,
            m.storage,
            m.startup_secs,
            m.needle_inside_ms,
            m.dense_s,
            m.dense_floor_s,
            m.tail_ms
        );
        all.push(m);
        let _ = std::fs::remove_dir_all(dir.join(format!("run-{run}")));
    }
    drop(bodies);
    eprintln!("{label}: rg over the raw files");
    let (rg_needle, found) = search::rg(&corpus, &NEEDLE_CASE, runs)?;
    if found != 1 {
        bail!("rg found the needle {found} times");
    }
    let (rg_dense, rg_matches) = search::rg(&corpus, DENSE, runs)?;
    if let Some(m) = all.iter().find(|m| m.dense_matches != rg_matches) {
        bail!(
            "the dense regex: cblogs grep printed {} lines, rg {rg_matches}",
            m.dense_matches
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(size_figures(
        &label, raw, zstd_ratio, &all, rg_needle, rg_dense,
    ))
}

fn size_figures(
    label: &str,
    raw: f64,
    zstd_ratio: f64,
    all: &[Measured],
    rg_needle: Vec<f64>,
    rg_dense: Vec<f64>,
) -> Vec<Figure> {
    let id = |what: &str| format!("scale.{}.{what}", label.replace(' ', ""));
    let each = |f: &dyn Fn(&Measured) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let med = |f: &dyn Fn(&Measured) -> f64| report::median(&each(f)).unwrap_or(0.0);
    let last = all.last();
    let runs = if all.len() == 1 {
        "one run".to_owned()
    } else {
        format!("medians of {} runs", all.len())
    };
    let (needle_read, needle_total) = last.map_or((0, 0), |m| m.needle_blocks);
    let (dense_read, dense_total) = last.map_or((0, 0), |m| m.dense_blocks);
    vec![
        Figure::new(
            &id("ingest"),
            &format!("{label}: server ingest with merges running, until flushed"),
            "MB/s",
            each(&|m| m.ingest_mb_s),
        )
        .goal(Goal::AtLeast(100.0))
        .note(format!(
            "{runs}; acknowledged after {:.1} s; cblogsd {:.0} CPU-seconds per GB, merges included; peak RSS {:.0} MiB",
            med(&|m| m.acked_secs),
            med(&|m| m.cpu_secs_per_gb),
            med(&|m| m.peak_rss_mib)
        )),
        Figure::new(
            &id("merge"),
            &format!("{label}: merge seconds per GB of raw lines"),
            "s/GB",
            each(&|m| m.merge_secs_per_gb),
        )
        .note(format!(
            "merges: {}, {:.2} GB of blocks in, {:.2} GB out; the merge thread's wall time (at merge.nice, recompressing at merge.zstd_level)",
            last.map_or(0, |m| m.merges),
            last.map_or(0, |m| m.merged_in) as f64 / 1e9,
            last.map_or(0, |m| m.merged_out) as f64 / 1e9,
        )),
        Figure::new(
            &id("storage"),
            &format!("{label}: storage after merges, per raw byte"),
            "× raw",
            each(&|m| m.storage),
        )
        .goal(Goal::AtMost(0.15))
        .baseline("zstd -3 of each file", vec![zstd_ratio])
        .ratio_goal(Goal::AtMost(1.15))
        .note(format!(
            "blocks {:.3} × raw, index {:.3}; {} splits, {} blocks",
            med(&|m| m.blocks_share),
            med(&|m| m.index_share),
            last.map_or(0, |m| m.splits),
            last.map_or(0, |m| m.blocks)
        )),
        Figure::new(
            &id("needle_inside"),
            &format!("{label}: needle `cblogs grep -F`, inside cblogsd"),
            "ms",
            each(&|m| m.needle_inside_ms),
        )
        .goal(Goal::AtMost(100.0))
        .note(format!("{needle_read} of {needle_total} blocks read")),
        Figure::new(
            &id("needle"),
            &format!("{label}: needle `cblogs grep -F`, every job, start to exit"),
            "s",
            each(&|m| m.needle_s),
        )
        .baseline("rg over every raw file", rg_needle),
        Figure::new(
            &id("dense"),
            &format!("{label}: dense regex `{}`, one job's stderr", DENSE.pattern),
            "s",
            each(&|m| m.dense_s),
        )
        .baseline(
            "zstd decompression of the blocks read, every core",
            each(&|m| m.dense_floor_s),
        )
        .ratio_goal(Goal::AtMost(1.3))
        .note(format!(
            "{:.0} ms inside cblogsd, {dense_read} of {dense_total} blocks read; rg over the raw files {:.3} s",
            med(&|m| m.dense_inside_ms),
            report::median(&rg_dense).unwrap_or(0.0)
        )),
        Figure::new(
            &id("tail"),
            &format!("{label}: `cblogs tail -n 100`, start to exit"),
            "ms",
            each(&|m| m.tail_ms),
        )
        .goal(Goal::AtMost(30.0)),
        Figure::new(
            &id("startup"),
            &format!("{label}: cblogsd start-up on the full store, until it listens"),
            "s",
            each(&|m| m.startup_secs),
        )
        .goal(Goal::AtMost(2.0))
        .note(format!(
            "RSS then {:.0} MiB; its first needle grep {:.0} ms (start to exit); {:.1} GB of raw lines",
            med(&|m| m.rss_after_start_mib),
            med(&|m| m.first_needle_ms),
            raw / 1e9
        )),
    ]
}

fn one_run(corpus: &Corpus, bodies: &ingest::Bodies, dir: &Path) -> Result<Measured> {
    let raw = corpus.bytes as f64;
    let data_dir = dir.join("data");
    let (mut server, timed) = ingest::post_and_flush(corpus, bodies, &data_dir, None)?;
    let url = server.url.clone();
    // Windows settle by the newest line published: the clock's line is
    // flushed into a split of its own first.
    tick_clock(&url)?;
    ingest::flush(&url)?;
    let merges = quiet::wait_for_merges(&url)?;
    let pid = server.pid().context("cblogsd is not running")?;
    let cpu = cpu_secs(pid);
    let published = quiet::published_splits(&url)?;
    let ids: Vec<&str> = published.iter().map(|(id, _)| id.as_str()).collect();
    let blocks: u64 = published.iter().map(|(_, blocks)| blocks).sum();
    let (blocks_bytes, index_bytes) = quiet::splits_bytes(&data_dir.join("bucket/splits"), &ids);
    let other = crate::procs::dir_bytes(&data_dir.join("wal"))
        + crate::procs::dir_bytes(&data_dir.join("building"));

    server.stop();
    let started = Instant::now();
    server.restart();
    let startup_secs = started.elapsed().as_secs_f64();
    let pid = server.pid().context("cblogsd is not running")?;
    let rss_after_start_mib = rss_mib(pid);
    let first_needle_ms = search::needle_grep(&url, NEEDLE, 1)?
        .first()
        .copied()
        .unwrap_or(0.0);
    let needle_s = report::median(&search::needle_grep(&url, NEEDLE, READS)?).unwrap_or(0.0) / 1e3;
    let needle = search::server_summary(&url, &NEEDLE_CASE, false)?;
    let (dense, dense_matches) = search::cblogs(&url, DENSE, READS)?;
    let dense_inside = search::server_summary(&url, DENSE, true)?;
    let (floor, _) = search::decompression_floor(&data_dir, &dense_inside, READS)?;
    let job = corpus::JOBS[0];
    let tail = ingest::tail_n100(&url, &format!("{}/{}/{}", job.0, job.1, job.2), 10)?;
    let gb = raw / 1e9;
    Ok(Measured {
        ingest_mb_s: raw / MB / timed.secs,
        acked_secs: timed.acked_secs,
        peak_rss_mib: timed.peak_rss_mib,
        cpu_secs_per_gb: cpu / gb,
        merge_secs_per_gb: merges["seconds"].as_f64().unwrap_or(0.0) / gb,
        merges: merges["done"].as_u64().unwrap_or(0),
        merged_in: merges["bytes_in"].as_u64().unwrap_or(0),
        merged_out: merges["bytes_out"].as_u64().unwrap_or(0),
        storage: (blocks_bytes + index_bytes + other) as f64 / raw,
        blocks_share: blocks_bytes as f64 / raw,
        index_share: index_bytes as f64 / raw,
        splits: ids.len(),
        blocks,
        startup_secs,
        rss_after_start_mib,
        first_needle_ms,
        needle_s,
        needle_inside_ms: needle.took_ms as f64,
        needle_blocks: (needle.blocks_read, needle.blocks_total),
        dense_s: report::median(&dense).unwrap_or(0.0),
        dense_matches,
        dense_floor_s: report::median(&floor).unwrap_or(0.0),
        dense_inside_ms: dense_inside.took_ms as f64,
        dense_blocks: (dense_inside.blocks_read, dense_inside.blocks_total),
        tail_ms: report::median(&tail).unwrap_or(0.0),
    })
}

/// Writes [`NEEDLE`] over a line in the middle of the first (busiest)
/// file, padded with spaces to that line's length: the corpus keeps its
/// size and its line count, and holds the needle once.
fn plant_needle(corpus: &Corpus) -> Result<()> {
    let path = &corpus.files.first().context("an empty corpus")?.spec.path;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("open {}", path.display()))?;
    let len = file.metadata()?.len();
    let mut at = len / 2;
    let mut buf = vec![0; 64 << 10];
    loop {
        let n = file.read_at(&mut buf, at)?;
        let window = &buf[..n];
        // The first whole line after `at`, long enough to hold the needle.
        let Some(start) = window.iter().position(|&b| b == b'\n').map(|p| p + 1) else {
            bail!("no line break in {} after byte {at}", path.display());
        };
        let Some(end) = window[start..].iter().position(|&b| b == b'\n') else {
            bail!("no long enough line in {}", path.display());
        };
        if end >= NEEDLE.len() {
            let mut line = NEEDLE.as_bytes().to_vec();
            line.resize(end, b' ');
            file.write_all_at(&line, at + start as u64)?;
            return Ok(());
        }
        at += start as u64;
    }
}

/// Posts one line of another source at the clock's time: the newest line
/// time moves two days on, past `merge.settle_secs`, so the corpus's
/// window settles and is merged whole, as it would be a day later.
fn tick_clock(url: &str) -> Result<()> {
    let text = b"the line clock moves on";
    let source = Source {
        cluster: SHIPPER_CLUSTER.into(),
        host: SHIPPER_HOST.into(),
        task_id: "bench-prod-clock-0-5e1f0c".into(),
        job: "bench/prod/clock".parse().context("the clock's job")?,
        instance: 0,
        process: "clock".into(),
        run: 0,
        stream: Stream::Stdout,
    };
    let request = IngestRequest {
        batches: vec![Batch {
            source,
            start: 0,
            end: text.len() as u64 + 1,
            lines: vec![WireLine::from_bytes(0, cblogs_core::time::now_ns(), text)],
            allow_gap: false,
        }],
    };
    let resp = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?
        .post(format!("{url}{INGEST_PATH}"))
        .json(&request)
        .send()
        .context("post the clock's line")?;
    if !resp.status().is_success() {
        bail!(
            "the clock's line: cblogsd answered {}: {}",
            resp.status(),
            resp.text().unwrap_or_default()
        );
    }
    Ok(())
}
