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
