//! `cblogs-bench`: measures cblogs against baselines run in the same run on
//! the same generated corpus, and reports medians as a Markdown table and a
//! JSON file.
//!
//! ```text
//! cargo run --release -p cblogs-bench -- all --size 2GiB --runs 3 --out target/bench/report.json
//! cargo run --release -p cblogs-bench -- ingest --size 512MiB
//! cargo run --release -p cblogs-bench -- objstore --size 2GiB   # needs `weed` (scripts/test installs it)
//! cargo run -p cblogs-bench -- all --smoke          # CI: every figure, tiny sizes
//! cargo run --release -p cblogs-bench -- load --secs 60 --rate-mb 10 --tails 64 --searches 16
//! cargo run --release -p cblogs-bench -- quiet --quiet-sources 2000,10000 --out bench/results/quiet-report.json
//! cargo run --release -p cblogs-bench -- quiet-shipper --quiet-files 1000,10000 --out bench/results/quiet-shipper-report.json
//! cargo run --release -p cblogs-bench -- scale --scale-sizes 2GiB,8GiB,32GiB --scale-runs 3,3,1 --corpus ../shared/corpus/loghub
//! cargo run --release -p cblogs-bench -- cluster --size 1GiB --runs 3   # needs ZooKeeper and `weed`
//! cargo run --release -p cblogs-bench -- cluster-soak --kills 20          # the same; CBLOGS_CHAOS_SEED replays
//! ```
//!
//! What is measured and against what is in `bench/README.md`.

mod alerts;
mod baselines;
mod cblogsd;
mod cluster;
mod corpus;
mod e2e;
mod figures;
mod ingest;
mod latency;
mod load;
mod objstore;
mod procs;
mod quiet;
mod quiet_shipper;
mod rawhttp;
mod report;
mod scale;
mod search;
mod shipper;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};

use cblogs_fake_agent::lines::Templates;

use crate::figures::{e2e_figures, ingest_figures, latency_figures, run_dir, shipper_figure, Plan};
use crate::report::{Machine, Report};

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
    /// quiet: the numbers of sources, one run each.
    #[arg(long, value_delimiter = ',', default_value = "2000,10000")]
    quiet_sources: Vec<usize>,
    /// quiet: seconds between two lines of a source.
    #[arg(long, default_value_t = 5)]
    quiet_interval_secs: u64,
    /// quiet: minutes of line time measured (a day).
    #[arg(long, default_value_t = 1440)]
    quiet_minutes: i64,
    /// quiet-shipper: the numbers of sandbox files, each measured `--runs` times.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    quiet_files: Vec<usize>,
    /// quiet-shipper: seconds CPU is measured over, once the shipper has caught up.
    #[arg(long, default_value_t = 60)]
    quiet_shipper_secs: u64,
    /// cluster-soak: kills (of nodes and the shipper, at random).
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// scale: the corpus sizes, a cblogsd each.
    #[arg(long, value_delimiter = ',', default_value = "2GiB,8GiB,32GiB", value_parser = parse_size)]
    scale_sizes: Vec<u64>,
    /// scale: runs of each size, in the same order (the last one stands
    /// for any size after it).
    #[arg(long, value_delimiter = ',', default_value = "3,3,1")]
    scale_runs: Vec<usize>,
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
    /// cblogsd on SeaweedFS (S3) against the local store: ingest, bucket
    /// bytes, PUTs per GB, warm and cold reads.
    Objstore,
    /// Everything.
    All,
    /// Only write the corpus (a fake agent tree) and keep it; prints where.
    Generate,
    /// Live tails and searches while the shipper ships lines written at
    /// --rate-mb: latencies, lags, errors (not part of `all`).
    Load,
    /// Thousands of quiet sources over a day of line time, posted straight
    /// to cblogsd: storage after merges against per-file zstd -3, index
    /// documents per source per day, memory, reads (not part of `all`).
    Quiet,
    /// cblogs-shipper's CPU and memory on thousands of quiet sandbox files
    /// (a line every --quiet-interval-secs each), against GNU tail -F on
    /// the same files (not part of `all`).
    QuietShipper,
    /// The busy workload at --scale-sizes (2, 8, 32 GiB): ingest with
    /// merges, storage after them, start-up on the full store, needle
    /// grep, dense regex, tail (not part of `all`).
    Scale,
    /// A cluster of nodes on SeaweedFS and ZooKeeper: CPU per MB on one
    /// node against three, a needle asked of a node without the
    /// unpublished line, failover after kill -9 and SIGSTOP (not part of
    /// `all`).
    Cluster,
    /// The cluster soak: three nodes and a shipper on SeaweedFS and
    /// ZooKeeper, --kills random kill -9s of nodes and the shipper while
    /// lines are written; fails unless every node shows every line once
    /// (not part of `all`).
    ClusterSoak,
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
        a.quiet_sources = vec![50];
        a.quiet_minutes = 30;
        a.quiet_files = vec![40];
        a.quiet_shipper_secs = 2;
        a.scale_sizes = vec![4 << 20];
        a.scale_runs = vec![1];
        if a.what == What::QuietShipper {
            a.quiet_interval_secs = 1;
        }
    }
    let config = match &a.cblogsd_config {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?)
        }
        None => None,
    };
    cblogsd::set_config(config);
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    std::fs::create_dir_all(&a.work).with_context(|| format!("create {}", a.work.display()))?;
    let work = tempfile::Builder::new()
        .prefix("run-")
        .tempdir_in(&a.work)
        .context("a work dir")?;
    // The binaries are built now, not in the middle of the first
    // measurement: a build that fails (or a tree edited meanwhile) stops
    // the run before it has spent minutes on baselines.
    cblogs_testkit::bin_dir();
    let templates = match &a.corpus {
        Some(dir) => Templates::from_dir(dir)?,
        None => Templates::builtin(),
    };
    if a.what == What::Load {
        return load_run(&a, command, &templates, work.path());
    }
    if a.what == What::Quiet {
        return quiet_run(&a, command, &templates, work.path());
    }
    if a.what == What::QuietShipper {
        return quiet_shipper_run(&a, command, &templates, work.path());
    }
    if a.what == What::Scale {
        return scale_run(&a, command, &templates, work.path());
    }
    if a.what == What::ClusterSoak {
        return cluster::soak(a.kills);
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
    let plan = Plan {
        runs: a.runs,
        smoke: a.smoke,
        latency_secs: a.latency_secs,
        shipper_files: a.shipper_files,
        shipper_rate: a.shipper_rate,
        shipper_secs: a.shipper_secs,
    };
    let mut figures = Vec::new();
    let wants = |w: What| a.what == w || a.what == What::All;
    if wants(What::Ingest) || wants(What::Search) {
        figures.extend(ingest_figures(&plan, &corpus, work.path())?);
    }
    if wants(What::E2e) {
        figures.extend(e2e_figures(&plan, &corpus, work.path())?);
    }
    if wants(What::Tail) {
        figures.extend(latency_figures(&plan, &templates, work.path())?);
    }
    if wants(What::Shipper) {
        figures.push(shipper_figure(&plan, &templates, work.path())?);
    }
    if a.what == What::Cluster {
        let bodies = ingest::build_bodies(&corpus)?;
        figures.extend(cluster::cluster_figures(
            &plan,
            &corpus,
            &bodies,
            work.path(),
        )?);
    }
    if wants(What::Objstore) {
        let bodies = ingest::build_bodies(&corpus)?;
        figures.extend(objstore::objstore_figures(
            &plan,
            &corpus,
            &bodies,
            work.path(),
        )?);
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

/// The quiet cluster: one run per number of sources, its own report.
fn quiet_run(a: &Args, command: String, templates: &Templates, work: &Path) -> Result<()> {
    if a.quiet_sources.is_empty() || a.quiet_minutes <= 0 {
        bail!("quiet needs --quiet-sources and --quiet-minutes above 0");
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench/quiet-report.json"));
    let started = Instant::now();
    let plan = quiet::QuietPlan {
        sources: a.quiet_sources.clone(),
        interval_secs: a.quiet_interval_secs,
        minutes: a.quiet_minutes,
    };
    let figures = quiet::quiet_figures(&plan, templates, work)?;
    write_report(&out, command, templates, 1, figures, started)
}

/// The shipper on quiet files: its own report.
fn quiet_shipper_run(a: &Args, command: String, templates: &Templates, work: &Path) -> Result<()> {
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench/quiet-shipper-report.json"));
    let started = Instant::now();
    let plan = quiet_shipper::QuietShipperPlan {
        files: a.quiet_files.clone(),
        interval_secs: a.quiet_interval_secs,
        secs: a.quiet_shipper_secs,
        runs: a.runs,
    };
    let figures = quiet_shipper::quiet_shipper_figures(&plan, templates, work)?;
    write_report(&out, command, templates, a.runs, figures, started)
}

/// The scaling curve: its own report.
fn scale_run(a: &Args, command: String, templates: &Templates, work: &Path) -> Result<()> {
    if a.scale_sizes.is_empty() || a.scale_runs.contains(&0) {
        bail!("scale needs --scale-sizes, and --scale-runs of at least 1");
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bench/scale-report.json"));
    let started = Instant::now();
    let plan = scale::ScalePlan {
        sizes: a.scale_sizes.clone(),
        runs: a.scale_runs.clone(),
    };
    let runs = a.scale_runs.iter().copied().max().unwrap_or(1);
    scale::scale_figures(&plan, templates, work, |figures| {
        write_report(
            &out,
            command.clone(),
            templates,
            runs,
            figures.to_vec(),
            started,
        )
    })
}

/// Writes the report of a run with no corpus of its own, and says where.
fn write_report(
    out: &Path,
    command: String,
    templates: &Templates,
    runs: usize,
    figures: Vec<report::Figure>,
    started: Instant,
) -> Result<()> {
    let report = Report {
        command,
        machine: Machine::this(),
        corpus: templates.from.clone(),
        raw_bytes: 0,
        lines: 0,
        runs,
        figures,
    };
    report.write(out)?;
    announce(out, &report.markdown(), started);
    Ok(())
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
