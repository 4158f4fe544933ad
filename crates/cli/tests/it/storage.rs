//! The node's key-value store, blobs, channels and reminders through the real binary: the
//! `kv`, `blob` and `channel` subcommands, and a reminder that outlives a `kill -9`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::{stdout_json, Node};

/// A durable virtual actor (the built-in counter) sets a reminder; the node is killed with
/// SIGKILL before it is due and started again on the same data dir. The reminder fires on
/// the new process: it activates the actor (nothing else addressed it) and the actor's
/// state shows the reminder's amount, added exactly once.
#[tokio::test]
async fn a_reminder_fires_after_kill_9_and_restart_activating_the_actor() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start_in(dir.path(), &[]).await;
    let http = reqwest::Client::new();
    let invoke = |base: &str, msg: &str| {
        format!("{base}/api/v1/actors/default/counter/invoke?msg_type={msg}&key=alarm")
    };
    let r = http
        .post(invoke(&node.http, "remind"))
        .json(&json!({ "after_ms": 3000, "amount": 7, "name": "wake" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let r: Value = r.json().await.unwrap();
    assert_eq!(r["count"], 0, "not fired yet");

    node.child.kill().expect("SIGKILL");
    node.child.wait().unwrap();
    if let Some(reader) = node.reader.take() {
        let _ = reader.join();
    }
    drop(node);

    let node = Node::start_in(dir.path(), &[]).await;
    // Only the reminder addresses the actor: wait until it is active.
    let active = plexspaces_test_util::eventually(Duration::from_secs(30), || {
        let out = node.cli(&["actor", "list", "--output", "json"]);
        async move {
            let list = stdout_json(&out);
            list["actors"]
                .as_array()
                .is_some_and(|a| a.iter().any(|s| s["key"] == "alarm"))
        }
    })
    .await;
    assert!(active, "the reminder activated the counter");
    let counted = plexspaces_test_util::eventually(Duration::from_secs(10), || async {
        let r = http.post(invoke(&node.http, "get")).send().await.unwrap();
        r.json::<Value>().await.unwrap()["count"] == 7
    })
    .await;
    assert!(counted, "the reminder's amount was added");
    // once: the one-shot reminder is gone, the count stays
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r: Value = http
        .post(invoke(&node.http, "get"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["count"], 7);
    let (status, _) = node.terminate();
    assert!(status.success());
}

#[tokio::test]
async fn kv_blob_and_channel_subcommands() {
    let node = Node::start(&[]).await;
    let ok = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        stdout_json(&node.cli(&all))
    };
    assert_eq!(ok(&["kv", "put", "cfg/a", "1", "-n", "app"])["version"], 1);
    assert_eq!(ok(&["kv", "incr", "cfg/a", "41", "-n", "app"])["value"], 42);
    let got = ok(&["kv", "get", "cfg/a", "-n", "app"]);
    assert_eq!(
        (got["value"].as_str(), got["version"].as_u64()),
        (Some("42"), Some(2))
    );
    let out = node.cli(&["kv", "put", "cfg/a", "x", "-n", "app", "--if-version", "1"]);
    assert_eq!(out.status.code(), Some(1), "a stale compare-and-swap fails");
    assert_eq!(
        ok(&["kv", "list", "--prefix", "cfg/", "-n", "app"])["entries"][0]["key"],
        "cfg/a"
    );
    assert_eq!(ok(&["kv", "delete", "cfg/a", "-n", "app"])["deleted"], true);
    assert_eq!(
        node.cli(&["kv", "get", "cfg/a", "-n", "app"]).status.code(),
        Some(4)
    );
    assert_eq!(
        node.cli(&["kv", "get", "k", "-n", "bad ns"]).status.code(),
        Some(6)
    );

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.bin");
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(&src, &data).unwrap();
    let put = ok(&["blob", "put", "docs/in.bin", src.to_str().unwrap()]);
    assert_eq!(put["size"], data.len());
    let dst = dir.path().join("out.bin");
    let out = node.cli(&["blob", "get", "docs/in.bin", dst.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&dst).unwrap(), data);
    assert_eq!(
        ok(&["blob", "list", "--prefix", "docs/"])["blobs"][0]["size"],
        data.len()
    );
    assert_eq!(
        node.cli(&["blob", "get", "nope", "-"]).status.code(),
        Some(4)
    );

    assert!(
        ok(&["channel", "publish", "jobs", "resize", "--header", "k=v"])["message_id"].is_string()
    );
    let got = ok(&["channel", "receive", "jobs", "--ack", "--wait-ms", "2000"]);
    assert_eq!(
        (got["payload"].as_str(), got["headers"]["k"].as_str()),
        (Some("resize"), Some("v"))
    );
    assert_eq!(
        node.cli(&["channel", "receive", "jobs", "--wait-ms", "100"])
            .status
            .code(),
        Some(4),
        "acked: nothing left"
    );
    let (status, _) = node.terminate();
    assert!(status.success());
}
