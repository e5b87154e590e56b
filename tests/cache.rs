//! The disk cache of published splits' indexes (`cache.max_bytes`, issue
//! 16) on a real S3-compatible store, SeaweedFS on loopback ports: with a
//! budget of two indexes, five splits stay searchable (every answer
//! right), the least recently used indexes are evicted and downloaded
//! again when needed, and `GET /api/v1/storage` and `/metrics` count it
//! all, the cache never over its budget. On the embedded default store
//! nothing is cached.

use std::path::Path;

use cblogs_core::time::now_ns;
use cblogs_core::Stream;
use cblogs_testkit::*;

const JOB: &str = "www-data/prod/cache";
/// One split per day (`storage.partition_secs`): days 0 to 4 ago.
const DAYS: u32 = 5;
const LINES: usize = 30;

fn lines(tag: &str) -> Vec<String> {
    numbered_lines(tag, LINES)
}

fn tag(day: u32) -> String {
    format!("day{day}")
}

/// Each day's lines from a source of its own, timed `day` days ago: one
/// split per day.
fn post_days(server: &Server) {
    let batches = (0..DAYS)
        .map(|day| {
            let mut f = SourceFile::of(&format!("devcluster/{JOB}"), day, "web", Stream::Stdout);
            let t0 = now_ns() - i64::from(day) * 86_400_000_000_000;
            let timed: Vec<(i64, String)> = lines(&tag(day))
                .into_iter()
                .enumerate()
                .map(|(i, l)| (t0 + i as i64, l))
                .collect();
            f.batch_at(&timed)
        })
        .collect();
    server.post_ok(&request(batches));
}

/// Bytes of the files under `dir`, at any depth.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn cache_stat(s: &serde_json::Value, name: &str) -> u64 {
    s["cache"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("cache.{name} in {s}"))
}

#[test]
fn a_cache_of_two_indexes_serves_five_splits_within_its_budget() {
    let weed = Seaweed::start();
    let store = weed.config("cache");
    let config = |max: u64| {
        format!("[storage]\ncommit_interval_ms = 100\n[cache]\nmax_bytes = {max}\n{store}")
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // First with room for every index: each split this node publishes
    // keeps its index in the cache (moved there, never downloaded).
    let mut server = Server::start(&data, Some(&config(1 << 30)));
    post_days(&server);
    server.flush();
    let s = server.storage();
    let splits = s["splits"].as_array().expect("splits");
    assert_eq!(splits.len(), DAYS as usize, "{s}");
    assert!(splits.iter().all(|x| x["state"] == "published"), "{s}");
    // An index in the cache is its split's index.bundle in the bucket.
    let bundles: Vec<u64> = weed
        .objects("cache/splits/")
        .into_iter()
        .filter(|(k, _)| k.ends_with("/index.bundle"))
        .map(|(_, size)| size)
        .collect();
    assert_eq!(bundles.len(), DAYS as usize, "{bundles:?}");
    let cache_dir = data.join("cache");
    assert_eq!(cache_stat(&s, "bytes"), bundles.iter().sum::<u64>(), "{s}");
    assert_eq!(disk_bytes(&cache_dir), cache_stat(&s, "bytes"));
    assert_eq!(cache_stat(&s, "splits"), u64::from(DAYS), "{s}");
    assert_eq!(cache_stat(&s, "misses"), 0, "{s}");
    assert_eq!(cache_stat(&s, "evictions"), 0, "{s}");

    // Then a budget that holds any two indexes and never three.
    let (small, large) = (
        *bundles.iter().min().expect("bundles"),
        *bundles.iter().max().expect("bundles"),
    );
    assert!(
        large * 2 < small * 3,
        "indexes of similar size: {bundles:?}"
    );
    let max = large + small + small / 2;
    server.stop();
    std::fs::write(data.with_extension("toml"), config(max)).expect("config");
    server.restart();
    // At start the cache is trimmed to the budget.
    let s = server.storage();
    assert_eq!(cache_stat(&s, "max_bytes"), max, "{s}");
    assert_eq!(cache_stat(&s, "splits"), 2, "{s}");
    assert_eq!(cache_stat(&s, "evictions"), u64::from(DAYS) - 2, "{s}");
    assert!(cache_stat(&s, "bytes") <= max, "{s}");
    assert_eq!(disk_bytes(&cache_dir), cache_stat(&s, "bytes"));

    // Every split stays searchable: each grep reads all five indexes,
    // downloading those evicted (and evicting others for them).
    for day in 0..DAYS {
        let want = &lines(&tag(day))[7];
        let out = server.cli(&["grep", &format!("^{} 0007 ", tag(day)), "--output", "raw"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.lines(), [want.as_str()], "day {day}");
        let s = server.storage();
        assert!(cache_stat(&s, "bytes") <= max, "{s}");
        assert_eq!(disk_bytes(&cache_dir), cache_stat(&s, "bytes"), "{s}");
    }
    let out = server.cli(&["grep", "GET /api/items/", "--output", "raw", "--limit", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut got = out.lines();
    got.sort();
    let mut want: Vec<String> = (0..DAYS).flat_map(|d| lines(&tag(d))).collect();
    want.sort();
    assert_eq!(got, want, "every line of every split, once");

    let s = server.storage();
    let misses = cache_stat(&s, "misses");
    assert!(misses >= 3, "the three evicted at start came back: {s}");
    // The cache was full from the start: each download evicted one.
    assert_eq!(cache_stat(&s, "evictions"), 3 + misses, "{s}");
    assert_eq!(cache_stat(&s, "splits"), 2, "{s}");
    assert!(cache_stat(&s, "peak_bytes") <= max, "never over: {s}");

    // `tail` reads the newest split only; the second time it is a hit.
    let tail = |server: &Server| {
        let out = server.cli(&["tail", JOB, "-n", "3", "--output", "raw"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.lines(), lines(&tag(0))[LINES - 3..], "the newest lines");
    };
    tail(&server);
    let hits = cache_stat(&server.storage(), "hits");
    tail(&server);
    let s = server.storage();
    assert_eq!(cache_stat(&s, "hits"), hits + 1, "{s}");
    let rate = s["cache"]["hit_rate"].as_f64().expect("hit_rate");
    let (h, m) = (
        cache_stat(&s, "hits") as f64,
        cache_stat(&s, "misses") as f64,
    );
    assert!((rate - h / (h + m)).abs() < 1e-9, "{s}");

    // /metrics says the same (counted since this start).
    for (series, name) in [
        ("cblogs_cache_bytes", "bytes"),
        ("cblogs_cache_max_bytes", "max_bytes"),
        ("cblogs_cache_hits_total", "hits"),
        ("cblogs_cache_misses_total", "misses"),
        ("cblogs_cache_evictions_total", "evictions"),
    ] {
        assert_eq!(
            server.metric(series),
            Some(cache_stat(&s, name) as f64),
            "{series} vs {s}"
        );
    }
}

#[test]
fn on_the_embedded_default_store_nothing_is_cached() {
    let (dir, server) = Server::in_temp_dir(Some("[cache]\nmax_bytes = 1\n"));
    post_days(&server);
    server.flush();
    let out = server.cli(&["grep", "^day3 0007 ", "--output", "raw"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.lines(), [lines(&tag(3))[7].as_str()]);
    let s = server.storage();
    assert_eq!(cache_stat(&s, "max_bytes"), 1, "{s}");
    for name in ["bytes", "splits", "hits", "misses", "evictions"] {
        assert_eq!(cache_stat(&s, name), 0, "{name}: {s}");
    }
    assert_eq!(disk_bytes(&dir.path().join("data").join("cache")), 0);
}

/// Blocks fetched by ranged GET are kept in the cache too: a search
/// read again (with no memory cache in front) makes no GET.
#[test]
fn blocks_read_from_the_store_are_kept_in_the_cache() {
    let weed = Seaweed::start();
    let config = format!(
        "[storage]\ncommit_interval_ms = 100\n[search]\nblock_cache_bytes = 0\n{}",
        weed.config("blocks")
    );
    let (dir, mut server) = Server::in_temp_dir(Some(&config));
    post_days(&server);
    server.flush();
    let gets = |server: &Server| {
        server
            .metric("cblogs_object_store_requests_total{kind=\"get\"}")
            .unwrap_or(0.0)
    };
    let grep = |server: &Server| {
        let out = server.cli(&["grep", "GET /api/items/", "--output", "raw", "--limit", "0"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(out.lines().len(), LINES * DAYS as usize);
    };
    let before = gets(&server);
    grep(&server);
    let first = server.storage();
    let fetched = cache_stat(&first, "block_misses");
    assert!(fetched >= u64::from(DAYS), "a block of each split: {first}");
    assert_eq!(gets(&server), before + fetched as f64, "one GET per block");
    assert_eq!(cache_stat(&first, "blocks"), fetched, "{first}");
    let on_disk = disk_bytes(&dir.path().join("data").join("cache").join("blocks"));
    assert_eq!(on_disk, cache_stat(&first, "block_bytes"), "{first}");

    grep(&server);
    let second = server.storage();
    assert_eq!(cache_stat(&second, "block_misses"), fetched, "{second}");
    assert!(cache_stat(&second, "block_hits") >= fetched, "{second}");
    assert_eq!(
        gets(&server),
        before + fetched as f64,
        "no GET the second time"
    );

    // They start empty at the next start.
    server.stop();
    server.restart();
    assert_eq!(cache_stat(&server.storage(), "blocks"), 0);
    assert_eq!(
        disk_bytes(&dir.path().join("data").join("cache").join("blocks")),
        0
    );
    grep(&server);
}
