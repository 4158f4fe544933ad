use std::collections::HashSet;

use serde_json::json;

use crate::common::{eventually, send, Setup, TestNode};

#[tokio::test]
async fn activation_on_first_call_idle_deactivation_and_reactivation_with_state() {
    let n = TestNode::start(Setup {
        idle_ms: Some(150),
        ..Setup::default()
    })
    .await;
    let c = n.client.clone();
    let registry = n.handle.registry().clone();
    let key = registry
        .resolve("default", "default", "counter", "k1")
        .unwrap();
    assert!(
        registry.get(&key).is_none(),
        "nothing is active before the first call"
    );
    assert_eq!(
        send(
            c.post(n.url("/api/v1/actors/default/counter/invoke?msg_type=increment&key=k1"))
                .body(r#"{"amount": 4}"#)
        )
        .await,
        (200, json!({"count": 4}))
    );
    let first = registry
        .get(&key)
        .expect("activated by the first call")
        .pids()[0]
        .clone();
    // Idle past the timeout: deactivated (the actor terminated).
    assert!(eventually(|| async { registry.get(&key).is_none() }).await);
    assert!(!first.is_alive());
    // The next call reactivates it with its state.
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/default/counter?key=k1"))).await,
        (200, json!({"count": 4}))
    );
    let second = registry.get(&key).expect("reactivated").pids()[0].clone();
    assert_ne!(first, second);
    // The state came back through the durability facet's journal (SQLite by default).
    let journal = n.handle.journal();
    assert_eq!(journal.backend, "SQLite");
    let stream = plexspaces_node::stream_id(&key);
    assert!(journal.journal.next_seq(&stream).await.unwrap() > 1);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_calls_make_one_activation() {
    let n = TestNode::start(Setup::default()).await;
    let registry = n.handle.registry().clone();
    let key = registry.resolve("t", "ns", "counter", "race").unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let registry = registry.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let lease = registry.lease(&key).await.unwrap();
            let reply = lease
                .pid()
                .ask_envelope(
                    plexspaces_core::Envelope::json("increment", &json!({"amount": 1})).unwrap(),
                    std::time::Duration::from_secs(5),
                )
                .await
                .unwrap();
            (lease.pid().clone(), lease.activated, reply)
        }));
    }
    let mut pids = HashSet::new();
    let mut activated = 0;
    for t in tasks {
        let (pid, was_activated, _) = t.await.unwrap();
        pids.insert(pid.id().to_string());
        activated += usize::from(was_activated);
    }
    assert_eq!(pids.len(), 1, "one actor served every call");
    assert_eq!(activated, 1, "exactly one call activated it");
    assert_eq!(registry.live_count(), 1);
    let reply = send(n.client.get(n.url("/api/v1/actors/t/ns/counter?key=race"))).await;
    assert_eq!(reply, (200, json!({"count": 32})));
    n.handle.shutdown().await;
}

#[tokio::test]
async fn a_crashed_activation_is_replaced_on_the_next_call() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let (status, body) =
        send(c.post(n.url("/api/v1/actors/default/probe/invoke?msg_type=fail&key=x"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (500, Some("actor_failed")),
        "{body}"
    );
    let (status, body) =
        send(c.post(n.url("/api/v1/actors/default/probe/invoke?msg_type=ping&key=x"))).await;
    assert_eq!(status, 200, "{body}");
    n.handle.shutdown().await;
}

#[tokio::test]
async fn worker_pools_spread_requests_round_robin() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let mut ids = Vec::new();
    for _ in 0..6 {
        let (status, body) =
            send(c.post(n.url("/api/v1/actors/default/pool/invoke?msg_type=ping&key=ignored")))
                .await;
        assert_eq!(status, 200);
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 3, "{ids:?}");
    assert_eq!(ids[0], ids[3]);
    assert_eq!(ids[1], ids[4]);
    // Another tenant gets its own pool.
    let (_, body) =
        send(c.post(n.url("/api/v1/actors/other/default/pool/invoke?msg_type=ping"))).await;
    assert!(!distinct.contains(&body["id"].as_str().unwrap().to_owned()));
    n.handle.shutdown().await;
}

/// Increments `key` 5 times (checkpointing every 3 messages), restarts the node on the same
/// journal, and reads 5 back: snapshot + replay.
async fn restart_with_state(setup: impl Fn() -> Setup) -> TestNode {
    let n = TestNode::start(setup()).await;
    for _ in 0..5 {
        let (status, _) = send(
            n.client
                .post(n.url(
                    "/api/v1/actors/acme/default/counter/invoke?msg_type=increment&key=persist",
                ))
                .body(r#"{"amount": 1}"#),
        )
        .await;
        assert_eq!(status, 200);
    }
    let key = n
        .handle
        .registry()
        .resolve("acme", "default", "counter", "persist")
        .unwrap();
    let stream = plexspaces_node::stream_id(&key);
    let snapshot = n
        .handle
        .journal()
        .journal
        .latest_snapshot(&stream)
        .await
        .unwrap();
    assert!(snapshot.is_some(), "a checkpoint after 3 messages");
    n.handle.shutdown().await;
    drop(n);
    let n = TestNode::start(setup()).await;
    assert_eq!(
        send(
            n.client
                .get(n.url("/api/v1/actors/acme/default/counter?key=persist"))
        )
        .await,
        (200, json!({"count": 5}))
    );
    // Another tenant's counter of the same key is another stream.
    assert_eq!(
        send(
            n.client
                .get(n.url("/api/v1/actors/globex/default/counter?key=persist"))
        )
        .await,
        (200, json!({"count": 0}))
    );
    n
}

#[tokio::test]
async fn state_survives_a_node_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let n = restart_with_state(|| Setup {
        data_dir: Some(dir.path().to_owned()),
        checkpoint_every: Some(3),
        ..Setup::default()
    })
    .await;
    assert_eq!(n.handle.journal().backend, "SQLite");
    assert!(dir.path().join("journal.db").is_file());
    n.handle.shutdown().await;
}

#[tokio::test]
async fn state_survives_a_node_restart_on_postgres() {
    let schema = plexspaces_test_util::unique_name("node_journal");
    let n = restart_with_state(|| Setup {
        postgres: Some((plexspaces_test_util::postgres_database(), schema.clone())),
        checkpoint_every: Some(3),
        ..Setup::default()
    })
    .await;
    assert_eq!(n.handle.journal().backend, "PostgreSQL");
    n.handle.shutdown().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(
        &plexspaces_test_util::postgres_database(),
    )
    .await
    .unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_idempotency_key_runs_a_request_once() {
    let n = TestNode::start(Setup::default()).await;
    let url = n.url("/api/v1/actors/default/counter/invoke?msg_type=increment&key=idem");
    let first = send(
        n.client
            .post(&url)
            .header("Idempotency-Key", "k")
            .body(r#"{"amount": 3}"#),
    )
    .await;
    assert_eq!(first, (200, json!({"count": 3})));
    let again = send(
        n.client
            .post(&url)
            .header("Idempotency-Key", "k")
            .body(r#"{"amount": 3}"#),
    )
    .await;
    assert_eq!(again, first, "the duplicate gets the first reply");
    // Without the key (or with another) it runs again.
    assert_eq!(
        send(
            n.client
                .post(&url)
                .header("Idempotency-Key", "k2")
                .body(r#"{"amount": 3}"#)
        )
        .await,
        (200, json!({"count": 6}))
    );
    assert_eq!(
        send(
            n.client
                .get(n.url("/api/v1/actors/default/counter?key=idem"))
        )
        .await,
        (200, json!({"count": 6}))
    );
    // The key survives deactivation: the duplicate still gets the first reply.
    let key = n
        .handle
        .registry()
        .resolve("default", "default", "counter", "idem")
        .unwrap();
    assert!(n.handle.registry().deactivate(&key).await);
    let again = send(
        n.client
            .post(&url)
            .header("Idempotency-Key", "k")
            .body(r#"{"amount": 3}"#),
    )
    .await;
    assert_eq!(again, first);
    // A key that is not printable text is a 400.
    let (status, body) = send(n.client.post(&url).header(
        "Idempotency-Key",
        reqwest::header::HeaderValue::from_bytes(b"\xff").unwrap(),
    ))
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    n.handle.shutdown().await;
}
