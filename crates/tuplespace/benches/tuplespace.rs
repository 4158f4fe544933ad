//! Tuple-space throughput and wake-up latency per backend, next to the raw client doing
//! the equivalent work in the same run. Prints one markdown table.
//!
//! `cargo bench -p plexspaces-tuplespace --all-features`. Needs PostgreSQL
//! (postgres@127.0.0.1:5432/test) and Redis (127.0.0.1:6379); uses its own schema and key
//! prefix and removes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use plexspaces_tuplespace::{
    template, tuple, Backend, Config, MemoryBackend, PostgresBackend, PostgresOptions,
    RedisBackend, RedisOptions, SpaceId, Spaces, SqliteBackend, SqliteOptions, TupleSpace,
};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS_URL: &str = "redis://127.0.0.1:6379/";

struct Row {
    backend: &'static str,
    pairs: f64,
    raw_pairs: f64,
    raw_what: &'static str,
    wake_p50: Duration,
    wake_p99: Duration,
    raw_wake_p50: Option<Duration>,
    raw_wake_what: &'static str,
    cross_p50: Option<Duration>,
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn pct(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i.min(samples.len() - 1)]
}

async fn space_pairs(s: &TupleSpace, n: usize) -> f64 {
    let tpl = template!("bench", ?Int);
    let start = Instant::now();
    for i in 0..n {
        s.write(tuple!("bench", i as i64)).await.expect("write");
        s.take(&tpl, Duration::from_secs(10)).await.expect("take");
    }
    per_sec(n, start.elapsed())
}

/// From the start of `write` to the blocked taker returning with the tuple.
async fn space_wakeups(s: &TupleSpace, n: usize) -> (Duration, Duration) {
    wakeups(s, s, n).await
}

/// Like `space_wakeups`, with the taker on `waiter` and the write through `writer`.
async fn wakeups(writer: &TupleSpace, waiter: &TupleSpace, n: usize) -> (Duration, Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let taker = {
        let s = waiter.clone();
        tokio::spawn(async move {
            let tpl = template!("wake", ?Int);
            for _ in 0..n {
                s.take(&tpl, Duration::from_secs(30)).await.expect("take");
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        })
    };
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        while waiter.waiting() == 0 {
            tokio::task::yield_now().await;
        }
        let t0 = Instant::now();
        writer.write(tuple!("wake", i as i64)).await.expect("write");
        let t1 = rx.recv().await.expect("taker alive");
        samples.push(t1.duration_since(t0));
    }
    taker.await.expect("taker done");
    (pct(&mut samples, 0.5), pct(&mut samples, 0.99))
}

async fn engine(backend: Arc<dyn Backend>, name: &str) -> (Spaces, TupleSpace) {
    let spaces = Spaces::start(backend, Config::default())
        .await
        .expect("engine");
    let s = spaces.space(SpaceId::new("bench", "bench", name).expect("id"));
    (spaces, s)
}

fn unique() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("tsbench_{}_{nanos}", std::process::id())
}

async fn memory_row() -> Row {
    const N: usize = 100_000;
    let (_e, s) = engine(Arc::new(MemoryBackend::new()), "memory").await;
    let pairs = space_pairs(&s, N).await;
    let (wake_p50, wake_p99) = space_wakeups(&s, 2000).await;

    let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
    let start = Instant::now();
    for i in 0..N as u64 {
        map.insert(i, std::hint::black_box(vec![1u8; 16]));
        std::hint::black_box(map.remove(&i));
    }
    let raw_pairs = per_sec(N, start.elapsed());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let (back_tx, mut back_rx) = tokio::sync::mpsc::unbounded_channel();
    let h = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            if back_tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let mut samples = Vec::new();
    for i in 0..2000 {
        tokio::time::sleep(Duration::from_micros(50)).await;
        let t0 = Instant::now();
        tx.send(i).expect("send");
        samples.push(back_rx.recv().await.expect("recv").duration_since(t0));
    }
    drop(tx);
    h.await.expect("receiver done");
    Row {
        backend: "memory",
        pairs,
        raw_pairs,
        raw_what: "HashMap insert + remove",
        wake_p50,
        wake_p99,
        raw_wake_p50: Some(pct(&mut samples, 0.5)),
        raw_wake_what: "tokio mpsc send -> blocked recv",
        cross_p50: None,
    }
}

async fn sqlite_row(dir: &std::path::Path) -> Row {
    const N: usize = 2000;
    let backend = SqliteBackend::open(SqliteOptions::new(dir.join("bench.db")))
        .await
        .expect("sqlite");
    let (_e, s) = engine(Arc::new(backend), "sqlite").await;
    let pairs = space_pairs(&s, N).await;
    let (wake_p50, wake_p99) = space_wakeups(&s, 300).await;

    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(dir.join("raw.db"))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal),
        )
        .await
        .expect("raw sqlite");
    sqlx::query("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB NOT NULL)")
        .execute(&pool)
        .await
        .expect("create");
    let start = Instant::now();
    for _ in 0..N {
        let id: i64 = sqlx::query_scalar("INSERT INTO t (data) VALUES (?) RETURNING id")
            .bind(vec![1u8; 16])
            .fetch_one(&pool)
            .await
            .expect("insert");
        sqlx::query("DELETE FROM t WHERE id = ?")
            .bind(id)
            .execute(&pool)
            .await
            .expect("delete");
    }
    let raw_pairs = per_sec(N, start.elapsed());
    pool.close().await;
    Row {
        backend: "sqlite",
        pairs,
        raw_pairs,
        raw_what: "sqlx INSERT + DELETE",
        wake_p50,
        wake_p99,
        raw_wake_p50: None,
        raw_wake_what: "none (SQLite has no notification)",
        cross_p50: None,
    }
}

async fn postgres_row(schema: &str) -> Row {
    const N: usize = 2000;
    let mut o = PostgresOptions::new(PG_URL);
    o.schema = schema.to_owned();
    let backend = PostgresBackend::connect(o.clone()).await.expect("postgres");
    let (_e, s) = engine(Arc::new(backend), "postgres").await;
    let pairs = space_pairs(&s, N).await;
    let (wake_p50, wake_p99) = space_wakeups(&s, 300).await;
    let other = PostgresBackend::connect(o).await.expect("postgres");
    let (_e2, s2) = engine(Arc::new(other), "postgres").await;
    let (cross_p50, _) = wakeups(&s, &s2, 300).await;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(PG_URL)
        .await
        .expect("raw postgres");
    let table = format!("\"{schema}\".raw");
    sqlx::query(&format!(
        "CREATE TABLE {table} (id BIGSERIAL PRIMARY KEY, data BYTEA NOT NULL)"
    ))
    .execute(&pool)
    .await
    .expect("create");
    let start = Instant::now();
    for _ in 0..N {
        let id: i64 = sqlx::query_scalar(&format!(
            "INSERT INTO {table} (data) VALUES ($1) RETURNING id"
        ))
        .bind(vec![1u8; 16])
        .fetch_one(&pool)
        .await
        .expect("insert");
        sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
            .bind(id)
            .execute(&pool)
            .await
            .expect("delete");
    }
    let raw_pairs = per_sec(N, start.elapsed());

    let channel = format!("{schema}_raw");
    let mut listener = sqlx::postgres::PgListener::connect(PG_URL)
        .await
        .expect("listener");
    listener.listen(&channel).await.expect("listen");
    let mut samples = Vec::new();
    for _ in 0..300 {
        let t0 = Instant::now();
        sqlx::query("SELECT pg_notify($1, 'x')")
            .bind(&channel)
            .execute(&pool)
            .await
            .expect("notify");
        listener.recv().await.expect("notification");
        samples.push(t0.elapsed());
    }
    pool.close().await;
    Row {
        backend: "postgres",
        pairs,
        raw_pairs,
        raw_what: "sqlx INSERT + DELETE",
        wake_p50,
        wake_p99,
        raw_wake_p50: Some(pct(&mut samples, 0.5)),
        raw_wake_what: "pg_notify -> LISTEN recv",
        cross_p50: Some(cross_p50),
    }
}

async fn redis_row(prefix: &str) -> Row {
    const N: usize = 5000;
    let mut o = RedisOptions::new(REDIS_URL);
    o.prefix = prefix.to_owned();
    let backend = RedisBackend::connect(o.clone()).await.expect("redis");
    let (_e, s) = engine(Arc::new(backend), "redis").await;
    let pairs = space_pairs(&s, N).await;
    let (wake_p50, wake_p99) = space_wakeups(&s, 500).await;
    let other = RedisBackend::connect(o).await.expect("redis");
    let (_e2, s2) = engine(Arc::new(other), "redis").await;
    let (cross_p50, _) = wakeups(&s, &s2, 500).await;

    let client = redis::Client::open(REDIS_URL).expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let key = format!("{prefix}:raw");
    let start = Instant::now();
    for _ in 0..N {
        let _: () = redis::cmd("RPUSH")
            .arg(&key)
            .arg(vec![1u8; 16])
            .query_async(&mut conn)
            .await
            .expect("rpush");
        let _: Option<Vec<u8>> = redis::cmd("LPOP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("lpop");
    }
    let raw_pairs = per_sec(N, start.elapsed());

    let wake_key = format!("{prefix}:rawwake");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut blocking = client
        .get_multiplexed_async_connection()
        .await
        .expect("conn");
    let h = {
        let wake_key = wake_key.clone();
        tokio::spawn(async move {
            for _ in 0..500 {
                let _: Option<(String, Vec<u8>)> = redis::cmd("BLPOP")
                    .arg(&wake_key)
                    .arg(10)
                    .query_async(&mut blocking)
                    .await
                    .expect("blpop");
                if tx.send(Instant::now()).is_err() {
                    break;
                }
            }
        })
    };
    let mut samples = Vec::new();
    for _ in 0..500 {
        tokio::time::sleep(Duration::from_micros(300)).await;
        let t0 = Instant::now();
        let _: () = redis::cmd("RPUSH")
            .arg(&wake_key)
            .arg("x")
            .query_async(&mut conn)
            .await
            .expect("rpush");
        samples.push(rx.recv().await.expect("popped").duration_since(t0));
    }
    h.await.expect("blpop task");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("keys");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut conn)
            .await
            .expect("del");
    }
    Row {
        backend: "redis",
        pairs,
        raw_pairs,
        raw_what: "RPUSH + LPOP",
        wake_p50,
        wake_p99,
        raw_wake_p50: Some(pct(&mut samples, 0.5)),
        raw_wake_what: "RPUSH -> blocked BLPOP",
        cross_p50: Some(cross_p50),
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = unique();
        let mut rows = vec![memory_row().await, sqlite_row(dir.path()).await];
        let pg = postgres_row(&name).await;
        let pool = sqlx::PgPool::connect(PG_URL).await.expect("cleanup connection");
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .execute(&pool)
            .await
            .expect("drop schema");
        rows.push(pg);
        rows.push(redis_row(&name).await);

        println!("| backend | write+take pairs/s (space) | raw client pairs/s | raw client work | blocked-take wake-up p50 | p99 | wake-up from another instance p50 | raw wake-up p50 | raw wake-up mechanism |");
        println!("|---|---:|---:|---|---:|---:|---:|---:|---|");
        for r in rows {
            println!(
                "| {} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} |",
                r.backend,
                r.pairs,
                r.raw_pairs,
                r.raw_what,
                us(r.wake_p50),
                us(r.wake_p99),
                r.cross_p50.map_or("—".to_owned(), us),
                r.raw_wake_p50.map_or("—".to_owned(), us),
                r.raw_wake_what
            );
        }
    });
}
