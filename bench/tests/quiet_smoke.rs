//! The quiet-cluster run's code path, kept working: `cblogs-bench quiet
//! --smoke` (50 sources, half an hour of line time and as much again) must
//! post every line, find the needle once, and report every figure. The
//! figures are not judged here (a debug build, too short a day to settle).
//! The scaling curve's run (`scale --smoke`) is kept working here too.

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

/// `cblogs-bench quiet-shipper --smoke` (40 files, a line a second each):
/// every line must arrive, and both the shipper's and tail -F's figures
/// are reported.
#[test]
fn quiet_shipper_smoke_run_reports_every_figure() {
    let smoke = smoke_run::run_smoke("quiet-shipper", "quiet-shipper-report.json");
    // Two seconds of 40 lines a second may take less than a clock tick of
    // CPU: only that the figure is there is checked.
    let cpu = smoke.figure("quiet_shipper.40.cpu");
    assert!(cpu["value"].as_f64().is_some(), "{cpu}");
    assert!(cpu["baseline"].as_f64().is_some(), "tail -F's CPU: {cpu}");
    let rss = smoke.figure("quiet_shipper.40.rss");
    assert!(rss["value"].as_f64().unwrap_or(0.0) > 0.0, "{rss}");
    assert!(
        rss["baseline"].as_f64().unwrap_or(0.0) > 0.0,
        "tail -F's peak RSS: {rss}"
    );
}

/// `cblogs-bench scale --smoke` (one 4 MiB size): the needle planted in the
/// corpus is found once, the merges after the clock's line end, cblogsd
/// starts again on the store, and every figure is reported.
#[test]
fn scale_smoke_run_reports_every_figure() {
    let smoke = smoke_run::run_smoke("scale", "scale-report.json");
    // Inside cblogsd, a 4 MiB store's needle may take under a millisecond.
    let inside = smoke.figure("scale.4MiB.needle_inside");
    assert!(inside["value"].as_f64().is_some(), "{inside}");
    for what in ["ingest", "storage", "needle", "dense", "tail", "startup"] {
        let id = format!("scale.4MiB.{what}");
        let f = smoke.figure(&id);
        assert!(f["value"].as_f64().unwrap_or(0.0) > 0.0, "{id}: {f}");
    }
    let storage = smoke.figure("scale.4MiB.storage");
    assert!(
        storage["baseline"].as_f64().unwrap_or(0.0) > 0.0,
        "the zstd -3 baseline: {storage}"
    );
    let needle = smoke.figure("scale.4MiB.needle");
    assert!(
        needle["baseline"].as_f64().unwrap_or(0.0) > 0.0,
        "rg's time: {needle}"
    );
}
