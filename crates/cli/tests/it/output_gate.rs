//! The output gate against `kill -9`: 50 HTTP clients increment one hot durable counter of
//! a real node process (SQLite journal, commits pipelined), recording every acknowledged
//! reply; the process is killed with SIGKILL mid-load and restarted on the same data dir.
//! Every acknowledged increment is in the recovered count (no reply left before its
//! commit) and none is applied twice (the count never exceeds what was sent).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::{post_increment, Node};

const CLIENTS: usize = 50;
/// Acknowledged increments to wait for before the kill (bounded: the clients stop at the
/// kill, and each request has its own timeout).
const ACKED_BEFORE_KILL: usize = 400;

fn increment_url(node: &Node) -> String {
    format!(
        "{}/api/v1/actors/default/counter/invoke?msg_type=increment&key=hot",
        node.http
    )
}

async fn count(node: &Node) -> i64 {
    let body: Value = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/actors/default/counter?key=hot",
            node.http
        ))
        .send()
        .await
        .expect("read the counter")
        .json()
        .await
        .expect("a JSON body");
    body["count"].as_i64().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_increment_survives_kill_9_and_none_is_applied_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start_in(dir.path(), &[]).await;
    let url = increment_url(&node);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
    let sent = Arc::new(AtomicU64::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (client, url) = (client.clone(), url.clone());
        let (acked, sent, killed) = (acked.clone(), sent.clone(), killed.clone());
        clients.spawn(async move {
            while !killed.load(Ordering::SeqCst) {
                sent.fetch_add(1, Ordering::SeqCst);
                let Some(count) = post_increment(&client, &url).await else {
                    break;
                };
                acked.lock().unwrap().push(count);
            }
        });
    }
    let loaded = plexspaces_test_util::eventually(Duration::from_secs(120), || {
        let n = acked.lock().unwrap().len();
        async move { n >= ACKED_BEFORE_KILL }
    })
    .await;
    assert!(
        loaded,
        "the node acknowledged {ACKED_BEFORE_KILL} increments"
    );
    // SIGKILL mid-load: commits are in flight, replies are held.
    node.child.kill().expect("kill -9 the node");
    node.child.wait().expect("reap the node");
    killed.store(true, Ordering::SeqCst);
    while clients.join_next().await.is_some() {}
    let mut acked = std::mem::take(&mut *acked.lock().unwrap());
    let sent = sent.load(Ordering::SeqCst) as i64;
    acked.sort_unstable();
    let distinct = acked.windows(2).all(|w| w[0] < w[1]);
    assert!(distinct, "two acknowledged replies carried the same count");
    let highest = *acked.last().expect("acknowledged replies");

    let restarted = Node::start_in(dir.path(), &[]).await;
    let recovered = count(&restarted).await;
    assert!(
        recovered >= highest,
        "an acknowledged increment was lost: count {recovered} after restart, but a reply \
         said {highest}"
    );
    assert!(
        recovered >= acked.len() as i64,
        "fewer increments ({recovered}) than acknowledgements ({})",
        acked.len()
    );
    assert!(
        recovered <= sent,
        "more increments ({recovered}) than requests sent ({sent}): one was applied twice"
    );
    // The recovered actor goes on from there.
    let resp = client
        .post(increment_url(&restarted))
        .body(r#"{"amount": 1}"#)
        .send()
        .await;
    let body: Value = resp.expect("increment").json().await.expect("json");
    assert_eq!(body["count"].as_i64(), Some(recovered + 1));
    let (status, _) = restarted.terminate();
    assert!(status.success());
}
