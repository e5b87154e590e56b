//! Tests that need root for one thing — mounting a small tmpfs to fill it —
//! without needing the whole test run to be root. As root, such a test
//! goes ahead. Otherwise it runs itself again (the same test binary, that
//! one test) under `unshare -rm`: a new user namespace, where it is root
//! of its own mount namespace, so the mount works and every process it
//! starts (cblogsd, the shipper) sees it. Where user namespaces are not
//! allowed, the test fails and says why; it never passes quietly.

use std::process::Command;

use crate::tools::require_tool;

/// Set in the environment of a test run again inside a user namespace.
const IN_NAMESPACE: &str = "CBLOGS_TEST_IN_USER_NAMESPACE";

/// Whether the caller goes on, or the test already ran (and passed) in a
/// user namespace.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum AsRoot {
    /// This process is root (really, or in its user namespace): go on.
    Here,
    /// The test ran in a user namespace and passed: return.
    RanInUserNamespace,
}

/// Run the test `test` (its function name, as `cargo test` names it in its
/// file) as root: here if this process is, else again in a user namespace.
pub fn as_root(test: &str) -> AsRoot {
    // SAFETY: geteuid(2) cannot fail and has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 {
        return AsRoot::Here;
    }
    assert!(
        std::env::var_os(IN_NAMESPACE).is_none(),
        "{test} runs in a user namespace (`unshare -rm`) but is not root there (euid {euid})"
    );
    let unshare = require_tool(
        "unshare",
        &format!("{test}, run without root (to mount its tmpfs in a user namespace),"),
        "apt-get install util-linux",
    );
    let exe = std::env::current_exe().expect("the test executable");
    let out = Command::new(&unshare)
        .args(["-rm", "--"])
        .arg(&exe)
        .args([test, "--exact", "--nocapture", "--test-threads", "1"])
        .env(IN_NAMESPACE, "1")
        .output()
        .expect("run unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{test} in a user namespace (`unshare -rm`):\n{stdout}{stderr}");
    if stderr.starts_with("unshare:") {
        panic!(
            "{test} mounts a tmpfs, which needs root. This process is not root (euid {euid}), \
             and it could not run the test in a user namespace: {}{}. Run the tests as root, \
             or allow unprivileged user namespaces.",
            stderr.trim(),
            why_no_user_namespaces()
        );
    }
    assert!(
        out.status.success(),
        "{test} failed in its user namespace (`unshare -rm`); its output is above"
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test} did not run in its user namespace (is the name right?); its output is above"
    );
    AsRoot::RanInUserNamespace
}

/// The kernel setting that forbids unprivileged user namespaces, if one does.
fn why_no_user_namespaces() -> String {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned());
    if read("/proc/sys/kernel/unprivileged_userns_clone").is_ok_and(|v| v == "0") {
        return " (unprivileged user namespaces are disabled: \
                 kernel.unprivileged_userns_clone = 0)"
            .into();
    }
    if read("/proc/sys/user/max_user_namespaces").is_ok_and(|v| v == "0") {
        return " (user namespaces are disabled: user.max_user_namespaces = 0)".into();
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").is_ok_and(|v| v == "1") {
        return " (AppArmor restricts unprivileged user namespaces: \
                 kernel.apparmor_restrict_unprivileged_userns = 1)"
            .into();
    }
    String::new()
}
