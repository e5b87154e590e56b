//! `cblogsd --demo`: a few Aurora jobs that keep writing believable lines
//! straight into the ingest path, so there is something to tail at once.
//!
//! Templates are built in (no file outside the binary is needed): Apache
//! access lines for a web job, Python service logs with an occasional
//! traceback on stderr, and Java service logs with an occasional stack trace.

use std::sync::Arc;
use std::time::Duration;

use cblogs_core::time::now_ns;
use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::{Source, Stream};

use crate::http::App;

const CLUSTER: &str = "devcluster";
const HOST: &str = "demo-agent-1";

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

struct DemoSource {
    source: Source,
    offset: u64,
    flavour: Flavour,
}

fn sources() -> Vec<DemoSource> {
    let mut out = Vec::new();
    for (n, (job, process, instances, flavour)) in JOBS.iter().enumerate() {
        let key: cblogs_core::JobKey = job.parse().expect("demo job keys are valid");
        for instance in 0..*instances {
            let task_id = format!(
                "{}-{}-{}-{instance}-{:08x}-0000-4000-8000-{:012x}",
                key.role,
                key.env,
                key.name,
                0xdeb0_0000u32 + n as u32,
                instance
            );
            for stream in [Stream::Stdout, Stream::Stderr] {
                out.push(DemoSource {
                    source: Source {
                        cluster: CLUSTER.into(),
                        host: HOST.into(),
                        task_id: task_id.clone(),
                        job: key.clone(),
                        instance,
                        process: (*process).into(),
                        run: 0,
                        stream,
                    },
                    offset: 0,
                    flavour: *flavour,
                });
            }
        }
    }
    out
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

fn batch(s: &mut DemoSource, lines: Vec<String>) -> Batch {
    let start = s.offset;
    let time_ns = now_ns();
    let wire = lines
        .into_iter()
        .map(|text| {
            let l = WireLine::from_bytes(s.offset, time_ns, text.as_bytes());
            s.offset += text.len() as u64 + 1;
            l
        })
        .collect();
    Batch {
        source: s.source.clone(),
        start,
        end: s.offset,
        lines: wire,
        allow_gap: false,
    }
}

/// Writes a few lines every quarter second until the service stops.
pub async fn run(app: Arc<App>) {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ now_ns() as u64);
    let mut sources = sources();
    let mut stopping = app.stopping.clone();
    loop {
        let mut batches = Vec::new();
        for s in &mut sources {
            let lines = match s.source.stream {
                Stream::Stdout => (0..rng.below(4))
                    .map(|_| stdout_line(&mut rng, s.flavour, s.source.instance))
                    .collect(),
                Stream::Stderr if rng.below(40) == 0 => stderr_lines(&mut rng, s.flavour),
                Stream::Stderr => Vec::new(),
            };
            if !lines.is_empty() {
                batches.push(batch(s, lines));
            }
        }
        if !batches.is_empty() {
            if let Err(e) = app.ingestor.ingest(IngestRequest { batches }).await {
                tracing::warn!(error = %e, "demo: ingest failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stopping.changed() => return,
        }
    }
}
