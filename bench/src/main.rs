//! `cblogs-bench`: measures cblogs against baselines run in the same run on
//! the same generated corpus, and reports medians as a Markdown table and a
//! JSON file.
//!
//! ```text
//! cargo run --release -p cblogs-bench -- all --size 2GiB --runs 3 --out target/bench/report.json
//! cargo run --release -p cblogs-bench -- ingest --size 512MiB
//! cargo run -p cblogs-bench -- all --smoke          # CI: every figure, tiny sizes
//! cargo run --release -p cblogs-bench -- load --secs 60 --rate-mb 10 --tails 64 --searches 16
//! ```
//!
//! What is measured and against what is in `bench/README.md`.

mod alerts;
mod baselines;
mod corpus;
mod e2e;
mod ingest;
mod latency;
mod load;
mod procs;
mod rawhttp;
mod report;
mod search;
mod shipper;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use cblogs_fake_agent::lines::Templates;

use crate::corpus::Corpus;
use crate::procs::MB;
use crate::report::{Figure, Goal, Machine, Report};

#[derive(Parser, Debug)]
#[command(name = "cblogs-bench", version, about)]
struct Args {
    /// What to measure.
    what: What,
    /// Raw bytes of generated logs (KiB, MiB, GiB, KB, MB, GB or bytes).
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    size: u64,
    /// Runs of each measurement; the report shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// A directory of real logs (`*.log`) to take lines from; without it,
    /// built-in templates.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Where to write the JSON report (the Markdown table goes beside it,
    /// `.md`); by default target/bench/report.json, and
    /// bench/results/load-report.json for `load`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where the corpus and the data dirs go (a temporary dir inside it).
    #[arg(long, default_value = "target/bench")]
    work: PathBuf,
    /// Tiny sizes, one run: checks that every figure can be produced (CI).
    #[arg(long)]
    smoke: bool,
    /// Seconds of the tail latency run.
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Files, lines/s and seconds of the shipper memory run.
    #[arg(long, default_value_t = 500)]
    shipper_files: usize,
    #[arg(long, default_value_t = 5000)]
    shipper_rate: usize,
    #[arg(long, default_value_t = 30)]
    shipper_secs: u64,
    /// A cblogsd config file for every cblogsd the harness starts (default:
    /// the built-in defaults), to try settings.
    #[arg(long)]
    cblogsd_config: Option<PathBuf>,
    /// load: seconds of writing (while the tails and searches run).
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// load: MB (10^6 bytes) of lines a second written into the sandbox files.
    #[arg(long, default_value_t = 10.0)]
    rate_mb: f64,
    /// load: live tails (SSE follow streams) open at once.
    #[arg(long, default_value_t = 64)]
    tails: usize,
    /// load: clients searching in a loop at once.
    #[arg(long, default_value_t = 16)]
    searches: usize,
}

/// The config text every cblogsd of this run starts with.
static CBLOGSD_CONFIG: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Starts a real cblogsd on `data_dir` with the run's config.
pub fn start_cblogsd(data_dir: &Path) -> cblogs_testkit::Server {
    start_cblogsd_with(data_dir, None)
}

/// [`start_cblogsd`] with `extra` appended to the run's config.
pub fn start_cblogsd_with(data_dir: &Path, extra: Option<&str>) -> cblogs_testkit::Server {
    let config = CBLOGSD_CONFIG.get().and_then(Option::as_deref);
    let text = match (config, extra) {
        (c, None) => c.map(str::to_owned),
        (c, Some(e)) => Some(format!("{}\n{e}", c.unwrap_or_default())),
    };
    cblogs_testkit::Server::start(data_dir, text.as_deref())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum What {
    /// Server ingest, storage, `tail -n 100` and cblogsd memory.
    Ingest,
    /// Shipper → cblogsd end to end.
    E2e,
    /// `cblogs tail -f` latency under background load.
    Tail,
    /// `cblogs grep` against rg.
    Search,
    /// The shipper's memory with 500 files.
    Shipper,
    /// Everything.
    All,
    /// Only write the corpus (a fake agent tree) and keep it; prints where.
    Generate,
    /// Live tails and searches while the shipper ships lines written at
    /// --rate-mb: latencies, lags, errors (not part of `all`).
    Load,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("'{s}' is not a size such as 2GiB or 500MB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024.0 * 1024.0,
        "gib" | "g" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit '{other}' (use KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    Ok((n * mult) as u64)
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("cblogs-bench: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> Result<()> {
    let mut a = Args::parse();
    if a.smoke {
        a.size = 4 << 20;
        a.runs = 1;
        a.latency_secs = 3;
        a.shipper_files = 40;
        a.shipper_rate = 500;
        a.shipper_secs = 2;
        a.secs = 3;
        a.rate_mb = 1.0;
        a.tails = 4;
        a.searches = 2;
    }
    let config = match &a.cblogsd_config {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?)
        }
        None => None,
    };
    let _ = CBLOGSD_CONFIG.set(config);
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    std::fs::create_dir_all(&a.work).with_context(|| format!("create {}", a.work.display()))?;
    let work = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&a.work)
        .context("a work dir")?;
    let templates = match &a.corpus {
        Some(dir) => Templates::from_dir(dir)?,
        None => Templates::builtin(),
    };
    if a.what == What::Load {
        return load_run(&a, command, &templates, work.path());
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench/report.json"));
    let started = Instant::now();
    eprintln!(
        "generating {} bytes of logs from {}",
        a.size, templates.from
    );
    let corpus = corpus::generate(&work.path().join("corpus"), a.size, &templates)?;
    eprintln!(
        "  {} files, {} bytes, {} lines in {:.1} s",
        corpus.files.len(),
        corpus.bytes,
        corpus.lines,
        started.elapsed().as_secs_f64()
    );
    if a.what == What::Generate {
        let kept = work.keep();
        println!("{}", kept.join("corpus/mesos").display());
        return Ok(());
    }
    let mut figures = Vec::new();
    let wants = |w: What| a.what == w || a.what == What::All;
    if wants(What::Ingest) || wants(What::Search) {
        figures.extend(ingest_figures(&a, &corpus, work.path())?);
    }
    if wants(What::E2e) {
        figures.extend(e2e_figures(&a, &corpus, work.path())?);
    }
    if wants(What::Tail) {
        figures.extend(latency_figures(&a, &templates, work.path())?);
    }
    if wants(What::Shipper) {
        figures.push(shipper_figure(&a, &templates, work.path())?);
    }
    let report = Report {
        command,
        machine: Machine::this(),
        corpus: templates.from.clone(),
        raw_bytes: corpus.bytes,
        lines: corpus.lines,
        runs: a.runs,
        figures,
    };
    report.write(&out)?;
    announce(&out, &report.markdown(), started);
    Ok(())
}

/// The load run: writes its report, and fails if a tail fell behind
/// silently or anything unexpected happened.
fn load_run(a: &Args, command: String, templates: &Templates, work: &Path) -> Result<()> {
    if a.tails == 0 || a.secs == 0 || a.rate_mb <= 0.0 {
        bail!("load needs --secs, --rate-mb and --tails above 0");
    }
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/results/load-report.json"
        ))
    });
    let settings = load::Settings {
        secs: a.secs,
        rate_mb: a.rate_mb,
        tails: a.tails,
        searches: a.searches,
    };
    let started = Instant::now();
    eprintln!(
        "load: {} MB/s for {} s, {} tails, {} searchers, lines from {}",
        a.rate_mb, a.secs, a.tails, a.searches, templates.from
    );
    let outcome = load::run(templates, &run_dir(work, "load", 0)?, &settings)?;
    let report = load::report::LoadReport::new(command, templates.from.clone(), settings, &outcome);
    report.write(&out)?;
    announce(&out, &report.markdown(), started);
    let c = &report.counts;
    if c.tails_fell_behind_silently > 0 || c.errors > 0 {
        bail!(
            "{} tail(s) fell behind silently, {} unexpected error(s)",
            c.tails_fell_behind_silently,
            c.errors
        );
    }
    Ok(())
}

/// A new folder for one run of one measurement.
fn run_dir(work: &Path, name: &str, i: usize) -> Result<PathBuf> {
    let dir = work.join(format!("{name}-{i}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// Server ingest (against tantivy per line), storage (against zstd -3),
/// cblogsd memory, `tail -n 100`, and the search rows, which read the last
/// ingest run's server.
fn ingest_figures(a: &Args, corpus: &Corpus, work: &Path) -> Result<Vec<Figure>> {
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
    let (server, _) = last.context("no ingest run")?;
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
    figures.extend(search_figures(a, corpus, &server.url)?);
    Ok(figures)
}

/// Ingest with 100 alert rules over every job, against the runs without.
fn alerts_figure(
    a: &Args,
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

fn search_figures(a: &Args, corpus: &Corpus, url: &str) -> Result<Vec<Figure>> {
    let have_rg = search::have_rg();
    let mut figures = Vec::new();
    for case in &search::CASES {
        let (times, matches) = search::cblogs(url, case, a.runs)?;
        let inside = search::server_summary(url, case)?;
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

fn e2e_figures(a: &Args, corpus: &Corpus, work: &Path) -> Result<Vec<Figure>> {
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

fn latency_figures(a: &Args, templates: &Templates, work: &Path) -> Result<Vec<Figure>> {
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

fn shipper_figure(a: &Args, templates: &Templates, work: &Path) -> Result<Figure> {
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

/// Prints a written report's table and says where it is.
fn announce(out: &Path, markdown: &str, started: Instant) {
    println!("{markdown}");
    eprintln!(
        "report: {} and {} ({:.0} s in all)",
        out.display(),
        out.with_extension("md").display(),
        started.elapsed().as_secs_f64()
    );
}
