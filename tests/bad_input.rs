//! Bad input gets a clear 4xx naming the problem (or, for a giant line, a
//! cut line), and the service keeps serving and keeps what it accepted.

use cblogs_core::Stream;
use cblogs_testkit::*;

#[test]
fn bad_bodies_get_clear_errors_and_nothing_is_lost() {
    let (_dir, server) = Server::in_temp_dir(None);
    let mut f = SourceFile::of("devcluster/www-data/prod/hello", 0, "hello", Stream::Stdout);
    server.post_ok(&request(vec![f.batch(&["good before"])]));
    let good = serde_json::to_value(request(vec![f.batch(&["never stored"])])).expect("json");

    // The good request with one value replaced (a JSON Pointer names it).
    let with = |pointer: &str, value: serde_json::Value| {
        let mut v = good.clone();
        *v.pointer_mut(pointer)
            .expect("pointer into the good request") = value;
        serde_json::to_vec(&v).expect("json")
    };
    // (what, body, Content-Encoding, expected status, words the error must hold)
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            b"{\"batches\": [".to_vec(),
            None,
            400,
            "malformed ingest body",
        ),
        (
            "not JSON at all",
            b"hello".to_vec(),
            None,
            400,
            "malformed ingest body",
        ),
        (
            "bad zstd",
            b"definitely not zstd".to_vec(),
            Some("zstd"),
            400,
            "not valid zstd",
        ),
        (
            "unknown encoding",
            b"{}".to_vec(),
            Some("br"),
            415,
            "Content-Encoding 'br'",
        ),
        (
            "instance of the wrong type",
            with("/batches/0/source/instance", "three".into()),
            None,
            400,
            "invalid type: string \"three\", expected u32",
        ),
        (
            "offset of the wrong type",
            with("/batches/0/lines/0/offset", "x".into()),
            None,
            400,
            "invalid type: string \"x\"",
        ),
        (
            "stream unknown",
            with("/batches/0/source/stream", "stdlog".into()),
            None,
            400,
            "unknown variant `stdlog`",
        ),
        (
            "empty batches",
            br#"{"batches": []}"#.to_vec(),
            None,
            400,
            "holds no batches",
        ),
        (
            "batch with no lines",
            with("/batches/0/lines", serde_json::json!([])),
            None,
            400,
            "batch 0: holds no lines",
        ),
        (
            "empty host",
            with("/batches/0/source/host", "".into()),
            None,
            400,
            "'host' must not be empty",
        ),
        (
            "bad job key",
            with("/batches/0/source/job", "hello".into()),
            None,
            400,
            "job key 'hello'",
        ),
        (
            "bad base64",
            with(
                "/batches/0/lines/0",
                serde_json::json!({"offset": 12, "time_ns": 1, "b64": "%%"}),
            ),
            None,
            400,
            "not valid base64",
        ),
    ];
    for (what, body, encoding, status, needle) in cases {
        let (got, resp) = server.post_raw(body, encoding);
        assert_eq!(got, status, "{what}: {resp}");
        let msg = resp["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "{what}: error {msg:?} should mention {needle:?}"
        );
    }

    // A body over the limit: 413, naming the limit.
    let (status, resp) = server.post_raw(vec![b' '; 33 * 1024 * 1024], None);
    assert_eq!(status, 413);
    assert!(
        resp["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ingest.max_body_bytes"),
        "{resp}"
    );

    // A 10 MiB line is stored cut at 1 MiB and marked; a non-UTF-8 line is
    // kept and shown lossy; a line without a newline yet is marked partial.
    let giant = vec![b'x'; 10 << 20];
    let mut batch = f.batch(&[&giant[..], b"bad \xff\xfe bytes", b"no newline yet"]);
    batch.lines[2].partial = true;
    // The refused batch's bytes never arrived: this one would leave a hole.
    let (status, resp) = server.post(&request(vec![batch.clone()]), true);
    assert_eq!(status, 409, "{resp}");
    assert_eq!(resp["held_end"].as_u64(), Some(12), "{resp}");
    assert!(
        resp["error"]
            .as_str()
            .unwrap_or_default()
            .contains("allow_gap"),
        "{resp}"
    );
    // A sender that gives up on those bytes says so.
    batch.allow_gap = true;
    let (status, resp) = server.post(&request(vec![batch]), true);
    assert_eq!(status, 200, "{resp}");
    assert_eq!(
        (resp["accepted"].as_u64(), resp["cut"].as_u64()),
        (Some(3), Some(1))
    );

    let lines = server.all_lines("hello");
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(texts.len(), 4, "only the good lines are stored");
    assert_eq!(texts[0], "good before");
    assert_eq!(texts[1].len(), 1 << 20);
    assert!(lines[1].flags.cut && !lines[0].flags.cut);
    assert_eq!(texts[2], "bad \u{fffd}\u{fffd} bytes");
    assert!(lines[3].flags.partial);
    let out = server.cli(&["tail", "hello", "-n", "2"]);
    assert!(
        out.stdout.contains("0 hello/stdout │ bad"),
        "{}",
        out.stdout
    );

    // Still serving everyone after all of that.
    server.post_ok(&request(vec![f.batch(&["good after"])]));
    assert_eq!(
        server
            .cli(&["tail", "hello", "-n", "1", "--output", "raw"])
            .lines(),
        ["good after"]
    );
    // And a cut line in pretty output says so.
    let out = server.cli(&["tail", "hello", "-n", "5"]);
    assert!(
        out.lines().iter().any(|l| l.ends_with(" [cut]")),
        "cut marker"
    );
}
