//! Task ids and the sandbox names the shipper walks by.
//!
//! `cblogs_core::TaskId::parse`, `cblogs_core::sandbox::{executor_task_id,
//! run_number, log_file}`, and the shipper's pure name functions
//! (`mapping::JobMapper::map` with no rule and with a rule, as configured,
//! and `discovery::is_interesting`) on any string. The shipper has no pure
//! function from a whole path to a source: its walk reads the tree level by
//! level with these name functions, so the input is also split at `/` and
//! each part run through them.

#![no_main]

use std::sync::OnceLock;

use cblogs_core::sandbox::{executor_task_id, log_file, rotated_name, run_number};
use cblogs_core::{JobKey, Stream, TaskId};
use cblogs_shipper::config::JobRule;
use cblogs_shipper::discovery::is_interesting;
use cblogs_shipper::mapping::JobMapper;
use libfuzzer_sys::fuzz_target;

fn mappers() -> &'static (JobMapper, JobMapper) {
    static M: OnceLock<(JobMapper, JobMapper)> = OnceLock::new();
    M.get_or_init(|| {
        let plain = JobMapper::new(&[]).expect("no rules");
        let ruled = JobMapper::new(&[JobRule {
            task_id: r"^(?P<role>ops-test)-(?P<env>[a-z0-9]+)-(?P<name>[\w-]+)-(?P<instance>\d+)-[0-9a-f-]{36}$"
                .into(),
        }])
        .expect("a valid rule");
        (plain, ruled)
    })
}

fn check_task_id(s: &str) {
    let (plain, ruled) = mappers();
    let mapped = plain.map(s);
    let Ok(t) = TaskId::parse(s) else {
        assert!(
            mapped.is_err(),
            "the mapper took what TaskId refused: {s:?}"
        );
        return;
    };
    // Display and as_str give back what was parsed.
    assert_eq!(t.to_string(), s);
    assert_eq!(t.as_str(), s);
    // The job key is one the server accepts: it goes on the wire as text.
    let key = t.job_key();
    let text = key.to_string();
    let back: JobKey = text.parse().unwrap_or_else(|e| {
        panic!("task id {s:?} gives job key {text:?} that does not parse: {e}")
    });
    assert_eq!(back, key);
    // The parts, formatted again, split the same way.
    let formatted = match t.created_ms {
        Some(ms) => format!(
            "{ms}-{}-{}-{}-{}-{}",
            t.role, t.env, t.name, t.instance, t.uuid
        ),
        None => format!("{}-{}-{}-{}-{}", t.role, t.env, t.name, t.instance, t.uuid),
    };
    let again = TaskId::parse(&formatted)
        .unwrap_or_else(|e| panic!("{s:?} re-formatted as {formatted:?} does not parse: {e}"));
    assert_eq!(
        (
            again.created_ms,
            &again.role,
            &again.env,
            &again.name,
            again.instance,
            &again.uuid
        ),
        (t.created_ms, &t.role, &t.env, &t.name, t.instance, &t.uuid),
        "{s:?} re-formatted as {formatted:?}"
    );
    // The shipper's standard split is TaskId's.
    let m = mapped.expect("the mapper refused a valid task id");
    assert_eq!((m.job, m.instance), (key, t.instance));
    // A configured rule may decide differently; it must not panic.
    let _ = ruled.map(s);
}

fn check_names(s: &str) {
    if let Some(id) = executor_task_id(s) {
        assert!(!id.is_empty());
        assert_eq!(format!("thermos-{id}"), s);
    }
    if let Some(n) = run_number(s) {
        // One folder name per run: `7`, never also `07`.
        assert_eq!(n.to_string(), s, "run folder {s:?} read as run {n}");
    }
    if let Some((stream, n)) = log_file(s) {
        assert_ne!(n, Some(0));
        // One file name per rotation: `stdout.1`, never also `stdout.01`.
        assert_eq!(rotated_name(stream, n.unwrap_or(0)), s, "log file {s:?}");
        assert!(is_interesting(s), "a log file {s:?} must wake a rescan");
    }
    let _ = is_interesting(s);
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    check_task_id(&s);
    check_names(&s);
    if let Some(id) = executor_task_id(&s) {
        check_task_id(id);
    }
    for part in s.split('/') {
        check_names(part);
        if let Some(id) = executor_task_id(part) {
            check_task_id(id);
        }
    }
    // The inverse direction: every rotation name is read back.
    for stream in [Stream::Stdout, Stream::Stderr] {
        let n = data
            .iter()
            .fold(0u32, |n, &b| n.wrapping_mul(31).wrapping_add(u32::from(b)));
        assert_eq!(
            log_file(&rotated_name(stream, n)),
            Some((stream, (n > 0).then_some(n)))
        );
    }
});
