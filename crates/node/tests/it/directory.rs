//! Nodes sharing an activation directory (a SQLite file, as nodes on one host do) and a
//! PostgreSQL journal: one activation per key among them, and a drained node hands its
//! activations off with their state.

use plexspaces_test_util::{postgres_database, unique_name};
use serde_json::json;

use crate::common::{send, Setup, TestNode};

async fn node(name: &str, directory: &str, schema: &str) -> TestNode {
    TestNode::start(Setup {
        node_id: Some(name.into()),
        directory: Some(directory.into()),
        postgres: Some((postgres_database(), schema.into())),
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_sharing_a_directory_keep_one_activation_and_a_drain_hands_off_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let directory = format!("sqlite:{}", dir.path().join("directory.db").display());
    let schema = unique_name("vdir");
    let a = node("na", &directory, &schema).await;
    let b = node("nb", &directory, &schema).await;
    let inc = "/api/v1/actors/default/counter/invoke?msg_type=increment&key=shared";

    // Both nodes race for the first activation: exactly one wins, the other answers 503
    // naming the owner (no forwarding without a cluster).
    let (ra, rb) = tokio::join!(
        send(a.client.post(a.url(inc))),
        send(b.client.post(b.url(inc)))
    );
    let ok = [&ra, &rb].iter().filter(|r| r.0 == 200).count();
    assert_eq!(ok, 1, "one activation: {ra:?} {rb:?}");
    let (owner, other) = if ra.0 == 200 { (&a, &b) } else { (&b, &a) };
    let (owner_name, moved) = if ra.0 == 200 {
        ("na", &rb)
    } else {
        ("nb", &ra)
    };
    assert_eq!(moved.0, 503, "{moved:?}");
    assert!(moved.1.to_string().contains(owner_name), "{moved:?}");

    let registry = owner.handle.registry();
    let key = registry
        .resolve("default", "default", "counter", "shared")
        .unwrap();
    let binding = registry.directory().expect("a directory is set");
    let entry = binding
        .directory
        .lookup(&key.directory_key())
        .await
        .unwrap()
        .expect("the key is owned");
    assert_eq!(entry.node, owner_name);
    assert_eq!(
        registry.get(&key).and_then(|a| a.directory_epoch()),
        Some(entry.epoch)
    );
    assert!(other.handle.registry().get(&key).is_none());
    for _ in 0..4 {
        assert_eq!(send(owner.client.post(owner.url(inc))).await.0, 200);
    }

    // The owner drains (SIGTERM path): final snapshot, entry released; the other node
    // activates next with the whole count.
    owner.handle.shutdown().await;
    assert!(binding
        .directory
        .lookup(&key.directory_key())
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        send(other.client.post(other.url(inc))).await,
        (200, json!({"count": 6}))
    );
    let entry = binding
        .directory
        .lookup(&key.directory_key())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(entry.node, owner_name);
    other.handle.shutdown().await;
}

#[tokio::test]
async fn a_bad_directory_setting_is_a_config_error() {
    let mut config = plexspaces_node::NodeConfig::default();
    config.virtual_actors.directory = Some(plexspaces_node::Secret::new("redis://x"));
    let e = config.validate().unwrap_err();
    assert!(e.to_string().contains("virtual_actors.directory"), "{e}");
}

/// Placement per type from code (`NodeServerBuilder::placement`): two clustered nodes on a
/// shared directory pin `counter` to beta in code; a first call through alpha activates it
/// on beta, and the directory names beta. The config's placement wins over code.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_from_code_pins_a_type_and_the_config_overrides_it() {
    use plexspaces_cluster::placement::Placement;
    use plexspaces_node::config::ClusterConfig;
    use plexspaces_test_util::free_tcp_udp_port;

    let dir = tempfile::tempdir().unwrap();
    let directory = format!("sqlite:{}", dir.path().join("directory.db").display());
    let schema = unique_name("vplace");
    let name = unique_name("place");
    let (pa, pb) = (free_tcp_udp_port().unwrap(), free_tcp_udp_port().unwrap());
    let pinned = Placement::Pinned {
        node: "beta".into(),
    };
    let start = |node_id: &str, port: u16, peer: u16| {
        let cluster = ClusterConfig {
            name: Some(name.clone()),
            addr: format!("127.0.0.1:{port}"),
            seeds: vec![format!("127.0.0.1:{peer}")],
            gossip_interval_ms: 50,
            ..ClusterConfig::default()
        };
        TestNode::start(Setup {
            cluster: Some((node_id.to_owned(), cluster)),
            directory: Some(directory.clone()),
            postgres: Some((postgres_database(), schema.clone())),
            request_timeout_ms: Some(30_000),
            placement: vec![
                ("counter".into(), pinned.clone()),
                ("probe".into(), pinned.clone()),
            ],
            config_placement: vec![("probe".into(), Placement::PreferLocal)],
            ..Setup::default()
        })
    };
    let a = start("alpha", pa, pb).await;
    let b = start("beta", pb, pa).await;
    for n in [&a, &b] {
        let cluster = n.handle.cluster().expect("clustered");
        assert!(
            crate::common::eventually(|| async { cluster.alive() == ["alpha", "beta"] }).await,
            "{:?}",
            cluster.members()
        );
        assert_eq!(n.handle.placement("counter"), pinned, "from code");
        assert_eq!(
            n.handle.placement("probe"),
            Placement::PreferLocal,
            "the config wins over code"
        );
        assert_eq!(n.handle.placement("echo"), Placement::ConsistentHash);
    }

    for k in 0..8 {
        let url = format!("/api/v1/actors/default/counter/invoke?msg_type=increment&key=p{k}");
        assert_eq!(
            send(a.client.post(a.url(&url))).await,
            (200, json!({"count": 1}))
        );
        let key = a
            .handle
            .registry()
            .resolve("default", "default", "counter", &format!("p{k}"))
            .unwrap();
        assert!(
            b.handle.registry().get(&key).is_some(),
            "p{k} active on beta"
        );
        assert!(a.handle.registry().get(&key).is_none(), "p{k} not on alpha");
        let owner = a
            .handle
            .registry()
            .directory()
            .unwrap()
            .directory
            .lookup(&key.directory_key())
            .await
            .unwrap()
            .expect("owned");
        assert_eq!(owner.node, "beta");
        assert!(
            owner.journal_epoch.is_some(),
            "journal epoch bound to the claim"
        );
    }
    a.handle.shutdown().await;
    b.handle.shutdown().await;
}
