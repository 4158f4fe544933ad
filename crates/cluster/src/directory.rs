//! The activation directory: which node owns each virtual-actor activation, with a fencing
//! epoch, in a database every node shares.
//!
//! One row per activation key `(tenant, namespace, actor_type, key)`: its owner (node name and
//! incarnation, or none), its directory **epoch**, and the **journal epoch** the owner's
//! activation acquired. The epoch rises by one on every successful claim and never falls, even
//! across releases, so a (key, epoch) pair names one ownership period.
//!
//! Backends, all behind [`Directory`] and all run through one conformance suite
//! ([`conformance`]): [`MemoryDirectory`] (one process), `SqliteDirectory` (feature `sqlite`:
//! nodes on one host sharing a file) and `PostgresDirectory` (feature `postgres`: nodes on
//! many hosts).
//!
//! # Invariants
//! - **One owner.** [`Directory::claim`] is one atomic statement (an upsert whose update only
//!   fires when the row has no owner, or its owner is an older incarnation of the claimer):
//!   of concurrent claims of a free key exactly one is [`Claim::Granted`], the others see
//!   [`Claim::Held`] with the winner.
//! - **Reclaimed on detection, not by TTL.** Entries stay owned until their owner releases
//!   them ([`Directory::release`], on deactivation or drain) or a node that saw the owner
//!   leave the membership reclaims them ([`Directory::reclaim`]). Nothing expires by time.
//! - **Two lines of fencing.** A claim raises the directory epoch; the new owner's activation
//!   then acquires a strictly greater journal epoch (the journal's own contract) and records
//!   it with [`Directory::bind_journal_epoch`], which succeeds only for the current
//!   (owner, epoch). A fenced owner (its entry reclaimed and claimed by another node) fails
//!   both: its bind is refused with [`Error::Fenced`], and its journal appends with the old
//!   journal epoch are refused by the journal (`plexspaces_journal::Error::Fenced`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The identity of one virtual-actor activation in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ActorKey {
    /// Tenant.
    pub tenant: String,
    /// Namespace.
    pub namespace: String,
    /// Registered actor type.
    pub actor_type: String,
    /// Instance key.
    pub key: String,
}

impl ActorKey {
    /// A key from its four parts.
    pub fn new(tenant: &str, namespace: &str, actor_type: &str, key: &str) -> Self {
        ActorKey {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            actor_type: actor_type.to_owned(),
            key: key.to_owned(),
        }
    }
}

impl fmt::Display for ActorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.tenant, self.namespace, self.actor_type, self.key
        )
    }
}

/// The current owner of an activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// The owning node's name.
    pub node: String,
    /// The owning node's incarnation (its start time in ms: a restart is a new incarnation).
    pub incarnation: u64,
    /// The directory epoch of this ownership period.
    pub epoch: u64,
    /// The journal epoch its activation acquired, once bound.
    pub journal_epoch: Option<u64>,
}

/// The answer to [`Directory::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The claimer owns the activation (newly, or it already did).
    Granted(Owner),
    /// Another node (or another incarnation of the claimer that is not older) owns it.
    Held(Owner),
}

/// Who owns which activation, with fencing epochs. See the [module docs](self).
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Claims `key` for `node` (incarnation `incarnation`). Granted when the key has no owner
    /// (the epoch rises by one), when `node` already owns it with this incarnation (the
    /// epoch is unchanged), or when an older incarnation of `node` owns it (the epoch
    /// rises). Held otherwise.
    async fn claim(&self, key: &ActorKey, node: &str, incarnation: u64) -> Result<Claim>;

    /// The current owner of `key`, if any.
    async fn lookup(&self, key: &ActorKey) -> Result<Option<Owner>>;

    /// Gives `key` up if `node` owns it in period `epoch`. Returns whether it did.
    async fn release(&self, key: &ActorKey, node: &str, epoch: u64) -> Result<bool>;

    /// Records the journal epoch of `node`'s activation in period `epoch`. Refused with
    /// [`Error::Fenced`] when `node` no longer owns `key` in that period.
    async fn bind_journal_epoch(
        &self,
        key: &ActorKey,
        node: &str,
        epoch: u64,
        journal_epoch: u64,
    ) -> Result<()>;

    /// Frees every entry `node` owns with an incarnation below `before_incarnation`
    /// (`u64::MAX`: all of them), when membership saw the node leave or die, or when a
    /// restarted node clears what its previous incarnation left. Returns how many.
    async fn reclaim(&self, node: &str, before_incarnation: u64) -> Result<u64>;

    /// Every owned entry, sorted by key; only those of `node` with `Some`.
    async fn entries(&self, node: Option<&str>) -> Result<Vec<(ActorKey, Owner)>>;
}

/// A shared directory.
pub type SharedDirectory = Arc<dyn Directory>;

#[derive(Debug, Clone)]
struct Row {
    owner: Option<(String, u64)>,
    epoch: u64,
    journal_epoch: Option<u64>,
}

impl Row {
    fn owner(&self) -> Option<Owner> {
        self.owner.as_ref().map(|(node, inc)| Owner {
            node: node.clone(),
            incarnation: *inc,
            epoch: self.epoch,
            journal_epoch: self.journal_epoch,
        })
    }
}

/// A [`Directory`] in this process's memory: for a single node and for tests.
#[derive(Debug, Default, Clone)]
pub struct MemoryDirectory {
    rows: Arc<Mutex<HashMap<ActorKey, Row>>>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Directory for MemoryDirectory {
    async fn claim(&self, key: &ActorKey, node: &str, incarnation: u64) -> Result<Claim> {
        let mut rows = self.rows.lock();
        let row = rows.entry(key.clone()).or_insert(Row {
            owner: None,
            epoch: 0,
            journal_epoch: None,
        });
        let free = match &row.owner {
            None => true,
            Some((n, inc)) => n == node && *inc < incarnation,
        };
        if free {
            row.owner = Some((node.to_owned(), incarnation));
            row.epoch += 1;
            row.journal_epoch = None;
        }
        let owner = row
            .owner()
            .ok_or_else(|| Error::Directory("no owner".into()))?;
        Ok(decide(owner, node, incarnation))
    }

    async fn lookup(&self, key: &ActorKey) -> Result<Option<Owner>> {
        Ok(self.rows.lock().get(key).and_then(Row::owner))
    }

    async fn release(&self, key: &ActorKey, node: &str, epoch: u64) -> Result<bool> {
        let mut rows = self.rows.lock();
        match rows.get_mut(key) {
            Some(row)
                if row.epoch == epoch && row.owner.as_ref().is_some_and(|(n, _)| n == node) =>
            {
                row.owner = None;
                row.journal_epoch = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn bind_journal_epoch(
        &self,
        key: &ActorKey,
        node: &str,
        epoch: u64,
        journal_epoch: u64,
    ) -> Result<()> {
        let mut rows = self.rows.lock();
        match rows.get_mut(key) {
            Some(row)
                if row.epoch == epoch && row.owner.as_ref().is_some_and(|(n, _)| n == node) =>
            {
                row.journal_epoch = Some(journal_epoch);
                Ok(())
            }
            _ => Err(fenced(key, node, epoch)),
        }
    }

    async fn reclaim(&self, node: &str, before_incarnation: u64) -> Result<u64> {
        let mut n = 0;
        for row in self.rows.lock().values_mut() {
            if row
                .owner
                .as_ref()
                .is_some_and(|(o, inc)| o == node && *inc < before_incarnation)
            {
                row.owner = None;
                row.journal_epoch = None;
                n += 1;
            }
        }
        Ok(n)
    }

    async fn entries(&self, node: Option<&str>) -> Result<Vec<(ActorKey, Owner)>> {
        let mut out: Vec<(ActorKey, Owner)> = self
            .rows
            .lock()
            .iter()
            .filter_map(|(k, r)| r.owner().map(|o| (k.clone(), o)))
            .filter(|(_, o)| node.is_none_or(|n| o.node == n))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

fn decide(owner: Owner, node: &str, incarnation: u64) -> Claim {
    if owner.node == node && owner.incarnation == incarnation {
        Claim::Granted(owner)
    } else {
        Claim::Held(owner)
    }
}

fn fenced(key: &ActorKey, node: &str, epoch: u64) -> Error {
    Error::Fenced {
        key: key.to_string(),
        node: node.to_owned(),
        epoch,
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn int(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql {
    //! The SQL both database backends run (`$n` parameters, each first used in order).

    pub(super) struct Statements {
        pub ddl: String,
        pub claim: String,
        pub lookup: String,
        pub release: String,
        pub bind: String,
        pub reclaim: String,
        pub entries: String,
        pub entries_of: String,
    }

    const KEY: &str = "tenant = $1 AND namespace = $2 AND actor_type = $3 AND key = $4";
    const COLS: &str =
        "tenant, namespace, actor_type, key, owner, incarnation, epoch, journal_epoch";

    pub(super) fn statements(table: &str) -> Statements {
        Statements {
            ddl: format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                   tenant TEXT NOT NULL, namespace TEXT NOT NULL, actor_type TEXT NOT NULL,
                   key TEXT NOT NULL, owner TEXT, incarnation BIGINT NOT NULL,
                   epoch BIGINT NOT NULL, journal_epoch BIGINT, claimed_at_ms BIGINT NOT NULL,
                   PRIMARY KEY (tenant, namespace, actor_type, key))"
            ),
            claim: format!(
                "INSERT INTO {table} AS d
                   (tenant, namespace, actor_type, key, owner, incarnation, epoch, claimed_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7)
                 ON CONFLICT (tenant, namespace, actor_type, key) DO UPDATE SET
                   owner = excluded.owner, incarnation = excluded.incarnation,
                   epoch = d.epoch + 1, journal_epoch = NULL,
                   claimed_at_ms = excluded.claimed_at_ms
                 WHERE d.owner IS NULL
                    OR (d.owner = excluded.owner AND d.incarnation < excluded.incarnation)"
            ),
            lookup: format!(
                "SELECT owner, incarnation, epoch, journal_epoch FROM {table}
                 WHERE {KEY} AND owner IS NOT NULL"
            ),
            release: format!(
                "UPDATE {table} SET owner = NULL, journal_epoch = NULL
                 WHERE {KEY} AND owner = $5 AND epoch = $6"
            ),
            bind: format!(
                "UPDATE {table} SET journal_epoch = $1
                 WHERE tenant = $2 AND namespace = $3 AND actor_type = $4 AND key = $5
                   AND owner = $6 AND epoch = $7"
            ),
            reclaim: format!(
                "UPDATE {table} SET owner = NULL, journal_epoch = NULL
                 WHERE owner = $1 AND incarnation < $2"
            ),
            entries: format!(
                "SELECT {COLS} FROM {table} WHERE owner IS NOT NULL
                 ORDER BY tenant, namespace, actor_type, key"
            ),
            entries_of: format!(
                "SELECT {COLS} FROM {table} WHERE owner = $1
                 ORDER BY tenant, namespace, actor_type, key"
            ),
        }
    }
}

/// Implements [`Directory`] for a struct with fields `pool` (a sqlx pool) and `sql`
/// ([`sql::Statements`]); the two database backends differ only in their pool type.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
macro_rules! sql_directory {
    ($ty:ty) => {
        #[async_trait]
        impl Directory for $ty {
            async fn claim(&self, key: &ActorKey, node: &str, incarnation: u64) -> Result<Claim> {
                loop {
                    sqlx::query(&self.sql.claim)
                        .bind(&key.tenant)
                        .bind(&key.namespace)
                        .bind(&key.actor_type)
                        .bind(&key.key)
                        .bind(node)
                        .bind(int(incarnation))
                        .bind(now_ms())
                        .execute(&self.pool)
                        .await
                        .map_err(db)?;
                    // Whoever owns it now: us (granted) or the winner (held). A release
                    // between the two statements leaves no owner: claim again.
                    if let Some(owner) = self.lookup(key).await? {
                        return Ok(decide(owner, node, incarnation));
                    }
                }
            }

            async fn lookup(&self, key: &ActorKey) -> Result<Option<Owner>> {
                let row = sqlx::query(&self.sql.lookup)
                    .bind(&key.tenant)
                    .bind(&key.namespace)
                    .bind(&key.actor_type)
                    .bind(&key.key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db)?;
                row.map(|r| owner_at(&r, 0)).transpose()
            }

            async fn release(&self, key: &ActorKey, node: &str, epoch: u64) -> Result<bool> {
                let done = sqlx::query(&self.sql.release)
                    .bind(&key.tenant)
                    .bind(&key.namespace)
                    .bind(&key.actor_type)
                    .bind(&key.key)
                    .bind(node)
                    .bind(int(epoch))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                Ok(done.rows_affected() == 1)
            }

            async fn bind_journal_epoch(
                &self,
                key: &ActorKey,
                node: &str,
                epoch: u64,
                journal_epoch: u64,
            ) -> Result<()> {
                let done = sqlx::query(&self.sql.bind)
                    .bind(int(journal_epoch))
                    .bind(&key.tenant)
                    .bind(&key.namespace)
                    .bind(&key.actor_type)
                    .bind(&key.key)
                    .bind(node)
                    .bind(int(epoch))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                if done.rows_affected() == 1 {
                    Ok(())
                } else {
                    Err(fenced(key, node, epoch))
                }
            }

            async fn reclaim(&self, node: &str, before_incarnation: u64) -> Result<u64> {
                let done = sqlx::query(&self.sql.reclaim)
                    .bind(node)
                    .bind(int(before_incarnation))
                    .execute(&self.pool)
                    .await
                    .map_err(db)?;
                Ok(done.rows_affected())
            }

            async fn entries(&self, node: Option<&str>) -> Result<Vec<(ActorKey, Owner)>> {
                let rows = match node {
                    Some(n) => sqlx::query(&self.sql.entries_of).bind(n),
                    None => sqlx::query(&self.sql.entries),
                }
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
                rows.iter()
                    .map(|r| {
                        let key = ActorKey {
                            tenant: r.try_get(0).map_err(db)?,
                            namespace: r.try_get(1).map_err(db)?,
                            actor_type: r.try_get(2).map_err(db)?,
                            key: r.try_get(3).map_err(db)?,
                        };
                        Ok((key, owner_at(r, 4)?))
                    })
                    .collect()
            }
        }
    };
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn db(e: sqlx::Error) -> Error {
    Error::Directory(e.to_string())
}

/// Reads `owner, incarnation, epoch, journal_epoch` starting at column `at`.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
fn owner_at<R>(r: &R, at: usize) -> Result<Owner>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> Option<i64>: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    Ok(Owner {
        node: r.try_get(at).map_err(db)?,
        incarnation: r.try_get::<i64, _>(at + 1).map_err(db)?.max(0) as u64,
        epoch: r.try_get::<i64, _>(at + 2).map_err(db)?.max(0) as u64,
        journal_epoch: r
            .try_get::<Option<i64>, _>(at + 3)
            .map_err(db)?
            .map(|e| e.max(0) as u64),
    })
}

#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteDirectory;

#[cfg(feature = "sqlite")]
mod sqlite {
    use std::path::Path;
    use std::time::Duration;

    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
    use sqlx::{ConnectOptions, Row};

    use super::*;

    /// A [`Directory`] in a SQLite file, for nodes on one host (WAL mode; writers wait on
    /// each other through SQLite's lock, up to 30 s).
    #[derive(Clone)]
    pub struct SqliteDirectory {
        pool: SqlitePool,
        sql: Arc<sql::Statements>,
    }

    impl fmt::Debug for SqliteDirectory {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("SqliteDirectory").finish_non_exhaustive()
        }
    }

    impl SqliteDirectory {
        /// Opens (creating if missing) the directory in the file at `path`.
        pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
            let connect = SqliteConnectOptions::new()
                .filename(path.as_ref())
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(30))
                .disable_statement_logging();
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(connect)
                .await
                .map_err(db)?;
            let sql = sql::statements("plexspaces_directory");
            sqlx::query(&sql.ddl).execute(&pool).await.map_err(db)?;
            Ok(SqliteDirectory {
                pool,
                sql: Arc::new(sql),
            })
        }
    }

    sql_directory!(SqliteDirectory);
}

#[cfg(feature = "postgres")]
pub use self::postgres::PostgresDirectory;

#[cfg(feature = "postgres")]
mod postgres {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
    use sqlx::{ConnectOptions, Row};

    use super::*;

    /// A [`Directory`] in PostgreSQL, for nodes on many hosts: table `directory` in a
    /// schema of your choice (created if missing).
    #[derive(Clone)]
    pub struct PostgresDirectory {
        pool: PgPool,
        sql: Arc<sql::Statements>,
    }

    impl fmt::Debug for PostgresDirectory {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("PostgresDirectory").finish_non_exhaustive()
        }
    }

    impl PostgresDirectory {
        /// Connects to `url` and creates `schema.directory` if missing. `schema`: letters,
        /// digits and `_`, not starting with a digit.
        pub async fn open(url: &str, schema: &str) -> Result<Self> {
            let valid = !schema.is_empty()
                && schema.len() <= 63
                && schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !schema.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(Error::InvalidOption(format!(
                    "invalid directory schema name {schema:?}"
                )));
            }
            let connect = PgConnectOptions::from_str(url)
                .map_err(|e| Error::InvalidOption(format!("directory url: {e}")))?
                .disable_statement_logging();
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .connect_with(connect)
                .await
                .map_err(db)?;
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .execute(&pool)
                .await
                .map_err(db)?;
            let sql = sql::statements(&format!("{schema}.directory"));
            sqlx::query(&sql.ddl).execute(&pool).await.map_err(db)?;
            Ok(PostgresDirectory {
                pool,
                sql: Arc::new(sql),
            })
        }
    }

    sql_directory!(PostgresDirectory);
}

pub mod conformance {
    //! The suite every [`Directory`] backend passes (called from the crate's tests against
    //! memory, SQLite and a real PostgreSQL).

    use super::*;

    fn key(name: &str) -> ActorKey {
        ActorKey::new("t1", "ns", "counter", name)
    }

    fn check(ok: bool, what: &str) -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(Error::Directory(format!("conformance: {what}")))
        }
    }

    /// Claim, lookup, release, and the epoch rising across owners.
    pub async fn claim_lookup_release(d: &dyn Directory, prefix: &str) -> Result<()> {
        let k = key(&format!("{prefix}-a"));
        check(d.lookup(&k).await?.is_none(), "a fresh key has no owner")?;
        let Claim::Granted(a) = d.claim(&k, "alpha", 1).await? else {
            return Err(Error::Directory("conformance: first claim must win".into()));
        };
        check(a.node == "alpha" && a.epoch >= 1, "first owner is alpha")?;
        check(
            d.claim(&k, "alpha", 1).await? == Claim::Granted(a.clone()),
            "re-claim by the owner keeps the epoch",
        )?;
        check(
            matches!(d.claim(&k, "beta", 1).await?, Claim::Held(o) if o == a),
            "another node sees it held",
        )?;
        check(d.lookup(&k).await? == Some(a.clone()), "lookup names alpha")?;
        check(
            !d.release(&k, "beta", a.epoch).await?,
            "a non-owner cannot release",
        )?;
        check(
            !d.release(&k, "alpha", a.epoch + 1).await?,
            "a wrong epoch cannot release",
        )?;
        check(d.release(&k, "alpha", a.epoch).await?, "the owner releases")?;
        check(d.lookup(&k).await?.is_none(), "released: no owner")?;
        let Claim::Granted(b) = d.claim(&k, "beta", 1).await? else {
            return Err(Error::Directory("conformance: claim after release".into()));
        };
        check(b.epoch > a.epoch, "the epoch rises across owners")?;
        d.release(&k, "beta", b.epoch).await?;
        Ok(())
    }

    /// Reclaiming a lost node's entries, and a restarted incarnation taking over its own.
    pub async fn reclaim_on_detection(d: &dyn Directory, prefix: &str) -> Result<()> {
        let node = format!("{prefix}-lost");
        let keys: Vec<ActorKey> = (0..5).map(|i| key(&format!("{prefix}-r{i}"))).collect();
        for k in &keys {
            check(
                matches!(d.claim(k, &node, 10).await?, Claim::Granted(_)),
                "claim",
            )?;
        }
        check(
            d.entries(Some(&node)).await?.len() == 5,
            "entries of the node",
        )?;
        // A restarted incarnation takes over an entry of its previous one.
        let before = d.lookup(&keys[0]).await?.map(|o| o.epoch).unwrap_or(0);
        let Claim::Granted(again) = d.claim(&keys[0], &node, 11).await? else {
            return Err(Error::Directory(
                "conformance: newer incarnation must win".into(),
            ));
        };
        check(
            again.epoch > before && again.incarnation == 11,
            "newer incarnation",
        )?;
        check(
            matches!(d.claim(&keys[0], &node, 10).await?, Claim::Held(_)),
            "an older incarnation cannot take it back",
        )?;
        // Only the older incarnation's entries go with `before_incarnation = 11`.
        check(
            d.reclaim(&node, 11).await? == 4,
            "reclaim the old incarnation",
        )?;
        check(d.reclaim(&node, u64::MAX).await? == 1, "reclaim the rest")?;
        check(d.entries(Some(&node)).await?.is_empty(), "nothing left")?;
        for k in &keys {
            check(
                matches!(d.claim(k, "survivor", 1).await?, Claim::Granted(_)),
                "a survivor claims a reclaimed key",
            )?;
        }
        d.reclaim("survivor", u64::MAX).await?;
        Ok(())
    }

    /// Of many concurrent claims of one free key, exactly one wins and all agree on it.
    pub async fn concurrent_claims(d: Arc<dyn Directory>, prefix: &str) -> Result<()> {
        for round in 0..5 {
            let k = key(&format!("{prefix}-c{round}"));
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let d = d.clone();
                    let k = k.clone();
                    tokio::spawn(async move { d.claim(&k, &format!("n{i}"), 1).await })
                })
                .collect();
            let mut granted = Vec::new();
            let mut held = Vec::new();
            for t in tasks {
                match t
                    .await
                    .map_err(|e| Error::Directory(format!("task: {e}")))??
                {
                    Claim::Granted(o) => granted.push(o),
                    Claim::Held(o) => held.push(o),
                }
            }
            check(granted.len() == 1, "exactly one concurrent claim wins")?;
            check(
                held.iter().all(|o| *o == granted[0]),
                "every loser names the winner",
            )?;
            check(
                d.lookup(&k).await? == Some(granted[0].clone()),
                "lookup names the winner",
            )?;
        }
        Ok(())
    }

    /// A fenced owner cannot bind its journal epoch.
    pub async fn fenced_bind(d: &dyn Directory, prefix: &str) -> Result<()> {
        let k = key(&format!("{prefix}-f"));
        let Claim::Granted(a) = d.claim(&k, "alpha", 1).await? else {
            return Err(Error::Directory("conformance: claim".into()));
        };
        d.bind_journal_epoch(&k, "alpha", a.epoch, 7).await?;
        check(
            d.lookup(&k).await?.and_then(|o| o.journal_epoch) == Some(7),
            "journal epoch recorded",
        )?;
        d.reclaim("alpha", u64::MAX).await?;
        let Claim::Granted(b) = d.claim(&k, "beta", 1).await? else {
            return Err(Error::Directory("conformance: claim after reclaim".into()));
        };
        check(
            b.journal_epoch.is_none(),
            "a new period has no journal epoch yet",
        )?;
        check(
            matches!(
                d.bind_journal_epoch(&k, "alpha", a.epoch, 8).await,
                Err(Error::Fenced { .. })
            ),
            "the fenced owner's bind is refused",
        )?;
        d.bind_journal_epoch(&k, "beta", b.epoch, 8).await?;
        d.release(&k, "beta", b.epoch).await?;
        Ok(())
    }

    /// Every case above.
    pub async fn run_all(d: Arc<dyn Directory>, prefix: &str) -> Result<()> {
        claim_lookup_release(d.as_ref(), prefix).await?;
        reclaim_on_detection(d.as_ref(), prefix).await?;
        concurrent_claims(d.clone(), prefix).await?;
        fenced_bind(d.as_ref(), prefix).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_memory_directory_passes_the_conformance_suite() {
        let d: Arc<dyn Directory> = Arc::new(MemoryDirectory::new());
        conformance::run_all(d, "mem").await.unwrap();
    }
}
