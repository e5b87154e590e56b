//! `cblogsd` itself: the demo that the README's first command runs, and
//! start-up errors that must be one clear line.

use std::process::{Command, Stdio};
use std::time::Duration;

use cblogs_testkit::*;

#[test]
fn the_demo_writes_jobs_that_cblogs_can_tail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut child = Command::new(bin("cblogsd"))
        .args(["--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start cblogsd --demo");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let url = loop {
        let line = rx
            .recv_timeout(DEADLINE)
            .expect("cblogsd --demo prints its address");
        if let Some(url) = line.strip_prefix("cblogsd listening on ") {
            break url.to_owned();
        }
    };
    // It prints commands to try.
    let tour: Vec<String> = std::iter::from_fn(|| rx.recv_timeout(Duration::from_secs(5)).ok())
        .take_while(|l| !l.contains("CBLOGS_SERVER"))
        .collect();
    assert!(
        tour.iter()
            .any(|l| l.contains("cblogs tail www-data/prod/hello -f")),
        "{tour:?}"
    );

    let jobs = wait_until("three demo jobs", DEADLINE, || {
        let out = cli(&url, &["jobs", "--output", "raw"]);
        (out.lines().len() == 3).then(|| out.stdout.clone())
    });
    assert_eq!(
        jobs.lines().collect::<Vec<_>>(),
        [
            "devcluster/cbe/devel/eightball_api",
            "devcluster/payments/prod/ledger",
            "devcluster/www-data/prod/hello"
        ]
    );
    // Every command of the tour that reads works.
    let mut f = Follower::start(&url, &["tail", "www-data/prod/hello", "-f", "-n", "1"]);
    f.expect_line(" hello_world/", DEADLINE);
    // The demo keeps writing: new lines keep arriving.
    for _ in 0..3 {
        let line = f.next_line(DEADLINE);
        assert!(line.contains(" hello_world/"), "{line}");
    }
    // The instance writes a line every few hundred milliseconds, after its
    // fetch_package process's two: wait until it has three.
    let out = wait_until("three lines of payments/prod/ledger/1", DEADLINE, || {
        let out = cli(
            &url,
            &[
                "tail",
                "payments/prod/ledger/1",
                "-n",
                "3",
                "--output",
                "json",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        (out.lines().len() == 3).then_some(out)
    });
    // The lines came through a real shipper, out of a sandbox laid out as on
    // a Mesos agent: each one is in its process's stdout file.
    let view: cblogs_core::LineView = serde_json::from_str(out.lines()[2]).expect("a LineView");
    assert_eq!(view.host, "demo-agent-1");
    let sandbox_file = dir
        .path()
        .join("data/demo-agent/slaves/20261125-090000-16842879-5050-7450-S0/frameworks")
        .join("20261125-085959-16842879-5050-7450-0000/executors")
        .join(format!("thermos-{}", view.task_id))
        .join("runs/latest/sandbox/.logs")
        .join(&view.process)
        .join(view.run.to_string())
        .join(view.stream.as_str());
    let written = std::fs::read(&sandbox_file).expect("the demo's sandbox file");
    let at = usize::try_from(view.offset).expect("offset fits");
    assert_eq!(
        written.get(at..at + view.text.len() + 1),
        Some(format!("{}\n", view.text).as_bytes()),
        "{} does not hold {:?} at offset {}",
        sandbox_file.display(),
        view.text,
        view.offset
    );
    // SIGTERM stops the demo and the service cleanly.
    // SAFETY: kill(2) with a pid we own and a valid signal number.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let status = wait_until("cblogsd --demo to exit", DEADLINE, || {
        child.try_wait().expect("wait")
    });
    assert!(status.success(), "{status}");
}

fn start_fails(args: &[&str]) -> String {
    let out = Command::new(bin("cblogsd"))
        .args(args)
        .output()
        .expect("run cblogsd");
    assert!(!out.status.success(), "cblogsd {args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.stdout.is_empty(),
        "nothing on stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

#[test]
fn start_up_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[storage]\nblock_bytez = 10\n").expect("write");
    let err = start_fails(&["--config", bad.to_str().expect("path"), "--data-dir", data]);
    assert!(
        err.contains("block_bytez") && err.contains("bad.toml"),
        "{err}"
    );

    std::fs::write(&bad, "[storage]\nzstd_level = 99\n").expect("write");
    let err = start_fails(&["--config", bad.to_str().expect("path"), "--data-dir", data]);
    assert!(
        err.contains("storage.zstd_level must be between 1 and 22"),
        "{err}"
    );

    let err = start_fails(&["--config", "/nonexistent/cblogsd.toml"]);
    assert!(
        err.contains("cannot read config file /nonexistent/cblogsd.toml"),
        "{err}"
    );

    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let err = start_fails(&["--listen", &addr, "--data-dir", data]);
    assert!(
        err.starts_with(&format!("cblogsd: cannot listen on {addr}")),
        "{err}"
    );

    // A data dir that cannot be created.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("write");
    let err = start_fails(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        file.join("sub").to_str().expect("path"),
    ]);
    assert!(err.contains("cannot open the data dir"), "{err}");
}
