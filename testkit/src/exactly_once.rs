//! Exactly once, in order: what `cblogsd` holds (as the CLI shows it)
//! against what was written to the fake agent's files. The per-job counts
//! to wait on (`cblogs jobs`), and the line-by-line check that says what
//! is wrong: lines missing, shown twice, never written, out of file order,
//! or with the wrong job, instance, cluster or host.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use cblogs_core::{LineView, Stream};

use crate::model::{StreamKey, Written};
use crate::sandbox::ProcessRun;
use crate::server::Server;
use crate::shipper::{Shipper, SHIPPER_CLUSTER, SHIPPER_HOST};

const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// How the offsets the CLI shows are checked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Offsets {
    /// Each line's offset is its byte position in the stream: bytes written
    /// before it, counted across rotations.
    Exact,
    /// Offsets only grow (after a truncation, the stream offsets go on from
    /// where the shipper was, which the test does not pin down).
    Growing,
}

/// A line as the CLI shows it: (offset, text, cut, partial).
pub type Shown = (u64, String, bool, bool);

pub fn shown_line(l: &LineView) -> Shown {
    (l.offset, l.text.clone(), l.flags.cut, l.flags.partial)
}

/// A line for a message: its offset, its first 70 characters, its flags.
pub fn brief((offset, text, cut, partial): &Shown) -> String {
    let mut t: String = text.chars().take(70).collect();
    if t.len() < text.len() {
        t.push_str(&format!("… ({} bytes)", text.len()));
    }
    format!(
        "@{offset} {t:?}{}{}",
        if *cut { " cut" } else { "" },
        if *partial { " partial" } else { "" }
    )
}

/// Everything wrong with `got` (the CLI's lines) against what `runs` wrote;
/// empty when every line arrived exactly once, in order, with its source.
pub fn problems(got: &[LineView], runs: &[&ProcessRun], offsets: Offsets) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_key: BTreeMap<StreamKey, Vec<&LineView>> = BTreeMap::new();
    for l in got {
        by_key
            .entry((l.task_id.clone(), l.process.clone(), l.run, l.stream))
            .or_default()
            .push(l);
    }
    for run in runs {
        for stream in BOTH {
            let lines = by_key.remove(&run.key(stream)).unwrap_or_default();
            let name = format!("{}/{}/{}/{stream}", run.task_id, run.process, run.run);
            if let Some(p) = wrong_source(&name, run, &lines) {
                problems.push(p);
            }
            let mut want: Vec<Shown> = run.model(stream).lines.iter().map(Written::view).collect();
            let mut have: Vec<Shown> = lines.iter().map(|l| shown_line(l)).collect();
            if offsets == Offsets::Growing {
                if let Some(w) = have.windows(2).find(|w| w[0].0 >= w[1].0) {
                    problems.push(format!(
                        "{name}: offsets do not grow: {} then {}",
                        brief(&w[0]),
                        brief(&w[1])
                    ));
                }
                for s in want.iter_mut().chain(have.iter_mut()) {
                    s.0 = 0;
                }
            }
            if want != have {
                problems.push(format!("{name}: {}", differences(&want, &have)));
            }
        }
    }
    for (key, lines) in by_key {
        problems.push(format!(
            "{} lines of a source nothing was written to: {key:?}, e.g. {}",
            lines.len(),
            brief(&shown_line(lines[0]))
        ));
    }
    problems
}

/// The first line of a stream whose (cluster, host, job, instance) is not
/// the run's, as a problem.
fn wrong_source(name: &str, run: &ProcessRun, lines: &[&LineView]) -> Option<String> {
    let want = (
        SHIPPER_CLUSTER,
        SHIPPER_HOST,
        run.job.as_str(),
        run.instance,
    );
    lines.iter().find_map(|l| {
        let meta = (
            l.cluster.as_str(),
            l.host.as_str(),
            l.job.as_str(),
            l.instance,
        );
        (meta != want).then(|| {
            format!("{name}: a line shows (cluster, host, job, instance) {meta:?}, want {want:?}")
        })
    })
}

/// How `have` differs from `want`: the counts, the first difference, and
/// the first few lines missing, shown more than once, or never written.
fn differences(want: &[Shown], have: &[Shown]) -> String {
    let i = want
        .iter()
        .zip(have)
        .position(|(w, h)| w != h)
        .unwrap_or(want.len().min(have.len()));
    let mut found = vec![format!(
        "wrote {} lines, the CLI shows {}; first difference at line {i}: wrote {}, shown {}",
        want.len(),
        have.len(),
        want.get(i).map_or("nothing".into(), brief),
        have.get(i).map_or("nothing".into(), brief),
    )];
    let mut count: HashMap<&Shown, usize> = HashMap::new();
    for h in have {
        *count.entry(h).or_default() += 1;
    }
    let written: HashSet<&Shown> = want.iter().collect();
    found.extend(first_few(
        "missing",
        want.iter().filter(|w| !count.contains_key(w)),
    ));
    found.extend(first_few(
        "shown more than once",
        want.iter().filter(|w| count.get(w).is_some_and(|n| *n > 1)),
    ));
    found.extend(first_few(
        "shown but never written",
        have.iter().filter(|h| !written.contains(h)),
    ));
    found.join("; ")
}

fn first_few<'a>(what: &str, items: impl Iterator<Item = &'a Shown>) -> Option<String> {
    let items: Vec<&Shown> = items.collect();
    (!items.is_empty()).then(|| {
        let shown: Vec<String> = items.iter().take(5).map(|s| brief(s)).collect();
        format!("{} {what}, first: {}", items.len(), shown.join(", "))
    })
}

/// Lines stored per job key (`cluster/role/env/name`), from `cblogs jobs`.
pub fn stored_per_job(server: &Server) -> BTreeMap<String, u64> {
    let out = server.cli(&["jobs", "--output", "json"]);
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| Some((j["key"].as_str()?.to_owned(), j["lines"].as_u64()?)))
        .collect()
}

/// Lines written per job key (as the shipper names it), from the runs' models.
pub fn written_per_job(runs: &[&ProcessRun]) -> BTreeMap<String, u64> {
    let mut want = BTreeMap::new();
    for r in runs {
        let n: usize = BOTH.iter().map(|s| r.model(*s).lines.len()).sum();
        *want
            .entry(format!("{SHIPPER_CLUSTER}/{}", r.job))
            .or_insert(0) += n as u64;
    }
    want.retain(|_, n| *n > 0);
    want
}

/// Polls (up to `deadline`) until cblogsd holds as many lines per job as
/// `runs` wrote. Fails at once (`Err`, saying what) if it holds more than
/// written; panics with the log if the shipper died.
pub fn await_stored(
    server: &Server,
    shipper: &mut Shipper,
    deadline: Duration,
    runs: &[&ProcessRun],
) -> Result<(), String> {
    let want = written_per_job(runs);
    let end = Instant::now() + deadline;
    loop {
        shipper.assert_running();
        let got = stored_per_job(server);
        if got == want {
            return Ok(());
        }
        if let Some((job, n)) = got
            .iter()
            .find(|(job, n)| **n > want.get(*job).copied().unwrap_or(0))
        {
            return Err(format!(
                "{job}: {n} lines stored, more than the {} written",
                want.get(job).copied().unwrap_or(0)
            ));
        }
        if Instant::now() >= end {
            return Err(format!(
                "timed out after {deadline:?}: lines written per job {want:?}, stored {got:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (polling, up to `deadline`) until cblogsd holds exactly the lines
/// written to `runs`; fails at once if it holds more, or if the shipper died.
pub fn wait_all_stored(
    server: &Server,
    shipper: &mut Shipper,
    deadline: Duration,
    runs: &[&ProcessRun],
) {
    if let Err(e) = await_stored(server, shipper, deadline, runs) {
        panic!("{e}; shipper log:\n{}", shipper.log_text());
    }
}

/// Waits until cblogsd holds every line written to `runs`, then checks
/// that `job`'s lines are each shown once, in file order, at their
/// offsets; else panics saying what is wrong (`ctx` first) with the end of
/// cblogsd's log.
pub fn assert_job_exactly_once(
    server: &Server,
    shipper: &mut Shipper,
    runs: &[&ProcessRun],
    job: &str,
    ctx: &str,
) {
    wait_all_stored(server, shipper, crate::wait::DEADLINE, runs);
    let got = server.all_lines(job);
    let problems = problems(&got, runs, Offsets::Exact);
    assert!(
        problems.is_empty(),
        "{ctx}:\n  {}\ncblogsd log (end):\n{}",
        problems.join("\n  "),
        crate::text::log_tail(&server.log_text(), 30)
    );
}

/// How far a writer of numbered lines has got, for readers running
/// meanwhile: the lines of requests sent (one may be in flight) and of
/// those acknowledged. A request's lines can be shown before its answer
/// reaches the writer, so a reader may see up to what was sent, and must
/// see at least what was acknowledged before it began.
pub struct WriteProgress {
    sent: AtomicUsize,
    acked: AtomicUsize,
}

impl WriteProgress {
    /// `acked` lines already acknowledged.
    pub fn new(acked: usize) -> WriteProgress {
        WriteProgress {
            sent: acked.into(),
            acked: acked.into(),
        }
    }

    /// Lines acknowledged so far: where the next request starts.
    pub fn acked(&self) -> usize {
        self.acked.load(SeqCst)
    }

    /// Lines of requests sent so far, answered or not.
    pub fn sent(&self) -> usize {
        self.sent.load(SeqCst)
    }

    /// Writes the next `n` lines: `send` is given their numbers and
    /// returns once they are acknowledged. They count as sent before it is
    /// called and as acknowledged after it returns.
    pub fn write(&self, n: usize, send: impl FnOnce(std::ops::Range<usize>)) {
        let from = self.acked();
        self.sent.store(from + n, SeqCst);
        send(from..from + n);
        self.acked.store(from + n, SeqCst);
    }
}

/// One round of the readers' check while lines are being written: `cblogs
/// grep ^now` and `cblogs tail JOB -n 100000` must each show a prefix of
/// the numbered lines (`numbered(0)`, `numbered(1)`, … each starting with
/// `now `), each line once and in order, no shorter than what was
/// acknowledged before it began and no longer than what was sent by its
/// end ([`WriteProgress`]). A read the server cut short at its time limit
/// (the CLI's "results are incomplete" names `search.max_query_secs`) is
/// not a wrong answer: it is made again, up to five times. One cut short
/// for any other reason (a storage error) is. Panics saying which reader
/// saw what.
pub fn reads_are_acknowledged_prefixes(
    server: &Server,
    job: &str,
    written: &WriteProgress,
    numbered: &dyn Fn(usize) -> String,
) {
    let greps: &[&str] = &["grep", "^now ", "--output", "raw", "--limit", "0"];
    let tails: &[&str] = &["tail", job, "-n", "100000", "--output", "raw"];
    for (what, args) in [("grep", greps), ("tail -n", tails)] {
        let mut tries = 0;
        let (acked, out, sent) = loop {
            let acked = written.acked();
            let out = server.cli(args);
            let sent = written.sent();
            tries += 1;
            if !out.stderr.contains("search.max_query_secs") {
                break (acked, out, sent);
            }
            assert!(tries < 5, "{what}: cut short {tries} times: {}", out.stderr);
        };
        assert_eq!(out.code, 0, "{what}: {}", out.stderr);
        let got: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.starts_with("now "))
            .collect();
        let n = got.len();
        assert!(
            (acked..=sent).contains(&n),
            "{what}: {n} lines, while {acked} were acknowledged before it began and {sent} sent by its end; stderr: {}",
            out.stderr
        );
        let want: Vec<String> = (0..n).map(numbered).collect();
        assert_eq!(got, want, "{what}: not each line once, in order");
    }
}

/// Waits until `follow` has printed the first `total` numbered lines (those
/// starting with `now `), then checks it printed each once, in order; `ctx`
/// goes into the message.
pub fn follow_shows_numbered_once(
    follow: &mut crate::follower::Follower,
    total: usize,
    numbered: &dyn Fn(usize) -> String,
    ctx: &str,
) {
    let now_lines = |seen: &[String]| seen.iter().filter(|l| l.starts_with("now ")).count();
    while now_lines(&follow.seen) < total {
        follow.next_line(crate::wait::DEADLINE);
    }
    let followed: Vec<&String> = follow
        .seen
        .iter()
        .filter(|l| l.starts_with("now "))
        .collect();
    let want: Vec<String> = (0..total).map(numbered).collect();
    assert_eq!(
        followed,
        want.iter().collect::<Vec<_>>(),
        "the follow shows each line once, in order ({ctx})"
    );
}
