//! The node's key-value store: one [`KeyValue`] backend per node (`[kv]` in the config:
//! SQLite at `<data_dir>/kv.db` by default, memory, PostgreSQL or Redis), the key-value
//! service ([`KvService`]) served at `/api/v1/kv/{namespace}/{key}` ([`http`]) and as gRPC
//! `plexspaces.v1.KeyValueService` ([`grpc`]), and offered to the node's actors as a node
//! service (`ctx.service::<NodeStorage>()`, see [`crate::kv::NodeStorage`]).
//!
//! Every request acts for the tenant of its verified token (or `default` with auth
//! disabled): the scope of a request is `(that tenant, namespace)`, so a tenant cannot name
//! another tenant's keys. Errors map through [`crate::error::status_of`].

pub mod grpc;
pub mod http;

use std::sync::Arc;
use std::time::Duration;

use plexspaces_storage::{
    Cas, KeyValue, Locks, MemoryKeyValue, MemoryLocks, PutOptions, Scope, SqlOptions, SqlStore,
    Versioned,
};

use crate::config::{KvBackend, NodeConfig};
use crate::error::{Error, Result};
use crate::service::Caller;

/// The most entries one list returns when the request names no limit.
pub const DEFAULT_LIST: usize = 100;
/// The longest TTL a write takes: ten years, in milliseconds.
pub const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;
/// The largest version or fencing token a request may name (they are stored as BIGINT).
pub const MAX_COUNTER: u64 = i64::MAX as u64;

/// The SQLite file of the key-value store (used with `kv.backend = "sqlite"`).
pub fn sqlite_path(config: &NodeConfig) -> std::path::PathBuf {
    config.data_dir.join("kv.db")
}

/// The node's key-value store and locks, opened from `[kv]`.
#[derive(Clone)]
pub struct NodeKv {
    /// Key-value entries.
    pub kv: Arc<dyn KeyValue>,
    /// Locks with leases and fencing tokens, on the same backend.
    pub locks: Arc<dyn Locks>,
    /// `"memory"`, `"SQLite"`, `"PostgreSQL"` or `"Redis"`.
    pub backend: &'static str,
}

impl std::fmt::Debug for NodeKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKv")
            .field("backend", &self.backend)
            .finish()
    }
}

/// Opens the key-value store `config` names (the data dir must exist).
pub async fn open(config: &NodeConfig) -> Result<NodeKv> {
    let c = &config.kv;
    let cannot = |what: &str, e: plexspaces_storage::Error| {
        Error::Config(format!(
            "cannot open the {what} key-value store: {}",
            crate::secret::mask_secrets(&e.to_string())
        ))
    };
    let url = || {
        c.url
            .as_ref()
            .map(|u| u.expose().to_owned())
            .unwrap_or_default()
    };
    match c.backend {
        KvBackend::Memory => Ok(NodeKv {
            kv: Arc::new(MemoryKeyValue::new()),
            locks: Arc::new(MemoryLocks::new()),
            backend: "memory",
        }),
        KvBackend::Sqlite => {
            let store = SqlStore::connect(SqlOptions::sqlite(sqlite_path(config)))
                .await
                .map_err(|e| cannot("SQLite", e))?;
            let store = Arc::new(store);
            Ok(NodeKv {
                kv: store.clone(),
                locks: store,
                backend: "SQLite",
            })
        }
        KvBackend::Postgres => {
            let mut options = SqlOptions::postgres(&url());
            options.schema = Some(c.schema.clone());
            let store = SqlStore::connect(options)
                .await
                .map_err(|e| cannot("PostgreSQL", e))?;
            let store = Arc::new(store);
            Ok(NodeKv {
                kv: store.clone(),
                locks: store,
                backend: "PostgreSQL",
            })
        }
        KvBackend::Redis => open_redis(&url(), &c.prefix)
            .await
            .map_err(|e| cannot("Redis", e)),
    }
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str, prefix: &str) -> plexspaces_storage::Result<NodeKv> {
    let mut options = plexspaces_storage::RedisOptions::new(url);
    options.prefix = prefix.to_owned();
    let store = Arc::new(plexspaces_storage::RedisStore::connect(options).await?);
    Ok(NodeKv {
        kv: store.clone(),
        locks: store,
        backend: "Redis",
    })
}

#[cfg(not(feature = "redis"))]
async fn open_redis(_url: &str, _prefix: &str) -> plexspaces_storage::Result<NodeKv> {
    Err(plexspaces_storage::Error::Unsupported(
        "this node was built without the `redis` feature".into(),
    ))
}

/// The scope `(caller's tenant, namespace)`; an empty namespace is `default`.
pub fn scope(caller: &Caller, namespace: &str) -> Result<Scope> {
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    Ok(Scope::new(&caller.tenant, namespace)?)
}

/// A write: unconditional, or a compare-and-swap.
#[derive(Debug, Clone, Default)]
pub struct Write {
    /// Remove the key this long after the write.
    pub ttl: Option<Duration>,
    /// Compare-and-swap: write only if the version is this (0: only if missing).
    pub if_version: Option<u64>,
    /// A fencing token.
    pub fence: Option<u64>,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Written; the new version.
    Version(u64),
    /// A compare-and-swap found this version (0: missing) and wrote nothing.
    Conflict(u64),
}

/// The key-value service: the caller's scopes on the node's store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct KvService {
    store: NodeKv,
}

impl KvService {
    /// The service over `store`.
    pub fn new(store: NodeKv) -> Self {
        KvService { store }
    }

    /// The store.
    pub fn store(&self) -> &NodeKv {
        &self.store
    }

    /// The live value of `key`.
    pub async fn get(&self, caller: &Caller, ns: &str, key: &str) -> Result<Option<Versioned>> {
        Ok(self.store.kv.get(&scope(caller, ns)?, key).await?)
    }

    /// Writes `value` (see [`Write`]).
    pub async fn put(
        &self,
        caller: &Caller,
        ns: &str,
        key: &str,
        value: &[u8],
        write: Write,
    ) -> Result<Written> {
        let scope = scope(caller, ns)?;
        if write
            .ttl
            .is_some_and(|t| t > Duration::from_millis(MAX_TTL_MS))
        {
            return Err(Error::BadRequest(format!(
                "ttl_ms must be at most {MAX_TTL_MS}"
            )));
        }
        if write.if_version.is_some_and(|v| v > MAX_COUNTER)
            || write.fence.is_some_and(|f| f > MAX_COUNTER)
        {
            return Err(Error::BadRequest(format!(
                "if_version and fence must be at most {MAX_COUNTER}"
            )));
        }
        match write.if_version {
            None => Ok(Written::Version(
                self.store
                    .kv
                    .put(
                        &scope,
                        key,
                        value,
                        PutOptions {
                            ttl: write.ttl,
                            fence: write.fence,
                        },
                    )
                    .await?,
            )),
            Some(expected) => {
                if write.fence.is_some() {
                    return Err(Error::BadRequest(
                        "a compare-and-swap takes no fencing token".into(),
                    ));
                }
                let expected = (expected > 0).then_some(expected);
                match self
                    .store
                    .kv
                    .compare_and_swap(&scope, key, expected, value, write.ttl)
                    .await?
                {
                    Cas::Swapped { version } => Ok(Written::Version(version)),
                    Cas::Conflict { current } => Ok(Written::Conflict(current.unwrap_or(0))),
                }
            }
        }
    }

    /// Removes `key`; whether it existed.
    pub async fn delete(&self, caller: &Caller, ns: &str, key: &str) -> Result<bool> {
        Ok(self.store.kv.delete(&scope(caller, ns)?, key).await?)
    }

    /// Live entries under `prefix`, in key order, at most `limit` (0: [`DEFAULT_LIST`]).
    pub async fn list(
        &self,
        caller: &Caller,
        ns: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>> {
        let limit = if limit == 0 { DEFAULT_LIST } else { limit };
        if limit > plexspaces_storage::MAX_LIST {
            return Err(Error::BadRequest(format!(
                "limit must be at most {}",
                plexspaces_storage::MAX_LIST
            )));
        }
        Ok(self
            .store
            .kv
            .list(&scope(caller, ns)?, prefix, limit)
            .await?)
    }

    /// Adds `delta` to the integer at `key`.
    pub async fn increment(&self, caller: &Caller, ns: &str, key: &str, delta: i64) -> Result<i64> {
        Ok(self
            .store
            .kv
            .increment(&scope(caller, ns)?, key, delta)
            .await?)
    }
}

/// What the node offers its actors (`ctx.service::<NodeStorage>()`): the node's key-value
/// store, locks, blobs and channels, to be scoped by the actor itself. A `KeyValueFacet`,
/// `BlobStorageFacet` or `EventEmitterFacet` built from these fixes the scope.
#[derive(Clone, Debug)]
pub struct NodeStorage {
    /// Key-value entries and locks.
    pub kv: NodeKv,
    /// Blobs.
    pub blobs: plexspaces_storage::Blobs,
    /// Queues and topics.
    pub channels: plexspaces_channels::Channels,
}
