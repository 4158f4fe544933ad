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
