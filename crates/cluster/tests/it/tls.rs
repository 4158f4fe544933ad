//! mTLS between nodes: certificates from the cluster's CA are accepted, others refused.

use std::time::Duration;

use plexspaces_cluster::tls::DevCa;
use plexspaces_cluster::NetworkOptions;
use plexspaces_core::{ActorId, ActorRef};

use crate::common::{tcp_node_with, until, Echo};

#[tokio::test]
async fn nodes_with_certificates_from_the_cluster_ca_talk() {
    let ca = DevCa::generate("test ca").unwrap();
    let (alpha, a_net) =
        tcp_node_with(NetworkOptions::new("tls", "alpha").tls(ca.issue("alpha").unwrap())).await;
    let (beta, b_net) =
        tcp_node_with(NetworkOptions::new("tls", "beta").tls(ca.issue("beta").unwrap())).await;
    b_net.add_peer("alpha", a_net.local_addr());
    alpha.spawn_named("echo", Echo).unwrap();
    let echo: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    assert_eq!(echo.ask("secret".to_string()).await.unwrap(), "echo:secret");
    assert_eq!(a_net.stats().refused, 0);
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let ca = DevCa::generate("cluster ca").unwrap();
    let rogue = DevCa::generate("rogue ca").unwrap();
    let (alpha, a_net) =
        tcp_node_with(NetworkOptions::new("tls2", "alpha").tls(ca.issue("alpha").unwrap())).await;
    // Beta trusts the cluster CA but presents a certificate the rogue CA signed.
    let mut forged = rogue.issue("beta").unwrap();
    forged.ca_pem = ca.ca_pem();
    let (beta, b_net) = tcp_node_with(NetworkOptions::new("tls2", "beta").tls(forged)).await;
    b_net.add_peer("alpha", a_net.local_addr());
    alpha.spawn_named("echo", Echo).unwrap();
    let echo: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    let err = echo.ask("secret".to_string()).await.unwrap_err();
    assert_eq!(err.kind(), "noconnection", "{err:?}");
    until(
        "alpha logs and counts the refusal",
        Duration::from_secs(10),
        || a_net.stats().refused >= 1,
    )
    .await;
    assert_eq!(a_net.stats().frames_received, 0);
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_dialer_refuses_a_server_whose_certificate_another_ca_signed() {
    let ca = DevCa::generate("cluster ca").unwrap();
    let rogue = DevCa::generate("rogue ca").unwrap();
    let (alpha, a_net) =
        tcp_node_with(NetworkOptions::new("tls3", "alpha").tls(rogue.issue("alpha").unwrap()))
            .await;
    let (beta, b_net) =
        tcp_node_with(NetworkOptions::new("tls3", "beta").tls(ca.issue("beta").unwrap())).await;
    b_net.add_peer("alpha", a_net.local_addr());
    alpha.spawn_named("echo", Echo).unwrap();
    let echo: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    assert_eq!(
        echo.ask("secret".to_string()).await.unwrap_err().kind(),
        "noconnection"
    );
    assert_eq!(a_net.stats().frames_received, 0);
    alpha.shutdown().await;
    beta.shutdown().await;
}

/// A cluster member with mTLS; gossips on its transport's port when `shared`, else on a port
/// of its own.
async fn tls_member(
    cluster: &str,
    name: &str,
    tls: plexspaces_cluster::tls::TlsOptions,
    seeds: &[std::net::SocketAddr],
    shared: bool,
) -> (
    plexspaces_core::Node,
    plexspaces_cluster::ClusterHandle,
    std::net::SocketAddr,
) {
    let (node, network) = tcp_node_with(NetworkOptions::new(cluster, name).tls(tls)).await;
    let gossip = if shared {
        network.local_addr()
    } else {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        socket.local_addr().expect("addr")
    };
    let options = plexspaces_cluster::ClusterOptions::new(gossip)
        .seeds(seeds.iter().map(|s| s.to_string()).collect())
        .gossip_interval(Duration::from_millis(100));
    let handle = plexspaces_cluster::Cluster::start(options, &node, network)
        .await
        .expect("cluster starts");
    (node, handle, gossip)
}

async fn untrusted_node_never_becomes_a_member(cluster: &str, shared: bool) {
    let ca = DevCa::generate("cluster ca").unwrap();
    let rogue_ca = DevCa::generate("rogue ca").unwrap();
    let (alpha, a, a_gossip) =
        tls_member(cluster, "alpha", ca.issue("alpha").unwrap(), &[], shared).await;
    // gamma knows the cluster name and alpha's address but its certificate is another CA's.
    let (gamma, c, _) = tls_member(
        cluster,
        "gamma",
        rogue_ca.issue("gamma").unwrap(),
        &[a_gossip],
        shared,
    )
    .await;
    // beta, started after gamma in the same way with the cluster's CA, joins: the way in
    // works, so gamma's absence is its certificate's doing.
    let (beta, b, _) = tls_member(
        cluster,
        "beta",
        ca.issue("beta").unwrap(),
        &[a_gossip],
        shared,
    )
    .await;
    let trusted = vec!["alpha".to_string(), "beta".to_string()];
    until(
        "alpha and beta see each other",
        Duration::from_secs(15),
        || a.alive() == trusted && b.alive() == trusted,
    )
    .await;
    // Many gossip rounds later gamma is still in nobody's view, in no state, and sees only
    // itself.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for (name, handle) in [("alpha", &a), ("beta", &b)] {
        let members: Vec<String> = handle.members().into_iter().map(|m| m.node).collect();
        assert!(
            !members.contains(&"gamma".to_string()),
            "{name} lists gamma: {members:?}"
        );
    }
    assert_eq!(c.alive(), vec!["gamma".to_string()]);
    for (node, handle) in [(gamma, c), (beta, b), (alpha, a)] {
        handle.stop().await;
        node.shutdown().await;
    }
}

#[tokio::test]
async fn gossip_over_mtls_keeps_an_untrusted_node_out_on_its_own_port() {
    untrusted_node_never_becomes_a_member("tls-gossip", false).await;
}

#[tokio::test]
async fn gossip_over_mtls_keeps_an_untrusted_node_out_on_the_transport_port() {
    untrusted_node_never_becomes_a_member("tls-gossip-shared", true).await;
}
