//! Tail latency: from the write() of a line into a sandbox file to the
//! moment `cblogs tail -f` prints it, through the real shipper and server
//! (default configs), while every other file of the agent receives lines at
//! a steady background rate.
//!
//! A probe line (`cblogs-bench-probe <n>`) is written every 20 ms into one
//! stdout file of the tailed job; a thread reads the CLI's output and notes
//! when each probe shows. Every probe must show.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_testkit::{bin, Shipper};

use cblogs_fake_agent::lines::Templates;

use crate::corpus::{lay_out, RoundRobinWriter};
use crate::ingest::stored_lines;

const PROBE: &str = "cblogs-bench-probe ";
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// Latencies of every probe, in ms.
pub fn run(
    templates: &Templates,
    dir: &Path,
    job: &str,
    background_lines_per_sec: usize,
    secs: u64,
) -> Result<Vec<f64>> {
    let server = crate::cblogsd::start(&dir.join("data"));
    let (agent, specs) = lay_out(&dir.join("agent"))?;
    let _shipper = Shipper::start(&agent, &dir.join("state"), &server.url, "");
    let probe_index = specs
        .iter()
        .position(|s| s.job == job)
        .context("the tailed job is not in the layout")?;
    let mut load = RoundRobinWriter::open(templates, &specs)?;

    // `cblogs tail JOB` needs the job to exist: a first line makes it.
    let mut probe = 0u64;
    write_probe(load.file(probe_index), probe)?;
    probe += 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored_lines(&server.url)? == 0 {
        if Instant::now() > deadline {
            bail!("the first line did not reach cblogsd within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut cli = KillOnDrop(
        Command::new(bin("cblogs"))
            .args([
                "--server",
                &server.url,
                "tail",
                job,
                "-f",
                "-n",
                "0",
                "--output",
                "raw",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("start cblogs tail -f")?,
    );
    let seen = read_probes(&mut cli.0)?;

    // Until a probe shows, the follower is not ready.
    let ready_by = Instant::now() + Duration::from_secs(30);
    'ready: loop {
        write_probe(load.file(probe_index), probe)?;
        probe += 1;
        let wait_until = Instant::now() + Duration::from_millis(500);
        while let Some(left) = wait_until.checked_duration_since(Instant::now()) {
            if seen.recv_timeout(left).is_ok() {
                break 'ready;
            }
        }
        if Instant::now() > ready_by {
            bail!("no probe line reached cblogs tail -f within 30 s");
        }
    }
    while seen.try_recv().is_ok() {}

    let first = probe;
    let mut sent: Vec<Instant> = Vec::new();
    let started = Instant::now();
    let per_tick = (background_lines_per_sec / 100).max(1);
    let mut tick = started;
    let mut next_probe = started;
    while started.elapsed() < Duration::from_secs(secs) {
        load.write(per_tick)?;
        if Instant::now() >= next_probe {
            sent.push(Instant::now());
            write_probe(load.file(probe_index), probe)?;
            probe += 1;
            next_probe += PROBE_EVERY;
        }
        tick += Duration::from_millis(10);
        if let Some(wait) = tick.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let mut latencies = vec![None; sent.len()];
    let mut missing = sent.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    while missing > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match seen.recv_timeout(left) {
            Ok((n, at)) if n >= first => {
                let i = (n - first) as usize;
                if let Some(slot @ None) = latencies.get_mut(i) {
                    *slot = Some(at.duration_since(sent[i]).as_secs_f64() * 1000.0);
                    missing -= 1;
                }
            }
            Ok(_) => {}
            Err(_) => bail!(
                "{missing} of {} probes never reached cblogs tail -f",
                sent.len()
            ),
        }
    }
    Ok(latencies.into_iter().flatten().collect())
}

fn write_probe(f: &mut File, n: u64) -> Result<()> {
    // One write(2) of the whole line.
    f.write_all(format!("{PROBE}{n:08}\n").as_bytes())
        .context("write a probe")
}

/// A thread that reads the CLI's output and sends each probe's number and
/// arrival time.
fn read_probes(cli: &mut Child) -> Result<mpsc::Receiver<(u64, Instant)>> {
    let out = cli.stdout.take().context("the CLI's stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let at = Instant::now();
            if let Some(n) = line
                .find(PROBE)
                .and_then(|i| line[i + PROBE.len()..].trim().parse::<u64>().ok())
            {
                if tx.send((n, at)).is_err() {
                    break;
                }
            }
        }
    });
    Ok(rx)
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
