//! The quiet-cluster run's code path, kept working: `cblogs-bench quiet
//! --smoke` (50 sources, half an hour of line time and as much again) must
//! post every line, find the needle once, and report every figure. The
//! figures are not judged here (a debug build, too short a day to settle).

mod smoke_run;

#[test]
fn quiet_smoke_run_reports_every_figure() {
    let smoke = smoke_run::run_smoke("quiet", "quiet-report.json");
    for what in ["storage", "docs", "ingest", "rss", "grep", "tail"] {
        let id = format!("quiet.50.{what}");
        let f = smoke.figure(&id);
        assert!(f["value"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
        assert!(
            smoke.markdown.contains(f["what"].as_str().unwrap_or("?")),
            "{}",
            smoke.markdown
        );
    }
    let storage = smoke.figure("quiet.50.storage");
    assert!(
        storage["baseline"].as_f64().unwrap_or(0.0) > 0.0,
        "the zstd -3 baseline: {storage}"
    );
}
