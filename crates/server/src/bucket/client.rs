//! [`Bucket`]: the requests the service makes of its object store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::durable::sync_object;
use super::runtime::IoRuntime;
use crate::config::ObjectStoreConfig;
use crate::metrics::{emit, ObjectStoreRequest};

/// Files up to this size are uploaded with one PUT; bigger ones in parts
/// of this size (S3's parts are at least 5 MiB), two on their way at once
/// (what an upload holds in memory). Bigger parts are fewer requests: a
/// split's blocks are most of its PUTs.
const PART_BYTES: usize = 32 << 20;
const PARTS_IN_FLIGHT: usize = 2;

/// A big object is read as ranged GETs of this size, this many at once:
/// one GET is bounded by one connection's speed, several are not (a cold
/// split index is read while someone waits for a search).
const CHUNK_BYTES: u64 = 4 << 20;
const CHUNKS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("object store {location}: {op} {key}: {}", one_line(source))]
    Request {
        location: String,
        op: &'static str,
        key: String,
        /// Boxed: `object_store`'s error is large, and every result carries it.
        source: Box<object_store::Error>,
    },
    #[error("object store {location}: {key} was written but cannot be synced to disk: {source}")]
    Sync {
        location: String,
        key: String,
        source: std::io::Error,
    },
    #[error("object store {location}: downloading {key} to {path}: {source}")]
    Download {
        location: String,
        key: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object store {location}: uploading {key}: {source}")]
    Upload {
        location: String,
        key: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("object store {location}: cannot open: {source}")]
    Open {
        location: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// An error's text on one line (a store's XML answer has several).
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl BucketError {
    /// The HTTP status the store answered with, if it answered: found in
    /// the text of the HTTP client's error, a few sources down.
    fn status(&self) -> Option<u16> {
        let BucketError::Request { source, .. } = self else {
            return None;
        };
        let mut e: Option<&(dyn std::error::Error + 'static)> = Some(&**source);
        while let Some(err) = e {
            let text = err.to_string();
            if let Some(at) = text.find("status code: ") {
                let code = &text[at + "status code: ".len()..];
                return code.get(..3).and_then(|c| c.parse().ok());
            }
            e = err.source();
        }
        None
    }

    /// Whether the request got no answer a retry could not change: the
    /// connection was refused, reset or timed out, or the store said it
    /// is unavailable (5xx). A refusal (credentials, a missing bucket) is
    /// not.
    pub fn is_unreachable(&self) -> bool {
        match self {
            BucketError::Request { source, .. } => {
                matches!(**source, object_store::Error::Generic { .. })
                    && self.status().is_none_or(|s| s >= 500)
            }
            _ => false,
        }
    }

    /// The object asked for is not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, BucketError::Request { source, .. } if matches!(**source, object_store::Error::NotFound { .. }))
    }

    /// What to do about a refusal, when the store's answer says.
    pub fn hint(&self) -> Option<&'static str> {
        let text = match self {
            BucketError::Request { source, .. } => source.to_string(),
            _ => return None,
        };
        if text.contains("NoSuchBucket") {
            Some("the bucket does not exist: create it, or correct object_store.url")
        } else if [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ]
        .iter()
        .any(|c| text.contains(c))
            || matches!(self.status(), Some(401 | 403))
        {
            Some("the store refused the credentials: check object_store.credentials_file, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        } else {
            None
        }
    }
}

/// An object store under a key prefix, with blocking calls (see the
/// module's doc). Keys are `/`-separated, relative to the prefix.
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    /// Where it is, for messages: a directory or a URL.
    location: String,
    /// The directory of a local store: its puts are synced (`durable.rs`).
    local_root: Option<PathBuf>,
    runtime: IoRuntime,
}

impl Bucket {
    /// The store `config` names: an S3-compatible one, or (no url) the
    /// embedded default under `data_dir/bucket`.
    pub fn open(config: &ObjectStoreConfig, data_dir: &Path) -> Result<Bucket, BucketError> {
        if config.url.is_empty() {
            return Bucket::local(&data_dir.join("bucket"));
        }
        let open = |source| BucketError::Open {
            location: config.url.clone(),
            source,
        };
        let (store, location) = super::s3::open(config).map_err(open)?;
        let runtime = IoRuntime::new().map_err(|e| open(e.into()))?;
        Ok(Bucket {
            store,
            location,
            local_root: None,
            runtime,
        })
    }

    /// The embedded default: objects are files under `root` (created if needed).
    pub fn local(root: &Path) -> Result<Bucket, BucketError> {
        let location = root.display().to_string();
        let open = |source: Box<dyn std::error::Error + Send + Sync>| BucketError::Open {
            location: location.clone(),
            source,
        };
        std::fs::create_dir_all(root).map_err(|e| open(e.into()))?;
        let store = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| open(e.into()))?
            // Deleting a split's objects leaves no empty folders behind.
            .with_automatic_cleanup(true);
        let runtime = IoRuntime::new().map_err(|e| open(e.into()))?;
        Ok(Bucket {
            store: Arc::new(store),
            location,
            local_root: Some(root.to_owned()),
            runtime,
        })
    }

    /// Where the store is, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Whether the store is a directory on this machine (the embedded default).
    pub fn is_local(&self) -> bool {
        self.local_root.is_some()
    }

    /// Where object `key` is on this machine's disk, if the store is a
    /// local one: readers then open it in place (no copy in a cache).
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|root| root.join(key))
    }

    /// Writes the file at `path` as object `key` (replacing one of that
    /// name: an upload that is retried). On the local store the file is
    /// linked into place, not copied, and synced like every put.
    pub fn upload_file(&self, key: &str, path: &Path) -> Result<(), BucketError> {
        let Some(root) = &self.local_root else {
            let sent = self.runtime.wait(self.send_file(key, path));
            return sent.map_err(|source| BucketError::Upload {
                location: self.location.clone(),
                key: key.to_owned(),
                source,
            });
        };
        let dest = root.join(key);
        let link = || -> std::io::Result<()> {
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match std::fs::remove_file(&dest) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            std::fs::hard_link(path, &dest)?;
            sync_object(root, key)
        };
        let linked = link();
        emit(ObjectStoreRequest {
            kind: "put",
            ok: linked.is_ok(),
        });
        linked.map_err(|source| BucketError::Sync {
            location: self.location.clone(),
            key: key.to_owned(),
            source,
        })
    }

    fn failed(&self, op: &'static str, key: &str, source: object_store::Error) -> BucketError {
        emit(ObjectStoreRequest {
            kind: op,
            ok: false,
        });
        BucketError::Request {
            location: self.location.clone(),
            op,
            key: key.to_owned(),
            source: Box::new(source),
        }
    }

    /// Writes `key` only if no object has that name (`If-None-Match: *`):
    /// of two writers of one key, exactly one wins. Returns false when the
    /// key was taken already.
    pub fn create(&self, key: &str, bytes: Bytes) -> Result<bool, BucketError> {
        self.put_with(key, bytes, PutMode::Create)
    }

    /// Writes `key`, replacing an object of that name: for small state
    /// that one writer keeps current (an alert group's, `alert/shared.rs`).
    pub fn put(&self, key: &str, bytes: Bytes) -> Result<(), BucketError> {
        self.put_with(key, bytes, PutMode::Overwrite).map(drop)
    }

    /// One PUT in `mode`, synced on the local store; false when `mode` is
    /// `Create` and the key was taken.
    fn put_with(&self, key: &str, bytes: Bytes, mode: PutMode) -> Result<bool, BucketError> {
        let path = ObjectPath::from(key);
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let put = self.runtime.wait(self.store.put_opts(
            &path,
            PutPayload::from_bytes(bytes),
            opts,
        ));
        match put {
            Ok(_) => emit(ObjectStoreRequest {
                kind: "put",
                ok: true,
            }),
            Err(object_store::Error::AlreadyExists { .. }) => {
                emit(ObjectStoreRequest {
                    kind: "put",
                    ok: true,
                });
                return Ok(false);
            }
            Err(e) => return Err(self.failed("put", key, e)),
        }
        if let Some(root) = &self.local_root {
            sync_object(root, key).map_err(|source| BucketError::Sync {
                location: self.location.clone(),
                key: key.to_owned(),
                source,
            })?;
        }
        Ok(true)
    }

    /// One PUT, or a multipart upload in [`PART_BYTES`] parts; each PUT
    /// (part) counted.
    async fn send_file(
        &self,
        key: &str,
        path: &Path,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use tokio::io::AsyncReadExt;
        let object = ObjectPath::from(key);
        let count = |ok: bool| emit(ObjectStoreRequest { kind: "put", ok });
        let len = tokio::fs::metadata(path).await?.len();
        if len <= PART_BYTES as u64 {
            let bytes = tokio::fs::read(path).await?;
            let put = self.store.put(&object, PutPayload::from(bytes)).await;
            count(put.is_ok());
            put?;
            return Ok(());
        }
        // Starting a multipart upload is a request of its own, and each
        // part one more.
        let upload = self.store.put_multipart(&object).await;
        count(upload.is_ok());
        let mut writer = object_store::WriteMultipart::new_with_chunk_size(upload?, PART_BYTES);
        let sent: Result<(), Box<dyn std::error::Error + Send + Sync>> = async {
            let mut file = tokio::fs::File::open(path).await?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = file.read(&mut buf).await?;
                if n == 0 {
                    return Ok(());
                }
                writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                writer.write(&buf[..n]);
            }
        }
        .await;
        if let Err(e) = sent {
            // An upload left open is kept (and billed) by S3 until aborted.
            let _ = writer.abort().await;
            return Err(e);
        }
        let done = writer.finish().await;
        // Each part, and the request that completes the upload.
        for _ in 0..=len.div_ceil(PART_BYTES as u64) {
            count(done.is_ok());
        }
        done?;
        Ok(())
    }

    /// Bytes `range` of object `key`.
    pub fn get_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Bytes, BucketError> {
        let path = ObjectPath::from(key);
        let got = self.runtime.wait(self.store.get_range(&path, range));
        let bytes = got.map_err(|e| self.failed("get", key, e))?;
        emit(ObjectStoreRequest {
            kind: "get",
            ok: true,
        });
        Ok(bytes)
    }

    /// Bytes `0..len` of object `key`, read in [`CHUNK_BYTES`] ranges,
    /// [`CHUNKS_IN_FLIGHT`] at once.
    pub fn get_in_chunks(&self, key: &str, len: u64) -> Result<Bytes, BucketError> {
        self.get_range_in_chunks(key, 0..len)
    }

    /// Bytes `range` of object `key`, read as [`Bucket::get_in_chunks`] does.
    fn get_range_in_chunks(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, BucketError> {
        let len = range.end.saturating_sub(range.start);
        if len <= CHUNK_BYTES {
            return self.get_range(key, range);
        }
        let path = ObjectPath::from(key);
        let end = range.end;
        let ranges = range
            .step_by(CHUNK_BYTES as usize)
            .map(|at| at..(at + CHUNK_BYTES).min(end));
        let chunks = self.runtime.wait(async {
            futures_util::stream::iter(ranges)
                .map(|range| {
                    let path = &path;
                    async move {
                        let got = self.store.get_range(path, range).await;
                        emit(ObjectStoreRequest {
                            kind: "get",
                            ok: got.is_ok(),
                        });
                        got
                    }
                })
                .buffered(CHUNKS_IN_FLIGHT)
                .try_collect::<Vec<Bytes>>()
                .await
        });
        let chunks = chunks.map_err(|e| BucketError::Request {
            location: self.location.clone(),
            op: "get",
            key: key.to_owned(),
            source: Box::new(e),
        })?;
        let mut whole = bytes::BytesMut::with_capacity(len as usize);
        for c in chunks {
            whole.extend_from_slice(&c);
        }
        Ok(whole.freeze())
    }

    /// Bytes `0..len` of object `key` written to the file at `path` (made
    /// or replaced), [`CHUNK_BYTES`] × [`CHUNKS_IN_FLIGHT`] at a time: a
    /// big object is never whole in memory.
    pub fn download_file(&self, key: &str, len: u64, path: &Path) -> Result<(), BucketError> {
        let step = CHUNK_BYTES * CHUNKS_IN_FLIGHT as u64;
        let io = |source| BucketError::Download {
            location: self.location.clone(),
            key: key.to_owned(),
            path: path.to_owned(),
            source,
        };
        let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
        let mut at = 0;
        while at < len {
            let end = (at + step).min(len);
            let bytes = self.get_range_in_chunks(key, at..end)?;
            std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
            at = end;
        }
        std::io::Write::flush(&mut file).map_err(io)
    }

    /// The whole object `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, BucketError> {
        let path = ObjectPath::from(key);
        let got = self.runtime.wait(async {
            match self.store.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let bytes = got.map_err(|e| self.failed("get", key, e))?;
        emit(ObjectStoreRequest {
            kind: "get",
            ok: true,
        });
        Ok(bytes)
    }

    /// The keys under `prefix` (a folder: ends with `/`) that sort after
    /// `after`, in order.
    pub fn list(&self, prefix: &str, after: Option<&str>) -> Result<Vec<String>, BucketError> {
        let folder = ObjectPath::from(prefix.trim_end_matches('/'));
        let listed = self.runtime.wait(async {
            let stream = match after {
                Some(after) => self
                    .store
                    .list_with_offset(Some(&folder), &ObjectPath::from(after)),
                None => self.store.list(Some(&folder)),
            };
            stream.try_collect::<Vec<_>>().await
        });
        let metas = listed.map_err(|e| self.failed("list", prefix, e))?;
        emit(ObjectStoreRequest {
            kind: "list",
            ok: true,
        });
        let mut keys: Vec<String> = metas.into_iter().map(|m| m.location.to_string()).collect();
        // The local store lists in directory order.
        keys.sort_unstable();
        Ok(keys)
    }

    /// Deletes `key`; a key that is already gone is no error.
    pub fn delete(&self, key: &str) -> Result<(), BucketError> {
        let path = ObjectPath::from(key);
        match self.runtime.wait(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                emit(ObjectStoreRequest {
                    kind: "delete",
                    ok: true,
                });
                Ok(())
            }
            Err(e) => Err(self.failed("delete", key, e)),
        }
    }
}
