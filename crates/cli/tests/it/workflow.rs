//! `plexspaces workflow ...` against the real binary and a real node.

use std::time::Duration;

use serde_json::{json, Value};

use super::{stdout_json, Node};

fn exit_code(out: &std::process::Output) -> Option<i32> {
    out.status.code()
}

#[tokio::test]
async fn an_approval_from_start_to_result_through_the_cli() {
    let node = Node::start(&[]).await;
    let input = r#"{"subject": "cli", "require_comment": true}"#;
    let start = ["workflow", "start", "approval", "w1", "--input", input];
    let out = node.cli(&[&start[..], &["--output", "json"][..]].concat());
    let started = stdout_json(&out);
    assert_eq!(started["already_started"], false, "{started}");
    assert_eq!(started["key"]["workflow_id"], "w1");
    let out = node.cli(&start);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already exists"),
        "{out:?}"
    );

    let waiting = plexspaces_test_util::eventually(Duration::from_secs(10), || async {
        let out = node.cli(&["workflow", "query", "w1", "status", "--output", "json"]);
        out.status.success() && stdout_json(&out) == json!({"value": "awaiting_comment"})
    })
    .await;
    assert!(waiting, "the workflow waits for its comment");

    // A rejected update exits 6; an accepted one prints the answer, the same for its id.
    let out = node.cli(&["workflow", "update", "w1", "comment", "--data", r#""""#]);
    assert_eq!(exit_code(&out), Some(6), "{out:?}");
    let update = [
        "workflow",
        "update",
        "w1",
        "comment",
        "--data",
        r#""looks good""#,
        "--update-id",
        "c1",
        "--output",
        "json",
    ];
    let answer = stdout_json(&node.cli(&update));
    assert_eq!(
        answer,
        json!({"value": {"accepted": true, "comment": "looks good"}, "update_id": "c1"})
    );
    assert_eq!(stdout_json(&node.cli(&update)), answer);

    let out = node.cli(&[
        "workflow",
        "signal",
        "w1",
        "approve",
        "--data",
        r#"{"by": "cli"}"#,
        "--output",
        "json",
    ]);
    assert_eq!(stdout_json(&out), json!({"seq": 2}));
    let out = node.cli(&[
        "workflow",
        "result",
        "w1",
        "--wait-ms",
        "10000",
        "--output",
        "json",
    ]);
    let result = stdout_json(&out);
    assert_eq!(result["status"], "completed", "{result}");
    assert_eq!(result["result"]["approval"], json!({"by": "cli"}));
    assert_eq!(result["result"]["comment"], "looks good");

    let described = stdout_json(&node.cli(&["workflow", "describe", "w1", "--output", "json"]));
    assert_eq!(described["status"], "completed");
    assert_eq!(described["history_events"], 6);
    let history = stdout_json(&node.cli(&["workflow", "history", "w1", "--output", "json"]));
    assert_eq!(history["events"][0]["event"], "workflow_started");
    let listed = stdout_json(&node.cli(&[
        "workflow",
        "list",
        "--status",
        "completed",
        "--output",
        "json",
    ]));
    let ids: Vec<&Value> = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["key"]["workflow_id"])
        .collect();
    assert_eq!(ids, [&json!("w1")]);

    // Exit codes: closed 1, unknown 4, bad JSON 6, still running 7.
    let out = node.cli(&["workflow", "signal", "w1", "approve"]);
    assert_eq!(exit_code(&out), Some(1), "{out:?}");
    let out = node.cli(&["workflow", "describe", "nope"]);
    assert_eq!(exit_code(&out), Some(4), "{out:?}");
    let out = node.cli(&["workflow", "start", "countdown", "c1", "--input", "{nope"]);
    assert_eq!(exit_code(&out), Some(6), "{out:?}");
    let out = node.cli(&["workflow", "start", "countdown", "c1", "--input", "600000"]);
    assert!(out.status.success(), "{out:?}");
    let out = node.cli(&["workflow", "result", "c1", "--output", "json"]);
    assert_eq!(exit_code(&out), Some(7), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!({"status": "running"})
    );
    let out = node.cli(&["workflow", "cancel", "c1", "--reason", "enough"]);
    assert!(out.status.success(), "{out:?}");
    let out = node.cli(&[
        "workflow",
        "result",
        "c1",
        "--wait-ms",
        "10000",
        "--output",
        "json",
    ]);
    assert_eq!(exit_code(&out), Some(1), "{out:?}");
    assert_eq!(
        serde_json::from_slice::<Value>(&out.stdout).unwrap(),
        json!({"status": "cancelled", "failure": {"kind": "cancelled", "message": "enough"}})
    );
    let (status, log) = node.terminate();
    assert!(status.success(), "{log}");
    assert!(log.contains("workflows initialized"), "{log}");
}
