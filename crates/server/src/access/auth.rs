//! Who may do what: bearer tokens per role, compared in constant time.
//!
//! Three roles: **ingest** (shippers: `POST /api/v1/ingest`), **read**
//! (the CLI, the web page, Prometheus: every GET of the API and `/metrics`)
//! and **admin** (flush, alert reload, silences; an admin token may also
//! read). Each role has any number of tokens, from the config file and from
//! token files (one per line), so a token can be rotated by adding the new
//! one, moving clients over, then removing the old one; files are read again
//! on SIGHUP.
//!
//! A role with no token configured is open, but only to clients on the
//! loopback interface: a fresh `cblogsd` is usable on the machine it runs
//! on and closed to the network. `cblogsd` says so at start-up.
//!
//! Nodes of a cluster read one shared token from `[cluster] token_file`
//! (its first line; the others are accepted too, for rotation): they
//! present it to each other, and it may read. It is the one token kept in
//! clear, because a node must present it; only its digest is compared.
//!
//! Tokens are kept only as SHA-256 digests and compared digest against
//! digest with `subtle`, over every configured token without stopping at a
//! match, so neither the time taken nor the length of a guess tells anything
//! about a real token. No token is ever logged: what is logged is the role
//! and the reason for a refusal.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AuthConfig;

/// The cookie the web page keeps a token in (set by `POST /api/v1/session`).
pub const TOKEN_COOKIE: &str = "cblogs_token";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Ingest,
    Read,
    Admin,
    /// Another node of the cluster, with `[cluster] token_file`'s token:
    /// what only a node may do (hand an alert group's owner its matches).
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Admin => "admin",
            Role::Node => "node",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read token file {path} ({setting}): {source}")]
    File {
        setting: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{setting}: a token must be at least 16 characters of visible ASCII, without spaces or ; , \" \\ (it travels in a header and a cookie)")]
    Weak { setting: String },
    #[error("cluster.token_file holds no token: put the one token every node of the cluster shares on its first line")]
    NoNodeToken,
}

/// Why a request was refused; the message never holds the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No token, where one is needed: 401.
    Missing(Role),
    /// A token that no role knows: 401.
    Invalid(Role),
    /// A token of another role: 403.
    WrongRole(Role),
    /// No token configured for the role, and the client is not local: 403.
    NotLoopback(Role),
}

impl Denied {
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Denied::Missing(_) | Denied::Invalid(_))
    }
    pub fn message(&self) -> String {
        match self {
            Denied::Missing(r) => format!(
                "this endpoint needs a {} token: send it as 'Authorization: Bearer <token>'",
                r.as_str()
            ),
            Denied::Invalid(r) => format!("the token is not a valid {} token", r.as_str()),
            Denied::WrongRole(r) => {
                format!("the token is valid but may not {}", r.as_str())
            }
            Denied::NotLoopback(r) => format!(
                "no {0} token is configured (auth.{0}_tokens), so {0} is open only to clients on this machine",
                r.as_str()
            ),
        }
    }
}

type TokenDigest = [u8; 32];

#[derive(Default)]
struct Tokens {
    ingest: Vec<TokenDigest>,
    read: Vec<TokenDigest>,
    admin: Vec<TokenDigest>,
    /// `[cluster] token_file`'s tokens: the other nodes', which may read.
    node: Vec<TokenDigest>,
    /// The first of them: what this node presents to the others.
    node_presented: Option<String>,
}

impl Tokens {
    fn of(&self, role: Role) -> &[TokenDigest] {
        match role {
            Role::Ingest => &self.ingest,
            Role::Read => &self.read,
            Role::Admin => &self.admin,
            Role::Node => &self.node,
        }
    }
}

/// The configured tokens, checked for each request.
pub struct Auth {
    config: AuthConfig,
    /// `[cluster] token_file`, if set.
    node_token_file: Option<PathBuf>,
    tokens: RwLock<Tokens>,
}

/// How many tokens each role has: what start-up and reloads report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCounts {
    pub ingest: usize,
    pub read: usize,
    pub admin: usize,
    pub node: usize,
}

impl Auth {
    /// The roles' tokens, and the nodes' shared one from
    /// `node_token_file` (`[cluster] token_file`) if there is one.
    pub fn load(config: &AuthConfig, node_token_file: Option<&Path>) -> Result<Auth, AuthError> {
        let node_token_file = node_token_file.map(Path::to_owned);
        let tokens = read_tokens(config, node_token_file.as_deref())?;
        Ok(Auth {
            config: config.clone(),
            node_token_file,
            tokens: RwLock::new(tokens),
        })
    }

    /// What this node presents to the others of its cluster: the first
    /// token of `[cluster] token_file`.
    pub fn node_token(&self) -> Option<String> {
        let t = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        t.node_presented.clone()
    }

    /// Reads the token files again (rotation); on an error the tokens in
    /// force stay.
    pub fn reload(&self) -> Result<TokenCounts, AuthError> {
        let tokens = read_tokens(&self.config, self.node_token_file.as_deref())?;
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = tokens;
        Ok(self.counts())
    }

    pub fn counts(&self) -> TokenCounts {
        let t = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        TokenCounts {
            ingest: t.ingest.len(),
            read: t.read.len(),
            admin: t.admin.len(),
            node: t.node.len(),
        }
    }

    /// The start-up lines: which roles are open to loopback only.
    pub fn describe(&self) -> Vec<String> {
        let c = self.counts();
        [
            (Role::Ingest, c.ingest),
            (Role::Read, c.read),
            (Role::Admin, c.admin),
        ]
        .into_iter()
        .map(|(role, n)| {
            if n == 0 {
                format!(
                    "{0}: no token configured (auth.{0}_tokens); open to loopback clients only",
                    role.as_str()
                )
            } else {
                format!("{}: {n} token(s)", role.as_str())
            }
        })
        .chain((c.node > 0).then(|| {
            format!(
                "cluster: {} node token(s) ([cluster] token_file), which may read",
                c.node
            )
        }))
        .collect()
    }

    /// May a request with `token` from `peer` act in `role`? An admin
    /// token, and another node's, may also read.
    pub fn check(
        &self,
        role: Role,
        token: Option<&str>,
        peer: Option<SocketAddr>,
    ) -> Result<(), Denied> {
        let tokens = self.tokens.read().unwrap_or_else(|p| p.into_inner());
        let configured = !tokens.of(role).is_empty();
        let Some(token) = token else {
            if !configured {
                return if peer.is_some_and(|p| is_loopback(p.ip())) {
                    Ok(())
                } else {
                    Err(Denied::NotLoopback(role))
                };
            }
            return Err(Denied::Missing(role));
        };
        let digest = digest(token);
        let mut allowed = matches_any(&digest, tokens.of(role));
        if role == Role::Read {
            allowed |= matches_any(&digest, &tokens.admin);
            allowed |= matches_any(&digest, &tokens.node);
        }
        if allowed {
            return Ok(());
        }
        // A token the role does not know: still fine from loopback when
        // the role has no tokens at all (a stale CBLOGS_TOKEN must not lock
        // a local user out of an open role).
        if !configured && peer.is_some_and(|p| is_loopback(p.ip())) {
            return Ok(());
        }
        let known = [Role::Ingest, Role::Read, Role::Admin]
            .into_iter()
            .fold(false, |k, r| k | matches_any(&digest, tokens.of(r)))
            | matches_any(&digest, &tokens.node);
        Err(if known {
            Denied::WrongRole(role)
        } else if configured {
            Denied::Invalid(role)
        } else {
            Denied::NotLoopback(role)
        })
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A token's SHA-256: how tokens are kept, and how limits key a caller.
pub fn token_digest(token: &str) -> TokenDigest {
    digest(token)
}

fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant time over the whole list: no early exit on a match.
fn matches_any(digest: &TokenDigest, list: &[TokenDigest]) -> bool {
    list.iter()
        .fold(subtle::Choice::from(0), |acc, t| acc | t.ct_eq(digest))
        .into()
}

fn read_tokens(c: &AuthConfig, node_file: Option<&Path>) -> Result<Tokens, AuthError> {
    let node: Vec<String> = match node_file {
        Some(path) => read_token_file(NODE_FILE, path)?,
        None => Vec::new(),
    };
    if node_file.is_some() && node.is_empty() {
        return Err(AuthError::NoNodeToken);
    }
    Ok(Tokens {
        ingest: role_tokens(Role::Ingest, &c.ingest_tokens, &c.ingest_token_files)?,
        read: role_tokens(Role::Read, &c.read_tokens, &c.read_token_files)?,
        admin: role_tokens(Role::Admin, &c.admin_tokens, &c.admin_token_files)?,
        node_presented: node.first().cloned(),
        node: digests(NODE_FILE, node)?,
    })
}

/// How `[cluster] token_file` is named in errors.
const NODE_FILE: &str = "cluster.token_file";

fn role_tokens(
    role: Role,
    inline: &[String],
    files: &[PathBuf],
) -> Result<Vec<TokenDigest>, AuthError> {
    let name = format!("auth.{}_tokens", role.as_str());
    let mut all: Vec<String> = inline.to_vec();
    for path in files {
        all.extend(read_token_file(
            &format!("auth.{}_token_files", role.as_str()),
            path,
        )?);
    }
    digests(&name, all)
}

fn digests(setting: &str, tokens: Vec<String>) -> Result<Vec<TokenDigest>, AuthError> {
    let mut digests = Vec::with_capacity(tokens.len());
    for t in tokens {
        let cookie_safe = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\');
        if t.len() < 16 || !t.chars().all(cookie_safe) {
            return Err(AuthError::Weak {
                setting: setting.to_owned(),
            });
        }
        digests.push(digest(&t));
    }
    digests.sort_unstable();
    digests.dedup();
    Ok(digests)
}

/// One token per line; blank lines and `#` comments are skipped.
fn read_token_file(setting: &str, path: &Path) -> Result<Vec<String>, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::File {
        setting: setting.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

/// The token a request presents: `Authorization: Bearer …`, or the
/// password of `Authorization: Basic …` (what Loki's clients and Docker's
/// loki driver send), else the web page's cookie.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Option<Cow<'_, str>> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, token) = v.split_once(' ')?;
        if scheme.eq_ignore_ascii_case("basic") {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(token.trim())
                .ok()?;
            let pair = String::from_utf8(decoded).ok()?;
            let (_user, password) = pair.split_once(':')?;
            return (!password.is_empty()).then(|| Cow::Owned(password.to_owned()));
        }
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| Cow::Borrowed(token.trim()));
    }
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == TOKEN_COOKIE)
        .map(|(_, value)| Cow::Borrowed(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: Option<SocketAddr> = Some(SocketAddr::new(
        IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        4000,
    ));
    const REMOTE: Option<SocketAddr> = Some(SocketAddr::new(
        IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3)),
        4000,
    ));

    fn auth() -> Auth {
        Auth::load(
            &AuthConfig {
                ingest_tokens: vec!["ingest-token-0123456789".into()],
                admin_tokens: vec![
                    "admin-token-0123456789".into(),
                    "admin-token-rotated-42".into(),
                ],
                ..AuthConfig::default()
            },
            None,
        )
        .unwrap()
    }

    #[test]
    fn roles_and_loopback() {
        let a = auth();
        assert_eq!(
            a.check(Role::Ingest, None, LOCAL),
            Err(Denied::Missing(Role::Ingest))
        );
        assert_eq!(
            a.check(Role::Ingest, Some("ingest-token-0123456789"), REMOTE),
            Ok(())
        );
        assert_eq!(
            a.check(Role::Ingest, Some("ingest-token-012345678"), REMOTE),
            Err(Denied::Invalid(Role::Ingest))
        );
        assert_eq!(
            a.check(Role::Ingest, Some("admin-token-0123456789"), REMOTE),
            Err(Denied::WrongRole(Role::Ingest))
        );
        // Read has no token of its own: loopback only, or an admin token.
        assert_eq!(a.check(Role::Read, None, LOCAL), Ok(()));
        assert_eq!(
            a.check(Role::Read, None, REMOTE),
            Err(Denied::NotLoopback(Role::Read))
        );
        assert_eq!(
            a.check(Role::Read, None, None),
            Err(Denied::NotLoopback(Role::Read))
        );
        assert_eq!(
            a.check(Role::Read, Some("admin-token-rotated-42"), REMOTE),
            Ok(())
        );
        assert_eq!(
            a.check(Role::Read, Some("ingest-token-0123456789"), REMOTE),
            Err(Denied::WrongRole(Role::Read))
        );
        assert_eq!(
            a.check(Role::Admin, Some("admin-token-0123456789"), REMOTE),
            Ok(())
        );
    }

    #[test]
    fn files_rotate_on_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("read.tokens");
        std::fs::write(&file, "# readers\nold-read-token-123456\n\n").unwrap();
        let a = Auth::load(
            &AuthConfig {
                read_token_files: vec![file.clone()],
                ..AuthConfig::default()
            },
            None,
        )
        .unwrap();
        assert_eq!(
            a.check(Role::Read, Some("old-read-token-123456"), REMOTE),
            Ok(())
        );
        std::fs::write(&file, "new-read-token-123456\n").unwrap();
        assert_eq!(a.reload().unwrap().read, 1);
        assert_eq!(
            a.check(Role::Read, Some("old-read-token-123456"), REMOTE),
            Err(Denied::Invalid(Role::Read))
        );
        assert_eq!(
            a.check(Role::Read, Some("new-read-token-123456"), REMOTE),
            Ok(())
        );
        std::fs::remove_file(&file).unwrap();
        let err = a.reload().unwrap_err().to_string();
        assert!(err.contains("auth.read_token_files"), "{err}");
        assert_eq!(
            a.check(Role::Read, Some("new-read-token-123456"), REMOTE),
            Ok(()),
            "tokens in force stay"
        );
    }

    #[test]
    fn a_node_token_reads_and_is_presented() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.token");
        std::fs::write(
            &file,
            "# the cluster's\nnode-token-new-123456\nnode-token-old-123456\n",
        )
        .unwrap();
        let a = Auth::load(&AuthConfig::default(), Some(&file)).unwrap();
        assert_eq!(a.node_token().as_deref(), Some("node-token-new-123456"));
        for token in ["node-token-new-123456", "node-token-old-123456"] {
            assert_eq!(a.check(Role::Read, Some(token), REMOTE), Ok(()));
            assert_eq!(
                a.check(Role::Ingest, Some(token), REMOTE),
                Err(Denied::WrongRole(Role::Ingest)),
                "a node token only reads"
            );
        }
        assert_eq!(
            a.check(Role::Read, Some("node-token-bad-123456"), REMOTE),
            Err(Denied::NotLoopback(Role::Read))
        );
        std::fs::write(&file, "\n# nothing\n").unwrap();
        let err = a.reload().unwrap_err().to_string();
        assert!(err.contains("cluster.token_file"), "{err}");
        assert_eq!(a.node_token().as_deref(), Some("node-token-new-123456"));
        std::fs::write(&file, "short\n").unwrap();
        let err = Auth::load(&AuthConfig::default(), Some(&file))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("cluster.token_file") && !err.contains("short"),
            "{err}"
        );
    }

    #[test]
    fn weak_tokens_are_refused_without_echoing_them() {
        let err = Auth::load(
            &AuthConfig {
                admin_tokens: vec!["short".into()],
                ..AuthConfig::default()
            },
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("auth.admin_tokens") && !err.contains("short"),
            "{err}"
        );
    }

    #[test]
    fn token_from_header_or_cookie() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "cookie",
            "a=b; cblogs_token=tok-from-cookie".parse().unwrap(),
        );
        assert_eq!(presented_token(&h).as_deref(), Some("tok-from-cookie"));
        h.insert("authorization", "Bearer  tok-from-header ".parse().unwrap());
        assert_eq!(presented_token(&h).as_deref(), Some("tok-from-header"));
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_token(&h), None);
        // user:tok-as-password
        h.insert(
            "authorization",
            "Basic dXNlcjp0b2stYXMtcGFzc3dvcmQ=".parse().unwrap(),
        );
        assert_eq!(presented_token(&h).as_deref(), Some("tok-as-password"));
        // user: (no password)
        h.insert("authorization", "Basic dXNlcjo=".parse().unwrap());
        assert_eq!(presented_token(&h), None);
    }
}
