//! The load run's code path, kept working: `cblogs-bench load --smoke`
//! (3 s at 1 MB/s, 4 tails of each kind, 2 searchers) must check every
//! tail, finish its searches and write its report. Latencies are not judged
//! here (a debug build on a shared machine); a tail that fell behind
//! silently or an unexpected error fails the run, and so this test.

use std::process::Command;

#[test]
fn load_smoke_run_checks_tails_and_searches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("load-report.json");
    let run = Command::new(env!("CARGO_BIN_EXE_cblogs-bench"))
        .args(["load", "--smoke", "--work"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run cblogs-bench load");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "cblogs-bench load failed:\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON report")).expect("JSON");
    let markdown = std::fs::read_to_string(out.with_extension("md")).expect("the Markdown report");
    assert_eq!(report["passed"], true, "{report}");
    let counts = &report["counts"];
    assert_eq!(counts["tails_fell_behind_silently"], 0, "{counts}");
    assert_eq!(counts["errors"], 0, "{counts}");
    assert!(
        counts["written_lines"].as_u64().unwrap_or(0) > 1000,
        "{counts}"
    );
    assert!(counts["searches"].as_u64().unwrap_or(0) > 0, "{counts}");
    // Every tail saw lines; the kinds of selector are all there.
    let tails = report["tails"].as_array().expect("tails");
    assert_eq!(tails.len(), 4);
    for t in tails {
        assert!(t["lines"].as_u64().unwrap_or(0) > 0, "{t}");
    }
    let figures = report["figures"].as_array().expect("figures");
    for id in [
        "load.write_rate",
        "load.ingest_rate",
        "load.tail_latency_p50",
        "load.tail_latency_p99",
        "load.search_latency_p50",
        "load.search_latency_p99",
        "load.memory.cblogsd",
    ] {
        let f = figures
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no figure {id} in {report}"));
        assert!(f["value"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
        assert!(
            markdown.contains(f["what"].as_str().unwrap_or("?")),
            "{markdown}"
        );
    }
}
