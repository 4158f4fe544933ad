//! `plexspaces-bench-channels`: channels and key-value storage per backend, each beside the
//! raw client doing the same work in the same run, printed as one markdown table.
//!
//! It reports; it never asserts a target. Needs the test servers on 127.0.0.1 (PostgreSQL
//! 5432, Redis 6379, NATS 4222); a backend whose server is down is skipped with a note.
//! Kafka: the broker at `PLEXSPACES_BENCH_KAFKA` (`host:port`), else a `tansu` broker (memory
//! storage) it starts itself from `PLEXSPACES_TANSU` or where scripts/ci-deps installs it.
//!
//! Rows per channel backend: publish throughput (sequential publishes, each awaited),
//! consume throughput (batches of 100, each delivery acked) and round-trip latency (publish
//! one, receive it, ack it; p50 and p99). Raw side: the same through the driver directly
//! (memory: a tokio mpsc channel; SQLite: insert, then `DELETE .. RETURNING` in batches;
//! Redis: `XADD`, then `XREADGROUP` + `XACK`; NATS: JetStream publish, then pull + ack;
//! UDP: a multicast socket pair on loopback; Kafka: rskafka produce, then fetch in batches,
//! with no per-message ack since Kafka has none). Rows per key-value backend: sequential `put`
//! and `get` throughput against the driver's plain upsert / select (memory: a locked
//! `HashMap`).
//!
//! ```text
//! cargo run --release -p plexspaces-bench --bin plexspaces-bench-channels [-- --quick]
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use futures::StreamExt;
use plexspaces_channels::{Backend, ChannelId, Channels, DeliveryOptions, Outgoing};
use plexspaces_storage::{KeyValue, PutOptions, Scope};

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";
const REDIS: &str = "redis://127.0.0.1:6379/";
const NATS: &str = "nats://127.0.0.1:4222";

struct Work {
    messages: usize,
    memory_messages: usize,
    round_trips: usize,
    kv_ops: usize,
}

struct Row {
    name: String,
    unit: &'static str,
    plex: f64,
    raw: f64,
}

fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{tag}{}x{nanos}", std::process::id())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

async fn timed<F: Future<Output = Result<()>>>(f: F) -> Result<Duration> {
    let t = Instant::now();
    f.await?;
    Ok(t.elapsed())
}

/// publish/s, consume/s, round-trip samples through a `Channels` queue.
async fn plex_channel(
    backend: Arc<dyn Backend>,
    n: usize,
    trips: usize,
) -> Result<(f64, f64, Vec<Duration>)> {
    let ch = Channels::new(backend);
    let queue = ch.queue(ChannelId::new("bench", "ns", &unique("c"))?);
    let consumer = queue.consumer("bench").await?;
    let publish = |m: Outgoing| queue.publish(m);
    let payload = Bytes::from(vec![7u8; 100]);
    let pub_time = timed(async {
        for _ in 0..n {
            publish(Outgoing::new(payload.clone())).await?;
        }
        Ok(())
    })
    .await?;
    let con_time = timed(async {
        let mut got = 0;
        while got < n {
            let ds = consumer.receive(100, Duration::from_secs(5)).await?;
            anyhow::ensure!(!ds.is_empty(), "consumer starved at {got}/{n}");
            for d in &ds {
                consumer.ack(d).await?;
            }
            got += ds.len();
        }
        Ok(())
    })
    .await?;
    let mut samples = Vec::with_capacity(trips);
    for _ in 0..trips {
        let t = Instant::now();
        publish(Outgoing::new(payload.clone())).await?;
        let d = consumer
            .receive_one(Duration::from_secs(5))
            .await?
            .context("round trip lost a message")?;
        consumer.ack(&d).await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok((rate(n, pub_time), rate(n, con_time), samples))
}

async fn raw_memory(n: usize, trips: usize) -> Result<(f64, f64, Vec<Duration>)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let payload = Bytes::from(vec![7u8; 100]);
    let p = timed(async {
        for _ in 0..n {
            tx.send(payload.clone())?;
        }
        Ok(())
    })
    .await?;
    let c = timed(async {
        for _ in 0..n {
            rx.recv().await.context("closed")?;
        }
        Ok(())
    })
    .await?;
    let mut s = Vec::new();
    for _ in 0..trips {
        let t = Instant::now();
        tx.send(payload.clone())?;
        rx.recv().await.context("closed")?;
        s.push(t.elapsed());
    }
    s.sort();
    Ok((rate(n, p), rate(n, c), s))
}

async fn raw_sqlite(
    path: &std::path::Path,
    n: usize,
    trips: usize,
) -> Result<(f64, f64, Vec<Duration>)> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await?;
    sqlx::query("CREATE TABLE q (seq INTEGER PRIMARY KEY AUTOINCREMENT, payload BLOB NOT NULL)")
        .execute(&pool)
        .await?;
    let payload = vec![7u8; 100];
    let insert = || sqlx::query("INSERT INTO q (payload) VALUES (?1)").bind(payload.clone());
    let p = timed(async {
        for _ in 0..n {
            insert().execute(&pool).await?;
        }
        Ok(())
    })
    .await?;
    let take = "DELETE FROM q WHERE seq IN (SELECT seq FROM q ORDER BY seq LIMIT ?1) RETURNING seq, payload";
    let c = timed(async {
        let mut got = 0;
        while got < n {
            got += sqlx::query(take).bind(100i64).fetch_all(&pool).await?.len();
        }
        Ok(())
    })
    .await?;
    let mut s = Vec::new();
    for _ in 0..trips {
        let t = Instant::now();
        insert().execute(&pool).await?;
        sqlx::query(take).bind(1i64).fetch_all(&pool).await?;
        s.push(t.elapsed());
    }
    s.sort();
    Ok((rate(n, p), rate(n, c), s))
}

async fn raw_redis(n: usize, trips: usize) -> Result<(f64, f64, Vec<Duration>)> {
    use redis::streams::StreamReadReply;
    let client = redis::Client::open(REDIS)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let key = unique("benchraw:");
    let _: String = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&key)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await?;
    let payload = vec![7u8; 100];
    let p = timed(async {
        for _ in 0..n {
            let _: String = redis::cmd("XADD")
                .arg(&key)
                .arg("*")
                .arg("p")
                .arg(&payload)
                .query_async(&mut conn.clone())
                .await?;
        }
        Ok(())
    })
    .await?;
    let read = |count: usize| {
        let mut conn = conn.clone();
        let key = key.clone();
        async move {
            let r: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("COUNT")
                .arg(count)
                .arg("STREAMS")
                .arg(&key)
                .arg(">")
                .query_async(&mut conn)
                .await?;
            let ids: Vec<String> = r
                .map(|r| {
                    r.keys
                        .into_iter()
                        .flat_map(|k| k.ids)
                        .map(|i| i.id)
                        .collect()
                })
                .unwrap_or_default();
            for id in &ids {
                let _: u64 = redis::cmd("XACK")
                    .arg(&key)
                    .arg("g")
                    .arg(id)
                    .query_async(&mut conn)
                    .await?;
            }
            Ok::<usize, anyhow::Error>(ids.len())
        }
    };
    let c = timed(async {
        let mut got = 0;
        while got < n {
            got += read(100).await?;
        }
        Ok(())
    })
    .await?;
    let mut s = Vec::new();
    for _ in 0..trips {
        let t = Instant::now();
        let _: String = redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("p")
            .arg(&payload)
            .query_async(&mut conn.clone())
            .await?;
        anyhow::ensure!(read(1).await? == 1, "raw redis lost a message");
        s.push(t.elapsed());
    }
    s.sort();
    let _: u64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
    Ok((rate(n, p), rate(n, c), s))
}

/// A Kafka-protocol broker for the Kafka rows: (address, the broker process if started here).
async fn kafka_broker() -> Result<(String, Option<tokio::process::Child>)> {
    if let Ok(addr) = std::env::var("PLEXSPACES_BENCH_KAFKA") {
        return Ok((addr, None));
    }
    let bin = std::env::var_os("PLEXSPACES_TANSU")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
                .join(".local/share/plexspaces/tansu-0.6.0/bin/tansu")
        });
    anyhow::ensure!(
        bin.exists(),
        "no tansu at {} (scripts/ci-deps installs it; or set PLEXSPACES_BENCH_KAFKA)",
        bin.display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = tokio::process::Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .current_dir(std::env::temp_dir())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "tansu did not listen on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((addr, Some(child)))
}

async fn raw_kafka(addr: &str, n: usize, trips: usize) -> Result<(f64, f64, Vec<Duration>)> {
    use rskafka::client::partition::{Compression, UnknownTopicHandling};
    use rskafka::record::Record;
    let client = rskafka::client::ClientBuilder::new(vec![addr.to_owned()])
        .build()
        .await?;
    let topic = unique("benchraw");
    client
        .controller_client()?
        .create_topic(&topic, 1, 1, 10_000)
        .await?;
    let pc = client
        .partition_client(&topic, 0, UnknownTopicHandling::Retry)
        .await?;
    let payload = vec![7u8; 100];
    let record = || Record {
        key: None,
        value: Some(payload.clone()),
        headers: Default::default(),
        timestamp: rskafka::chrono::DateTime::from_timestamp_millis(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        )
        .unwrap_or_default(),
    };
    let p = timed(async {
        for _ in 0..n {
            pc.produce(vec![record()], Compression::NoCompression)
                .await?;
        }
        Ok(())
    })
    .await?;
    let mut next = 0i64;
    let c = timed(async {
        let mut got = 0;
        while got < n {
            // about 100 records per fetch, like the channel's batches of 100
            let (records, _) = pc.fetch_records(next, 1..100 * 180, 1_000).await?;
            anyhow::ensure!(!records.is_empty(), "raw kafka starved at {got}/{n}");
            for r in &records {
                next = next.max(r.offset + 1);
            }
            got += records.len();
        }
        Ok(())
    })
    .await?;
    let mut s = Vec::new();
    for _ in 0..trips {
        let t = Instant::now();
        let at = pc
            .produce(vec![record()], Compression::NoCompression)
            .await?;
        let off = *at.first().context("no offset")?;
        let (records, _) = pc.fetch_records(off, 1..100 * 180, 1_000).await?;
        anyhow::ensure!(
            records.iter().any(|r| r.offset == off),
            "raw kafka lost a message"
        );
        s.push(t.elapsed());
    }
    s.sort();
    // best effort: the broker is this run's own
    let _ = client
        .controller_client()?
        .delete_topic(topic, 10_000)
        .await;
    Ok((rate(n, p), rate(n, c), s))
}

async fn raw_nats(n: usize, trips: usize) -> Result<(f64, f64, Vec<Duration>)> {
    use async_nats::jetstream::{self, consumer::pull};
    let js = jetstream::new(async_nats::connect(NATS).await?);
    let name = unique("benchraw");
    let subject = format!("{name}.q");
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("g".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let payload = Bytes::from(vec![7u8; 100]);
    let p = timed(async {
        for _ in 0..n {
            js.publish(subject.clone(), payload.clone()).await?.await?;
        }
        Ok(())
    })
    .await?;
    let pull_acked = |max: usize| {
        let consumer = consumer.clone();
        async move {
            let mut got = 0;
            let mut batch = consumer
                .fetch()
                .max_messages(max)
                .messages()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            while let Some(m) = batch.next().await {
                m.map_err(|e| anyhow::anyhow!("{e}"))?
                    .double_ack()
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                got += 1;
            }
            Ok::<usize, anyhow::Error>(got)
        }
    };
    let c = timed(async {
        let mut got = 0;
        while got < n {
            got += pull_acked(100).await?;
        }
        Ok(())
    })
    .await?;
    let mut s = Vec::new();
    for _ in 0..trips {
        let t = Instant::now();
        js.publish(subject.clone(), payload.clone()).await?.await?;
        let mut one = 0;
        while one == 0 {
            one = pull_acked(1).await?;
        }
        s.push(t.elapsed());
    }
    s.sort();
    js.delete_stream(&name).await?;
    Ok((rate(n, p), rate(n, c), s))
}

async fn raw_udp(port: u16, n: usize, trips: usize) -> Result<(f64, f64, Vec<Duration>)> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::net::{Ipv4Addr, SocketAddrV4};
    let group = Ipv4Addr::new(239, 255, 77, 78);
    let r = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    r.set_reuse_address(true)?;
    r.bind(&SocketAddrV4::new(group, port).into())?;
    r.join_multicast_v4(&group, &Ipv4Addr::LOCALHOST)?;
    r.set_recv_buffer_size(4 * 1024 * 1024)?;
    r.set_nonblocking(true)?;
    let r = tokio::net::UdpSocket::from_std(r.into())?;
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into())?;
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_ttl_v4(0)?;
    s.set_nonblocking(true)?;
    let s = tokio::net::UdpSocket::from_std(s.into())?;
    let to = SocketAddrV4::new(group, port);
    let payload = vec![7u8; 140];
    let mut buf = vec![0u8; 65_536];
    // send and receive interleaved in windows so the socket buffer never overflows
    let window = 256;
    let mut sent = 0;
    let mut send_time = Duration::ZERO;
    let mut recv_time = Duration::ZERO;
    while sent < n {
        let k = window.min(n - sent);
        let t = Instant::now();
        for _ in 0..k {
            s.send_to(&payload, to).await?;
        }
        send_time += t.elapsed();
        let t = Instant::now();
        for _ in 0..k {
            tokio::time::timeout(Duration::from_secs(5), r.recv_from(&mut buf))
                .await
                .context("datagram lost")??;
        }
        recv_time += t.elapsed();
        sent += k;
    }
    let mut samples = Vec::new();
    for _ in 0..trips {
        let t = Instant::now();
        s.send_to(&payload, to).await?;
        tokio::time::timeout(Duration::from_secs(5), r.recv_from(&mut buf))
            .await
            .context("datagram lost")??;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok((rate(n, send_time), rate(n, recv_time), samples))
}

/// UDP through `Channels`, in the same send/receive windows as `raw_udp`.
async fn plex_udp(port: u16, n: usize, trips: usize) -> Result<(f64, f64, Vec<Duration>)> {
    let backend =
        plexspaces_channels::UdpBackend::open(plexspaces_channels::UdpOptions::loopback(port))?;
    let ch = Channels::new(Arc::new(backend));
    let topic = ch.topic(ChannelId::new("bench", "ns", "udp")?);
    let c = topic.subscribe("g", "c").await?;
    let payload = Bytes::from(vec![7u8; 100]);
    let window = 256;
    let mut sent = 0;
    let mut send_time = Duration::ZERO;
    let mut recv_time = Duration::ZERO;
    while sent < n {
        let k = window.min(n - sent);
        let t = Instant::now();
        for _ in 0..k {
            topic.publish(Outgoing::new(payload.clone())).await?;
        }
        send_time += t.elapsed();
        let t = Instant::now();
        let mut got = 0;
        while got < k {
            let ds = c.receive(k - got, Duration::from_secs(5)).await?;
            anyhow::ensure!(!ds.is_empty(), "datagram lost");
            got += ds.len();
        }
        recv_time += t.elapsed();
        sent += k;
    }
    let mut samples = Vec::new();
    for _ in 0..trips {
        let t = Instant::now();
        topic.publish(Outgoing::new(payload.clone())).await?;
        c.receive_one(Duration::from_secs(5))
            .await?
            .context("datagram lost")?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok((rate(n, send_time), rate(n, recv_time), samples))
}

fn channel_rows(
    rows: &mut Vec<Row>,
    name: &str,
    plex: (f64, f64, Vec<Duration>),
    raw: (f64, f64, Vec<Duration>),
) {
    rows.push(Row {
        name: format!("channel {name}: publish"),
        unit: "msg/s",
        plex: plex.0,
        raw: raw.0,
    });
    rows.push(Row {
        name: format!("channel {name}: consume + ack"),
        unit: "msg/s",
        plex: plex.1,
        raw: raw.1,
    });
    rows.push(Row {
        name: format!("channel {name}: round trip p50"),
        unit: "µs",
        plex: percentile(&plex.2, 0.5),
        raw: percentile(&raw.2, 0.5),
    });
    rows.push(Row {
        name: format!("channel {name}: round trip p99"),
        unit: "µs",
        plex: percentile(&plex.2, 0.99),
        raw: percentile(&raw.2, 0.99),
    });
}

/// put/s and get/s through `KeyValue`.
async fn plex_kv(kv: &dyn KeyValue, n: usize) -> Result<(f64, f64)> {
    let scope = Scope::new("bench", &unique("kv"))?;
    let value = vec![7u8; 100];
    let p = timed(async {
        for i in 0..n {
            kv.put(
                &scope,
                &format!("k{}", i % 1000),
                &value,
                PutOptions::default(),
            )
            .await?;
        }
        Ok(())
    })
    .await?;
    let g = timed(async {
        for i in 0..n {
            kv.get(&scope, &format!("k{}", i % 1000))
                .await?
                .context("missing key")?;
        }
        Ok(())
    })
    .await?;
    Ok((rate(n, p), rate(n, g)))
}

async fn raw_sql_kv<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    n: usize,
    put: &str,
    get: &str,
) -> Result<(f64, f64)>
where
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Vec<u8>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let value = vec![7u8; 100];
    let p = timed(async {
        for i in 0..n {
            sqlx::query(put)
                .bind(format!("k{}", i % 1000))
                .bind(value.clone())
                .execute(pool)
                .await?;
        }
        Ok(())
    })
    .await?;
    let g = timed(async {
        for i in 0..n {
            sqlx::query(get)
                .bind(format!("k{}", i % 1000))
                .fetch_one(pool)
                .await?;
        }
        Ok(())
    })
    .await?;
    Ok((rate(n, p), rate(n, g)))
}

async fn raw_redis_kv(n: usize) -> Result<(f64, f64)> {
    let client = redis::Client::open(REDIS)?;
    let conn = client.get_multiplexed_async_connection().await?;
    let prefix = unique("benchkv:");
    let value = vec![7u8; 100];
    let p = timed(async {
        for i in 0..n {
            let _: () = redis::cmd("SET")
                .arg(format!("{prefix}{}", i % 1000))
                .arg(&value)
                .query_async(&mut conn.clone())
                .await?;
        }
        Ok(())
    })
    .await?;
    let g = timed(async {
        for i in 0..n {
            let v: Option<Vec<u8>> = redis::cmd("GET")
                .arg(format!("{prefix}{}", i % 1000))
                .query_async(&mut conn.clone())
                .await?;
            v.context("missing key")?;
        }
        Ok(())
    })
    .await?;
    redis_delete(&format!("{prefix}*")).await?;
    Ok((rate(n, p), rate(n, g)))
}

/// Delete every Redis key matching `pattern` (this run's keys only).
async fn redis_delete(pattern: &str) -> Result<()> {
    let client = redis::Client::open(REDIS)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: u64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}

fn kv_rows(rows: &mut Vec<Row>, name: &str, plex: (f64, f64), raw: (f64, f64)) {
    rows.push(Row {
        name: format!("kv {name}: put"),
        unit: "op/s",
        plex: plex.0,
        raw: raw.0,
    });
    rows.push(Row {
        name: format!("kv {name}: get"),
        unit: "op/s",
        plex: plex.1,
        raw: raw.1,
    });
}

async fn run(work: Work, notes: &mut Vec<String>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let dir = tempfile::tempdir()?;
    let quick_delivery = DeliveryOptions {
        visibility_timeout: Duration::from_secs(60),
        max_deliveries: 5,
    };

    eprintln!("channel memory...");
    let plex = plex_channel(
        Arc::new(plexspaces_channels::MemoryBackend::new(quick_delivery)),
        work.memory_messages,
        work.round_trips,
    )
    .await?;
    channel_rows(
        &mut rows,
        "memory (vs tokio mpsc)",
        plex,
        raw_memory(work.memory_messages, work.round_trips).await?,
    );

    eprintln!("channel sqlite...");
    let mut o = plexspaces_channels::SqliteOptions::new(dir.path().join("channels.db"));
    o.delivery = quick_delivery;
    let plex = plex_channel(
        Arc::new(plexspaces_channels::SqliteBackend::open(o).await?),
        work.messages,
        work.round_trips,
    )
    .await?;
    channel_rows(
        &mut rows,
        "sqlite",
        plex,
        raw_sqlite(&dir.path().join("raw.db"), work.messages, work.round_trips).await?,
    );

    eprintln!("channel redis...");
    let prefix = unique("benchch");
    let mut o = plexspaces_channels::RedisOptions::new(REDIS);
    o.prefix = prefix.clone();
    o.delivery = quick_delivery;
    match plexspaces_channels::RedisBackend::connect(o).await {
        Ok(b) => {
            let plex = plex_channel(Arc::new(b), work.messages, work.round_trips).await?;
            channel_rows(
                &mut rows,
                "redis",
                plex,
                raw_redis(work.messages, work.round_trips).await?,
            );
            redis_delete(&format!("{prefix}:*")).await?;
        }
        Err(e) => notes.push(format!("redis channel skipped: {e}")),
    }

    eprintln!("channel nats...");
    let prefix = unique("benchch");
    let mut o = plexspaces_channels::NatsOptions::new(NATS);
    o.prefix = prefix.clone();
    o.delivery = quick_delivery;
    match plexspaces_channels::NatsBackend::connect(o).await {
        Ok(b) => {
            let plex = plex_channel(Arc::new(b), work.messages, work.round_trips).await?;
            channel_rows(
                &mut rows,
                "nats jetstream",
                plex,
                raw_nats(work.messages, work.round_trips).await?,
            );
            let js = async_nats::jetstream::new(async_nats::connect(NATS).await?);
            let names: Vec<String> = js
                .stream_names()
                .filter_map(|n| async move { n.ok() })
                .collect()
                .await;
            for n in names.into_iter().filter(|n| n.starts_with(&prefix)) {
                js.delete_stream(&n).await?;
            }
        }
        Err(e) => notes.push(format!("nats channel skipped: {e}")),
    }

    eprintln!("channel kafka...");
    match kafka_broker().await {
        Ok((addr, broker)) => {
            let mut o = plexspaces_channels::KafkaOptions::new(vec![addr.clone()]);
            o.prefix = unique("benchch");
            o.delivery = quick_delivery;
            let b = plexspaces_channels::KafkaBackend::connect(o).await?;
            let plex = plex_channel(Arc::new(b), work.messages, work.round_trips).await?;
            channel_rows(
                &mut rows,
                "kafka (tansu, memory storage)",
                plex,
                raw_kafka(&addr, work.messages, work.round_trips).await?,
            );
            drop(broker);
        }
        Err(e) => notes.push(format!("kafka channel skipped: {e}")),
    }

    eprintln!("channel udp multicast (loopback, TTL 0)...");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let plex = plex_udp(port, work.messages, work.round_trips).await?;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    channel_rows(
        &mut rows,
        "udp multicast (topic)",
        plex,
        raw_udp(port, work.messages, work.round_trips).await?,
    );

    eprintln!("kv memory...");
    let mem = plexspaces_storage::MemoryKeyValue::new();
    let plex = plex_kv(&mem, work.kv_ops * 10).await?;
    let raw = {
        let map = parking_lot::Mutex::new(HashMap::<String, Vec<u8>>::new());
        let value = vec![7u8; 100];
        let n = work.kv_ops * 10;
        let p = timed(async {
            for i in 0..n {
                map.lock().insert(format!("k{}", i % 1000), value.clone());
            }
            Ok(())
        })
        .await?;
        let g = timed(async {
            for i in 0..n {
                map.lock()
                    .get(&format!("k{}", i % 1000))
                    .cloned()
                    .context("missing")?;
            }
            Ok(())
        })
        .await?;
        (rate(n, p), rate(n, g))
    };
    kv_rows(&mut rows, "memory (vs locked HashMap)", plex, raw);

    eprintln!("kv sqlite...");
    let store = plexspaces_storage::SqlStore::connect(plexspaces_storage::SqlOptions::sqlite(
        dir.path().join("kv.db"),
    ))
    .await?;
    let plex = plex_kv(&store, work.kv_ops).await?;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("rawkv.db"))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal),
        )
        .await?;
    sqlx::query("CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB NOT NULL)")
        .execute(&pool)
        .await?;
    let raw = raw_sql_kv(
        &pool,
        work.kv_ops,
        "INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        "SELECT v FROM kv WHERE k = ?1",
    )
    .await?;
    kv_rows(&mut rows, "sqlite", plex, raw);

    eprintln!("kv postgres...");
    let schema = unique("benchkv");
    let mut o = plexspaces_storage::SqlOptions::postgres(PG);
    o.schema = Some(schema.clone());
    match plexspaces_storage::SqlStore::connect(o).await {
        Ok(store) => {
            let plex = plex_kv(&store, work.kv_ops).await?;
            store.close().await;
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(8)
                .connect(PG)
                .await?;
            let table = format!("\"{schema}\".rawkv");
            sqlx::query(&format!(
                "CREATE TABLE {table} (k TEXT PRIMARY KEY, v BYTEA NOT NULL)"
            ))
            .execute(&pool)
            .await?;
            let raw = raw_sql_kv(&pool, work.kv_ops, &format!("INSERT INTO {table} (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = excluded.v"), &format!("SELECT v FROM {table} WHERE k = $1")).await?;
            kv_rows(&mut rows, "postgres", plex, raw);
            sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
                .execute(&pool)
                .await?;
        }
        Err(e) => notes.push(format!("postgres kv skipped: {e}")),
    }

    eprintln!("kv redis...");
    let prefix = unique("benchkvp");
    let mut o = plexspaces_storage::RedisOptions::new(REDIS);
    o.prefix = prefix.clone();
    match plexspaces_storage::RedisStore::connect(o).await {
        Ok(store) => {
            let plex = plex_kv(&store, work.kv_ops).await?;
            kv_rows(&mut rows, "redis", plex, raw_redis_kv(work.kv_ops).await?);
            redis_delete(&format!("{prefix}:*")).await?;
        }
        Err(e) => notes.push(format!("redis kv skipped: {e}")),
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let mut quick = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("usage: plexspaces-bench-channels [--quick]\n\nchannels and key-value per backend beside the raw client; needs PostgreSQL, Redis and NATS on 127.0.0.1");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let work = if quick {
        Work {
            messages: 500,
            memory_messages: 5_000,
            round_trips: 100,
            kv_ops: 500,
        }
    } else {
        Work {
            messages: 5_000,
            memory_messages: 200_000,
            round_trips: 1_000,
            kv_ops: 5_000,
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut notes = Vec::new();
    let rows = runtime.block_on(run(work, &mut notes))?;
    println!(
        "{} mode; messages of 100 bytes; durable rows: {} messages, {} round trips; kv: {} sequential ops over 1000 keys\n",
        if quick { "quick" } else { "full" },
        if quick { 500 } else { 5_000 },
        if quick { 100 } else { 1_000 },
        if quick { 500 } else { 5_000 },
    );
    println!("| row | unit | PlexSpaces | raw client | ratio |");
    println!("|---|---|---:|---:|---:|");
    for r in &rows {
        let ratio = if r.raw > 0.0 { r.plex / r.raw } else { 0.0 };
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.2}× |",
            r.name, r.unit, r.plex, r.raw, ratio
        );
    }
    for n in notes {
        println!("\nnote: {n}");
    }
    Ok(())
}
