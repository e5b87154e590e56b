//! [`Bucket`]: the requests the service makes of its object store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::durable::sync_object;
use super::runtime::IoRuntime;
use crate::metrics::{emit, ObjectStoreRequest};

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error("object store {location}: {op} {key}: {source}")]
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
    #[error("object store {location}: cannot open: {source}")]
    Open {
        location: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
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
    /// The embedded default: objects are files under `root` (created if needed).
    pub fn local(root: &Path) -> Result<Bucket, BucketError> {
        let location = root.display().to_string();
        let open = |source: Box<dyn std::error::Error + Send + Sync>| BucketError::Open {
            location: location.clone(),
            source,
        };
        std::fs::create_dir_all(root).map_err(|e| open(e.into()))?;
        let store = LocalFileSystem::new_with_prefix(root).map_err(|e| open(e.into()))?;
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
        let path = ObjectPath::from(key);
        let opts = PutOptions {
            mode: PutMode::Create,
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
