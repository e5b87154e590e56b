//! The metastore on the local store: what is committed is read back, two
//! writers never both win a version, and checkpoints bound what is kept.

use std::sync::Arc;

use bytes::Bytes;
use cblogs_core::{Source, Stream};

use super::keys::{self, CHECKPOINTS, VERSIONS};
use super::log::{Metastore, MetastoreError, CHECKPOINT_EVERY};
use super::state::{Change, Ownership, SourceAdvance, SplitState};
use crate::bucket::Bucket;

fn source(instance: u32) -> Source {
    Source::example("www-data/prod/hello", instance, "hello", Stream::Stdout)
}

/// Source `instance`'s end moves to `end`: split `s<instance>-<end>`
/// staged, then published.
fn published(instance: u32, end: u64) -> Vec<Change> {
    let id = format!("s{instance}-{end}");
    vec![
        Change::Staged {
            split: id.clone(),
            at_ns: 0,
        },
        published_with_entry(&id, instance, end),
    ]
}

fn bucket(dir: &tempfile::TempDir) -> Arc<Bucket> {
    Arc::new(Bucket::local(dir.path()).expect("local bucket"))
}

fn ends(m: &Metastore) -> Vec<(u64, u64)> {
    m.state().published_ends().collect()
}

#[test]
fn what_is_committed_is_read_back_by_a_new_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = Metastore::open(bucket(&dir)).expect("open");
    assert_eq!(m.state().version, 0);
    assert_eq!(m.commit(published(0, 100)).expect("commit"), 1);
    assert_eq!(m.commit(published(1, 7)).expect("commit"), 2);
    assert_eq!(m.commit(published(0, 50)).expect("commit"), 3);
    drop(m);
    let again = Metastore::open(bucket(&dir)).expect("reopen");
    assert_eq!(again.state().version, 3);
    let mut want = vec![(source(0).id(), 100), (source(1).id(), 7)];
    want.sort_unstable();
    assert_eq!(ends(&again), want, "never lowered");
}

#[test]
fn two_writers_never_both_win_a_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (
        Metastore::open(bucket(&dir)).expect("a"),
        Metastore::open(bucket(&dir)).expect("b"),
    );
    assert_eq!(a.commit(published(0, 10)).expect("a"), 1);
    // b has read nothing of a's version 1: its create of 1 loses, and it
    // reads 1 and writes 2.
    assert_eq!(b.commit(published(1, 20)).expect("b"), 2);
    assert_eq!(b.state().version, 2);
    assert_eq!(ends(&b).len(), 2, "b applied a's change");

    // Both at once, from two threads, many times: every version written
    // once, every change applied.
    const EACH: u32 = 40;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let threads: Vec<_> = [(a.clone(), 100), (b.clone(), 200)]
        .into_iter()
        .map(|(m, base)| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    m.commit(published(base + i, u64::from(i) + 1))
                        .expect("commit");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    let fresh = Metastore::open(bucket(&dir)).expect("reopen");
    let state = fresh.state();
    assert_eq!(state.version, 2 + 2 * u64::from(EACH));
    assert_eq!(state.sources.len(), 2 + 2 * EACH as usize);
}

#[test]
fn checkpoints_bound_the_versions_kept_and_open_reads_the_newest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = bucket(&dir);
    let m = Metastore::open(b.clone()).expect("open");
    let last = 2 * CHECKPOINT_EVERY + 30;
    for v in 1..=last {
        m.commit(published((v % 7) as u32, v)).expect("commit");
    }
    let versions: Vec<u64> = b
        .list(VERSIONS, None)
        .expect("list")
        .iter()
        .filter_map(|k| keys::parse(VERSIONS, k))
        .collect();
    let checkpoints: Vec<u64> = b
        .list(CHECKPOINTS, None)
        .expect("list")
        .iter()
        .filter_map(|k| keys::parse(CHECKPOINTS, k))
        .collect();
    assert_eq!(checkpoints, [CHECKPOINT_EVERY, 2 * CHECKPOINT_EVERY]);
    assert_eq!(
        versions,
        (CHECKPOINT_EVERY + 1..=last).collect::<Vec<_>>(),
        "the versions up to the checkpoint before the newest are deleted"
    );
    let again = Metastore::open(b).expect("reopen");
    assert_eq!(again.state(), m.state());
    assert_eq!(again.state().version, last);
}

#[test]
fn a_version_from_a_newer_cblogsd_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = bucket(&dir);
    let body = br#"{"version":1,"written_at":"x","changes":[{"op":"teleported"}]}"#;
    assert!(b
        .create(&keys::version(1), Bytes::from_static(body))
        .expect("put"));
    let err = Metastore::open(b).err().expect("refused");
    assert!(matches!(err, MetastoreError::Decode { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("00000000000000000001.json"), "{text}");
    assert!(text.contains("teleported"), "{text}");
}

#[test]
fn a_missing_version_is_refused_not_skipped() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = bucket(&dir);
    let m = Metastore::open(b.clone()).expect("open");
    for end in 1..=3 {
        m.commit(published(0, end)).expect("commit");
    }
    b.delete(&keys::version(2)).expect("delete");
    let err = Metastore::open(b).err().expect("refused");
    assert!(
        matches!(
            err,
            MetastoreError::Missing {
                missing: 2,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_split_is_staged_then_published_then_retired_then_forgotten() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = Metastore::open(bucket(&dir)).expect("open");
    m.commit(published(3, 30)).expect("publish");
    let id = "s3-30".to_owned();
    assert!(matches!(
        m.state().splits.get(&id),
        Some(SplitState::Published { .. })
    ));
    m.commit(vec![Change::Retire {
        splits: vec![id.clone()],
        at_ns: 5,
        reason: "age".into(),
    }])
    .expect("retire");
    let reopened = Metastore::open(bucket(&dir)).expect("reopen");
    assert!(matches!(
        reopened.state().splits.get(&id),
        Some(SplitState::Retired { at_ns: 5, .. })
    ));
    assert_eq!(
        ends(&reopened),
        [(source(3).id(), 30)],
        "retiring never lowers an end"
    );
    m.commit(vec![Change::Forget {
        splits: vec![id.clone()],
    }])
    .expect("forget");
    assert!(m.state().splits.is_empty());
}

/// A merge's output of `inputs`.
fn merge(id: &str, inputs: &[&str]) -> Change {
    let Change::Publish { mut split, .. } = published(0, 1).remove(1) else {
        unreachable!("published() gives a publish second")
    };
    split.id = id.to_owned();
    split.level = 1;
    Change::Merge {
        split,
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        at_ns: 9,
    }
}

fn state_of(m: &Metastore, id: &str) -> &'static str {
    match m.state().splits.get(id) {
        Some(SplitState::Staged { .. }) => "staged",
        Some(SplitState::Published { .. }) => "published",
        Some(SplitState::Retired { .. }) => "retired",
        None => "none",
    }
}

#[test]
fn a_merge_publishes_its_output_and_retires_its_inputs_in_one_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = Metastore::open(bucket(&dir)).expect("open");
    m.commit(published(1, 10)).expect("publish");
    m.commit(published(2, 20)).expect("publish");
    let before = m.state().version;
    assert_eq!(
        m.commit(vec![merge("m1", &["s1-10", "s2-20"])])
            .expect("merge"),
        before + 1
    );
    let reopened = Metastore::open(bucket(&dir)).expect("reopen");
    for m in [&m, &reopened] {
        assert_eq!(state_of(m, "m1"), "published");
        assert_eq!(state_of(m, "s1-10"), "retired");
        assert_eq!(state_of(m, "s2-20"), "retired");
    }
    assert_eq!(reopened.state(), m.state());
}

/// Of a merge and a retention (or two merges) taking one split, exactly
/// one wins, also when the loser had not read the winner's version.
#[test]
fn a_merge_whose_input_was_taken_meanwhile_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (
        Metastore::open(bucket(&dir)).expect("a"),
        Metastore::open(bucket(&dir)).expect("b"),
    );
    a.commit(published(1, 10)).expect("publish");
    a.commit(published(2, 20)).expect("publish");
    a.commit(published(3, 30)).expect("publish");
    // b read nothing of that yet: its merge is checked against what it
    // reads when its first try loses the version.
    b.commit(vec![Change::Forget { splits: vec![] }])
        .expect("b catches up");
    a.commit(vec![Change::Retire {
        splits: vec!["s2-20".into()],
        at_ns: 5,
        reason: "age".into(),
    }])
    .expect("retention");
    let version = a.state().version;
    let err = b
        .commit(vec![merge("m1", &["s1-10", "s2-20"])])
        .expect_err("refused");
    assert!(matches!(err, MetastoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("s2-20"), "{err}");
    assert_eq!(
        b.state().version,
        version,
        "b read a's retirement, wrote nothing"
    );
    assert_eq!(state_of(&b, "m1"), "none");
    assert_eq!(state_of(&b, "s1-10"), "published", "untouched");

    // Two merges of one input: the second is refused.
    a.commit(vec![merge("m2", &["s1-10", "s3-30"])])
        .expect("first merge");
    let err = b
        .commit(vec![merge("m3", &["s3-30"])])
        .expect_err("second refused");
    assert!(matches!(err, MetastoreError::Conflict { .. }), "{err}");
    let fresh = Metastore::open(bucket(&dir)).expect("reopen");
    assert_eq!(state_of(&fresh, "m2"), "published");
    assert_eq!(state_of(&fresh, "m3"), "none");
    assert_eq!(state_of(&fresh, "s3-30"), "retired");
}

/// A split's objects are deleted before it is forgotten: forgetting a
/// published one would mean its objects were deleted while readers need
/// them (a node acting on a stale state), so it is refused.
#[test]
fn forgetting_a_published_split_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let m = Metastore::open(bucket(&dir)).expect("open");
    m.commit(published(1, 10)).expect("publish");
    let err = m
        .commit(vec![Change::Forget {
            splits: vec!["s1-10".into()],
        }])
        .expect_err("refused");
    assert!(matches!(err, MetastoreError::Conflict { .. }), "{err}");
    assert_eq!(state_of(&m, "s1-10"), "published");
}

/// Source `instance` published in split `id` (its entry lists it).
fn published_with_entry(id: &str, instance: u32, end: u64) -> Change {
    Change::Publish {
        split: crate::metastore::SplitEntry {
            id: id.to_owned(),
            window_ns: 0,
            t_min: 0,
            t_max: 0,
            blocks: 1,
            files: vec![("blocks.dat".into(), 10)],
            bundled: false,
            sources: vec![crate::metastore::SplitSource {
                source: Arc::new(source(instance)),
                off_start: 0,
                off_end: end,
                lines: 1,
                bytes: end,
                t_max: 0,
            }],
            level: 0,
        },
        sources: vec![SourceAdvance {
            source: source(instance),
            published_end: end,
            gaps: Vec::new(),
            owner: None,
        }],
    }
}

/// [`published_with_entry`] under `owner`'s ownership.
fn published_under(id: &str, instance: u32, end: u64, owner: &Ownership) -> Change {
    let mut change = published_with_entry(id, instance, end);
    if let Change::Publish { sources, .. } = &mut change {
        sources[0].owner = Some(owner.clone());
    }
    change
}

#[test]
fn a_takeover_fences_the_old_owner_out() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (
        Metastore::open(bucket(&dir)).expect("a"),
        Metastore::open(bucket(&dir)).expect("b"),
    );
    let s = source(0);
    let taken = a
        .claim("node-a", std::slice::from_ref(&s))
        .expect("a claims");
    let a_owns = taken[0].owner.clone();
    assert_eq!(a_owns.epoch, 1);
    assert_eq!(taken[0].published_end, 0);
    a.commit(vec![published_under("a-1", 0, 100, &a_owns)])
        .expect("a publishes under its epoch");

    // b takes the source over: it reads a's versions on the way, so it
    // starts where a's published prefix ends, one epoch up.
    let taken = b
        .claim("node-b", std::slice::from_ref(&s))
        .expect("b claims");
    let b_owns = taken[0].owner.clone();
    assert_eq!((b_owns.node.as_str(), b_owns.epoch), ("node-b", 2));
    assert_eq!(taken[0].published_end, 100);
    b.commit(vec![published_under("b-1", 0, 250, &b_owns)])
        .expect("b publishes");

    // a, cut off meanwhile, comes back with lines it took under epoch 1:
    // refused, and nothing of it written.
    let err = a
        .commit(vec![published_under("a-2", 0, 180, &a_owns)])
        .expect_err("a is fenced out");
    let why = err.to_string();
    assert!(
        matches!(err, MetastoreError::Conflict { .. })
            && why.contains("owned by node node-b since epoch 2")
            && why.contains("node node-a's epoch 1"),
        "{why}"
    );
    assert!(a.split("a-2").is_none());
    assert_eq!(a.owner(s.id()), (Some(b_owns.clone()), 250));
    // A split published with no owner (a node alone) is not checked.
    a.commit(vec![published_with_entry("alone", 1, 10)])
        .expect("no ownership, no check");

    // a takes it back: epoch 3, from b's end; b is fenced out in turn.
    let taken = a
        .claim("node-a", std::slice::from_ref(&s))
        .expect("a again");
    assert_eq!(taken[0].owner.epoch, 3);
    assert_eq!(taken[0].published_end, 250);
    let err = b
        .commit(vec![published_under("b-2", 0, 300, &b_owns)])
        .expect_err("b is fenced out");
    assert!(err.to_string().contains("since epoch 3"), "{err}");
    // What a new process reads agrees.
    let c = Metastore::open(bucket(&dir)).expect("c");
    assert_eq!(
        c.owner(s.id()).0.map(|o| (o.node, o.epoch)),
        Some(("node-a".into(), 3))
    );
}

#[test]
fn of_two_nodes_taking_a_source_at_once_each_claim_gets_its_own_epoch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (
        Arc::new(Metastore::open(bucket(&dir)).expect("a")),
        Arc::new(Metastore::open(bucket(&dir)).expect("b")),
    );
    let s = source(0);
    // b's state is stale: its first try is at an epoch a reached first.
    let a_took = a.claim("node-a", std::slice::from_ref(&s)).expect("a");
    let b_took = b.claim("node-b", std::slice::from_ref(&s)).expect("b");
    assert_eq!(a_took[0].owner.epoch, 1);
    assert_eq!(
        b_took[0].owner.epoch, 2,
        "b read a's claim and went above it"
    );
    // Many at once from two threads: no epoch is given twice.
    const EACH: usize = 15;
    let threads: Vec<_> = [(a.clone(), "node-a"), (b.clone(), "node-b")]
        .into_iter()
        .map(|(m, node)| {
            let s = s.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|_| {
                        m.claim(node, std::slice::from_ref(&s)).expect("claim")[0]
                            .owner
                            .epoch
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut epochs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    epochs.sort_unstable();
    let before = epochs.len();
    epochs.dedup();
    assert_eq!(epochs.len(), before, "an epoch given twice: {epochs:?}");
    a.refresh().expect("refresh");
    assert_eq!(a.owner(s.id()).0.map(|o| o.epoch), epochs.last().copied());
}

/// Whether every split's sources are the very ones of the source records.
fn sources_shared(m: &Metastore) -> bool {
    let state = m.state();
    state.splits.values().all(|s| match s {
        SplitState::Published { entry } => entry
            .sources
            .iter()
            .all(|s| Arc::ptr_eq(&s.source, &state.sources[&s.source.id()].source)),
        _ => true,
    })
}

#[test]
fn splits_share_their_sources_and_checkpoints_are_compressed_but_old_ones_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let b = bucket(&dir);
    let m = Metastore::open(b.clone()).expect("open");
    for v in 1..=CHECKPOINT_EVERY + 3 {
        m.commit(vec![published_with_entry(
            &format!("s{v}"),
            (v % 3) as u32,
            v,
        )])
        .expect("commit");
    }
    assert!(sources_shared(&m), "as committed");
    let key = keys::checkpoint(CHECKPOINT_EVERY);
    let body = b.get(&key).expect("get").expect("checkpoint written");
    assert!(
        body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        "a checkpoint is zstd"
    );
    let again = Metastore::open(b.clone()).expect("reopen");
    assert_eq!(again.state(), m.state());
    assert!(sources_shared(&again), "read from a checkpoint");

    // A checkpoint as plain JSON, as cblogsd wrote before, is read too.
    let plain = tempfile::tempdir().expect("temp dir");
    let pb = bucket(&plain);
    let state = m.state();
    let json = serde_json::to_vec(&state).expect("json");
    assert!(pb
        .create(&keys::checkpoint(state.version), Bytes::from(json))
        .expect("put"));
    let old = Metastore::open(pb).expect("open a plain checkpoint");
    assert_eq!(old.state(), state);
    assert!(sources_shared(&old));
}

#[test]
fn a_follower_takes_up_the_versions_since_it_last_looked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = (
        Metastore::open(bucket(&dir)).expect("a"),
        Metastore::open(bucket(&dir)).expect("b"),
    );
    a.keep_recent();
    assert_eq!(a.changes_since(0).map(|v| v.len()), Some(0), "nothing yet");
    b.commit(published(0, 10)).expect("b");
    a.commit(published(1, 20)).expect("a, after reading b's");
    b.commit(published(2, 30)).expect("b");
    a.refresh().expect("refresh");
    let seen: Vec<(u64, bool)> = a
        .changes_since(0)
        .expect("all kept")
        .iter()
        .map(|v| (v.version, v.mine))
        .collect();
    assert_eq!(seen, [(1, false), (2, true), (3, false)]);
    assert_eq!(a.changes_since(2).map(|v| v.len()), Some(1));
    assert_eq!(a.changes_since(3).map(|v| v.len()), Some(0));
    // A process that kept nothing (or too little) says so.
    let c = Metastore::open(bucket(&dir)).expect("c");
    c.keep_recent();
    assert!(
        c.changes_since(0).is_none(),
        "versions 1-3 were read at open, not kept"
    );
    assert_eq!(c.changes_since(3).map(|v| v.len()), Some(0));
}
