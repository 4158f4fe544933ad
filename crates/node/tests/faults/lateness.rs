//! Timer lateness as a metric (W2): the node is shut down across a durable workflow timer's
//! deadline and restarted on the same data dir; the timer fires once after the restart, and
//! `/metrics` reports its lateness (at least the time the node stayed down past the
//! deadline) in `plexspaces_workflow_timer_lateness_seconds`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::common::{eventually, send, Setup, TestNode};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `name_sum` and `name_count` of a histogram in a Prometheus text page.
fn histogram(page: &str, name: &str) -> (f64, u64) {
    let value = |suffix: &str| {
        page.lines()
            .find(|l| l.starts_with(&format!("{name}_{suffix} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count") as u64)
}

async fn metrics(n: &TestNode) -> String {
    n.client
        .get(n.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_timer_whose_deadline_passed_while_the_node_was_down_fires_late_and_reports_it() {
    const TIMER_MS: u64 = 5_000;
    const DOWN_PAST_DEADLINE_MS: u64 = 1_000;
    let dir = tempfile::tempdir().unwrap();
    let setup = || Setup {
        data_dir: Some(dir.path().to_owned()),
        ..Setup::default()
    };
    let n = TestNode::start(setup()).await;
    let page = metrics(&n).await;
    assert!(
        page.contains("plexspaces_workflow_timer_lateness_seconds"),
        "the metric is exported from the start"
    );
    assert_eq!(
        histogram(&page, "plexspaces_workflow_timer_lateness_seconds").1,
        0
    );
    let started_before = now_ms();
    let (status, body) = send(
        n.client
            .post(n.url("/api/v1/workflows/default"))
            .json(&json!({
                "workflow_type": "countdown",
                "workflow_id": "late",
                "input": TIMER_MS,
            })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let sleeping = eventually(|| async {
        send(
            n.client
                .post(n.url("/api/v1/workflows/default/late/queries/status")),
        )
        .await
            == (200, json!("sleeping"))
    })
    .await;
    assert!(sleeping, "the timer is pending");
    let started_after = now_ms();
    n.handle.shutdown().await;
    drop(n);
    assert!(
        now_ms() < started_before + TIMER_MS,
        "the node went down before the deadline (a loaded machine took too long: the test \
         would not cover the fault)"
    );

    // Down until well past the deadline (the fire time is at most started_after + TIMER_MS).
    let deadline_passed = started_after + TIMER_MS + DOWN_PAST_DEADLINE_MS;
    while now_ms() < deadline_passed {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let n = TestNode::start(setup()).await;
    let done = eventually(|| async {
        let (status, body) =
            send(n.client.get(n.url("/api/v1/workflows/default/late/result"))).await;
        status == 200 && body["result"] == json!({"slept_ms": TIMER_MS})
    })
    .await;
    assert!(
        done,
        "the timer fired after the restart and the workflow completed"
    );
    let (sum, count) = histogram(
        &metrics(&n).await,
        "plexspaces_workflow_timer_lateness_seconds",
    );
    assert_eq!(count, 1, "fired once");
    assert!(
        sum >= DOWN_PAST_DEADLINE_MS as f64 / 1000.0,
        "lateness {sum} s is at least the time the node stayed down past the deadline"
    );
    n.handle.shutdown().await;
}
