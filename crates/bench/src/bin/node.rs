//! `plexspaces-bench-node`: the node's HTTP invoke path under `wrk` (Debian package),
//! beside a bare axum handler doing the equivalent work in the same run, and gRPC ask
//! latency. It runs the real `plexspaces` binary (auth off, temp data dir, free ports).
//!
//! ```text
//! cargo build --release -p plexspaces-cli -p plexspaces-bench
//! target/release/plexspaces-bench-node [--bin PATH] [--duration SECS] [--connections N] [--threads N]
//! ```
//! (`scripts/bench-node` does both and installs wrk if missing.) It reports; it never
//! asserts a target. Not run by CI.
//!
//! Rows (node vs bare axum):
//! - `echo`: `POST .../echo/invoke?msg_type=echo` with a small JSON body; the node's
//!   stateless worker pool replies with the body. Bare: parse the JSON, serialize it back.
//! - `counter increment`: 64 keys; the node's durable virtual actor (journaled to SQLite,
//!   fsync per commit with group commit) vs a bare handler adding to a `HashMap` under a
//!   mutex (no durability): this row shows what durability costs, not routing overhead.
//! - the durable path under `--durable-connections` (50) clients: one hot key and 64 keys,
//!   next to two in-process floors with the same batching: the SQLite journal alone (as
//!   many concurrent appenders, each appending what one increment journals, through the
//!   same group-commit writer, `synchronous=FULL`), and raw sqlx inserting the same rows in
//!   transactions of one row pair per client. The gaps between the rows are the costs of
//!   the HTTP + actor layer and of the journal layer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::post;
use axum::{Json, Router};
use parking_lot::Mutex;
use plexspaces_journal::{Entry, EntryKind, Journal, SqliteJournal, SqliteOptions, StreamId};
use plexspaces_proto::v1::actor_service_client::ActorServiceClient;
use plexspaces_proto::v1::{ActorAddress, AskRequest};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Options {
    bin: PathBuf,
    duration: u64,
    connections: u64,
    threads: u64,
    asks: usize,
    durable_connections: u64,
    /// `journal.output_gate` of the node under test.
    output_gate: bool,
}

fn options() -> Result<Options> {
    let exe = std::env::current_exe().context("current exe")?;
    let mut o = Options {
        bin: exe.with_file_name("plexspaces"),
        duration: 10,
        connections: 16,
        threads: 1,
        asks: 5_000,
        durable_connections: 50,
        output_gate: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--bin" => o.bin = PathBuf::from(value()?),
            "--duration" => o.duration = value()?.parse()?,
            "--connections" => o.connections = value()?.parse()?,
            "--threads" => o.threads = value()?.parse()?,
            "--asks" => o.asks = value()?.parse()?,
            "--durable-connections" => o.durable_connections = value()?.parse()?,
            "--no-output-gate" => o.output_gate = false,
            "-h" | "--help" => {
                println!("usage: plexspaces-bench-node [--bin PATH] [--duration SECS] [--connections N] [--threads N] [--asks N] [--durable-connections N] [--no-output-gate]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(o)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Status code of `GET path`, over a raw HTTP/1.1 connection.
async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace().nth(1)?.parse().ok()
}

// ---- the bare axum baseline ----

type Counts = Arc<Mutex<HashMap<String, i64>>>;

async fn bare_echo(body: Bytes) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    serde_json::from_slice::<Value>(&body)
        .map(Json)
        .map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e.to_string()))
}

async fn bare_counter(
    State(counts): State<Counts>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| (axum::http::StatusCode::BAD_REQUEST, e.to_string()))?;
    let amount = v.get("amount").and_then(Value::as_i64).unwrap_or(1);
    let key = q.get("key").cloned().unwrap_or_default();
    let mut counts = counts.lock();
    let count = counts.entry(key).or_default();
    *count = count.saturating_add(amount);
    Ok(Json(json!({ "count": *count })))
}

async fn start_bare() -> Result<SocketAddr> {
    let app = Router::new()
        .route("/echo", post(bare_echo))
        .route("/counter", post(bare_counter))
        .with_state(Counts::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("bare axum server failed: {e}");
        }
    });
    Ok(addr)
}

// ---- wrk ----

#[derive(Debug, Clone, Copy)]
struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let (num, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (text, 1.0)
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

fn parse_wrk(out: &str) -> Result<WrkResult> {
    let mut r = WrkResult {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
    };
    for line in out.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().context("Requests/sec")?;
        } else if let Some(v) = line.strip_prefix("50%") {
            r.p50_ms = ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("99%") {
            r.p99_ms = ms(v).unwrap_or(f64::NAN);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().unwrap_or(0);
        }
    }
    if r.rps == 0.0 {
        bail!("cannot read wrk output:\n{out}");
    }
    Ok(r)
}

/// `path` may contain `{key}`, replaced per request by one of 64 keys.
async fn wrk(o: &Options, addr: SocketAddr, path: &str, duration: u64) -> Result<WrkResult> {
    wrk_with(o, o.connections, addr, path, duration).await
}

/// [`wrk`] with `connections` clients.
async fn wrk_with(
    o: &Options,
    connections: u64,
    addr: SocketAddr,
    path: &str,
    duration: u64,
) -> Result<WrkResult> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("bench.lua");
    let (prefix, suffix) = path.split_once("{key}").unwrap_or((path, ""));
    std::fs::write(
        &script,
        format!(
            r#"wrk.method = "POST"
wrk.body = '{{"amount": 1}}'
wrk.headers["Content-Type"] = "application/json"
local keys = {{}}
for i = 1, 64 do keys[i] = "{prefix}" .. (({has_key}) and ("k" .. i) or "") .. "{suffix}" end
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, keys[(n % 64) + 1])
end
"#,
            has_key = if path.contains("{key}") {
                "true"
            } else {
                "false"
            },
        ),
    )?;
    let out = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", o.threads))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{duration}s"))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(format!("http://{addr}"))
        .output()
        .await
        .context("running wrk (apt-get install -y wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text)
}

// ---- gRPC ----

async fn grpc_asks(
    grpc: SocketAddr,
    actor_type: &str,
    msg_type: &str,
    n: usize,
) -> Result<Vec<f64>> {
    let mut client = ActorServiceClient::connect(format!("http://{grpc}")).await?;
    let request = |i: usize| AskRequest {
        address: Some(ActorAddress {
            tenant: "default".into(),
            namespace: "default".into(),
            actor_type: actor_type.into(),
            key: format!("g{}", i % 64),
        }),
        msg_type: msg_type.into(),
        payload: br#"{"amount": 1}"#.to_vec().into(),
        content_type: "application/json".into(),
        timeout_ms: 0,
    };
    for i in 0..n / 10 {
        client.ask(request(i)).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        client.ask(request(i)).await?;
        samples.push(started.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct NodeProcess {
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl NodeProcess {
    async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            // SIGTERM: the graceful path.
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        self.child.wait().await?;
        Ok(())
    }
}

async fn start_node(o: &Options, http: SocketAddr, grpc: SocketAddr) -> Result<NodeProcess> {
    if !o.bin.is_file() {
        bail!(
            "{} not found: cargo build --release -p plexspaces-cli (or pass --bin)",
            o.bin.display()
        );
    }
    let dir = tempfile::tempdir()?;
    let child = tokio::process::Command::new(&o.bin)
        .args(["start", "--node-id", "bench", "--http-addr"])
        .arg(http.to_string())
        .arg("--grpc-addr")
        .arg(grpc.to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .env("PLEXSPACES_DISABLE_AUTH", "1")
        .env("PLEXSPACES_LOG", "warn")
        .env(
            "PLEXSPACES_JOURNAL_OUTPUT_GATE",
            if o.output_gate { "true" } else { "false" },
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", o.bin.display()))?;
    for _ in 0..300 {
        if http_status(http, "/health").await == Some(200) {
            return Ok(NodeProcess { child, _dir: dir });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the node did not answer /health")
}

fn row(name: &str, node: WrkResult, bare: WrkResult) -> String {
    format!(
        "| {name} | {:.0} | {:.0} | {:.0}% | {:.2} / {:.2} | {:.2} / {:.2} | {} |",
        node.rps,
        bare.rps,
        100.0 * node.rps / bare.rps,
        node.p50_ms,
        node.p99_ms,
        bare.p50_ms,
        bare.p99_ms,
        node.non_2xx + bare.non_2xx,
    )
}

async fn run(o: Options) -> Result<()> {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    let node = start_node(&o, http, grpc).await?;
    let bare = start_bare().await?;

    let echo_node = "/api/v1/actors/default/echo/invoke?msg_type=echo";
    let counter_node = "/api/v1/actors/default/counter/invoke?msg_type=increment&key={key}";
    // Warm up: activations, journal streams, connections.
    let warm = 2;
    wrk(&o, http, echo_node, warm).await?;
    wrk(&o, http, counter_node, warm).await?;
    wrk(&o, bare, "/echo", warm).await?;
    wrk(&o, bare, "/counter?key={key}", warm).await?;

    eprintln!("echo: bare axum, then the node ({} s each)...", o.duration);
    let echo_bare = wrk(&o, bare, "/echo", o.duration).await?;
    let echo = wrk(&o, http, echo_node, o.duration).await?;
    eprintln!("counter increment: bare axum, then the node...");
    let counter_bare = wrk(&o, bare, "/counter?key={key}", o.duration).await?;
    let counter = wrk(&o, http, counter_node, o.duration).await?;

    let c = o.durable_connections;
    eprintln!("durable path: {c} clients, one hot key, then 64 keys...");
    let hot_node = "/api/v1/actors/default/counter/invoke?msg_type=increment&key=hot";
    wrk_with(&o, c, http, hot_node, warm).await?;
    let hot = wrk_with(&o, c, http, hot_node, o.duration).await?;
    let many = wrk_with(&o, c, http, counter_node, o.duration).await?;

    eprintln!("gRPC asks ({} sequential each)...", o.asks);
    let echo_asks = grpc_asks(grpc, "echo", "echo", o.asks).await?;
    let counter_asks = grpc_asks(grpc, "counter", "increment", o.asks / 5).await?;
    node.stop().await?;
    eprintln!("journal floors: {c} concurrent appenders...");
    let floor = journal_floor(c as usize, Duration::from_secs(o.duration)).await?;
    let raw = raw_sqlite_floor(c as usize, Duration::from_secs(o.duration)).await?;

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "wrk -t{} -c{} -d{}s, {cpus} CPUs shared by wrk, the server under test and this process; journal.output_gate = {}\n",
        o.threads, o.connections, o.duration, o.output_gate
    );
    println!("| HTTP invoke | node req/s | bare axum req/s | node / bare | node p50 / p99 ms | bare p50 / p99 ms | non-2xx |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!("{}", row("echo (worker pool)", echo, echo_bare));
    println!(
        "{}",
        row(
            "counter increment, 64 keys (durable, SQLite)",
            counter,
            counter_bare
        )
    );
    println!();
    println!("| durable counter increment, {c} clients | increments/s | p50 / p99 ms | non-2xx |");
    println!("|---|---:|---:|---:|");
    for (name, r) in [
        ("node over HTTP, one hot key", hot),
        ("node over HTTP, 64 keys", many),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} / {:.2} | {} |",
            r.rps, r.p50_ms, r.p99_ms, r.non_2xx
        );
    }
    println!(
        "| SQLite journal alone, {c} appenders (group commit) | {:.0} | | |",
        floor
    );
    println!(
        "| raw sqlx, the same rows, {c} increments per transaction | {:.0} | | |",
        raw
    );
    println!();
    println!(
        "| gRPC `ActorService.Ask`, sequential, one connection | n | p50 µs | p99 µs | mean µs |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in [
        ("echo", &echo_asks),
        ("counter increment (durable)", &counter_asks),
    ] {
        let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
        println!(
            "| {name} | {} | {:.0} | {:.0} | {:.0} |",
            s.len(),
            pct(s, 0.5),
            pct(s, 0.99),
            mean
        );
    }
    Ok(())
}

/// What one increment journals: the message (`MessageReceived`) and its reply, as
/// payloads of the node's sizes.
fn increment_entries(seq: u64) -> Vec<Entry> {
    vec![
        Entry::new(seq, EntryKind::MessageReceived, vec![b'm'; 96]),
        Entry::new(seq + 1, EntryKind::Reply, vec![b'r'; 48]),
    ]
}

/// Increments/s the SQLite journal alone sustains: `appenders` tasks, each on its own
/// stream, appending one increment's entries at a time through the group-commit writer.
async fn journal_floor(appenders: usize, run_for: Duration) -> Result<f64> {
    let dir = tempfile::tempdir()?;
    let journal =
        Arc::new(SqliteJournal::open(SqliteOptions::new(dir.path().join("journal.db"))).await?);
    let stop = Instant::now() + run_for;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..appenders {
        let journal = journal.clone();
        tasks.spawn(async move {
            let stream = StreamId::new("bench", "floor", &format!("s{i}"));
            let epoch = journal.acquire_epoch(&stream).await?;
            let (mut seq, mut done) = (1, 0u64);
            while Instant::now() < stop {
                journal
                    .append(&stream, epoch, increment_entries(seq))
                    .await?;
                seq += 2;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let started = Instant::now();
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// Increments/s of raw sqlx on the journal's schema and settings (WAL, `synchronous=FULL`),
/// with the batching group commit reaches under `per_tx` clients: each transaction
/// inserts `per_tx` increments' rows in one multi-row statement.
async fn raw_sqlite_floor(per_tx: usize, run_for: Duration) -> Result<f64> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use sqlx::ConnectOptions;
    let dir = tempfile::tempdir()?;
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .connect()
        .await?;
    sqlx::query(
        "CREATE TABLE entries (stream TEXT NOT NULL, seq INTEGER NOT NULL, kind INTEGER NOT NULL,
         payload BLOB NOT NULL, checksum INTEGER NOT NULL, PRIMARY KEY (stream, seq))",
    )
    .execute(&mut conn)
    .await?;
    let started = Instant::now();
    let (mut seq, mut done) = (1u64, 0u64);
    while started.elapsed() < run_for {
        let mut tx = sqlx::Connection::begin(&mut conn).await?;
        let mut q =
            sqlx::QueryBuilder::new("INSERT INTO entries (stream, seq, kind, payload, checksum) ");
        let rows: Vec<(usize, Entry)> = (0..per_tx)
            .flat_map(|i| increment_entries(seq).into_iter().map(move |e| (i, e)))
            .collect();
        q.push_values(rows, |mut b, (i, e)| {
            b.push_bind(format!("s{i}"))
                .push_bind(e.seq as i64)
                .push_bind(i64::from(e.kind.code()))
                .push_bind(e.payload)
                .push_bind(i64::from(e.checksum));
        });
        q.build().execute(&mut *tx).await?;
        tx.commit().await?;
        seq += 2;
        done += per_tx as u64;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

fn main() -> Result<()> {
    let o = options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(o))
}
