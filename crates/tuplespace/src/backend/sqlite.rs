//! The SQLite backend (feature `sqlite`): durable, embedded, one file.
//!
//! One table `tuples(id, space, arity, k1, expires_at, data)`, indexed by
//! (space, arity, id) and (space, arity, k1, id), where `k1` is the index key of the first
//! field; candidates are fetched by index in pages and matched in Rust, and a claim is a
//! `DELETE ... RETURNING` of one id, which is atomic across processes. SQLite has no
//! notification channel, so waiters are woken by writes made through the same engine only.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;

use super::sql::{arity, db_id, entry, PAGE, PURGE_EVERY};
use super::{Backend, Capabilities};
use crate::codec::{encode, template_key, tuple_key};
use crate::{Entry, Error, NewTuple, Result, SpaceId, Template, Timestamp, TupleId};

const NAME: &str = "sqlite";

fn map_err(e: sqlx::Error) -> Error {
    super::sql::map_err(NAME, e)
}

/// Where and how to open the database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// the database file, created if missing
    pub path: PathBuf,
    /// connections in the pool
    pub max_connections: u32,
}

impl SqliteOptions {
    /// Defaults for a file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            max_connections: 4,
        }
    }
}

/// Tuples in a SQLite file.
#[derive(Debug)]
pub struct SqliteBackend {
    pool: SqlitePool,
    takes: AtomicU64,
}

fn row_entry(r: &SqliteRow) -> Result<Entry> {
    let id: i64 = r.try_get("id").map_err(map_err)?;
    let data: Vec<u8> = r.try_get("data").map_err(map_err)?;
    let exp: Option<i64> = r.try_get("expires_at").map_err(map_err)?;
    entry(id, &data, exp)
}

impl SqliteBackend {
    /// Open (and create if needed) the database.
    pub async fn open(options: SqliteOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(&options.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        for stmt in [
            "CREATE TABLE IF NOT EXISTS tuples (id INTEGER PRIMARY KEY AUTOINCREMENT, space TEXT NOT NULL, arity INTEGER NOT NULL, k1 TEXT, expires_at INTEGER, data BLOB NOT NULL)",
            "CREATE INDEX IF NOT EXISTS tuples_by_arity ON tuples (space, arity, id)",
            "CREATE INDEX IF NOT EXISTS tuples_by_k1 ON tuples (space, arity, k1, id)",
            "CREATE INDEX IF NOT EXISTS tuples_by_expiry ON tuples (expires_at) WHERE expires_at IS NOT NULL",
        ] {
            sqlx::query(stmt).execute(&pool).await.map_err(map_err)?;
        }
        Ok(SqliteBackend {
            pool,
            takes: AtomicU64::new(0),
        })
    }

    /// Close the pool (waits for connections to finish).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn page(
        &self,
        space: &str,
        template: &Template,
        now: Timestamp,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Entry>> {
        let rows = match template_key(template) {
            Some(k) => sqlx::query(
                "SELECT id, data, expires_at FROM tuples WHERE space = ? AND arity = ? AND k1 = ? \
                 AND (expires_at IS NULL OR expires_at > ?) AND id > ? ORDER BY id LIMIT ?",
            )
            .bind(space)
            .bind(arity(template.arity())?)
            .bind(k)
            .bind(now.0)
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await,
            None => {
                sqlx::query(
                    "SELECT id, data, expires_at FROM tuples WHERE space = ? AND arity = ? \
                 AND (expires_at IS NULL OR expires_at > ?) AND id > ? ORDER BY id LIMIT ?",
                )
                .bind(space)
                .bind(arity(template.arity())?)
                .bind(now.0)
                .bind(after)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(map_err)?;
        rows.iter().map(row_entry).collect()
    }

    /// Up to `limit` matching live entries, oldest first.
    async fn scan(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let key = space.key();
        let mut out = Vec::new();
        let mut after = 0i64;
        loop {
            let page = self.page(&key, template, now, after, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            for e in page {
                after = db_id(e.id)?;
                if template.matches(&e.tuple) {
                    out.push(e);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    async fn claim(&self, space: &str, id: TupleId, now: Timestamp) -> Result<Option<Entry>> {
        let row = sqlx::query(
            "DELETE FROM tuples WHERE space = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?) \
             RETURNING id, data, expires_at",
        )
        .bind(space)
        .bind(db_id(id)?)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(row_entry).transpose()
    }

    /// Expired rows are invisible at once; they are deleted every few hundred takes.
    async fn maybe_purge(&self, now: Timestamp) -> Result<()> {
        if self.takes.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY != PURGE_EVERY - 1 {
            return Ok(());
        }
        sqlx::query("DELETE FROM tuples WHERE expires_at IS NOT NULL AND expires_at <= ?")
            .bind(now.0)
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            cross_process_wakeups: false,
        }
    }

    async fn insert(&self, space: &SpaceId, tuples: &[NewTuple]) -> Result<Vec<TupleId>> {
        const INSERT: &str = "INSERT INTO tuples (space, arity, k1, expires_at, data) VALUES (?, ?, ?, ?, ?) RETURNING id";
        let key = space.key();
        if let [t] = tuples {
            // a single statement is atomic on its own
            let id: i64 = sqlx::query_scalar(INSERT)
                .bind(&key)
                .bind(arity(t.tuple.arity())?)
                .bind(tuple_key(&t.tuple))
                .bind(t.expires_at.map(|e| e.0))
                .bind(encode(&t.tuple))
                .fetch_one(&self.pool)
                .await
                .map_err(map_err)?;
            return Ok(vec![TupleId(
                u64::try_from(id).map_err(|_| Error::Corrupt("negative id".into()))?,
            )]);
        }
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let mut ids = Vec::with_capacity(tuples.len());
        for t in tuples {
            let id: i64 = sqlx::query_scalar(INSERT)
                .bind(&key)
                .bind(arity(t.tuple.arity())?)
                .bind(tuple_key(&t.tuple))
                .bind(t.expires_at.map(|e| e.0))
                .bind(encode(&t.tuple))
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
            ids.push(TupleId(
                u64::try_from(id).map_err(|_| Error::Corrupt("negative id".into()))?,
            ));
        }
        tx.commit().await.map_err(map_err)?;
        Ok(ids)
    }

    async fn restore(&self, space: &SpaceId, entries: &[Entry]) -> Result<()> {
        let key = space.key();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        for e in entries {
            sqlx::query(
                "INSERT OR IGNORE INTO tuples (id, space, arity, k1, expires_at, data) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(db_id(e.id)?)
            .bind(&key)
            .bind(arity(e.tuple.arity())?)
            .bind(tuple_key(&e.tuple))
            .bind(e.expires_at.map(|x| x.0))
            .bind(encode(&e.tuple))
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn get(&self, space: &SpaceId, id: TupleId, now: Timestamp) -> Result<Option<Entry>> {
        let row = sqlx::query(
            "SELECT id, data, expires_at FROM tuples WHERE space = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(space.key())
        .bind(db_id(id)?)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(row_entry).transpose()
    }

    async fn find(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        self.scan(space, template, now, limit).await
    }

    async fn take(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        exclude: &HashSet<TupleId>,
    ) -> Result<Option<Entry>> {
        self.maybe_purge(now).await?;
        let key = space.key();
        let mut after = 0i64;
        loop {
            let page = self.page(&key, template, now, after, PAGE).await?;
            let full = page.len() as i64 == PAGE;
            for e in page {
                after = db_id(e.id)?;
                if exclude.contains(&e.id) || !template.matches(&e.tuple) {
                    continue;
                }
                if let Some(got) = self.claim(&key, e.id, now).await? {
                    return Ok(Some(got));
                }
            }
            if !full {
                return Ok(None);
            }
        }
    }

    async fn take_by_id(
        &self,
        space: &SpaceId,
        id: TupleId,
        now: Timestamp,
    ) -> Result<Option<Entry>> {
        self.claim(&space.key(), id, now).await
    }

    async fn renew(
        &self,
        space: &SpaceId,
        id: TupleId,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE tuples SET expires_at = ? WHERE space = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(expires_at.map(|e| e.0))
        .bind(space.key())
        .bind(db_id(id)?)
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() > 0)
    }
}
