//! The figures of `all` (and its parts): each measurement run `--runs`
//! times against its baseline, turned into the report's rows with their
//! targets. The measurements themselves are in their own modules
//! (`ingest`, `e2e`, `latency`, `search`, `shipper`, `baselines`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cblogs_fake_agent::lines::Templates;

use crate::corpus::{self, Corpus};
use crate::procs::MB;
use crate::report::{self, Figure, Goal};
use crate::{alerts, baselines, e2e, ingest, latency, search, shipper};

/// How much to measure: the command line's counts and sizes.
pub struct Plan {
    /// Runs of each measurement.
    pub runs: usize,
    /// Tiny sizes: every figure produced, none meaningful.
    pub smoke: bool,
    pub latency_secs: u64,
    pub shipper_files: usize,
    pub shipper_rate: usize,
    pub shipper_secs: u64,
}

/// A new folder for one run of one measurement.
pub fn run_dir(work: &Path, name: &str, i: usize) -> Result<PathBuf> {
    let dir = work.join(format!("{name}-{i}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Server ingest (against tantivy per line), storage (against zstd -3),
/// cblogsd memory, `tail -n 100`, and the search rows, which read the last
/// ingest run's server.
pub fn ingest_figures(a: &Plan, corpus: &Corpus, work: &Path) -> Result<Vec<Figure>> {
    let raw = corpus.bytes as f64;
    let (mut zstd_secs, mut zstd_bytes, mut tantivy_mb_s, mut tantivy_ratio) =
        (Vec::new(), 0, Vec::new(), Vec::new());
    for i in 0..a.runs {
        eprintln!(
            "baselines, run {}: zstd -3, tantivy one doc per line",
            i + 1
        );
        let z = baselines::zstd3(corpus)?;
        zstd_secs.push(z.secs);
        zstd_bytes = z.bytes;
        let dir = run_dir(work, "tantivy", i)?;
        let t = baselines::tantivy_per_line(corpus, &dir)?;
        tantivy_mb_s.push(raw / MB / t.secs);
        tantivy_ratio.push(t.bytes as f64 / raw);
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("building the ingest requests");
    let bodies = ingest::build_bodies(corpus)?;
    eprintln!(
        "  {} requests, {} bytes zstd-compressed",
        bodies.count(),
        bodies.compressed_bytes
    );
    let (mut mb_s, mut storage, mut peak, mut wal) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut blocks_share, mut index_share) = (Vec::new(), Vec::new());
    let mut last = None;
    for i in 0..a.runs {
        let dir = run_dir(work, "ingest", i)?;
        let r = ingest::run(corpus, &bodies, &dir)?;
        eprintln!(
            "ingest run {}: all acknowledged after {:.1} s, in the index after {:.1} s: {:.1} MB/s; {} bytes on disk, cblogsd peak RSS {:.0} MiB",
            i + 1,
            r.acked_secs,
            r.secs,
            raw / MB / r.secs,
            r.disk_bytes,
            r.peak_rss_mib
        );
        mb_s.push(raw / MB / r.secs);
        storage.push(r.disk_bytes as f64 / raw);
        blocks_share.push(r.block_bytes as f64 / raw);
        index_share.push(r.index_bytes as f64 / raw);
        peak.push(r.peak_rss_mib);
        wal.push(r.wal_bytes as f64);
        if let Some((_, old_dir)) = last.replace((r.server, r.data_dir)) {
            let _ = std::fs::remove_dir_all(old_dir);
        }
    }
    let (server, data_dir) = last.context("no ingest run")?;
    let zstd_ratio = zstd_bytes as f64 / raw;
    let mut figures = vec![
        Figure::new(
            "ingest.server",
            "server ingest (HTTP, until flushed into the index)",
            "MB/s",
            mb_s.clone(),
        )
        .goal(Goal::AtLeast(100.0))
        .baseline("tantivy, one doc per line, text stored", tantivy_mb_s)
        .ratio_goal(Goal::AtLeast(2.5)),
        Figure::new(
            "storage.ratio",
            "storage: index + blocks + WAL after flush, per raw byte",
            "× raw",
            storage.clone(),
        )
        .goal(Goal::AtMost(0.15))
        .baseline("zstd -3 of the files", vec![zstd_ratio])
        .ratio_goal(Goal::AtMost(1.35))
        .note(format!(
            "of which compressed blocks {:.3} × raw, index {:.3}; tantivy per line: {:.3} × raw; WAL left: {:.0} bytes",
            report::median(&blocks_share).unwrap_or(0.0),
            report::median(&index_share).unwrap_or(0.0),
            report::median(&tantivy_ratio).unwrap_or(0.0),
            report::median(&wal).unwrap_or(0.0)
        )),
        Figure::new(
            "zstd.speed",
            "zstd -3 speed (reference)",
            "MB/s",
            zstd_secs.iter().map(|s| raw / MB / s).collect(),
        ),
        Figure::new(
            "memory.cblogsd",
            "cblogsd peak RSS during ingest",
            "MiB",
            peak,
        )
        .goal(Goal::AtMost(300.0)),
    ];
    let job = corpus::JOBS[0];
    let job = format!("{}/{}/{}", job.0, job.1, job.2);
    let tail_runs = if a.smoke { 5 } else { 30 };
    figures.push(
        Figure::new(
            "tail.n100",
            &format!("`cblogs tail {job} -n 100`, start to exit"),
            "ms",
            ingest::tail_n100(&server.url, &job, tail_runs)?,
        )
        .goal(Goal::AtMost(30.0))
        .note(format!("median of {tail_runs}")),
    );
    figures.push(alerts_figure(a, corpus, &bodies, work, &mb_s)?);
    figures.extend(search_figures(a, corpus, &server.url, &data_dir)?);
    Ok(figures)
}

/// Ingest with 100 alert rules over every job, against the runs without.
fn alerts_figure(
    a: &Plan,
    corpus: &Corpus,
    bodies: &ingest::Bodies,
    work: &Path,
    without: &[f64],
) -> Result<Figure> {
    let raw = corpus.bytes as f64;
    let rules = work.join("alerts.toml");
    std::fs::write(&rules, alerts::hundred_rules()).context("write the alert rules")?;
    let extra = format!("[alerts]\nrules_file = {:?}\n", rules.display().to_string());
    let mut with = Vec::new();
    for i in 0..a.runs {
        let dir = run_dir(work, "ingest-alerts", i)?;
        let r = ingest::run_with(corpus, bodies, &dir, Some(&extra))?;
        eprintln!(
            "ingest with 100 alert rules, run {}: {:.1} MB/s",
            i + 1,
            raw / MB / r.secs
        );
        with.push(raw / MB / r.secs);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(Figure::new(
        "alerts.ingest",
        "server ingest with 100 alert rules evaluated on every line",
        "MB/s",
        with,
    )
    .baseline("the same ingest without rules", without.to_vec())
    .ratio_goal(Goal::AtLeast(0.9)))
}

fn search_figures(a: &Plan, corpus: &Corpus, url: &str, data_dir: &Path) -> Result<Vec<Figure>> {
    let have_rg = search::have_rg();
    let mut figures = Vec::new();
    for case in &search::CASES {
        let (times, matches) = search::cblogs(url, case, a.runs)?;
        let inside = search::server_summary(url, case, case.max_floor_ratio.is_some())?;
        if let Some(goal) = case.max_floor_ratio {
            let (floor, decoded) = search::decompression_floor(data_dir, &inside, a.runs)?;
            let fixed = search::cblogs_fixed_cost(url, case, a.runs)?;
            let fixed_ms = report::median(&fixed).unwrap_or(0.0) * 1e3;
            figures.push(
                Figure::new(
                    &format!("{}.floor", case.id),
                    &format!(
                        "{} (`cblogs grep`), against decompressing the blocks it read",
                        case.what
                    ),
                    "s",
                    times.clone(),
                )
                .baseline(
                    &format!(
                        "zstd decompression of exactly those {} blocks on every core, from memory: {:.1} MB to {:.1} MB",
                        inside.read_blocks.len(),
                        inside.read_bytes as f64 / MB,
                        decoded as f64 / MB
                    ),
                    floor,
                )
                .ratio_goal(Goal::AtMost(goal))
                .note(format!(
                    "{} ms inside cblogsd; {fixed_ms:.1} ms is what any search of the selection costs, one that reads no block (process start, request, planning)",
                    inside.took_ms
                )),
            );
        }
        let mut f = Figure::new(
            case.id,
            &format!("{} (`cblogs grep`)", case.what),
            "s",
            times,
        )
        .note(format!(
            "{} ms inside cblogsd, {} of {} blocks read",
            inside.took_ms, inside.blocks_read, inside.blocks_total
        ));
        if have_rg {
            let (times, rg_matches) = search::rg(corpus, case, a.runs)?;
            if rg_matches != matches {
                bail!(
                    "{}: cblogs grep printed {matches} lines, rg {rg_matches}: the answers differ",
                    case.id
                );
            }
            f = f.baseline(&format!("rg, {matches} matching lines"), times);
        } else {
            let note = format!("{}; {matches} matching lines; rg is not installed", f.note);
            f = f.note(note);
        }
        figures.push(f.ratio_goal(Goal::AtMost(case.max_ratio)));
    }
    Ok(figures)
}

pub fn e2e_figures(a: &Plan, corpus: &Corpus, work: &Path) -> Result<Vec<Figure>> {
    let raw = corpus.bytes as f64;
    let (mut mb_s, mut shipper_cpu) = (Vec::new(), Vec::new());
    for i in 0..a.runs {
        let dir = run_dir(work, "e2e", i)?;
        let r = e2e::run(corpus, &dir)?;
        eprintln!(
            "end-to-end run {}: {:.1} s, {:.1} MB/s; shipper peak RSS {:.1} MiB, CPU {:.1} s; cblogsd peak RSS {:.0} MiB",
            i + 1,
            r.secs,
            raw / MB / r.secs,
            r.shipper_peak_rss_mib,
            r.shipper_cpu_secs,
            r.server_peak_rss_mib
        );
        mb_s.push(raw / MB / r.secs);
        shipper_cpu.push(raw / MB / r.shipper_cpu_secs.max(1e-3));
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(vec![
        Figure::new(
            "ingest.e2e",
            "end-to-end ingest: files → cblogs-shipper → cblogsd → flushed",
            "MB/s",
            mb_s,
        )
        .goal(Goal::AtLeast(50.0)),
        Figure::new(
            "shipper.cpu",
            "shipper: raw MB shipped per CPU second (reference)",
            "MB/s",
            shipper_cpu,
        ),
    ])
}

pub fn latency_figures(a: &Plan, templates: &Templates, work: &Path) -> Result<Vec<Figure>> {
    let job = corpus::JOBS[0];
    let job = format!("{}/{}/{}", job.0, job.1, job.2);
    let (mut p50, mut p99) = (Vec::new(), Vec::new());
    for i in 0..a.runs {
        let dir = run_dir(work, "latency", i)?;
        let l = latency::run(templates, &dir, &job, 5000, a.latency_secs)?;
        let (m, n) = (
            report::percentile(&l, 50.0).unwrap_or(f64::NAN),
            report::percentile(&l, 99.0).unwrap_or(f64::NAN),
        );
        eprintln!(
            "tail latency run {}: {} probes, p50 {m:.1} ms, p99 {n:.1} ms",
            i + 1,
            l.len()
        );
        p50.push(m);
        p99.push(n);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let what = "write() → `cblogs tail -f` prints, 5,000 lines/s background";
    Ok(vec![
        Figure::new(
            "tail.latency_p50",
            &format!("tail latency p50, {what}"),
            "ms",
            p50,
        )
        .goal(Goal::AtMost(100.0)),
        Figure::new(
            "tail.latency_p99",
            &format!("tail latency p99, {what}"),
            "ms",
            p99,
        )
        .goal(Goal::AtMost(300.0)),
    ])
}

pub fn shipper_figure(a: &Plan, templates: &Templates, work: &Path) -> Result<Figure> {
    let (mut peak, mut tail_peak, mut cpu, mut tail_cpu) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..a.runs {
        let dir = run_dir(work, "shipper", i)?;
        let r = shipper::run(
            templates,
            &dir,
            a.shipper_files,
            a.shipper_rate,
            a.shipper_secs,
        )?;
        eprintln!(
            "shipper run {}: {} lines; shipper peak RSS {:.1} MiB, CPU {:.1}%; tail -F {:.1} MiB, {:.1}%",
            i + 1,
            r.lines,
            r.shipper_peak_mib,
            r.shipper_cpu_percent,
            r.tail_peak_mib,
            r.tail_cpu_percent
        );
        peak.push(r.shipper_peak_mib);
        tail_peak.push(r.tail_peak_mib);
        cpu.push(r.shipper_cpu_percent);
        tail_cpu.push(r.tail_cpu_percent);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(Figure::new(
        "memory.shipper",
        &format!(
            "cblogs-shipper peak RSS, {} files, {} lines/s",
            a.shipper_files, a.shipper_rate
        ),
        "MiB",
        peak,
    )
    .goal(Goal::AtMost(20.0))
    .baseline("GNU tail -F on the same files", tail_peak)
    .note(format!(
        "CPU {:.1}% of a core (tail -F {:.1}%)",
        report::median(&cpu).unwrap_or(0.0),
        report::median(&tail_cpu).unwrap_or(0.0)
    )))
}
