//! The shipper on a quiet agent (issue 17): thousands of sandbox files,
//! each written a line every few seconds, as most of a real cluster's
//! processes are. A shipper on every agent must cost almost nothing then.
//!
//! A fake agent gets `files` sandbox files (20 jobs × as many instances as
//! needed × 2 processes × stdout and stderr). Each file gets one line every
//! `--quiet-interval-secs`, round-robin, while the real `cblogs-shipper`
//! (default config) ships them to a real `cblogsd`. Once every line written
//! in the first two intervals has arrived (the shipper has found, opened
//! and read every file), CPU is measured over `--quiet-shipper-secs`, from
//! /proc; peak RSS (VmHWM) is the whole run's. The baseline, on the same
//! files over the same window, is GNU `tail -q -F` following all of them.
//! Every line written must arrive.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_fake_agent::lines::Templates;
use cblogs_testkit::Shipper;

use crate::corpus::{lay_out_instances, RoundRobinWriter, JOBS};
use crate::figures::run_dir;
use crate::ingest::{await_stored_lines, stored_lines};
use crate::procs::{cpu_secs, peak_rss_mib};
use crate::report::{self, Figure, Goal};
use crate::shipper::start_tail_f;

/// What the quiet shipper run is asked for.
pub struct QuietShipperPlan {
    pub files: Vec<usize>,
    pub interval_secs: u64,
    /// Seconds CPU is measured over, after the start.
    pub secs: u64,
    pub runs: usize,
}

/// One run's measurements.
struct Run {
    shipper_cpu_percent: f64,
    shipper_peak_mib: f64,
    /// CPU seconds from the shipper's start until every file was caught up.
    shipper_start_cpu_secs: f64,
    tail_cpu_percent: f64,
    tail_peak_mib: f64,
    lines: u64,
}

/// Files of the fake agent per job instance: 2 processes × 2 streams.
const FILES_PER_INSTANCE: usize = 4;

/// Targets from issue 17: the share of a core at 1,000 and 10,000 quiet
/// files, and the memory at 10,000.
fn cpu_goal(files: usize) -> f64 {
    if files <= 1000 {
        2.0
    } else {
        10.0
    }
}

pub fn quiet_shipper_figures(
    plan: &QuietShipperPlan,
    templates: &Templates,
    work: &Path,
) -> Result<Vec<Figure>> {
    let mut figures = Vec::new();
    for &n in &plan.files {
        let mut runs = Vec::new();
        for i in 0..plan.runs {
            let dir = run_dir(work, &format!("quiet-shipper-{n}"), i)?;
            let r = run(templates, &dir, n, plan.interval_secs, plan.secs)?;
            eprintln!(
                "quiet shipper, {n} files, run {}: {} lines; shipper {:.2}% of a core, peak RSS {:.1} MiB, start {:.1} CPU s; tail -F {:.2}%, {:.1} MiB",
                i + 1,
                r.lines,
                r.shipper_cpu_percent,
                r.shipper_peak_mib,
                r.shipper_start_cpu_secs,
                r.tail_cpu_percent,
                r.tail_peak_mib
            );
            runs.push(r);
            let _ = std::fs::remove_dir_all(&dir);
        }
        let col = |f: fn(&Run) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
        let what = format!(
            "{n} quiet files (a line every {} s each)",
            plan.interval_secs
        );
        figures.push(
            Figure::new(
                &format!("quiet_shipper.{n}.cpu"),
                &format!("cblogs-shipper CPU, {what}"),
                "% of a core",
                col(|r| r.shipper_cpu_percent),
            )
            .baseline(
                "GNU tail -F on the same files",
                col(|r| r.tail_cpu_percent),
            )
            .goal(Goal::AtMost(cpu_goal(n)))
            .note(format!(
                "over {} s once caught up; start-up (finding and reading every file) took {:.1} CPU s",
                plan.secs,
                report::median(&col(|r| r.shipper_start_cpu_secs)).unwrap_or(0.0)
            )),
        );
        let rss = Figure::new(
            &format!("quiet_shipper.{n}.rss"),
            &format!("cblogs-shipper peak RSS, {what}"),
            "MiB",
            col(|r| r.shipper_peak_mib),
        )
        .baseline("GNU tail -F on the same files", col(|r| r.tail_peak_mib));
        figures.push(if n >= 10_000 {
            rss.goal(Goal::AtMost(64.0))
        } else {
            rss
        });
    }
    Ok(figures)
}

fn run(templates: &Templates, dir: &Path, files: usize, interval: u64, secs: u64) -> Result<Run> {
    if files == 0 || interval == 0 {
        bail!("the quiet shipper run needs files and an interval above 0");
    }
    let server = crate::cblogsd::start(&dir.join("data"));
    let instances = files.div_ceil(JOBS.len() * FILES_PER_INSTANCE);
    let instances = u32::try_from(instances).context("too many files")?;
    let (agent, mut specs) = lay_out_instances(&dir.join("agent"), instances)?;
    // The last job's spare files: gone, so both tail exactly `files`.
    for extra in specs.split_off(files.min(specs.len())) {
        std::fs::remove_file(&extra.path)
            .with_context(|| format!("remove {}", extra.path.display()))?;
    }
    let executors = agent.executors.clone();
    let relative: Vec<&Path> = specs
        .iter()
        .map(|s| s.path.strip_prefix(&executors).unwrap_or(&s.path))
        .collect();
    let mut load = RoundRobinWriter::open(templates, &specs)?;

    let started = Instant::now();
    let mut shipper = Shipper::start(&agent, &dir.join("state"), &server.url, "");
    // Relative paths: 10,000 absolute ones would not fit in ARG_MAX.
    let mut tail = start_tail_f(&executors, &relative)?;
    let shipper_pid = shipper.pid().context("the shipper is not running")?;
    let tail_pid = tail.id();

    // Each file a line every `interval`: `files / interval` lines a second,
    // paced from the start so no file gets two lines close together.
    let rate = files as f64 / interval as f64;
    let write_due = |load: &mut RoundRobinWriter| -> Result<()> {
        let due = (started.elapsed().as_secs_f64() * rate) as usize;
        load.write(due.saturating_sub(load.written()))
    };
    let tick = Duration::from_millis(10);

    // The start: every line of the first two intervals has arrived.
    let warm_until = started + Duration::from_secs(2 * interval);
    let deadline = started + Duration::from_secs(300);
    let mut caught_up_to = None;
    let mut asked = Instant::now();
    loop {
        write_due(&mut load)?;
        let now = Instant::now();
        if now >= warm_until {
            let target = *caught_up_to.get_or_insert(load.written() as u64);
            if now >= asked + Duration::from_millis(250) {
                asked = now;
                if stored_lines(&server.url)? >= target {
                    break;
                }
            }
        }
        if now > deadline {
            bail!("the shipper did not catch up with {files} files within 5 minutes");
        }
        std::thread::sleep(tick);
    }
    let (s0, t0, m0) = (cpu_secs(shipper_pid), cpu_secs(tail_pid), Instant::now());
    while m0.elapsed() < Duration::from_secs(secs) {
        write_due(&mut load)?;
        std::thread::sleep(tick);
    }
    let (s1, t1, window) = (
        cpu_secs(shipper_pid),
        cpu_secs(tail_pid),
        m0.elapsed().as_secs_f64(),
    );

    let written = load.written() as u64;
    await_stored_lines(&server.url, written)?;
    let run = Run {
        shipper_cpu_percent: (s1 - s0) / window * 100.0,
        shipper_peak_mib: peak_rss_mib(shipper_pid),
        shipper_start_cpu_secs: s0,
        tail_cpu_percent: (t1 - t0) / window * 100.0,
        tail_peak_mib: peak_rss_mib(tail_pid),
        lines: written,
    };
    let _ = tail.kill();
    let _ = tail.wait();
    shipper.stop();
    Ok(run)
}
