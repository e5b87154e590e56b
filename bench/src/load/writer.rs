//! The load run's writer: appends the corpus generator's lines to the
//! sandbox files at the run's rate, busy files more often than quiet ones
//! (the corpus weights), one write(2) per line, each line stamped with
//! which file it went to, its sequence number there and when it was
//! written — what every tail checks the lines it receives against.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cblogs_fake_agent::lines::{LineGen, Templates};

use crate::corpus::{open_for_append, FileSpec};

/// What starts the stamp at the end of every line: ` cbload:FILE:SEQ:NANOS`.
pub const STAMP: &str = " cbload:";

/// Appends generated, stamped lines to the sandbox files.
pub struct Writer<'a> {
    files: Vec<File>,
    gens: Vec<LineGen<'a>>,
    cumulative: Vec<f64>,
    rng: fastrand::Rng,
    /// The last sequence number written to each file (0: the warm-up line).
    pub last: Vec<u64>,
    pub lines: u64,
    pub bytes: u64,
    buf: Vec<u8>,
    epoch: Instant,
}

impl<'a> Writer<'a> {
    /// Opens `specs`' files; stamps count nanoseconds from `epoch`.
    pub fn open(
        templates: &'a Templates,
        specs: &[FileSpec],
        epoch: Instant,
    ) -> Result<Writer<'a>> {
        let (files, gens) = open_for_append(templates, specs)?;
        let mut acc = 0.0;
        let cumulative = specs
            .iter()
            .map(|s| {
                acc += s.weight;
                acc
            })
            .collect();
        Ok(Writer {
            files,
            gens,
            cumulative,
            rng: fastrand::Rng::with_seed(0x10ad),
            last: vec![0; specs.len()],
            lines: 0,
            bytes: 0,
            buf: Vec::with_capacity(512),
            epoch,
        })
    }

    /// One line, sequence `seq`, into file `f`.
    pub fn write(&mut self, f: usize, seq: u64) -> Result<()> {
        self.buf.clear();
        self.gens[f].next_line(&mut self.buf);
        let ns = self.epoch.elapsed().as_nanos() as u64;
        write!(self.buf, "{STAMP}{f}:{seq}:{ns}").expect("write to a Vec");
        self.buf.push(b'\n');
        self.files[f]
            .write_all(&self.buf)
            .context("write a sandbox file")?;
        self.last[f] = seq;
        Ok(())
    }

    /// The next line of a file picked by weight.
    fn write_next(&mut self) -> Result<()> {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = self.rng.f64() * total;
        let f = self
            .cumulative
            .partition_point(|&c| c <= x)
            .min(self.files.len() - 1);
        self.write(f, self.last[f] + 1)?;
        self.lines += 1;
        self.bytes += self.buf.len() as u64;
        Ok(())
    }

    /// Writes at `rate` bytes a second for `run_for`, paced: every 2 ms,
    /// as many lines as the rate allows by then (catching up when it was
    /// not scheduled, but never past the end). Every 10 s `progress` gets
    /// the time and the bytes written so far. Returns the writing time.
    pub fn write_paced(
        &mut self,
        rate: f64,
        run_for: Duration,
        mut progress: impl FnMut(Duration, u64),
    ) -> Result<Duration> {
        let started = Instant::now();
        let mut report_at = started + Duration::from_secs(10);
        loop {
            let elapsed = started.elapsed();
            if elapsed >= run_for {
                break;
            }
            let due = (elapsed.as_secs_f64() * rate) as u64;
            let mut n = 0u32;
            while self.bytes < due {
                self.write_next()?;
                n += 1;
                if n.is_multiple_of(256) && started.elapsed() >= run_for {
                    break;
                }
            }
            if Instant::now() >= report_at {
                progress(elapsed, self.bytes);
                report_at += Duration::from_secs(10);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(started.elapsed())
    }
}

/// `(file, sequence, written at)` from a line's stamp.
pub fn parse_stamp(text: &str) -> Option<(usize, u64, u64)> {
    let at = text.rfind(STAMP)?;
    let mut it = text[at + STAMP.len()..].split(':');
    let f = it.next()?.parse().ok()?;
    let seq = it.next()?.parse().ok()?;
    let ns = it.next()?.trim_end().parse().ok()?;
    Some((f, seq, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse_back() {
        assert_eq!(
            parse_stamp("GET /x 200 cbload:12:345:6789"),
            Some((12, 345, 6789))
        );
        assert_eq!(parse_stamp("no stamp"), None);
    }
}
