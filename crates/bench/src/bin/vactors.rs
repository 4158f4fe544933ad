//! `plexspaces-bench-vactors`: distributed virtual actors on three real `plexspaces start`
//! processes (`TestCluster`, all on 127.0.0.1) sharing a PostgreSQL journal and activation
//! directory (`PLEXSPACES_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! ```text
//! cargo build --release -p plexspaces-cli -p plexspaces-bench
//! target/release/plexspaces-bench-vactors [--bin PATH] [--requests N] [--keys N] [--failovers N]
//! ```
//! It reports; it never asserts a target. Not run by CI. Rows (sequential requests over one
//! keep-alive HTTP connection per node, so each is one request's latency):
//! - `increment via owner` / `via non-owner`: a durable counter's increment sent to the
//!   node that holds the activation, and to another node (forwarded over the cluster
//!   transport to the owner and answered back).
//! - `activation cold`: the first call of a fresh key, sent to the node its placement
//!   picks: directory claim, activation, journal epoch taken and bound to the claim, then
//!   the increment. `activation warm`: the second call of the same key.
//! - `failover after kill -9`: from kill -9 of a counter's owner until an increment sent to
//!   a survivor (retried every 10 ms) is acknowledged there: failure detection, reclaim,
//!   reactivation on a survivor (snapshot + journal replay).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use plexspaces_cluster::placement::{place, Candidate, Placement};
use plexspaces_test_util::{eventually, postgres_database, unique_name, TestCluster};
use serde_json::Value;

struct Options {
    bin: PathBuf,
    requests: usize,
    keys: usize,
    failovers: usize,
}

fn options() -> Result<Options> {
    let exe = std::env::current_exe().context("current exe")?;
    let mut o = Options {
        bin: exe.with_file_name("plexspaces"),
        requests: 2_000,
        keys: 200,
        failovers: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--bin" => o.bin = PathBuf::from(value()?),
            "--requests" => o.requests = value()?.parse()?,
            "--keys" => o.keys = value()?.parse()?,
            "--failovers" => o.failovers = value()?.parse()?,
            "-h" | "--help" => {
                println!("usage: plexspaces-bench-vactors [--bin PATH] [--requests N] [--keys N] [--failovers N]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(o)
}

const GOSSIP: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(30);

struct Bench {
    cluster: TestCluster,
    client: reqwest::Client,
    schema: String,
}

impl Bench {
    fn http(&self, i: usize) -> Result<String> {
        let addr = self.cluster.nodes()[i].http.context("an http address")?;
        Ok(format!("http://{addr}"))
    }

    async fn increment(&self, i: usize, key: &str, idem: &str) -> Result<bool> {
        let resp = self
            .client
            .post(format!(
                "{}/api/v1/actors/default/counter/invoke?msg_type=increment&key={key}",
                self.http(i)?
            ))
            .header("Idempotency-Key", idem)
            .body(r#"{"amount": 1}"#)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        Ok(matches!(resp, Ok(r) if r.status().as_u16() == 200))
    }

    async fn alive_seen(&self, i: usize) -> usize {
        let Ok(http) = self.http(i) else { return 0 };
        let Ok(resp) = self
            .client
            .get(format!("{http}/api/v1/cluster/members"))
            .send()
            .await
        else {
            return 0;
        };
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        body["members"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["state"] == "alive").count())
            .unwrap_or(0)
    }

    async fn all_see(&self, n: usize) -> Result<()> {
        for i in 0..self.cluster.nodes().len() {
            if !eventually(LIMIT, || async { self.alive_seen(i).await == n }).await {
                bail!("node{i} does not see {n} alive members");
            }
        }
        Ok(())
    }

    /// The node index the directory names as the owner of counter `key`.
    async fn owner(&self, key: &str) -> Result<usize> {
        let pool = sqlx::PgPool::connect(&postgres_database()).await?;
        let row: Option<(Option<String>,)> = sqlx::query_as(&format!(
            "SELECT owner FROM {}.directory WHERE actor_type = 'counter' AND key = $1",
            self.schema
        ))
        .bind(key)
        .fetch_optional(&pool)
        .await?;
        pool.close().await;
        let owner = row.and_then(|r| r.0).context("the key has an owner")?;
        owner
            .strip_prefix("node")
            .and_then(|n| n.parse().ok())
            .context("a node name")
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(label: &str, mut times: Vec<Duration>) {
    times.sort();
    if times.is_empty() {
        println!("| {label} | - | - | - | 0 |");
        return;
    }
    println!(
        "| {label} | {:.2} ms | {:.2} ms | {:.2} ms | {} |",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = options()?;
    if !o.bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p plexspaces-cli` or pass --bin",
            o.bin.display()
        );
    }
    let url = postgres_database();
    let schema = unique_name("benchv");
    let cluster = TestCluster::start_nodes(
        &o.bin,
        &unique_name("benchv"),
        3,
        GOSSIP,
        &[
            ("PLEXSPACES_JOURNAL_URL", url.as_str()),
            ("PLEXSPACES_JOURNAL_SCHEMA", schema.as_str()),
            ("PLEXSPACES_DIRECTORY", "journal"),
        ],
    )
    .await
    .context("three nodes start")?;
    let mut b = Bench {
        cluster,
        client: reqwest::Client::new(),
        schema,
    };
    b.all_see(3).await?;
    println!(
        "3 plexspaces nodes on 127.0.0.1, PostgreSQL journal + directory, gossip every {GOSSIP:?}"
    );
    println!("| row | p50 | p99 | max | samples |");
    println!("|---|---|---|---|---|");

    // Owner vs non-owner.
    let key = "hot";
    if !b.increment(0, key, "warmup").await? {
        bail!("the first increment failed");
    }
    let owner = b.owner(key).await?;
    let other = (owner + 1) % 3;
    for (label, node) in [
        ("increment via owner", owner),
        ("increment via non-owner (forwarded)", other),
    ] {
        let mut times = Vec::with_capacity(o.requests);
        for n in 0..o.requests {
            let t = Instant::now();
            if !b.increment(node, key, &format!("{label}-{n}")).await? {
                bail!("{label}: increment {n} failed");
            }
            times.push(t.elapsed());
        }
        row(label, times);
    }

    // Cold vs warm activation, each key sent to the node its placement picks.
    let candidates: Vec<Candidate> = (0..3)
        .map(|i| Candidate::new(&format!("node{i}"), 1))
        .collect();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for n in 0..o.keys {
        let key = format!("cold-{n}");
        let target = place(
            &Placement::ConsistentHash,
            &format!("default/default/counter/{key}"),
            "node0",
            &candidates,
        )?;
        let i: usize = target.trim_start_matches("node").parse()?;
        let t = Instant::now();
        if !b.increment(i, &key, "c").await? {
            bail!("cold activation of {key} failed");
        }
        cold.push(t.elapsed());
        let t = Instant::now();
        if !b.increment(i, &key, "w").await? {
            bail!("warm call of {key} failed");
        }
        warm.push(t.elapsed());
    }
    row("activation cold (first call, on its placement node)", cold);
    row("activation warm (second call)", warm);

    // Failover after kill -9 of the owner.
    let mut failovers = Vec::new();
    for r in 0..o.failovers {
        let key = format!("failover-{r}");
        for n in 0..5 {
            if !b.increment(n % 3, &key, &format!("pre-{n}")).await? {
                bail!("increment before failover {r} failed");
            }
        }
        let owner = b.owner(&key).await?;
        let survivor = (owner + 1) % 3;
        b.cluster.kill(owner).await?;
        let killed = Instant::now();
        loop {
            if b.increment(survivor, &key, "after").await? {
                break;
            }
            if killed.elapsed() > LIMIT {
                bail!("no failover of {key} within {LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        failovers.push(killed.elapsed());
        b.cluster.restart(owner).await?;
        b.all_see(3).await?;
    }
    row(
        "failover after kill -9 (until a survivor acknowledges)",
        failovers,
    );
    Ok(())
}
