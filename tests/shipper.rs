//! The real `cblogs-shipper` on a fake Mesos agent (laid out as
//! `thermos-layout.md` describes), shipping to the real `cblogsd`; what
//! arrived is read back with the real `cblogs` CLI. Every line written to a
//! process's stdout or stderr must arrive exactly once, in file order, with
//! its job, instance, process, run and stream, whatever happens to the
//! files, the shipper or the server in between.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cblogs_core::{LineView, Stream};
use cblogs_testkit::*;

const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];
const HELLO: (&str, &str, &str) = ("www-data", "prod", "hello");
/// A role and a job name holding `-` and `_`.
const EIGHT_BALL: (&str, &str, &str) = ("cbe-team", "devel", "eight_ball-api");

/// A cblogsd (small blocks, so the index is read too) and an empty agent.
fn setup() -> Stack {
    Stack::new(Some(SMALL_BLOCKS))
}

/// `n` lines of a sample of `kind` starting at line `from` (wrapping
/// around), each prefixed with `tag` so that every line a test writes is
/// distinct.
fn tagged(kind: LogKind, tag: &str, from: usize, n: usize) -> Vec<Vec<u8>> {
    let lines = sample(kind);
    (from..from + n)
        .map(|i| {
            let mut l = format!("{tag} {i:05} ").into_bytes();
            l.extend_from_slice(&lines[i % lines.len()]);
            l
        })
        .collect()
}

/// Writes `lines` to a stream in writes of `per_write` lines each.
fn write_in_chunks(run: &mut ProcessRun, stream: Stream, lines: &[Vec<u8>], per_write: usize) {
    for chunk in lines.chunks(per_write) {
        run.append_lines(stream, chunk);
    }
}

/// The end of the shipper's log, without terminal colour codes.
fn shipper_log_tail(shipper: &Shipper) -> String {
    log_tail(&shipper.log_text(), 40)
}

/// Waits until the CLI shows as many lines for `selector` as `runs` wrote
/// (every line of the selected jobs must come from `runs`), then asserts
/// that each arrived exactly once, in order, with the right source.
fn await_shipped(
    env: &Stack,
    shipper: &mut Shipper,
    selector: &str,
    runs: &[&ProcessRun],
    offsets: Offsets,
) -> Vec<LineView> {
    let total: usize = runs
        .iter()
        .flat_map(|r| BOTH.map(|s| r.model(s).lines.len()))
        .sum();
    assert!(total > 0, "the test wrote nothing to wait for");
    let end = Instant::now() + DEADLINE;
    loop {
        shipper.assert_running();
        let got = env.server.try_all_lines(selector).unwrap_or_default();
        if got.len() >= total || Instant::now() >= end {
            let problems = problems(&got, runs, offsets);
            assert!(
                problems.is_empty(),
                "{}{selector}: {} lines written, {} shown:\n  {}\nshipper log (end):\n{}",
                if got.len() < total {
                    format!("timed out after {DEADLINE:?}: ")
                } else {
                    String::new()
                },
                total,
                got.len(),
                problems.join("\n  "),
                shipper_log_tail(shipper)
            );
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Lines stored so far, over all jobs (`cblogs jobs`).
fn stored_count(server: &Server) -> u64 {
    let out = server.cli(&["jobs", "--output", "json"]);
    out.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|j| j["lines"].as_u64())
        .sum()
}

fn wait_stored_at_least(server: &Server, shipper: &mut Shipper, n: u64) -> u64 {
    wait_until(&format!("{n} lines shipped"), DEADLINE, || {
        shipper.assert_running();
        let c = stored_count(server);
        (c >= n).then_some(c)
    })
}

/// The rows of `cblogs-shipper --status`: (lag, acked, file).
fn status_rows(stdout: &str) -> Vec<(u64, u64, String)> {
    stdout
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("LAG"))
        .skip(1)
        .map(|row| {
            let f: Vec<&str> = row.split_whitespace().collect();
            let num = |s: &str| s.parse().unwrap_or_else(|_| panic!("a number: {row}"));
            (num(f[0]), num(f[1]), f[2].to_owned())
        })
        .collect()
}

fn assert_nothing_but_task_logs(env: &Stack) {
    let all = env.server.all_lines("*");
    assert!(!all.is_empty());
    let bad: Vec<&LineView> = all.iter().filter(|l| l.text.contains(NOT_A_LOG)).collect();
    assert!(
        bad.is_empty(),
        "shipped what is not a process log (executor output, sandbox files, \
         checkpoints, foreign executors): {bad:?}"
    );
}

// ---------------------------------------------------------------------------

#[test]
fn appends_to_many_files_arrive_once_in_order_with_job_instance_process_and_run() {
    let env = setup();
    env.agent.foreign_executor();
    let hello0 = env.task(HELLO, 0);
    let hello1 = env.task(HELLO, 1);
    let eight = env.task(EIGHT_BALL, 0);
    let mut runs = vec![
        hello0.process("fetch_package", 0),
        hello0.process("hello_world", 0),
        hello1.process("fetch_package", 0),
        hello1.process("hello_world", 0),
        eight.process("eight_ball_srv", 0),
    ];
    let corpora = [LogKind::WebServerErrors, LogKind::Hdfs, LogKind::Sshd];
    // Before the shipper starts: what the sandboxes already hold is shipped.
    for (i, run) in runs.iter_mut().enumerate() {
        let c = corpora[i % corpora.len()];
        write_in_chunks(run, Stream::Stdout, &tagged(c, "before", i * 300, 300), 7);
        write_in_chunks(run, Stream::Stderr, &tagged(c, "before-err", i * 50, 50), 3);
    }
    let mut shipper = env.shipper_with_status_endpoint();
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    await_shipped(&env, &mut shipper, "*", &refs, Offsets::Exact);

    // While it runs: more lines everywhere; hello_world of instance 0 is
    // restarted into run 1; a new instance appears (its stderr only on its
    // first write); a new process of the other job writes only stderr.
    for (i, run) in runs.iter_mut().enumerate() {
        let c = corpora[(i + 1) % corpora.len()];
        write_in_chunks(run, Stream::Stdout, &tagged(c, "during", i * 200, 200), 5);
        write_in_chunks(run, Stream::Stderr, &tagged(c, "during-err", i * 20, 20), 1);
    }
    let mut restarted = hello0.process("hello_world", 1);
    let hello2 = env.task(HELLO, 2);
    let mut late_files = hello2.process_dir_only("hello_world", 0);
    let mut late_process = eight.process_dir_only("fetch_package", 0);
    write_in_chunks(
        &mut restarted,
        Stream::Stdout,
        &tagged(LogKind::Syslog, "run1", 0, 150),
        10,
    );
    write_in_chunks(
        &mut restarted,
        Stream::Stderr,
        &tagged(LogKind::Syslog, "run1-err", 0, 15),
        1,
    );
    write_in_chunks(
        &mut late_files,
        Stream::Stdout,
        &tagged(LogKind::MacOs, "new instance", 0, 120),
        4,
    );
    late_files.append_lines(
        Stream::Stderr,
        &["a stderr created after the shipper started"],
    );
    write_in_chunks(
        &mut late_process,
        Stream::Stderr,
        &tagged(LogKind::ClusterNodes, "late process", 0, 40),
        8,
    );
    runs.extend([restarted, late_files, late_process]);
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    let lines = await_shipped(&env, &mut shipper, "*", &refs, Offsets::Exact);
    // The mapping, spelled out once for one line of each kind.
    let one = |task: &Task, process: &str, run: u32| {
        lines
            .iter()
            .find(|l| l.task_id == task.task_id && l.process == process && l.run == run)
            .unwrap_or_else(|| panic!("a line of {}/{process}/{run}", task.task_id))
    };
    let l = one(&hello0, "hello_world", 1);
    assert_eq!(
        (
            l.job.as_str(),
            l.instance,
            l.cluster.as_str(),
            l.host.as_str()
        ),
        ("www-data/prod/hello", 0, "devcluster", "agent1")
    );
    let l = one(&hello2, "hello_world", 0);
    assert_eq!((l.job.as_str(), l.instance), ("www-data/prod/hello", 2));
    let l = one(&eight, "fetch_package", 0);
    assert_eq!(
        (l.job.as_str(), l.instance, l.stream),
        ("cbe-team/devel/eight_ball-api", 0, Stream::Stderr)
    );
    let jobs = env.server.cli(&["jobs", "--output", "raw"]);
    assert_eq!(
        jobs.lines(),
        [
            "devcluster/cbe-team/devel/eight_ball-api",
            "devcluster/www-data/prod/hello"
        ],
        "{}",
        jobs.stderr
    );
    assert_nothing_but_task_logs(&env);

    // `cblogs-shipper --status`: exactly the process logs are tailed (not
    // the executor's own output, not a run a second time through
    // runs/latest, not a foreign executor), each acknowledged to its end.
    let mut want: Vec<(u64, u64, String)> = runs
        .iter()
        .flat_map(|r| BOTH.map(|s| (r.path(s), r.model(s).written)))
        .filter(|(path, _)| path.exists())
        .map(|(path, written)| (0, written, path.display().to_string()))
        .collect();
    want.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(want.len(), 15);
    let mut tailed = wait_until("--status to show every file acknowledged", DEADLINE, || {
        let out = shipper.status();
        assert_eq!(out.code, 0, "cblogs-shipper --status: {}", out.stderr);
        let rows = status_rows(&out.stdout);
        (!rows.is_empty() && rows.iter().all(|r| r.0 == 0)).then_some(rows)
    });
    tailed.sort_by(|a, b| a.2.cmp(&b.2));
    assert_eq!(tailed, want);

    // A clean stop, lines written while it is down (also to a new file),
    // and a start from its checkpoints.
    shipper.stop();
    for run in runs.iter_mut().take(3) {
        write_in_chunks(
            run,
            Stream::Stdout,
            &tagged(LogKind::WindowsCbs, "while down", 0, 30),
            6,
        );
    }
    let mut while_down = hello1.process("hello_world", 1);
    while_down.append_lines(Stream::Stdout, &["run 1 began while the shipper was down"]);
    runs.push(while_down);
    shipper.restart();
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    await_shipped(&env, &mut shipper, "*", &refs, Offsets::Exact);
    shipper.stop();
}

#[test]
fn a_line_written_in_three_pieces_arrives_as_one_line() {
    let env = setup();
    let task = env.task(HELLO, 0);
    let mut run = task.process("hello_world", 0);
    let mut shipper = env.shipper();
    run.append(Stream::Stdout, b"before\n");
    run.append(Stream::Stderr, b"stderr is tailed\n");
    await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);

    // Three writes without a newline, then the newline: well within the
    // partial-line delay (2 s) but far apart enough (several polls) that
    // the shipper reads each piece on its own. The pauses pace the writer;
    // nothing waits on them.
    for piece in [
        &b"first piece, "[..],
        b"second piece, ",
        b"third piece",
        b"\n",
    ] {
        run.append(Stream::Stdout, piece);
        std::thread::sleep(Duration::from_millis(250));
    }
    run.append(Stream::Stdout, b"after\n");
    let lines = await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);
    let texts: Vec<(&str, bool)> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| (l.text.as_str(), l.flags.partial))
        .collect();
    assert_eq!(
        texts,
        [
            ("before", false),
            ("first piece, second piece, third piece", false),
            ("after", false)
        ]
    );

    // A last line left without its newline for longer than the delay is
    // sent marked partial; what follows starts a new line.
    run.append(Stream::Stderr, b"no newline for a while");
    run.model_mut(Stream::Stderr).expect_partial();
    await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);
    run.append(Stream::Stderr, b" ...and the rest\n");
    let lines = await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);
    let stderr: Vec<(&str, bool)> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stderr)
        .map(|l| (l.text.as_str(), l.flags.partial))
        .collect();
    assert_eq!(
        stderr,
        [
            ("stderr is tailed", false),
            ("no newline for a while", true),
            (" ...and the rest", false)
        ]
    );
}

#[test]
fn rotation_mid_burst_loses_nothing_doubles_nothing_and_joins_a_split_line() {
    let env = setup();
    let task = env.task(HELLO, 0);
    let mut run = task.process("hello_world", 0);
    let mut shipper = env.shipper();
    run.append(Stream::Stdout, b"the first line\n");
    await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);

    // A burst with no pause: the shipper is behind when the files rotate.
    write_in_chunks(
        &mut run,
        Stream::Stdout,
        &tagged(LogKind::ClusterSyslog, "a", 0, 2000),
        50,
    );
    write_in_chunks(
        &mut run,
        Stream::Stderr,
        &tagged(LogKind::Supercomputer, "e", 0, 500),
        20,
    );
    run.append(
        Stream::Stdout,
        b"a line split by rotation: its first half, ",
    );
    run.rotate(Stream::Stdout);
    run.rotate(Stream::Stderr);
    run.append(Stream::Stdout, b"and its second half\n");
    write_in_chunks(
        &mut run,
        Stream::Stdout,
        &tagged(LogKind::ClusterSyslog, "b", 2000, 500),
        50,
    );
    write_in_chunks(
        &mut run,
        Stream::Stderr,
        &tagged(LogKind::Supercomputer, "f", 500, 200),
        20,
    );
    run.rotate(Stream::Stdout);
    write_in_chunks(
        &mut run,
        Stream::Stdout,
        &tagged(LogKind::ClusterSyslog, "c", 2500, 300),
        50,
    );
    assert!(run.dir.join("stdout.2").exists() && run.dir.join("stderr.1").exists());
    let lines = await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);
    let split: Vec<&LineView> = lines
        .iter()
        .filter(|l| l.text.contains("split by rotation"))
        .collect();
    assert_eq!(split.len(), 1, "{split:?}");
    assert_eq!(
        (split[0].text.as_str(), split[0].flags.partial),
        (
            "a line split by rotation: its first half, and its second half",
            false
        )
    );
}

#[test]
fn truncation_is_read_again_from_the_start_and_nothing_is_doubled() {
    let env = setup();
    let task = env.task(HELLO, 0);
    let mut run = task.process("hello_world", 0);
    let mut shipper = env.shipper();
    write_in_chunks(
        &mut run,
        Stream::Stdout,
        &tagged(LogKind::Logcat, "old", 0, 200),
        10,
    );
    run.append_lines(Stream::Stderr, &["stderr is not truncated"]);
    await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);

    // `> stdout`, and the process goes on writing (fewer bytes than before).
    run.truncate(Stream::Stdout);
    run.append_lines(
        Stream::Stdout,
        &["new 1 after the truncation", "new 2", "new 3"],
    );
    run.append_lines(Stream::Stdout, &["new 4", "new 5"]);
    run.append_lines(Stream::Stderr, &["stderr goes on"]);
    let lines = await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Growing);
    let stdout: Vec<&str> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(stdout.len(), 205);
    assert_eq!(
        stdout[200..],
        [
            "new 1 after the truncation",
            "new 2",
            "new 3",
            "new 4",
            "new 5"
        ]
    );
    wait_until("the shipper to log the truncation", DEADLINE, || {
        shipper.log_text().contains("truncated").then_some(())
    });
    let warn = shipper
        .log_text()
        .lines()
        .find(|l| l.contains("truncated"))
        .map(str::to_owned)
        .unwrap_or_default();
    assert!(warn.contains("WARN"), "logged as a warning: {warn}");
}

#[test]
fn a_sandbox_deleted_right_after_its_last_write_is_drained() {
    let env = setup();
    let gone = env.task(HELLO, 0);
    let stays = env.task(HELLO, 1);
    let mut ended = gone.process("hello_world", 0);
    let mut running = stays.process("hello_world", 0);
    let mut shipper = env.shipper();
    for run in [&mut ended, &mut running] {
        run.append_lines(Stream::Stdout, &["started"]);
        run.append_lines(Stream::Stderr, &["started"]);
    }
    // The shipper tails the files of both tasks.
    await_shipped(&env, &mut shipper, "*", &[&ended, &running], Offsets::Exact);

    // The task's last burst, and at once the agent's GC removes the whole
    // executor folder; its very last bytes have no newline.
    write_in_chunks(
        &mut ended,
        Stream::Stdout,
        &tagged(LogKind::HealthApp, "last burst", 0, 5000),
        100,
    );
    write_in_chunks(
        &mut ended,
        Stream::Stderr,
        &tagged(LogKind::WindowsCbs, "last burst", 0, 1000),
        100,
    );
    ended.append(Stream::Stderr, b"the last words, with no newline");
    gone.delete();
    assert!(!ended.dir.exists());
    ended.model_mut(Stream::Stderr).expect_partial();
    // The other task goes on.
    write_in_chunks(
        &mut running,
        Stream::Stdout,
        &tagged(LogKind::WebServerErrors, "still running", 0, 100),
        10,
    );
    await_shipped(&env, &mut shipper, "*", &[&ended, &running], Offsets::Exact);
    running.append_lines(Stream::Stderr, &["and after the other task is forgotten"]);
    await_shipped(&env, &mut shipper, "*", &[&ended, &running], Offsets::Exact);
}

/// A writer that appends lines to every stream of some process runs until
/// stopped; every ninth line is written in two pieces.
struct Burst {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicUsize>,
    handle: JoinHandle<Vec<ProcessRun>>,
}

impl Burst {
    fn start(mut runs: Vec<ProcessRun>, pause: Duration) -> Burst {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicUsize::new(0));
        let handle = {
            let (stop, rounds) = (stop.clone(), rounds.clone());
            std::thread::spawn(move || {
                let text = sample(LogKind::DesktopProxy);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    for (r, run) in runs.iter_mut().enumerate() {
                        for stream in BOTH {
                            let mut line = format!("burst {r} {stream} {i:06} ").into_bytes();
                            line.extend_from_slice(&text[(i + r) % text.len()]);
                            line.push(b'\n');
                            if i % 9 == 0 {
                                let (a, b) = line.split_at(line.len() / 2);
                                run.append(stream, a);
                                run.append(stream, b);
                            } else {
                                run.append(stream, &line);
                            }
                        }
                    }
                    i += 1;
                    rounds.store(i, Ordering::SeqCst);
                    std::thread::sleep(pause);
                }
                runs
            })
        };
        Burst {
            stop,
            rounds,
            handle,
        }
    }

    /// Waits until the writer has gone `n` more rounds.
    fn wait_rounds(&self, n: usize) {
        let target = self.rounds.load(Ordering::SeqCst) + n;
        wait_until(&format!("{n} more rounds of writes"), DEADLINE, || {
            (self.rounds.load(Ordering::SeqCst) >= target).then_some(())
        });
    }

    fn finish(self) -> Vec<ProcessRun> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the writer thread")
    }
}

fn burst_runs(env: &Stack) -> Vec<ProcessRun> {
    vec![
        env.task(HELLO, 0).process("hello_world", 0),
        env.task(HELLO, 1).process("hello_world", 0),
        env.task(EIGHT_BALL, 3).process("eight_ball_srv", 2),
    ]
}

#[test]
fn kill_9_of_the_shipper_mid_burst_loses_nothing_and_doubles_nothing() {
    let env = setup();
    let burst = Burst::start(burst_runs(&env), Duration::from_millis(2));
    let mut shipper = env.shipper();
    let mut shipped = wait_stored_at_least(&env.server, &mut shipper, 300);
    for round in 0..2 {
        shipper.kill9();
        // Writes go on while the shipper is down...
        burst.wait_rounds(300);
        shipper.restart();
        // ...and it resumes from its checkpoints, mid-burst.
        shipped = wait_stored_at_least(&env.server, &mut shipper, shipped + 300);
        if round == 0 {
            // Long enough for a checkpoint to be written after the restart.
            burst.wait_rounds(500);
        }
    }
    burst.wait_rounds(200);
    let runs = burst.finish();
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    let lines = await_shipped(&env, &mut shipper, "*", &refs, Offsets::Exact);
    assert!(
        lines.len() > 6 * 1000,
        "a real burst: {} lines",
        lines.len()
    );
}

#[test]
fn cblogsd_down_for_10_s_mid_burst_loses_nothing_and_doubles_nothing() {
    let mut env = setup();
    let burst = Burst::start(burst_runs(&env), Duration::from_millis(5));
    // A small read-ahead budget: during the outage far more is written than
    // the shipper may hold, so reading must pause and resume.
    let config = SHIPPER_FAST
        .replace("[tail]\n", "[tail]\nmax_buffered_bytes = 65536\n")
        .replace("batch_max_bytes = 1048576", "batch_max_bytes = 16384");
    assert_ne!(config, SHIPPER_FAST);
    let mut shipper = env.shipper_with_config(&config);
    let before = wait_stored_at_least(&env.server, &mut shipper, 300);
    env.server.kill9();
    let down = Instant::now();
    let rounds_at_kill = burst.rounds.load(Ordering::SeqCst);
    wait_until("10 s of writing with cblogsd down", DEADLINE, || {
        (down.elapsed() >= Duration::from_secs(10)).then_some(())
    });
    shipper.assert_running();
    let rounds_down = burst.rounds.load(Ordering::SeqCst) - rounds_at_kill;
    // 6 streams, each line over 60 bytes: well over the 64 KiB budget.
    assert!(
        rounds_down * 6 * 60 > 4 * 65536,
        "not enough written during the outage: {rounds_down} rounds"
    );
    env.server.restart();
    wait_stored_at_least(&env.server, &mut shipper, before + 1000);
    burst.wait_rounds(200);
    let runs = burst.finish();
    let refs: Vec<&ProcessRun> = runs.iter().collect();
    await_shipped(&env, &mut shipper, "*", &refs, Offsets::Exact);
    shipper.stop();
}

#[test]
fn invalid_utf8_arrives_lossy_and_a_5_mib_line_arrives_cut_at_1_mib() {
    let env = setup();
    let task = env.task(HELLO, 0);
    let mut run = task.process("hello_world", 0);
    let mut shipper = env.shipper();
    run.append(Stream::Stdout, b"before\n");
    await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);

    run.append_lines(
        Stream::Stdout,
        &[
            &b"caf\xe9 cr\xe8me (latin-1)"[..],
            b"\xff\xfe binary \x00\x01\x02 between",
            b"a cut UTF-8 sequence \xe2\x82",
            "valid UTF-8: caf\u{e9} \u{20ac} \u{1f600}".as_bytes(),
        ],
    );
    // A 5 MiB line, written in 64 KiB pieces as Thermos copies output.
    let giant: Vec<u8> = (0..5 << 20)
        .map(|i: u32| b"0123456789abcdef"[(i % 16) as usize])
        .collect();
    for piece in giant.chunks(64 << 10) {
        run.append(Stream::Stdout, piece);
    }
    run.append(Stream::Stdout, b"\n");
    run.append(Stream::Stdout, b"the line after the giant one\n");
    // Exactly at the limit: not cut.
    let mut limit = vec![b'L'; MAX_LINE_BYTES];
    limit.push(b'\n');
    run.append(Stream::Stdout, &limit);
    run.append(Stream::Stdout, b"the end\n");
    run.append_lines(Stream::Stderr, &[&b"stderr \xc3\x28 invalid too"[..]]);

    let lines = await_shipped(&env, &mut shipper, "*", &[&run], Offsets::Exact);
    let stdout: Vec<&LineView> = lines
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .collect();
    assert_eq!(stdout.len(), 9);
    assert_eq!(stdout[1].text, "caf\u{fffd} cr\u{fffd}me (latin-1)");
    assert_eq!(
        stdout[2].text,
        String::from_utf8_lossy(b"\xff\xfe binary \x00\x01\x02 between")
    );
    assert_eq!(stdout[4].text, "valid UTF-8: caf\u{e9} \u{20ac} \u{1f600}");
    let big = stdout[5];
    assert_eq!(big.text.len(), MAX_LINE_BYTES);
    assert_eq!(big.text.as_bytes(), &giant[..MAX_LINE_BYTES]);
    assert!(big.flags.cut && !big.flags.partial, "{:?}", big.flags);
    let after = stdout[6];
    assert_eq!(after.text, "the line after the giant one");
    assert_eq!(after.offset, big.offset + (5 << 20) + 1);
    assert!(!after.flags.cut && !after.flags.partial);
    assert_eq!(stdout[7].text.len(), MAX_LINE_BYTES);
    assert!(!stdout[7].flags.cut);
    assert_eq!(stdout[8].text, "the end");
}

#[test]
fn legacy_checkpoint_root_logs_are_shipped_too() {
    let env = setup();
    let legacy = env.agent.legacy_task(HELLO.0, HELLO.1, HELLO.2, 2);
    let modern = env.task(HELLO, 0);
    let mut old = legacy.process("hello_world", 0);
    let mut new = modern.process("hello_world", 0);
    write_in_chunks(
        &mut old,
        Stream::Stdout,
        &tagged(LogKind::MacOs, "legacy", 0, 100),
        10,
    );
    new.append_lines(Stream::Stdout, &["modern layout"]);
    let mut shipper = env.shipper();
    await_shipped(&env, &mut shipper, "*", &[&old, &new], Offsets::Exact);
    let mut restarted = legacy.process("hello_world", 1);
    restarted.append_lines(Stream::Stderr, &["legacy run 1 started later"]);
    old.append_lines(Stream::Stdout, &["legacy run 0 goes on"]);
    let lines = await_shipped(
        &env,
        &mut shipper,
        "*",
        &[&old, &new, &restarted],
        Offsets::Exact,
    );
    let l = lines
        .iter()
        .find(|l| l.task_id == legacy.task_id)
        .expect("a legacy line");
    assert!(l
        .task_id
        .starts_with("1507212916123-www-data-prod-hello-2-"));
    assert_eq!((l.job.as_str(), l.instance), ("www-data/prod/hello", 2));
    assert_nothing_but_task_logs(&env);
}
