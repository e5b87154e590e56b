//! `Sender`: posts one ingest request until the server answers something
//! final. While `cblogsd` is unreachable, times out or answers 5xx (or a
//! 4xx that a retry may cure: 408, 429, or a proxy's 401/403/404 while it is
//! being set up), the request is retried with exponential backoff and
//! jitter; the server drops what it already holds, so a retry is always
//! safe. Answers that no retry of the same body can change are returned
//! for the caller to act on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cblogs_core::wire::{ErrorBody, IngestRequest, IngestResponse, INGEST_PATH};
use reqwest::StatusCode;

use crate::config::ShipConfig;

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
}

pub struct Sender {
    client: reqwest::Client,
    url: String,
    zstd_level: i32,
    /// Set after a 415: this server takes plain JSON only.
    plain: AtomicBool,
    retry_initial: Duration,
    retry_max: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum SenderError {
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl Sender {
    pub fn new(server: &str, cfg: &ShipConfig) -> Result<Sender, SenderError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.request_timeout_ms))
            .connect_timeout(Duration::from_millis(cfg.request_timeout_ms.min(5_000)))
            .pool_max_idle_per_host(cfg.max_in_flight)
            .build()?;
        Ok(Sender {
            client,
            url: format!("{}{INGEST_PATH}", server.trim_end_matches('/')),
            zstd_level: cfg.zstd_level,
            plain: AtomicBool::new(cfg.zstd_level == 0),
            retry_initial: Duration::from_millis(cfg.retry_initial_ms.max(1)),
            retry_max: Duration::from_millis(cfg.retry_max_ms.max(cfg.retry_initial_ms)),
        })
    }

    /// Posts `req` until it gets a final answer (retrying for ever otherwise).
    pub async fn deliver(&self, req: &IngestRequest) -> Delivery {
        let mut body = self.encode(req);
        let mut delay = self.retry_initial;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let problem = match self.post(&body).await {
                Ok((status, text)) => match self.classify(status, &text) {
                    Verdict::Final(d) => return d,
                    Verdict::Uncompressed => {
                        body = self.encode(req);
                        continue;
                    }
                    Verdict::Retry(problem) => problem,
                },
                Err(e) => format!("cannot reach {}: {}", self.url, error_chain(&e)),
            };
            // Jitter: a fleet of shippers must not retry in step.
            let wait = delay.mul_f64(0.5 + fastrand::f64());
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
        match zstd::bulk::compress(&json, self.zstd_level) {
            Ok(bytes) => Body {
                bytes: bytes.into(),
                zstd: true,
            },
            Err(_) => Body {
                bytes: json.into(),
                zstd: false,
            },
        }
    }

    async fn post(&self, body: &Body) -> Result<(StatusCode, String), reqwest::Error> {
        let mut r = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.bytes.clone());
        if body.zstd {
            r = r.header(reqwest::header::CONTENT_ENCODING, "zstd");
        }
        let resp = r.send().await?;
        let status = resp.status();
        Ok((status, resp.text().await?))
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
