//! Talking to cblogsd: JSON GETs and event streams, with errors a user can read.
//!
//! The server may be several (`--server a,b,c`, the nodes of a cluster):
//! a request goes to the one that answered last, and to the next in the
//! list when that one cannot be reached at all. Any node answers every
//! query; an answer, even an error, is never retried elsewhere.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use cblogs_core::wire::ErrorBody;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

/// Why a request failed, in words for the terminal.
#[derive(Debug)]
pub enum ClientError {
    /// No HTTP answer at all: refused, reset, timed out, bad address.
    Unreachable { server: String, reason: String },
    /// cblogsd answered with an error.
    Api { status: StatusCode, body: ErrorBody },
    /// An answer we could not understand.
    Protocol(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { server, reason } => {
                write!(f, "cannot reach cblogsd at {server}: {reason}")
            }
            ClientError::Api { status, body } if *status == StatusCode::UNAUTHORIZED => write!(
                f,
                "{} (give cblogs a token: CBLOGS_TOKEN, or token/token_file in ~/.config/cblogs/config.toml)",
                body.error
            ),
            ClientError::Api { body, .. } => f.write_str(&body.error),
            ClientError::Protocol(why) => write!(f, "unexpected answer from cblogsd: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

pub struct Client {
    /// Every server given, in order.
    servers: Vec<String>,
    /// The one asked first: the last that answered.
    current: AtomicUsize,
    http: reqwest::Client,
}

impl Client {
    pub fn new(settings: &crate::config::Settings) -> Result<Client, ClientError> {
        let servers: Vec<String> = settings
            .server
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if servers.is_empty() {
            return Err(ClientError::Unreachable {
                server: settings.server.clone(),
                reason: "no server given".into(),
            });
        }
        if let Some(bad) = servers
            .iter()
            .find(|s| !(s.starts_with("http://") || s.starts_with("https://")))
        {
            return Err(ClientError::Unreachable {
                server: bad.clone(),
                reason: "the server URL must start with http:// or https://".into(),
            });
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &settings.token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    ClientError::Protocol("the token holds characters a header cannot".into())
                })?;
            // Kept out of Debug output and any log of headers.
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .default_headers(headers);
        if servers.iter().all(|s| s.starts_with("http://")) {
            // Plain HTTP needs no roots of trust, and loading the system's
            // (parsing every PEM file under /etc/ssl/certs) was a third of
            // a `cblogs grep`'s CPU: a quarter of its time on a dense search.
            builder = builder.tls_built_in_root_certs(false);
        }
        if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ClientError::Protocol(format!("the CA certificate file: {e}")))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(Client {
            servers,
            current: AtomicUsize::new(0),
            http,
        })
    }

    /// The server asked first: the last one that answered.
    pub fn server(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// Sends the request `build` makes for a server's URL of `path`: to
    /// the last server that answered, then to each other one in turn
    /// while none can be reached. Returns the first answer.
    async fn first_answer(
        &self,
        path: &str,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for k in 0..self.servers.len() {
            let i = (start + k) % self.servers.len();
            let server = &self.servers[i];
            match build(&format!("{server}{path}")).send().await {
                Ok(resp) => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => failures.push((server.clone(), root_cause(&e))),
            }
        }
        Err(match <[_; 1]>::try_from(failures) {
            Ok([(server, reason)]) => ClientError::Unreachable { server, reason },
            Err(all) => ClientError::Unreachable {
                server: all
                    .iter()
                    .map(|(s, _)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: all
                    .iter()
                    .map(|(s, r)| format!("{s}: {r}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
        })
    }

    /// GET `path` and parse the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let resp = self.send(path, query).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// POST `body` as JSON to `path` and parse the JSON answer.
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let resp = self
            .first_answer(path, |url| self.http.post(url).json(body))
            .await?;
        let resp = self.check(resp).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// GET `path` and hand back the response to read as a stream.
    pub async fn send(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response, ClientError> {
        let resp = self
            .first_answer(path, |url| self.http.get(url).query(query))
            .await?;
        self.check(resp).await
    }

    /// The response if it succeeded, else its error in words.
    async fn check(&self, resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| ErrorBody {
            error: format!("{status}: {}", text.trim()),
            candidates: Vec::new(),
            held_end: None,
        });
        Err(ClientError::Api { status, body })
    }

    /// A failure while reading an answer of the server asked last.
    pub fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            server: self.server().to_owned(),
            reason: root_cause(e),
        }
    }
}

/// The innermost cause, which is the one that says what happened
/// ("Connection refused"), without reqwest's layers of context.
fn root_cause(e: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if let Some(io) = (cause as &(dyn std::error::Error + 'static)).downcast_ref::<std::io::Error>()
    {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
            std::io::ErrorKind::ConnectionReset => "connection reset".into(),
            std::io::ErrorKind::TimedOut => "timed out".into(),
            _ => io.to_string(),
        };
    }
    if e.is_timeout() {
        return "timed out".into();
    }
    let why = cause.to_string();
    if why.contains("invalid peer certificate") || why.contains("UnknownIssuer") {
        format!("{why} (the server's certificate is not from a CA this machine trusts: give its CA with --ca-cert or $CBLOGS_CA_CERT)")
    } else if why.contains("invalid HTTP version") {
        format!("{why} (is it serving https? then use an https:// URL)")
    } else {
        why
    }
}
