//! Alert state in the object store, so that it survives the node that
//! kept it: the memory of each group that fires or was notified, and the
//! silences.
//!
//! ```text
//! alerts/groups/<16 hex digits of rule and group>.json   {rule, group, memory}: its node writes it
//! alerts/silences/<until, 20 digits>-<8 hex digits>.json a silence: written once, deleted once over
//! ```
//!
//! A group has one writer, the node its window is on; a node that takes a
//! group over (another left, or it restarted) reads it before it may
//! notify (`Windows::ready`). A silence is its own object, so that two
//! nodes that silence at once both win; every node lists them every
//! [`LIST_EVERY`].
//!
//! The store's calls block, and may take long when it is slow: they run on
//! a thread of their own, which writes the newest memory of each group
//! (older ones still queued are skipped) and sends back what it read.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cblogs_core::api::{AlertGroup, Silence};
use cblogs_core::time::now_ns;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use super::window::GroupMemory;
use crate::bucket::Bucket;

/// How often silences are listed.
const LIST_EVERY: Duration = Duration::from_secs(2);
const GROUPS: &str = "alerts/groups/";
const SILENCES: &str = "alerts/silences/";

/// A group's object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedGroup {
    pub rule: String,
    pub group: AlertGroup,
    pub memory: GroupMemory,
}

/// What the thread read.
pub enum Loaded {
    /// Every group's memory and the silences, asked for as `generation`.
    State {
        generation: u64,
        groups: Vec<SavedGroup>,
        silences: Vec<Silence>,
    },
    /// The silences in force.
    Silences(Vec<Silence>),
}

/// A write to the store.
#[derive(Clone)]
enum Write {
    Put(SavedGroup),
    /// Only if the group has no object yet (an old `state.json` moved in:
    /// in a cluster each node had one, and the first wins).
    Seed(SavedGroup),
    Delete,
    Silence(Silence),
}

enum Command {
    Write(String, Write),
    ReadState(u64),
}

/// The handle the engine writes and asks through.
pub struct SharedState {
    commands: mpsc::Sender<Command>,
    /// Whether there are rules: without, no silence can be made, and the
    /// store is not listed for them.
    active: Arc<AtomicBool>,
}

impl SharedState {
    /// Starts the thread; what it reads goes to `loaded`.
    pub fn start(bucket: Arc<Bucket>, loaded: UnboundedSender<Loaded>) -> SharedState {
        let (commands, rx) = mpsc::channel();
        let active = Arc::new(AtomicBool::new(false));
        let listing = active.clone();
        let spawned = std::thread::Builder::new()
            .name("alert-state".into())
            .spawn(move || run(&bucket, rx, loaded, &listing));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the alert state's thread; alert state is not kept");
        }
        SharedState { commands, active }
    }

    /// Whether there are rules now (their silences are listed only then).
    pub fn set_active(&self, active: bool) {
        self.active.store(active, Ordering::Relaxed);
    }

    /// Keeps a group's memory, or forgets the group (`None`).
    pub fn save(&self, rule: String, group: AlertGroup, memory: Option<GroupMemory>) {
        let key = group_object(&rule, &group);
        let write = match memory {
            Some(memory) => Write::Put(SavedGroup {
                rule,
                group,
                memory,
            }),
            None => Write::Delete,
        };
        let _ = self.commands.send(Command::Write(key, write));
    }

    pub fn silence(&self, silence: Silence) {
        let key = format!(
            "{SILENCES}{:020}-{:08x}.json",
            silence.until_ns.max(0),
            fastrand::u32(..)
        );
        let _ = self
            .commands
            .send(Command::Write(key, Write::Silence(silence)));
    }

    /// Asks for every group's memory and the silences; the answer names
    /// `generation`. Asked after writes, it reads what they wrote.
    pub fn read_state(&self, generation: u64) {
        let _ = self.commands.send(Command::ReadState(generation));
    }

    /// The state a version before the object store kept it:
    /// `<data dir>/alerts/state.json`, moved into the store once (and
    /// renamed, so that it is not moved again).
    pub fn migrate(&self, data_dir: &Path) {
        #[derive(Deserialize)]
        struct Old {
            groups: BTreeMap<String, Vec<(AlertGroup, GroupMemory)>>,
            silences: Vec<Silence>,
        }
        let path = data_dir.join("alerts").join("state.json");
        let Ok(text) = std::fs::read(&path) else {
            return;
        };
        match serde_json::from_slice::<Old>(&text) {
            Ok(old) => {
                for (rule, groups) in old.groups {
                    for (group, memory) in groups {
                        let key = group_object(&rule, &group);
                        let rule = rule.clone();
                        let seed = Write::Seed(SavedGroup {
                            rule,
                            group,
                            memory,
                        });
                        let _ = self.commands.send(Command::Write(key, seed));
                    }
                }
                for s in old.silences {
                    self.silence(s);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "old alert state unreadable; not moved")
            }
        }
        if let Err(e) = std::fs::rename(&path, path.with_extension("json.moved")) {
            tracing::warn!(error = %e, path = %path.display(), "cannot rename the old alert state");
        }
    }
}

fn group_object(rule: &str, group: &AlertGroup) -> String {
    format!(
        "{GROUPS}{:016x}.json",
        super::outbox::group_key(rule, group)
    )
}

fn run(
    bucket: &Bucket,
    commands: mpsc::Receiver<Command>,
    loaded: UnboundedSender<Loaded>,
    active: &AtomicBool,
) {
    let mut listed = Instant::now() - LIST_EVERY;
    // Silences read already, by key: each is written once.
    let mut known: HashMap<String, Silence> = HashMap::new();
    // Writes to do (the store's refusals stay, tried again at the latest
    // with the next listing), of each key only the newest; a read of the
    // state asked for.
    let mut writes: BTreeMap<String, Write> = BTreeMap::new();
    let mut read = None;
    loop {
        let first = match commands.recv_timeout(LIST_EVERY.saturating_sub(listed.elapsed())) {
            Ok(c) => Some(c),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        for command in first.into_iter().chain(commands.try_iter()) {
            match command {
                Command::Write(key, w) => {
                    writes.insert(key, w);
                }
                Command::ReadState(generation) => read = Some(generation),
            }
        }
        for (key, w) in std::mem::take(&mut writes) {
            if let Err(e) = write(bucket, &key, &w) {
                tracing::warn!(error = %e, key, "cannot keep alert state in the object store; tried again");
                writes.insert(key, w);
            }
        }
        // Not while a write waits: a group deleted here and not yet in the
        // store would come back from it.
        if let Some(generation) = read.filter(|_| writes.is_empty()) {
            let state = read_groups(bucket).zip(read_silences(bucket, &mut known));
            if let Some((groups, silences)) = state {
                let _ = loaded.send(Loaded::State {
                    generation,
                    groups,
                    silences,
                });
                read = None;
            }
        }
        if listed.elapsed() >= LIST_EVERY {
            if active.load(Ordering::Relaxed) {
                if let Some(silences) = read_silences(bucket, &mut known) {
                    if loaded.send(Loaded::Silences(silences)).is_err() {
                        return;
                    }
                }
            }
            // After the listing: a slow store is not listed back to back.
            listed = Instant::now();
        }
    }
}

fn write(bucket: &Bucket, key: &str, w: &Write) -> Result<(), String> {
    let body = |v: serde_json::Result<Vec<u8>>| v.map(Bytes::from).map_err(|e| e.to_string());
    match w {
        Write::Put(g) => bucket.put(key, body(serde_json::to_vec(g))?),
        Write::Seed(g) => bucket.create(key, body(serde_json::to_vec(g))?).map(drop),
        Write::Silence(s) => bucket.create(key, body(serde_json::to_vec(s))?).map(drop),
        Write::Delete => bucket.delete(key),
    }
    .map_err(|e| e.to_string())
}

fn warn_on<E: std::fmt::Display>(r: Result<(), E>, what: &str) {
    if let Err(e) = r {
        tracing::warn!(error = %e, "cannot {what} in the object store");
    }
}

/// Every group's memory; `None` when the store cannot be read (the engine
/// asks again).
fn read_groups(bucket: &Bucket) -> Option<Vec<SavedGroup>> {
    let keys = match bucket.list(GROUPS, None) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the alert groups' state");
            return None;
        }
    };
    let mut groups = Vec::new();
    for key in keys {
        match bucket.get(&key) {
            Ok(Some(body)) => match serde_json::from_slice::<SavedGroup>(&body) {
                Ok(g) => groups.push(g),
                Err(e) => {
                    tracing::warn!(error = %e, key, "an alert group's state is unreadable; skipped")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, key, "cannot read an alert group's state");
                return None;
            }
        }
    }
    Some(groups)
}

/// The silences in force (`known`: those read before, by key); those
/// over are deleted.
fn read_silences(bucket: &Bucket, known: &mut HashMap<String, Silence>) -> Option<Vec<Silence>> {
    let keys = bucket
        .list(SILENCES, None)
        .map_err(|e| tracing::warn!(error = %e, "cannot list the alert silences"))
        .ok()?;
    let now = now_ns();
    known.retain(|k, _| keys.contains(k));
    let mut silences = Vec::new();
    for key in keys {
        let until: i64 = key
            .strip_prefix(SILENCES)
            .and_then(|k| k.split('-').next()?.parse().ok())
            .unwrap_or(i64::MAX);
        if until <= now {
            warn_on(bucket.delete(&key), "delete a silence that is over");
            continue;
        }
        if let Some(s) = known.get(&key) {
            silences.push(s.clone());
            continue;
        }
        match bucket.get(&key) {
            Ok(Some(body)) => match serde_json::from_slice::<Silence>(&body) {
                Ok(s) => {
                    known.insert(key, s.clone());
                    silences.push(s);
                }
                Err(e) => tracing::warn!(error = %e, key, "a silence is unreadable; skipped"),
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, key, "cannot read a silence");
                return None;
            }
        }
    }
    Some(silences)
}
