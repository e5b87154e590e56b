//! [`Peers`]: how this node asks the others. One HTTP client for every
//! node (a pool of connections per node), presenting `[cluster]
//! token_file`'s token and trusting `[cluster] ca_cert` besides the
//! system's roots, with `[cluster] peer_timeout_ms` as the limit after
//! which a node counts as not answering.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::access::Auth;
use crate::config::ClusterConfig;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot read cluster.ca_cert {path}: {why}")]
    CaCert { path: String, why: String },
    #[error("cannot make the client for other nodes: {0}")]
    Client(String),
    /// Connection refused or reset, a timeout, a TLS failure: the node
    /// does not answer.
    #[error("{url}: {why}")]
    Unreachable { url: String, why: String },
    /// It answered, with a refusal (`status`) or something that is not
    /// the JSON asked for (`status` 0).
    #[error("{url}: {why}")]
    Refused {
        url: String,
        status: u16,
        why: String,
    },
}

#[derive(Clone)]
pub struct Peers {
    http: reqwest::Client,
    auth: Arc<Auth>,
}

impl Peers {
    pub fn new(config: &ClusterConfig, auth: Arc<Auth>) -> Result<Peers, PeerError> {
        let timeout = Duration::from_millis(config.peer_timeout_ms);
        let mut builder = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout);
        if !config.ca_cert.as_os_str().is_empty() {
            let path = config.ca_cert.display().to_string();
            let pem = std::fs::read(&config.ca_cert).map_err(|e| PeerError::CaCert {
                path: path.clone(),
                why: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| PeerError::CaCert {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(PeerError::CaCert {
                    path,
                    why: "no PEM certificate in it".into(),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| PeerError::Client(e.to_string()))?;
        Ok(Peers { http, auth })
    }

    /// GET `path` of the node at `url` and parse its JSON answer.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
    ) -> Result<T, PeerError> {
        self.get_json_within(url, path, None).await
    }

    /// [`Peers::get_json`], waiting at most `timeout` for the answer
    /// (`cluster.peer_timeout_ms` without): a node's part of a search
    /// may take as long as the search may.
    pub async fn get_json_within<T: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<T, PeerError> {
        let resp = self.get(url, path, timeout).await?;
        let body = resp.bytes().await.map_err(|e| unreachable(url, &e))?;
        serde_json::from_slice(&body).map_err(|e| PeerError::Refused {
            url: url.to_owned(),
            status: 0,
            why: format!("its answer to {path} is not what this node expects: {e}"),
        })
    }

    /// POSTs `body` as JSON to `path` of the node at `url`, and parses
    /// its JSON answer.
    pub async fn post_json<B: serde::Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        body: &B,
    ) -> Result<T, PeerError> {
        self.post_json_within(url, path, body, None).await
    }

    /// [`Peers::post_json`], waiting at most `timeout` for the answer
    /// (`cluster.peer_timeout_ms` without): a forwarded push waits for
    /// room and the WAL on its node.
    pub async fn post_json_within<B: serde::Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: &str,
        path: &str,
        body: &B,
        timeout: Option<Duration>,
    ) -> Result<T, PeerError> {
        let full = format!("{}{path}", url.trim_end_matches('/'));
        let mut req = self.http.post(&full).json(body);
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        if let Some(token) = self.auth.node_token() {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| unreachable(url, &e))?;
        let body = answered(url, resp)
            .await?
            .bytes()
            .await
            .map_err(|e| unreachable(url, &e))?;
        serde_json::from_slice(&body).map_err(|e| PeerError::Refused {
            url: url.to_owned(),
            status: 0,
            why: format!("its answer to {path} is not what this node expects: {e}"),
        })
    }

    /// GETs `path` of the node at `url` and gives back its answer as it
    /// streams (a follow: for as long as it lasts).
    pub async fn get_stream(&self, url: &str, path: &str) -> Result<reqwest::Response, PeerError> {
        self.get(url, path, Some(STREAM_TIMEOUT)).await
    }

    /// The answer to a GET once its status is a success; else why not.
    async fn get(
        &self,
        url: &str,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, PeerError> {
        let full = format!("{}{path}", url.trim_end_matches('/'));
        let mut req = self.http.get(&full);
        if let Some(timeout) = timeout {
            req = req.timeout(timeout);
        }
        // Read for every request: a rotated token file is read again on SIGHUP.
        if let Some(token) = self.auth.node_token() {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| unreachable(url, &e))?;
        answered(url, resp).await
    }
}

/// The answer once its status is a success; else why not.
async fn answered(url: &str, resp: reqwest::Response) -> Result<reqwest::Response, PeerError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.bytes().await.map_err(|e| unreachable(url, &e))?;
    let why = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_owned());
    Err(PeerError::Refused {
        url: url.to_owned(),
        status: status.as_u16(),
        why: format!("{status}: {why}"),
    })
}

/// A stream's answer (a follow) is read for as long as it lasts: a year.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

fn unreachable(url: &str, e: &reqwest::Error) -> PeerError {
    PeerError::Unreachable {
        url: url.to_owned(),
        why: root_cause(e),
    }
}

/// The innermost cause ("Connection refused", a certificate's problem),
/// without reqwest's layers of context.
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
