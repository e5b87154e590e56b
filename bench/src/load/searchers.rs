//! The load run's searchers: clients that loop over five searches through
//! `GET /api/v1/search`, reading the NDJSON answer to its summary. A 503
//! for `search.max_concurrent` with `Retry-After` is being asked to wait:
//! counted, retried after the wait, and no error.

use std::io::BufRead;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cblogs_core::api::{SearchEvent, SEARCH_PATH};

use super::shared::Shared;
use crate::rawhttp;

/// One of the searches the searchers loop over.
pub struct SearchCase {
    pub id: &'static str,
    pub what: &'static str,
    job: Option<&'static str>,
    pattern: &'static str,
    fixed: bool,
    ignore_case: bool,
    /// Only the last this many seconds.
    last_secs: Option<i64>,
}

pub const SEARCHES: [SearchCase; 5] = [
    SearchCase {
        id: "rare_literal",
        what: "rare literal, every job (`-F OutOfMemoryError`)",
        job: None,
        pattern: "OutOfMemoryError",
        fixed: true,
        ignore_case: false,
        last_secs: None,
    },
    SearchCase {
        id: "regex_literal",
        what: "regex with a literal, every job (`Exception in thread \"worker-\\d+\" java\\.lang\\.\\w+`)",
        job: None,
        pattern: r#"Exception in thread "worker-\d+" java\.lang\.\w+"#,
        fixed: false,
        ignore_case: false,
        last_secs: None,
    },
    SearchCase {
        id: "ignore_case",
        what: "case-insensitive literal, every job (`-i 'connection reset'`)",
        job: None,
        pattern: "connection reset",
        fixed: true,
        ignore_case: true,
        last_secs: None,
    },
    SearchCase {
        id: "one_job",
        what: "literal in one job (`-F 'pool exhausted' payments/prod/ledger`)",
        job: Some("payments/prod/ledger"),
        pattern: "pool exhausted",
        fixed: true,
        ignore_case: false,
        last_secs: None,
    },
    SearchCase {
        id: "last_minute",
        what: "regex, every job, the last minute (`Traceback|Exception`, since now − 60 s)",
        job: None,
        pattern: "Traceback|Exception",
        fixed: false,
        ignore_case: false,
        last_secs: Some(60),
    },
];

impl SearchCase {
    fn path(&self) -> String {
        let mut p = format!("{SEARCH_PATH}?pattern={}", rawhttp::encode(self.pattern));
        if self.fixed {
            p.push_str("&fixed=true");
        }
        if self.ignore_case {
            p.push_str("&ignore_case=true");
        }
        if let Some(j) = self.job {
            p.push_str(&format!("&job={}", rawhttp::encode(j)));
        }
        if let Some(s) = self.last_secs {
            let since = cblogs_core::time::now_ns() - s * 1_000_000_000;
            p.push_str(&format!("&since_ns={since}"));
        }
        p
    }
}

/// One search, done.
#[derive(Debug, Clone)]
pub struct SearchRecord {
    pub case: usize,
    /// From the request that was served to its summary.
    pub served_ms: f64,
    /// From the first request, waits after 503 included.
    pub total_ms: f64,
    pub waits: u64,
    pub matched: u64,
    pub truncated: bool,
}

/// Loops over the searches until the run stops.
pub fn searcher(shared: &Shared, first: usize) -> Vec<SearchRecord> {
    let mut out = Vec::new();
    let mut i = first;
    while !shared.stopping.load(Ordering::Relaxed) {
        let case = i % SEARCHES.len();
        i += 1;
        match search_once(shared, case) {
            Ok(Some(r)) => {
                out.push(r);
                shared.searches_done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => break,
            Err(e) => {
                shared.error(format!("search {}: {e:#}", SEARCHES[case].id));
                // Do not spin on a broken server.
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
    out
}

/// One search, retried after each 503 search_limit; `None` if the run
/// stopped while it waited.
fn search_once(shared: &Shared, case: usize) -> Result<Option<SearchRecord>> {
    let c = &SEARCHES[case];
    let first = Instant::now();
    let mut waits = 0;
    loop {
        let started = Instant::now();
        let resp = rawhttp::get(&shared.url, &c.path(), Some(Duration::from_secs(120)))
            .context("request")?;
        match resp.status {
            200 => {}
            503 => {
                let retry = resp
                    .header("retry-after")
                    .and_then(|v| v.parse::<u64>().ok());
                let body = resp.text().unwrap_or_default();
                let Some(secs) = retry.filter(|_| body.contains("search.max_concurrent")) else {
                    bail!("503 without Retry-After or not for search.max_concurrent: {body}");
                };
                waits += 1;
                let until = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < until {
                    if shared.stopping.load(Ordering::Relaxed) {
                        return Ok(None);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                continue;
            }
            s => bail!("HTTP {s}: {}", resp.text().unwrap_or_default()),
        }
        let mut body = resp.body;
        let mut line = String::new();
        let mut summary = None;
        loop {
            line.clear();
            if body.read_line(&mut line).context("read the answer")? == 0 {
                break;
            }
            if line.contains(r#""type":"summary""#) {
                match serde_json::from_str::<SearchEvent>(&line) {
                    Ok(SearchEvent::Summary(s)) => summary = Some(s),
                    _ => bail!("a summary that does not parse: {line}"),
                }
            }
        }
        let Some(s) = summary else {
            bail!("the answer ended without a summary");
        };
        let served_ms = started.elapsed().as_secs_f64() * 1000.0;
        return Ok(Some(SearchRecord {
            case,
            served_ms,
            total_ms: first.elapsed().as_secs_f64() * 1000.0,
            waits,
            matched: s.matched,
            truncated: s.truncated,
        }));
    }
}
