//! Distributed virtual actors with real `plexspaces start` processes (`TestCluster`): three
//! nodes sharing a PostgreSQL journal and activation directory (`PLEXSPACES_DIRECTORY=
//! journal`). One counter, increments sent round robin to all nodes, each with its own
//! `Idempotency-Key` and retried with the same key until acknowledged: the count ends exact,
//! one node holds the activation at any time, and it survives kill -9 of its owner and a
//! rolling restart. Bounded: a few hundred to 1,000 requests, limits of tens of seconds.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexspaces_test_util::{eventually, postgres_database, unique_name, TestCluster};
use serde_json::Value;

use super::BIN;

const GOSSIP: Duration = Duration::from_millis(100);
const LIMIT: Duration = Duration::from_secs(20);

async fn three_nodes(schema: &str) -> TestCluster {
    let url = postgres_database();
    let cluster = TestCluster::start_nodes(
        BIN,
        &unique_name("vact"),
        3,
        GOSSIP,
        &[
            ("PLEXSPACES_JOURNAL_URL", url.as_str()),
            ("PLEXSPACES_JOURNAL_SCHEMA", schema),
            ("PLEXSPACES_DIRECTORY", "journal"),
        ],
    )
    .await
    .expect("three nodes start");
    let client = reqwest::Client::new();
    for i in 0..3 {
        let ok = eventually(LIMIT, || async {
            alive_seen(&client, &cluster, i).await == 3
        })
        .await;
        assert!(ok, "node{i} sees 3 alive members");
    }
    cluster
}

async fn alive_seen(client: &reqwest::Client, cluster: &TestCluster, i: usize) -> usize {
    let Some(http) = cluster.nodes()[i].http else {
        return 0;
    };
    let Ok(resp) = client
        .get(format!("http://{http}/api/v1/cluster/members"))
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

/// One increment with `idem` as its Idempotency-Key to node `i`; retried (same key, next
/// node) until a 200, for at most `LIMIT`. Returns the node that answered.
async fn increment(
    client: &reqwest::Client,
    nodes: &[SocketAddr],
    i: usize,
    key: &str,
    idem: &str,
) -> usize {
    let start = Instant::now();
    let mut node = i;
    loop {
        {
            let http = nodes[node % nodes.len()];
            let resp = client
                .post(format!(
                    "http://{http}/api/v1/actors/default/counter/invoke?msg_type=increment&key={key}"
                ))
                .header("Idempotency-Key", idem)
                .body(r#"{"amount": 1}"#)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if let Ok(r) = resp {
                if r.status().as_u16() == 200 {
                    return node % nodes.len();
                }
            }
        }
        assert!(
            start.elapsed() < LIMIT,
            "increment {idem} not acknowledged in {LIMIT:?}"
        );
        node += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn count(client: &reqwest::Client, nodes: &[SocketAddr], i: usize, key: &str) -> Option<i64> {
    let http = nodes[i];
    let resp = client
        .get(format!(
            "http://{http}/api/v1/actors/default/counter?key={key}"
        ))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    resp.json::<Value>().await.ok()?["count"].as_i64()
}

/// The nodes whose dashboard lists an activation of counter `key`.
async fn hosts(client: &reqwest::Client, nodes: &[SocketAddr], key: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, http) in nodes.iter().enumerate() {
        let Ok(resp) = client
            .get(format!("http://{http}/api/v1/dashboard/summary"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        else {
            continue;
        };
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let listed =
            body["actors"].as_array().into_iter().flatten().any(|a| {
                a["actor_type"] == "counter" && a["key"] == key && a["lifecycle"] == "active"
            });
        if listed {
            out.push(i);
        }
    }
    out
}

/// The HTTP addresses of the members (kept across restarts).
fn http_addrs(cluster: &TestCluster) -> Arc<Vec<SocketAddr>> {
    Arc::new(cluster.nodes().iter().filter_map(|n| n.http).collect())
}

/// The owner the directory table names for counter `key`.
async fn directory_owner(schema: &str, key: &str) -> Option<String> {
    let pool = sqlx::PgPool::connect(&postgres_database()).await.ok()?;
    let row: Option<(Option<String>,)> = sqlx::query_as(&format!(
        "SELECT owner FROM {schema}.directory WHERE actor_type = 'counter' AND key = $1"
    ))
    .bind(key)
    .fetch_optional(&pool)
    .await
    .ok()?;
    pool.close().await;
    row.and_then(|r| r.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_increments_round_robin_over_three_nodes_count_exactly_once() {
    let schema = unique_name("vact");
    let cluster = three_nodes(&schema).await;
    let nodes = http_addrs(&cluster);
    let client = reqwest::Client::new();
    let key = "shared";
    // Sample who hosts the counter while the load runs.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let max_hosts = Arc::new(AtomicU64::new(0));
    let sampler = {
        let (nodes, client, sampling, max_hosts) = (
            nodes.clone(),
            client.clone(),
            sampling.clone(),
            max_hosts.clone(),
        );
        tokio::spawn(async move {
            while sampling.load(Ordering::Acquire) {
                let n = hosts(&client, &nodes, key).await.len() as u64;
                max_hosts.fetch_max(n, Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let tasks: Vec<_> = (0..1000)
        .map(|n| {
            let (nodes, client, sem) = (nodes.clone(), client.clone(), sem.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.expect("semaphore");
                increment(&client, &nodes, n % 3, key, &format!("inc-{n}")).await
            })
        })
        .collect();
    let mut served_by = [0u32; 3];
    for t in tasks {
        served_by[t.await.expect("task")] += 1;
    }
    sampling.store(false, Ordering::Release);
    sampler.await.expect("sampler");
    println!("answered by node0..2: {served_by:?}");
    for i in 0..3 {
        assert_eq!(
            count(&client, &nodes, i, key).await,
            Some(1000),
            "node{i} reads 1000"
        );
    }
    assert_eq!(
        max_hosts.load(Ordering::Acquire),
        1,
        "one activation at any sample"
    );
    let owners = hosts(&client, &nodes, key).await;
    assert_eq!(owners.len(), 1, "one node lists the activation: {owners:?}");
    assert_eq!(
        directory_owner(&schema, key).await,
        Some(format!("node{}", owners[0])),
        "the directory names the node that lists it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_owner_loses_no_acknowledged_increment_and_reactivates_on_a_survivor() {
    let schema = unique_name("vkill");
    let mut cluster = three_nodes(&schema).await;
    let nodes = http_addrs(&cluster);
    let client = reqwest::Client::new();
    let key = "failover";
    for n in 0..30 {
        increment(&client, &nodes, n % 3, key, &format!("a-{n}")).await;
    }
    let owner = hosts(&client, &nodes, key).await;
    assert_eq!(owner.len(), 1, "{owner:?}");
    let owner = owner[0];
    let survivors: Vec<usize> = (0..3).filter(|i| *i != owner).collect();

    // Increments in flight from the survivors while the owner is killed; each is retried
    // with its key until acknowledged.
    let load: Vec<_> = (0..60)
        .map(|n| {
            let (nodes, client) = (nodes.clone(), client.clone());
            let node = survivors[n % 2];
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(10 * n as u64)).await;
                increment(&client, &nodes, node, key, &format!("b-{n}")).await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    cluster.kill(owner).await.expect("kill -9");
    let killed_at = Instant::now();
    let back = eventually(LIMIT, || async {
        hosts(&client, &nodes, key)
            .await
            .iter()
            .any(|h| survivors.contains(h))
    })
    .await;
    let reactivated_in = killed_at.elapsed();
    assert!(back, "reactivated on a survivor");
    for t in load {
        t.await.expect("increment task");
    }
    println!("reactivated on a survivor {reactivated_in:?} after kill -9 (detection ~0.9 s)");
    // 30 before + 60 during, every one acknowledged; a retried key is never counted twice.
    assert_eq!(count(&client, &nodes, survivors[0], key).await, Some(90));
    // Sending acknowledged keys again changes nothing, across the move too.
    for n in [0, 29] {
        increment(&client, &nodes, survivors[1], key, &format!("a-{n}")).await;
    }
    assert_eq!(count(&client, &nodes, survivors[1], key).await, Some(90));
    let owner_now = directory_owner(&schema, key).await.expect("owned");
    assert!(
        survivors.iter().any(|s| owner_now == format!("node{s}")),
        "{owner_now}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_under_load_loses_no_acknowledged_increment() {
    let schema = unique_name("vroll");
    let mut cluster = three_nodes(&schema).await;
    let nodes = http_addrs(&cluster);
    let client = reqwest::Client::new();
    let key = "rolling";
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let load = {
        let (nodes, client, done, acked) =
            (nodes.clone(), client.clone(), done.clone(), acked.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !done.load(Ordering::Acquire) && n < 2000 {
                increment(&client, &nodes, n % 3, key, &format!("r-{n}")).await;
                acked.fetch_add(1, Ordering::AcqRel);
                n += 1;
            }
        })
    };
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        cluster.terminate(i).await.expect("SIGTERM");
        cluster.restart(i).await.expect("restart");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    done.store(true, Ordering::Release);
    load.await.expect("load");
    let acked = acked.load(Ordering::Acquire) as i64;
    println!("{acked} increments acknowledged across a rolling restart");
    assert!(acked > 0);
    assert_eq!(count(&client, &nodes, 0, key).await, Some(acked));
}

/// Rebalancing: a fourth node that joins takes its share of *new* activations (each new
/// key lands where rendezvous hashing over the four alive nodes puts it, the same answer on
/// every node); activations that are live stay where they are (moving them is not built).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_takes_its_share_of_new_activations_and_live_ones_stay() {
    use plexspaces_cluster::placement::{place, Candidate, Placement};

    let schema = unique_name("vbal");
    let mut cluster = three_nodes(&schema).await;
    let client = reqwest::Client::new();
    let three = http_addrs(&cluster);
    let old: Vec<String> = (0..24).map(|n| format!("old-{n}")).collect();
    for (n, key) in old.iter().enumerate() {
        increment(&client, &three, n, key, &format!("o-{n}")).await;
    }
    let mut before = Vec::new();
    for key in &old {
        before.push(directory_owner(&schema, key).await.expect("owned"));
    }

    let added = cluster.add_node(&[]).await.expect("a fourth node starts");
    assert_eq!(added, 3);
    for i in 0..4 {
        let ok = eventually(LIMIT, || async {
            alive_seen(&client, &cluster, i).await == 4
        })
        .await;
        assert!(ok, "node{i} sees 4 alive members");
    }
    let four = http_addrs(&cluster);
    let candidates: Vec<Candidate> = (0..4)
        .map(|i| Candidate::new(&format!("node{i}"), 1))
        .collect();
    let mut share = std::collections::BTreeMap::<String, usize>::new();
    for n in 0..40 {
        let key = format!("new-{n}");
        increment(&client, &four, n, &key, &format!("n-{n}")).await;
        let owner = directory_owner(&schema, &key).await.expect("owned");
        let expected = place(
            &Placement::ConsistentHash,
            &format!("default/default/counter/{key}"),
            "node0",
            &candidates,
        )
        .expect("placed");
        assert_eq!(owner, expected, "{key} lands where the placement puts it");
        *share.entry(owner).or_default() += 1;
    }
    println!("40 new keys over 4 nodes: {share:?}");
    assert!(
        share.get("node3").copied().unwrap_or(0) > 0,
        "the new node took a share: {share:?}"
    );
    for (key, owner) in old.iter().zip(&before) {
        assert_eq!(
            directory_owner(&schema, key).await.as_ref(),
            Some(owner),
            "live activation {key} did not move"
        );
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Figures for BENCHMARKS.md (printed, never asserted): a read via the owner vs via a
/// non-owner (forwarded), and the first call of a key (claim + activation + journal epoch)
/// vs a call to an active key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn latency_report_owner_vs_non_owner_and_cold_vs_warm_activation() {
    let schema = unique_name("vlat");
    let cluster = three_nodes(&schema).await;
    let nodes = http_addrs(&cluster);
    let client = reqwest::Client::new();
    let key = "latency";
    increment(&client, &nodes, 0, key, "warmup").await;
    let owner = hosts(&client, &nodes, key).await;
    assert_eq!(owner.len(), 1);
    let owner = owner[0];
    let other = (owner + 1) % 3;
    let mut report = Vec::new();
    for (label, node) in [("via owner", owner), ("via non-owner", other)] {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            assert_eq!(count(&client, &nodes, node, key).await, Some(1));
            times.push(t.elapsed());
        }
        times.sort();
        report.push((label, percentile(&times, 0.5), percentile(&times, 0.99)));
    }
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for n in 0..50 {
        let fresh = format!("cold-{n}");
        let t = Instant::now();
        increment(&client, &nodes, n % 3, &fresh, &format!("c-{n}")).await;
        cold.push(t.elapsed());
        let t = Instant::now();
        increment(&client, &nodes, n % 3, &fresh, &format!("w-{n}")).await;
        warm.push(t.elapsed());
    }
    cold.sort();
    warm.sort();
    report.push((
        "activation cold (first call)",
        percentile(&cold, 0.5),
        percentile(&cold, 0.99),
    ));
    report.push((
        "activation warm (second call)",
        percentile(&warm, 0.5),
        percentile(&warm, 0.99),
    ));
    for (label, p50, p99) in &report {
        println!("| {label} | {p50:?} | {p99:?} |");
    }
}

/// Partitions of real `plexspaces start` processes through their test-only fault switch
/// (`PLEXSPACES_FAULT_INJECTION=1`, cli feature `fault-injection`): node-to-node traffic
/// (transport and gossip) is cut, the shared PostgreSQL directory and journal and the HTTP
/// listeners stay reachable.
#[cfg(feature = "fault-injection")]
mod partition {
    use super::*;

    const FAULTS: (&str, &str) = ("PLEXSPACES_FAULT_INJECTION", "1");

    /// The switch is refused where it cannot be served: a node outside a cluster exits
    /// with code 6 before serving; a member started without the variable has no switch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fault_switch_is_refused_outside_a_cluster_and_absent_without_the_variable() {
        let dir = tempfile::tempdir().unwrap();
        let out = tokio::process::Command::new(BIN)
            .args([
                "start",
                "--http-addr",
                "127.0.0.1:0",
                "--grpc-addr",
                "127.0.0.1:0",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .env("PLEXSPACES_DISABLE_AUTH", "1")
            .env(FAULTS.0, FAULTS.1)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(6));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("needs a node in a cluster"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = TestCluster::start_nodes(BIN, &unique_name("vnosw"), 1, GOSSIP, &[])
            .await
            .expect("one node starts");
        let refused = cluster.partition(0, "node1", true).await;
        assert!(
            refused.is_err(),
            "a member without the variable has no switch"
        );
    }

    async fn three_nodes_with_fault_switch(schema: &str) -> TestCluster {
        let url = postgres_database();
        let cluster = TestCluster::start_nodes(
            BIN,
            &unique_name("vpart"),
            3,
            GOSSIP,
            &[
                ("PLEXSPACES_JOURNAL_URL", url.as_str()),
                ("PLEXSPACES_JOURNAL_SCHEMA", schema),
                ("PLEXSPACES_DIRECTORY", "journal"),
                FAULTS,
            ],
        )
        .await
        .expect("three nodes start");
        let client = reqwest::Client::new();
        for i in 0..3 {
            let ok = eventually(LIMIT, || async {
                alive_seen(&client, &cluster, i).await == 3
            })
            .await;
            assert!(ok, "node{i} sees 3 alive members");
        }
        cluster
    }

    /// Cuts (or heals) every link between member `isolated` and the others, both ways.
    async fn isolate(cluster: &mut TestCluster, isolated: usize, on: bool) {
        for other in (0..3).filter(|o| *o != isolated) {
            cluster
                .partition(isolated, &format!("node{other}"), on)
                .await
                .expect("fault switch");
            cluster
                .partition(other, &format!("node{isolated}"), on)
                .await
                .expect("fault switch");
        }
    }

    /// One increment to node `i` only, no retry: (status, body).
    async fn increment_once(
        client: &reqwest::Client,
        http: SocketAddr,
        key: &str,
        idem: &str,
    ) -> (u16, Value) {
        let resp = client
            .post(format!(
                "http://{http}/api/v1/actors/default/counter/invoke?msg_type=increment&key={key}"
            ))
            .header("Idempotency-Key", idem)
            .body(r#"{"amount": 1}"#)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .expect("the node answers over HTTP");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The directory row of counter `key`: (owner, epoch, journal epoch).
    async fn directory_row(schema: &str, key: &str) -> Option<(Option<String>, i64, Option<i64>)> {
        let pool = sqlx::PgPool::connect(&postgres_database()).await.ok()?;
        let row = sqlx::query_as(&format!(
            "SELECT owner, epoch, journal_epoch FROM {schema}.directory
             WHERE actor_type = 'counter' AND key = $1"
        ))
        .bind(key)
        .fetch_optional(&pool)
        .await
        .ok()?;
        pool.close().await;
        row
    }

    /// The journal epoch the PostgreSQL journal holds for counter `key`'s stream.
    async fn journal_epoch(schema: &str, key: &str) -> Option<i64> {
        let pool = sqlx::PgPool::connect(&postgres_database()).await.ok()?;
        let row: Option<(i64,)> = sqlx::query_as(&format!(
            "SELECT epoch FROM {schema}.journal_streams WHERE actor_id = $1"
        ))
        .bind(format!("counter/{key}"))
        .fetch_optional(&pool)
        .await
        .ok()?;
        pool.close().await;
        row.map(|r| r.0)
    }

    async fn sees_dead(
        client: &reqwest::Client,
        cluster: &TestCluster,
        i: usize,
        peer: usize,
    ) -> bool {
        let Some(http) = cluster.nodes()[i].http else {
            return false;
        };
        let Ok(resp) = client
            .get(format!("http://{http}/api/v1/cluster/members"))
            .send()
            .await
        else {
            return false;
        };
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        body["members"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| m["node"] == format!("node{peer}") && m["state"] != "alive")
    }

    /// Isolates the owner of a durable counter; the majority reclaims and reactivates it
    /// with every acknowledged increment; the isolated owner still holds its activation,
    /// and its write is refused by the journal epoch the new owner's activation took (bound
    /// to the new directory claim): nothing is applied twice, and the refused request,
    /// retried with its key on the majority, is applied once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_partitioned_owner_is_fenced_and_the_majority_reactivates_the_counter() {
        let schema = unique_name("vfence");
        let mut cluster = three_nodes_with_fault_switch(&schema).await;
        let nodes = http_addrs(&cluster);
        let client = reqwest::Client::new();
        let key = "isolated";
        for n in 0..20 {
            increment(&client, &nodes, n % 3, key, &format!("a-{n}")).await;
        }
        let owner = hosts(&client, &nodes, key).await;
        assert_eq!(owner.len(), 1, "{owner:?}");
        let owner = owner[0];
        let majority: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
        let (_, old_epoch, old_journal) = directory_row(&schema, key).await.expect("row");
        assert!(
            old_journal.is_some(),
            "the activation bound its journal epoch to its directory claim"
        );
        assert_eq!(
            old_journal,
            journal_epoch(&schema, key).await,
            "the bound journal epoch is the stream's"
        );

        isolate(&mut cluster, owner, true).await;
        for m in &majority {
            let cut = eventually(LIMIT, || sees_dead(&client, &cluster, *m, owner)).await;
            assert!(cut, "node{m} sees node{owner} gone");
        }
        // The majority reclaims and reactivates; increments go on, each retried with its
        // key until acknowledged, only through the majority.
        let majority_nodes: Vec<SocketAddr> = majority.iter().map(|m| nodes[*m]).collect();
        for n in 0..20 {
            increment(&client, &majority_nodes, n % 2, key, &format!("b-{n}")).await;
        }
        let (new_owner, new_epoch, new_journal) = directory_row(&schema, key).await.expect("row");
        let new_owner = new_owner.expect("owned");
        assert!(
            majority.iter().any(|m| new_owner == format!("node{m}")),
            "reactivated on the majority: {new_owner}"
        );
        assert!(new_epoch > old_epoch, "a new ownership period");
        assert!(
            new_journal > old_journal,
            "the new activation took (and bound) a newer journal epoch"
        );
        assert!(
            hosts(&client, &nodes, key).await.contains(&owner),
            "the isolated owner still holds its old activation"
        );

        // The isolated owner serves its activation without the directory: its write is
        // refused by the journal (fenced), and it is not applied.
        let (status, body) = increment_once(&client, nodes[owner], key, "c-0").await;
        assert!(
            status >= 400,
            "the isolated owner acknowledged a write: {status} {body}"
        );
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("fenced")),
            "refused by the journal's fencing: {status} {body}"
        );
        // Its activation stopped; it cannot activate the key again (the directory names
        // the new owner, which it cannot reach).
        let (status, body) = increment_once(&client, nodes[owner], key, "c-0").await;
        assert!(status >= 500 && body["code"] == "moved", "{status} {body}");
        assert!(!hosts(&client, &nodes, key).await.contains(&owner));

        assert_eq!(count(&client, &nodes, majority[0], key).await, Some(40));
        // The refused request, retried with its key on the majority, counts once.
        for _ in 0..2 {
            increment(&client, &majority_nodes, 0, key, "c-0").await;
        }
        assert_eq!(count(&client, &nodes, majority[1], key).await, Some(41));
        assert_eq!(hosts(&client, &nodes, key).await.len(), 1);
    }

    /// A partition of real node processes heals without a restart: the isolated node
    /// rejoins, retires the activation the majority took over while it was away, and every
    /// node serves the counter again from one activation with the exact count.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_partition_heals_without_a_restart() {
        let schema = unique_name("vheal");
        let mut cluster = three_nodes_with_fault_switch(&schema).await;
        let nodes = http_addrs(&cluster);
        let client = reqwest::Client::new();
        let key = "healing";
        for n in 0..10 {
            increment(&client, &nodes, n % 3, key, &format!("a-{n}")).await;
        }
        let owner = hosts(&client, &nodes, key).await[0];
        let majority: Vec<usize> = (0..3).filter(|i| *i != owner).collect();
        let pids: Vec<Option<u32>> = cluster.nodes().iter().map(|n| n.pid()).collect();

        isolate(&mut cluster, owner, true).await;
        for m in &majority {
            let cut = eventually(LIMIT, || sees_dead(&client, &cluster, *m, owner)).await;
            assert!(cut, "node{m} sees node{owner} gone");
        }
        let cut = eventually(LIMIT, || async {
            sees_dead(&client, &cluster, owner, majority[0]).await
                && sees_dead(&client, &cluster, owner, majority[1]).await
        })
        .await;
        assert!(cut, "node{owner} sees the others gone");
        let majority_nodes = [nodes[majority[0]], nodes[majority[1]]];
        for n in 0..10 {
            increment(&client, &majority_nodes, n % 2, key, &format!("b-{n}")).await;
        }

        isolate(&mut cluster, owner, false).await;
        for i in 0..3 {
            let ok = eventually(LIMIT, || async {
                alive_seen(&client, &cluster, i).await == 3
            })
            .await;
            assert!(ok, "node{i} sees 3 alive members again");
        }
        // Back in the cluster, the formerly isolated node retires the activation it lost.
        let one = eventually(LIMIT, || async {
            hosts(&client, &nodes, key).await.len() == 1
        })
        .await;
        assert!(
            one,
            "one activation after the heal: {:?}",
            hosts(&client, &nodes, key).await
        );
        assert!(!hosts(&client, &nodes, key).await.contains(&owner));
        // Every node serves the counter again, the formerly isolated one included.
        for n in 0..9 {
            increment(&client, &nodes, n % 3, key, &format!("c-{n}")).await;
        }
        for i in 0..3 {
            assert_eq!(count(&client, &nodes, i, key).await, Some(29), "node{i}");
        }
        let still: Vec<Option<u32>> = cluster.nodes().iter().map(|n| n.pid()).collect();
        assert_eq!(pids, still, "no node was restarted");
    }
}
