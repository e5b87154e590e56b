//! Notifications: the payload each notifier kind wants, and delivery with
//! retries that never holds up the evaluation (each notification is its
//! own task; the engine only queues it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cblogs_core::api::{AlertGroup, DeliveryCounts};
use cblogs_core::LineView;
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::rules::{Notifier, NotifierKind, Rule};

/// Tries per notification, and the waits between them (1 s doubling, at most 30 s).
const MAX_TRIES: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A receiver that takes longer than this has failed (and is retried).
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The generic payload: what a webhook and a command receive, and what the
/// other kinds are made from.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    /// `firing` or `resolved`.
    pub status: &'static str,
    pub rule: String,
    pub severity: super::rules::Severity,
    pub labels: std::collections::BTreeMap<String, String>,
    pub group: AlertGroup,
    pub count: u64,
    pub threshold: u64,
    pub window_secs: u64,
    pub first: Option<LineView>,
    pub latest: Option<LineView>,
    /// The whole event the latest match is in, its opening line first (a
    /// log record and its Python traceback or Java stack trace), when the
    /// event has more than one line.
    pub trace: Vec<String>,
    pub link: String,
    pub started_at: String,
    pub sent_at: String,
}

impl Payload {
    fn summary(&self) -> String {
        let group = match self.group.instance {
            Some(i) => format!("{}/{i}", self.group.job),
            None => self.group.job.clone(),
        };
        let what = if self.status == "firing" {
            format!(
                "{} matching lines in {} s (threshold {})",
                self.count, self.window_secs, self.threshold
            )
        } else {
            "back below its threshold".to_owned()
        };
        format!(
            "[{}] cblogs alert {} on {group}: {what}",
            self.status.to_uppercase(),
            self.rule
        )
    }

    /// The body a notifier of `kind` is sent.
    pub fn body_for(&self, kind: &NotifierKind) -> Vec<u8> {
        let value = match kind {
            NotifierKind::Webhook { .. } | NotifierKind::Command { .. } => {
                serde_json::to_value(self).unwrap_or_default()
            }
            NotifierKind::Slack { .. } => {
                let mut text = format!(
                    "{}\n<{}|open in cblogs>",
                    slack_escape(&self.summary()),
                    self.link
                );
                if let Some(l) = &self.latest {
                    // A log line must not ping a channel or end the code block.
                    let line = slack_escape(&l.text).replace("```", "`\u{200b}``");
                    text.push_str(&format!("\n```{line}```"));
                }
                json!({ "text": text })
            }
            NotifierKind::PagerDuty { routing_key, .. } => json!({
                "routing_key": routing_key,
                "event_action": if self.status == "firing" { "trigger" } else { "resolve" },
                "dedup_key": dedup_key(&self.rule, &self.group),
                "payload": {
                    "summary": self.summary(),
                    "source": self.group.job,
                    "severity": match self.severity {
                        super::rules::Severity::Info => "info",
                        super::rules::Severity::Warning => "warning",
                        super::rules::Severity::Error => "error",
                        super::rules::Severity::Critical => "critical",
                    },
                    "custom_details": self,
                },
                "links": [{ "href": self.link, "text": "cblogs" }],
            }),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }
}

/// Slack's escaping of text: `&`, `<` and `>` (so `<!channel>` in a log
/// line is shown, not acted on).
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One incident's key at PagerDuty: the same for its trigger and resolve.
pub fn dedup_key(rule: &str, group: &AlertGroup) -> String {
    match group.instance {
        Some(i) => format!("cblogs/{rule}/{}/{i}", group.job),
        None => format!("cblogs/{rule}/{}", group.job),
    }
}

/// Delivers notifications and counts how that goes.
pub struct Deliveries {
    http: reqwest::Client,
    /// One turn per notifier and incident (rule and group): a resolve waits
    /// until its trigger is delivered or given up, so a trigger in backoff
    /// cannot arrive after it and open an incident nobody closes.
    turns: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    sent: AtomicU64,
    failed: AtomicU64,
    pending: AtomicU64,
}

impl Deliveries {
    pub fn new() -> Arc<Deliveries> {
        let http = reqwest::Client::builder()
            .timeout(DELIVERY_TIMEOUT)
            .build()
            .unwrap_or_default();
        Arc::new(Deliveries {
            http,
            turns: std::sync::Mutex::new(std::collections::HashMap::new()),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            pending: AtomicU64::new(0),
        })
    }

    pub fn counts(&self) -> DeliveryCounts {
        DeliveryCounts {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
        }
    }

    /// Sends `payload` to each of the rule's notifiers, each on its own
    /// task, retrying with backoff.
    pub fn send(self: &Arc<Self>, rule: &Rule, notifiers: &[Notifier], payload: &Payload) {
        for &n in &rule.notify {
            let Some(notifier) = notifiers.get(n).cloned() else {
                continue;
            };
            let body = payload.body_for(&notifier.kind);
            let this = self.clone();
            let what = payload.summary();
            let turn = self.turn(&format!(
                "{}\u{0}{}",
                notifier.name,
                dedup_key(&payload.rule, &payload.group)
            ));
            this.pending.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let _turn = turn.lock().await;
                let mut wait = FIRST_BACKOFF;
                for attempt in 1..=MAX_TRIES {
                    match deliver(&this.http, &notifier.kind, &body).await {
                        Ok(()) => {
                            this.sent.fetch_add(1, Ordering::Relaxed);
                            tracing::info!(notifier = %notifier.name, "{what}");
                            break;
                        }
                        Err(why) => {
                            this.failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(notifier = %notifier.name, attempt, %why, "alert notification failed");
                            if attempt == MAX_TRIES {
                                tracing::error!(notifier = %notifier.name, "alert notification dropped after {MAX_TRIES} tries: {what}");
                                break;
                            }
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                this.pending.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

impl Deliveries {
    /// The turn of one notifier and incident (forgetting turns nobody holds).
    fn turn(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        turns.retain(|_, t| Arc::strong_count(t) > 1);
        turns.entry(key.to_owned()).or_default().clone()
    }
}

async fn deliver(http: &reqwest::Client, kind: &NotifierKind, body: &[u8]) -> Result<(), String> {
    let url = match kind {
        NotifierKind::Webhook { url }
        | NotifierKind::Slack { url }
        | NotifierKind::PagerDuty { url, .. } => url,
        NotifierKind::Command { argv } => return run_command(argv, body).await,
    };
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {}", resp.status()))
    }
}

/// Runs the command with the payload on its stdin; success is exit 0.
async fn run_command(argv: &[String], body: &[u8]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // Writing and waiting share one limit: a command that never reads its
    // stdin must not hold the delivery forever.
    let run = async {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(body).await.map_err(|e| e.to_string())?;
        }
        child.wait().await.map_err(|e| e.to_string())
    };
    let status = tokio::time::timeout(DELIVERY_TIMEOUT, run)
        .await
        .map_err(|_| format!("{program} took more than {DELIVERY_TIMEOUT:?}"))??;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}
