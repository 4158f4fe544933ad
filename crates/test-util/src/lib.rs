//! Test helpers shared by the PlexSpaces crates. Not for production code.
//!
//! - [`eventually`]: poll a condition instead of sleeping a guessed amount.
//! - [`free_port`]: a TCP port that was free a moment ago on 127.0.0.1.
//! - [`unique_name`]: a name no other test run uses (for schemas, key prefixes, files).
//! - [`postgres_url`], [`redis_url`], [`nats_url`]: the services of the tests, from the environment
//!   (`PLEXSPACES_TEST_POSTGRES_URL`, `PLEXSPACES_TEST_REDIS_URL`) with local defaults;
//!   `postgres_database` (feature `postgres`) creates the database if it is missing.
//! - [`TestCluster`]: N real cluster-member processes on 127.0.0.1, each with its own ports,
//!   that a test can kill -9, SIGTERM, restart and partition.
//! - [`rust_guest`]: the Rust WASM guest component (`sdk/rust-counter`), built once;
//!   [`go_guest`]: the Go rate-limiter guest (`examples/wasm/rate_limiter_go`).
//! - [`KafkaBroker`]: a Kafka-protocol broker (tansu, memory storage) as a child process on
//!   a free port, one per test.
//! - [`EffectStub`] (feature `effect-stub`): an idempotency-honouring HTTP service that logs
//!   each request with its key and applies each key once.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod cluster;
pub use cluster::{free_tcp_udp_port, free_udp_port, TestCluster, TestNode};
mod kafka;
pub use kafka::{tansu_bin, KafkaBroker, TANSU_VERSION};
mod wasm_guest;
pub use wasm_guest::{go_guest, repo_root, rust_guest};

#[cfg(feature = "effect-stub")]
pub mod effect_stub;
#[cfg(feature = "effect-stub")]
pub use effect_stub::EffectStub;

/// Polls `check` every 10 ms (on tokio's clock, so it also works with a paused clock) until
/// it returns `true`, for at most `limit`. Returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port that was free on 127.0.0.1 when asked.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `prefix_<pid>_<nanos>_<n>`: unique across concurrent test processes and runs.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The PostgreSQL the tests use when `PLEXSPACES_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The Redis the tests use when `PLEXSPACES_TEST_REDIS_URL` is unset.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";

/// The NATS the tests use when `PLEXSPACES_TEST_NATS_URL` is unset.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// The NATS (with JetStream) URL of the tests: `PLEXSPACES_TEST_NATS_URL`, else
/// [`DEFAULT_NATS_URL`].
pub fn nats_url() -> String {
    std::env::var("PLEXSPACES_TEST_NATS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_NATS_URL.to_owned())
}

/// The PostgreSQL URL of the tests: `PLEXSPACES_TEST_POSTGRES_URL`, else
/// [`DEFAULT_POSTGRES_URL`]. With the `postgres` feature, [`postgres_database`] also creates
/// the database if it is missing.
pub fn postgres_url() -> String {
    std::env::var("PLEXSPACES_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned())
}

/// The Redis URL of the tests: `PLEXSPACES_TEST_REDIS_URL`, else [`DEFAULT_REDIS_URL`].
pub fn redis_url() -> String {
    std::env::var("PLEXSPACES_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// [`postgres_url`], after creating its database if the server does not have it yet
/// (through the `postgres` maintenance database, with the same credentials). Blocking (on a
/// thread of its own, so it may be called from sync code and from inside a runtime); checked
/// once per process. Panics with what to do when the server cannot be reached: tests need it.
#[cfg(feature = "postgres")]
pub fn postgres_database() -> String {
    use std::sync::OnceLock;
    static CHECKED: OnceLock<String> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let url = postgres_url();
            let checked = url.clone();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the database check")
                    .block_on(create_database_if_missing(&checked))
            })
            .join()
            .unwrap_or_else(|_| panic!("the test PostgreSQL at {url} is not usable (see above)"));
            url
        })
        .clone()
}

#[cfg(feature = "postgres")]
async fn create_database_if_missing(url: &str) {
    use std::str::FromStr;

    use sqlx::postgres::PgConnectOptions;
    use sqlx::{ConnectOptions, Connection};

    let options = PgConnectOptions::from_str(url)
        .unwrap_or_else(|e| panic!("PLEXSPACES_TEST_POSTGRES_URL {url:?} is not a URL: {e}"));
    let Some(database) = options.get_database().map(str::to_owned) else {
        return;
    };
    if let Ok(conn) = options.connect().await {
        let _ = conn.close().await;
        return;
    }
    let mut admin = options
        .clone()
        .database("postgres")
        .connect()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach the test PostgreSQL ({e}): start it with scripts/services, or set \
                 PLEXSPACES_TEST_POSTGRES_URL"
            )
        });
    let quoted = format!("\"{}\"", database.replace('"', "\"\""));
    // Another test process may create it at the same moment: re-check after a failure.
    if let Err(e) = sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut admin)
        .await
    {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&database)
                .fetch_one(&mut admin)
                .await
                .unwrap_or(false);
        assert!(exists, "cannot create the test database {database}: {e}");
    }
    let _ = admin.close().await;
}
