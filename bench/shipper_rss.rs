//! The shipper's memory and CPU while it tails many files.
//!
//! A fake agent with `--files` sandbox files (default 500: 50 tasks of two
//! jobs, 5 processes each, stdout and stderr) receives `--rate` lines per
//! second in total (default 5,000; loghub lines with their numbers varied)
//! for `--secs` seconds, while the real `cblogs-shipper` (release build,
//! default config) ships them to a real `cblogsd`. Its peak RSS (VmHWM) and
//! CPU time are read from /proc. The baseline, run at the same time on the
//! same files, is GNU `tail -q -F` following all of them (what "ssh and
//! tail" costs). Every line is checked to have arrived. Medians of `--runs`.
//!
//!     cargo bench -p cblogs-bench --bench shipper_rss -- --files 500 --rate 5000 --secs 30 --runs 3

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cblogs_core::Stream;
use cblogs_e2e::{corpus, wait_until, Agent, Server, Shipper};

struct Args {
    files: usize,
    rate: usize,
    secs: u64,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        files: 500,
        rate: 5000,
        secs: 30,
        runs: 3,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || -> u64 {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match flag.as_str() {
            "--files" => a.files = value() as usize,
            "--rate" => a.rate = value() as usize,
            "--secs" => a.secs = value(),
            "--runs" => a.runs = value() as usize,
            // cargo bench passes --bench; ignore what is not ours.
            _ => {}
        }
    }
    a.files = a.files.max(2) / 2 * 2;
    a
}

/// VmHWM (peak RSS) and VmRSS of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// User + system CPU seconds of a process.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after ')'.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / hz as f64
}

struct Measured {
    shipper_peak_kib: u64,
    shipper_cpu: f64,
    tail_peak_kib: u64,
    tail_cpu: f64,
    lines: u64,
    catch_up: Duration,
}

fn one_run(a: &Args, lines: &[Vec<u8>]) -> Measured {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&tmp.path().join("data"), None);
    let agent = Agent::new(tmp.path());
    let mut paths: Vec<PathBuf> = Vec::new();
    let tasks = a.files / 10;
    for t in 0..tasks.max(1) {
        let (job, instance) = if t % 2 == 0 {
            ("hello", t / 2)
        } else {
            ("eight_ball-api", t / 2)
        };
        let task = agent.task("www-data", "prod", job, instance as u32);
        for p in 0..5 {
            let run = task.process(&format!("proc_{p}"), 0);
            paths.push(run.path(Stream::Stdout));
            paths.push(run.path(Stream::Stderr));
        }
    }
    paths.truncate(a.files);
    let mut files: Vec<File> = paths
        .iter()
        .map(|p| {
            OpenOptions::new()
                .append(true)
                .open(p)
                .expect("sandbox file")
        })
        .collect();
    let mut shipper = Shipper::start(&agent, &tmp.path().join("state"), &server.url, "");
    let mut tail: Child = Command::new("tail")
        .args(["-q", "-n", "0", "-F"])
        .args(&paths)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("GNU tail");
    let shipper_pid = shipper.pid().expect("shipper running");

    // Write `rate` lines a second, in 100 slices of a second.
    let start = Instant::now();
    let mut written = 0u64;
    let mut n = 0usize;
    let per_tick = (a.rate / 100).max(1);
    let mut tick = start;
    while start.elapsed() < Duration::from_secs(a.secs) {
        for _ in 0..per_tick {
            let base = &lines[n % lines.len()];
            let count = files.len();
            let f = &mut files[n % count];
            let mut line = format!("{n} ").into_bytes();
            line.extend_from_slice(base);
            line.push(b'\n');
            f.write_all(&line).expect("write");
            n += 1;
            written += 1;
        }
        tick += Duration::from_millis(10);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let wrote_at = Instant::now();
    wait_until("every line stored", Duration::from_secs(120), || {
        let out = server.cli(&["jobs", "--output", "json"]);
        let stored: u64 = out.stdout.lines().filter_map(job_lines).sum();
        (stored >= written).then_some(())
    });
    let catch_up = wrote_at.elapsed();
    let (shipper_peak_kib, _) = memory_kib(shipper_pid);
    let shipper_cpu = cpu_secs(shipper_pid);
    let tail_pid = tail.id();
    let (tail_peak_kib, _) = memory_kib(tail_pid);
    let tail_cpu = cpu_secs(tail_pid);
    let _ = tail.kill();
    let _ = tail.wait();
    shipper.stop();
    Measured {
        shipper_peak_kib,
        shipper_cpu,
        tail_peak_kib,
        tail_cpu,
        lines: written,
        catch_up,
    }
}

/// The `lines` count of one job of `cblogs jobs --output json`.
fn job_lines(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("lines")?
        .as_u64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let a = args();
    let mut lines = Vec::new();
    for name in [
        "Apache_2k.log",
        "HDFS_2k.log",
        "OpenSSH_2k.log",
        "Android_2k.log",
    ] {
        lines.extend(corpus(name));
    }
    let mut runs = Vec::new();
    for i in 0..a.runs {
        let m = one_run(&a, &lines);
        println!(
            "run {}: {} lines; shipper peak RSS {:.1} MiB, CPU {:.2} s; tail -F peak RSS {:.1} MiB, CPU {:.2} s; all stored {:.2} s after the last write",
            i + 1,
            m.lines,
            m.shipper_peak_kib as f64 / 1024.0,
            m.shipper_cpu,
            m.tail_peak_kib as f64 / 1024.0,
            m.tail_cpu,
            m.catch_up.as_secs_f64()
        );
        runs.push(m);
    }
    let rss = median(
        runs.iter()
            .map(|m| m.shipper_peak_kib as f64 / 1024.0)
            .collect(),
    );
    let tail_rss = median(
        runs.iter()
            .map(|m| m.tail_peak_kib as f64 / 1024.0)
            .collect(),
    );
    let cpu = median(
        runs.iter()
            .map(|m| m.shipper_cpu / a.secs as f64 * 100.0)
            .collect(),
    );
    let tail_cpu = median(
        runs.iter()
            .map(|m| m.tail_cpu / a.secs as f64 * 100.0)
            .collect(),
    );
    println!(
        "\n{} files, {} lines/s, {} s, median of {} runs:\n  cblogs-shipper peak RSS {rss:.1} MiB (target < 20 MiB), CPU {cpu:.1}% of one core\n  tail -F (baseline)      peak RSS {tail_rss:.1} MiB, CPU {tail_cpu:.1}% of one core\n  ratio shipper/tail: RSS {:.2}, CPU {:.2}",
        a.files,
        a.rate,
        a.secs,
        a.runs,
        rss / tail_rss,
        cpu / tail_cpu.max(0.01)
    );
}
