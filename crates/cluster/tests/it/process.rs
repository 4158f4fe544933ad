//! Real member processes (`cluster-test-node`) driven by `TestCluster`: kill -9, SIGTERM,
//! restart, partition. This test process joins the cluster as one more member and watches.

use std::time::Duration;

use plexspaces_cluster::{Cluster, ClusterHandle, ClusterOptions};
use plexspaces_core::{ActorId, ActorRef, Error, Node};
use plexspaces_test_util::{unique_name, TestCluster};

use crate::common::{tcp_node, until, Echo, Log, Obs, Observer};

const WAIT: Duration = Duration::from_secs(20);
const GOSSIP: Duration = Duration::from_millis(100);

async fn watcher(cluster_name: &str, seeds: Vec<String>) -> (Node, ClusterHandle) {
    let (node, network) = tcp_node(cluster_name, "tester").await;
    let gossip = format!(
        "127.0.0.1:{}",
        plexspaces_test_util::free_udp_port().unwrap()
    );
    let options = ClusterOptions::new(gossip.parse().unwrap())
        .seeds(seeds)
        .gossip_interval(GOSSIP);
    let cluster = Cluster::start(options, &node, network).await.unwrap();
    (node, cluster)
}

fn echo_on(node: &Node, member: &str) -> ActorRef<Echo> {
    node.actor_ref(&ActorId::parse(&format!("echo@{member}")).unwrap())
        .unwrap()
}

fn is_alive(cluster: &ClusterHandle, member: &str) -> bool {
    cluster.alive().iter().any(|m| m == member)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_is_noconnection_on_survivors_and_the_restarted_node_rejoins() {
    let name = unique_name("proc");
    let mut members = TestCluster::start(env!("CARGO_BIN_EXE_cluster-test-node"), &name, 3, GOSSIP)
        .await
        .expect("3 member processes start");
    let (node, cluster) = watcher(&name, members.seeds()).await;
    until("all four alive", WAIT, || cluster.alive().len() == 4).await;
    let echo = echo_on(&node, "node1");
    assert_eq!(echo.ask("hi".to_string()).await.unwrap(), "echo:hi");
    // Every member registers its echo as "echo"; the name resolves to one of them.
    let holder = cluster
        .whereis("echo")
        .expect("echo is registered cluster-wide");
    assert!(holder.id().node().starts_with("node"), "{}", holder.id());

    let log = Log::default();
    let observer = node
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    observer.ask(Obs::Trap).await.unwrap();
    let remote = node.pid(&ActorId::parse("echo@node1").unwrap()).unwrap();
    observer.ask(Obs::Monitor(remote.clone())).await.unwrap();
    observer.ask(Obs::Link(remote)).await.unwrap();
    // A round trip on the same connection: the monitor and link are in place.
    assert_eq!(echo.ask("sync".to_string()).await.unwrap(), "echo:sync");
    let pending = tokio::spawn({
        let echo = echo.clone();
        async move {
            echo.ask_timeout("slow:60000".to_string(), Duration::from_secs(120))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;

    members.kill(1).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), pending)
        .await
        .expect("the pending ask fails fast")
        .unwrap();
    assert_eq!(answer.unwrap_err(), Error::NoConnection("node1".into()));
    until("down and exit", WAIT, || log.entries().len() == 2).await;
    assert_eq!(
        log.sorted(),
        vec![
            "down:echo@node1:noconnection",
            "exit:echo@node1:noconnection"
        ]
    );
    until("membership declares node1 dead", WAIT, || {
        !is_alive(&cluster, "node1")
    })
    .await;
    assert_eq!(log.entries().len(), 2, "exactly once: {:?}", log.entries());

    members.restart(1).await.unwrap();
    until("node1 rejoins", WAIT, || is_alive(&cluster, "node1")).await;
    let back = plexspaces_test_util::eventually(WAIT, || {
        let echo = echo.clone();
        async move { echo.ask("back".to_string()).await.is_ok() }
    })
    .await;
    assert!(back, "node1 answers again after its restart");

    members.terminate(2).await.unwrap();
    until("node2 left", WAIT, || !is_alive(&cluster, "node2")).await;
    assert_eq!(
        echo_on(&node, "node2")
            .ask("x".to_string())
            .await
            .unwrap_err()
            .kind(),
        "noconnection"
    );
    cluster.stop().await;
    node.shutdown().await;
}

#[cfg(feature = "fault-injection")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_between_processes_heals_without_a_restart() {
    let name = unique_name("part");
    let mut members = TestCluster::start(env!("CARGO_BIN_EXE_cluster-test-node"), &name, 2, GOSSIP)
        .await
        .expect("member processes start");
    let (node, cluster) = watcher(&name, members.seeds()).await;
    until("all three alive", WAIT, || cluster.alive().len() == 3).await;
    let echo = echo_on(&node, "node0");
    assert_eq!(echo.ask("before".to_string()).await.unwrap(), "echo:before");
    let log = Log::default();
    let observer = node
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    let remote = node.pid(&ActorId::parse("echo@node0").unwrap()).unwrap();
    observer.ask(Obs::Monitor(remote)).await.unwrap();
    assert_eq!(echo.ask("sync".to_string()).await.unwrap(), "echo:sync");

    cluster.set_partitioned("node0", true);
    members.partition(0, "tester", true).await.unwrap();
    until("the monitor fires", WAIT, || {
        log.entries() == ["down:echo@node0:noconnection"]
    })
    .await;
    assert_eq!(
        echo.ask("during".to_string()).await.unwrap_err().kind(),
        "noconnection"
    );

    cluster.set_partitioned("node0", false);
    members.partition(0, "tester", false).await.unwrap();
    let healed = plexspaces_test_util::eventually(WAIT, || {
        let echo = echo.clone();
        async move { echo.ask("after".to_string()).await.is_ok() }
    })
    .await;
    assert!(healed, "asks cross again once the partition heals");
    assert!(is_alive(&cluster, "node0"));
    cluster.stop().await;
    node.shutdown().await;
}
