//! Talking to cblogsd: JSON GETs and event streams, with errors a user can read.

use std::fmt;

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
    server: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(settings: &crate::config::Settings) -> Result<Client, ClientError> {
        let server = settings.server.trim_end_matches('/').to_owned();
        if !(server.starts_with("http://") || server.starts_with("https://")) {
            return Err(ClientError::Unreachable {
                server,
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
        if server.starts_with("http://") {
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
        Ok(Client { server, http })
    }

    pub fn server(&self) -> &str {
        &self.server
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
        let url = format!("{}{path}", self.server);
        let resp = self
            .http
            .post(&url)
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
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
        let url = format!("{}{path}", self.server);
        let resp = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|e| self.unreachable(&e))?;
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

    pub fn unreachable(&self, e: &reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            server: self.server.clone(),
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
