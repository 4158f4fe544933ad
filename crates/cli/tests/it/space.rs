//! `plexspaces space ...` against the real binary and a real node.

use std::process::{Command, Stdio};

use serde_json::json;

use super::{stdout_json, Node, BIN};

#[tokio::test]
async fn write_then_take_through_the_cli() {
    let node = Node::start(&[]).await;
    let out = node.cli(&[
        "space",
        "write",
        "jobs",
        r#"["job", 7]"#,
        "--output",
        "json",
    ]);
    let first = stdout_json(&out);
    assert!(first["id"].is_u64(), "{first}");
    let out = node.cli(&[
        "space",
        "write",
        "jobs",
        r#"["job", 8.5, {"bytes_hex": "00ff"}]"#,
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wrote #"));

    let out = node.cli(&[
        "space",
        "count",
        "jobs",
        r#"["job", "?int"]"#,
        "--output",
        "json",
    ]);
    assert_eq!(stdout_json(&out), json!({ "count": 1 }));
    let out = node.cli(&["space", "count", "jobs", r#"["job", "_", "_"]"#]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");

    // read leaves the tuple, take removes it
    let out = node.cli(&[
        "space",
        "read",
        "jobs",
        r#"["job", "?int"]"#,
        "--output",
        "json",
    ]);
    assert_eq!(stdout_json(&out), json!({ "tuple": ["job", 7] }));
    let out = node.cli(&[
        "space",
        "take",
        "jobs",
        r#"["job", "?int"]"#,
        "--output",
        "json",
    ]);
    assert_eq!(stdout_json(&out), json!({ "tuple": ["job", 7] }));
    let out = node.cli(&["space", "take", "jobs", r#"["job", "?float", "?bytes"]"#]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"["job",8.5,{"bytes_hex":"00ff"}]"#
    );

    // nothing left: --no-wait is "not found" (4), a blocking take times out (7)
    let out = node.cli(&["space", "take", "jobs", r#"["job", "?int"]"#, "--no-wait"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = node.cli(&[
        "space",
        "take",
        "jobs",
        r#"["job", "?int"]"#,
        "--timeout-ms",
        "100",
    ]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    // a bad template is invalid input (6), before and after reaching the node
    let out = node.cli(&["space", "count", "jobs", r#"["?integer"]"#]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    let out = node.cli(&["space", "count", "jobs", "[]"]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");

    // a blocking take in one process gets the tuple another process writes
    let taker = Command::new(BIN)
        .args([
            "space",
            "take",
            "work",
            r#"["result", "?int"]"#,
            "--timeout-ms",
            "30000",
        ])
        .env("PLEXSPACES_ENDPOINT", &node.grpc)
        .env_remove("PLEXSPACES_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("taker runs");
    let out = node.cli(&["space", "write", "work", r#"["result", 49]"#]);
    assert!(out.status.success());
    let taken = taker.wait_with_output().unwrap();
    assert!(taken.status.success(), "{taken:?}");
    assert_eq!(
        String::from_utf8_lossy(&taken.stdout).trim(),
        r#"["result",49]"#
    );

    let (status, log) = node.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{log}");
}
