//! Alerting: rules evaluated on the stream of ingested lines, notifications
//! to webhooks, Slack, PagerDuty or a command.
//!
//! The engine runs on its own thread (with its own small async runtime for
//! deliveries) and reads the store's broadcast of applied batches
//! (`TailHub`), the same one live tails read: ingest never waits for it,
//! and a slow receiver only delays its own notification. If it falls more
//! than `read.follow_buffer_batches` batches behind, it logs that some
//! lines were not evaluated. Silences hold notifications back, not the
//! evaluation.
//!
//! In a cluster each line is evaluated once, cluster-wide (rule 7 of
//! issue 18): the node that ingests it matches it, and sends the hit to
//! the one node its group's window is on (rendezvous hashing over the
//! nodes that ingest); that node counts each byte range of a source once,
//! so lines sent again after a failover do not count twice, and a burst
//! split across nodes adds up. Alone, a node is every group's node.
//! What must survive a node (which groups fire, when they were notified,
//! silences) is in the object store (`shared.rs`); a group that was
//! firing when its node was lost or restarted is held one window before
//! it may resolve, and is not fired again.
//!
//! ```text
//! rules.rs    the rules file, checked whole (a bad one names rule, field, why)
//! matcher.rs  per source the rules that watch it; a match is a Hit, one per rule and
//!             event, sent once its event (a message and its trace) has ended
//! outbox.rs   each hit to its group's node, again when that node changes
//! window.rs   per rule and group the hits of the window, each byte range once; fire, repeat, resolve
//! engine.rs   the four together, without I/O
//! shared.rs   group memories and silences in the object store
//! notify.rs   webhook, Slack, PagerDuty, command: one task each, retried
//! ```

mod engine;
mod matcher;
mod notify;
mod outbox;
pub mod rules;
mod shared;
#[cfg(test)]
mod testing;
mod window;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cblogs_core::api::{
    AlertRuleState, AlertsResponse, Silence, SilenceRequest, CLUSTER_ALERTS_PATH,
    CLUSTER_ALERT_HITS_PATH,
};
use cblogs_core::time::{format_rfc3339, now_ns};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{broadcast, watch};

use crate::bucket::Bucket;
use crate::cluster::{Cluster, PeerError, Peers};
use crate::config::Config;
use crate::metrics::{emit, AlertNotified};
use crate::store::{LiveBatch, TailHub};
use engine::Engine;
pub use matcher::Hit;
use notify::Deliveries;
use outbox::{Batch, Fate};
pub use rules::{Rules, RulesError};
use shared::{Loaded, SharedState};
use window::Outgoing;

pub struct Alerts {
    engine: Mutex<Engine>,
    deliveries: Arc<Deliveries>,
    rules_path: Option<PathBuf>,
    regex_size_limit: usize,
    shared: SharedState,
    cluster: Arc<Cluster>,
    /// How hits go to other nodes: a client of its own, whose connections
    /// live on the engine's runtime (the cluster's are the server's).
    peers: Peers,
    /// Hits other nodes sent, into the engine's loop.
    received: UnboundedSender<Vec<Hit>>,
    /// Made at each start: a node that names another boot in its answer
    /// has lost its windows, and is sent every hit again.
    boot: String,
}

/// The answer to hits sent to a node.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct HitsTaken {
    pub accepted: usize,
    pub boot: String,
    /// The groups (rule, group) whose hits it did not take: not placed on
    /// it as it sees the nodes.
    #[serde(default)]
    pub refused: Vec<(String, cblogs_core::api::AlertGroup)>,
}

/// What the engine's loop waits on besides lines and its tick.
struct Inputs {
    received: UnboundedReceiver<Vec<Hit>>,
    loaded: UnboundedReceiver<Loaded>,
}

impl Alerts {
    /// Loads the rules (a bad file stops the start, naming the problem) and
    /// starts evaluating the store's new lines.
    pub fn start(
        config: &Config,
        live: &TailHub,
        bucket: Arc<Bucket>,
        cluster: Arc<Cluster>,
        peers: Peers,
        stopping: watch::Receiver<bool>,
    ) -> Result<Arc<Alerts>, RulesError> {
        let rules_path = config.alerts.rules_path();
        let limit = config.search.regex_size_limit;
        let rules = match &rules_path {
            Some(p) => Rules::load(p, limit)?,
            None => Rules::default(),
        };
        let (loaded_tx, loaded) = unbounded_channel();
        let shared = SharedState::start(bucket, loaded_tx);
        shared.set_active(!rules.rules.is_empty());
        shared.migrate(&config.data_dir);
        let (received_tx, received) = unbounded_channel();
        let alerts = Arc::new(Alerts {
            engine: Mutex::new(Engine::new(rules, &config.alerts.base_url)),
            deliveries: Deliveries::new(),
            rules_path,
            regex_size_limit: limit,
            shared,
            cluster,
            peers,
            received: received_tx,
            boot: format!("{:016x}", fastrand::u64(..)),
        });
        let records = live.subscribe();
        let this = alerts.clone();
        let interval = config.alerts.eval_interval();
        let inputs = Inputs { received, loaded };
        let spawned = std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || this.run(records, inputs, interval, stopping));
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
        self.shared.set_active(n > 0);
        self.engine().replace_rules(rules);
        tracing::info!(rules = n, path = %path.display(), "alert rules reloaded");
        Ok(n)
    }

    /// This node's groups (in a cluster: those whose window is here).
    pub fn response(&self) -> AlertsResponse {
        let engine = self.engine();
        AlertsResponse {
            rules: engine.states(),
            deliveries: self.deliveries.counts(),
            silences: engine.silences.clone(),
            partial: Vec::new(),
        }
    }

    /// Every group of the cluster: this node's, and every other node's
    /// (asked at once; one that does not answer is named in `partial`).
    pub async fn cluster_response(&self) -> AlertsResponse {
        let mut response = self.response();
        if !self.cluster.has_others() {
            return response;
        }
        let (answers, partial) = self
            .cluster
            .ask_others::<AlertsResponse>(CLUSTER_ALERTS_PATH)
            .await;
        let me = self.cluster.node_id.as_str();
        for mut other in answers {
            // A static list's entry for this node is asked too.
            for r in &mut other.rules {
                r.groups.retain(|g| g.node.as_deref() != Some(me));
            }
            merge_rules(&mut response.rules, other.rules);
            response.deliveries.sent += other.deliveries.sent;
            response.deliveries.failed += other.deliveries.failed;
            response.deliveries.pending += other.deliveries.pending;
        }
        response.partial = partial;
        response
    }

    /// Hits another node sent for the windows on this node: those of the
    /// groups it does not hold as it sees the nodes are named in the
    /// answer, and the sender sends them again later.
    pub fn receive(&self, hits: Vec<Hit>) -> HitsTaken {
        let (taken, refused) = self.engine().sort_received(hits);
        let accepted = taken.len();
        if !taken.is_empty() {
            let _ = self.received.send(taken);
        }
        HitsTaken {
            accepted,
            boot: self.boot.clone(),
            refused,
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
        engine.silence(silence.clone());
        self.shared.silence(silence.clone());
        Ok(silence)
    }

    /// The engine's loop: lines as they are applied, hits from other
    /// nodes, what the object store said, and a tick for windows, the
    /// membership and deliveries to other nodes.
    fn run(
        self: Arc<Self>,
        mut records: broadcast::Receiver<Arc<LiveBatch>>,
        mut inputs: Inputs,
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
        let is_cluster = self.cluster.membership.view().membership != "none";
        runtime.block_on(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let (done_tx, mut done) = unbounded_channel::<(Batch, Fate)>();
            // The nodes changed: the state is read once what this round
            // changed is written.
            let mut read_state = false;
            loop {
                let mut deliver = false;
                let out = tokio::select! {
                    r = records.recv() => match r {
                        Ok(rec) => {
                            deliver = self.engine().on_lines(&rec.source, &rec.lines);
                            Vec::new()
                        }
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "the alert engine fell behind ingest; some lines were not evaluated");
                            Vec::new()
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    Some(hits) = inputs.received.recv() => self.engine().on_hits(&hits),
                    Some(loaded) = inputs.loaded.recv() => {
                        let mut engine = self.engine();
                        match loaded {
                            Loaded::State { generation, groups, silences } => engine.state_read(generation, groups, silences),
                            Loaded::Silences(s) => engine.silences_read(s),
                        }
                        Vec::new()
                    }
                    Some((batch, fate)) = done.recv() => {
                        deliver = self.engine().delivered(&batch, fate);
                        Vec::new()
                    }
                    _ = tick.tick() => {
                        deliver = true;
                        let nodes = self.cluster.alert_nodes();
                        let mut engine = self.engine();
                        read_state |= engine.set_nodes(nodes, is_cluster);
                        engine.tick()
                    }
                    _ = stopping.wait_for(|s| *s) => break,
                };
                self.send(out);
                if deliver {
                    let (out, remote) = self.engine().due();
                    self.send(out);
                    for (batch, url) in remote {
                        let this = self.clone();
                        let done = done_tx.clone();
                        tokio::spawn(async move {
                            let hits: Vec<&Hit> = batch.hits.iter().map(|h| &**h).collect();
                            let sent = this
                                .peers
                                .post_json::<_, HitsTaken>(&url, CLUSTER_ALERT_HITS_PATH, &hits)
                                .await;
                            let fate = fate_of(&batch.node, sent);
                            let _ = done.send((batch, fate));
                        });
                    }
                }
                self.save_changes();
                if std::mem::take(&mut read_state) {
                    self.shared.read_state(self.engine().generation);
                }
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

    /// Group memories that changed, to the object store.
    fn save_changes(&self) {
        for (rule, group, memory) in self.engine().take_changes() {
            self.shared.save(rule, group, memory);
        }
    }
}

/// What became of hits sent to `node`. A refusal that another try cannot
/// change (a node of another version, a batch too big, an answer this
/// node cannot read) drops them, so that they do not hold back the
/// node's other hits; anything else (unreachable, starting, busy, a token
/// being rotated) is tried again after a wait.
fn fate_of(node: &str, sent: Result<HitsTaken, PeerError>) -> Fate {
    match sent {
        Ok(taken) => Fate::Taken {
            boot: taken.boot,
            refused: taken.refused,
        },
        Err(PeerError::Refused {
            status: 0 | 400 | 404 | 405 | 413 | 415 | 422,
            why,
            ..
        }) => {
            tracing::warn!(node, "alert hits refused, dropped: {why}");
            Fate::Dropped
        }
        Err(e) => {
            tracing::debug!(node, "alert hits not delivered yet: {e}");
            Fate::Again
        }
    }
}

/// Adds another node's groups to `rules` (the same rules, by name).
fn merge_rules(rules: &mut [AlertRuleState], other: Vec<AlertRuleState>) {
    for o in other {
        let Some(r) = rules.iter_mut().find(|r| r.name == o.name) else {
            continue;
        };
        r.groups.extend(o.groups);
        r.groups.sort_by(|a, b| a.group.cmp(&b.group));
        r.last_fired = r.last_fired.take().max(o.last_fired);
    }
}
