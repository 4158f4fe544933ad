//! The node's blob store: one [`Blobs`] store per node (`[blobs]` in the config: files
//! under `<data_dir>/blobs` by default, or memory), the blob service ([`BlobService`])
//! served at `/api/v1/blobs/{namespace}/{key}` ([`http`]) and as gRPC
//! `plexspaces.v1.BlobService` ([`grpc`]). Uploads and downloads stream: a blob is never
//! held whole in the node's memory, and an upload larger than `blobs.max_blob_bytes` is
//! aborted (413) and stores nothing.
//!
//! Every request acts for the tenant of its verified token: objects live at
//! `{tenant}/{namespace}/{key}`.

pub mod grpc;
pub mod http;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use plexspaces_storage::{BlobBackend, BlobMeta, Blobs};

use crate::config::{BlobsBackend, NodeConfig};
use crate::error::{Error, Result};
use crate::kv::scope;
use crate::service::Caller;

/// The directory of the `local` blob backend.
pub fn root(config: &NodeConfig) -> std::path::PathBuf {
    config
        .blobs
        .root
        .clone()
        .unwrap_or_else(|| config.data_dir.join("blobs"))
}

/// Opens the blob store `config` names.
pub fn open(config: &NodeConfig) -> Result<Blobs> {
    let backend = match config.blobs.backend {
        BlobsBackend::Local => BlobBackend::Local { root: root(config) },
        BlobsBackend::Memory => BlobBackend::Memory,
    };
    Blobs::open(&backend).map_err(|e| Error::Config(format!("cannot open the blob store: {e}")))
}

/// The blob service: the caller's scopes on the node's store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct BlobService {
    blobs: Blobs,
    max_blob_bytes: u64,
}

impl BlobService {
    /// The service over `blobs`, refusing uploads over `max_blob_bytes`.
    pub fn new(blobs: Blobs, max_blob_bytes: u64) -> Self {
        BlobService {
            blobs,
            max_blob_bytes,
        }
    }

    /// The store.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Stores the chunks of `data` at `key` (replacing what was there). A stream error or
    /// more than `max_blob_bytes` aborts the upload and stores nothing.
    pub async fn put<S, E>(&self, caller: &Caller, ns: &str, key: &str, data: S) -> Result<BlobMeta>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let scope = scope(caller, ns)?;
        let max = self.max_blob_bytes;
        let too_large = Arc::new(AtomicBool::new(false));
        let flag = too_large.clone();
        let mut seen = 0u64;
        let limited = data.map(move |chunk| {
            let bytes = chunk.map_err(|e| e.to_string())?;
            seen += bytes.len() as u64;
            if seen > max {
                flag.store(true, Ordering::Release);
                return Err(format!("blob larger than {max} bytes"));
            }
            Ok(bytes)
        });
        match self.blobs.put_stream(&scope, key, limited).await {
            Ok(meta) => Ok(meta),
            Err(_) if too_large.load(Ordering::Acquire) => Err(Error::PayloadTooLarge(
                usize::try_from(max).unwrap_or(usize::MAX),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// The blob as a stream of chunks.
    pub async fn get(
        &self,
        caller: &Caller,
        ns: &str,
        key: &str,
    ) -> Result<BoxStream<'static, plexspaces_storage::Result<Bytes>>> {
        Ok(self.blobs.get_stream(&scope(caller, ns)?, key).await?)
    }

    /// Size and tag.
    pub async fn head(&self, caller: &Caller, ns: &str, key: &str) -> Result<BlobMeta> {
        Ok(self.blobs.head(&scope(caller, ns)?, key).await?)
    }

    /// Removes the blob (a missing one is not an error).
    pub async fn delete(&self, caller: &Caller, ns: &str, key: &str) -> Result<()> {
        Ok(self.blobs.delete(&scope(caller, ns)?, key).await?)
    }

    /// Blobs under `prefix`, in key order.
    pub async fn list(&self, caller: &Caller, ns: &str, prefix: &str) -> Result<Vec<BlobMeta>> {
        Ok(self.blobs.list(&scope(caller, ns)?, prefix).await?)
    }
}
