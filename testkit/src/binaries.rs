//! The binaries under test: `cblogsd`, `cblogs` and `cblogs-shipper`,
//! built once per test process (in the profile of the running executable)
//! because `cargo test` builds other packages' binaries only as test
//! harnesses, not as the programs themselves.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding the binaries; builds them on first use.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> (a test) or target/<profile>/<bin>
        // (the benchmark harness) -> target/<profile>
        let mut dir = exe.parent().expect("target dir").to_owned();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--bins",
            "-p",
            "cblogs-server",
            "-p",
            "cblogs-cli",
            "-p",
            "cblogs-shipper",
        ]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

/// The path of binary `name`, built if need be.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}
