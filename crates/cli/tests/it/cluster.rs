//! Real `plexspaces start` processes in one cluster (`TestCluster::start_nodes`): forming,
//! `cluster status`, forwarding an HTTP invocation to the node that hosts the actor,
//! kill -9 and rejoin, graceful leave, another cluster name, and mTLS with the right and a
//! wrong CA. Everything stays on 127.0.0.1; each test is bounded by its `eventually` limits.

use std::process::Command;
use std::time::{Duration, Instant};

use plexspaces_test_util::{eventually, TestCluster};
use serde_json::{json, Value};

use super::BIN;

/// Gossip interval of the test members: detection takes about 9 of them (~0.9 s).
const GOSSIP: Duration = Duration::from_millis(100);
/// Room for a loaded 2-core machine on top of the detection time.
const LIMIT: Duration = Duration::from_secs(10);

/// `plexspaces cluster status --output json` against member `i`.
fn status(cluster: &TestCluster, i: usize) -> Option<Value> {
    let out = Command::new(BIN)
        .args(["cluster", "status", "--output", "json", "--endpoint"])
        .arg(cluster.nodes()[i].endpoint())
        .env_remove("PLEXSPACES_TOKEN")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The names of the members in `state` as member `i` sees them, sorted.
fn members_in(cluster: &TestCluster, i: usize, state: &str) -> Vec<String> {
    let Some(status) = status(cluster, i) else {
        return Vec::new();
    };
    let mut names: Vec<String> = status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == state)
        .filter_map(|m| m["node"].as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

fn names(of: &[&str]) -> Vec<String> {
    of.iter().map(|s| (*s).to_owned()).collect()
}

/// `POST /api/v1/actors/default/counter/invoke?msg_type=...&key=...` on member `i`.
async fn invoke(cluster: &TestCluster, i: usize, msg_type: &str, key: &str) -> (u16, Value) {
    let http = cluster.nodes()[i].http.expect("a plexspaces member");
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{http}/api/v1/actors/default/counter/invoke?msg_type={msg_type}&key={key}"
        ))
        .body(r#"{"amount": 1}"#)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the node answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `live_actors` of member `host` as member `i` sees it through gossip.
fn live_actors_seen(cluster: &TestCluster, i: usize, host: &str) -> Option<u64> {
    status(cluster, i)?["members"]
        .as_array()?
        .iter()
        .find(|m| m["node"] == host)?["live_actors"]
        .as_u64()
}

/// Activates `key` on member `host` with one increment, then waits until every member in
/// `others` has heard through gossip that `host` runs one more actor. Names are published
/// every gossip round and the actor count every second, so by then the activation's
/// cluster-wide name has reached them too (with a few rounds to spare): a call through them
/// is forwarded instead of activating a copy there.
async fn activate_and_spread(cluster: &TestCluster, host: usize, others: &[usize], key: &str) {
    let name = cluster.nodes()[host].name.clone();
    let before: Vec<u64> = others
        .iter()
        .map(|&i| live_actors_seen(cluster, i, &name).unwrap_or(0))
        .collect();
    assert_eq!(
        invoke(cluster, host, "increment", key).await,
        (200, json!({"count": 1}))
    );
    for (&i, before) in others.iter().zip(before) {
        assert!(
            eventually(LIMIT, || async {
                live_actors_seen(cluster, i, &name).is_some_and(|n| n > before)
            })
            .await,
            "node{i} never heard of the new activation on {name}"
        );
    }
    tokio::time::sleep(GOSSIP * 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_plexspaces_nodes_form_a_cluster_forward_calls_and_survive_kill_9() {
    let mut cluster = TestCluster::start_nodes(BIN, "it-cluster", 3, GOSSIP, &[])
        .await
        .expect("three nodes start");
    let started = Instant::now();
    let all = names(&["node0", "node1", "node2"]);
    for i in 0..3 {
        assert!(
            eventually(Duration::from_secs(5), || async {
                members_in(&cluster, i, "alive") == all
            })
            .await,
            "node{i} does not list the 3 alive members within 5 s: {:?}",
            status(&cluster, i)
        );
    }
    eprintln!("3 nodes formed one cluster in {:?}", started.elapsed());
    let view = status(&cluster, 1).expect("status");
    assert_eq!(view["cluster_name"], "it-cluster");
    assert_eq!(view["clustered"], true);
    for m in view["members"].as_array().unwrap() {
        assert!(m["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{m}");
        assert!(m["last_heartbeat_ms"].as_u64().unwrap() > 0, "{m}");
    }

    // HTTP to node1 for an actor active on node0 answers as node0 does.
    activate_and_spread(&cluster, 0, &[1, 2], "k1").await;
    assert_eq!(
        invoke(&cluster, 1, "get", "k1").await,
        (200, json!({"count": 1}))
    );
    assert_eq!(
        invoke(&cluster, 1, "increment", "k1").await,
        (200, json!({"count": 2}))
    );
    assert_eq!(
        invoke(&cluster, 2, "increment", "k1").await,
        (200, json!({"count": 3}))
    );
    assert_eq!(
        invoke(&cluster, 0, "get", "k1").await,
        (200, json!({"count": 3}))
    );
    // The hosting node's error, with its status, comes back unchanged.
    let (direct, direct_body) = invoke(&cluster, 0, "explode", "k1").await;
    let (forwarded, forwarded_body) = invoke(&cluster, 1, "explode", "k1").await;
    assert_eq!(direct, 400);
    assert_eq!((forwarded, &forwarded_body), (direct, &direct_body));
    // node1 served the calls without activating the actor itself.
    let list = Command::new(BIN)
        .args(["actor", "list", "--output", "json", "--endpoint"])
        .arg(cluster.nodes()[1].endpoint())
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list["actors"], json!([]), "node1 activated a copy");

    // kill -9 node2: the survivors see it dead within the detection time.
    cluster.kill(2).await.unwrap();
    let killed = Instant::now();
    for i in 0..2 {
        assert!(
            eventually(LIMIT, || async {
                members_in(&cluster, i, "dead") == names(&["node2"])
            })
            .await,
            "node{i} never saw node2 dead: {:?}",
            status(&cluster, i)
        );
    }
    eprintln!(
        "kill -9 seen by both survivors after {:?}",
        killed.elapsed()
    );
    // Restarted with the same name and ports, it rejoins.
    cluster.restart(2).await.unwrap();
    for i in 0..3 {
        assert!(
            eventually(LIMIT, || async { members_in(&cluster, i, "alive") == all }).await,
            "node{i} does not see node2 back: {:?}",
            status(&cluster, i)
        );
    }
    assert_eq!(
        invoke(&cluster, 2, "increment", "k1").await,
        (200, json!({"count": 4}))
    );

    // SIGTERM: a graceful leave; the others stop listing it alive.
    cluster.terminate(2).await.unwrap();
    assert!(
        eventually(LIMIT, || async {
            members_in(&cluster, 0, "alive") == names(&["node0", "node1"])
        })
        .await,
        "node0 still lists node2 alive after its SIGTERM"
    );
    assert!(cluster.nodes()[2].log().contains("left cluster"));

    // kill -9 the host of k1: a call through node1 fails fast or is served there, never
    // waits for its timeout.
    cluster.kill(0).await.unwrap();
    let asked = Instant::now();
    let (status_after, _) = invoke(&cluster, 1, "get", "k1").await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "a call after the host died took {:?}",
        asked.elapsed()
    );
    assert!(matches!(status_after, 200 | 503), "{status_after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_another_cluster_never_joins() {
    let mut cluster = TestCluster::start_nodes(BIN, "it-home", 1, GOSSIP, &[])
        .await
        .expect("a node starts");
    // node1 seeds from node0 but is in another cluster.
    let stranger = cluster
        .add_node(&[("PLEXSPACES_CLUSTER_NAME", "it-elsewhere")])
        .await
        .expect("the stranger starts");
    tokio::time::sleep(GOSSIP * 20).await;
    assert_eq!(members_in(&cluster, 0, "alive"), names(&["node0"]));
    assert_eq!(
        status(&cluster, 0).unwrap()["members"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let theirs = status(&cluster, stranger).unwrap();
    assert_eq!(theirs["cluster_name"], "it-elsewhere");
    assert_eq!(members_in(&cluster, stranger, "alive"), names(&["node1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_accepts_the_clusters_ca_and_refuses_another() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    let bad = dir.path().join("bad");
    for (out, nodes) in [(&good, "node0,node1,node3"), (&bad, "node2")] {
        let made = Command::new(BIN)
            .args(["cert", "dev-ca", "--nodes", nodes, "--out"])
            .arg(out)
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
    }
    let tls = |dir: &std::path::Path, node: &str| {
        vec![
            (
                "PLEXSPACES_CLUSTER_TLS_CA".to_owned(),
                dir.join("ca.pem").display().to_string(),
            ),
            (
                "PLEXSPACES_CLUSTER_TLS_CERT".to_owned(),
                dir.join(format!("{node}.pem")).display().to_string(),
            ),
            (
                "PLEXSPACES_CLUSTER_TLS_KEY".to_owned(),
                dir.join(format!("{node}.key")).display().to_string(),
            ),
        ]
    };
    // node2 has another CA; node3, started after it with the same seeds (every member
    // before it) and the same cluster name, has the cluster's: it shows that a member started
    // that way joins, so node2's absence below is the certificate's doing.
    let mut cluster = TestCluster::plexspaces(BIN, "it-mtls", GOSSIP, &[]).unwrap();
    for (node, ca) in [
        ("node0", &good),
        ("node1", &good),
        ("node2", &bad),
        ("node3", &good),
    ] {
        let env = tls(ca, node);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        cluster.add_node(&env).await.expect("node starts");
    }
    assert!(cluster.nodes()[0].log().contains("mtls=true"));

    // Gossip runs over mTLS: the three members of the cluster's CA see each other alive...
    let trusted = names(&["node0", "node1", "node3"]);
    for i in [0, 1, 3] {
        assert!(
            eventually(LIMIT, || async {
                members_in(&cluster, i, "alive") == trusted
            })
            .await,
            "node{i} does not list node0, node1 and node3 alive: {:?}",
            status(&cluster, i)
        );
    }
    // ...and node2 appears in no member's view, in any state; node2 sees only itself.
    for i in [0, 1, 3] {
        let seen = status(&cluster, i).expect("status answers");
        let listed: Vec<&str> = seen["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["node"].as_str())
            .collect();
        assert!(!listed.contains(&"node2"), "node{i} lists node2: {seen}");
    }
    let alone = names(&["node2"]);
    assert!(
        eventually(LIMIT, || async {
            members_in(&cluster, 2, "alive") == alone
        })
        .await,
        "node2 should see only itself: {:?}",
        status(&cluster, 2)
    );
    // node2 did try: node0 refused its connection at the TLS handshake and logged it.
    assert!(
        eventually(LIMIT, || async {
            cluster.nodes()[0]
                .log()
                .contains("refused connection: tls handshake failed")
        })
        .await,
        "node0 did not log the refusal:\n{}",
        cluster.nodes()[0].log()
    );

    // Same CA: a forwarded call crosses the mTLS transport.
    activate_and_spread(&cluster, 0, &[1, 3], "t1").await;
    assert_eq!(
        invoke(&cluster, 1, "get", "t1").await,
        (200, json!({"count": 1}))
    );
    // node2 never heard of node0's actor: whatever it does with the key stays on node2, and
    // node0's actor is untouched.
    let _ = invoke(&cluster, 2, "increment", "t1").await;
    assert_eq!(
        invoke(&cluster, 0, "get", "t1").await,
        (200, json!({"count": 1}))
    );
}
