//! `Sender`: posts one ingest request until the server answers something
//! final. While `cblogsd` is unreachable, times out or answers 5xx (or a
//! 4xx that a retry may cure: 408, 429, or a proxy's 401/403/404 while it is
//! being set up), the request is retried with exponential backoff and
//! jitter; the server drops what it already holds, so a retry is always
//! safe. Answers that no retry of the same body can change are returned
//! for the caller to act on. With several nodes to send to, a node that
//! cannot be reached for `ship.failover_after_ms` is given up on
//! ([`Delivery::Unreachable`]), so its sources can move; an answer, even
//! 429 or 503, never moves them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cblogs_core::wire::{
    ErrorBody, IngestRequest, IngestResponse, PublishedResponse, INGEST_PATH, PUBLISHED_PATH,
};
use reqwest::StatusCode;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::config::{Config, ShipConfig};

/// What became of a request.
#[derive(Debug)]
pub enum Delivery {
    /// Durable on the server.
    Acked(IngestResponse),
    /// 409: a batch would leave a hole; the server holds its source up to `held_end`.
    Gap { held_end: u64, message: String },
    /// 413: the body is over the server's limit.
    TooLarge { message: String },
    /// 400 and other 4xx: the content itself is refused.
    Refused { status: u16, message: String },
    /// Connections refused or timing out for `ship.failover_after_ms`
    /// (only with other nodes to send to): not delivered.
    Unreachable { message: String },
}

/// How the shipper proves itself to cblogsd: its ingest token (from a file,
/// read again after a 401 so that a rotated token is picked up, or from
/// `CBLOGS_TOKEN`), and the CA it trusts for https.
pub struct Credentials {
    token_file: Option<PathBuf>,
    token: RwLock<Option<String>>,
    ca_cert: Option<Vec<u8>>,
}

impl Credentials {
    pub fn from_config(cfg: &Config) -> Result<Credentials, SenderError> {
        let token_file = (!cfg.token_file.as_os_str().is_empty()).then(|| cfg.token_file.clone());
        let token = match &token_file {
            Some(path) => Some(read_token(path)?),
            None => std::env::var("CBLOGS_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        let ca_cert = if cfg.ca_cert.as_os_str().is_empty() {
            None
        } else {
            Some(std::fs::read(&cfg.ca_cert).map_err(|e| SenderError::Ca {
                path: cfg.ca_cert.clone(),
                reason: e.to_string(),
            })?)
        };
        Ok(Credentials {
            token_file,
            token: RwLock::new(token.map(|t| t.trim().to_owned())),
            ca_cert,
        })
    }

    fn header(&self) -> Option<reqwest::header::HeaderValue> {
        let token = self.token.read().unwrap_or_else(|p| p.into_inner());
        let mut v =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.as_deref()?))
                .ok()?;
        // Kept out of reqwest's Debug output and any log of headers.
        v.set_sensitive(true);
        Some(v)
    }

    /// After a 401: the token file may hold a new token.
    fn reread(&self) {
        let Some(path) = &self.token_file else { return };
        match read_token(path) {
            Ok(t) => *self.token.write().unwrap_or_else(|p| p.into_inner()) = Some(t),
            Err(e) => tracing::warn!("{e}"),
        }
    }
}

fn read_token(path: &Path) -> Result<String, SenderError> {
    let text = std::fs::read_to_string(path).map_err(|e| SenderError::Token {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .ok_or_else(|| SenderError::Token {
            path: path.to_owned(),
            reason: "holds no token".into(),
        })
}

/// Why the server could not say what it holds.
#[derive(Debug)]
pub enum PublishedError {
    /// 404: a server from before published ends (or a proxy that does not
    /// route the path).
    NotServed(String),
    /// No connection, or no answer in time.
    Unreachable(String),
    /// Refused, or an answer that is not one.
    Failed(String),
}

pub struct Sender {
    client: reqwest::Client,
    credentials: Arc<Credentials>,
    /// Retries since start by why (a status code, or `unreachable`).
    retries: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    url: String,
    zstd_level: i32,
    /// One compression context, kept: making one per request (it holds
    /// hundreds of KiB of tables) cost more than compressing a quiet
    /// agent's small batches.
    compressor: std::sync::Mutex<Option<zstd::bulk::Compressor<'static>>>,
    /// Set after a 415: this server takes plain JSON only.
    plain: AtomicBool,
    retry_initial: Duration,
    retry_max: Duration,
    /// `GET` what the server holds of each source (`PUBLISHED_PATH`).
    published_url: String,
    /// Give up after failing to reach the server for this long (`None`:
    /// never, there is no other node).
    fail_over_after: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("token file {path}: {reason}")]
    Token { path: PathBuf, reason: String },
    #[error("CA certificate file {path} (ca_cert): {reason}")]
    Ca { path: PathBuf, reason: String },
}

impl Sender {
    /// A sender to `server`; with `others`, it gives up on a server it
    /// cannot reach for `ship.failover_after_ms`.
    pub fn new(
        server: &str,
        cfg: &ShipConfig,
        credentials: Arc<Credentials>,
        others: bool,
    ) -> Result<Sender, SenderError> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.request_timeout_ms.min(5_000)))
            .pool_max_idle_per_host(cfg.max_in_flight);
        if let Some(pem) = &credentials.ca_cert {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build()?;
        Ok(Sender {
            client,
            credentials,
            retries: Default::default(),
            url: format!("{}{INGEST_PATH}", server.trim_end_matches('/')),
            published_url: format!("{}{PUBLISHED_PATH}", server.trim_end_matches('/')),
            zstd_level: cfg.zstd_level,
            compressor: std::sync::Mutex::new(None),
            plain: AtomicBool::new(cfg.zstd_level == 0),
            retry_initial: Duration::from_millis(cfg.retry_initial_ms.max(1)),
            retry_max: Duration::from_millis(cfg.retry_max_ms.max(cfg.retry_initial_ms)),
            fail_over_after: others.then(|| Duration::from_millis(cfg.failover_after_ms)),
        })
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        self.url.strip_suffix(INGEST_PATH).unwrap_or(&self.url)
    }

    /// Posts `req` until it gets a final answer (retrying for ever otherwise).
    pub async fn deliver(&self, req: &IngestRequest) -> Delivery {
        let mut body = self.encode(req);
        let mut delay = self.retry_initial;
        let mut attempt = 0u32;
        let mut unreachable_since: Option<std::time::Instant> = None;
        loop {
            attempt += 1;
            let mut server_says = None;
            let mut why = "unreachable".to_owned();
            // A node that accepts connections but does not answer (stopped)
            // is failing from when the request went out, not from its timeout.
            let sent_at = std::time::Instant::now();
            let problem = match self.post(&body).await {
                Ok((status, text, retry_after)) => match self.classify(status, &text) {
                    Verdict::Final(d) => return d,
                    Verdict::Uncompressed => {
                        body = self.encode(req);
                        continue;
                    }
                    Verdict::Retry(problem) => {
                        if status == StatusCode::UNAUTHORIZED {
                            self.credentials.reread();
                        }
                        // 429 and 503 say when to come back: not sooner.
                        server_says = retry_after;
                        why = status.as_u16().to_string();
                        problem
                    }
                },
                Err(e) => {
                    let problem = format!("cannot reach {}: {}", self.url, error_chain(&e));
                    let since = *unreachable_since.get_or_insert(sent_at);
                    if self.fail_over_after.is_some_and(|d| since.elapsed() >= d) {
                        return Delivery::Unreachable { message: problem };
                    }
                    problem
                }
            };
            if server_says.is_some() || why != "unreachable" {
                // An answer: the server is there.
                unreachable_since = None;
            }
            *self
                .retries
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(why)
                .or_default() += 1;
            // Jitter: a fleet of shippers must not retry in step.
            let wait = delay
                .mul_f64(0.5 + fastrand::f64())
                .max(server_says.unwrap_or_default());
            if attempt == 1 || attempt.is_power_of_two() {
                tracing::warn!(
                    attempt,
                    retry_in_ms = wait.as_millis() as u64,
                    "{problem}; retrying"
                );
            }
            tokio::time::sleep(wait).await;
            delay = (delay * 2).min(self.retry_max);
        }
    }

    /// What the server holds of `host`'s sources, and its incarnation
    /// (one try: the caller asks again later).
    pub async fn published(&self, host: &str) -> Result<PublishedResponse, PublishedError> {
        let url = format!("{}?host={host}", self.published_url);
        let mut r = self.client.get(&url);
        if let Some(auth) = self.credentials.header() {
            r = r.header(reqwest::header::AUTHORIZATION, auth);
        }
        let resp = r.send().await.map_err(|e| {
            PublishedError::Unreachable(format!("cannot reach {url}: {}", error_chain(&e)))
        })?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let said = format!("{url} answered {status}: {text}");
            return Err(if status == reqwest::StatusCode::NOT_FOUND {
                PublishedError::NotServed(said)
            } else {
                PublishedError::Failed(said)
            });
        }
        resp.json()
            .await
            .map_err(|e| PublishedError::Failed(format!("{url}: {}", error_chain(&e))))
    }

    pub fn retries(&self) -> std::collections::BTreeMap<String, u64> {
        self.retries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn encode(&self, req: &IngestRequest) -> Body {
        // Serializing our own structs cannot fail; an empty body would be
        // refused with a clear 400 if it ever did.
        let json = serde_json::to_vec(req).unwrap_or_default();
        if self.plain.load(Ordering::Relaxed) {
            return Body {
                bytes: json.into(),
                zstd: false,
            };
        }
        let compressed = {
            let mut kept = self
                .compressor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match kept.as_mut() {
                Some(c) => c.compress(&json),
                None => zstd::bulk::Compressor::new(self.zstd_level).and_then(|mut c| {
                    let out = c.compress(&json);
                    *kept = Some(c);
                    out
                }),
            }
        };
        match compressed {
            Ok(mut bytes) => Body {
                // Made with room for the worst case (the JSON's size), and
                // kept until the answer: four such in flight were a third
                // of a quiet agent's memory.
                bytes: {
                    bytes.shrink_to_fit();
                    bytes.into()
                },
                zstd: true,
            },
            Err(_) => Body {
                bytes: json.into(),
                zstd: false,
            },
        }
    }

    async fn post(
        &self,
        body: &Body,
    ) -> Result<(StatusCode, String, Option<Duration>), reqwest::Error> {
        let mut r = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.bytes.clone());
        if body.zstd {
            r = r.header(reqwest::header::CONTENT_ENCODING, "zstd");
        }
        if let Some(auth) = self.credentials.header() {
            r = r.header(reqwest::header::AUTHORIZATION, auth);
        }
        let resp = r.send().await?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(60)));
        Ok((status, resp.text().await?, retry_after))
    }

    fn classify(&self, status: StatusCode, text: &str) -> Verdict {
        let error: Option<ErrorBody> = serde_json::from_str(text).ok();
        let message = error
            .as_ref()
            .map_or_else(|| text.chars().take(300).collect(), |e| e.error.clone());
        match status.as_u16() {
            200..=299 => match serde_json::from_str::<IngestResponse>(text) {
                Ok(r) => Verdict::Final(Delivery::Acked(r)),
                Err(e) => Verdict::Retry(format!(
                    "the server's answer is not an ingest acknowledgement ({e})"
                )),
            },
            409 => match error.and_then(|e| e.held_end) {
                Some(held_end) => Verdict::Final(Delivery::Gap { held_end, message }),
                None => Verdict::Retry(format!("409 without held_end: {message}")),
            },
            413 => Verdict::Final(Delivery::TooLarge { message }),
            415 if !self.plain.swap(true, Ordering::Relaxed) => {
                tracing::warn!("the server does not take zstd bodies ({message}); sending plain JSON from now on");
                Verdict::Uncompressed
            }
            401 | 403 | 404 | 408 | 429 => Verdict::Retry(format!("{status}: {message}")),
            400..=499 => Verdict::Final(Delivery::Refused {
                status: status.as_u16(),
                message,
            }),
            _ => Verdict::Retry(format!("{status}: {message}")),
        }
    }
}

/// An encoded body; cloning it for a retry does not copy it.
struct Body {
    bytes: bytes::Bytes,
    zstd: bool,
}

enum Verdict {
    Final(Delivery),
    Uncompressed,
    Retry(String),
}

/// An error with its causes, on one line ("connection refused" is deep down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}
