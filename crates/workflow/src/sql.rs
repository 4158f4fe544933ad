//! [`SqlWorkflowStore`]: workflow records and inboxes in SQLite or PostgreSQL.
//!
//! One implementation serves both databases through sqlx's `Any` driver: the queries use
//! `$n` placeholders (which sqlx's SQLite driver accepts too) and only the DDL differs.
//! JSON values are stored as TEXT and integers as BIGINT, the types `Any` maps simply.

use std::sync::{Arc, Once};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::store::{
    InboxItem, InboxKind, NewInboxItem, WorkflowKey, WorkflowRecord, WorkflowStatus, WorkflowStore,
};
use crate::{Failure, Result, WorkflowError};

/// How often `push_inbox` retries after losing a race for the next seq.
const MAX_PUSH_TRIES: usize = 50;

const RECORD_COLUMNS: &str = "tenant, namespace, workflow_id, workflow_type, version, run, \
     status, input, result, failure, queries, parent, created_ms, updated_ms";

const INBOX_COLUMNS: &str = "seq, kind, name, payload, dedupe_id, result";

const KEY: &str = "tenant = $1 AND namespace = $2 AND workflow_id = $3";

fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

/// Workflow records and inboxes in SQLite (feature `sqlite`) or PostgreSQL (feature
/// `postgres`), through one implementation on sqlx's `Any` driver.
///
/// It holds one row per workflow id (the current run, status, input, result, failure and
/// saved query values) and each workflow's inbox (signals, updates and cancel requests in
/// acceptance order). Workflow history is not kept here: it lives in the journal.
///
/// Cheap to clone; clones share the connection pool.
#[derive(Debug, Clone)]
pub struct SqlWorkflowStore {
    pool: AnyPool,
    sql: Arc<Statements>,
}

/// The SQL text of every operation, built once with the table names formatted in.
#[derive(Debug)]
struct Statements {
    insert_record: String,
    get_record: String,
    update_record: String,
    list: String,
    list_unfinished: String,
    inbox_by_dedupe: String,
    push_inbox: String,
    read_inbox: String,
    inbox_item: String,
    set_inbox_result: String,
}

impl Statements {
    /// `prefix` is prepended to the table names: `""` or `"schema."`.
    fn new(prefix: &str) -> Self {
        let workflows = format!("{prefix}workflows");
        let inbox = format!("{prefix}workflow_inbox");
        Self {
            insert_record: format!(
                "INSERT INTO {workflows} ({RECORD_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
                 ON CONFLICT DO NOTHING"
            ),
            get_record: format!("SELECT {RECORD_COLUMNS} FROM {workflows} WHERE {KEY}"),
            update_record: format!(
                "UPDATE {workflows} SET run = $4, version = $5, status = $6, input = $7, \
                 result = $8, failure = $9, queries = $10, updated_ms = $11 WHERE {KEY}"
            ),
            list: format!(
                "SELECT {RECORD_COLUMNS} FROM {workflows} \
                 WHERE tenant = $1 AND ($2 IS NULL OR namespace = $2) \
                 AND ($3 IS NULL OR status = $3) \
                 ORDER BY created_ms DESC, workflow_id ASC LIMIT $4"
            ),
            list_unfinished: format!(
                "SELECT {RECORD_COLUMNS} FROM {workflows} \
                 WHERE status IN ('running', 'suspended') \
                 ORDER BY created_ms ASC, tenant ASC, namespace ASC, workflow_id ASC"
            ),
            inbox_by_dedupe: format!(
                "SELECT {INBOX_COLUMNS} FROM {inbox} WHERE {KEY} AND dedupe_id = $4"
            ),
            push_inbox: format!(
                "INSERT INTO {inbox} \
                 (tenant, namespace, workflow_id, seq, kind, name, payload, dedupe_id) \
                 SELECT $1, $2, $3, COALESCE(MAX(seq), 0) + 1, $4, $5, $6, $7 \
                 FROM {inbox} WHERE {KEY} \
                 ON CONFLICT DO NOTHING RETURNING seq"
            ),
            read_inbox: format!(
                "SELECT {INBOX_COLUMNS} FROM {inbox} WHERE {KEY} AND seq > $4 ORDER BY seq"
            ),
            inbox_item: format!("SELECT {INBOX_COLUMNS} FROM {inbox} WHERE {KEY} AND seq = $4"),
            set_inbox_result: format!(
                "UPDATE {inbox} SET result = $5 WHERE {KEY} AND seq = $4 AND result IS NULL"
            ),
        }
    }
}

/// The tables. `id` is the type of the key columns (PostgreSQL sorts them bytewise, like
/// the in-memory store); `prefix` is `""` or `"schema."`.
fn table_ddl(prefix: &str, id: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {prefix}workflows (
                tenant {id} NOT NULL,
                namespace {id} NOT NULL,
                workflow_id {id} NOT NULL,
                workflow_type TEXT NOT NULL,
                version BIGINT NOT NULL,
                run BIGINT NOT NULL,
                status TEXT NOT NULL,
                input TEXT NOT NULL,
                result TEXT NULL,
                failure TEXT NULL,
                queries TEXT NULL,
                parent TEXT NULL,
                created_ms BIGINT NOT NULL,
                updated_ms BIGINT NOT NULL,
                PRIMARY KEY (tenant, namespace, workflow_id))"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS workflows_tenant_status \
             ON {prefix}workflows (tenant, status)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {prefix}workflow_inbox (
                tenant {id} NOT NULL,
                namespace {id} NOT NULL,
                workflow_id {id} NOT NULL,
                seq BIGINT NOT NULL,
                kind TEXT NOT NULL,
                name TEXT NOT NULL,
                payload TEXT NOT NULL,
                dedupe_id TEXT NULL,
                result TEXT NULL,
                PRIMARY KEY (tenant, namespace, workflow_id, seq))"
        ),
        format!(
            "CREATE UNIQUE INDEX IF NOT EXISTS workflow_inbox_dedupe \
             ON {prefix}workflow_inbox (tenant, namespace, workflow_id, dedupe_id)"
        ),
    ]
}

impl SqlWorkflowStore {
    /// Opens (creating if missing) a SQLite database file in WAL mode, with a 5 s busy
    /// timeout, and creates the tables if they do not exist.
    #[cfg(feature = "sqlite")]
    pub async fn open_sqlite(path: impl AsRef<std::path::Path>) -> Result<Self> {
        install_drivers();
        let url = sqlite_url(path.as_ref())?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // Busy timeout first: switching to WAL may have to wait for a lock.
                    sqlx::Executor::execute(&mut *conn, "PRAGMA busy_timeout = 5000").await?;
                    sqlx::Executor::execute(&mut *conn, "PRAGMA journal_mode = WAL").await?;
                    sqlx::Executor::execute(&mut *conn, "PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Self::create_tables(&pool, &table_ddl("", "TEXT")).await?;
        Ok(Self {
            pool,
            sql: Arc::new(Statements::new("")),
        })
    }

    /// Connects to PostgreSQL at `url` and creates `schema` (letters, digits and `_`) and
    /// the tables in it if they do not exist.
    #[cfg(feature = "postgres")]
    pub async fn open_postgres(url: &str, schema: &str) -> Result<Self> {
        valid_schema(schema)?;
        install_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        let mut ddl = vec![format!("CREATE SCHEMA IF NOT EXISTS {schema}")];
        ddl.extend(table_ddl(&format!("{schema}."), "TEXT COLLATE \"C\""));
        Self::create_tables(&pool, &ddl).await?;
        Ok(Self {
            pool,
            sql: Arc::new(Statements::new(&format!("{schema}."))),
        })
    }

    async fn create_tables(pool: &AnyPool, ddl: &[String]) -> Result<()> {
        for statement in ddl {
            sqlx::raw_sql(statement).execute(pool).await?;
        }
        Ok(())
    }

    async fn find_dedupe(&self, key: &WorkflowKey, dedupe_id: &str) -> Result<Option<InboxItem>> {
        let row = sqlx::query(&self.sql.inbox_by_dedupe)
            .bind(&key.tenant)
            .bind(&key.namespace)
            .bind(&key.workflow_id)
            .bind(dedupe_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(inbox_from_row).transpose()
    }
}

/// `sqlite://<absolute path>?mode=rwc`, with the characters the URL would misread escaped.
#[cfg(feature = "sqlite")]
fn sqlite_url(path: &std::path::Path) -> Result<String> {
    let absolute = std::path::absolute(path).map_err(|e| {
        WorkflowError::InvalidArgument(format!("sqlite path {}: {e}", path.display()))
    })?;
    let text = absolute.to_str().ok_or_else(|| {
        WorkflowError::InvalidArgument(format!(
            "sqlite path {} is not valid UTF-8",
            absolute.display()
        ))
    })?;
    let mut url = String::from("sqlite://");
    for c in text.chars() {
        match c {
            '%' | '?' | '#' | ' ' | '"' | '<' | '>' | '`' | '{' | '}' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    url.push_str(&format!("%{b:02X}"));
                }
            }
            c if c.is_control() => {
                return Err(WorkflowError::InvalidArgument(
                    "sqlite path contains control characters".into(),
                ))
            }
            c => url.push(c),
        }
    }
    url.push_str("?mode=rwc");
    Ok(url)
}

/// A PostgreSQL schema name: 1-63 ASCII letters, digits and `_`, not starting with a digit
/// (it is formatted into SQL unquoted).
#[cfg(feature = "postgres")]
fn valid_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(WorkflowError::InvalidArgument(format!(
            "invalid schema name {schema:?}: use 1-63 letters, digits and _, not starting with a digit"
        )))
    }
}

/// A value to store in a BIGINT column.
fn to_db(v: u64, what: &str) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| WorkflowError::InvalidArgument(format!("{what} {v} is too large to store")))
}

/// A bound in a query: values above `i64::MAX` cannot be stored, so clamping is exact.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn from_db<T: TryFrom<i64>>(v: i64, what: &str) -> Result<T> {
    T::try_from(v).map_err(|_| WorkflowError::Storage(format!("stored {what} {v} is out of range")))
}

fn encode_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    Ok(serde_json::to_string(v)?)
}

fn encode_opt<T: serde::Serialize>(v: Option<&T>) -> Result<Option<String>> {
    v.map(encode_json).transpose()
}

fn decode_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| WorkflowError::Storage(format!("stored {what} is not valid JSON: {e}")))
}

fn decode_opt<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    what: &str,
) -> Result<Option<T>> {
    text.map(|t| decode_json(&t, what)).transpose()
}

fn record_from_row(row: &AnyRow) -> Result<WorkflowRecord> {
    let status: String = row.try_get("status")?;
    let status: WorkflowStatus = status
        .parse()
        .map_err(|_| WorkflowError::Storage(format!("bad stored workflow status {status:?}")))?;
    let input: String = row.try_get("input")?;
    Ok(WorkflowRecord {
        key: WorkflowKey {
            tenant: row.try_get("tenant")?,
            namespace: row.try_get("namespace")?,
            workflow_id: row.try_get("workflow_id")?,
        },
        workflow_type: row.try_get("workflow_type")?,
        version: from_db(row.try_get("version")?, "version")?,
        run: from_db(row.try_get("run")?, "run")?,
        status,
        input: decode_json(&input, "input")?,
        result: decode_opt(row.try_get("result")?, "result")?,
        failure: decode_opt::<Failure>(row.try_get("failure")?, "failure")?,
        queries: decode_opt(row.try_get("queries")?, "queries")?,
        parent: row.try_get("parent")?,
        created_ms: from_db(row.try_get("created_ms")?, "created_ms")?,
        updated_ms: from_db(row.try_get("updated_ms")?, "updated_ms")?,
    })
}

fn inbox_from_row(row: &AnyRow) -> Result<InboxItem> {
    let kind: String = row.try_get("kind")?;
    let payload: String = row.try_get("payload")?;
    Ok(InboxItem {
        seq: from_db(row.try_get("seq")?, "inbox seq")?,
        kind: InboxKind::parse(&kind)?,
        name: row.try_get("name")?,
        payload: decode_json(&payload, "inbox payload")?,
        dedupe_id: row.try_get("dedupe_id")?,
        result: decode_opt(row.try_get("result")?, "inbox result")?,
    })
}

#[async_trait]
impl WorkflowStore for SqlWorkflowStore {
    async fn insert_if_absent(&self, record: &WorkflowRecord) -> Result<Option<WorkflowRecord>> {
        let inserted = sqlx::query(&self.sql.insert_record)
            .bind(&record.key.tenant)
            .bind(&record.key.namespace)
            .bind(&record.key.workflow_id)
            .bind(&record.workflow_type)
            .bind(i64::from(record.version))
            .bind(to_db(record.run, "run")?)
            .bind(record.status.as_str())
            .bind(encode_json(&record.input)?)
            .bind(encode_opt(record.result.as_ref())?)
            .bind(encode_opt(record.failure.as_ref())?)
            .bind(encode_opt(record.queries.as_ref())?)
            .bind(record.parent.as_deref())
            .bind(to_db(record.created_ms, "created_ms")?)
            .bind(to_db(record.updated_ms, "updated_ms")?)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if inserted > 0 {
            return Ok(None);
        }
        match self.get(&record.key).await? {
            Some(existing) => Ok(Some(existing)),
            // Records are never deleted, so a conflict means the row is there.
            None => Err(WorkflowError::Storage(format!(
                "insert of {} conflicted but no record is stored",
                record.key
            ))),
        }
    }

    async fn get(&self, key: &WorkflowKey) -> Result<Option<WorkflowRecord>> {
        let row = sqlx::query(&self.sql.get_record)
            .bind(&key.tenant)
            .bind(&key.namespace)
            .bind(&key.workflow_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    async fn update(&self, record: &WorkflowRecord) -> Result<()> {
        let updated = sqlx::query(&self.sql.update_record)
            .bind(&record.key.tenant)
            .bind(&record.key.namespace)
            .bind(&record.key.workflow_id)
            .bind(to_db(record.run, "run")?)
            .bind(i64::from(record.version))
            .bind(record.status.as_str())
            .bind(encode_json(&record.input)?)
            .bind(encode_opt(record.result.as_ref())?)
            .bind(encode_opt(record.failure.as_ref())?)
            .bind(encode_opt(record.queries.as_ref())?)
            .bind(to_db(record.updated_ms, "updated_ms")?)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(WorkflowError::NotFound(record.key.to_string()));
        }
        Ok(())
    }

    async fn list(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        status: Option<WorkflowStatus>,
        limit: usize,
    ) -> Result<Vec<WorkflowRecord>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(&self.sql.list)
            .bind(tenant)
            .bind(namespace)
            .bind(status.map(WorkflowStatus::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn list_unfinished(&self) -> Result<Vec<WorkflowRecord>> {
        let rows = sqlx::query(&self.sql.list_unfinished)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    async fn push_inbox(&self, key: &WorkflowKey, item: NewInboxItem<'_>) -> Result<InboxItem> {
        let payload = encode_json(item.payload)?;
        for attempt in 0..MAX_PUSH_TRIES {
            if let Some(id) = item.dedupe_id {
                if let Some(existing) = self.find_dedupe(key, id).await? {
                    return Ok(existing);
                }
            }
            // Nothing is inserted when a concurrent pusher took the same seq (or stored the
            // same dedupe id) first: look again and retry.
            let seq: Option<i64> = sqlx::query_scalar(&self.sql.push_inbox)
                .bind(&key.tenant)
                .bind(&key.namespace)
                .bind(&key.workflow_id)
                .bind(item.kind.as_str())
                .bind(item.name)
                .bind(payload.as_str())
                .bind(item.dedupe_id)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(seq) = seq {
                return Ok(InboxItem {
                    seq: from_db(seq, "inbox seq")?,
                    kind: item.kind,
                    name: item.name.to_owned(),
                    payload: item.payload.clone(),
                    dedupe_id: item.dedupe_id.map(str::to_owned),
                    result: None,
                });
            }
            tracing::debug!(%key, attempt, "inbox push lost a race for the next seq; retrying");
            if attempt >= 3 {
                tokio::time::sleep(Duration::from_millis(attempt as u64)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        Err(WorkflowError::Storage(format!(
            "could not append to the inbox of {key}: {MAX_PUSH_TRIES} attempts lost to concurrent pushes"
        )))
    }

    async fn read_inbox(&self, key: &WorkflowKey, after: u64) -> Result<Vec<InboxItem>> {
        let rows = sqlx::query(&self.sql.read_inbox)
            .bind(&key.tenant)
            .bind(&key.namespace)
            .bind(&key.workflow_id)
            .bind(clamp(after))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(inbox_from_row).collect()
    }

    async fn inbox_item(&self, key: &WorkflowKey, seq: u64) -> Result<Option<InboxItem>> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let row = sqlx::query(&self.sql.inbox_item)
            .bind(&key.tenant)
            .bind(&key.namespace)
            .bind(&key.workflow_id)
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(inbox_from_row).transpose()
    }

    async fn set_inbox_result(
        &self,
        key: &WorkflowKey,
        seq: u64,
        result: &serde_json::Value,
    ) -> Result<()> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(());
        };
        sqlx::query(&self.sql.set_inbox_result)
            .bind(&key.tenant)
            .bind(&key.namespace)
            .bind(&key.workflow_id)
            .bind(seq)
            .bind(encode_json(result)?)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
