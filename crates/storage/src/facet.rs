//! Facets that give an actor key-value and blob storage scoped to its tenant and namespace.
//!
//! Attach a [`KeyValueFacet`] or [`BlobStorageFacet`] at spawn time; a handler reaches the
//! store with `ctx.service::<ScopedKeyValue>()` / `ctx.service::<ScopedBlobs>()`. The
//! scope is fixed when the facet is made, so an actor cannot name another tenant's keys.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plexspaces_core::Facet;

use crate::{BlobMeta, Blobs, Cas, KeyValue, PutOptions, Result, Scope, Versioned};

/// A key-value store seen through one scope.
#[derive(Clone)]
pub struct ScopedKeyValue {
    store: Arc<dyn KeyValue>,
    scope: Scope,
}

impl std::fmt::Debug for ScopedKeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedKeyValue")
            .field("backend", &self.store.backend())
            .field("scope", &self.scope)
            .finish()
    }
}

impl ScopedKeyValue {
    /// `store` restricted to `scope`.
    pub fn new(store: Arc<dyn KeyValue>, scope: Scope) -> Self {
        ScopedKeyValue { store, scope }
    }

    /// The scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// See [`KeyValue::get`].
    pub async fn get(&self, key: &str) -> Result<Option<Versioned>> {
        self.store.get(&self.scope, key).await
    }

    /// See [`KeyValue::put`] (no expiry, no fence).
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<u64> {
        self.store
            .put(&self.scope, key, value, PutOptions::default())
            .await
    }

    /// See [`KeyValue::put`].
    pub async fn put_with(&self, key: &str, value: &[u8], options: PutOptions) -> Result<u64> {
        self.store.put(&self.scope, key, value, options).await
    }

    /// See [`KeyValue::delete`].
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.store.delete(&self.scope, key).await
    }

    /// See [`KeyValue::list`].
    pub async fn list(&self, prefix: &str, limit: usize) -> Result<Vec<(String, Versioned)>> {
        self.store.list(&self.scope, prefix, limit).await
    }

    /// See [`KeyValue::compare_and_swap`].
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Cas> {
        self.store
            .compare_and_swap(&self.scope, key, expected, value, ttl)
            .await
    }

    /// See [`KeyValue::increment`].
    pub async fn increment(&self, key: &str, delta: i64) -> Result<i64> {
        self.store.increment(&self.scope, key, delta).await
    }
}

/// Gives an actor a [`ScopedKeyValue`].
#[derive(Debug)]
pub struct KeyValueFacet {
    scoped: Arc<ScopedKeyValue>,
}

impl KeyValueFacet {
    /// A facet over `store`, scoped to `scope`.
    pub fn new(store: Arc<dyn KeyValue>, scope: Scope) -> Arc<Self> {
        Arc::new(KeyValueFacet {
            scoped: Arc::new(ScopedKeyValue::new(store, scope)),
        })
    }
}

#[async_trait]
impl Facet for KeyValueFacet {
    fn name(&self) -> &'static str {
        "keyvalue"
    }

    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.scoped.clone())
    }
}

/// A blob store seen through one scope.
#[derive(Debug, Clone)]
pub struct ScopedBlobs {
    blobs: Blobs,
    scope: Scope,
}

impl ScopedBlobs {
    /// `blobs` restricted to `scope`.
    pub fn new(blobs: Blobs, scope: Scope) -> Self {
        ScopedBlobs { blobs, scope }
    }

    /// See [`Blobs::put`].
    pub async fn put(&self, key: &str, data: Bytes) -> Result<BlobMeta> {
        self.blobs.put(&self.scope, key, data).await
    }

    /// See [`Blobs::get`].
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        self.blobs.get(&self.scope, key).await
    }

    /// See [`Blobs::head`].
    pub async fn head(&self, key: &str) -> Result<BlobMeta> {
        self.blobs.head(&self.scope, key).await
    }

    /// See [`Blobs::delete`].
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.blobs.delete(&self.scope, key).await
    }

    /// See [`Blobs::list`].
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobMeta>> {
        self.blobs.list(&self.scope, prefix).await
    }

    /// The unscoped store and the scope, for the streaming calls.
    pub fn parts(&self) -> (&Blobs, &Scope) {
        (&self.blobs, &self.scope)
    }
}

/// Gives an actor a [`ScopedBlobs`].
#[derive(Debug)]
pub struct BlobStorageFacet {
    scoped: Arc<ScopedBlobs>,
}

impl BlobStorageFacet {
    /// A facet over `blobs`, scoped to `scope`.
    pub fn new(blobs: Blobs, scope: Scope) -> Arc<Self> {
        Arc::new(BlobStorageFacet {
            scoped: Arc::new(ScopedBlobs::new(blobs, scope)),
        })
    }
}

#[async_trait]
impl Facet for BlobStorageFacet {
    fn name(&self) -> &'static str {
        "blobstorage"
    }

    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.scoped.clone())
    }
}
