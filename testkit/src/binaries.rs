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
        if dir.file_name().is_some_and(|n| n == "release") {
            // The benchmark, built by hand with `cargo build --release`.
            cmd.args(["build", "--release", "--bins"]);
            cmd.args([
                "-p",
                "cblogs-server",
                "-p",
                "cblogs-cli",
                "-p",
                "cblogs-shipper",
            ]);
        } else {
            // Under `cargo test --workspace`, build with the features it
            // resolved, so that the binaries share its build of every
            // dependency: `--examples` (there are none) makes cargo resolve
            // with the workspace's dev-dependencies, as a test build does.
            // `cargo build -p cblogs-server …` alone turns off five features
            // they turn on (syn's `visit`, time's `macros`, …) and so built
            // some 55 crates a second time, 0.5 GiB of a clean CI run's disk
            // (2 GiB with full debug info).
            cmd.args(["build", "--workspace", "--bins", "--examples"]);
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

/// The last version of `main` before the current storage (issue 16): what
/// users run today, so an upgrade test runs it beside the new one.
pub const PREVIOUS_VERSION: &str = "9393189d0311da4f84fe5c3f71a4a8969454f4c5";

/// The directory holding `cblogsd` and `cblogs-shipper` of
/// [`PREVIOUS_VERSION`], built on first use from this repository's history
/// (`git archive` into `target/previous/src`, built into
/// `target/previous/target`, kept for the next run).
pub fn previous_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the repository root")
            .to_owned();
        let root = repo.join("target").join("previous");
        let src = root.join(&PREVIOUS_VERSION[..12]);
        let out = root.join("target");
        if !src.join("Cargo.toml").exists() {
            let tmp = root.join("src.tmp");
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).expect("create target/previous");
            let archive = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "git -C '{}' archive {PREVIOUS_VERSION} | tar -x -C '{}'",
                    repo.display(),
                    tmp.display()
                ))
                .output()
                .expect("run git archive");
            assert!(
                archive.status.success() && tmp.join("Cargo.toml").exists(),
                "cannot take version {PREVIOUS_VERSION} from this repository's history \
                 (the upgrade tests need a clone with its history, and git): {}",
                String::from_utf8_lossy(&archive.stderr)
            );
            std::fs::rename(&tmp, &src).expect("move the previous version in place");
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let build = Command::new(cargo)
            .current_dir(&src)
            .args([
                "build",
                "--bins",
                "-p",
                "cblogs-server",
                "-p",
                "cblogs-shipper",
            ])
            .arg("--target-dir")
            .arg(&out)
            // As this repository's own dev profile: line tables, not full
            // debug info, and no incremental state (a build made once).
            .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
            .env("CARGO_INCREMENTAL", "0")
            .output()
            .expect("run cargo build");
        assert!(
            build.status.success(),
            "cannot build version {PREVIOUS_VERSION}:\n{}",
            String::from_utf8_lossy(&build.stderr)
        );
        out.join("debug")
    })
}

/// The path of binary `name` of [`PREVIOUS_VERSION`], built if need be.
pub fn previous_bin(name: &str) -> PathBuf {
    previous_bin_dir().join(name)
}
