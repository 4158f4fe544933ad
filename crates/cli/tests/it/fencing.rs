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

/// V6: a handoff with requests in flight. Eight clients keep incrementing the counter on
/// the older process (each request with its own idempotency key) when a second process on
/// the same SQLite journal activates it and takes a newer epoch. In-flight writes of the
/// older activation are refused with the fencing error, and no increment is applied twice:
/// every acknowledged count, from either process, is distinct, and the count the journal
/// ends with covers every acknowledged one and no more than were sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_with_requests_in_flight_fences_the_old_activation_and_applies_nothing_twice() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    const CLIENTS: usize = 8;
    const ACKED_BEFORE_HANDOFF: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let env = [("PLEXSPACES_DISABLE_AUTH", "1")];
    let older = Node::start_in(dir.path(), &env).await;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let fenced: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let url = format!("{}{INCREMENT}", older.http);
        let (client, acked, fenced, sent, stop) = (
            client.clone(),
            acked.clone(),
            fenced.clone(),
            sent.clone(),
            stop.clone(),
        );
        clients.spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                sent.fetch_add(1, Ordering::SeqCst);
                let Ok(resp) = client
                    .post(&url)
                    .header("Idempotency-Key", format!("older-{c}-{i}"))
                    .body(r#"{"amount": 1}"#)
                    .send()
                    .await
                else {
                    break;
                };
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                if status == 200 {
                    acked
                        .lock()
                        .unwrap()
                        .push(body["count"].as_i64().expect("a count"));
                } else {
                    // The first refusal ends this client (a retry would reactivate the key
                    // here and fence the newer process in turn).
                    fenced.lock().unwrap().push(body.to_string());
                    break;
                }
            }
        });
    }
    let loaded = plexspaces_test_util::eventually(std::time::Duration::from_secs(120), || {
        let n = acked.lock().unwrap().len();
        async move { n >= ACKED_BEFORE_HANDOFF }
    })
    .await;
    assert!(
        loaded,
        "the older process acknowledged {ACKED_BEFORE_HANDOFF} increments"
    );

    // The handoff, while the older process's clients keep writing.
    let newer = Node::start_in(dir.path(), &env).await;
    let (status, body) = increment(&newer).await;
    assert_eq!(status, 200, "{body}");
    let handoff_count = body["count"].as_i64().unwrap();
    sent.fetch_add(1, Ordering::SeqCst);
    let refused = plexspaces_test_util::eventually(std::time::Duration::from_secs(60), || {
        let n = fenced.lock().unwrap().len();
        async move { n > 0 }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = clients.join_next().await {
        done.expect("client task");
    }
    assert!(
        refused,
        "an in-flight write of the older activation was refused"
    );
    let fenced = fenced.lock().unwrap().clone();
    // The write that met the newer epoch fails with the fencing error; requests queued
    // behind it fail with the stopped actor.
    assert!(
        fenced.iter().any(|b| b.contains("fenced")),
        "the refused write names the fencing error: {fenced:?}"
    );

    let mut all = acked.lock().unwrap().clone();
    all.push(handoff_count);
    all.sort_unstable();
    assert!(
        all.windows(2).all(|w| w[0] < w[1]),
        "two acknowledged replies carried the same count: an increment applied twice"
    );
    // The older process is stopped; the newer one reads what the journal holds.
    let (status, _) = older.terminate();
    assert!(status.success());
    let resp = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/actors/default/counter?key=fenced",
            newer.http
        ))
        .send()
        .await
        .unwrap();
    let final_count = resp.json::<Value>().await.unwrap()["count"]
        .as_i64()
        .unwrap();
    let sent = sent.load(Ordering::SeqCst) as i64;
    assert!(
        final_count >= *all.last().unwrap() && final_count >= all.len() as i64,
        "an acknowledged increment was lost: {final_count} < {:?}",
        all.last()
    );
    assert!(
        final_count <= sent,
        "more increments ({final_count}) than requests sent ({sent}): one applied twice"
    );
    let (status, _) = newer.terminate();
    assert!(status.success());
}
