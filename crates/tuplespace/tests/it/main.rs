//! Integration tests: the conformance suite on every backend against the real servers
//! (PostgreSQL and Redis on 127.0.0.1), lease expiry on a paused clock, and a durable tuple
//! surviving a killed process.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures::FutureExt;
use parking_lot::Mutex;
use plexspaces_tuplespace::conformance::{self, Factory};
use plexspaces_tuplespace::{
    template, tuple, Backend, Config, Error, MemoryBackend, Result, SpaceId, Spaces,
};

mod actors;

/// A name no other run (or concurrent test) uses.
fn unique(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{tag}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn ident(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// Run the suite, then clean up even if it failed.
async fn run_suite<F: Factory>(factory: &F, cleanup: impl std::future::Future<Output = ()>) {
    let result = AssertUnwindSafe(conformance::run_all(factory))
        .catch_unwind()
        .await;
    cleanup.await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[derive(Default)]
struct MemoryFactory {
    stores: Mutex<HashMap<String, Arc<MemoryBackend>>>,
}

#[async_trait]
impl Factory for MemoryFactory {
    async fn open(&self, name: &str) -> Result<Arc<dyn Backend>> {
        let b = self
            .stores
            .lock()
            .entry(name.to_owned())
            .or_default()
            .clone();
        Ok(b)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_conformance() {
    run_suite(&MemoryFactory::default(), async {}).await;
}

/// Leases on the memory backend against tokio's paused clock: no real waiting.
#[tokio::test(start_paused = true)]
async fn memory_lease_expiry_with_paused_clock() {
    let spaces = Spaces::memory();
    let s = spaces.space(SpaceId::new("t", "n", "leases").expect("id"));
    let tpl = template!("lease", ?Int);
    let mut lease = s
        .write_with_lease(tuple!("lease", 1), Duration::from_secs(10))
        .await
        .expect("write");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(s.count(&tpl).await.expect("count"), 1);
    lease.renew(Duration::from_secs(10)).await.expect("renew");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        s.read_if_exists(&tpl).await.expect("rdp"),
        Some(tuple!("lease", 1))
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(s.read_if_exists(&tpl).await.expect("rdp"), None, "expired");
    assert_eq!(s.take_all(&tpl).await.expect("take_all"), vec![]);
    assert!(matches!(
        lease.renew(Duration::from_secs(1)).await,
        Err(Error::NotFound(_))
    ));

    // a blocked take is not served by a tuple that expired, and times out on the paused clock
    s.write_with_lease(tuple!("lease", 2), Duration::from_secs(1))
        .await
        .expect("write");
    tokio::time::advance(Duration::from_secs(2)).await;
    let err = s
        .take(&tpl, Duration::from_secs(60))
        .await
        .expect_err("times out");
    assert!(matches!(err, Error::Timeout(_)));

    // a waiter blocked across virtual time gets a tuple written later
    let waiter = {
        let s = s.clone();
        let tpl = tpl.clone();
        tokio::spawn(async move { s.take(&tpl, Duration::from_secs(3600)).await })
    };
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(s.waiting(), 1);
    s.write_with_lease(tuple!("lease", 3), Duration::from_secs(5))
        .await
        .expect("write");
    assert_eq!(
        waiter.await.expect("ran").expect("served"),
        tuple!("lease", 3)
    );
}

/// A dropped waiter on the paused clock: its timeout never fires and it holds nothing.
#[tokio::test(start_paused = true)]
async fn memory_dropped_waiter_paused() {
    let spaces = Spaces::memory_with(Config::default());
    let s = spaces.space(SpaceId::new("t", "n", "drop").expect("id"));
    let tpl = template!("x");
    let fut = s.take(&tpl, Duration::from_secs(5));
    // poll once so it registers, then drop it
    let mut fut = Box::pin(fut);
    assert!(futures::poll!(fut.as_mut()).is_pending());
    assert_eq!(s.waiting(), 1);
    drop(fut);
    assert_eq!(s.waiting(), 0);
    s.write(tuple!("x")).await.expect("write");
    assert_eq!(
        s.take_if_exists(&template!("x")).await.expect("inp"),
        Some(tuple!("x"))
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use plexspaces_tuplespace::{SqliteBackend, SqliteOptions};

    pub struct SqliteFactory {
        pub dir: tempfile::TempDir,
    }

    #[async_trait]
    impl Factory for SqliteFactory {
        async fn open(&self, name: &str) -> Result<Arc<dyn Backend>> {
            let path = self.dir.path().join(format!("{}.db", ident(name)));
            Ok(Arc::new(
                SqliteBackend::open(SqliteOptions::new(path)).await?,
            ))
        }
    }

    /// SQLite cannot announce writes across processes; with a recheck interval a waiter
    /// over one connection pool still sees a write made through another.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_recheck_sees_other_instance_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("shared.db");
        let a = SqliteBackend::open(SqliteOptions::new(&path))
            .await
            .expect("open a");
        let b = SqliteBackend::open(SqliteOptions::new(&path))
            .await
            .expect("open b");
        let config = Config {
            recheck_interval: Some(Duration::from_millis(20)),
            ..Config::default()
        };
        let ea = Spaces::start(Arc::new(a), config).await.expect("engine a");
        let eb = Spaces::start(Arc::new(b), Config::default())
            .await
            .expect("engine b");
        let id = SpaceId::new("t", "n", "shared").expect("id");
        let sa = ea.space(id.clone());
        let sb = eb.space(id);
        let taker = {
            let sa = sa.clone();
            tokio::spawn(async move {
                sa.take(&template!("job", ?Int), Duration::from_secs(30))
                    .await
            })
        };
        conformance::eventually("taker blocked", || async { sa.waiting() == 1 }).await;
        sb.write(tuple!("job", 5)).await.expect("write");
        assert_eq!(taker.await.expect("ran").expect("served"), tuple!("job", 5));
        assert_eq!(sb.count(&template!("job", _)).await.expect("count"), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_conformance() {
        let f = SqliteFactory {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        run_suite(&f, async {}).await;
    }
}

/// Child half of `sqlite_keeps_tuple_across_process_kill`: writes a tuple, says so, and
/// waits to be killed.
#[cfg(feature = "sqlite")]
#[tokio::test]
#[ignore = "run as a child process by sqlite_keeps_tuple_across_process_kill"]
async fn sqlite_child_writer() {
    let Ok(path) = std::env::var("TUPLESPACE_CHILD_DB") else {
        return;
    };
    let backend =
        plexspaces_tuplespace::SqliteBackend::open(plexspaces_tuplespace::SqliteOptions::new(path))
            .await
            .expect("open");
    let spaces = Spaces::start(Arc::new(backend), Config::default())
        .await
        .expect("engine");
    let s = spaces.space(SpaceId::new("t", "n", "restart").expect("id"));
    s.write(tuple!("survivor", 42)).await.expect("write");
    println!("CHILD-WROTE-TUPLE");
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// A tuple written by a process that is then killed (SIGKILL) is there for the next one.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_tuple_across_process_kill() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("restart.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "sqlite_child_writer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TUPLESPACE_CHILD_DB", &path)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut wrote = false;
    while let Some(line) = lines.next_line().await.expect("read child output") {
        if line.contains("CHILD-WROTE-TUPLE") {
            wrote = true;
            break;
        }
    }
    assert!(wrote, "child reported its write");
    child.kill().await.expect("kill child");
    let status = child.wait().await.expect("reap child");
    assert!(!status.success(), "child was killed, not finished");

    let backend = plexspaces_tuplespace::SqliteBackend::open(
        plexspaces_tuplespace::SqliteOptions::new(&path),
    )
    .await
    .expect("reopen");
    let spaces = Spaces::start(Arc::new(backend), Config::default())
        .await
        .expect("engine");
    let s = spaces.space(SpaceId::new("t", "n", "restart").expect("id"));
    assert_eq!(
        s.take_if_exists(&template!("survivor", ?Int))
            .await
            .expect("inp"),
        Some(tuple!("survivor", 42))
    );
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use plexspaces_tuplespace::{PostgresBackend, PostgresOptions};

    fn url() -> String {
        plexspaces_test_util::postgres_database()
    }

    pub struct PgFactory {
        pub run: String,
        pub schemas: Mutex<Vec<String>>,
    }

    impl PgFactory {
        pub fn new() -> Self {
            PgFactory {
                run: unique("tsit"),
                schemas: Mutex::new(Vec::new()),
            }
        }

        pub async fn cleanup(&self) {
            let schemas = self.schemas.lock().clone();
            let pool = sqlx::PgPool::connect(&url())
                .await
                .expect("connect for cleanup");
            for s in schemas {
                sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{s}\" CASCADE"))
                    .execute(&pool)
                    .await
                    .expect("drop schema");
            }
            pool.close().await;
        }
    }

    #[async_trait]
    impl Factory for PgFactory {
        async fn open(&self, name: &str) -> Result<Arc<dyn Backend>> {
            let schema = format!("{}_{}", self.run, ident(name));
            {
                let mut s = self.schemas.lock();
                if !s.contains(&schema) {
                    s.push(schema.clone());
                }
            }
            let mut o = PostgresOptions::new(&url());
            o.schema = schema;
            o.max_connections = 4;
            Ok(Arc::new(PostgresBackend::connect(o).await?))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_conformance() {
        let f = PgFactory::new();
        run_suite(&f, f.cleanup()).await;
    }
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use plexspaces_tuplespace::{RedisBackend, RedisOptions};

    fn url() -> String {
        plexspaces_test_util::redis_url()
    }

    pub struct RedisFactory {
        pub run: String,
    }

    impl RedisFactory {
        pub async fn cleanup(&self) {
            let client = redis::Client::open(url()).expect("client");
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .expect("connect for cleanup");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.run))
                .query_async(&mut conn)
                .await
                .expect("list keys");
            for chunk in keys.chunks(500) {
                let _: () = redis::cmd("DEL")
                    .arg(chunk)
                    .query_async(&mut conn)
                    .await
                    .expect("delete keys");
            }
        }
    }

    #[async_trait]
    impl Factory for RedisFactory {
        async fn open(&self, name: &str) -> Result<Arc<dyn Backend>> {
            let mut o = RedisOptions::new(&url());
            o.prefix = format!("{}:{}", self.run, ident(name));
            Ok(Arc::new(RedisBackend::connect(o).await?))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_conformance() {
        let f = RedisFactory {
            run: unique("tsit"),
        };
        run_suite(&f, f.cleanup()).await;
    }
}
