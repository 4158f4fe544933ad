//! Runs the real `plexspaces` binary: `start` on free ports, the README curl sequence over
//! HTTP, the gRPC subcommands, exit codes, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

mod clock_jump;
mod cluster;
mod deactivation;
mod durable_retries;
mod fencing;
mod inbox;
#[cfg(feature = "otlp")]
mod otlp;
mod output_gate;
mod space;
mod storage;
mod vactors;
mod wasm;
mod workflow;

const BIN: &str = env!("CARGO_BIN_EXE_plexspaces");

struct Node {
    child: Child,
    http: String,
    grpc: String,
    /// Everything the node has written to stderr so far (read by a thread, so the node
    /// never blocks on a full pipe).
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The address logged on a `<what> api listening addr=...` line.
fn listening_addr(log: &str, what: &str) -> Option<String> {
    let line = log
        .lines()
        .find(|l| l.contains(&format!("{what} api listening")))?;
    let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
    Some(addr.trim_matches('"').to_owned())
}

impl Node {
    /// Starts the binary on ports the kernel picks (port 0), then reads the bound addresses
    /// from its log: picking a free port first and passing it races with other tests.
    async fn start(extra_env: &[(&str, &str)]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let mut node = Node::start_in(dir.path(), extra_env).await;
        node._dir = Some(dir);
        node
    }

    /// [`Node::start`] on a data dir the caller owns (two processes may share one).
    async fn start_in(data_dir: &std::path::Path, extra_env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "start",
            "--node-id",
            "cli-node",
            "--http-addr",
            "127.0.0.1:0",
            "--listen-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .env_remove("PLEXSPACES_DISABLE_AUTH")
        .env_remove("PLEXSPACES_JWT_SECRET")
        .env("PLEXSPACES_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("plexspaces starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let reader = {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            })
        };
        let addrs = || {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            Some((listening_addr(&log, "http")?, listening_addr(&log, "grpc")?))
        };
        let bound = plexspaces_test_util::eventually(Duration::from_secs(60), || {
            let found = addrs().is_some();
            async move { found }
        })
        .await;
        let (http, grpc) = match (bound, addrs()) {
            (true, Some(addrs)) => addrs,
            _ => panic!(
                "node did not come up:\n{}",
                log.lock().unwrap_or_else(|p| p.into_inner())
            ),
        };
        let node = Node {
            child,
            http: format!("http://{http}"),
            grpc: format!("http://{grpc}"),
            log,
            reader: Some(reader),
            _dir: None,
        };
        let health = format!("{}/health", node.http);
        let up = plexspaces_test_util::eventually(Duration::from_secs(30), || async {
            reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "node did not answer /health");
        node
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("PLEXSPACES_ENDPOINT", &self.grpc)
            .env_remove("PLEXSPACES_TOKEN")
            .output()
            .expect("cli runs")
    }

    /// SIGTERM, then the exit status and everything the node logged.
    fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner()).clone();
        (status, log)
    }
}

impl Drop for Node {
    /// A test that fails midway must not leave its node running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The JSON body of `GET url` (a transport error or a body that is not JSON fails the test).
async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// `POST url` with an increment of 1: the count the node acknowledged, or `None` when the
/// call did not complete with 200 and a JSON body (the node was killed under it).
async fn post_increment(client: &reqwest::Client, url: &str) -> Option<i64> {
    let resp = client
        .post(url)
        .body(r#"{"amount": 1}"#)
        .send()
        .await
        .ok()?;
    if resp.status().as_u16() != 200 {
        return None;
    }
    let body = resp.json::<Value>().await.ok()?;
    Some(body["count"].as_i64().expect("an acknowledged count"))
}

fn stdout_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[tokio::test]
async fn readme_sequence_against_the_real_binary_then_sigterm() {
    let node = Node::start(&[]).await;
    let client = reqwest::Client::new();
    // The README's curl sequence.
    let resp = client
        .post(format!(
            "{}/api/v1/actors/default/counter/invoke?msg_type=increment",
            node.http
        ))
        .body(r#"{"amount": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"count": 5}));
    let read = get_json(
        &client,
        &format!("{}/api/v1/actors/default/counter", node.http),
    )
    .await;
    assert_eq!(read, json!({"count": 5}));

    // The gRPC subcommands see the same actor.
    let out = node.cli(&[
        "invoke",
        "counter",
        "increment",
        "--data",
        r#"{"amount": 2}"#,
        "--output",
        "json",
    ]);
    assert_eq!(stdout_json(&out)["reply"], json!({"count": 7}));
    let out = node.cli(&["actor", "ask", "counter", "get"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"count\": 7"));
    let out = node.cli(&["actor", "list", "--output", "json"]);
    let actors = stdout_json(&out)["actors"].as_array().unwrap().clone();
    assert_eq!(actors.len(), 1);
    assert_eq!(actors[0]["actor_type"], "counter");
    let out = node.cli(&[
        "actor", "spawn", "counter", "--key", "k2", "--output", "json",
    ]);
    assert_eq!(stdout_json(&out)["activated"], true);
    let out = node.cli(&["actor", "tell", "counter", "increment", "--key", "k2"]);
    assert!(out.status.success());
    let out = node.cli(&[
        "actor", "stop", "counter", "--key", "k2", "--output", "json",
    ]);
    assert_eq!(stdout_json(&out)["stopped"], true);
    let out = node.cli(&["status", "--output", "json"]);
    let status = stdout_json(&out);
    assert_eq!(status["node_id"], "cli-node");
    assert_eq!(status["status"], "serving");
    let out = node.cli(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli-node"));

    // Exit codes that mean something.
    assert_eq!(
        node.cli(&["invoke", "nosuch", "get"]).status.code(),
        Some(4)
    );
    assert_eq!(
        node.cli(&["invoke", "counter", "explode"]).status.code(),
        Some(6)
    );
    assert_eq!(
        node.cli(&["invoke", "counter", "get", "--data", "{nope"])
            .status
            .code(),
        Some(6)
    );
    assert_eq!(node.cli(&["bogus-command"]).status.code(), Some(2));

    let (status, log) = node.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{log}");
    for line in [
        "backend=\"SQLite\"",
        "journal.db",
        "backend=\"axum\"",
        "backend=\"tonic\"",
        "SIGTERM",
        "node stopped",
    ] {
        assert!(log.contains(line), "{line} not logged:\n{log}");
    }
}

#[tokio::test]
async fn tokens_minted_by_the_cli_are_accepted_and_the_tenant_enforced() {
    let node = Node::start(&[("PLEXSPACES_JWT_SECRET", "cli-secret")]).await;
    let out = Command::new(BIN)
        .args([
            "token",
            "create",
            "--tenant",
            "acme",
            "--secret",
            "cli-secret",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let client = reqwest::Client::new();
    let url = |tenant: &str| format!("{}/api/v1/actors/{tenant}/default/counter", node.http);
    let ok = client
        .get(url("acme"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    let forbidden = client
        .get(url("globex"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status().as_u16(), 403);
    let anonymous = client.get(url("acme")).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    // The CLI without a token: unauthenticated, exit code 5; with it: fine.
    assert_eq!(node.cli(&["actor", "list"]).status.code(), Some(5));
    assert!(node
        .cli(&["actor", "list", "--token", &token])
        .status
        .success());
    let (status, log) = node.terminate();
    assert!(status.success());
    assert!(!log.contains("cli-secret"), "secret leaked into logs");
}

#[test]
fn unreachable_node_and_bad_config_have_their_own_exit_codes() {
    let port = plexspaces_test_util::free_port().unwrap();
    let out = Command::new(BIN)
        .args(["status", "--endpoint", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[http]\nadress = \"x\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["start", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `adress`"));
    let out = Command::new(BIN)
        .args(["start", "--print-config", "--http-addr", "127.0.0.1:9999"])
        .env("PLEXSPACES_JWT_SECRET", "topsecret")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.0.0.1:9999") && !text.contains("topsecret"),
        "{text}"
    );
}
