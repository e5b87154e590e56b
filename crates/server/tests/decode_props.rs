//! Property tests of the ingest decoder (`ingest/decode.rs`):
//! generated valid requests, plain and zstd, decode to what was sent;
//! arbitrary bytes never panic and always give an error with a name.
//! (The `ingest_decode` fuzz target in `fuzz/` goes further.)

use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::{JobKey, Source, Stream};
use cblogs_server::testing::{decode_ingest, DecodeError, DecodeLimits};
use proptest::prelude::*;

const LIMITS: DecodeLimits = DecodeLimits {
    max_body_bytes: 1 << 20,
    max_lines: 1000,
};

fn source() -> impl Strategy<Value = Source> {
    (
        "[a-z0-9-]{1,10}",
        "[a-z0-9.-]{1,12}",
        "[a-z_-]{1,8}",
        prop_oneof![Just("prod"), Just("devel"), Just("test"), Just("staging2")],
        "[a-z0-9_-]{1,10}",
        any::<u32>(),
        "[a-z_]{1,10}",
        any::<u32>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(cluster, host, role, env, name, instance, process, run, stderr, with_cluster)| {
                let task_id =
                    format!("{role}-{env}-{name}-{instance}-5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11");
                let job = JobKey::new(with_cluster.then_some(cluster.as_str()), &role, env, &name);
                Source {
                    cluster,
                    host,
                    task_id,
                    job,
                    instance,
                    process,
                    run,
                    stream: if stderr {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    },
                }
            },
        )
}

/// A line's content: any text (control characters, quotes, non-ASCII),
/// or raw bytes that travel as base64 when they are not UTF-8.
fn content() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..40),
    ]
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        source(),
        0u64..1 << 40,
        prop::collection::vec(
            (1u64..200, 1i64..i64::MAX, content(), any::<(bool, bool)>()),
            1..8,
        ),
        0u64..5,
        any::<bool>(),
    )
        .prop_map(|(source, start, lines, tail, allow_gap)| {
            let mut offset = start;
            let lines: Vec<WireLine> = lines
                .into_iter()
                .map(|(gap, time_ns, bytes, (cut, partial))| {
                    let mut l = WireLine::from_bytes(offset, time_ns, &bytes);
                    (l.cut, l.partial) = (cut, partial);
                    offset += gap;
                    l
                })
                .collect();
            Batch {
                source,
                start,
                end: offset + tail,
                lines,
                allow_gap,
            }
        })
}

fn request() -> impl Strategy<Value = IngestRequest> {
    prop::collection::vec(batch(), 1..4).prop_map(|batches| IngestRequest { batches })
}

fn json(req: &IngestRequest) -> String {
    serde_json::to_string(req).unwrap()
}

/// Every error names what is wrong, in words.
fn named(e: &DecodeError) -> bool {
    let text = e.to_string();
    !text.is_empty()
        && matches!(
            e,
            DecodeError::TooLarge { .. }
                | DecodeError::TooManyLines { .. }
                | DecodeError::Encoding(_)
                | DecodeError::Zstd(_)
                | DecodeError::Json(_)
                | DecodeError::Invalid(_)
        )
}

proptest! {
    #[test]
    fn valid_requests_round_trip(req in request(), level in 1i32..6) {
        prop_assert!(req.validate().is_ok(), "{:?}", req.validate());
        let text = json(&req);
        let plain = decode_ingest(text.as_bytes(), None, LIMITS)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(json(&plain), text.clone());
        let packed = zstd::bulk::compress(text.as_bytes(), level).unwrap();
        let unpacked = decode_ingest(&packed, Some("zstd"), LIMITS)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(json(&unpacked), text.clone());
        // A streamed frame (no content size in its header) decodes the same.
        let mut streamed = Vec::new();
        {
            let mut enc = zstd::stream::write::Encoder::new(&mut streamed, level).unwrap();
            std::io::Write::write_all(&mut enc, text.as_bytes()).unwrap();
            enc.finish().unwrap();
        }
        let unpacked = decode_ingest(&streamed, Some(" ZSTD"), LIMITS)
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(json(&unpacked), text.clone());
        // The same bytes are refused, in words, past either limit.
        let lines: usize = req.batches.iter().map(|b| b.lines.len()).sum();
        let tight = DecodeLimits { max_body_bytes: text.len() - 1, max_lines: LIMITS.max_lines };
        let too_large = decode_ingest(&packed, Some("zstd"), tight);
        prop_assert!(
            matches!(too_large, Err(DecodeError::TooLarge { .. })),
            "{:?}",
            too_large.map(|_| ())
        );
        let few = DecodeLimits { max_body_bytes: LIMITS.max_body_bytes, max_lines: lines - 1 };
        let too_many = decode_ingest(text.as_bytes(), None, few);
        prop_assert!(
            matches!(too_many, Err(DecodeError::TooManyLines { .. })),
            "{:?}",
            too_many.map(|_| ())
        );
    }

    #[test]
    fn random_bytes_give_a_named_error(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        encoding in prop_oneof![Just(None), Just(Some("zstd")), Just(Some("identity")), Just(Some("gzip"))],
    ) {
        match decode_ingest(&bytes, encoding, LIMITS) {
            Ok(req) => prop_assert!(req.validate().is_ok()),
            Err(e) => prop_assert!(named(&e), "{e:?}"),
        }
        // The same bytes inside a valid zstd frame reach the JSON parser.
        let packed = zstd::bulk::compress(&bytes, 1).unwrap();
        match decode_ingest(&packed, Some("zstd"), LIMITS) {
            Ok(req) => prop_assert!(req.validate().is_ok()),
            Err(e) => prop_assert!(named(&e), "{e:?}"),
        }
    }

    #[test]
    fn a_broken_request_is_refused_with_its_place(req in request(), which in any::<prop::sample::Index>()) {
        // Make one line's offset repeat the previous one (or fall before
        // start): validation must name the batch.
        let mut req = req;
        let b = which.index(req.batches.len());
        let batch = &mut req.batches[b];
        let last = batch.lines.len() - 1;
        batch.lines[last].offset = if last == 0 { batch.end } else { batch.lines[last - 1].offset };
        match decode_ingest(json(&req).as_bytes(), None, LIMITS) {
            Err(DecodeError::Invalid(e)) => {
                prop_assert!(e.to_string().contains(&format!("batch {b}")), "{}", e)
            }
            other => prop_assert!(false, "expected a validation error, got {:?}", other.map(|_| ())),
        }
    }
}

/// Writes the seed corpus of the `ingest_decode` fuzz target (its first
/// byte picks the mode: 0 plain JSON, 1 a zstd body, 2 JSON the target
/// compresses itself). Run by hand:
/// `cargo test -p cblogs-server --test decode_props -- --ignored write_fuzz_seeds`
#[test]
#[ignore = "writes fuzz/corpus/ingest_decode"]
fn write_fuzz_seeds() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ingest_decode");
    std::fs::create_dir_all(&dir).unwrap();
    let source = |process: &str, stream| Source {
        cluster: "devcluster".into(),
        host: "agent1".into(),
        task_id: "www-data-prod-hello-0-7a3b5c2e-1d4f-4e6a-8b9c-0d1e2f3a4b5c".into(),
        job: "www-data/prod/hello".parse().unwrap(),
        instance: 0,
        process: process.into(),
        run: 0,
        stream,
    };
    let t = 1_764_032_523_000_000_000;
    let lines = |texts: &[&[u8]], start: u64| {
        let mut offset = start;
        texts
            .iter()
            .map(|b| {
                let l = WireLine::from_bytes(offset, t + offset as i64, b);
                offset += b.len() as u64 + 1;
                l
            })
            .collect::<Vec<_>>()
    };
    let hello = lines(
        &[
            b"Hello world!",
            b"listening on :8080\r",
            "caf\u{e9} \u{1F600}".as_bytes(),
        ],
        0,
    );
    let hello_end = hello.last().map_or(0, |l| l.offset + 4);
    let mut cut = lines(
        &[b"Traceback (most recent call last):", b"bad \xff\xfe utf8"],
        100,
    );
    cut[1].cut = true;
    cut[1].partial = true;
    let two = IngestRequest {
        batches: vec![
            Batch {
                source: source("hello_world", Stream::Stdout),
                start: 0,
                end: hello_end,
                lines: hello,
                allow_gap: false,
            },
            Batch {
                source: source("hello_world", Stream::Stderr),
                start: 90,
                end: 200,
                lines: cut,
                allow_gap: true,
            },
        ],
    };
    let one = IngestRequest {
        batches: vec![Batch {
            source: Source {
                job: "devcluster/cbe/devel/eightball_api".parse().unwrap(),
                ..source("eightball", Stream::Stdout)
            },
            start: 5,
            end: 6,
            lines: lines(&[b""], 5),
            allow_gap: false,
        }],
    };
    let mut seeds: Vec<Vec<u8>> = Vec::new();
    for req in [&two, &one] {
        let text = json(req);
        assert!(
            decode_ingest(text.as_bytes(), None, LIMITS).is_ok(),
            "{text}"
        );
        seeds.push([&[0u8][..], text.as_bytes()].concat());
        seeds.push(
            [
                &[1u8][..],
                &zstd::bulk::compress(text.as_bytes(), 3).unwrap(),
            ]
            .concat(),
        );
        seeds.push([&[2u8][..], text.as_bytes()].concat());
    }
    // Refused ones: lines out of order, and an empty batch list.
    let mut bad = two.clone();
    bad.batches[0].lines.swap(0, 1);
    seeds.push([&[0u8][..], json(&bad).as_bytes()].concat());
    seeds.push(b"\x00{\"batches\":[]}".to_vec());
    for (i, seed) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), seed).unwrap();
    }
}
