//! Key-value storage, blob storage and distributed locks for PlexSpaces.
//!
//! What it is: three storage services an actor (or a node) uses through a trait or handle,
//! every key, lock and blob scoped by a tenant and a namespace ([`Scope`]):
//! - [`KeyValue`]: get / put / delete / list by prefix / compare-and-swap / TTL /
//!   increment, on [`MemoryKeyValue`], SQLite and PostgreSQL ([`SqlStore`], features
//!   `sqlite` and `postgres`) and Redis ([`RedisStore`], feature `redis`);
//! - [`Locks`]: leases with fencing tokens, on [`MemoryLocks`], [`SqlStore`] and
//!   [`RedisStore`];
//! - [`Blobs`]: blob storage on the `object_store` crate (local filesystem or memory), with
//!   streaming upload and download.
//!
//! The facets [`KeyValueFacet`] and [`BlobStorageFacet`] hand an actor a store fixed to
//! one scope. [`conformance`] (feature `conformance`) is the suite every backend passes.
//!
//! What it is not: no HTTP/gRPC surface (the node serves that), no S3 client yet
//! ([`BlobBackend::S3`] answers [`Error::Unsupported`]), no cross-key transactions.
//!
//! Invariants:
//! - A scope never sees another scope's data: backends key everything by
//!   `(tenant, namespace, key)` ([`Scope`] rejects the separators they use).
//! - [`KeyValue::compare_and_swap`] is one atomic step on the server (a single SQL
//!   statement, a Lua script), so concurrent writers never lose an update.
//! - A lock's fencing token ([`Lease::token`]) grows with every acquisition, and a write
//!   fenced with an older token than the key has seen fails with [`Error::Fenced`].
//!
//! ```
//! use plexspaces_storage::{Cas, KeyValue, MemoryKeyValue, PutOptions, Scope};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> plexspaces_storage::Result<()> {
//! let kv = MemoryKeyValue::new();
//! let scope = Scope::new("acme", "orders")?;
//! let v1 = kv.put(&scope, "order/1", b"new", PutOptions::default()).await?;
//! let swapped = kv
//!     .compare_and_swap(&scope, "order/1", Some(v1), b"paid", None)
//!     .await?;
//! assert_eq!(swapped, Cas::Swapped { version: v1 + 1 });
//! assert_eq!(kv.increment(&scope, "orders/count", 2).await?, 2);
//! # Ok(())
//! # }
//! ```

mod blob;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod facet;
mod kv;
mod lock;
#[cfg(feature = "redis")]
mod redis;
mod scope;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

pub use blob::{BlobBackend, BlobMeta, Blobs};
pub use error::{Error, Result};
pub use facet::{BlobStorageFacet, KeyValueFacet, ScopedBlobs, ScopedKeyValue};
pub use kv::{Cas, KeyValue, MemoryKeyValue, PutOptions, Versioned, MAX_LIST};
pub use lock::{Lease, Locks, MemoryLocks};
#[cfg(feature = "redis")]
pub use redis::{RedisOptions, RedisStore};
pub use scope::{Scope, MAX_KEY_LEN, MAX_SCOPE_LEN};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::{Dialect, SqlOptions, SqlStore};
