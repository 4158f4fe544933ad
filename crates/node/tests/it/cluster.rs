//! Two nodes with `[cluster]` in one process: membership on HTTP, gRPC, `/metrics` and the
//! dashboard; a call through one node for a virtual actor active on the other is answered
//! by the host (HTTP and gRPC, errors included); a pending forwarded call fails fast when
//! the host's connection is lost. Process-level tests (kill -9, restart, mTLS) are in the
//! cli's `tests/it/cluster.rs`.

use std::time::{Duration, Instant};

use plexspaces_node::config::ClusterConfig;
use plexspaces_proto::v1::actor_service_client::ActorServiceClient;
use plexspaces_proto::v1::cluster_service_client::ClusterServiceClient;
use plexspaces_proto::v1::{ActorAddress, AskRequest, ClusterMembersRequest};
use plexspaces_test_util::{free_tcp_udp_port, unique_name};
use serde_json::Value;

use crate::common::{eventually, send, Setup, TestNode};

async fn clustered(name: &str, node_id: &str, port: u16, seeds: Vec<String>) -> TestNode {
    let cluster = ClusterConfig {
        name: Some(name.to_owned()),
        addr: format!("127.0.0.1:{port}"),
        seeds,
        gossip_interval_ms: 50,
        labels: [("zone".to_owned(), node_id.to_owned())].into(),
        ..ClusterConfig::default()
    };
    TestNode::start(Setup {
        cluster: Some((node_id.to_owned(), cluster)),
        request_timeout_ms: Some(60_000),
        ..Setup::default()
    })
    .await
}

fn probe_url(n: &TestNode, msg_type: &str, key: &str) -> String {
    n.url(&format!(
        "/api/v1/actors/default/probe/invoke?msg_type={msg_type}&key={key}"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_any_node_reach_the_host_and_fail_fast_when_it_is_lost() {
    let name = unique_name("cl");
    let (pa, pb) = (free_tcp_udp_port().unwrap(), free_tcp_udp_port().unwrap());
    let a = clustered(&name, "alpha", pa, vec![format!("127.0.0.1:{pb}")]).await;
    let b = clustered(&name, "beta", pb, vec![format!("127.0.0.1:{pa}")]).await;
    for n in [&a, &b] {
        let cluster = n.handle.cluster().expect("clustered");
        assert!(
            eventually(|| async { cluster.alive() == ["alpha", "beta"] }).await,
            "{:?}",
            cluster.members()
        );
    }

    // Membership on HTTP, gRPC, /metrics and the dashboard.
    let (status, members) = send(b.client.get(b.url("/api/v1/cluster/members"))).await;
    assert_eq!(status, 200);
    assert_eq!(members["cluster_name"], name.as_str());
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    assert_eq!(members["members"][0]["labels"]["zone"], "alpha");
    assert_eq!(members["members"][1]["is_self"], true);
    let mut grpc = ClusterServiceClient::connect(b.grpc_endpoint())
        .await
        .unwrap();
    let r = grpc
        .members(ClusterMembersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(r.clustered);
    let states: Vec<(&str, &str)> = r
        .members
        .iter()
        .map(|m| (m.node.as_str(), m.state.as_str()))
        .collect();
    assert_eq!(states, [("alpha", "alive"), ("beta", "alive")]);
    assert!(r.members.iter().all(|m| m.last_heartbeat_ms > 0));
    let metrics = b.client.get(b.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("plexspaces_cluster_members{state=\"alive\"} 2"),
        "{metrics}"
    );
    let (_, summary) = send(b.client.get(b.url("/api/v1/dashboard/summary"))).await;
    assert_eq!(summary["cluster"]["members_by_state"]["alive"], 2);

    // Activate k1 on alpha; once beta knows its name, beta forwards to it (HTTP and gRPC).
    let (status, direct) = send(a.client.post(probe_url(&a, "ping", "k1"))).await;
    assert_eq!(status, 200, "{direct}");
    let host_id = direct["id"].as_str().unwrap().to_owned();
    assert!(host_id.ends_with("@alpha"), "{host_id}");
    let beta = b.handle.cluster().unwrap().clone();
    let actor_name = host_id.trim_end_matches("@alpha").to_owned();
    assert!(eventually(|| async { beta.whereis(&actor_name).is_some() }).await);
    let (status, via_b) = send(b.client.post(probe_url(&b, "ping", "k1"))).await;
    assert_eq!((status, &via_b), (200, &direct));
    let mut actors = ActorServiceClient::connect(b.grpc_endpoint())
        .await
        .unwrap();
    let reply = actors
        .ask(AskRequest {
            address: Some(ActorAddress {
                tenant: String::new(),
                namespace: "default".into(),
                actor_type: "probe".into(),
                key: "k1".into(),
            }),
            msg_type: "ping".into(),
            payload: Default::default(),
            content_type: "application/json".into(),
            timeout_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let reply: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(reply, direct);
    assert!(
        b.handle.registry().activations(None).is_empty(),
        "beta activated a copy"
    );
    // The host's error comes back with its status.
    let (direct_status, direct_err) = send(a.client.post(probe_url(&a, "nosuch", "k1"))).await;
    let (status, err) = send(b.client.post(probe_url(&b, "nosuch", "k1"))).await;
    assert_eq!(direct_status, 400, "{direct_err}");
    assert_eq!((status, &err), (direct_status, &direct_err));

    // A forwarded call waiting on alpha fails at once when alpha's connections drop.
    let pending = {
        let url = probe_url(&b, "block", "k1");
        let client = b.client.clone();
        tokio::spawn(async move { send(client.post(url)).await })
    };
    // Give the call time to reach alpha's actor, where it blocks.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!pending.is_finished());
    let cut = Instant::now();
    a.handle.cluster().unwrap().network().shutdown();
    let (status, body) = pending.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "noconnection", "{body}");
    // Far below the 60 s the call could have waited.
    assert!(
        cut.elapsed() < Duration::from_secs(30),
        "{:?}",
        cut.elapsed()
    );
    a.gate.add_permits(1);
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}

#[tokio::test]
async fn a_node_without_cluster_lists_only_itself() {
    let n = TestNode::start(Setup::default()).await;
    assert!(n.handle.cluster().is_none());
    let (status, members) = send(n.client.get(n.url("/api/v1/cluster/members"))).await;
    assert_eq!(status, 200);
    assert_eq!(members["clustered"], false);
    assert_eq!(members["cluster_name"], "");
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
    assert_eq!(members["members"][0]["is_self"], true);
    n.handle.shutdown().await;
}
