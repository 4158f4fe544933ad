//! Key-value and locks on Redis (feature `redis`): [`RedisStore`].
//!
//! A key is a hash `{prefix}:kv:{tenant}:{namespace}:{key}` with fields `v` (the value),
//! `ver` and `f` (the highest fencing token); expiry is Redis's own (`PEXPIRE`), so a key's
//! fence goes with it. Every conditional write is one Lua script, atomic on the server.
//! A lock is a string `{prefix}:lock:..` holding `token:holder` with a `PX` lease, and its
//! tokens come from the counter `{prefix}:lockseq:..`, which outlives the leases.
//! Listing scans the keyspace (`SCAN MATCH`), so it costs time in the size of the database.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{Client, Script};

use crate::kv::{cap_limit, check_put};
use crate::lock::check_lock;
use crate::scope::{check_key, check_prefix};
use crate::{Cas, Error, KeyValue, Lease, Locks, PutOptions, Result, Scope, Versioned};

const NAME: &str = "redis";

const PUT: &str = r#"
local f = redis.call('HGET', KEYS[1], 'f')
if ARGV[3] ~= '' and f and tonumber(f) > tonumber(ARGV[3]) then return {'F', f} end
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[1], 'v', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'f', ARGV[3]) end
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) else redis.call('PERSIST', KEYS[1]) end
return {'OK', tostring(ver)}
"#;

const CAS: &str = r#"
local cur = redis.call('HGET', KEYS[1], 'ver')
if ARGV[1] == '' then
  if cur then return {'C', cur} end
elseif (not cur) or cur ~= ARGV[1] then
  return {'C', cur or ''}
end
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
redis.call('HSET', KEYS[1], 'v', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) else redis.call('PERSIST', KEYS[1]) end
return {'OK', tostring(ver)}
"#;

const ACQUIRE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tok .. ':' .. ARGV[1], 'PX', ARGV[2])
return tok
"#;

const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"#;

const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#;

/// Where to connect.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// e.g. `redis://127.0.0.1:6379/`
    pub url: String,
    /// prepended to every key, so several stores can share one database
    pub prefix: String,
}

impl RedisOptions {
    /// Keys under `plex`.
    pub fn new(url: &str) -> Self {
        RedisOptions {
            url: url.to_owned(),
            prefix: "plex".to_owned(),
        }
    }
}

/// Key-value and locks in Redis. Cheap to clone (one multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    conn: MultiplexedConnection,
    prefix: String,
    put: Script,
    cas: Script,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish()
    }
}

pub(crate) fn map_err(e: redis::RedisError) -> Error {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        Error::Unavailable {
            backend: NAME,
            message: e.to_string(),
        }
    } else {
        Error::Backend {
            backend: NAME,
            message: e.to_string(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn parse_u64(s: &str) -> Result<u64> {
    s.parse().map_err(|_| Error::Backend {
        backend: NAME,
        message: format!("expected a counter, found {s:?}"),
    })
}

/// Escape Redis glob characters so a literal matches only itself.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl RedisStore {
    /// Connect.
    pub async fn connect(options: RedisOptions) -> Result<Self> {
        let client = Client::open(options.url.as_str()).map_err(map_err)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(map_err)?;
        Ok(RedisStore {
            conn,
            prefix: options.prefix,
            put: Script::new(PUT),
            cas: Script::new(CAS),
            acquire: Script::new(ACQUIRE),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
        })
    }

    fn scope_prefix(&self, kind: &str, scope: &Scope) -> String {
        format!(
            "{}:{kind}:{}:{}:",
            self.prefix,
            scope.tenant(),
            scope.namespace()
        )
    }

    fn key(&self, scope: &Scope, key: &str) -> String {
        format!("{}{key}", self.scope_prefix("kv", scope))
    }

    fn lock_keys(&self, scope: &Scope, lock: &str) -> (String, String) {
        (
            format!("{}{lock}", self.scope_prefix("lock", scope)),
            format!("{}{lock}", self.scope_prefix("lockseq", scope)),
        )
    }
}

#[async_trait]
impl KeyValue for RedisStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Versioned>> {
        check_key("key", key)?;
        let mut conn = self.conn.clone();
        let (value, version): (Option<Vec<u8>>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.key(scope, key))
            .arg("v")
            .arg("ver")
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(match (value, version) {
            (Some(value), Some(version)) => Some(Versioned { value, version }),
            _ => None,
        })
    }

    async fn put(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        options: PutOptions,
    ) -> Result<u64> {
        check_put(key)?;
        let mut conn = self.conn.clone();
        let fence = options.fence.map(|f| f.to_string()).unwrap_or_default();
        let (status, n): (String, String) = self
            .put
            .key(self.key(scope, key))
            .arg(value)
            .arg(options.ttl.map_or(0, ms))
            .arg(fence)
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        if status == "F" {
            return Err(Error::Fenced {
                given: options.fence.unwrap_or(0),
                seen: parse_u64(&n)?,
            });
        }
        parse_u64(&n)
    }

    async fn delete(&self, scope: &Scope, key: &str) -> Result<bool> {
        check_key("key", key)?;
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("DEL")
            .arg(self.key(scope, key))
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(n > 0)
    }

    async fn list(
        &self,
        scope: &Scope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>> {
        check_prefix(prefix)?;
        let mut conn = self.conn.clone();
        let base = self.scope_prefix("kv", scope);
        let pattern = format!("{}{}*", glob_escape(&base), glob_escape(prefix));
        let mut keys: Vec<String> = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        let mut out = Vec::new();
        for full in keys {
            if out.len() >= cap_limit(limit) {
                break;
            }
            let Some(k) = full.strip_prefix(&base) else {
                continue;
            };
            // Expired between the scan and now: skipped.
            if let Some(v) = self.get(scope, k).await? {
                out.push((k.to_owned(), v));
            }
        }
        Ok(out)
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
        let mut conn = self.conn.clone();
        let (status, n): (String, String) = self
            .cas
            .key(self.key(scope, key))
            .arg(expected.map(|v| v.to_string()).unwrap_or_default())
            .arg(value)
            .arg(ttl.map_or(0, ms))
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        if status == "C" {
            let current = if n.is_empty() {
                None
            } else {
                Some(parse_u64(&n)?)
            };
            return Ok(Cas::Conflict { current });
        }
        Ok(Cas::Swapped {
            version: parse_u64(&n)?,
        })
    }
}

#[async_trait]
impl Locks for RedisStore {
    fn backend(&self) -> &'static str {
        NAME
    }

    async fn try_acquire(
        &self,
        scope: &Scope,
        lock: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Lease>> {
        check_lock(lock, holder, lease)?;
        let (key, seq) = self.lock_keys(scope, lock);
        let mut conn = self.conn.clone();
        let token: Option<u64> = self
            .acquire
            .key(key)
            .key(seq)
            .arg(holder)
            .arg(ms(lease))
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(token.map(|token| Lease {
            lock: lock.to_owned(),
            holder: holder.to_owned(),
            token,
        }))
    }

    async fn renew(&self, scope: &Scope, lease: &Lease, duration: Duration) -> Result<()> {
        check_lock(&lease.lock, &lease.holder, duration)?;
        let (key, _) = self.lock_keys(scope, &lease.lock);
        let mut conn = self.conn.clone();
        let done: i64 = self
            .renew
            .key(key)
            .arg(format!("{}:{}", lease.token, lease.holder))
            .arg(ms(duration))
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::lease_lost(lease))
        }
    }

    async fn release(&self, scope: &Scope, lease: &Lease) -> Result<bool> {
        let (key, _) = self.lock_keys(scope, &lease.lock);
        let mut conn = self.conn.clone();
        let done: i64 = self
            .release
            .key(key)
            .arg(format!("{}:{}", lease.token, lease.holder))
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(done == 1)
    }
}
