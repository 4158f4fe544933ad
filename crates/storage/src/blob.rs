//! Blob storage on the `object_store` crate: [`Blobs`].
//!
//! Paths are `{tenant}/{namespace}/{key}`, so scopes never share objects. Uploads and
//! downloads can stream: [`Blobs::put_stream`] writes in multipart chunks without holding
//! the whole blob in memory, [`Blobs::get_stream`] yields chunks as they arrive.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::scope::{check_key, check_prefix};
use crate::{Error, Result, Scope};

const NAME: &str = "object_store";

/// Which store holds the blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobBackend {
    /// files under a directory (created if missing): the default
    Local {
        /// the root directory
        root: PathBuf,
    },
    /// this process's memory (lost on exit)
    Memory,
    /// an S3-compatible service: not built yet, [`Blobs::open`] answers
    /// [`Error::Unsupported`]
    S3 {
        /// bucket name
        bucket: String,
        /// endpoint URL
        endpoint: String,
    },
}

/// What a stored blob is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobMeta {
    /// key within the scope
    pub key: String,
    /// size in bytes
    pub size: u64,
    /// the store's entity tag, if it has one
    pub e_tag: Option<String>,
}

/// The longest segment of a blob key, in bytes: a filesystem name holds 255, and the
/// filesystem backend writes through a staging file named `<segment>#<n>`.
pub const MAX_BLOB_KEY_SEGMENT: usize = 240;

/// Blob storage. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("store", &self.store.to_string())
            .finish()
    }
}

fn map_err(e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { path, .. } => Error::NotFound(format!("blob {path}")),
        object_store::Error::InvalidPath { source } => {
            Error::invalid("blob key", source.to_string())
        }
        object_store::Error::NotImplemented { .. } => {
            Error::Unsupported("the blob store does not implement this call".into())
        }
        other => Error::Backend {
            backend: NAME,
            message: other.to_string(),
        },
    }
}

/// Upload part size for [`Blobs::put_stream`].
const PART: usize = 5 * 1024 * 1024;

impl Blobs {
    /// Open the store `backend` names.
    pub fn open(backend: &BlobBackend) -> Result<Self> {
        let store: Arc<dyn ObjectStore> = match backend {
            BlobBackend::Local { root } => {
                std::fs::create_dir_all(root).map_err(|e| Error::Backend {
                    backend: NAME,
                    message: format!("create {}: {e}", root.display()),
                })?;
                Arc::new(LocalFileSystem::new_with_prefix(root).map_err(map_err)?)
            }
            BlobBackend::Memory => Arc::new(InMemory::new()),
            BlobBackend::S3 { .. } => {
                return Err(Error::Unsupported(
                    "S3-compatible blob storage is not built yet".into(),
                ))
            }
        };
        Ok(Blobs { store })
    }

    /// In memory.
    pub fn memory() -> Self {
        Blobs {
            store: Arc::new(InMemory::new()),
        }
    }

    fn path(scope: &Scope, key: &str) -> Result<Path> {
        check_key("blob key", key)?;
        // Validate the key as a relative path ("a/b.txt"): no empty, "." or ".." segments.
        let rel = Path::parse(key).map_err(|e| Error::invalid("blob key", e.to_string()))?;
        if rel.as_ref() != key {
            return Err(Error::invalid(
                "blob key",
                format!("{key:?} is not a normalised relative path"),
            ));
        }
        // Every segment becomes a file or directory name on the filesystem backend, where
        // names longer than 255 bytes are refused (staging names add a suffix); the same rule holds
        // on every backend.
        if let Some(long) = key
            .split('/')
            .find(|part| part.len() > MAX_BLOB_KEY_SEGMENT)
        {
            return Err(Error::invalid(
                "blob key",
                format!(
                    "segment of {} bytes; each '/'-separated segment may be at most {MAX_BLOB_KEY_SEGMENT} bytes",
                    long.len()
                ),
            ));
        }
        Ok(Path::from_iter(
            [scope.tenant(), scope.namespace()]
                .into_iter()
                .map(Into::into)
                .chain(rel.parts()),
        ))
    }

    fn base(scope: &Scope) -> Path {
        Path::from_iter([scope.tenant(), scope.namespace()])
    }

    /// Store `data` at `key`, replacing what was there.
    pub async fn put(&self, scope: &Scope, key: &str, data: Bytes) -> Result<BlobMeta> {
        let path = Self::path(scope, key)?;
        let size = data.len() as u64;
        let done = self
            .store
            .put(&path, PutPayload::from_bytes(data))
            .await
            .map_err(map_err)?;
        Ok(BlobMeta {
            key: key.to_owned(),
            size,
            e_tag: done.e_tag,
        })
    }

    /// Store a stream of chunks at `key` as a multipart upload; on a stream error the
    /// upload is aborted and nothing is stored.
    pub async fn put_stream<S, E>(&self, scope: &Scope, key: &str, mut data: S) -> Result<BlobMeta>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let path = Self::path(scope, key)?;
        let upload = self.store.put_multipart(&path).await.map_err(map_err)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut size = 0u64;
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(bytes) => {
                    size += bytes.len() as u64;
                    writer.wait_for_capacity(4).await.map_err(map_err)?;
                    writer.put(bytes);
                }
                Err(e) => {
                    let message = format!("upload stream failed: {e}");
                    writer.abort().await.map_err(map_err)?;
                    return Err(Error::Backend {
                        backend: NAME,
                        message,
                    });
                }
            }
        }
        let done = writer.finish().await.map_err(map_err)?;
        Ok(BlobMeta {
            key: key.to_owned(),
            size,
            e_tag: done.e_tag,
        })
    }

    /// The whole blob.
    pub async fn get(&self, scope: &Scope, key: &str) -> Result<Bytes> {
        let path = Self::path(scope, key)?;
        let got = self.store.get(&path).await.map_err(map_err)?;
        got.bytes().await.map_err(map_err)
    }

    /// The blob as a stream of chunks.
    pub async fn get_stream(
        &self,
        scope: &Scope,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let path = Self::path(scope, key)?;
        let got = self.store.get(&path).await.map_err(map_err)?;
        Ok(got.into_stream().map_err(map_err).boxed())
    }

    /// Size and tag, without the data.
    pub async fn head(&self, scope: &Scope, key: &str) -> Result<BlobMeta> {
        let path = Self::path(scope, key)?;
        let meta = self.store.head(&path).await.map_err(map_err)?;
        Ok(BlobMeta {
            key: key.to_owned(),
            size: meta.size,
            e_tag: meta.e_tag,
        })
    }

    /// Remove the blob; deleting a missing blob is not an error.
    pub async fn delete(&self, scope: &Scope, key: &str) -> Result<()> {
        let path = Self::path(scope, key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    /// Blobs whose key starts with `prefix`, in key order.
    pub async fn list(&self, scope: &Scope, prefix: &str) -> Result<Vec<BlobMeta>> {
        check_prefix(prefix)?;
        let base = Self::base(scope);
        let base_str = format!("{}/", base.as_ref());
        let mut out: Vec<BlobMeta> = self
            .store
            .list(Some(&base))
            .map_err(map_err)
            .try_filter_map(|m| {
                let key = m
                    .location
                    .as_ref()
                    .strip_prefix(&base_str)
                    .map(str::to_owned);
                futures::future::ready(Ok(key.filter(|k| k.starts_with(prefix)).map(|key| {
                    BlobMeta {
                        key,
                        size: m.size,
                        e_tag: m.e_tag,
                    }
                })))
            })
            .try_collect()
            .await?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}
