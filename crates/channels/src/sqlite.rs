//! The SQLite backend (feature `sqlite`): [`SqliteBackend`]. Durable in one file, shared
//! by every process that opens it.
//!
//! Tables: `ch_messages(seq, channel, payload, headers)`, `ch_groups(channel, grp)`,
//! `ch_pending(channel, grp, seq, attempts, visible_at)` (one row per message per group
//! until acked) and `ch_dead`. Publishing inserts the message and its pending rows in one
//! transaction; a claim is one `UPDATE .. RETURNING` over the visible rows, so two
//! consumers (in any process) never claim the same delivery. Times are milliseconds on the
//! wall clock. SQLite cannot signal other processes, so a waiting `receive` polls (every
//! 20 ms) besides waking on publishes made through the same instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{MAX_BATCH, MAX_WAIT};
use crate::types::{check_name, decode_headers, encode_headers};
use crate::{
    Backend, ChannelId, DeadLetter, Delivery, DeliveryOptions, Error, Message, Outgoing, Receipt,
    Result, Semantics, Start,
};

const NAME: &str = "sqlite";
const POLL: Duration = Duration::from_millis(20);

/// Where and how to open the database.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// the database file, created if missing
    pub path: PathBuf,
    /// connections in the pool
    pub max_connections: u32,
    /// redelivery policy
    pub delivery: DeliveryOptions,
}

impl SqliteOptions {
    /// Defaults for a file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            max_connections: 4,
            delivery: DeliveryOptions::default(),
        }
    }
}

/// Channels in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteBackend {
    pool: SqlitePool,
    delivery: DeliveryOptions,
    published: Arc<Notify>,
}

fn map_err(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
            Error::Unavailable {
                backend: NAME,
                message: e.to_string(),
            }
        }
        other => Error::Backend {
            backend: NAME,
            message: other.to_string(),
        },
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn parse_receipt(r: &Receipt) -> Result<i64> {
    r.0.parse().map_err(|_| Error::UnknownReceipt(r.0.clone()))
}

impl SqliteBackend {
    /// Open (and create) the database.
    pub async fn open(options: SqliteOptions) -> Result<Self> {
        let connect = SqliteConnectOptions::new()
            .filename(&options.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        for stmt in [
            "CREATE TABLE IF NOT EXISTS ch_messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, \
             channel TEXT NOT NULL, payload BLOB NOT NULL, headers TEXT NOT NULL)",
            "CREATE TABLE IF NOT EXISTS ch_groups (channel TEXT NOT NULL, grp TEXT NOT NULL, \
             PRIMARY KEY (channel, grp))",
            "CREATE TABLE IF NOT EXISTS ch_pending (channel TEXT NOT NULL, grp TEXT NOT NULL, \
             seq INTEGER NOT NULL, attempts INTEGER NOT NULL, visible_at INTEGER NOT NULL, \
             PRIMARY KEY (channel, grp, seq))",
            "CREATE INDEX IF NOT EXISTS ch_pending_seq ON ch_pending (seq)",
            "CREATE TABLE IF NOT EXISTS ch_dead (channel TEXT NOT NULL, grp TEXT NOT NULL, \
             seq INTEGER NOT NULL, deliveries INTEGER NOT NULL, PRIMARY KEY (channel, grp, seq))",
            "CREATE INDEX IF NOT EXISTS ch_dead_seq ON ch_dead (seq)",
        ] {
            sqlx::query(stmt).execute(&pool).await.map_err(map_err)?;
        }
        Ok(SqliteBackend {
            pool,
            delivery: options.delivery,
            published: Arc::new(Notify::new()),
        })
    }

    async fn forget_if_done(&self, seq: i64) -> Result<()> {
        sqlx::query(
            "DELETE FROM ch_messages WHERE seq = ?1 \
             AND NOT EXISTS (SELECT 1 FROM ch_pending WHERE seq = ?1) \
             AND NOT EXISTS (SELECT 1 FROM ch_dead WHERE seq = ?1)",
        )
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    /// Move the group's exhausted, due deliveries to the dead letters.
    async fn bury(&self, channel: &str, group: &str, max_deliveries: i64, now: i64) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        // OR IGNORE: another consumer may have copied it already; the delete runs anyway
        sqlx::query(
            "INSERT OR IGNORE INTO ch_dead (channel, grp, seq, deliveries) \
             SELECT channel, grp, seq, attempts FROM ch_pending \
             WHERE channel = ?1 AND grp = ?2 AND attempts >= ?3 AND visible_at <= ?4",
        )
        .bind(channel)
        .bind(group)
        .bind(max_deliveries)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        sqlx::query(
            "DELETE FROM ch_pending WHERE channel = ?1 AND grp = ?2 AND attempts >= ?3 \
             AND visible_at <= ?4",
        )
        .bind(channel)
        .bind(group)
        .bind(max_deliveries)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn claim(&self, channel: &str, group: &str, max: usize) -> Result<Vec<Delivery>> {
        let now = now_ms();
        let max_deliveries = i64::from(self.delivery.max_deliveries);
        // out of deliveries and due again: to the dead letters (a read first, so the common
        // case takes no write transaction)
        let exhausted: Option<i64> = sqlx::query_scalar(
            "SELECT seq FROM ch_pending WHERE channel = ?1 AND grp = ?2 AND attempts >= ?3 \
             AND visible_at <= ?4 LIMIT 1",
        )
        .bind(channel)
        .bind(group)
        .bind(max_deliveries)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        if exhausted.is_some() {
            self.bury(channel, group, max_deliveries, now).await?;
        }

        let rows = sqlx::query(
            "UPDATE ch_pending SET attempts = attempts + 1, visible_at = ?1 \
             WHERE channel = ?2 AND grp = ?3 AND seq IN (SELECT seq FROM ch_pending \
             WHERE channel = ?2 AND grp = ?3 AND visible_at <= ?4 AND attempts < ?5 \
             ORDER BY seq LIMIT ?6) RETURNING seq, attempts",
        )
        .bind(now.saturating_add(ms(self.delivery.visibility_timeout)))
        .bind(channel)
        .bind(group)
        .bind(now)
        .bind(max_deliveries)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        let mut claimed: Vec<(i64, i64)> = rows
            .iter()
            .map(|r| Ok((r.try_get("seq")?, r.try_get("attempts")?)))
            .collect::<std::result::Result<_, sqlx::Error>>()
            .map_err(map_err)?;
        claimed.sort_unstable();
        let mut out = Vec::with_capacity(claimed.len());
        for (seq, attempts) in claimed {
            let row = sqlx::query("SELECT payload, headers FROM ch_messages WHERE seq = ?1")
                .bind(seq)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?;
            let Some(row) = row else { continue };
            let payload: Vec<u8> = row.try_get("payload").map_err(map_err)?;
            let headers: String = row.try_get("headers").map_err(map_err)?;
            out.push(Delivery {
                message: Message {
                    id: seq.to_string(),
                    payload: payload.into(),
                    headers: decode_headers(NAME, &headers)?,
                },
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                receipt: Receipt(seq.to_string()),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn semantics(&self) -> Semantics {
        Semantics::DURABLE
    }

    async fn ensure_group(&self, channel: &ChannelId, group: &str, start: Start) -> Result<()> {
        check_name("group", group)?;
        let key = channel.key();
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let created = sqlx::query("INSERT OR IGNORE INTO ch_groups (channel, grp) VALUES (?1, ?2)")
            .bind(&key)
            .bind(group)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        if created.rows_affected() == 1 && start == Start::Earliest {
            sqlx::query(
                "INSERT OR IGNORE INTO ch_pending (channel, grp, seq, attempts, visible_at) \
                 SELECT channel, ?2, seq, 0, 0 FROM ch_messages WHERE channel = ?1",
            )
            .bind(&key)
            .bind(group)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)
    }

    async fn publish(&self, channel: &ChannelId, message: Outgoing) -> Result<String> {
        let key = channel.key();
        let headers = encode_headers(NAME, &message.headers)?;
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO ch_messages (channel, payload, headers) VALUES (?1, ?2, ?3) RETURNING seq",
        )
        .bind(&key)
        .bind(message.payload.as_ref())
        .bind(headers)
        .fetch_one(&mut *tx)
        .await
        .map_err(map_err)?;
        let fanned = sqlx::query(
            "INSERT INTO ch_pending (channel, grp, seq, attempts, visible_at) \
             SELECT channel, grp, ?2, 0, 0 FROM ch_groups WHERE channel = ?1",
        )
        .bind(&key)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        if fanned.rows_affected() == 0 {
            // nobody subscribed: a topic drops it
            sqlx::query("DELETE FROM ch_messages WHERE seq = ?1")
                .bind(seq)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        tx.commit().await.map_err(map_err)?;
        self.published.notify_waiters();
        Ok(seq.to_string())
    }

    async fn receive(
        &self,
        channel: &ChannelId,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        check_name("consumer", consumer)?;
        let key = channel.key();
        let max = max.clamp(1, MAX_BATCH);
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let notified = self.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let got = self.claim(&key, group, max).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until((now + POLL).min(deadline)) => {}
            }
        }
    }

    async fn ack(&self, channel: &ChannelId, group: &str, receipt: &Receipt) -> Result<()> {
        let seq = parse_receipt(receipt)?;
        let done =
            sqlx::query("DELETE FROM ch_pending WHERE channel = ?1 AND grp = ?2 AND seq = ?3")
                .bind(channel.key())
                .bind(group)
                .bind(seq)
                .execute(&self.pool)
                .await
                .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownReceipt(receipt.0.clone()));
        }
        self.forget_if_done(seq).await
    }

    async fn nack(
        &self,
        channel: &ChannelId,
        group: &str,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<()> {
        let seq = parse_receipt(receipt)?;
        let done = sqlx::query(
            "UPDATE ch_pending SET visible_at = ?1 WHERE channel = ?2 AND grp = ?3 AND seq = ?4",
        )
        .bind(now_ms().saturating_add(ms(delay)))
        .bind(channel.key())
        .bind(group)
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(Error::UnknownReceipt(receipt.0.clone()));
        }
        self.published.notify_waiters();
        Ok(())
    }

    async fn dead_letters(
        &self,
        channel: &ChannelId,
        group: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT d.seq AS seq, d.deliveries AS deliveries, m.payload AS payload, \
             m.headers AS headers FROM ch_dead d JOIN ch_messages m ON m.seq = d.seq \
             WHERE d.channel = ?1 AND d.grp = ?2 ORDER BY d.seq LIMIT ?3",
        )
        .bind(channel.key())
        .bind(group)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.try_get("seq").map_err(map_err)?;
                let deliveries: i64 = r.try_get("deliveries").map_err(map_err)?;
                let payload: Vec<u8> = r.try_get("payload").map_err(map_err)?;
                let headers: String = r.try_get("headers").map_err(map_err)?;
                Ok(DeadLetter {
                    message: Message {
                        id: seq.to_string(),
                        payload: payload.into(),
                        headers: decode_headers(NAME, &headers)?,
                    },
                    deliveries: u32::try_from(deliveries).unwrap_or(u32::MAX),
                })
            })
            .collect()
    }
}
