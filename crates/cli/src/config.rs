//! Where `cblogs` finds its server, token and CA: flags and environment
//! first, then the config file, then the defaults.
//!
//! ```toml
//! # ~/.config/cblogs/config.toml
//! server = "https://logs.example.com:7450"   # or several: "https://logs1:7450,https://logs2:7450"
//! token_file = "/home/me/.cblogs-token"   # or: token = "…"
//! ca_cert = "/etc/ssl/private-ca.pem"
//! ```
//!
//! The token comes from `CBLOGS_TOKEN` if set, else the file's `token` or
//! `token_file`. It is sent as `Authorization: Bearer` and never printed.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    server: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca_cert: Option<PathBuf>,
}

/// What the client needs.
pub struct Settings {
    pub server: String,
    pub token: Option<String>,
    /// PEM bytes of extra CAs to trust.
    pub ca_pem: Option<Vec<u8>>,
}

impl Settings {
    pub fn resolve(
        config: Option<&Path>,
        server: Option<String>,
        ca_cert: Option<PathBuf>,
    ) -> Result<Settings, String> {
        let file = match config {
            Some(path) => read(path)?,
            None => match default_path() {
                Some(path) if path.exists() => read(&path)?,
                _ => File::default(),
            },
        };
        let token = match std::env::var("CBLOGS_TOKEN") {
            Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
            _ => match (&file.token, &file.token_file) {
                (Some(t), _) => Some(t.trim().to_owned()),
                (None, Some(path)) => Some(read_token(path)?),
                (None, None) => None,
            },
        };
        let ca_pem = match ca_cert.or(file.ca_cert) {
            Some(path) => Some(std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read the CA certificate file {}: {e}",
                    path.display()
                )
            })?),
            None => None,
        };
        Ok(Settings {
            server: server
                .or(file.server)
                .unwrap_or_else(|| cblogs_core::DEFAULT_SERVER.to_owned()),
            token,
            ca_pem,
        })
    }
}

fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("cblogs").join("config.toml"))
}

fn read(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))
}

fn read_token(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .ok_or_else(|| format!("the token file {} holds no token", path.display()))
}
