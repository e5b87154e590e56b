//! `cblogs tail -f`: print the backlog, then every new line, for as long as
//! the user wants — across server restarts.
//!
//! The follower remembers, per source, the highest offset it printed and the
//! newest time it printed. After a lost connection it asks again for the lines
//! since a little before that time and skips every offset it already printed:
//! nothing repeats, and nothing written while the server was away is lost.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use cblogs_core::api::{Lagged, Truncated, Unanswered, FOLLOW_PATH, MAX_TAIL_LINES};
use cblogs_core::LineView;
use futures_util::StreamExt;

use crate::client::{Client, ClientError};
use crate::render::LineWriter;
use crate::Failure;
use cblogs_core::sse::{SseEvent, SseParser};

/// How far before the newest printed line a resume asks from: lines of other
/// sources can arrive a little out of time order (shippers batch).
const RESUME_SLACK_NS: i64 = 30_000_000_000;
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// What has been printed: the basis of a resume without repeats.
#[derive(Default)]
pub struct Printed {
    offsets: HashMap<String, u64>,
    newest_ns: Option<i64>,
    /// The job keys the server resolved the selector to at the start.
    jobs: std::collections::HashSet<String>,
    /// The server left out the oldest lines of a resume's backlog (at most
    /// `limit` were sent); the first line that follows tells whether any
    /// of those were lines not printed yet.
    truncated: Option<usize>,
}

impl Printed {
    /// After a `truncated` event: does this first backlog line leave a hole
    /// after what was printed before the connection was lost?
    fn hole_before(&mut self, first: &LineView) -> Option<usize> {
        let limit = self.truncated.take()?;
        self.newest_ns
            .is_some_and(|t| first.time_ns > t)
            .then_some(limit)
    }
}

impl Printed {
    /// Records the line and says whether it is new.
    pub fn first_time(&mut self, l: &LineView) -> bool {
        if self.offsets.get(&l.source).is_some_and(|&o| l.offset <= o) {
            return false;
        }
        self.offsets.insert(l.source.clone(), l.offset);
        self.newest_ns = Some(self.newest_ns.map_or(l.time_ns, |t| t.max(l.time_ns)));
        true
    }

    /// The query parameters for (re)connecting.
    /// The first connection asks for the last `n` lines (at or after
    /// `since_ns`); a resume asks for everything since a little before the
    /// newest line printed.
    fn resume_params(&self, n: usize, since_ns: Option<i64>) -> Vec<(&'static str, String)> {
        match self.newest_ns {
            Some(t) => {
                let from = t
                    .saturating_sub(RESUME_SLACK_NS)
                    .max(since_ns.unwrap_or(i64::MIN));
                vec![
                    ("since_ns", from.to_string()),
                    ("n", MAX_TAIL_LINES.to_string()),
                ]
            }
            None => {
                let mut p = vec![("n", n.to_string())];
                p.extend(since_ns.map(|s| ("since_ns", s.to_string())));
                p
            }
        }
    }
}

pub async fn follow<W: Write>(
    client: &Client,
    params: &[(&'static str, String)],
    n: usize,
    since_ns: Option<i64>,
    out: &mut LineWriter<W>,
) -> Result<(), Failure> {
    let mut printed = Printed::default();
    let mut connected_once = false;
    let mut lost = false;
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut query = params.to_vec();
        query.extend(printed.resume_params(n, since_ns));
        match client.send(FOLLOW_PATH, &query).await {
            Ok(resp) => {
                if lost {
                    eprintln!("cblogs: reconnected");
                    lost = false;
                }
                connected_once = true;
                backoff = BACKOFF_MIN;
                let mut parser = SseParser::new();
                let mut body = resp.bytes_stream();
                while let Some(chunk) = body.next().await {
                    let Ok(bytes) = chunk else { break };
                    for ev in parser.feed(&bytes) {
                        handle(ev, &mut printed, out)?;
                    }
                    out.flush()?;
                }
            }
            // The first connection decides whether the request makes sense.
            Err(e) if !connected_once => return Err(e.into()),
            Err(e @ ClientError::Api { .. }) if !lost => {
                eprintln!("cblogs: cblogsd answered: {e}; retrying")
            }
            Err(_) => {}
        }
        if !lost {
            eprintln!(
                "cblogs: lost connection to {}; reconnecting",
                client.server()
            );
            lost = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

fn handle<W: Write>(
    ev: SseEvent,
    printed: &mut Printed,
    out: &mut LineWriter<W>,
) -> Result<(), Failure> {
    match ev.event.as_str() {
        "line" => {
            let line: LineView = serde_json::from_str(&ev.data).map_err(|e| {
                Failure::from(ClientError::Protocol(format!("bad line event: {e}")))
            })?;
            // A glob can take in a job that appeared after the start: from
            // then on the prefix names the job.
            if !printed.jobs.is_empty()
                && !printed
                    .jobs
                    .contains(&format!("{}/{}", line.cluster, line.job))
            {
                out.show_job = true;
            }
            if let Some(limit) = printed.hole_before(&line) {
                eprintln!("cblogs: more than {limit} lines arrived while reconnecting; the oldest of them were skipped");
            }
            if printed.first_time(&line) {
                out.line(&line)?;
            }
        }
        "jobs" => {
            let jobs: Vec<String> = serde_json::from_str(&ev.data).unwrap_or_default();
            out.show_job = out.show_job || jobs.len() > 1;
            printed.jobs.extend(jobs);
        }
        "truncated" => {
            let limit = serde_json::from_str::<Truncated>(&ev.data)
                .map(|t| t.limit)
                .unwrap_or(MAX_TAIL_LINES);
            printed.truncated = Some(limit);
        }
        "partial" => {
            if let Ok(node) = serde_json::from_str::<Unanswered>(&ev.data) {
                eprintln!(
                    "cblogs: partial: node {} ({}) is not followed ({}); lines it takes are missing until it answers again",
                    node.node_id, node.url, node.error
                );
            }
        }
        "lagged" => {
            let missed = serde_json::from_str::<Lagged>(&ev.data)
                .map(|l| l.missed)
                .unwrap_or(0);
            eprintln!("cblogs: fell behind; the server skipped {missed} batches of lines");
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::{LineFlags, Stream};

    fn line(source: &str, offset: u64, time_ns: i64) -> LineView {
        LineView {
            time: String::new(),
            time_ns,
            cluster: "c".into(),
            host: "h".into(),
            job: "r/prod/n".into(),
            instance: 0,
            task_id: "t".into(),
            process: "p".into(),
            run: 0,
            stream: Stream::Stdout,
            offset,
            text: "x".into(),
            flags: LineFlags::default(),
            source: source.into(),
        }
    }

    #[test]
    fn printed_skips_what_it_has_seen_per_source() {
        let mut p = Printed::default();
        assert!(p.first_time(&line("a", 0, 10)));
        assert!(p.first_time(&line("a", 5, 20)));
        assert!(!p.first_time(&line("a", 5, 20)), "same line again");
        assert!(
            !p.first_time(&line("a", 0, 10)),
            "older line of the same source"
        );
        assert!(
            p.first_time(&line("b", 0, 15)),
            "another source has its own offsets"
        );
        assert_eq!(p.newest_ns, Some(20));
    }

    #[test]
    fn a_truncated_resume_is_a_hole_only_past_what_was_printed() {
        let mut p = Printed::default();
        p.first_time(&line("a", 0, 100));
        // The backlog starts at or before what was printed: nothing missed.
        p.truncated = Some(10);
        assert_eq!(p.hole_before(&line("a", 0, 90)), None);
        // It starts after: lines in between were skipped.
        p.truncated = Some(10);
        assert_eq!(p.hole_before(&line("b", 0, 150)), Some(10));
        assert_eq!(p.hole_before(&line("b", 5, 160)), None, "said once");
    }

    #[test]
    fn resume_asks_for_everything_since_a_little_before_the_newest() {
        let mut p = Printed::default();
        assert_eq!(p.resume_params(100, None), vec![("n", "100".to_string())]);
        assert_eq!(
            p.resume_params(100, Some(5)),
            vec![("n", "100".to_string()), ("since_ns", "5".to_string())]
        );
        p.first_time(&line("a", 0, RESUME_SLACK_NS + 7));
        assert_eq!(
            p.resume_params(100, Some(9)),
            vec![
                ("since_ns", "9".to_string()),
                ("n", MAX_TAIL_LINES.to_string())
            ],
            "never earlier than --since"
        );
        assert_eq!(
            p.resume_params(100, None),
            vec![
                ("since_ns", "7".to_string()),
                ("n", MAX_TAIL_LINES.to_string())
            ]
        );
    }
}
