//! Epoch fencing across processes: two `plexspaces` nodes on one journal (a shared SQLite
//! file, or one PostgreSQL schema) activate the same durable counter; the older activation
//! is fenced and none of its writes lands.

use serde_json::{json, Value};

use crate::Node;

const INCREMENT: &str = "/api/v1/actors/default/counter/invoke?msg_type=increment&key=fenced";

async fn increment(node: &Node) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{INCREMENT}", node.http))
        .body(r#"{"amount": 1}"#)
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("a JSON body"))
}

/// `start` starts one more node process on the shared journal.
async fn the_older_activation_is_fenced<F, Fut>(start: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Node>,
{
    let older = start().await;
    assert_eq!(increment(&older).await, (200, json!({"count": 1})));

    // A second process activates the same key: it recovers the count and takes a newer
    // epoch of the stream.
    let newer = start().await;
    assert_eq!(increment(&newer).await, (200, json!({"count": 2})));

    // The older process still holds its activation; its next write is refused.
    let (status, body) = increment(&older).await;
    assert!(
        status >= 400,
        "the fenced write was acknowledged: {status} {body}"
    );
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("fenced")),
        "{body}"
    );
    // Nothing of it landed: the newer activation continues from 2.
    assert_eq!(increment(&newer).await, (200, json!({"count": 3})));

    let (status, _) = older.terminate();
    assert!(status.success());
    let (status, _) = newer.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn two_processes_on_one_sqlite_journal() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("PLEXSPACES_DISABLE_AUTH", "1")];
    the_older_activation_is_fenced(|| Node::start_in(dir.path(), &env)).await;
}

#[tokio::test]
async fn two_processes_on_one_postgres_journal() {
    let url = plexspaces_test_util::postgres_database();
    let schema = plexspaces_test_util::unique_name("cli_fence");
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let next = std::sync::atomic::AtomicUsize::new(0);
    let env = [
        ("PLEXSPACES_DISABLE_AUTH", "1"),
        ("PLEXSPACES_JOURNAL_URL", url.as_str()),
        ("PLEXSPACES_JOURNAL_SCHEMA", schema.as_str()),
    ];
    the_older_activation_is_fenced(|| {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Node::start_in(dirs[i % 2].path(), &env)
    })
    .await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("connect to drop the schema");
    sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .execute(&mut conn)
        .await
        .expect("drop schema");
}
