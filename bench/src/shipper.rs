//! The shipper's memory and CPU while it tails many files.
//!
//! A fake agent's first `files` sandbox files (default 500: the 400 of the
//! benchmark layout and 100 more runs of its processes) receive `rate`
//! lines a second in total for `secs` seconds, while the real
//! `cblogs-shipper` (default config) ships them to a real `cblogsd`. Its
//! peak RSS (VmHWM) and CPU time come from /proc. The baseline, run at the
//! same time on the same files, is GNU `tail -q -F` following all of them
//! (what "ssh and tail" costs). Every line must arrive.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cblogs_core::Stream;
use cblogs_testkit::Shipper;

use cblogs_fake_agent::lines::Templates;

use crate::corpus::{lay_out, RoundRobinWriter};
use crate::ingest::await_stored_lines;
use crate::procs::{cpu_secs, peak_rss_mib};

pub struct Run {
    pub shipper_peak_mib: f64,
    pub shipper_cpu_percent: f64,
    pub tail_peak_mib: f64,
    pub tail_cpu_percent: f64,
    pub lines: u64,
}

/// GNU `tail -q -n 0 -F` following `paths` (relative to `cwd`), its output
/// thrown away: what "ssh and tail" costs.
pub fn start_tail_f(cwd: &Path, paths: &[impl AsRef<std::ffi::OsStr>]) -> Result<Child> {
    Command::new("tail")
        .current_dir(cwd)
        .args(["-q", "-n", "0", "-F"])
        .args(paths)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start GNU tail")
}

pub fn run(templates: &Templates, dir: &Path, files: usize, rate: usize, secs: u64) -> Result<Run> {
    let server = crate::cblogsd::start(&dir.join("data"));
    let (agent, mut specs) = lay_out(&dir.join("agent"))?;
    // Past the layout's 400 files: a second run of each process (a restart).
    let mut extra = Vec::new();
    for s in specs.iter().filter(|s| s.stream == Stream::Stdout) {
        if specs.len() + extra.len() >= files {
            break;
        }
        let run_dir = s
            .path
            .parent()
            .and_then(Path::parent)
            .context("process folder")?;
        let run1 = run_dir.join("1");
        std::fs::create_dir_all(&run1).with_context(|| format!("create {}", run1.display()))?;
        for stream in ["stdout", "stderr"] {
            File::create(run1.join(stream)).context("create a sandbox file")?;
            let mut spec = s.clone();
            spec.path = run1.join(stream);
            extra.push(spec);
        }
    }
    specs.extend(extra);
    specs.truncate(files);
    let paths: Vec<PathBuf> = specs.iter().map(|s| s.path.clone()).collect();
    let mut load = RoundRobinWriter::open(templates, &specs)?;
    let shipper_started = Instant::now();
    let mut shipper = Shipper::start(&agent, &dir.join("state"), &server.url, "");
    let mut tail = start_tail_f(Path::new("."), &paths)?;
    let shipper_pid = shipper.pid().context("the shipper is not running")?;

    // `rate` lines a second, in 100 slices of a second.
    let started = Instant::now();
    let per_tick = (rate / 100).max(1);
    let mut tick = started;
    while started.elapsed() < Duration::from_secs(secs) {
        load.write(per_tick)?;
        tick += Duration::from_millis(10);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let written = load.written() as u64;
    await_stored_lines(&server.url, written)?;
    let tail_pid = tail.id();
    // CPU over the whole time each ran: start-up and catch-up included.
    let ran = shipper_started.elapsed().as_secs_f64();
    let run = Run {
        shipper_peak_mib: peak_rss_mib(shipper_pid),
        shipper_cpu_percent: cpu_secs(shipper_pid) / ran * 100.0,
        tail_peak_mib: peak_rss_mib(tail_pid),
        tail_cpu_percent: cpu_secs(tail_pid) / ran * 100.0,
        lines: written,
    };
    let _ = tail.kill();
    let _ = tail.wait();
    shipper.stop();
    Ok(run)
}
