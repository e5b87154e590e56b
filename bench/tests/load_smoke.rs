//! The load run's code path, kept working: `cblogs-bench load --smoke`
//! (3 s at 1 MB/s, 4 tails of each kind, 2 searchers) must check every
//! tail, finish its searches and write its report. Latencies are not judged
//! here (a debug build on a shared machine); a tail that fell behind
//! silently or an unexpected error fails the run, and so this test.

mod smoke_run;

#[test]
fn load_smoke_run_checks_tails_and_searches() {
    let smoke = smoke_run::run_smoke("load", "load-report.json");
    let (report, markdown) = (&smoke.json, &smoke.markdown);
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
    for id in [
        "load.write_rate",
        "load.ingest_rate",
        "load.tail_latency_p50",
        "load.tail_latency_p99",
        "load.search_latency_p50",
        "load.search_latency_p99",
        "load.memory.cblogsd",
    ] {
        let f = smoke.figure(id);
        assert!(f["value"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
        assert!(
            markdown.contains(f["what"].as_str().unwrap_or("?")),
            "{markdown}"
        );
    }
}
