//! The PostgreSQL backend (feature `postgres`): durable and shared by many processes.
//!
//! One table `<schema>.tuples(id, space, arity, k1, expires_at, data)` like the SQLite
//! backend; a claim is a `DELETE ... RETURNING` of one id, atomic across processes. Every
//! write sends `pg_notify` on a channel named after the schema in the same transaction;
//! each engine LISTENs on it and wakes its waiters when another process writes. After a
//! lost connection the listener reconnects and tells every waiter to look again, so a
//! notification missed during the outage delays a waiter but does not strand it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::mpsc;

use super::sql::{arity, db_id, entry, PAGE, PURGE_EVERY};
use super::wake;
use super::{Backend, Capabilities, External};
use crate::codec::{encode, template_key, tuple_key};
use crate::{Entry, Error, NewTuple, Result, SpaceId, Template, Timestamp, TupleId};

const NAME: &str = "postgres";
/// Ids per notification payload (PostgreSQL limits a payload to 8000 bytes).
const IDS_PER_NOTIFY: usize = 300;

fn map_err(e: sqlx::Error) -> Error {
    super::sql::map_err(NAME, e)
}

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// a `postgres://` connection string
    pub url: String,
    /// the schema holding the table, created if missing: lowercase letters, digits and `_`,
    /// at most 48 characters
    pub schema: String,
    /// connections in the pool
    pub max_connections: u32,
}

impl PostgresOptions {
    /// Defaults: schema `plexspaces_tuplespace`, 8 connections.
    pub fn new(url: &str) -> Self {
        PostgresOptions {
            url: url.to_owned(),
            schema: "plexspaces_tuplespace".to_owned(),
            max_connections: 8,
        }
    }
}

/// Tuples in PostgreSQL.
#[derive(Debug)]
pub struct PostgresBackend {
    pool: PgPool,
    table: String,
    channel: String,
    instance: String,
    takes: AtomicU64,
}

fn row_entry(r: &PgRow) -> Result<Entry> {
    let id: i64 = r.try_get("id").map_err(map_err)?;
    let data: Vec<u8> = r.try_get("data").map_err(map_err)?;
    let exp: Option<i64> = r.try_get("expires_at").map_err(map_err)?;
    entry(id, &data, exp)
}

impl PostgresBackend {
    /// Connect, and create the schema and table if missing.
    pub async fn connect(options: PostgresOptions) -> Result<Self> {
        let schema = &options.schema;
        if schema.is_empty()
            || schema.len() > 48
            || !schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(Error::InvalidArgument(format!(
                "invalid schema name {schema:?}"
            )));
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect(&options.url)
            .await
            .map_err(map_err)?;
        let table = format!("\"{schema}\".tuples");
        for stmt in [
            format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""),
            format!("CREATE TABLE IF NOT EXISTS {table} (id BIGSERIAL PRIMARY KEY, space TEXT NOT NULL, arity INT NOT NULL, k1 TEXT, expires_at BIGINT, data BYTEA NOT NULL)"),
            format!("CREATE INDEX IF NOT EXISTS tuples_by_arity ON {table} (space, arity, id)"),
            format!("CREATE INDEX IF NOT EXISTS tuples_by_k1 ON {table} (space, arity, k1, id)"),
            format!("CREATE INDEX IF NOT EXISTS tuples_by_expiry ON {table} (expires_at) WHERE expires_at IS NOT NULL"),
        ] {
            sqlx::query(&stmt).execute(&pool).await.map_err(map_err)?;
        }
        Ok(PostgresBackend {
            pool,
            table,
            channel: format!("tuplespace_{schema}"),
            instance: wake::instance_id(),
            takes: AtomicU64::new(0),
        })
    }

    /// Close the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn page(
        &self,
        space: &str,
        template: &Template,
        now: Timestamp,
        after: i64,
    ) -> Result<Vec<Entry>> {
        let rows = match template_key(template) {
            Some(k) => {
                sqlx::query(&format!(
                "SELECT id, data, expires_at FROM {} WHERE space = $1 AND arity = $2 AND k1 = $3 \
                 AND (expires_at IS NULL OR expires_at > $4) AND id > $5 ORDER BY id LIMIT $6",
                self.table
            ))
                .bind(space)
                .bind(arity(template.arity())? as i32)
                .bind(k)
                .bind(now.0)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(&format!(
                    "SELECT id, data, expires_at FROM {} WHERE space = $1 AND arity = $2 \
                 AND (expires_at IS NULL OR expires_at > $3) AND id > $4 ORDER BY id LIMIT $5",
                    self.table
                ))
                .bind(space)
                .bind(arity(template.arity())? as i32)
                .bind(now.0)
                .bind(after)
                .bind(PAGE)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(map_err)?;
        rows.iter().map(row_entry).collect()
    }

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
            let page = self.page(&key, template, now, after).await?;
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
        let row = sqlx::query(&format!(
            "DELETE FROM {} WHERE space = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3) \
             RETURNING id, data, expires_at",
            self.table
        ))
        .bind(space)
        .bind(db_id(id)?)
        .bind(now.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        row.as_ref().map(row_entry).transpose()
    }

    async fn maybe_purge(&self, now: Timestamp) -> Result<()> {
        if self.takes.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY != PURGE_EVERY - 1 {
            return Ok(());
        }
        sqlx::query(&format!(
            "DELETE FROM {} WHERE expires_at IS NOT NULL AND expires_at <= $1",
            self.table
        ))
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn notify(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
        space: &str,
        ids: &[TupleId],
    ) -> Result<()> {
        let ids: Vec<u64> = ids.iter().map(|i| i.0).collect();
        for payload in wake::payloads(&self.instance, space, &ids, IDS_PER_NOTIFY) {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(&self.channel)
                .bind(payload)
                .execute(&mut **tx)
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            cross_process_wakeups: true,
        }
    }

    async fn insert(&self, space: &SpaceId, tuples: &[NewTuple]) -> Result<Vec<TupleId>> {
        let key = space.key();
        if let [t] = tuples {
            // one statement, one round trip: the insert and its notification commit together
            let id: i64 = sqlx::query_scalar(&format!(
                "WITH ins AS (INSERT INTO {} (space, arity, k1, expires_at, data) VALUES ($1, $2, $3, $4, $5) RETURNING id) \
                 SELECT id FROM ins, LATERAL (SELECT pg_notify($6, $7 || ins.id::text || '|' || $1)) AS n",
                self.table
            ))
            .bind(&key)
            .bind(arity(t.tuple.arity())? as i32)
            .bind(tuple_key(&t.tuple))
            .bind(t.expires_at.map(|e| e.0))
            .bind(encode(&t.tuple))
            .bind(&self.channel)
            .bind(format!("{}|", self.instance))
            .fetch_one(&self.pool)
            .await
            .map_err(map_err)?;
            return Ok(vec![TupleId(
                u64::try_from(id).map_err(|_| Error::Corrupt("negative id".into()))?,
            )]);
        }
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let mut ids = Vec::with_capacity(tuples.len());
        let sql = format!(
            "INSERT INTO {} (space, arity, k1, expires_at, data) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            self.table
        );
        for t in tuples {
            let id: i64 = sqlx::query_scalar(&sql)
                .bind(&key)
                .bind(arity(t.tuple.arity())? as i32)
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
        self.notify(&mut tx, &key, &ids).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(ids)
    }

    async fn restore(&self, space: &SpaceId, entries: &[Entry]) -> Result<()> {
        let key = space.key();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let sql = format!(
            "INSERT INTO {} (id, space, arity, k1, expires_at, data) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            self.table
        );
        for e in entries {
            sqlx::query(&sql)
                .bind(db_id(e.id)?)
                .bind(&key)
                .bind(arity(e.tuple.arity())? as i32)
                .bind(tuple_key(&e.tuple))
                .bind(e.expires_at.map(|x| x.0))
                .bind(encode(&e.tuple))
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        let ids: Vec<TupleId> = entries.iter().map(|e| e.id).collect();
        self.notify(&mut tx, &key, &ids).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn get(&self, space: &SpaceId, id: TupleId, now: Timestamp) -> Result<Option<Entry>> {
        let row = sqlx::query(&format!(
            "SELECT id, data, expires_at FROM {} WHERE space = $1 AND id = $2 AND (expires_at IS NULL OR expires_at > $3)",
            self.table
        ))
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
            let page = self.page(&key, template, now, after).await?;
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
        let r = sqlx::query(&format!(
            "UPDATE {} SET expires_at = $1 WHERE space = $2 AND id = $3 AND (expires_at IS NULL OR expires_at > $4)",
            self.table
        ))
        .bind(expires_at.map(|e| e.0))
        .bind(space.key())
        .bind(db_id(id)?)
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(r.rows_affected() > 0)
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, External>>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(map_err)?;
        listener.listen(&self.channel).await.map_err(map_err)?;
        let instance = self.instance.clone();
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = tx.closed() => break,
                    r = listener.try_recv() => r,
                };
                let ev = match ev {
                    Ok(Some(n)) => match wake::parse(n.payload()) {
                        Some((origin, _, _)) if origin == instance => continue,
                        Some((_, space, ids)) => External::Written { space, ids },
                        None => {
                            tracing::warn!(
                                payload = n.payload(),
                                "unparseable tuple space notification"
                            );
                            continue;
                        }
                    },
                    // the connection was lost and is re-established on the next call
                    Ok(None) => External::Resync,
                    Err(error) => {
                        tracing::warn!(%error, "tuple space listener failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        External::Resync
                    }
                };
                if tx.send(ev).await.is_err() {
                    break;
                }
            }
        });
        Ok(Some(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
                .boxed(),
        ))
    }
}
