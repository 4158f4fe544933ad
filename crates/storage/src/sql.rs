//! Key-value and locks on SQLite (feature `sqlite`) or PostgreSQL (feature `postgres`):
//! [`SqlStore`].
//!
//! One code path for both through sqlx's `Any` driver: every statement is plain SQL that
//! both dialects accept (`$n` parameters, `INSERT .. ON CONFLICT .. DO UPDATE .. WHERE ..
//! RETURNING`), so each write is one atomic statement and no transaction is held across an
//! await. Tables: `plex_kv(tenant, ns, k, v, ver, fence, exp)` and
//! `plex_locks(tenant, ns, name, holder, token, exp)`; times are milliseconds since the
//! Unix epoch on the caller's clock.

use std::path::Path;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::kv::{cap_limit, check_put};
use crate::lock::check_lock;
use crate::scope::{check_key, check_prefix};
use crate::{Cas, Error, KeyValue, Lease, Locks, PutOptions, Result, Scope, Versioned};

/// Which database [`SqlOptions`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// an embedded SQLite file
    Sqlite,
    /// a PostgreSQL server
    Postgres,
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// a `sqlite://` or `postgres://` URL
    pub url: String,
    /// the database kind the URL names
    pub dialect: Dialect,
    /// PostgreSQL only: the schema the tables live in (created if missing); `None` uses
    /// the connection's search path
    pub schema: Option<String>,
    /// connections in the pool
    pub max_connections: u32,
}

impl SqlOptions {
    /// A SQLite file, created if missing.
    pub fn sqlite(path: impl AsRef<Path>) -> Self {
        SqlOptions {
            url: format!("sqlite://{}?mode=rwc", path.as_ref().display()),
            dialect: Dialect::Sqlite,
            schema: None,
            max_connections: 4,
        }
    }

    /// A PostgreSQL database, e.g. `postgres://user@host:5432/db`.
    pub fn postgres(url: &str) -> Self {
        SqlOptions {
            url: url.to_owned(),
            dialect: Dialect::Postgres,
            schema: None,
            max_connections: 8,
        }
    }
}

/// Key-value and locks in a SQL database. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    name: &'static str,
    kv: String,
    locks: String,
    dialect: Dialect,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn after_ms(d: Duration) -> i64 {
    now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn to_db(name: &'static str, n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::Backend {
        backend: name,
        message: format!("{n} does not fit a BIGINT"),
    })
}

fn from_db(name: &'static str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| Error::Backend {
        backend: name,
        message: format!("negative counter {n} in the database"),
    })
}

impl SqlStore {
    /// Connect and create the tables if missing.
    pub async fn connect(options: SqlOptions) -> Result<Self> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let name = match options.dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        };
        let cfg = match options.dialect {
            Dialect::Sqlite => cfg!(feature = "sqlite"),
            Dialect::Postgres => cfg!(feature = "postgres"),
        };
        if !cfg {
            return Err(Error::Unsupported(format!(
                "the {name} backend needs the cargo feature `{name}`"
            )));
        }
        let qualify = |table: &str| match &options.schema {
            Some(s) => format!("\"{}\".{table}", s.replace('"', "\"\"")),
            None => table.to_owned(),
        };
        let mut pool_options = AnyPoolOptions::new().max_connections(options.max_connections);
        if options.dialect == Dialect::Sqlite {
            pool_options = pool_options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout=10000")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = pool_options
            .connect(&options.url)
            .await
            .map_err(|e| map_err(name, e))?;
        let store = SqlStore {
            pool,
            name,
            kv: qualify("plex_kv"),
            locks: qualify("plex_locks"),
            dialect: options.dialect,
        };
        let bytes = match options.dialect {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        };
        let mut ddl = Vec::new();
        if let (Some(s), Dialect::Postgres) = (&options.schema, options.dialect) {
            ddl.push(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{}\"",
                s.replace('"', "\"\"")
            ));
        }
        ddl.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (tenant TEXT NOT NULL, ns TEXT NOT NULL, \
             k TEXT NOT NULL, v {bytes} NOT NULL, ver BIGINT NOT NULL, fence BIGINT, \
             exp BIGINT, PRIMARY KEY (tenant, ns, k))",
            store.kv
        ));
        ddl.push(format!(
            "CREATE TABLE IF NOT EXISTS {} (tenant TEXT NOT NULL, ns TEXT NOT NULL, \
             name TEXT NOT NULL, holder TEXT, token BIGINT NOT NULL, exp BIGINT NOT NULL, \
             PRIMARY KEY (tenant, ns, name))",
            store.locks
        ));
        for stmt in ddl {
            sqlx::query(&stmt)
                .execute(&store.pool)
                .await
                .map_err(|e| map_err(name, e))?;
        }
        Ok(store)
    }

    fn err(&self, e: sqlx::Error) -> Error {
        map_err(self.name, e)
    }

    /// Delete every expired key (reads already skip them); returns how many.
    pub async fn purge_expired(&self) -> Result<u64> {
        let done = sqlx::query(&format!(
            "DELETE FROM {} WHERE exp IS NOT NULL AND exp <= $1",
            self.kv
        ))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(done.rows_affected())
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn versioned(&self, row: &AnyRow) -> Result<Versioned> {
        let value: Vec<u8> = row.try_get("v").map_err(|e| self.err(e))?;
        let version: i64 = row.try_get("ver").map_err(|e| self.err(e))?;
        Ok(Versioned {
            value,
            version: from_db(self.name, version)?,
        })
    }

    async fn current_version(&self, scope: &Scope, key: &str) -> Result<Option<u64>> {
        Ok(self.get(scope, key).await?.map(|v| v.version))
    }
}

pub(crate) fn map_err(backend: &'static str, e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::Unavailable {
            backend,
            message: e.to_string(),
        },
        other => Error::Backend {
            backend,
            message: other.to_string(),
        },
    }
}

#[async_trait]
impl KeyValue for SqlStore {
    fn backend(&self) -> &'static str {
        self.name
    }

    async fn get(&self, scope: &Scope, key: &str) -> Result<Option<Versioned>> {
        check_key("key", key)?;
        let row = sqlx::query(&format!(
            "SELECT v, ver FROM {} WHERE tenant = $1 AND ns = $2 AND k = $3 \
             AND (exp IS NULL OR exp > $4)",
            self.kv
        ))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(key)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        row.map(|r| self.versioned(&r)).transpose()
    }

    async fn put(
        &self,
        scope: &Scope,
        key: &str,
        value: &[u8],
        options: PutOptions,
    ) -> Result<u64> {
        check_put(key)?;
        let fence = options.fence.map(|f| to_db(self.name, f)).transpose()?;
        let row = sqlx::query(&format!(
            "INSERT INTO {} AS t (tenant, ns, k, v, ver, fence, exp) \
             VALUES ($1, $2, $3, $4, 1, $5, $6) \
             ON CONFLICT (tenant, ns, k) DO UPDATE SET v = excluded.v, \
             ver = CASE WHEN t.exp IS NOT NULL AND t.exp <= $7 THEN 1 ELSE t.ver + 1 END, \
             fence = COALESCE(excluded.fence, t.fence), exp = excluded.exp \
             WHERE excluded.fence IS NULL OR t.fence IS NULL OR t.fence <= excluded.fence \
             RETURNING ver",
            self.kv
        ))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(key)
        .bind(value)
        .bind(fence)
        .bind(options.ttl.map(after_ms))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if let Some(row) = row {
            let ver: i64 = row.try_get("ver").map_err(|e| self.err(e))?;
            return from_db(self.name, ver);
        }
        // Refused by the fence: report the token the key has seen.
        let seen: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT fence FROM {} WHERE tenant = $1 AND ns = $2 AND k = $3",
            self.kv
        ))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?
        .flatten();
        Err(Error::Fenced {
            given: options.fence.unwrap_or(0),
            seen: seen
                .map(|s| from_db(self.name, s))
                .transpose()?
                .unwrap_or(0),
        })
    }

    async fn delete(&self, scope: &Scope, key: &str) -> Result<bool> {
        check_key("key", key)?;
        let row = sqlx::query(&format!(
            "DELETE FROM {} WHERE tenant = $1 AND ns = $2 AND k = $3 RETURNING exp",
            self.kv
        ))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        let Some(row) = row else { return Ok(false) };
        let exp: Option<i64> = row.try_get("exp").map_err(|e| self.err(e))?;
        Ok(exp.is_none_or(|e| e > now_ms()))
    }

    async fn list(
        &self,
        scope: &Scope,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<(String, Versioned)>> {
        check_prefix(prefix)?;
        // Byte order, as the other backends list; PostgreSQL's default collation differs.
        let order = match self.dialect {
            Dialect::Sqlite => "k",
            Dialect::Postgres => "k COLLATE \"C\"",
        };
        let rows = sqlx::query(&format!(
            "SELECT k, v, ver FROM {} WHERE tenant = $1 AND ns = $2 \
             AND substr(k, 1, CAST($3 AS INTEGER)) = $4 AND (exp IS NULL OR exp > $5) \
             ORDER BY {order} LIMIT $6",
            self.kv
        ))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(i64::try_from(prefix.chars().count()).unwrap_or(i64::MAX))
        .bind(prefix)
        .bind(now_ms())
        .bind(i64::try_from(cap_limit(limit)).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        rows.iter()
            .map(|r| {
                let k: String = r.try_get("k").map_err(|e| self.err(e))?;
                Ok((k, self.versioned(r)?))
            })
            .collect()
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
        let update = format!(
            "UPDATE {} SET v = $1, ver = ver + 1, exp = $2 \
             WHERE tenant = $3 AND ns = $4 AND k = $5 AND ver = $6 \
             AND (exp IS NULL OR exp > $7) RETURNING ver",
            self.kv
        );
        let create = format!(
            "INSERT INTO {} AS t (tenant, ns, k, v, ver, fence, exp) \
             VALUES ($1, $2, $3, $4, 1, NULL, $5) \
             ON CONFLICT (tenant, ns, k) DO UPDATE SET v = excluded.v, ver = 1, \
             exp = excluded.exp WHERE t.exp IS NOT NULL AND t.exp <= $6 RETURNING ver",
            self.kv
        );
        let row = match expected {
            Some(v) => sqlx::query(&update)
                .bind(value)
                .bind(ttl.map(after_ms))
                .bind(scope.tenant())
                .bind(scope.namespace())
                .bind(key)
                .bind(to_db(self.name, v)?)
                .bind(now_ms()),
            None => sqlx::query(&create)
                .bind(scope.tenant())
                .bind(scope.namespace())
                .bind(key)
                .bind(value)
                .bind(ttl.map(after_ms))
                .bind(now_ms()),
        }
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        match row {
            Some(r) => {
                let ver: i64 = r.try_get("ver").map_err(|e| self.err(e))?;
                Ok(Cas::Swapped {
                    version: from_db(self.name, ver)?,
                })
            }
            None => Ok(Cas::Conflict {
                current: self.current_version(scope, key).await?,
            }),
        }
    }
}

#[async_trait]
impl Locks for SqlStore {
    fn backend(&self) -> &'static str {
        self.name
    }

    async fn try_acquire(
        &self,
        scope: &Scope,
        lock: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Lease>> {
        check_lock(lock, holder, lease)?;
        let token: Option<i64> = sqlx::query_scalar(&format!(
            "INSERT INTO {} AS t (tenant, ns, name, holder, token, exp) \
             VALUES ($1, $2, $3, $4, 1, $5) \
             ON CONFLICT (tenant, ns, name) DO UPDATE SET holder = excluded.holder, \
             token = t.token + 1, exp = excluded.exp \
             WHERE t.holder IS NULL OR t.exp <= $6 RETURNING token",
            self.locks
        ))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(lock)
        .bind(holder)
        .bind(after_ms(lease))
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        token
            .map(|t| {
                Ok(Lease {
                    lock: lock.to_owned(),
                    holder: holder.to_owned(),
                    token: from_db(self.name, t)?,
                })
            })
            .transpose()
    }

    async fn renew(&self, scope: &Scope, lease: &Lease, duration: Duration) -> Result<()> {
        check_lock(&lease.lock, &lease.holder, duration)?;
        let renewed = sqlx::query(&format!(
            "UPDATE {} SET exp = $1 WHERE tenant = $2 AND ns = $3 AND name = $4 \
             AND holder = $5 AND token = $6 AND exp > $7",
            self.locks
        ))
        .bind(after_ms(duration))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(&lease.lock)
        .bind(&lease.holder)
        .bind(to_db(self.name, lease.token)?)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        if renewed.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::lease_lost(lease))
        }
    }

    async fn release(&self, scope: &Scope, lease: &Lease) -> Result<bool> {
        let exp: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE {} SET holder = NULL WHERE tenant = $1 AND ns = $2 AND name = $3 \
             AND holder = $4 AND token = $5 RETURNING exp",
            self.locks
        ))
        .bind(scope.tenant())
        .bind(scope.namespace())
        .bind(&lease.lock)
        .bind(&lease.holder)
        .bind(to_db(self.name, lease.token)?)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.err(e))?;
        Ok(exp.is_some_and(|e| e > now_ms()))
    }
}
