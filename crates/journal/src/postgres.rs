//! PostgreSQL backend (feature `postgres`): tables in a configurable schema, one writer
//! connection with group commit, a pool of readers.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Postgres, QueryBuilder, Row};
use tokio::sync::mpsc;

use crate::group::{
    self, epoch_refusal, AppendReq, BatchWriter, Counters, GroupCommitStats, Op, Request, Val,
};
use crate::reminders::{Reminder, ReminderStore};
use crate::{Entry, Epoch, Error, Journal, Result, Seq, Snapshot, StreamId};

/// Options of [`PostgresJournal`].
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Connection URL, e.g. `postgres://postgres@127.0.0.1:5432/test`.
    pub url: String,
    /// Schema holding the tables (created if missing). Letters, digits and `_` only.
    pub schema: String,
    /// At most this many writes share one transaction.
    pub max_batch: usize,
    /// Reader connections.
    pub read_connections: u32,
}

impl PostgresOptions {
    /// Defaults: schema `plexspaces`, batches of 512, 4 readers.
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            schema: "plexspaces".into(),
            max_batch: 512,
            read_connections: 4,
        }
    }

    /// Same options with another schema.
    pub fn with_schema(mut self, schema: &str) -> Self {
        self.schema = schema.to_owned();
        self
    }
}

fn schema_ddl(s: &str) -> Vec<String> {
    vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s}"),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.journal_streams (
            tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
            epoch BIGINT NOT NULL, next_seq BIGINT NOT NULL,
            PRIMARY KEY (tenant, namespace, actor_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.journal_entries (
            tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
            seq BIGINT NOT NULL, kind SMALLINT NOT NULL, payload BYTEA NOT NULL,
            checksum BIGINT NOT NULL,
            PRIMARY KEY (tenant, namespace, actor_id, seq))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.journal_snapshots (
            tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
            seq BIGINT NOT NULL, epoch BIGINT NOT NULL, data BYTEA NOT NULL,
            checksum BIGINT NOT NULL,
            PRIMARY KEY (tenant, namespace, actor_id))"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {s}.journal_reminders (
            tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
            name TEXT NOT NULL, due_at_ms BIGINT NOT NULL, period_ms BIGINT,
            payload BYTEA NOT NULL,
            PRIMARY KEY (tenant, namespace, actor_id, name))"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS journal_reminders_due ON {s}.journal_reminders (due_at_ms)"
        ),
    ]
}

const KEY: &str = "tenant = $1 AND namespace = $2 AND actor_id = $3";

fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

fn valid_schema(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("invalid schema name {s:?}")))
    }
}

/// A [`Journal`] in PostgreSQL. Cheap to clone; the writer task stops when the last clone
/// is dropped.
#[derive(Debug, Clone)]
pub struct PostgresJournal {
    tx: mpsc::Sender<Request>,
    counters: Arc<Counters>,
    pool: PgPool,
    schema: String,
}

struct Writer {
    conn: PgConnection,
    connect: PgConnectOptions,
    schema: String,
}

impl PostgresJournal {
    /// Connects, creates the schema and tables if needed, and starts the writer task.
    pub async fn open(options: PostgresOptions) -> Result<Self> {
        valid_schema(&options.schema)?;
        let connect = PgConnectOptions::from_str(&options.url)?.disable_statement_logging();
        let mut conn = connect.connect().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(format!("plexspaces-journal-ddl-{}", options.schema))
            .execute(&mut *tx)
            .await?;
        for stmt in schema_ddl(&options.schema) {
            sqlx::query(&stmt).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let pool = PgPoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(connect.clone())
            .await?;
        let (tx, rx) = mpsc::channel(options.max_batch.max(1) * 4);
        let writer = Writer {
            conn,
            connect,
            schema: options.schema.clone(),
        };
        let counters = Arc::new(Counters::default());
        tokio::spawn(group::run_writer(
            writer,
            rx,
            options.max_batch,
            counters.clone(),
        ));
        Ok(Self {
            tx,
            counters,
            pool,
            schema: options.schema,
        })
    }

    /// How many writes group commit has put in how many transactions.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.counters.snapshot()
    }

    /// A reminder store in the same schema.
    pub fn reminder_store(&self) -> PostgresReminderStore {
        PostgresReminderStore {
            pool: self.pool.clone(),
            schema: self.schema.clone(),
        }
    }
}

async fn current(
    conn: &mut PgConnection,
    schema: &str,
    s: &StreamId,
) -> Result<Option<(u64, u64)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT epoch, next_seq FROM {schema}.journal_streams WHERE {KEY}"
    ))
    .bind(&s.tenant)
    .bind(&s.namespace)
    .bind(&s.actor_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(r) => Some((
            r.try_get::<i64, _>(0)? as u64,
            r.try_get::<i64, _>(1)? as u64,
        )),
        None => None,
    })
}

#[async_trait]
impl BatchWriter for Writer {
    async fn begin(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("BEGIN")
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }
    async fn commit(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("COMMIT")
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }
    async fn rollback(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("ROLLBACK")
            .execute(&mut self.conn)
            .await
            .map(|_| ())
    }

    async fn apply(&mut self, op: &Op) -> Result<Result<Val>, sqlx::Error> {
        let schema = self.schema.as_str();
        let conn = &mut self.conn;
        match op {
            Op::Acquire { stream: s } => {
                let row = sqlx::query(&format!(
                    "INSERT INTO {schema}.journal_streams AS t (tenant, namespace, actor_id, epoch, next_seq)
                     VALUES ($1, $2, $3, 1, 1)
                     ON CONFLICT (tenant, namespace, actor_id) DO UPDATE SET epoch = t.epoch + 1
                     RETURNING epoch"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .fetch_one(&mut *conn)
                .await?;
                Ok(Ok(Val::Epoch(Epoch(row.try_get::<i64, _>(0)? as u64))))
            }
            Op::Append {
                stream,
                epoch,
                entries,
            } => {
                let req = AppendReq {
                    stream,
                    epoch: *epoch,
                    entries,
                };
                let mut r = group::apply_appends(self, &[req]).await?;
                Ok(r.pop().unwrap_or(Err(Error::Closed)))
            }
            Op::Snapshot {
                stream: s,
                epoch,
                seq,
                data,
                checksum,
            } => {
                // Lock the stream row so a concurrent acquire_epoch orders after us.
                let locked = sqlx::query(&format!(
                    "SELECT epoch, next_seq FROM {schema}.journal_streams WHERE {KEY} FOR SHARE"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .fetch_optional(&mut *conn)
                .await?;
                let cur = match locked {
                    Some(r) => Some((
                        r.try_get::<i64, _>(0)? as u64,
                        r.try_get::<i64, _>(1)? as u64,
                    )),
                    None => None,
                };
                if let Some(err) = epoch_refusal(s, *epoch, cur) {
                    return Ok(Err(err));
                }
                sqlx::query(&format!(
                    "INSERT INTO {schema}.journal_snapshots (tenant, namespace, actor_id, seq, epoch, data, checksum)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (tenant, namespace, actor_id) DO UPDATE SET
                       seq = excluded.seq, epoch = excluded.epoch, data = excluded.data,
                       checksum = excluded.checksum"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .bind(i(*seq))
                .bind(i(epoch.0))
                .bind(data)
                .bind(i64::from(*checksum))
                .execute(&mut *conn)
                .await?;
                Ok(Ok(Val::Unit))
            }
            Op::TruncateBefore { stream: s, seq } => {
                let n = sqlx::query(&format!(
                    "DELETE FROM {schema}.journal_entries WHERE {KEY} AND seq < $4 AND seq <= COALESCE(
                       (SELECT seq FROM {schema}.journal_snapshots WHERE {KEY}), -1)"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .bind(i(*seq))
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(Ok(Val::Count(n)))
            }
            Op::TruncateFrom {
                stream: s,
                epoch,
                seq,
            } => {
                let updated = sqlx::query(&format!(
                    "UPDATE {schema}.journal_streams SET next_seq = $4 WHERE {KEY} AND epoch = $5"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .bind(i((*seq).max(1)))
                .bind(i(epoch.0))
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if updated != 1 {
                    let cur = current(conn, schema, s).await?;
                    let err = epoch_refusal(s, *epoch, cur).unwrap_or_else(|| {
                        Error::InvalidArgument(format!("stream {s} does not exist"))
                    });
                    return Ok(Err(err));
                }
                let n = sqlx::query(&format!(
                    "DELETE FROM {schema}.journal_entries WHERE {KEY} AND seq >= $4"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .bind(i(*seq))
                .execute(&mut *conn)
                .await?
                .rows_affected();
                Ok(Ok(Val::Count(n)))
            }
        }
    }

    async fn load_heads(
        &mut self,
        streams: &[&StreamId],
    ) -> Result<HashMap<StreamId, (u64, u64)>, sqlx::Error> {
        let schema = self.schema.as_str();
        let mut heads = HashMap::new();
        for chunk in streams.chunks(300) {
            let mut qb = QueryBuilder::<Postgres>::new(format!(
                "SELECT tenant, namespace, actor_id, epoch, next_seq FROM {schema}.journal_streams
                 WHERE (tenant, namespace, actor_id) IN ("
            ));
            qb.push_values(chunk, |mut b, s| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id);
            });
            qb.push(") FOR UPDATE");
            for r in qb.build().fetch_all(&mut self.conn).await? {
                let id = StreamId {
                    tenant: r.try_get(0)?,
                    namespace: r.try_get(1)?,
                    actor_id: r.try_get(2)?,
                };
                let head = (
                    r.try_get::<i64, _>(3)? as u64,
                    r.try_get::<i64, _>(4)? as u64,
                );
                heads.insert(id, head);
            }
        }
        Ok(heads)
    }

    async fn insert_rows(&mut self, rows: &[(&StreamId, &Entry)]) -> Result<(), sqlx::Error> {
        let schema = self.schema.as_str();
        for chunk in rows.chunks(500) {
            let mut qb = QueryBuilder::<Postgres>::new(format!(
                "INSERT INTO {schema}.journal_entries (tenant, namespace, actor_id, seq, kind, payload, checksum) "
            ));
            qb.push_values(chunk, |mut b, (s, e)| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id)
                    .push_bind(i(e.seq))
                    .push_bind(i16::from(e.kind.code()))
                    .push_bind(&e.payload)
                    .push_bind(i64::from(e.checksum));
            });
            qb.build().execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn set_heads(&mut self, heads: &[(&StreamId, u64)]) -> Result<(), sqlx::Error> {
        let schema = self.schema.as_str();
        for chunk in heads.chunks(500) {
            let mut qb = QueryBuilder::<Postgres>::new(format!(
                "UPDATE {schema}.journal_streams AS t SET next_seq = v.next FROM ("
            ));
            qb.push_values(chunk, |mut b, (s, next)| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id)
                    .push_bind(i(*next));
            });
            qb.push(
                ") AS v (tenant, namespace, actor_id, next) WHERE t.tenant = v.tenant
                 AND t.namespace = v.namespace AND t.actor_id = v.actor_id",
            );
            qb.build().execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn advance_heads(
        &mut self,
        candidates: &[(&StreamId, u64, u64, u64)],
    ) -> Result<u64, sqlx::Error> {
        let schema = self.schema.as_str();
        let mut advanced = 0;
        for chunk in candidates.chunks(500) {
            let mut qb = QueryBuilder::<Postgres>::new(format!(
                "UPDATE {schema}.journal_streams AS t SET next_seq = v.next FROM ("
            ));
            qb.push_values(chunk, |mut b, (s, epoch, first, next)| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id)
                    .push_bind(i(*epoch))
                    .push_bind(i(*first))
                    .push_bind(i(*next));
            });
            qb.push(
                ") AS v (tenant, namespace, actor_id, epoch, first, next)
                 WHERE t.tenant = v.tenant AND t.namespace = v.namespace
                 AND t.actor_id = v.actor_id AND t.epoch = v.epoch AND t.next_seq = v.first",
            );
            advanced += qb.build().execute(&mut self.conn).await?.rows_affected();
        }
        Ok(advanced)
    }

    async fn execute_raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql).execute(&mut self.conn).await.map(|_| ())
    }

    async fn recover(&mut self) {
        if self.conn.ping().await.is_ok() {
            return;
        }
        match self.connect.connect().await {
            Ok(c) => {
                tracing::info!("postgres journal writer reconnected");
                self.conn = c;
            }
            Err(e) => tracing::warn!(error = %e, "postgres journal writer cannot reconnect"),
        }
    }
}

fn unexpected(v: Val) -> Error {
    Error::InvalidState(format!("unexpected writer reply {v:?}"))
}

#[async_trait]
impl Journal for PostgresJournal {
    async fn acquire_epoch(&self, stream: &StreamId) -> Result<Epoch> {
        match group::send(
            &self.tx,
            Op::Acquire {
                stream: stream.clone(),
            },
        )
        .await?
        {
            Val::Epoch(e) => Ok(e),
            v => Err(unexpected(v)),
        }
    }

    async fn append(&self, stream: &StreamId, epoch: Epoch, entries: Vec<Entry>) -> Result<()> {
        group::check_batch(stream, &entries)?;
        let op = Op::Append {
            stream: stream.clone(),
            epoch,
            entries,
        };
        group::send(&self.tx, op).await.map(|_| ())
    }

    async fn start_append(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        entries: Vec<Entry>,
    ) -> Result<crate::Committing> {
        group::check_batch(stream, &entries)?;
        let op = Op::Append {
            stream: stream.clone(),
            epoch,
            entries,
        };
        let done = group::start(&self.tx, op).await?;
        Ok(Box::pin(async move { done.await.map(drop) }))
    }

    async fn read(&self, stream: &StreamId, from_seq: Seq, to_seq: Seq) -> Result<Vec<Entry>> {
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        let schema = &self.schema;
        let rows = sqlx::query(&format!(
            "SELECT seq, kind, payload, checksum FROM {schema}.journal_entries
             WHERE {KEY} AND seq >= $4 AND seq <= $5 ORDER BY seq"
        ))
        .bind(&stream.tenant)
        .bind(&stream.namespace)
        .bind(&stream.actor_id)
        .bind(i(from_seq))
        .bind(i(to_seq))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Entry::from_stored(
                    r.try_get::<i64, _>(0)? as u64,
                    r.try_get::<i16, _>(1)? as u8,
                    r.try_get::<Vec<u8>, _>(2)?,
                    r.try_get::<i64, _>(3)? as u32,
                ))
            })
            .collect()
    }

    async fn next_seq(&self, stream: &StreamId) -> Result<Seq> {
        let schema = &self.schema;
        let v: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT next_seq FROM {schema}.journal_streams WHERE {KEY}"
        ))
        .bind(&stream.tenant)
        .bind(&stream.namespace)
        .bind(&stream.actor_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(v.map(|v| v as u64).unwrap_or(1))
    }

    async fn save_snapshot(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        seq: Seq,
        data: Vec<u8>,
    ) -> Result<()> {
        let snap = Snapshot::new(seq, epoch, data);
        let op = Op::Snapshot {
            stream: stream.clone(),
            epoch,
            seq,
            checksum: snap.checksum,
            data: snap.data,
        };
        group::send(&self.tx, op).await.map(|_| ())
    }

    async fn latest_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let schema = &self.schema;
        let row = sqlx::query(&format!(
            "SELECT seq, epoch, data, checksum FROM {schema}.journal_snapshots WHERE {KEY}"
        ))
        .bind(&stream.tenant)
        .bind(&stream.namespace)
        .bind(&stream.actor_id)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(Snapshot {
                seq: r.try_get::<i64, _>(0)? as u64,
                epoch: Epoch(r.try_get::<i64, _>(1)? as u64),
                data: r.try_get(2)?,
                checksum: r.try_get::<i64, _>(3)? as u32,
            })),
        }
    }

    async fn truncate_before(&self, stream: &StreamId, seq: Seq) -> Result<u64> {
        let op = Op::TruncateBefore {
            stream: stream.clone(),
            seq,
        };
        match group::send(&self.tx, op).await? {
            Val::Count(n) => Ok(n),
            v => Err(unexpected(v)),
        }
    }

    async fn truncate_from(&self, stream: &StreamId, epoch: Epoch, seq: Seq) -> Result<u64> {
        let op = Op::TruncateFrom {
            stream: stream.clone(),
            epoch,
            seq,
        };
        match group::send(&self.tx, op).await? {
            Val::Count(n) => Ok(n),
            v => Err(unexpected(v)),
        }
    }

    async fn history_len(&self, stream: &StreamId) -> Result<u64> {
        let schema = &self.schema;
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {schema}.journal_entries WHERE {KEY}"
        ))
        .bind(&stream.tenant)
        .bind(&stream.namespace)
        .bind(&stream.actor_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }
}

/// A [`ReminderStore`] in the journal's PostgreSQL schema.
#[derive(Debug, Clone)]
pub struct PostgresReminderStore {
    pool: PgPool,
    schema: String,
}

impl PostgresReminderStore {
    /// Opens the store (creating the schema and tables if needed).
    pub async fn open(options: PostgresOptions) -> Result<Self> {
        Ok(PostgresJournal::open(options).await?.reminder_store())
    }
}

fn reminder_from(r: &PgRow) -> Result<Reminder> {
    Ok(Reminder {
        owner: StreamId {
            tenant: r.try_get(0)?,
            namespace: r.try_get(1)?,
            actor_id: r.try_get(2)?,
        },
        name: r.try_get(3)?,
        due_at_ms: r.try_get::<i64, _>(4)? as u64,
        period_ms: r.try_get::<Option<i64>, _>(5)?.map(|p| p as u64),
        payload: r.try_get(6)?,
    })
}

const REMINDER_COLS: &str = "tenant, namespace, actor_id, name, due_at_ms, period_ms, payload";

#[async_trait]
impl ReminderStore for PostgresReminderStore {
    async fn upsert(&self, r: &Reminder) -> Result<()> {
        r.validate()?;
        let schema = &self.schema;
        sqlx::query(&format!(
            "INSERT INTO {schema}.journal_reminders ({REMINDER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (tenant, namespace, actor_id, name) DO UPDATE SET
               due_at_ms = excluded.due_at_ms, period_ms = excluded.period_ms,
               payload = excluded.payload"
        ))
        .bind(&r.owner.tenant)
        .bind(&r.owner.namespace)
        .bind(&r.owner.actor_id)
        .bind(&r.name)
        .bind(i(r.due_at_ms))
        .bind(r.period_ms.map(i))
        .bind(&r.payload)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn cancel(&self, owner: &StreamId, name: &str) -> Result<bool> {
        let schema = &self.schema;
        let n = sqlx::query(&format!(
            "DELETE FROM {schema}.journal_reminders WHERE {KEY} AND name = $4"
        ))
        .bind(&owner.tenant)
        .bind(&owner.namespace)
        .bind(&owner.actor_id)
        .bind(name)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn get(&self, owner: &StreamId, name: &str) -> Result<Option<Reminder>> {
        let schema = &self.schema;
        let row = sqlx::query(&format!(
            "SELECT {REMINDER_COLS} FROM {schema}.journal_reminders WHERE {KEY} AND name = $4"
        ))
        .bind(&owner.tenant)
        .bind(&owner.namespace)
        .bind(&owner.actor_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(reminder_from).transpose()
    }

    async fn list(&self, owner: &StreamId) -> Result<Vec<Reminder>> {
        let schema = &self.schema;
        let rows = sqlx::query(&format!(
            "SELECT {REMINDER_COLS} FROM {schema}.journal_reminders WHERE {KEY} ORDER BY name"
        ))
        .bind(&owner.tenant)
        .bind(&owner.namespace)
        .bind(&owner.actor_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(reminder_from).collect()
    }

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Reminder>> {
        let schema = &self.schema;
        let rows = sqlx::query(&format!(
            "SELECT {REMINDER_COLS} FROM {schema}.journal_reminders WHERE due_at_ms <= $1
             ORDER BY due_at_ms LIMIT $2"
        ))
        .bind(i(now_ms))
        .bind(i(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(reminder_from).collect()
    }

    async fn reschedule(&self, fired: &Reminder, next_due_ms: Option<u64>) -> Result<bool> {
        let o = &fired.owner;
        let schema = &self.schema;
        let n = match next_due_ms {
            Some(next) => {
                sqlx::query(&format!(
                    "UPDATE {schema}.journal_reminders SET due_at_ms = $6
                     WHERE {KEY} AND name = $4 AND due_at_ms = $5"
                ))
                .bind(&o.tenant)
                .bind(&o.namespace)
                .bind(&o.actor_id)
                .bind(&fired.name)
                .bind(i(fired.due_at_ms))
                .bind(i(next))
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "DELETE FROM {schema}.journal_reminders WHERE {KEY} AND name = $4 AND due_at_ms = $5"
                ))
                .bind(&o.tenant)
                .bind(&o.namespace)
                .bind(&o.actor_id)
                .bind(&fired.name)
                .bind(i(fired.due_at_ms))
                .execute(&self.pool)
                .await?
            }
        }
        .rows_affected();
        Ok(n > 0)
    }
}
