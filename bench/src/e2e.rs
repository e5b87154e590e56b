//! End-to-end ingest: the corpus written into a fresh fake agent while the
//! real `cblogs-shipper` (default config) tails it into a real `cblogsd`,
//! until every line is stored and the flush has put it in the index.
//!
//! The writer copies each corpus file into its sandbox file in 1 MiB
//! pieces, round-robin over the 400 files (so lines are split across writes
//! as real programs split them); writing takes a fraction of the total.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_testkit::Shipper;

use crate::corpus::{lay_out, Corpus};
use crate::ingest::{flush, stored_lines};
use crate::procs::{cpu_secs, peak_rss_mib};

const PIECE: usize = 1 << 20;

pub struct Run {
    pub secs: f64,
    pub shipper_peak_rss_mib: f64,
    pub shipper_cpu_secs: f64,
    pub server_peak_rss_mib: f64,
}

pub fn run(corpus: &Corpus, dir: &Path) -> Result<Run> {
    let server = crate::cblogsd::start(&dir.join("data"));
    let (agent, specs) = lay_out(&dir.join("agent"))?;
    let mut shipper = Shipper::start(&agent, &dir.join("state"), &server.url, "");
    let mut pairs = Vec::with_capacity(specs.len());
    for (from, to) in corpus.files.iter().zip(&specs) {
        let src = File::open(&from.spec.path)
            .with_context(|| format!("open {}", from.spec.path.display()))?;
        let dst = OpenOptions::new()
            .append(true)
            .open(&to.path)
            .with_context(|| format!("open {}", to.path.display()))?;
        pairs.push((src, dst, false));
    }
    let started = Instant::now();
    let mut buf = vec![0u8; PIECE];
    while pairs.iter().any(|(_, _, done)| !done) {
        for (src, dst, done) in pairs.iter_mut().filter(|p| !p.2) {
            let n = src.read(&mut buf).context("read the corpus")?;
            if n == 0 {
                *done = true;
            } else {
                dst.write_all(&buf[..n]).context("write a sandbox file")?;
            }
        }
    }
    // Enough time for a slow machine at 5 MB/s, and never less than two minutes.
    let deadline = started + Duration::from_secs((corpus.bytes / 5_000_000).max(120));
    loop {
        let stored = stored_lines(&server.url)?;
        if stored == corpus.lines {
            break;
        }
        if stored > corpus.lines {
            bail!(
                "cblogsd holds {stored} lines, more than the {} written",
                corpus.lines
            );
        }
        if Instant::now() > deadline {
            let log = shipper.log_text();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "after {:?}, cblogsd holds {stored} of {} lines; the shipper's last log lines:\n{}",
                started.elapsed(),
                corpus.lines,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    flush(&server.url)?;
    let secs = started.elapsed().as_secs_f64();
    let shipper_pid = shipper.pid().context("the shipper is not running")?;
    let server_pid = server.pid().context("cblogsd is not running")?;
    let run = Run {
        secs,
        shipper_peak_rss_mib: peak_rss_mib(shipper_pid),
        shipper_cpu_secs: cpu_secs(shipper_pid),
        server_peak_rss_mib: peak_rss_mib(server_pid),
    };
    shipper.stop();
    Ok(run)
}
