//! `cblogsd --demo`: a fake Mesos agent with a few Aurora jobs whose
//! processes keep writing believable lines into their Thermos sandboxes,
//! and a real `cblogs-shipper` (in this process) tailing them into this
//! server, so there is something to tail at once and the whole path runs.
//!
//! The agent lives in `<data dir>/demo-agent`, laid out by
//! `cblogs-fake-agent` exactly as a Mesos agent's work dir is
//! (`thermos-layout.md`; the same layout the end-to-end tests use), and the
//! shipper keeps its checkpoints in `<data dir>/demo-shipper`. The lines
//! are made here, stamped with the time they are written: Apache access
//! lines for a web job, Python service logs with an occasional traceback on
//! stderr, and Java service logs with an occasional stack trace (the
//! tracebacks and stack traces are the shared line generator's).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cblogs_core::time::now_ns;
use cblogs_core::Stream;
use cblogs_fake_agent::fastrand::Rng;
use cblogs_fake_agent::lines::TraceKind;
use cblogs_fake_agent::{joined_lines, Agent, ProcessRunDir};
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

fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(0..items.len())]
}

fn stdout_line(rng: &mut Rng, flavour: Flavour, instance: u32) -> String {
    match flavour {
        Flavour::Web => {
            let path = pick(rng, &["/", "/hello", "/static/app.js", "/api/v1/greet?name=ada", "/health", "/favicon.ico"]);
            let status = if rng.u64(0..20) == 0 { "500" } else if rng.u64(0..10) == 0 { "404" } else { "200" };
            format!(
                "10.0.{}.{} - - [{}] \"GET {path} HTTP/1.1\" {status} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\"",
                rng.u64(0..8),
                rng.u64(0..250) + 2,
                jiff::Timestamp::now().strftime("%d/%b/%Y:%H:%M:%S +0000"),
                rng.u64(0..9000) + 120
            )
        }
        Flavour::Python => {
            let q = pick(rng, &["will it rain?", "should I deploy on friday?", "is the build green?", "ship it?"]);
            let a = pick(rng, &["It is certain", "Ask again later", "Very doubtful", "Outlook good"]);
            format!(
                "{} INFO eightball.api [instance {instance}] question={q:?} answer={a:?} latency_ms={}",
                jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S,%3f"),
                rng.u64(0..40) + 1
            )
        }
        Flavour::Java => format!(
            "{} INFO  [pool-2-thread-{}] c.e.ledger.TransferService - transfer id={} amount={}.{:02} EUR status=COMMITTED",
            jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S.%3f"),
            rng.u64(0..8) + 1,
            rng.u64(0..1_000_000),
            rng.u64(0..5000),
            rng.u64(0..100)
        ),
    }
}

fn stderr_lines(rng: &mut Rng, flavour: Flavour) -> Vec<Vec<u8>> {
    match flavour {
        Flavour::Web => vec![format!(
            "[error] [client 10.0.{}.{}] File does not exist: /var/www/html/favicon.ico",
            rng.u64(0..8),
            rng.u64(0..250) + 2
        )
        .into_bytes()],
        Flavour::Python => TraceKind::Python.trace(rng),
        Flavour::Java => {
            let mut lines = vec![format!(
                "{} ERROR [pool-2-thread-3] c.e.ledger.TransferService - transfer failed",
                jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S.%3f")
            )
            .into_bytes()];
            lines.extend(TraceKind::Java.trace(rng));
            lines
        }
    }
}

/// One process run of a demo job, and what it writes.
struct DemoProcess {
    run: ProcessRunDir,
    instance: u32,
    flavour: Flavour,
}

/// Lays out the agent (idempotent: a restarted demo appends to the same files).
fn build_agent(work_dir: &Path) -> io::Result<Vec<DemoProcess>> {
    let agent = Agent::in_work_dir(work_dir, AGENT_ID, FRAMEWORK_ID)?;
    let mut out = Vec::new();
    for (job, process, instances, flavour) in JOBS {
        let (role, rest) = job.split_once('/').unwrap_or((job, ""));
        let (env, name) = rest.split_once('/').unwrap_or((rest, ""));
        for instance in 0..instances {
            let task = agent.task(role, env, name, instance)?;
            let fetch = task.process("fetch_package", 0)?;
            if std::fs::metadata(fetch.path(Stream::Stdout))?.len() == 0 {
                fetch.append(
                    Stream::Stdout,
                    &joined_lines(&[
                        format!("Fetching package {name} version 17 from the package store"),
                        "Unpacked 3 files into the sandbox".to_owned(),
                    ]),
                )?;
            }
            out.push(DemoProcess {
                run: task.process(process, 0)?,
                instance,
                flavour,
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
    let mut rng = Rng::with_seed(0x2545_f491_4f6c_dd1d ^ now_ns() as u64);
    loop {
        for p in &processes {
            let out: Vec<String> = (0..rng.u64(0..4))
                .map(|_| stdout_line(&mut rng, p.flavour, p.instance))
                .collect();
            let mut written = p.run.append(Stream::Stdout, &joined_lines(&out));
            if rng.u64(0..80) == 0 {
                let err = joined_lines(&stderr_lines(&mut rng, p.flavour));
                written = written.and(p.run.append(Stream::Stderr, &err));
            }
            if let Err(e) = written {
                tracing::warn!("demo: cannot write: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
    }
    let _ = shipper.await;
}
