//! The same idempotency key sent 50 times concurrently over HTTP, then again after
//! completion and after the actor was deactivated: one execution, identical answers.

use serde_json::json;

use crate::common::{send, Setup, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_with_one_key_over_http_run_once() {
    let n = TestNode::start(Setup::default()).await;
    let url = n.url("/api/v1/actors/default/counter/invoke?msg_type=increment&key=idem50");
    let increment = || {
        n.client
            .post(&url)
            .header("Idempotency-Key", "same")
            .body(r#"{"amount": 3}"#)
    };
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..50 {
        calls.spawn(send(increment()));
    }
    let mut answers = Vec::new();
    while let Some(answer) = calls.join_next().await {
        answers.push(answer.expect("request task"));
    }
    assert_eq!(answers.len(), 50, "every request was answered");
    for a in &answers {
        assert_eq!(a, &(200, json!({"count": 3})), "one execution, same answer");
    }
    // after completion, and after the activation is gone, the key still answers the same
    let again = send(increment()).await;
    assert_eq!(again, (200, json!({"count": 3})));
    let key = n
        .handle
        .registry()
        .resolve("default", "default", "counter", "idem50")
        .expect("resolve");
    assert!(n.handle.registry().deactivate(&key).await);
    let after_deactivation = send(increment()).await;
    assert_eq!(after_deactivation, (200, json!({"count": 3})));
    assert_eq!(
        send(
            n.client
                .get(n.url("/api/v1/actors/default/counter?key=idem50"))
        )
        .await,
        (200, json!({"count": 3})),
        "the counter moved once"
    );
    n.handle.shutdown().await;
}
