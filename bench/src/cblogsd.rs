//! The `cblogsd` every measurement starts: a real one from the test kit,
//! with the run's `--cblogsd-config` (set once at the start) and whatever a
//! measurement adds to it.

use std::path::Path;
use std::sync::OnceLock;

use cblogs_testkit::Server;

/// The config text every cblogsd of this run starts with.
static CBLOGSD_CONFIG: OnceLock<Option<String>> = OnceLock::new();

/// Sets the run's config (`--cblogsd-config`); the first call wins.
pub fn set_config(config: Option<String>) {
    let _ = CBLOGSD_CONFIG.set(config);
}

/// Starts a real cblogsd on `data_dir` with the run's config.
pub fn start(data_dir: &Path) -> Server {
    start_with(data_dir, None)
}

/// [`start`] with `extra` appended to the run's config.
pub fn start_with(data_dir: &Path, extra: Option<&str>) -> Server {
    let config = CBLOGSD_CONFIG.get().and_then(Option::as_deref);
    let text = match (config, extra) {
        (c, None) => c.map(str::to_owned),
        (c, Some(e)) => Some(format!("{}\n{e}", c.unwrap_or_default())),
    };
    Server::start(data_dir, text.as_deref())
}
