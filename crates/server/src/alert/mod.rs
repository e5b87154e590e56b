//! Alerting: rules evaluated on the stream of ingested lines, notifications
//! to webhooks, Slack, PagerDuty or a command.
//!
//! The engine runs on its own thread (with its own small async runtime for
//! deliveries) and reads the store's broadcast of applied batches
//! (`TailHub`), the same one live tails read: ingest never waits for it,
//! and a slow receiver only delays its own notification. If it falls more
//! than `read.follow_buffer_batches` batches behind, it logs that some
//! lines were not evaluated. State that must survive a restart (which
//! groups fire, when they were last notified, silences) is saved in
//! `<data dir>/alerts/state.json` whenever it changes, written aside and
//! renamed; on start a group that was firing is held one window before it
//! may resolve. Silences hold notifications back, not the evaluation.
//!
//! ```text
//! rules.rs   the rules file, checked whole (a bad one names rule, field, why)
//! engine.rs  per source the rules that watch it; sliding windows per rule and group
//! trace.rs   a firing waits for the rest of its Python traceback / Java stack trace
//! notify.rs  webhook, Slack, PagerDuty, command: one task each, retried
//! ```

mod engine;
mod notify;
pub mod rules;
mod trace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cblogs_core::api::{AlertGroup, AlertsResponse, Silence, SilenceRequest};
use cblogs_core::time::{format_rfc3339, now_ns};
use tokio::sync::{broadcast, watch};

use crate::config::Config;
use crate::metrics::{emit, AlertNotified};
use crate::store::{LiveBatch, TailHub};
use engine::{Engine, GroupMemory, Outgoing};
use notify::Deliveries;
pub use rules::{Rules, RulesError};

pub struct Alerts {
    engine: Mutex<Engine>,
    deliveries: Arc<Deliveries>,
    rules_path: Option<PathBuf>,
    regex_size_limit: usize,
    state_path: PathBuf,
}

/// What `state.json` holds.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Saved {
    /// Rule name → its groups that fire or were notified.
    groups: BTreeMap<String, Vec<(AlertGroup, GroupMemory)>>,
    silences: Vec<Silence>,
}

impl Alerts {
    /// Loads the rules (a bad file stops the start, naming the problem) and
    /// starts evaluating the store's new lines.
    pub fn start(
        config: &Config,
        live: &TailHub,
        stopping: watch::Receiver<bool>,
    ) -> Result<Arc<Alerts>, RulesError> {
        let rules_path = config.alerts.rules_path();
        let limit = config.search.regex_size_limit;
        let rules = match &rules_path {
            Some(p) => Rules::load(p, limit)?,
            None => Rules::default(),
        };
        let mut engine = Engine::new(rules, &config.alerts.base_url);
        let state_path = config.data_dir.join("alerts").join("state.json");
        if let Some(saved) = read_state(&state_path) {
            engine.restore(saved.groups);
            engine.silences = saved.silences;
        }
        let alerts = Arc::new(Alerts {
            engine: Mutex::new(engine),
            deliveries: Deliveries::new(),
            rules_path,
            regex_size_limit: limit,
            state_path,
        });
        let records = live.subscribe();
        let this = alerts.clone();
        let interval = config.alerts.eval_interval();
        let spawned = std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || this.run(records, interval, stopping));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the alert engine; no alerts will fire");
        }
        Ok(alerts)
    }

    fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the rules file again; on a problem the rules in force stay.
    pub fn reload(&self) -> Result<usize, RulesError> {
        let Some(path) = &self.rules_path else {
            return Err(RulesError::Read {
                path: "(none)".into(),
                why: "alerting is off: set [alerts] rules_file in cblogsd.toml".into(),
            });
        };
        let rules = Rules::load(path, self.regex_size_limit)?;
        let n = rules.rules.len();
        let waiting = self.engine().replace_rules(rules);
        self.send(waiting);
        tracing::info!(rules = n, path = %path.display(), "alert rules reloaded");
        Ok(n)
    }

    pub fn response(&self) -> AlertsResponse {
        let engine = self.engine();
        AlertsResponse {
            rules: engine.states(),
            deliveries: self.deliveries.counts(),
            silences: engine.silences.clone(),
        }
    }

    /// Silences `rule` (or one group of it) for `for_secs`.
    pub fn silence(&self, req: SilenceRequest) -> Result<Silence, String> {
        let mut engine = self.engine();
        if !engine.rules.rules.iter().any(|r| r.name == req.rule) {
            return Err(format!("no alert rule is named '{}'", req.rule));
        }
        if req.for_secs == 0 {
            return Err("a silence must last at least a second".into());
        }
        let until_ns = now_ns().saturating_add((req.for_secs as i64).saturating_mul(1_000_000_000));
        let silence = Silence {
            rule: req.rule,
            group: req.group.filter(|g| !g.is_empty()),
            until_ns,
            until: format_rfc3339(until_ns),
        };
        tracing::info!(rule = %silence.rule, group = ?silence.group, until = %silence.until, "alert silenced");
        engine.silences.push(silence.clone());
        engine.dirty = true;
        Ok(silence)
    }

    /// The engine's loop: lines as they are applied, and a tick for windows.
    fn run(
        self: Arc<Self>,
        mut records: broadcast::Receiver<Arc<LiveBatch>>,
        interval: Duration,
        mut stopping: watch::Receiver<bool>,
    ) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the alert engine; no alerts will fire");
                return;
            }
        };
        runtime.block_on(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let out = tokio::select! {
                    r = records.recv() => match r {
                        Ok(rec) => self.engine().on_lines(&rec.source, &rec.lines),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "the alert engine fell behind ingest; some lines were not evaluated");
                            Vec::new()
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    _ = tick.tick() => self.engine().tick(),
                    _ = stopping.wait_for(|s| *s) => break,
                };
                self.send(out);
                self.save_if_changed();
            }
            // Deliveries under way get a moment to finish.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while self.deliveries.counts().pending > 0 && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    fn send(&self, out: Vec<Outgoing>) {
        if out.is_empty() {
            return;
        }
        let engine = self.engine();
        for o in out {
            emit(AlertNotified {
                rule: &o.payload.rule,
                status: o.payload.status,
            });
            if engine.silenced(&o) {
                tracing::info!(rule = %o.payload.rule, group = %o.payload.group.key(), status = o.payload.status, "alert notification silenced");
                continue;
            }
            if let Some(rule) = engine.rules.rules.iter().find(|r| r.name == o.payload.rule) {
                self.deliveries
                    .send(rule, &engine.rules.notifiers, &o.payload);
            }
        }
    }

    fn save_if_changed(&self) {
        let saved = {
            let mut engine = self.engine();
            if !engine.dirty {
                return;
            }
            engine.dirty = false;
            Saved {
                groups: engine.saved(),
                silences: engine.silences.clone(),
            }
        };
        if let Err(e) = write_state(&self.state_path, &saved) {
            tracing::error!(error = %e, path = %self.state_path.display(), "cannot save the alert state");
        }
    }
}

fn read_state(path: &Path) -> Option<Saved> {
    let text = std::fs::read(path).ok()?;
    match serde_json::from_slice(&text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, path = %path.display(), "alert state unreadable; starting afresh");
            None
        }
    }
}

/// Written aside and renamed, so a crash leaves the old state or the new.
fn write_state(path: &Path, saved: &Saved) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(saved)?)?;
    std::fs::rename(&tmp, path)
}
