//! The harness never rots: `cblogs-bench all --smoke` runs every
//! measurement on a tiny corpus (the built-in templates) and reports every
//! figure. The figures themselves are not judged here (they are not
//! meaningful at this size, in a debug build, on a shared machine). The
//! search rows compare `cblogs grep` with ripgrep, so this test needs `rg`
//! and fails naming it when it is missing; the object-store rows run
//! SeaweedFS (`weed`, which `scripts/test` installs).

mod smoke_run;

#[test]
fn smoke_run_produces_every_figure() {
    cblogs_testkit::require_tool(
        "rg",
        "the benchmark's smoke run (its search rows are timed against ripgrep)",
        "apt-get install ripgrep",
    );
    let smoke = smoke_run::run_smoke("all", "report.json");
    let (report, markdown) = (&smoke.json, &smoke.markdown);
    assert!(report["lines"].as_u64().unwrap_or(0) > 10_000, "{report}");
    let figure = |id: &str| smoke.figure(id);
    for id in [
        "ingest.server",
        "alerts.ingest",
        "storage.ratio",
        "memory.cblogsd",
        "tail.n100",
        "ingest.e2e",
        "tail.latency_p50",
        "tail.latency_p99",
        "memory.shipper",
        "objstore.ingest",
        "objstore.storage",
        "objstore.puts",
        "objstore.grep_warm",
        "objstore.grep_cold",
        "objstore.tail_cold",
    ] {
        let f = figure(id);
        let value = f["value"].as_f64().unwrap_or(0.0);
        assert!(value > 0.0, "{id} has no value: {f}");
        assert!(
            f["met"].is_boolean(),
            "{id} is not judged against its target: {f}"
        );
        assert!(
            markdown.contains(f["what"].as_str().unwrap_or("?")),
            "{markdown}"
        );
    }
    // Baselines measured in the same run.
    for id in [
        "ingest.server",
        "alerts.ingest",
        "storage.ratio",
        "memory.shipper",
        "objstore.ingest",
        "objstore.storage",
        "objstore.grep_warm",
    ] {
        let f = figure(id);
        assert!(f["baseline"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
        assert!(f["ratio"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
    }
    // The search rows: `cblogs grep` timed (and checked to print as many
    // lines as rg) against rg, on searches that find something.
    for id in [
        "search.rare_literal",
        "search.regex_literal",
        "search.regex_no_literal",
    ] {
        let f = figure(id);
        assert!(f["value"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
        assert!(f["baseline"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
        assert!(f["met"].is_boolean(), "{id}: {f}");
        let matched: u64 = f["baseline_what"]
            .as_str()
            .and_then(|w| w.strip_prefix("rg, "))
            .and_then(|w| w.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        assert!(matched > 0, "{id} compares an empty result: {f}");
    }
}
