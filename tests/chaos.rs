//! Chaos: the real `cblogs-shipper` tails a fake Mesos agent (laid out as
//! `thermos-layout.md` describes) while the test keeps appending lines, and
//! `cblogsd` or the shipper is SIGKILLed at 20 random moments; in the end
//! every line written to every sandbox file must be stored exactly once, in
//! file order. And a torn last WAL record is cut off with a warning, the
//! records before it kept, and the lost tail restored by the shipper.
//!
//! The kill points are drawn from a seeded RNG. The seed is printed; set
//! `CBLOGS_CHAOS_SEED=<seed>` to replay a run's schedule (the timing of the
//! processes themselves can of course not be replayed).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cblogs_core::{LineView, Stream};
use cblogs_testkit::*;

const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];
const HELLO: (&str, &str, &str) = ("www-data", "prod", "hello");
const EIGHT_BALL: (&str, &str, &str) = ("cbe-team", "devel", "eight_ball-api");
const KILLS: usize = 20;
/// Bounds the final catch-up after the last kill.
const CATCH_UP: Duration = Duration::from_secs(60);

/// Small blocks, frequent commits and small WAL segments: a kill at any
/// moment has a fair chance to land in a seal, a commit or a WAL trim.
const CHAOS_SERVER: &str = "[storage]\nblock_bytes = 1024\nblock_max_age_ms = 200\n\
                            commit_interval_ms = 100\nwal_segment_bytes = 32768\n\
                            split_max_age_secs = 1\n";

/// The test shipper config with small requests (a burst goes out as many
/// requests, so a kill can land between them) and frequent checkpoints.
fn chaos_shipper_config() -> String {
    let c = SHIPPER_FAST
        .replace("batch_max_bytes = 1048576", "batch_max_bytes = 32768")
        .replace(
            "[checkpoint]\ninterval_ms = 1000",
            "[checkpoint]\ninterval_ms = 200",
        );
    assert_ne!(c, SHIPPER_FAST, "SHIPPER_FAST changed shape");
    c
}

// ---------------------------------------------------------------------------
// The writer: appends unique lines to every stream of some process runs.
// ---------------------------------------------------------------------------

#[derive(Default)]
struct WriterControl {
    stop: AtomicBool,
    rounds: AtomicUsize,
    /// Lines per file the next round writes on top of its one.
    burst: AtomicUsize,
    bursts_done: AtomicUsize,
    rotate: AtomicBool,
    rotations_done: AtomicUsize,
}

/// Appends one line to every stream every `pause`, each line
/// `<run>/<stream>/<seq> <sample line>` (so unique); every seventh write
/// in two pieces. On request: a burst of many lines per file, or a
/// rotation of the first run's stdout.
struct Writer {
    ctl: Arc<WriterControl>,
    handle: JoinHandle<Vec<ProcessRun>>,
}

impl Writer {
    fn start(mut runs: Vec<ProcessRun>, pause: Duration) -> Writer {
        let ctl = Arc::new(WriterControl::default());
        let handle = {
            let ctl = ctl.clone();
            std::thread::spawn(move || {
                let corpora: Vec<Vec<Vec<u8>>> = [
                    LogKind::WebServerErrors,
                    LogKind::Hdfs,
                    LogKind::Sshd,
                    LogKind::Syslog,
                ]
                .iter()
                .map(|kind| sample(*kind))
                .collect();
                let mut seq = vec![[0usize; 2]; runs.len()];
                let mut writes = 0usize;
                while !ctl.stop.load(Ordering::SeqCst) {
                    let burst = ctl.burst.swap(0, Ordering::SeqCst);
                    for (r, run) in runs.iter_mut().enumerate() {
                        let text = &corpora[r % corpora.len()];
                        for (s, stream) in BOTH.into_iter().enumerate() {
                            let mut buf = Vec::new();
                            for _ in 0..=burst {
                                let n = seq[r][s];
                                seq[r][s] += 1;
                                buf.extend_from_slice(format!("{r}/{stream}/{n:07} ").as_bytes());
                                buf.extend_from_slice(&text[(n + 37 * r) % text.len()]);
                                buf.push(b'\n');
                            }
                            writes += 1;
                            if writes.is_multiple_of(7) {
                                let (a, b) = buf.split_at(buf.len() / 2);
                                run.append(stream, a);
                                run.append(stream, b);
                            } else {
                                run.append(stream, &buf);
                            }
                        }
                    }
                    if burst > 0 {
                        ctl.bursts_done.fetch_add(1, Ordering::SeqCst);
                    }
                    if ctl.rotate.swap(false, Ordering::SeqCst) {
                        runs[0].rotate(Stream::Stdout);
                        ctl.rotations_done.fetch_add(1, Ordering::SeqCst);
                    }
                    ctl.rounds.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(pause);
                }
                runs
            })
        };
        Writer { ctl, handle }
    }

    /// Writes `per_file` extra lines to every file at once; returns when written.
    fn burst(&self, per_file: usize) {
        let done = self.ctl.bursts_done.load(Ordering::SeqCst);
        self.ctl.burst.store(per_file, Ordering::SeqCst);
        wait_until("the writer to write a burst", DEADLINE, || {
            (self.ctl.bursts_done.load(Ordering::SeqCst) > done).then_some(())
        });
    }

    /// Rotates the first run's stdout between two rounds; returns when done.
    fn rotate(&self) {
        let done = self.ctl.rotations_done.load(Ordering::SeqCst);
        self.ctl.rotate.store(true, Ordering::SeqCst);
        wait_until("the writer to rotate stdout", DEADLINE, || {
            (self.ctl.rotations_done.load(Ordering::SeqCst) > done).then_some(())
        });
    }

    fn finish(self) -> Vec<ProcessRun> {
        self.ctl.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the writer thread")
    }
}

/// Four process runs: two jobs, three instances, three processes, 8 files.
fn chaos_runs(agent: &Agent) -> Vec<ProcessRun> {
    let (r, e, n) = HELLO;
    let (r2, e2, n2) = EIGHT_BALL;
    let eight = agent.task(r2, e2, n2, 3);
    vec![
        agent.task(r, e, n, 0).process("hello_world", 0),
        agent.task(r, e, n, 1).process("hello_world", 0),
        eight.process("eight_ball_srv", 2),
        eight.process("fetch_package", 0),
    ]
}

// ---------------------------------------------------------------------------
// Observing the server and the shipper from outside.
// ---------------------------------------------------------------------------

/// Lines stored over all jobs, straight from `GET /api/v1/jobs` (cheaper
/// than the CLI, for tight polls); `None` while the server does not answer.
struct Api {
    client: reqwest::blocking::Client,
    url: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client"),
            url: format!("{}{}", server.url, cblogs_core::api::JOBS_PATH),
        }
    }

    fn stored(&self) -> Option<u64> {
        let resp = self.client.get(&self.url).send().ok()?;
        if !resp.status().is_success() {
            return None;
        }
        let jobs: cblogs_core::api::JobsResponse = resp.json().ok()?;
        Some(jobs.jobs.iter().map(|j| j.lines).sum())
    }

    /// Polls (every 2 ms) until more than `than` lines are stored.
    fn wait_stored_above(&self, than: u64, within: Duration) -> Option<u64> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(n) = self.stored().filter(|n| *n > than) {
                return Some(n);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }
}

/// (files, total bytes) under `dir`, recursively: changes when a commit
/// appends to `blocks.dat` or tantivy writes a segment or its meta.
fn tree_signature(dir: &Path) -> (u64, u64) {
    let mut sig = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return sig;
    };
    for e in entries.flatten() {
        match e.metadata() {
            Ok(m) if m.is_dir() => {
                let (f, b) = tree_signature(&e.path());
                sig = (sig.0 + f, sig.1 + b);
            }
            Ok(m) => sig = (sig.0 + 1, sig.1 + m.len()),
            Err(_) => {}
        }
    }
    sig
}

/// Polls (every millisecond) until `f` changes from its first value; false
/// at the deadline.
fn wait_change<T: PartialEq>(within: Duration, mut f: impl FnMut() -> T) -> bool {
    let first = f();
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f() != first {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

// ---------------------------------------------------------------------------
// Exactly once, in order.
// ---------------------------------------------------------------------------

/// Waits until the server holds as many lines per job as `runs` wrote
/// (failing at once if it holds more), then checks every line is there
/// exactly once, in file order; on failure lists what is wrong.
fn assert_exactly_once(
    server: &Server,
    shipper: &mut Shipper,
    runs: &[&ProcessRun],
    selector: &str,
    ctx: &str,
) -> Vec<LineView> {
    let total: u64 = written_per_job(runs).values().sum();
    assert!(
        total < cblogs_core::api::MAX_TAIL_LINES as u64,
        "{ctx}: {total} lines written, more than one tail can read back"
    );
    let outcome = await_stored(server, shipper, CATCH_UP, runs).err();
    let got = server.try_all_lines(selector).unwrap_or_default();
    let problems = problems(&got, runs, Offsets::Exact);
    if outcome.is_some() || !problems.is_empty() {
        panic!(
            "{ctx}: {}\n  {}\nshipper log (end):\n{}\ncblogsd log (end):\n{}",
            outcome.unwrap_or_else(|| "counts match, lines do not".into()),
            problems.join("\n  "),
            log_tail(&shipper.log_text(), 30),
            log_tail(&server.log_text(), 30),
        );
    }
    got
}

/// The end of a kill test: one last burst after the last restart, writing
/// stops, the rotation happened, and every line written is stored exactly
/// once, in order.
fn last_burst_then_check(
    writer: Writer,
    server: &Server,
    shipper: &mut Shipper,
    what: &str,
    started: Instant,
) {
    writer.burst(50);
    let runs = writer.finish();
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    assert!(
        runs[0].dir.join("stdout.1").exists(),
        "the rotation happened"
    );
    let lines = assert_exactly_once(server, shipper, &refs, "*", what);
    println!(
        "{what}: {} lines exactly once, {:.1?}",
        lines.len(),
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 1. SIGKILL cblogsd.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum ServerKill {
    /// As soon as more lines are stored (and so acknowledged, or about to be).
    AfterAck,
    /// As soon as a commit touches a split being built (blocks.dat
    /// appended, tantivy segment or meta written): in mid-commit.
    MidCommit,
    /// As soon as a publish touches the object store (a split's files
    /// linked in, before or after the metastore commit that shows it).
    MidPublish,
    /// While the shipper sends a burst as many requests: a random part of it acknowledged.
    MidShipperBatch,
    /// After a random delay.
    Random,
}

/// A kill point right after the server acknowledged more lines.
fn after_an_ack(api: &Api) -> String {
    let now = api.stored().unwrap_or(0);
    match api.wait_stored_above(now, DEADLINE) {
        Some(n) => format!("right after {n} lines were stored"),
        None => "no ingest seen".into(),
    }
}

/// A kill point in the middle of a burst: writes 100–300 lines to every
/// file and returns once a random part of them is stored.
fn mid_burst(api: &Api, writer: &Writer, rng: &mut Rng) -> String {
    let before = api.stored().unwrap_or(0);
    let per_file = 100 + rng.below(200) as usize;
    writer.burst(per_file);
    let part = 1 + rng.below(per_file as u64 * 8);
    match api.wait_stored_above(before + part, DEADLINE) {
        Some(n) => format!(
            "during a burst of {per_file} lines per file, {} lines into it",
            n - before
        ),
        None => "burst not acknowledged".into(),
    }
}

/// A kill point as soon as `f` changes (within 5 s): `seen`, or `not_seen`
/// if it did not.
fn on_change<T: PartialEq>(f: impl FnMut() -> T, seen: &str, not_seen: &str) -> String {
    let changed = wait_change(Duration::from_secs(5), f);
    if changed { seen } else { not_seen }.to_owned()
}

/// Says which kill this was, and keeps the process down for `down` (the
/// schedule's pause, not a wait for anything).
fn stay_down(k: usize, mode: &impl std::fmt::Debug, note: &str, down: Duration, started: Instant) {
    println!(
        "  kill {k:2} ({mode:?}) {note}; down for {down:?} [{:.1?}]",
        started.elapsed()
    );
    std::thread::sleep(down);
}

/// A kill point 0–1.5 s from now, whatever is happening then.
fn after_random_delay(rng: &mut Rng) -> String {
    let d = rng.millis(0, 1500);
    std::thread::sleep(d);
    format!("after {d:?}")
}

#[test]
fn sigkill_cblogsd_at_20_random_points() {
    let _serial = serial();
    let started = Instant::now();
    let seed = chaos_seed("sigkill_cblogsd_at_20_random_points");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, Some(CHAOS_SERVER));
    let api = Api::new(&server);
    let agent = Agent::new(&dir.path().join("agent"));
    let runs = chaos_runs(&agent);
    let mut shipper = Shipper::start(
        &agent,
        &dir.path().join("shipper-state"),
        &server.url,
        &chaos_shipper_config(),
    );
    let writer = Writer::start(runs, Duration::from_millis(10));
    api.wait_stored_above(100, DEADLINE)
        .expect("the shipper to ship its first lines");

    let mut plan: Vec<ServerKill> = (0..KILLS)
        .map(|i| {
            [
                ServerKill::AfterAck,
                ServerKill::MidCommit,
                ServerKill::MidPublish,
                ServerKill::MidShipperBatch,
                ServerKill::Random,
            ][i % 5]
        })
        .collect();
    rng.shuffle(&mut plan);
    let building = data.join("building");
    let published = data.join("bucket");
    for (k, mode) in plan.iter().enumerate() {
        if k == KILLS / 2 {
            writer.rotate();
            println!("  rotated the first run's stdout");
        }
        let note = match mode {
            ServerKill::AfterAck => after_an_ack(&api),
            ServerKill::MidCommit => on_change(
                || tree_signature(&building),
                "as a commit wrote to a split being built",
                "no commit seen within 5 s",
            ),
            ServerKill::MidPublish => on_change(
                || tree_signature(&published),
                "as a publish wrote to the object store",
                "no publish seen within 5 s",
            ),
            ServerKill::MidShipperBatch => mid_burst(&api, &writer, &mut rng),
            ServerKill::Random => after_random_delay(&mut rng),
        };
        server.kill9();
        stay_down(k, mode, &note, rng.millis(0, 300), started);
        server.restart();
        shipper.assert_running();
    }
    let what = format!("seed {seed}, cblogsd killed {KILLS} times");
    last_burst_then_check(writer, &server, &mut shipper, &what, started);
    assert!(
        server.log_text().contains("write-ahead log replayed"),
        "restarts replayed the WAL"
    );
    shipper.stop();
}

// ---------------------------------------------------------------------------
// 2. SIGKILL the shipper.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum ShipperKill {
    /// As soon as more lines are stored: acknowledged, likely not checkpointed.
    AfterAck,
    /// As soon as a new checkpoint file is renamed into place.
    AfterCheckpoint,
    /// While a burst goes out as many requests: a random part of it acknowledged.
    MidBatch,
    /// After a random delay.
    Random,
}

#[test]
fn sigkill_shipper_at_20_random_points() {
    let _serial = serial();
    let started = Instant::now();
    let seed = chaos_seed("sigkill_shipper_at_20_random_points");
    let mut rng = Rng(seed);
    let (dir, mut server) = Server::in_temp_dir(Some(SMALL_BLOCKS));
    let api = Api::new(&server);
    let agent = Agent::new(&dir.path().join("agent"));
    let runs = chaos_runs(&agent);
    let state: PathBuf = dir.path().join("shipper-state");
    let mut shipper = Shipper::start(&agent, &state, &server.url, &chaos_shipper_config());
    let writer = Writer::start(runs, Duration::from_millis(10));
    api.wait_stored_above(100, DEADLINE)
        .expect("the shipper to ship its first lines");
    let checkpoint = state.join("checkpoints.json");
    let checkpoint_id = || {
        std::fs::metadata(&checkpoint)
            .map(|m| (m.ino(), m.len()))
            .ok()
    };

    let mut plan: Vec<ShipperKill> = (0..KILLS)
        .map(|i| {
            [
                ShipperKill::AfterAck,
                ShipperKill::AfterCheckpoint,
                ShipperKill::MidBatch,
                ShipperKill::Random,
            ][i % 4]
        })
        .collect();
    rng.shuffle(&mut plan);
    for (k, mode) in plan.iter().enumerate() {
        let note = match mode {
            ShipperKill::AfterAck => after_an_ack(&api),
            ShipperKill::AfterCheckpoint => on_change(
                checkpoint_id,
                "right after a checkpoint was written",
                "no checkpoint written within 5 s",
            ),
            ShipperKill::MidBatch => mid_burst(&api, &writer, &mut rng),
            ShipperKill::Random => after_random_delay(&mut rng),
        };
        shipper.assert_running();
        shipper.kill9();
        stay_down(k, mode, &note, rng.millis(0, 500), started);
        if k == KILLS / 2 {
            // While the shipper is down: on restart it must find its
            // checkpointed file by inode as stdout.1 and go on with stdout.
            writer.rotate();
            println!("  rotated the first run's stdout while the shipper was down");
        }
        shipper.restart();
    }
    let what = format!("seed {seed}, the shipper killed {KILLS} times");
    last_burst_then_check(writer, &server, &mut shipper, &what, started);
    shipper.stop();
    server.stop();
}

// ---------------------------------------------------------------------------
// 3. A torn last WAL record.
// ---------------------------------------------------------------------------

/// The newest WAL segment (`wal/<first seq>.wal`, the highest seq).
fn last_wal_segment(data: &Path) -> PathBuf {
    std::fs::read_dir(data.join("wal"))
        .expect("read the WAL dir")
        .flatten()
        .map(|e| e.path())
        .filter_map(|p| {
            let seq: u64 = p
                .file_name()?
                .to_str()?
                .strip_suffix(".wal")?
                .parse()
                .ok()?;
            Some((seq, p))
        })
        .max()
        .map(|(_, p)| p)
        .expect("a WAL segment")
}

/// The WAL records of a segment (`u32 len · u32 crc · payload`): each one's
/// start and payload length. Panics unless the file ends with a whole record.
fn wal_records(data: &[u8]) -> Vec<(usize, usize)> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        assert!(
            pos + 8 + len <= data.len(),
            "a torn record before the test tore one"
        );
        records.push((pos, len));
        pos += 8 + len;
    }
    assert_eq!(pos, data.len(), "the segment ends with a whole record");
    records
}

/// The source JSON in a record's payload (`u64 seq · u32 len · JSON · block`).
fn record_source(payload: &[u8]) -> serde_json::Value {
    let n = u32::from_le_bytes(payload[8..12].try_into().expect("4 bytes")) as usize;
    serde_json::from_slice(&payload[12..12 + n]).expect("source JSON in a WAL record")
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The file ends in the middle of its last record.
    CutInHalf,
    /// One byte in the middle of the last record's payload is flipped.
    FlippedByte,
}

#[test]
fn torn_last_wal_record_is_recovered_with_a_warning() {
    let _serial = serial();
    for damage in [Damage::CutInHalf, Damage::FlippedByte] {
        torn_last_wal_record(damage);
    }
}

fn torn_last_wal_record(damage: Damage) {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // Nothing is sealed or committed during the test: every record stays in the WAL.
    let config = "[storage]\nblock_max_age_ms = 3600000\ncommit_interval_ms = 3600000\n";
    let mut server = Server::start(&data, Some(config));
    let agent = Agent::new(&dir.path().join("agent"));
    let (r, e, n) = HELLO;
    let mut run = agent.task(r, e, n, 0).process("hello_world", 0);
    let mut shipper = Shipper::start(
        &agent,
        &dir.path().join("shipper-state"),
        &server.url,
        SHIPPER_FAST,
    );
    let text = sample(LogKind::ClusterSyslog);
    let line = |tag: &str, i: usize| {
        let mut l = format!("{tag} {i:04} ").into_bytes();
        l.extend_from_slice(&text[i % text.len()]);
        l
    };
    // Several records per stream, each acknowledged before the next write.
    for w in 0..5 {
        for stream in BOTH {
            let lines: Vec<Vec<u8>> = (w * 10..w * 10 + 10).map(|i| line("early", i)).collect();
            run.append_lines(stream, &lines);
        }
        wait_all_stored(&server, &mut shipper, DEADLINE, &[&run]);
    }
    let before_last = run.model(Stream::Stdout).lines.len();
    // The last write, to stdout only: the WAL's last record holds (some of) it.
    let last: Vec<Vec<u8>> = (0..20).map(|i| line("last", i)).collect();
    run.append_lines(Stream::Stdout, &last);
    wait_all_stored(&server, &mut shipper, DEADLINE, &[&run]);
    server.kill9();

    let segment = last_wal_segment(&data);
    let mut bytes = std::fs::read(&segment).expect("read the WAL segment");
    let records = wal_records(&bytes);
    let &(at, len) = records.last().expect("a record in the last segment");
    let torn_source = record_source(&bytes[at + 8..at + 8 + len]);
    assert_eq!(
        (
            torn_source["task_id"].as_str(),
            torn_source["stream"].as_str()
        ),
        (Some(run.task_id.as_str()), Some("stdout")),
        "the last WAL record is the last stdout batch: {torn_source}"
    );
    let middle = at + 8 + len / 2;
    match damage {
        Damage::CutInHalf => bytes.truncate(middle),
        Damage::FlippedByte => bytes[middle] ^= 0x5a,
    }
    std::fs::write(&segment, &bytes).expect("damage the WAL segment");

    server.restart();
    let log = server.log_text();
    let warning = log
        .lines()
        .find(|l| l.contains("torn or corrupt record"))
        .unwrap_or_else(|| panic!("{damage:?}: no warning about the torn record; log:\n{log}"));
    assert!(
        warning.contains("WARN"),
        "{damage:?}: logged as a warning: {warning}"
    );
    // Every record before the torn one is there; the torn one is not.
    let stored = server.all_lines(&run.job);
    let want_stdout = &run.model(Stream::Stdout).lines;
    let have_stdout: Vec<Shown> = stored
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| (l.offset, l.text.clone(), l.flags.cut, l.flags.partial))
        .collect();
    let have_stderr = stored.iter().filter(|l| l.stream == Stream::Stderr).count();
    assert_eq!(
        have_stderr,
        run.model(Stream::Stderr).lines.len(),
        "{damage:?}: every stderr line (all in earlier records)"
    );
    let kept = have_stdout.len();
    assert!(
        (before_last..want_stdout.len()).contains(&kept),
        "{damage:?}: stdout keeps every line before the last write ({before_last}) and \
         loses the torn record's: {kept} of {} stored",
        want_stdout.len()
    );
    let want_prefix: Vec<Shown> = want_stdout[..kept].iter().map(Written::view).collect();
    assert_eq!(
        have_stdout, want_prefix,
        "{damage:?}: stdout is the written lines up to the torn record"
    );
    println!(
        "  {damage:?}: {} of the last write's 20 lines were in the torn record",
        want_stdout.len() - kept
    );

    // The shipper's next batch starts past what the server holds (409):
    // it re-sends the lost tail, and every line is there exactly once.
    run.append_lines(Stream::Stdout, &["written after the restart"]);
    run.append_lines(Stream::Stderr, &["stderr after the restart"]);
    assert_exactly_once(
        &server,
        &mut shipper,
        &[&run],
        &run.job,
        &format!("{damage:?}: after the torn WAL record"),
    );
    // New ingest from another sender is accepted too.
    let mut fresh = SourceFile::of("devcluster/chaos/prod/fresh", 0, "p", Stream::Stdout);
    let resp = server.post_ok(&request(vec![fresh.batch(&["after the torn record"])]));
    assert_eq!(resp["accepted"], 1, "{damage:?}: {resp}");
    assert_eq!(server.all_lines("chaos/prod/fresh").len(), 1);
    shipper.stop();
    println!("  {damage:?}: recovered in {:.1?}", started.elapsed());
}
