//! `cblogsd --demo`: a fake Mesos agent with a few Aurora jobs whose
//! processes keep writing believable lines into their Thermos sandboxes,
//! and a real `cblogs-shipper` (in this process) tailing them into this
//! server, so there is something to tail at once and the whole path runs.
//!
//! The agent lives in `<data dir>/demo-agent`, laid out as a Mesos agent's
//! work dir is (`thermos-layout.md`), and the shipper keeps its checkpoints
//! in `<data dir>/demo-shipper`. Templates are built in: Apache access
//! lines for a web job, Python service logs with an occasional traceback on
//! stderr, and Java service logs with an occasional stack trace.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cblogs_core::time::now_ns;
use cblogs_core::Stream;
use tokio::sync::watch;

const CLUSTER: &str = "devcluster";
const HOST: &str = "demo-agent-1";
const AGENT_ID: &str = "20261125-090000-16842879-5050-7450-S0";
const FRAMEWORK_ID: &str = "20261125-085959-16842879-5050-7450-0000";

/// The demo jobs: (role/env/name, process, instances, flavour).
const JOBS: [(&str, &str, u32, Flavour); 3] = [
    ("www-data/prod/hello", "hello_world", 3, Flavour::Web),
    ("cbe/devel/eightball_api", "eightball", 2, Flavour::Python),
    ("payments/prod/ledger", "ledger", 2, Flavour::Java),
];

#[derive(Clone, Copy)]
enum Flavour {
    Web,
    Python,
    Java,
}

pub fn print_tour(url: &str) {
    println!(
        "\ncblogsd demo: three jobs are writing logs now. Try, in another terminal:\n\n  \
         cblogs jobs\n  \
         cblogs tail www-data/prod/hello -f\n  \
         cblogs tail eightball_api --stream stderr -n 20\n  \
         cblogs tail 'payments/prod/ledger/1' -n 50 --output json\n  \
         cblogs grep Traceback -A 6\n  \
         cblogs grep -i 'error|exception' --since 5m --count\n  \
         curl -s '{url}/api/v1/tail?job=hello&n=5'\n\n\
         (cblogs talks to {url}; set CBLOGS_SERVER or --server for another address.)\n"
    );
}

/// A small deterministic generator: the demo needs variety, not secrecy.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn stdout_line(rng: &mut Rng, flavour: Flavour, instance: u32) -> String {
    match flavour {
        Flavour::Web => {
            let path = rng.pick(&["/", "/hello", "/static/app.js", "/api/v1/greet?name=ada", "/health", "/favicon.ico"]);
            let status = if rng.below(20) == 0 { "500" } else if rng.below(10) == 0 { "404" } else { "200" };
            format!(
                "10.0.{}.{} - - [{}] \"GET {path} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
                rng.below(8),
                rng.below(250) + 2,
                jiff::Timestamp::now().strftime("%d/%b/%Y:%H:%M:%S +0000"),
                rng.below(9000) + 120
            )
        }
        Flavour::Python => {
            let q = rng.pick(&["will it rain?", "should I deploy on friday?", "is the build green?", "ship it?"]);
            let a = rng.pick(&["It is certain", "Ask again later", "Very doubtful", "Outlook good"]);
            format!(
                "{} INFO eightball.api [instance {instance}] question={q:?} answer={a:?} latency_ms={}",
                jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S,%3f"),
                rng.below(40) + 1
            )
        }
        Flavour::Java => format!(
            "{} INFO  [pool-2-thread-{}] c.e.ledger.TransferService - transfer id={} amount={}.{:02} EUR status=COMMITTED",
            jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S.%3f"),
            rng.below(8) + 1,
            rng.next() % 1_000_000,
            rng.below(5000),
            rng.below(100)
        ),
    }
}

fn stderr_lines(rng: &mut Rng, flavour: Flavour) -> Vec<String> {
    match flavour {
        Flavour::Web => vec![format!(
            "[error] [client 10.0.{}.{}] File does not exist: /var/www/html/favicon.ico",
            rng.below(8),
            rng.below(250) + 2
        )],
        Flavour::Python => vec![
            "Traceback (most recent call last):".into(),
            "  File \"/app/eightball/api.py\", line 88, in answer".into(),
            "    reply = oracle.consult(question, timeout=2.0)".into(),
            "  File \"/app/eightball/oracle.py\", line 41, in consult".into(),
            "    raise TimeoutError(f\"oracle did not answer within {timeout}s\")".into(),
            "TimeoutError: oracle did not answer within 2.0s".into(),
        ],
        Flavour::Java => vec![
            format!("{} ERROR [pool-2-thread-3] c.e.ledger.TransferService - transfer failed", jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S.%3f")),
            "java.lang.IllegalStateException: account 4411 is frozen".into(),
            "\tat com.example.ledger.Account.debit(Account.java:112)".into(),
            "\tat com.example.ledger.TransferService.transfer(TransferService.java:57)".into(),
            "\tat java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1136)".into(),
        ],
    }
}

/// One process run's log folder in a demo sandbox.
struct DemoProcess {
    dir: PathBuf,
    instance: u32,
    flavour: Flavour,
}

impl DemoProcess {
    fn append(&self, stream: Stream, lines: &[String]) -> std::io::Result<()> {
        let mut text = String::new();
        for l in lines {
            text.push_str(l);
            text.push('\n');
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(stream.as_str()))?
            .write_all(text.as_bytes())
    }
}

/// Lays out the agent (idempotent: a restarted demo appends to the same files).
fn build_agent(work_dir: &Path) -> std::io::Result<Vec<DemoProcess>> {
    let executors = work_dir
        .join("slaves")
        .join(AGENT_ID)
        .join("frameworks")
        .join(FRAMEWORK_ID)
        .join("executors");
    let mut out = Vec::new();
    for (n, (job, process, instances, flavour)) in JOBS.iter().enumerate() {
        let (role, rest) = job.split_once('/').unwrap_or((job, ""));
        let (env, name) = rest.split_once('/').unwrap_or((rest, ""));
        for instance in 0..*instances {
            let task_id = format!(
                "{role}-{env}-{name}-{instance}-{:08x}-0000-4000-8000-{:012x}",
                0xdeb0_0000u32 + n as u32,
                instance
            );
            let container = format!(
                "{:08x}-5eed-4000-8000-{:012x}",
                0xc0de_0000u32 + n as u32,
                instance
            );
            let runs = executors.join(format!("thermos-{task_id}")).join("runs");
            let run = runs.join(&container);
            let logs = run.join("sandbox").join(".logs");
            fs::create_dir_all(logs.join(process).join("0"))?;
            let fetch = logs.join("fetch_package").join("0");
            if !fetch.exists() {
                fs::create_dir_all(&fetch)?;
                fs::write(
                    fetch.join("stdout"),
                    format!("Fetching package {name} version 17 from the package store\nUnpacked 3 files into the sandbox\n"),
                )?;
                fs::write(fetch.join("stderr"), b"")?;
                fs::write(run.join("stdout"), b"Thermos executor started\n")?;
                fs::write(run.join("stderr"), b"")?;
            }
            let latest = runs.join("latest");
            if fs::symlink_metadata(&latest).is_err() {
                std::os::unix::fs::symlink(&container, &latest)?;
            }
            let dir = logs.join(process).join("0");
            for stream in [Stream::Stdout, Stream::Stderr] {
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(stream.as_str()))?;
            }
            out.push(DemoProcess {
                dir,
                instance,
                flavour: *flavour,
            });
        }
    }
    Ok(out)
}

/// Runs the demo agent and its shipper until `stopping` turns true.
pub async fn run(url: String, data_dir: PathBuf, mut stopping: watch::Receiver<bool>) {
    let work_dir = data_dir.join("demo-agent");
    let processes = match build_agent(&work_dir) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(
                "demo: cannot lay out the agent in {}: {e}",
                work_dir.display()
            );
            return;
        }
    };
    let config = cblogs_shipper::Config {
        work_dir,
        checkpoint_root: PathBuf::new(),
        server: url,
        state_dir: data_dir.join("demo-shipper"),
        cluster: CLUSTER.into(),
        host: HOST.into(),
        status_listen: "off".into(),
        ..Default::default()
    };
    let mut shipper_stop = stopping.clone();
    let shipper = tokio::spawn(async move {
        let stop = async move {
            let _ = shipper_stop.wait_for(|s| *s).await;
        };
        if let Err(e) = cblogs_shipper::run(config, stop).await {
            tracing::error!("demo: the shipper stopped: {e:#}");
        }
    });
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ now_ns() as u64);
    loop {
        for p in &processes {
            let out: Vec<String> = (0..rng.below(4))
                .map(|_| stdout_line(&mut rng, p.flavour, p.instance))
                .collect();
            let mut written = p.append(Stream::Stdout, &out);
            if rng.below(80) == 0 {
                written = written.and(p.append(Stream::Stderr, &stderr_lines(&mut rng, p.flavour)));
            }
            if let Err(e) = written {
                tracing::warn!("demo: cannot write to {}: {e}", p.dir.display());
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    let _ = shipper.await;
}
