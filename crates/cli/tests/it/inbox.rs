//! Channel-backed mailboxes in the real binary: `[[channels.inboxes]]` feeds the built-in
//! (durable) counter from a queue; the node is stopped with SIGTERM mid-stream. Its graceful
//! shutdown finishes and acks the message in flight and gives the rest back, so after a
//! restart the counter ends at exactly the number of messages published: one lost message
//! would leave it short, one handled twice would put it over.

use std::time::Duration;

use serde_json::{json, Value};

use crate::Node;

const MESSAGES: u64 = 1000;

async fn count(http: &reqwest::Client, base: &str) -> u64 {
    let r = http
        .post(format!(
            "{base}/api/v1/actors/default/counter/invoke?msg_type=get&key=fed"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["count"]
        .as_u64()
        .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_fed_actor_stopped_with_sigterm_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A delivery not acked comes back after 5 s: a message handled but not acked would be
    // handled again (and counted twice) within the test.
    let plain = dir.path().join("plain.toml");
    std::fs::write(&plain, "[channels]\nvisibility_timeout_ms = 5000\n").unwrap();
    let fed = dir.path().join("inbox.toml");
    std::fs::write(
        &fed,
        r#"
[channels]
visibility_timeout_ms = 5000

[[channels.inboxes]]
actor_type = "counter"
key = "fed"
queue = "jobs"
batch = 8
"#,
    )
    .unwrap();
    let plain = plain.to_str().unwrap();
    let fed = fed.to_str().unwrap();
    let http = reqwest::Client::new();

    // 1. Queue the messages on a node without the inbox.
    let node = Node::start_in(dir.path(), &[("PLEXSPACES_CONFIG", plain)]).await;
    let publish = format!("{}/api/v1/channels/default/queues/jobs", node.http);
    let mut senders = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (http, publish) = (http.clone(), publish.clone());
        senders.spawn(async move {
            for i in (w..MESSAGES).step_by(16) {
                let r = http
                    .post(&publish)
                    .json(&json!({
                        "payload": r#"{"amount": 1}"#,
                        "headers": {"msg_type": "increment", "content_type": "application/json", "n": i.to_string()},
                    }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.expect("publisher");
    }
    let (status, _) = node.terminate();
    assert!(status.success());

    // 2. The inbox feeds the counter; SIGTERM as soon as it has started.
    let node = Node::start_in(dir.path(), &[("PLEXSPACES_CONFIG", fed)]).await;
    let started = plexspaces_test_util::eventually(Duration::from_secs(60), || async {
        count(&http, &node.http).await > 0
    })
    .await;
    assert!(started, "the inbox feeds the counter");
    let (status, log) = node.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("inboxes drained"), "{log}");

    // What the first run counted is durable; it stopped mid-stream.
    let node = Node::start_in(dir.path(), &[("PLEXSPACES_CONFIG", plain)]).await;
    let first = count(&http, &node.http).await;
    assert!(
        (1..MESSAGES).contains(&first),
        "SIGTERM landed mid-stream: {first} of {MESSAGES}"
    );
    let (status, _) = node.terminate();
    assert!(status.success());

    // 3. A restart with the inbox handles the rest.
    let node = Node::start_in(dir.path(), &[("PLEXSPACES_CONFIG", fed)]).await;
    let done = plexspaces_test_util::eventually(Duration::from_secs(180), || async {
        count(&http, &node.http).await >= MESSAGES
    })
    .await;
    assert!(done, "every message is handled after the restart");
    let (status, log) = node.terminate();
    assert!(status.success(), "{log}");

    // 4. Nothing is left in the queue (a delivery taken and not acked would be visible
    // again after the 5 s visibility timeout) and the count is exact.
    let node = Node::start_in(dir.path(), &[("PLEXSPACES_CONFIG", plain)]).await;
    let receive = format!("{}/api/v1/channels/default/queues/jobs/receive", node.http);
    for _ in 0..2 {
        let r: Value = http
            .post(&receive)
            .json(&json!({"consumer": "checker", "max": 100, "wait_ms": 5000}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(r["deliveries"], json!([]), "left in the queue: {r}");
    }
    let url = format!(
        "{}/api/v1/channels/default/queues/jobs/dead-letters",
        node.http
    );
    let dead = super::get_json(&http, &url).await;
    assert_eq!(dead["dead_letters"], json!([]), "{dead}");
    assert_eq!(count(&http, &node.http).await, MESSAGES);
    let (status, _) = node.terminate();
    assert!(status.success());
}
