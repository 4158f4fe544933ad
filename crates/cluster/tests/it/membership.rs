//! Membership over real UDP gossip on 127.0.0.1: forming a cluster, metadata, failure
//! detection turning into `noconnection`, cluster-name isolation, rejoin, partitions.

use std::time::Duration;

use plexspaces_cluster::{
    Cluster, ClusterHandle, ClusterOptions, MemberState, MembershipEvent, NetworkHandle,
};
use plexspaces_core::{ActorId, ActorRef, Node};

use crate::common::{tcp_node, until, Echo, Log, Obs, Observer};

const WAIT: Duration = Duration::from_secs(15);

fn gossip_addr() -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp port");
    socket.local_addr().expect("addr")
}

struct Member {
    node: Node,
    network: NetworkHandle,
    cluster: ClusterHandle,
    gossip: std::net::SocketAddr,
}

async fn member(cluster_name: &str, name: &str, seeds: &[std::net::SocketAddr]) -> Member {
    let (node, network) = tcp_node(cluster_name, name).await;
    let gossip = gossip_addr();
    let options = ClusterOptions::new(gossip)
        .seeds(seeds.iter().map(|s| s.to_string()).collect())
        .label("role", name)
        .gossip_interval(Duration::from_millis(100))
        .metrics(prometheus::Registry::new());
    let cluster = Cluster::start(options, &node, network.clone())
        .await
        .expect("cluster starts");
    Member {
        node,
        network,
        cluster,
        gossip,
    }
}

fn alive(cluster: &ClusterHandle) -> Vec<String> {
    cluster.alive()
}

#[tokio::test]
async fn three_nodes_form_one_cluster_with_metadata_and_talk() {
    let a = member("m-form", "alpha", &[]).await;
    let b = member("m-form", "beta", &[a.gossip]).await;
    let c = member("m-form", "gamma", &[a.gossip]).await;
    let all = vec!["alpha".to_string(), "beta".into(), "gamma".into()];
    for m in [&a, &b, &c] {
        until("all three alive", WAIT, || alive(&m.cluster) == all).await;
    }
    let members = c.cluster.members();
    let alpha = members.iter().find(|m| m.node == "alpha").unwrap();
    assert_eq!(alpha.state, MemberState::Alive);
    assert_eq!(alpha.addr, Some(a.network.local_addr()));
    assert_eq!(alpha.labels.get("role").map(String::as_str), Some("alpha"));
    assert!(alpha.cpus >= 1);
    assert_eq!(alpha.version, env!("CARGO_PKG_VERSION"));
    assert!(members.iter().any(|m| m.node == "gamma" && m.is_self));
    // The transport learned the addresses from gossip: no add_peer anywhere.
    a.node.spawn_named("echo", Echo).unwrap();
    let echo: ActorRef<Echo> = c
        .node
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    assert_eq!(echo.ask("hi".to_string()).await.unwrap(), "echo:hi");
    until("live actor counts are gossiped", WAIT, || {
        c.cluster
            .members()
            .iter()
            .any(|m| m.node == "alpha" && m.live_actors >= 2)
    })
    .await;
    for m in [a, b, c] {
        m.cluster.stop().await;
        m.node.shutdown().await;
    }
}

#[tokio::test]
async fn a_node_of_another_cluster_never_joins() {
    let a = member("m-one", "alpha", &[]).await;
    let b = member("m-one", "beta", &[a.gossip]).await;
    let other = member("m-other", "intruder", &[a.gossip]).await;
    until("alpha and beta see each other", WAIT, || {
        alive(&a.cluster) == ["alpha", "beta"]
    })
    .await;
    // Give the intruder many gossip rounds to get in.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(alive(&a.cluster), ["alpha", "beta"]);
    assert_eq!(alive(&b.cluster), ["alpha", "beta"]);
    assert_eq!(alive(&other.cluster), ["intruder"]);
    for m in [a, b, other] {
        m.cluster.stop().await;
        m.node.shutdown().await;
    }
}

#[tokio::test]
async fn a_silent_node_is_declared_dead_monitors_get_noconnection_and_it_rejoins() {
    let a = member("m-dead", "alpha", &[]).await;
    let b = member("m-dead", "beta", &[a.gossip]).await;
    until("both alive", WAIT, || {
        alive(&a.cluster) == ["alpha", "beta"]
    })
    .await;
    let mut events = a.cluster.subscribe();
    b.node.spawn_named("echo", Echo).unwrap();
    let log = Log::default();
    let observer = a
        .node
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    let remote = a.node.pid(&ActorId::parse("echo@beta").unwrap()).unwrap();
    observer.ask(Obs::Monitor(remote)).await.unwrap();
    // Beta stops gossiping without a word, its transport stays up: only the failure
    // detector can notice.
    b.cluster.stop().await;
    until("alpha declares beta dead", WAIT, || {
        a.cluster
            .members()
            .iter()
            .any(|m| m.node == "beta" && m.state == MemberState::Dead)
    })
    .await;
    until("the monitor fires", WAIT, || {
        log.entries() == ["down:echo@beta:noconnection"]
    })
    .await;
    let mut saw_left = false;
    while let Ok(event) = events.try_recv() {
        saw_left |= event == MembershipEvent::Left("beta".into());
    }
    assert!(saw_left);
    // Sends to a dead node fail at once.
    let echo: ActorRef<Echo> = a
        .node
        .actor_ref(&ActorId::parse("echo@beta").unwrap())
        .unwrap();
    assert_eq!(
        echo.ask("x".to_string()).await.unwrap_err().kind(),
        "noconnection"
    );
    // Beta comes back with the same name (a new incarnation) and is reachable again.
    b.node.shutdown().await;
    let b2 = member("m-dead", "beta", &[a.gossip]).await;
    b2.node.spawn_named("echo", Echo).unwrap();
    until("beta alive again", WAIT, || {
        alive(&a.cluster) == ["alpha", "beta"]
    })
    .await;
    assert_eq!(echo.ask("back".to_string()).await.unwrap(), "echo:back");
    for m in [a, b2] {
        m.cluster.stop().await;
        m.node.shutdown().await;
    }
}

#[tokio::test]
async fn a_graceful_leave_is_seen_as_leaving_then_gone() {
    let a = member("m-leave", "alpha", &[]).await;
    let b = member("m-leave", "beta", &[a.gossip]).await;
    until("both alive", WAIT, || {
        alive(&a.cluster) == ["alpha", "beta"]
    })
    .await;
    b.cluster.leave().await;
    b.node.shutdown().await;
    until("alpha sees beta gone", WAIT, || {
        a.cluster
            .members()
            .iter()
            .any(|m| m.node == "beta" && m.state != MemberState::Alive)
    })
    .await;
    assert_eq!(alive(&a.cluster), ["alpha"]);
    a.cluster.stop().await;
    a.node.shutdown().await;
}

#[cfg(feature = "fault-injection")]
#[tokio::test]
async fn a_partition_is_noconnection_and_heals_without_a_restart() {
    let a = member("m-part", "alpha", &[]).await;
    let b = member("m-part", "beta", &[a.gossip]).await;
    until("both alive", WAIT, || {
        alive(&a.cluster) == ["alpha", "beta"]
    })
    .await;
    b.node.spawn_named("echo", Echo).unwrap();
    let log = Log::default();
    let observer = a
        .node
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    let remote = a.node.pid(&ActorId::parse("echo@beta").unwrap()).unwrap();
    observer.ask(Obs::Monitor(remote)).await.unwrap();
    let echo: ActorRef<Echo> = a
        .node
        .actor_ref(&ActorId::parse("echo@beta").unwrap())
        .unwrap();
    assert_eq!(echo.ask("before".to_string()).await.unwrap(), "echo:before");
    a.cluster.set_partitioned("beta", true);
    b.cluster.set_partitioned("alpha", true);
    until("the monitor fires", WAIT, || {
        log.entries() == ["down:echo@beta:noconnection"]
    })
    .await;
    until("alpha declares beta dead", WAIT, || {
        alive(&a.cluster) == ["alpha"]
    })
    .await;
    assert_eq!(
        echo.ask("during".to_string()).await.unwrap_err().kind(),
        "noconnection"
    );
    a.cluster.set_partitioned("beta", false);
    b.cluster.set_partitioned("alpha", false);
    until("beta alive again", WAIT, || {
        alive(&a.cluster) == ["alpha", "beta"]
    })
    .await;
    let healed = plexspaces_test_util::eventually(WAIT, || {
        let echo = echo.clone();
        async move { echo.ask("after".to_string()).await.is_ok() }
    })
    .await;
    assert!(healed);
    assert_eq!(log.entries().len(), 1, "{:?}", log.entries());
    for m in [a, b] {
        m.cluster.stop().await;
        m.node.shutdown().await;
    }
}

#[tokio::test]
async fn names_and_groups_resolve_from_any_node_and_vanish_with_their_holder_or_node() {
    let a = member("m-reg", "alpha", &[]).await;
    let b = member("m-reg", "beta", &[a.gossip]).await;
    until("both alive", WAIT, || {
        alive(&b.cluster) == ["alpha", "beta"]
    })
    .await;
    let svc = a.node.spawn(Echo).unwrap();
    a.node.register("svc", &svc.pid()).unwrap();
    until("beta resolves svc", WAIT, || {
        b.cluster.whereis("svc").is_some()
    })
    .await;
    let found = b.cluster.whereis("svc").unwrap();
    assert_eq!(found.id(), svc.id());
    let typed: ActorRef<Echo> = found.typed().unwrap();
    assert_eq!(typed.ask("x".to_string()).await.unwrap(), "echo:x");
    assert_eq!(
        b.cluster.registered().get("svc").map(ToString::to_string),
        Some(svc.id().to_string())
    );

    let on_a = a.node.spawn(Echo).unwrap();
    let on_b = b.node.spawn(Echo).unwrap();
    a.node.groups().join("workers", &on_a.pid()).unwrap();
    b.node.groups().join("workers", &on_b.pid()).unwrap();
    for m in [&a, &b] {
        until("both workers seen", WAIT, || {
            m.cluster.group_members("workers").len() == 2
        })
        .await;
    }
    let env = plexspaces_core::Envelope::json("echo", &"hi").unwrap();
    assert_eq!(a.cluster.broadcast_envelope("workers", &env), 2);

    // The holder dies: the name is freed everywhere.
    svc.stop(plexspaces_core::ExitReason::Normal);
    until("svc freed on beta", WAIT, || {
        b.cluster.whereis("svc").is_none()
    })
    .await;

    // Beta's node is lost: its member leaves the group as seen from alpha.
    b.cluster.stop().await;
    b.node.shutdown().await;
    until("beta's worker gone", WAIT, || {
        a.cluster.group_members("workers").len() == 1
    })
    .await;
    assert_eq!(a.cluster.group_members("workers")[0].id(), on_a.id());
    a.cluster.stop().await;
    a.node.shutdown().await;
}
