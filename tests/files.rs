//! Files outside sandboxes (issue 19, `[[files]]` in shipper.toml), end to
//! end: the real `cblogs-shipper` tails an agent's and a scheduler's own
//! logs, found by a glob, across logrotate's rotation (`x.log` renamed to
//! `x.log.1`, a new `x.log` written while the old one is still written
//! through its descriptor), a new file appearing, and a rotation while
//! the shipper is killed; the
//! real `cblogs tail` then shows every line once, in order, under the job
//! each entry names.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use cblogs_testkit::*;
use serde_json::Value;

fn append(path: &Path, lines: &[String]) {
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    for l in lines {
        writeln!(f, "{l}").expect("write");
    }
}

fn numbered(what: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{what} line {i:04}")).collect()
}

/// The texts `cblogs tail JOB` prints, and the fields of the first line.
fn shown(server: &Server, job: &str) -> Option<(Vec<String>, Value)> {
    let out = server.cli(&["tail", job, "-n", "10000", "--output", "json"]);
    if out.code != 0 {
        return None;
    }
    let lines: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let texts = lines
        .iter()
        .map(|l| l["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    Some((texts, lines.first().cloned().unwrap_or_default()))
}

fn wait_shown(server: &Server, job: &str, want: &[String]) -> Value {
    wait_until(
        &format!("{job}'s {} lines", want.len()),
        Duration::from_secs(60),
        || {
            let (texts, first) = shown(server, job)?;
            assert!(
                want.starts_with(&texts),
                "{job}: every line once, in order; shown {texts:?}"
            );
            (texts.len() == want.len()).then_some(first)
        },
    )
}

#[test]
fn files_outside_sandboxes_across_rotation_and_a_restart() {
    let stack = Stack::new(None);
    let logs = stack.dir.path().join("var-log");
    fs::create_dir_all(&logs).expect("mkdir");
    let live = logs.join("mesos-agent.log");
    let rotated = |n: u32| logs.join(format!("mesos-agent.log.{n}"));
    let mut agent = numbered("agent", 0..100);
    append(&live, &agent);
    fs::write(logs.join("unrelated.txt"), "not a log of ours\n").expect("write");
    let config = format!(
        "{SHIPPER_FAST}\n[[files]]\npath = \"{dir}/mesos-agent*.log\"\njob = \"mesos/prod/agent\"\nprocess = \"mesos-agent\"\n\n[[files]]\npath = \"{dir}/scheduler*.log\"\njob = \"aurora/prod/scheduler\"\nstream = \"stderr\"\n",
        dir = logs.display()
    );
    let mut shipper = stack.shipper_with_config(&config);
    let first = wait_shown(&stack.server, "mesos/prod/agent", &agent);
    assert_eq!(first["process"], "mesos-agent");
    assert_eq!(first["host"], SHIPPER_HOST);
    assert_eq!(first["stream"], "stdout");

    // logrotate's create mode: renamed, a new file made (and written by a
    // new writer), while the program writes on through its old descriptor
    // until it reopens. The rotated file is read until it is quiet.
    let mut old = fs::OpenOptions::new()
        .append(true)
        .open(&live)
        .expect("open");
    fs::rename(&live, rotated(1)).expect("rotate");
    let fresh = numbered("agent", 130..180);
    append(&live, &fresh);
    let late = numbered("agent", 100..130);
    for l in &late[..15] {
        writeln!(old, "{l}").expect("write");
    }
    // The shipper has seen the new file by now; more through the old one.
    let so_far = [agent.clone(), late[..15].to_vec()].concat();
    wait_shown(&stack.server, "mesos/prod/agent", &so_far);
    for l in &late[15..] {
        writeln!(old, "{l}").expect("write");
    }
    drop(old);
    agent.extend(late);
    agent.extend(fresh);
    // A file that appears later is found.
    let scheduler = numbered("scheduler", 0..40);
    append(&logs.join("scheduler.log"), &scheduler);
    wait_shown(&stack.server, "mesos/prod/agent", &agent);
    let first = wait_shown(&stack.server, "aurora/prod/scheduler", &scheduler);
    assert_eq!(first["stream"], "stderr");
    assert_eq!(first["process"], "scheduler.log");

    // Killed; meanwhile written, rotated again, written; started again.
    shipper.kill9();
    let before = numbered("agent", 180..220);
    append(&live, &before);
    agent.extend(before);
    fs::rename(rotated(1), rotated(2)).expect("rotate .1");
    fs::rename(&live, rotated(1)).expect("rotate");
    let after = numbered("agent", 220..260);
    append(&live, &after);
    agent.extend(after);
    shipper.restart();
    wait_shown(&stack.server, "mesos/prod/agent", &agent);
    wait_shown(&stack.server, "aurora/prod/scheduler", &scheduler);
    let jobs = stack.server.cli(&["jobs", "--output", "raw"]);
    assert_eq!(
        jobs.stdout.lines().collect::<Vec<_>>(),
        [
            "devcluster/aurora/prod/scheduler",
            "devcluster/mesos/prod/agent"
        ],
        "only the files the globs name"
    );
}
