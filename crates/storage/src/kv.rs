//! The key-value trait and its in-memory backend.
//!
//! Every entry carries a per-key `version` (1 on creation, +1 on every write, back to 1
//! when a key is re-created after a delete or expiry) used by compare-and-swap, and the
//! highest fencing token it was written with (see [`crate::Locks`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::scope::{check_key, check_prefix};
use crate::{Error, Result, Scope};

/// A stored value and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// the bytes
    pub value: Vec<u8>,
    /// 1 on creation, +1 on every write
    pub version: u64,
}

/// How to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Remove the key this long after the write; `None` keeps it until deleted. Every write
    /// sets (or clears) the expiry anew.
    pub ttl: Option<Duration>,
    /// A fencing token from [`crate::Lease::token`]: the write is refused with
    /// [`Error::Fenced`] if the key was already written with a higher token.
    pub fence: Option<u64>,
}

/// What a compare-and-swap did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cas {
    /// The value was written; this is its new version.
    Swapped {
        /// the new version
        version: u64,
    },
    /// The key's version was not the expected one; nothing was written.
    Conflict {
        /// the key's version now (`None`: it does not exist)
        current: Option<u64>,
    },
}

/// Most entries [`KeyValue::list`] returns in one call.
pub const MAX_LIST: usize = 10_000;

/// Key-value storage scoped by tenant and namespace.
///
/// Implementations: [`MemoryKeyValue`], `SqlStore` (features `sqlite`, `postgres`),
/// `RedisStore` (feature `redis`). All pass [`crate::conformance`].
#[async_trait]
pub trait KeyValue: Send + Sync + 'static {
    /// Backend name for errors and logs.
    fn backend(&self) -> &'static str;

    /// The live value of `key`, if any.
    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Versioned>>;

    /// Write `value`; returns the new version.
    async fn put(&self, scope: &Scope, key: &str, value: &[u8], options: PutOptions)
        -> Result<u64>;

    /// Remove `key`; whether it existed.
    async fn delete(&self, scope: &Scope, key: &str) -> Result<bool>;

    /// Live entries whose key starts with `prefix`, in key order, at most `limit`
    /// (capped at [`MAX_LIST`]).
    async fn list(
        &self,
        scope: &Scope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>>;

    /// Write `value` only if the key's version is `expected` (`None`: only if the key does
    /// not exist). Atomic against every other writer of the same backend.
    async fn compare_and_swap(
        &self,
        scope: &Scope,
        key: &str,
        expected: Option<u64>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Cas>;

    /// Add `delta` to the decimal integer stored at `key` (a missing key counts as 0) and
    /// return the result. The default is a compare-and-swap loop; the expiry is cleared.
    async fn increment(&self, scope: &Scope, key: &str, delta: i64) -> Result<i64> {
        const ATTEMPTS: u32 = 1000;
        for _ in 0..ATTEMPTS {
            let current = self.get(scope, key).await?;
            let (now, expected) = match &current {
                None => (0, None),
                Some(v) => (parse_int(key, &v.value)?, Some(v.version)),
            };
            let next = now.checked_add(delta).ok_or_else(|| Error::NotAnInteger {
                key: key.to_owned(),
            })?;
            let bytes = next.to_string();
            if let Cas::Swapped { .. } = self
                .compare_and_swap(scope, key, expected, bytes.as_bytes(), None)
                .await?
            {
                return Ok(next);
            }
            tokio::task::yield_now().await;
        }
        Err(Error::Contended {
            key: key.to_owned(),
            attempts: ATTEMPTS,
        })
    }
}

/// A stored counter: ASCII decimal.
pub(crate) fn parse_int(key: &str, value: &[u8]) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| Error::NotAnInteger {
            key: key.to_owned(),
        })
}

pub(crate) fn check_put(key: &str) -> Result<()> {
    check_key("key", key)
}

pub(crate) fn cap_limit(limit: usize) -> usize {
    limit.min(MAX_LIST)
}

#[derive(Debug, Clone)]
struct MemEntry {
    value: Vec<u8>,
    version: u64,
    fence: Option<u64>,
    expires: Option<Instant>,
}

impl MemEntry {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|e| e > now)
    }
}

/// Key-value in this process's memory (lost on exit). Expiry follows tokio's clock, so a
/// paused test clock drives it.
#[derive(Debug, Default, Clone)]
pub struct MemoryKeyValue {
    inner: Arc<Mutex<HashMap<Scope, BTreeMap<String, MemEntry>>>>,
}

impl MemoryKeyValue {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

fn deadline(ttl: Option<Duration>) -> Option<Instant> {
    ttl.map(|t| Instant::now() + t)
}

#[async_trait]
impl KeyValue for MemoryKeyValue {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Versioned>> {
        check_key("key", key)?;
        let now = Instant::now();
        let map = self.inner.lock();
        Ok(map
            .get(scope)
            .and_then(|m| m.get(key))
            .filter(|e| e.live(now))
            .map(|e| Versioned {
                value: e.value.clone(),
                version: e.version,
            }))
    }

    async fn put(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        options: PutOptions,
    ) -> Result<u64> {
        check_put(key)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        let space = map.entry(scope.clone()).or_default();
        let prev = space.get(key);
        if let (Some(given), Some(seen)) = (options.fence, prev.and_then(|e| e.fence)) {
            if seen > given {
                return Err(Error::Fenced { given, seen });
            }
        }
        let version = match prev {
            Some(e) if e.live(now) => e.version + 1,
            _ => 1,
        };
        let fence = options.fence.or(prev.and_then(|e| e.fence));
        space.insert(
            key.to_owned(),
            MemEntry {
                value: value.to_vec(),
                version,
                fence,
                expires: deadline(options.ttl),
            },
        );
        Ok(version)
    }

    async fn delete(&self, scope: &Scope, key: &str) -> Result<bool> {
        check_key("key", key)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        Ok(map
            .get_mut(scope)
            .and_then(|m| m.remove(key))
            .is_some_and(|e| e.live(now)))
    }

    async fn list(
        &self,
        scope: &Scope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>> {
        check_prefix(prefix)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        let Some(space) = map.get_mut(scope) else {
            return Ok(Vec::new());
        };
        space.retain(|_, e| e.live(now));
        Ok(space
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(cap_limit(limit))
            .map(|(k, e)| {
                (
                    k.clone(),
                    Versioned {
                        value: e.value.clone(),
                        version: e.version,
                    },
                )
            })
            .collect())
    }

    async fn compare_and_swap(
        &self,
        scope: &Scope,
        key: &str,
        expected: Option<u64>,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<Cas> {
        check_put(key)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        let space = map.entry(scope.clone()).or_default();
        let prev = space.get(key).filter(|e| e.live(now));
        let current = prev.map(|e| e.version);
        if current != expected {
            return Ok(Cas::Conflict { current });
        }
        let version = current.map_or(1, |v| v + 1);
        let fence = space.get(key).and_then(|e| e.fence);
        space.insert(
            key.to_owned(),
            MemEntry {
                value: value.to_vec(),
                version,
                fence,
                expires: deadline(ttl),
            },
        );
        Ok(Cas::Swapped { version })
    }

    async fn increment(&self, scope: &Scope, key: &str, delta: i64) -> Result<i64> {
        check_put(key)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        let space = map.entry(scope.clone()).or_default();
        let prev = space.get(key).filter(|e| e.live(now));
        let (value, version) = match prev {
            None => (0, 1),
            Some(e) => (parse_int(key, &e.value)?, e.version + 1),
        };
        let next = value
            .checked_add(delta)
            .ok_or_else(|| Error::NotAnInteger {
                key: key.to_owned(),
            })?;
        let fence = space.get(key).and_then(|e| e.fence);
        space.insert(
            key.to_owned(),
            MemEntry {
                value: next.to_string().into_bytes(),
                version,
                fence,
                expires: None,
            },
        );
        Ok(next)
    }
}
