//! [`Metastore`]: the version log in the object store (see the module's
//! doc), and the state it adds up to.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufReader, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use cblogs_core::time::{format_rfc3339, now_ns};
use cblogs_core::Source;
use serde::{Deserialize, Serialize};

use super::keys::{self, CHECKPOINTS, VERSIONS};
use super::state::{Change, Claim, MetastoreState, Ownership, SourceRecord, SplitState};
use crate::bucket::{Bucket, BucketError};

/// How many times a claim is tried again after another node's claim of
/// the same source came first (each after a short random wait, so that
/// two nodes in step fall out of it).
const CLAIM_TRIES: usize = 20;

/// What a node holds of a source it has just taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    pub owner: Ownership,
    /// The end of its contiguous published prefix: where the node's
    /// lines of it must start.
    pub published_end: u64,
}

/// How many versions between two checkpoints.
pub(super) const CHECKPOINT_EVERY: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum MetastoreError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("metastore in {location}: {key}: {source}")]
    Decode {
        location: String,
        key: String,
        source: serde_json::Error,
    },
    #[error("metastore in {location}: refused: {why}")]
    Conflict { location: String, why: String },
    /// A claim that gives way ([`Metastore::claim_if`]) found a source
    /// taken by another node since its caller looked.
    #[error("source {source_key} was taken by node {node} meanwhile")]
    TakenMeanwhile { source_key: String, node: String },
    #[error(
        "metastore in {location}: version {missing} is missing although {found} exists; \
         the metastore's objects were changed by something other than cblogsd"
    )]
    Missing {
        location: String,
        missing: u64,
        found: u64,
    },
}

impl MetastoreError {
    /// Whether the store could not be reached at all (a connection refused
    /// or timed out), rather than answered with a refusal.
    pub fn is_unreachable(&self) -> bool {
        match self {
            MetastoreError::Bucket(e) => e.is_unreachable(),
            _ => false,
        }
    }

    /// What to do about the store's refusal, when its answer says.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            MetastoreError::Bucket(e) => e.hint(),
            _ => None,
        }
    }
}

/// One version as written (`C`: the changes, borrowed to write them).
#[derive(Serialize, Deserialize)]
struct VersionFile<C> {
    version: u64,
    written_at: String,
    /// Unique to one commit: a commit that finds its version taken tells
    /// its own write (a put the store did, then answered with an error, or
    /// retried and refused) from another writer's.
    #[serde(default)]
    commit: String,
    changes: C,
}

pub struct Metastore {
    bucket: Arc<Bucket>,
    /// What this process has read and written, up to `state.version`.
    /// Held across a commit: commits of one process are one at a time.
    state: Mutex<MetastoreState>,
    /// The newest versions applied, for a follower (a cluster's node
    /// showing what other nodes publish) to take up change by change.
    /// Locked after `state`, never before.
    recent: Mutex<VecDeque<Applied>>,
    /// Whether `recent` is kept at all: only a follower needs it.
    keep_recent: AtomicBool,
}

/// How many applied versions [`Metastore::changes_since`] can give.
const RECENT_KEPT: usize = 1_000;

/// A version as this process applied it.
#[derive(Debug, Clone)]
pub struct Applied {
    pub version: u64,
    /// Committed by this process (its own pipeline shows what it did).
    pub mine: bool,
    pub changes: Arc<Vec<Change>>,
}

impl Metastore {
    /// Reads the newest checkpoint and every version after it.
    pub fn open(bucket: Arc<Bucket>) -> Result<Metastore, MetastoreError> {
        let checkpoints = bucket.list(CHECKPOINTS, None)?;
        let newest = checkpoints
            .iter()
            .rev()
            .find_map(|k| keys::parse(CHECKPOINTS, k).map(|v| (v, k)));
        let mut state = match newest {
            Some((_, key)) => match bucket.get(key)? {
                Some(bytes) => {
                    let mut state: MetastoreState = decode(&bucket, key, &bytes)?;
                    state.share_all_sources();
                    state
                }
                None => MetastoreState::default(),
            },
            None => MetastoreState::default(),
        };
        catch_up(&bucket, &mut state, "", &mut Vec::new())?;
        tracing::info!(
            location = bucket.location(),
            version = state.version,
            sources = state.sources.len(),
            "metastore read"
        );
        Ok(Metastore {
            bucket,
            state: Mutex::new(state),
            recent: Mutex::new(VecDeque::new()),
            keep_recent: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, MetastoreState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the state as this process knows it.
    #[cfg(test)]
    pub fn state(&self) -> MetastoreState {
        self.lock().clone()
    }

    /// Every source's record, by id.
    pub fn sources(&self) -> BTreeMap<u64, SourceRecord> {
        self.lock().sources.clone()
    }

    /// Every split's state, by id (the entries share their sources with
    /// the state's: a copy costs the lists, not the sources).
    pub fn splits(&self) -> BTreeMap<String, SplitState> {
        self.lock().splits.clone()
    }

    /// Split `id`'s state as this process knows it.
    pub fn split(&self, id: &str) -> Option<SplitState> {
        self.lock().splits.get(id).cloned()
    }

    /// Whether split `id` is published, as this process knows it (no copy
    /// of its entry, which lists every source it holds).
    pub fn is_published(&self, id: &str) -> bool {
        matches!(
            self.lock().splits.get(id),
            Some(SplitState::Published { .. })
        )
    }

    /// The splits staged (and neither published nor retired) before `ns`.
    pub fn staged_before(&self, ns: i64) -> Vec<String> {
        self.lock()
            .splits
            .iter()
            .filter(|(_, s)| matches!(s, SplitState::Staged { at_ns } if *at_ns < ns))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Records `changes` as the next version. If another writer took that
    /// version first, its changes are read and applied, and the next one
    /// is tried. A change that cannot follow the state it would be
    /// written after ([`Change::conflict`]: checked again after reading
    /// another writer's version) is refused with
    /// [`MetastoreError::Conflict`], and nothing is written. Returns the
    /// version written.
    pub fn commit(&self, changes: Vec<Change>) -> Result<u64, MetastoreError> {
        let mut state = self.lock();
        let commit = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        loop {
            if let Some(why) = changes.iter().find_map(|c| c.conflict(&state)) {
                return Err(MetastoreError::Conflict {
                    location: self.bucket.location().to_owned(),
                    why,
                });
            }
            let version = state.version + 1;
            let file = VersionFile {
                version,
                written_at: format_rfc3339(now_ns()),
                commit: commit.clone(),
                changes: &changes[..],
            };
            let key = keys::version(version);
            let body = encode(&self.bucket, &key, &file)?;
            if self.bucket.create(&key, body)? {
                state.apply(version, &changes);
                if self.keep_recent.load(Ordering::Relaxed) {
                    self.remember(vec![Applied {
                        version,
                        mine: true,
                        changes: Arc::new(changes.clone()),
                    }]);
                }
                if version.is_multiple_of(CHECKPOINT_EVERY) {
                    if let Err(e) = self.checkpoint(&state) {
                        // The versions stay: the next checkpoint covers them.
                        tracing::warn!(error = %e, version, "metastore checkpoint failed");
                    }
                }
                return Ok(version);
            }
            tracing::debug!(
                version,
                "metastore version taken by another writer; reading it"
            );
            let mut applied = Vec::new();
            let caught = catch_up(&self.bucket, &mut state, &commit, &mut applied);
            self.remember(applied);
            if let Some(ours) = caught? {
                // Taken by this very commit (an earlier try that failed
                // after the store had written it): done.
                return Ok(ours);
            }
        }
    }

    /// Whether node `node` owns a source, as this process last read it.
    pub fn owns_any(&self, node: &str) -> bool {
        self.lock()
            .sources
            .values()
            .any(|r| r.owner.as_ref().is_some_and(|o| o.node == node))
    }

    /// Source `id`'s owner and published end, as this process knows them.
    pub fn owner(&self, id: u64) -> (Option<Ownership>, u64) {
        let state = self.lock();
        match state.sources.get(&id) {
            Some(r) => (r.owner.clone(), r.published_end),
            None => (None, 0),
        }
    }

    /// `node` takes `sources` (a takeover: cluster only), each at one
    /// more than its epoch as this process last read it. When another
    /// node's claim of one of them came first, the winner is read and the
    /// claim made again above it, up to [`CLAIM_TRIES`] times. Returns,
    /// in order, each source's ownership and published end as of the
    /// commit.
    pub fn claim(&self, node: &str, sources: &[Source]) -> Result<Vec<Taken>, MetastoreError> {
        self.claim_if(node, sources, &|_, _| true)
    }

    /// [`Metastore::claim`], giving way: before each try, every source's
    /// owner as then read must be one `may_take(id, owner)` accepts, else
    /// nothing is taken and the answer is
    /// [`MetastoreError::TakenMeanwhile`]. For pushed lines, which no
    /// sender chose this node for: a source another node took since the
    /// caller looked stays that node's.
    pub fn claim_if(
        &self,
        node: &str,
        sources: &[Source],
        may_take: &dyn Fn(u64, Option<&Ownership>) -> bool,
    ) -> Result<Vec<Taken>, MetastoreError> {
        let mut last = None;
        for _ in 0..CLAIM_TRIES {
            let claims: Vec<Claim> = {
                let state = self.lock();
                let mut claims = Vec::with_capacity(sources.len());
                for s in sources {
                    let owner = state.owner(s.id());
                    if !may_take(s.id(), owner) {
                        return Err(MetastoreError::TakenMeanwhile {
                            source_key: s.key(),
                            node: owner.map_or_else(|| "none".into(), |o| o.node.clone()),
                        });
                    }
                    claims.push(Claim {
                        source: s.clone(),
                        owner: Ownership {
                            node: node.to_owned(),
                            epoch: owner.map_or(0, |o| o.epoch) + 1,
                        },
                    });
                }
                claims
            };
            match self.commit(vec![Change::Own {
                claims: claims.clone(),
            }]) {
                Ok(_) => {
                    let state = self.lock();
                    return Ok(claims
                        .into_iter()
                        .map(|c| Taken {
                            published_end: state
                                .sources
                                .get(&c.source.id())
                                .map_or(0, |r| r.published_end),
                            owner: c.owner,
                        })
                        .collect());
                }
                Err(e @ MetastoreError::Conflict { .. }) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(fastrand::u64(1..20)));
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| MetastoreError::Conflict {
            location: self.bucket.location().to_owned(),
            why: "no claim was tried".into(),
        }))
    }

    /// Reads what other writers (or an unanswered write of this process)
    /// committed since this process last looked: before a decision that
    /// must not rest on a stale state (deleting a split's objects).
    pub fn refresh(&self) -> Result<(), MetastoreError> {
        let mut state = self.lock();
        let mut applied = Vec::new();
        let caught = catch_up(&self.bucket, &mut state, "", &mut applied);
        self.remember(applied);
        caught.map(|_| ())
    }

    /// The version this process has read up to.
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// Every version applied after `version`, in order; `None` if some of
    /// them are no longer kept (more than [`RECENT_KEPT`] since): the
    /// caller reads the whole state instead.
    pub fn changes_since(&self, version: u64) -> Option<Vec<Applied>> {
        // `state` before `recent`, never the other way round.
        let current = self.version();
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let newer: Vec<Applied> = recent
            .iter()
            .filter(|a| a.version > version)
            .cloned()
            .collect();
        let complete = match newer.first() {
            Some(first) => first.version == version + 1,
            None => current <= version,
        };
        complete.then_some(newer)
    }

    /// From now on, keep the versions applied for [`Metastore::changes_since`].
    pub fn keep_recent(&self) {
        self.keep_recent.store(true, Ordering::Relaxed);
    }

    fn remember(&self, applied: Vec<Applied>) {
        if applied.is_empty() || !self.keep_recent.load(Ordering::Relaxed) {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.extend(applied);
        while recent.len() > RECENT_KEPT {
            recent.pop_front();
        }
    }

    /// Writes the whole state as a checkpoint, then deletes what only the
    /// checkpoint before it needed: the versions up to it, and older
    /// checkpoints. One checkpoint back is kept, so a reader that listed
    /// just before this one still finds the versions after it.
    fn checkpoint(&self, state: &MetastoreState) -> Result<(), MetastoreError> {
        let key = keys::checkpoint(state.version);
        let body = encode_compressed(&self.bucket, &key, state)?;
        self.bucket.create(&key, body)?;
        let previous = self
            .bucket
            .list(CHECKPOINTS, None)?
            .iter()
            .filter_map(|k| keys::parse(CHECKPOINTS, k))
            .filter(|v| *v < state.version)
            .max();
        let Some(previous) = previous else {
            return Ok(());
        };
        for k in self.bucket.list(VERSIONS, None)? {
            if keys::parse(VERSIONS, &k).is_some_and(|v| v <= previous) {
                self.bucket.delete(&k)?;
            }
        }
        for k in self.bucket.list(CHECKPOINTS, None)? {
            if keys::parse(CHECKPOINTS, &k).is_some_and(|v| v < previous) {
                self.bucket.delete(&k)?;
            }
        }
        Ok(())
    }
}

/// Applies every version after `state.version`, in order. Returns the
/// version written by commit `ours`, if one of them was.
fn catch_up(
    bucket: &Bucket,
    state: &mut MetastoreState,
    ours: &str,
    applied: &mut Vec<Applied>,
) -> Result<Option<u64>, MetastoreError> {
    let mut found = None;
    let after = keys::version(state.version);
    for key in bucket.list(VERSIONS, Some(&after))? {
        let Some(v) = keys::parse(VERSIONS, &key) else {
            continue;
        };
        if v <= state.version {
            continue;
        }
        let missing = || MetastoreError::Missing {
            location: bucket.location().to_owned(),
            missing: state.version + 1,
            found: v,
        };
        if v != state.version + 1 {
            return Err(missing());
        }
        let Some(bytes) = bucket.get(&key)? else {
            return Err(missing());
        };
        let file: VersionFile<Vec<Change>> = decode(bucket, &key, &bytes)?;
        state.apply(v, &file.changes);
        let mine = !ours.is_empty() && file.commit == ours;
        if mine {
            found = Some(v);
        }
        applied.push(Applied {
            version: v,
            mine,
            changes: Arc::new(file.changes),
        });
    }
    Ok(found)
}

fn encode<T: Serialize>(bucket: &Bucket, key: &str, value: &T) -> Result<Bytes, MetastoreError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|source| MetastoreError::Decode {
            location: bucket.location().to_owned(),
            key: key.to_owned(),
            source,
        })
}

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A checkpoint's level of zstd: fast, and JSON that repeats each source
/// in every split that holds it compresses well even so.
const CHECKPOINT_ZSTD_LEVEL: i32 = 1;

/// `value` as zstd-compressed JSON, compressed as it is written: a quiet
/// cluster's whole state is hundreds of MB of JSON, which is never held
/// whole in memory.
fn encode_compressed<T: Serialize>(
    bucket: &Bucket,
    key: &str,
    value: &T,
) -> Result<Bytes, MetastoreError> {
    let failed = |source| MetastoreError::Decode {
        location: bucket.location().to_owned(),
        key: key.to_owned(),
        source,
    };
    let io = |e: std::io::Error| failed(serde_json::Error::io(e));
    let mut out = zstd::Encoder::new(Vec::new(), CHECKPOINT_ZSTD_LEVEL).map_err(io)?;
    {
        // serde_json writes a few bytes at a time; zstd costs per call.
        let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut out);
        serde_json::to_writer(&mut buffered, value).map_err(failed)?;
        buffered.flush().map_err(io)?;
    }
    out.finish().map(Bytes::from).map_err(io)
}

/// Reads JSON, or zstd-compressed JSON ([`encode_compressed`]; a
/// checkpoint), read as it is decompressed.
fn decode<T: for<'de> Deserialize<'de>>(
    bucket: &Bucket,
    key: &str,
    bytes: &[u8],
) -> Result<T, MetastoreError> {
    let failed = |source| MetastoreError::Decode {
        location: bucket.location().to_owned(),
        key: key.to_owned(),
        source,
    };
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return serde_json::from_slice(bytes).map_err(failed);
    }
    let reader = zstd::Decoder::with_buffer(BufReader::new(bytes))
        .map_err(|e| failed(serde_json::Error::io(e)))?;
    serde_json::from_reader(BufReader::new(reader)).map_err(failed)
}
