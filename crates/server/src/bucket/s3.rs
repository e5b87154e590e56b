//! An S3-compatible store from `[object_store]`: AWS S3, MinIO,
//! SeaweedFS, Ceph RGW. Create-only puts are `If-None-Match: *`, which
//! they all honour.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use serde::Deserialize;

use crate::config::ObjectStoreConfig;

/// What a credentials file holds.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

/// The store `config` names, and where it is (for messages).
pub(super) fn open(
    config: &ObjectStoreConfig,
) -> Result<(Arc<dyn ObjectStore>, String), Box<dyn std::error::Error + Send + Sync>> {
    let rest = config
        .url
        .strip_prefix("s3://")
        .ok_or("object_store.url must start with s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("object_store.url names no bucket (s3://bucket/prefix)".into());
    }
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&config.region)
        .with_allow_http(config.allow_http)
        // A request fails within seconds, not minutes: the committer
        // retries the whole publish each round, and a search that needs the
        // store while it is down answers with an error naming it.
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        })
        .with_client_options(
            ClientOptions::new()
                .with_timeout(Duration::from_secs(30))
                .with_connect_timeout(Duration::from_secs(5))
                .with_allow_http(config.allow_http),
        );
    if !config.endpoint.is_empty() {
        builder = builder.with_endpoint(&config.endpoint);
    }
    let credentials = if config.credentials_file.as_os_str().is_empty() {
        from_environment()
    } else {
        Some(read_credentials(&config.credentials_file)?)
    };
    if let Some(c) = credentials {
        builder = builder
            .with_access_key_id(c.access_key_id)
            .with_secret_access_key(c.secret_access_key);
        if let Some(token) = c.session_token {
            builder = builder.with_token(token);
        }
    }
    let s3 = builder.build()?;
    let endpoint = if config.endpoint.is_empty() {
        format!("AWS S3, {}", config.region)
    } else {
        config.endpoint.clone()
    };
    let location = format!("{} at {endpoint}", config.url.trim_end_matches('/'));
    let prefix = prefix.trim_matches('/');
    let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
        Arc::new(s3)
    } else {
        Arc::new(PrefixStore::new(s3, prefix))
    };
    Ok((store, location))
}

fn from_environment() -> Option<Credentials> {
    let var = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    Some(Credentials {
        access_key_id: var("AWS_ACCESS_KEY_ID")?,
        secret_access_key: var("AWS_SECRET_ACCESS_KEY")?,
        session_token: var("AWS_SESSION_TOKEN"),
    })
}

fn read_credentials(path: &Path) -> Result<Credentials, Box<dyn std::error::Error + Send + Sync>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("object_store.credentials_file {}: {e}", path.display()))?;
    toml::from_str(&text)
        .map_err(|e| format!("object_store.credentials_file {}: {e}", path.display()).into())
}
