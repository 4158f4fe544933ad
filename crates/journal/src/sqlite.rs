//! SQLite backend (feature `sqlite`): WAL mode, one writer task with group commit, a pool
//! of readers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite};
use tokio::sync::mpsc;

use crate::group::{
    self, epoch_refusal, AppendReq, BatchWriter, Counters, GroupCommitStats, Op, Request, Val,
};
use crate::reminders::{Reminder, ReminderStore};
use crate::{Entry, Epoch, Error, Journal, Result, Seq, Snapshot, StreamId};

/// Options of [`SqliteJournal`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file (created if missing).
    pub path: PathBuf,
    /// At most this many writes share one transaction.
    pub max_batch: usize,
    /// `synchronous=FULL` (fsync on every commit, survives power loss) when true;
    /// `NORMAL` (survives a process crash, may lose the last commits on power loss) when false.
    pub synchronous_full: bool,
    /// Reader connections.
    pub read_connections: u32,
    /// The SQLite VFS to open the file with (`None`: SQLite's default). Tests use it to put
    /// a fault-injecting file layer under the journal.
    pub vfs: Option<String>,
}

impl SqliteOptions {
    /// Defaults for a file: batches of 512, `synchronous=FULL`, 4 readers.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_batch: 512,
            synchronous_full: true,
            read_connections: 4,
            vfs: None,
        }
    }
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS journal_streams (
        tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
        epoch INTEGER NOT NULL, next_seq INTEGER NOT NULL,
        PRIMARY KEY (tenant, namespace, actor_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS journal_entries (
        tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
        seq INTEGER NOT NULL, kind INTEGER NOT NULL, payload BLOB NOT NULL,
        checksum INTEGER NOT NULL,
        PRIMARY KEY (tenant, namespace, actor_id, seq))",
    "CREATE TABLE IF NOT EXISTS journal_snapshots (
        tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
        seq INTEGER NOT NULL, epoch INTEGER NOT NULL, data BLOB NOT NULL,
        checksum INTEGER NOT NULL,
        PRIMARY KEY (tenant, namespace, actor_id))",
    "CREATE TABLE IF NOT EXISTS journal_reminders (
        tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_id TEXT NOT NULL,
        name TEXT NOT NULL, due_at_ms INTEGER NOT NULL, period_ms INTEGER,
        payload BLOB NOT NULL,
        PRIMARY KEY (tenant, namespace, actor_id, name))",
    "CREATE INDEX IF NOT EXISTS journal_reminders_due ON journal_reminders (due_at_ms)",
];

const KEY: &str = "tenant = ? AND namespace = ? AND actor_id = ?";

fn i(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

/// A [`Journal`] in a SQLite file. Cheap to clone; the writer task stops when the last
/// clone is dropped.
#[derive(Debug, Clone)]
pub struct SqliteJournal {
    tx: mpsc::Sender<Request>,
    counters: Arc<Counters>,
    pool: SqlitePool,
}

struct Writer {
    conn: SqliteConnection,
}

impl SqliteJournal {
    /// Opens (creating if needed) the database and starts the writer task.
    pub async fn open(options: SqliteOptions) -> Result<Self> {
        let mut connect = SqliteConnectOptions::new();
        if let Some(vfs) = &options.vfs {
            connect = connect.vfs(vfs.clone());
        }
        let connect = connect
            .filename(&options.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(30))
            .disable_statement_logging();
        let mut conn = connect.connect().await?;
        for stmt in SCHEMA {
            sqlx::query(stmt).execute(&mut conn).await?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .connect_with(connect)
            .await?;
        let (tx, rx) = mpsc::channel(options.max_batch.max(1) * 4);
        let counters = Arc::new(Counters::default());
        tokio::spawn(group::run_writer(
            Writer { conn },
            rx,
            options.max_batch,
            counters.clone(),
        ));
        Ok(Self { tx, counters, pool })
    }

    /// How many writes group commit has put in how many transactions.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.counters.snapshot()
    }

    /// A reminder store in the same database file.
    pub fn reminder_store(&self) -> SqliteReminderStore {
        SqliteReminderStore {
            pool: self.pool.clone(),
        }
    }
}

async fn current(
    conn: &mut SqliteConnection,
    s: &StreamId,
) -> Result<Option<(u64, u64)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT epoch, next_seq FROM journal_streams WHERE {KEY}"
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
        sqlx::query("BEGIN IMMEDIATE")
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
        let conn = &mut self.conn;
        match op {
            Op::Acquire { stream: s } => {
                let row = sqlx::query(
                    "INSERT INTO journal_streams (tenant, namespace, actor_id, epoch, next_seq)
                     VALUES (?, ?, ?, 1, 1)
                     ON CONFLICT (tenant, namespace, actor_id) DO UPDATE SET epoch = epoch + 1
                     RETURNING epoch",
                )
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
                let cur = current(conn, s).await?;
                if let Some(err) = epoch_refusal(s, *epoch, cur) {
                    return Ok(Err(err));
                }
                sqlx::query(
                    "INSERT INTO journal_snapshots (tenant, namespace, actor_id, seq, epoch, data, checksum)
                     VALUES (?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (tenant, namespace, actor_id) DO UPDATE SET
                       seq = excluded.seq, epoch = excluded.epoch, data = excluded.data,
                       checksum = excluded.checksum",
                )
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
                    "DELETE FROM journal_entries WHERE {KEY} AND seq < ? AND seq <= COALESCE(
                       (SELECT seq FROM journal_snapshots WHERE {KEY}), -1)"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .bind(i(*seq))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
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
                let cur = current(conn, s).await?;
                if let Some(err) = epoch_refusal(s, *epoch, cur) {
                    return Ok(Err(err));
                }
                let n = sqlx::query(&format!(
                    "DELETE FROM journal_entries WHERE {KEY} AND seq >= ?"
                ))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .bind(i(*seq))
                .execute(&mut *conn)
                .await?
                .rows_affected();
                sqlx::query(&format!(
                    "UPDATE journal_streams SET next_seq = ? WHERE {KEY}"
                ))
                .bind(i((*seq).max(1)))
                .bind(&s.tenant)
                .bind(&s.namespace)
                .bind(&s.actor_id)
                .execute(&mut *conn)
                .await?;
                Ok(Ok(Val::Count(n)))
            }
        }
    }

    async fn load_heads(
        &mut self,
        streams: &[&StreamId],
    ) -> Result<HashMap<StreamId, (u64, u64)>, sqlx::Error> {
        let mut heads = HashMap::new();
        for chunk in streams.chunks(300) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "SELECT tenant, namespace, actor_id, epoch, next_seq FROM journal_streams
                 WHERE (tenant, namespace, actor_id) IN (",
            );
            qb.push_values(chunk, |mut b, s| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id);
            });
            qb.push(")");
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
        for chunk in rows.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO journal_entries (tenant, namespace, actor_id, seq, kind, payload, checksum) ",
            );
            qb.push_values(chunk, |mut b, (s, e)| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id)
                    .push_bind(i(e.seq))
                    .push_bind(i64::from(e.kind.code()))
                    .push_bind(&e.payload)
                    .push_bind(i64::from(e.checksum));
            });
            qb.build().execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn set_heads(&mut self, heads: &[(&StreamId, u64)]) -> Result<(), sqlx::Error> {
        for chunk in heads.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "UPDATE journal_streams SET next_seq = v.column4 FROM (",
            );
            qb.push_values(chunk, |mut b, (s, next)| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id)
                    .push_bind(i(*next));
            });
            qb.push(") AS v WHERE journal_streams.tenant = v.column1
                 AND journal_streams.namespace = v.column2 AND journal_streams.actor_id = v.column3");
            qb.build().execute(&mut self.conn).await?;
        }
        Ok(())
    }

    async fn advance_heads(
        &mut self,
        candidates: &[(&StreamId, u64, u64, u64)],
    ) -> Result<u64, sqlx::Error> {
        let mut advanced = 0;
        for chunk in candidates.chunks(500) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "UPDATE journal_streams SET next_seq = v.column6 FROM (",
            );
            qb.push_values(chunk, |mut b, (s, epoch, first, next)| {
                b.push_bind(&s.tenant)
                    .push_bind(&s.namespace)
                    .push_bind(&s.actor_id)
                    .push_bind(i(*epoch))
                    .push_bind(i(*first))
                    .push_bind(i(*next));
            });
            qb.push(
                ") AS v WHERE journal_streams.tenant = v.column1
                 AND journal_streams.namespace = v.column2 AND journal_streams.actor_id = v.column3
                 AND journal_streams.epoch = v.column4 AND journal_streams.next_seq = v.column5",
            );
            advanced += qb.build().execute(&mut self.conn).await?.rows_affected();
        }
        Ok(advanced)
    }

    async fn execute_raw(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        sqlx::query(sql).execute(&mut self.conn).await.map(|_| ())
    }

    async fn recover(&mut self) {
        if self.conn.ping().await.is_err() {
            tracing::warn!("sqlite writer connection is broken");
        }
    }
}

fn unexpected(v: Val) -> Error {
    Error::InvalidState(format!("unexpected writer reply {v:?}"))
}

#[async_trait]
impl Journal for SqliteJournal {
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
        let rows = sqlx::query(&format!(
            "SELECT seq, kind, payload, checksum FROM journal_entries
             WHERE {KEY} AND seq >= ? AND seq <= ? ORDER BY seq"
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
                    r.try_get::<i64, _>(1)? as u8,
                    r.try_get::<Vec<u8>, _>(2)?,
                    r.try_get::<i64, _>(3)? as u32,
                ))
            })
            .collect()
    }

    async fn next_seq(&self, stream: &StreamId) -> Result<Seq> {
        let v: Option<i64> =
            sqlx::query_scalar(&format!("SELECT next_seq FROM journal_streams WHERE {KEY}"))
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
        let row = sqlx::query(&format!(
            "SELECT seq, epoch, data, checksum FROM journal_snapshots WHERE {KEY}"
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
        let n: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM journal_entries WHERE {KEY}"))
                .bind(&stream.tenant)
                .bind(&stream.namespace)
                .bind(&stream.actor_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(n as u64)
    }
}

/// A [`ReminderStore`] in the journal's SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteReminderStore {
    pool: SqlitePool,
}

impl SqliteReminderStore {
    /// Opens the store in a database file (the same file as the journal, typically).
    pub async fn open(options: SqliteOptions) -> Result<Self> {
        Ok(SqliteJournal::open(options).await?.reminder_store())
    }
}

fn reminder_from(r: &sqlx::sqlite::SqliteRow) -> Result<Reminder> {
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
impl ReminderStore for SqliteReminderStore {
    async fn upsert(&self, r: &Reminder) -> Result<()> {
        r.validate()?;
        sqlx::query(&format!(
            "INSERT INTO journal_reminders ({REMINDER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)
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
        let n = sqlx::query(&format!(
            "DELETE FROM journal_reminders WHERE {KEY} AND name = ?"
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
        let row = sqlx::query(&format!(
            "SELECT {REMINDER_COLS} FROM journal_reminders WHERE {KEY} AND name = ?"
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
        let rows = sqlx::query(&format!(
            "SELECT {REMINDER_COLS} FROM journal_reminders WHERE {KEY} ORDER BY name"
        ))
        .bind(&owner.tenant)
        .bind(&owner.namespace)
        .bind(&owner.actor_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(reminder_from).collect()
    }

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Reminder>> {
        let rows = sqlx::query(&format!(
            "SELECT {REMINDER_COLS} FROM journal_reminders WHERE due_at_ms <= ?
             ORDER BY due_at_ms LIMIT ?"
        ))
        .bind(i(now_ms))
        .bind(i(limit as u64))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(reminder_from).collect()
    }

    async fn reschedule(&self, fired: &Reminder, next_due_ms: Option<u64>) -> Result<bool> {
        let o = &fired.owner;
        let update = format!(
            "UPDATE journal_reminders SET due_at_ms = ? WHERE {KEY} AND name = ? AND due_at_ms = ?"
        );
        let delete =
            format!("DELETE FROM journal_reminders WHERE {KEY} AND name = ? AND due_at_ms = ?");
        let q = match next_due_ms {
            Some(next) => sqlx::query(&update).bind(i(next)),
            None => sqlx::query(&delete),
        };
        let n = q
            .bind(&o.tenant)
            .bind(&o.namespace)
            .bind(&o.actor_id)
            .bind(&fired.name)
            .bind(i(fired.due_at_ms))
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn f<T: Send + Sync>() {}
    f::<SqliteJournal>();
    f::<Arc<SqliteReminderStore>>();
}
