//! Running `cblogs-bench … --smoke` for a smoke test and reading what it
//! wrote: shared by `smoke.rs` and `load_smoke.rs` (each test file is its
//! own crate, so this is a module both include).

use std::process::Command;

use serde_json::Value;

/// A finished smoke run's report: the JSON and the Markdown beside it.
pub struct SmokeReport {
    pub json: Value,
    pub markdown: String,
}

impl SmokeReport {
    /// The figure `id`; panics, with the report, if it is missing.
    pub fn figure(&self, id: &str) -> &Value {
        self.json["figures"]
            .as_array()
            .expect("figures")
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("no figure {id} in {}", self.json))
    }
}

/// Runs `cblogs-bench WHAT --smoke` in a temporary work dir, which must
/// succeed, and reads its report (`<name>.json` and `.md`).
pub fn run_smoke(what: &str, name: &str) -> SmokeReport {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join(name);
    let run = Command::new(env!("CARGO_BIN_EXE_cblogs-bench"))
        .args([what, "--smoke", "--work"])
        .arg(dir.path())
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run cblogs-bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "cblogs-bench {what} failed:\n{stderr}"
    );
    let json =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON report")).expect("JSON");
    let markdown = std::fs::read_to_string(out.with_extension("md")).expect("the Markdown report");
    SmokeReport { json, markdown }
}
