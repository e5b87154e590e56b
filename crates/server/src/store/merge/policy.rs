//! Which published splits to merge ([`plan`]): a pure function of the
//! splits' entries, the `[merge]` settings and the newest line time.
//!
//! Within one window of line time (`storage.partition_secs`), splits are
//! taken in time order, and only runs of splits next to each other in it
//! are merged: a quiet source's blocks can only be combined with the
//! blocks just before and after them in its stream, which are in the
//! splits just before and after. Like tantivy's log merge policy, splits
//! of one level (how many merges made them) are merged `merge_factor` at a
//! time into one of the next level, so each line is rewritten about
//! log(splits of a window) times, not once per merge. A settled window
//! (its newest line older than `settle_secs`) has every run of two or more
//! merged, whatever their level, and every split no merge made yet
//! rewritten at least once, alone if it must (and holds at least
//! `merge.block_bytes`): its blocks are still the
//! small ones of ingest, at `storage.zstd_level` (a 2 GiB run left one of
//! 256 MiB unmerged beside a small one: 0.171 of raw stored where merged
//! windows take 0.143). No merge makes a split over `max_split_bytes` or
//! reads more than [`MAX_MERGE_BLOCKS`] blocks.

use std::collections::BTreeMap;

use crate::config::MergeConfig;
use crate::metastore::SplitEntry;

/// A published split, as the merge policy (and the bucket's budget) sees
/// it: what its metastore entry says, without its sources.
#[derive(Debug, Clone)]
pub struct PublishedSplit {
    pub id: String,
    pub window_ns: i64,
    pub t_min: i64,
    pub t_max: i64,
    /// Bytes of its objects.
    pub bytes: u64,
    pub blocks: u64,
    pub level: u32,
}

impl PublishedSplit {
    pub fn of(entry: &SplitEntry) -> PublishedSplit {
        PublishedSplit {
            id: entry.id.clone(),
            window_ns: entry.window_ns,
            t_min: entry.t_min,
            t_max: entry.t_max,
            bytes: entry.bytes(),
            blocks: entry.blocks,
            level: entry.level,
        }
    }
}

/// The most blocks one merge reads: their list is held in memory (about
/// 90 bytes each, so at most about 90 MB).
pub const MAX_MERGE_BLOCKS: u64 = 1_000_000;

/// Splits to merge into one, in time order.
pub type MergeGroup = Vec<String>;

/// Every merge due now, oldest window first. `splits` are the published
/// splits not being merged; `now_ns` is the newest line time (the clock
/// that settles windows: a benchmark that posts a day of lines in minutes
/// settles them as a real day would).
pub fn plan(splits: &[&PublishedSplit], config: &MergeConfig, now_ns: i64) -> Vec<MergeGroup> {
    let mut windows: BTreeMap<i64, Vec<&PublishedSplit>> = BTreeMap::new();
    for s in splits {
        windows.entry(s.window_ns).or_default().push(s);
    }
    let mut groups = Vec::new();
    for (_, mut window) in windows {
        window.sort_by(|a, b| (a.t_min, a.t_max, &a.id).cmp(&(b.t_min, b.t_max, &b.id)));
        let newest = window.iter().map(|s| s.t_max).max().unwrap_or(i64::MIN);
        let settled = newest < now_ns.saturating_sub(config.settle_ns());
        // Runs of splits next to each other that may still be merged: a
        // full one ends a run.
        for run in window.split(|s| s.bytes >= config.max_split_bytes) {
            if settled {
                let all = take_groups(run, config, 1, usize::MAX);
                groups.extend(
                    all.into_iter()
                        .filter_map(|g| without_dominant_ends(g, run, config)),
                );
            } else {
                for level_run in run.chunk_by(|a, b| a.level == b.level) {
                    groups.extend(take_groups(
                        level_run,
                        config,
                        config.merge_factor,
                        config.merge_factor,
                    ));
                }
            }
        }
    }
    groups
}

/// `group` without the merged splits at its ends that are more than twice
/// the rest of it together, if two or more are left, or one that no merge
/// made yet and holds at least `merge.block_bytes` (a smaller one would
/// gain a few kilobytes): a settled window that still gets a small split now and then
/// (late lines) must not rewrite its big split each time. So a merge
/// makes each merged input's bytes part of a split at least 1.5 times as
/// big, and a line is rewritten only about log1.5 of its window's bytes
/// over its first split's, plus once for its first merge.
fn without_dominant_ends(
    group: MergeGroup,
    run: &[&PublishedSplit],
    config: &MergeConfig,
) -> Option<MergeGroup> {
    let split = |id: &String| run.iter().find(|s| &s.id == id);
    let bytes = |id: &String| split(id).map_or(0, |s| s.bytes);
    let merged = |id: &String| split(id).is_some_and(|s| s.level > 0);
    let mut group: std::collections::VecDeque<String> = group.into();
    let total = |g: &std::collections::VecDeque<String>| g.iter().map(bytes).sum::<u64>();
    loop {
        let sum = total(&group);
        let (Some(first), Some(last)) = (group.front(), group.back()) else {
            return None;
        };
        let dominant = |id: &String| merged(id) && bytes(id) > 2 * (sum - bytes(id));
        if dominant(first) {
            group.pop_front();
        } else if dominant(last) {
            group.pop_back();
        } else {
            break;
        }
    }
    let worth = match group.len() {
        0 => false,
        1 => group
            .front()
            .is_some_and(|id| !merged(id) && bytes(id) >= config.block_bytes as u64),
        _ => true,
    };
    worth.then(|| group.into())
}

/// Cuts `run` into groups of `min..=max` splits, each within the size and
/// block bounds; what is left over is not merged yet. A group the bounds
/// cut short is merged from two splits on: bigger splits (or splits of
/// many sources, each with its blocks) take fewer to fill one.
fn take_groups(
    run: &[&PublishedSplit],
    config: &MergeConfig,
    min: usize,
    max: usize,
) -> Vec<MergeGroup> {
    let mut groups = Vec::new();
    let mut group: Vec<&PublishedSplit> = Vec::new();
    let (mut bytes, mut blocks) = (0u64, 0u64);
    let close = |group: &mut Vec<&PublishedSplit>, groups: &mut Vec<MergeGroup>, full: bool| {
        if group.len() >= if full { min.min(2) } else { min } {
            groups.push(group.iter().map(|s| s.id.clone()).collect());
        }
        group.clear();
    };
    for s in run {
        let full = bytes + s.bytes > config.max_split_bytes || blocks + s.blocks > MAX_MERGE_BLOCKS;
        if full || group.len() == max {
            close(&mut group, &mut groups, full);
            bytes = 0;
            blocks = 0;
        }
        group.push(s);
        bytes += s.bytes;
        blocks += s.blocks;
    }
    close(&mut group, &mut groups, false);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    /// A split of window 0 holding minutes `from..to`, of `bytes` and `level`.
    fn split(id: &str, from: i64, to: i64, bytes: u64, level: u32) -> PublishedSplit {
        PublishedSplit {
            id: id.into(),
            window_ns: 0,
            t_min: from * MIN,
            t_max: to * MIN,
            bytes,
            blocks: 10,
            level,
        }
    }

    fn config(factor: usize) -> MergeConfig {
        MergeConfig {
            merge_factor: factor,
            max_split_bytes: 1000,
            block_bytes: 100,
            ..MergeConfig::default()
        }
    }

    fn ids(groups: &[MergeGroup]) -> Vec<Vec<&str>> {
        groups
            .iter()
            .map(|g| g.iter().map(String::as_str).collect())
            .collect()
    }

    #[test]
    fn splits_of_one_level_next_to_each_other_are_merged_factor_at_a_time() {
        let splits = [
            split("l1", 0, 50, 500, 1),
            split("a", 50, 55, 10, 0),
            split("b", 55, 60, 10, 0),
            split("c", 60, 65, 10, 0),
            split("d", 65, 70, 10, 0),
            split("e", 70, 75, 10, 0),
        ];
        let refs: Vec<&PublishedSplit> = splits.iter().rev().collect();
        let now = 80 * MIN;
        assert_eq!(ids(&plan(&refs, &config(2), now)), [["a", "b"], ["c", "d"]]);
        assert_eq!(ids(&plan(&refs, &config(3), now)), [["a", "b", "c"]]);
        assert!(
            plan(&refs, &config(6), now).is_empty(),
            "too few of level 0"
        );
    }

    /// Splits too big (or of too many blocks) for `merge_factor` of them
    /// to fit in one merge are merged as many as fit.
    #[test]
    fn a_group_the_bounds_cut_short_is_merged_from_two_on() {
        let mut splits: Vec<PublishedSplit> = (0..4)
            .map(|i| split(&format!("s{i}"), i * 5, i * 5 + 5, 400, 0))
            .collect();
        let refs: Vec<&PublishedSplit> = splits.iter().collect();
        // 1000 bytes at most: two of 400 fit, not three. The last two wait:
        // the next split may still fill their group.
        assert_eq!(ids(&plan(&refs, &config(3), 30 * MIN)), [["s0", "s1"]]);
        for s in &mut splits {
            s.bytes = 10;
            s.blocks = MAX_MERGE_BLOCKS / 2;
        }
        let refs: Vec<&PublishedSplit> = splits.iter().collect();
        assert_eq!(ids(&plan(&refs, &config(3), 30 * MIN)), [["s0", "s1"]]);
    }

    #[test]
    fn a_full_split_or_another_level_between_breaks_a_run() {
        let splits = [
            split("a", 0, 5, 10, 0),
            split("big", 5, 10, 1000, 0),
            split("b", 10, 15, 10, 0),
            split("l1", 15, 20, 10, 1),
            split("c", 20, 25, 10, 0),
        ];
        let refs: Vec<&PublishedSplit> = splits.iter().collect();
        assert!(plan(&refs, &config(2), 30 * MIN).is_empty());
    }

    #[test]
    fn a_settled_window_merges_every_run_whatever_its_level_within_the_bounds() {
        let splits = [
            split("l2", 0, 500, 300, 2),
            split("l1", 500, 550, 300, 1),
            split("a", 550, 555, 300, 0),
            split("b", 555, 560, 300, 0),
            split("full", 560, 565, 1000, 0),
            split("c", 565, 570, 10, 0),
        ];
        let refs: Vec<&PublishedSplit> = splits.iter().collect();
        let settle = config(10).settle_ns();
        let newest = 570 * MIN;
        assert!(plan(&refs, &config(10), newest + settle - 1).is_empty());
        // 1000 bytes at most: l2+l1+a, then b alone; c alone. Neither was
        // merged yet: b is rewritten alone, c is too small to be worth it
        // ("full" never is).
        assert_eq!(
            ids(&plan(&refs, &config(10), newest + settle + 1)),
            [vec!["l2", "l1", "a"], vec!["b"]]
        );
    }

    /// A settled window that gets a small split now and then does not
    /// rewrite its big merged one for each: only the small ones, once.
    #[test]
    fn a_settled_window_never_rewrites_a_big_split_for_a_small_one() {
        let splits = [
            split("old", 0, 500, 600, 3),
            split("late1", 500, 505, 10, 0),
            split("late2", 505, 510, 20, 0),
            split("late3", 510, 515, 40, 0),
        ];
        let refs: Vec<&PublishedSplit> = splits.iter().collect();
        let settled = 515 * MIN + config(10).settle_ns() + 1;
        assert_eq!(
            ids(&plan(&refs, &config(10), settled)),
            [["late1", "late2", "late3"]]
        );
        assert!(plan(&refs[..2], &config(10), settled).is_empty());
        let big_late = [
            split("old", 0, 500, 600, 3),
            split("late", 500, 505, 200, 0),
        ];
        let refs: Vec<&PublishedSplit> = big_late.iter().collect();
        assert_eq!(ids(&plan(&refs, &config(10), settled)), [["late"]]);
        let rewritten = [
            split("old", 0, 500, 600, 3),
            split("late", 500, 505, 200, 1),
        ];
        let refs: Vec<&PublishedSplit> = rewritten.iter().collect();
        assert!(plan(&refs, &config(10), settled).is_empty());
        // Once the late ones add up to half the old one, it is merged.
        let caught_up = [
            split("old", 0, 500, 600, 3),
            split("late", 500, 515, 300, 1),
        ];
        let refs: Vec<&PublishedSplit> = caught_up.iter().collect();
        assert_eq!(ids(&plan(&refs, &config(10), settled)), [["old", "late"]]);
    }

    /// A split no merge made keeps the small blocks of ingest at
    /// `storage.zstd_level`: once its window settles it is merged, with its
    /// neighbours however big it is, or alone.
    #[test]
    fn a_settled_window_rewrites_each_split_of_ingest_once() {
        let settled = |newest: i64| newest * MIN + config(10).settle_ns() + 1;
        let big_first = [split("big", 0, 50, 600, 0), split("small", 50, 55, 10, 0)];
        let refs: Vec<&PublishedSplit> = big_first.iter().collect();
        assert_eq!(
            ids(&plan(&refs, &config(10), settled(55))),
            [["big", "small"]]
        );
        let alone = [split("only", 0, 50, 600, 0)];
        let refs: Vec<&PublishedSplit> = alone.iter().collect();
        assert!(plan(&refs, &config(10), 50 * MIN).is_empty(), "not settled");
        assert_eq!(ids(&plan(&refs, &config(10), settled(50))), [["only"]]);
        let merged = [split("only", 0, 50, 600, 1)];
        let refs: Vec<&PublishedSplit> = merged.iter().collect();
        assert!(plan(&refs, &config(10), settled(50)).is_empty());
        let small = [split("small", 0, 50, 99, 0)];
        let refs: Vec<&PublishedSplit> = small.iter().collect();
        assert!(
            plan(&refs, &config(10), settled(50)).is_empty(),
            "smaller than a block"
        );
    }

    #[test]
    fn windows_are_planned_apart_oldest_first() {
        let mut late = [split("x", 0, 5, 10, 0), split("y", 5, 10, 10, 0)];
        for s in &mut late {
            s.window_ns = 1;
        }
        let early = [split("a", 0, 5, 10, 0), split("b", 5, 10, 10, 0)];
        let refs: Vec<&PublishedSplit> = late.iter().chain(early.iter()).collect();
        assert_eq!(
            ids(&plan(&refs, &config(2), 20 * MIN)),
            [["a", "b"], ["x", "y"]]
        );
        let mixed = [&late[0], &early[1]];
        assert!(plan(&mixed, &config(2), 20 * MIN).is_empty());
    }
}
