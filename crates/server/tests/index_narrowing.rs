//! The index only narrows: for any pattern, every block that holds a
//! matching line must be a candidate. Checked here on a real partition
//! (tantivy index and block file) of generated log lines and awkward ones, for a
//! list of hand-picked patterns and for hundreds of random substrings of
//! the lines themselves (fixed strings that start and end anywhere: in a
//! token, on a separator, in a long number, in a 40+ byte hash, in a
//! multi-byte character). It also checks that the index does narrow for
//! literals that are rare.

use std::sync::Arc;

use cblogs_core::pattern::{Pattern, PatternOptions};
use cblogs_core::{LineFlags, Source, Stream};
use cblogs_server::testing::{LineBlock, Need, Partition, PreparedBlock, SizedLru, TimeRange};
use cblogs_testkit::{sample, LogKind};

fn source() -> Arc<Source> {
    Arc::new(Source::example(
        "www-data/prod/hello",
        0,
        "hello",
        Stream::Stdout,
    ))
}

/// Generated log lines (a web server's errors, HDFS, sshd and logcat:
/// the test kit's samples, CRLF kept) and lines made to trip the planner.
fn lines() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for kind in [
        LogKind::WebServerErrors,
        LogKind::Hdfs,
        LogKind::Sshd,
        LogKind::Logcat,
    ] {
        out.extend(sample(kind).into_iter().take(600));
    }
    let special: Vec<Vec<u8>> = vec![
        b"Exception in thread \"worker-3\" java.lang.OutOfMemoryError: Java heap space".to_vec(),
        b"\tat com.example.svc.Handler.run(Handler.java:42)".to_vec(),
        b"user_id=42 req-7f3a-b2 path=/api/v1/items?id=1182736".to_vec(),
        b"sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 ok".to_vec(),
        "Connexion refusée: Straße ΟΔΟΣ 東京 naïve café"
            .as_bytes()
            .to_vec(),
        b"bad \xff\xfe utf8 Timeout\xc3 here".to_vec(),
        b"Traceback (most recent call last):".to_vec(),
        b"  File \"/app/main.py\", line 12, in <module>".to_vec(),
        b"ValueError: invalid literal for int() with base 10: 'abc'".to_vec(),
        b"K\xe2\x84\xaaELVIN sign and \xc4\xb0stanbul".to_vec(),
        b"2026-11-25T10:00:00Z id 20261125 size 123456789012 end\r".to_vec(),
    ];
    // The special lines go into a few blocks only, so narrowing can be seen.
    for (i, l) in special.into_iter().enumerate() {
        out.insert((i * 397) % out.len(), l);
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    part: Partition,
    blocks: Vec<LineBlock>,
}

/// One partition with the lines in blocks of 16.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let part = Arc::new(Partition::create(dir.path(), 0).expect("partition"));
    let src = source();
    let mut writer = part.writer(20_000_000).expect("writer");
    let mut blocks = Vec::new();
    let mut offset = 0u64;
    for (k, chunk) in lines().chunks(16).enumerate() {
        let mut b = LineBlock::new();
        for l in chunk {
            b.push(offset, 1_000 + k as i64, LineFlags::default(), l);
            offset += l.len() as u64 + 1;
        }
        let c = PreparedBlock::new(src.id(), &b, 3).expect("compress");
        writer.add_block(&src, c).expect("add");
        blocks.push(b);
    }
    writer.commit().expect("commit");
    drop(writer);
    let part = Arc::try_unwrap(part).unwrap_or_else(|_| panic!("the writer is gone"));
    Fixture {
        _dir: dir,
        part,
        blocks,
    }
}

/// (blocks with a match, candidates); panics if a block with a match is not a candidate.
fn check(f: &Fixture, options: PatternOptions) -> (usize, usize) {
    let pattern = Pattern::new(options.clone(), 10 << 20).expect("pattern compiles");
    let need = Need::of(&options.hir().expect("parses")).terms();
    let searcher = f.part.searcher();
    let wanted = [source().id()].into_iter().collect();
    let terms = SizedLru::new(1 << 20);
    let found = f
        .part
        .candidate_blocks(&searcher, &need, &wanted, TimeRange::default(), &terms)
        .expect("index readable");
    assert_eq!(found.len(), f.blocks.len());
    let (mut matching, mut candidates) = (0, 0);
    for sb in &found {
        let block = f.part.read_block(&sb.block).expect("block readable");
        let hit = block.lines().find(|l| pattern.is_match(l.bytes));
        candidates += usize::from(sb.candidate);
        if let Some(l) = hit {
            matching += 1;
            assert!(
                sb.candidate,
                "{options:?} matches {:?} but its block was ruled out by {need:?}",
                String::from_utf8_lossy(l.bytes)
            );
        }
    }
    (matching, candidates)
}

fn opts(pattern: &str, fixed: bool, ignore_case: bool, word: bool) -> PatternOptions {
    PatternOptions {
        pattern: pattern.into(),
        fixed,
        ignore_case,
        word,
    }
}

#[test]
fn hand_picked_patterns_never_lose_a_block() {
    let f = fixture();
    let patterns = [
        "OutOfMemoryError",
        "utOfMemo",
        "Exception in thread \"worker-\\d+\" java\\.lang\\.\\w+",
        "^\\tat com\\.example",
        "Handler.java:\\d+\\)$",
        "user_id",
        "req-7f3a",
        "7f3a-b2",
        "api/v1/items",
        "1182736",
        "118273",
        "82736",
        "12345678901",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "d659a2feaa0c55",
        "refusée",
        "Straße",
        "ΟΔΟΣ",
        "東京",
        "\\p{Greek}+",
        "\\p{Han}",
        "(?-u:\\xff\\xfe) utf8",
        "Timeout(?-u:\\xc3)",
        "Traceback \\(most",
        "line \\d+, in <module>",
        "end$",
        "end\\r$",
        "^2026-11-25T",
        "\\d{4}-\\d{2}-\\d{2}",
        "\\b[A-Z][a-z]+[A-Z]\\w+\\b",
        "ERROR|WARN",
        "(?i)timeout|refused",
        "colou?r",
        "gr[ae]y",
        "[Ee]xception",
        "KELVIN",
        "İstanbul",
        "x{0}session",
        "(session|Session) (opened|closed)",
        "Received disconnect from \\d+\\.\\d+",
        "blk_-?\\d+",
        "PacketResponder [0-9] for block",
        "zzz-no-such-thing-anywhere",
        "(?-u)Received\\sdisconnect",
        "(?-u)req[-.]7f3a",
        "(?-u:[Tt])imeout",
    ];
    let mut total_matching = 0;
    for p in patterns {
        for (ignore_case, word) in [(false, false), (true, false), (false, true)] {
            total_matching += check(&f, opts(p, false, ignore_case, word)).0;
        }
    }
    assert!(
        total_matching > 200,
        "the patterns do match: {total_matching}"
    );
}

#[test]
fn random_substrings_never_lose_a_block() {
    let f = fixture();
    let all: Vec<&[u8]> = f
        .blocks
        .iter()
        .flat_map(|b| b.lines().map(|l| l.bytes))
        .collect();
    // A small deterministic generator: the same cases on every run.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut checked = 0;
    while checked < 300 {
        let line = all[next(all.len())];
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        if chars.len() < 4 {
            continue;
        }
        let start = next(chars.len() - 3);
        let len = 3 + next(12.min(chars.len() - start - 2));
        let end = chars.get(start + len).map_or(text.len(), |c| c.0);
        let piece = &text[chars[start].0..end];
        let ignore_case = next(3) == 0;
        let (matching, _) = check(&f, opts(piece, true, ignore_case, false));
        assert!(matching > 0, "{piece:?} comes from a line, so it matches");
        checked += 1;
    }
}

#[test]
fn rare_literals_narrow_to_few_blocks() {
    let f = fixture();
    let total = f.blocks.len();
    for p in [
        "OutOfMemoryError",
        "utOfMemo",
        "d659a2feaa0c55",
        "Straße",
        "id=1182736",
        "Exception in thread \"worker-\\d+\"",
    ] {
        let (matching, candidates) = check(&f, opts(p, false, false, false));
        assert!(matching >= 1, "{p} matches");
        assert!(
            candidates <= 3,
            "{p}: {candidates} of {total} blocks are candidates"
        );
    }
    // A bare number may sit inside any longer number, which the index
    // holds by its first digits only; as a word it is a whole token.
    // `-i kkelvin` must find `K` + KELVIN SIGN + `ELVIN`, whose token
    // lowercases to `kkelvin`.
    for (p, ignore_case) in [("1182736", false), ("20261125", false), ("kkelvin", true)] {
        let (matching, candidates) = check(&f, opts(p, false, ignore_case, true));
        assert!(matching >= 1, "{p} matches");
        assert!(
            candidates <= 3,
            "{p}: {candidates} of {total} blocks are candidates"
        );
    }
}
