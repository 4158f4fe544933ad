//! A durable actor whose handler always fails (J13), through a real node: its message is
//! retried on the next calls after a backoff, then the actor is paused; the paused state and
//! its last error are visible over HTTP (`GET /api/v1/durable/...`, calls refused with 409
//! `actor_paused`), gRPC and the CLI (`plexspaces actor status`), and on the dashboard's
//! summary; `plexspaces actor resume` retries the message (applied once), `actor abandon`
//! drops it and the actor moves on.
//!
//! The node runs in this test process (a custom actor type needs Rust code), on real
//! sockets; the CLI is the real `plexspaces` binary talking gRPC to it.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::process::Command;

use plexspaces_core::{Actor, BoxError, Context, Envelope, Error, Result};
use plexspaces_node::config::AuthConfig;
use plexspaces_node::{ActorType, NodeConfig, NodeServer, ServerHandle};
use serde_json::{json, Value};

use crate::BIN;

/// `inc` and `pay` add one, `get` reads; while `failing` is set every `pay` fails.
struct Flaky {
    count: i64,
    failing: Arc<AtomicBool>,
    failed_runs: Arc<AtomicU32>,
}

enum FlakyMsg {
    Inc,
    Pay,
    Get,
}

impl Actor for Flaky {
    type Msg = FlakyMsg;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        msg: FlakyMsg,
        _ctx: &mut Context<Self>,
    ) -> std::result::Result<Option<i64>, BoxError> {
        match msg {
            FlakyMsg::Pay if self.failing.load(Ordering::SeqCst) => {
                let run = self.failed_runs.fetch_add(1, Ordering::SeqCst) + 1;
                return Err(format!("payment service down (run {run})").into());
            }
            FlakyMsg::Inc | FlakyMsg::Pay => self.count += 1,
            FlakyMsg::Get => {}
        }
        Ok(Some(self.count))
    }

    fn msg_name(msg: &FlakyMsg) -> &'static str {
        match msg {
            FlakyMsg::Inc => "inc",
            FlakyMsg::Pay => "pay",
            FlakyMsg::Get => "get",
        }
    }

    fn decode(env: &Envelope) -> Result<FlakyMsg> {
        match env.msg_type.as_str() {
            "inc" => Ok(FlakyMsg::Inc),
            "pay" => Ok(FlakyMsg::Pay),
            "get" => Ok(FlakyMsg::Get),
            other => Err(Error::UnknownMsgType {
                msg_type: other.to_owned(),
                actor_type: "flaky".into(),
            }),
        }
    }

    fn encode(msg: &FlakyMsg) -> Result<Envelope> {
        Envelope::json(Self::msg_name(msg), &json!({}))
    }

    fn encode_reply(request_type: &str, reply: &i64) -> Result<Envelope> {
        Envelope::json(request_type, &json!({ "count": reply }))
    }

    fn decode_reply(env: &Envelope) -> Result<i64> {
        let v: Value = env.decode_json()?;
        v["count"].as_i64().ok_or_else(|| Error::Decode {
            msg_type: env.msg_type.clone(),
            detail: "count".into(),
        })
    }

    fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        Ok(Some(self.count.to_string().into_bytes()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        self.count = String::from_utf8_lossy(snapshot).parse().unwrap_or(0);
        Ok(())
    }
}

struct Running {
    handle: ServerHandle,
    http: String,
    grpc: String,
    client: reqwest::Client,
    failing: Arc<AtomicBool>,
    failed_runs: Arc<AtomicU32>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Running {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::default();
        config.http.addr = "127.0.0.1:0".into();
        config.grpc.addr = "127.0.0.1:0".into();
        config.data_dir = dir.path().to_owned();
        config.auth = AuthConfig {
            disabled: true,
            ..AuthConfig::default()
        };
        config.journal.retry_max_attempts = 3;
        config.journal.retry_backoff_ms = 200;
        config.journal.retry_max_backoff_ms = 400;
        let failing = Arc::new(AtomicBool::new(false));
        let failed_runs = Arc::new(AtomicU32::new(0));
        let (f, r) = (failing.clone(), failed_runs.clone());
        let flaky = ActorType::virtual_actor("flaky", move |_| Flaky {
            count: 0,
            failing: f.clone(),
            failed_runs: r.clone(),
        })
        .durable();
        let handle = NodeServer::start(config, vec![flaky]).await.unwrap();
        Running {
            http: format!("http://{}", handle.http_addr()),
            grpc: format!("http://{}", handle.grpc_addr()),
            handle,
            client: reqwest::Client::new(),
            failing,
            failed_runs,
            _dir: dir,
        }
    }

    async fn send(&self, method: reqwest::Method, path: &str, key: Option<&str>) -> (u16, Value) {
        let mut req = self.client.request(method, format!("{}{path}", self.http));
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn call(&self, msg: &str, key: &str, idem: Option<&str>) -> (u16, Value) {
        let path = format!("/api/v1/actors/default/flaky/invoke?msg_type={msg}&key={key}");
        self.send(reqwest::Method::POST, &path, idem).await
    }

    async fn status(&self, key: &str) -> Value {
        let (code, body) = self
            .send(
                reqwest::Method::GET,
                &format!("/api/v1/durable/default/flaky/{key}"),
                None,
            )
            .await;
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Calls `get` until the actor is paused (each call past the backoff retries the failed
    /// message); returns the 409 body. Every answer on the way is a typed refusal.
    async fn call_until_paused(&self, key: &str) -> Value {
        let last = std::sync::Mutex::new(Value::Null);
        let paused = plexspaces_test_util::eventually(Duration::from_secs(30), || async {
            let (code, body) = self.call("get", key, None).await;
            let kind = body["code"].as_str().map(str::to_owned);
            match (code, kind.as_deref()) {
                (409, Some("actor_paused")) => {
                    *last.lock().unwrap() = body;
                    true
                }
                // backing off, or the retry that ran in this call's activation failed
                (503, Some("retry_later")) | (500, _) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    false
                }
                other => panic!("unexpected answer while retrying: {other:?} {body}"),
            }
        })
        .await;
        assert!(paused, "the actor never paused");
        last.into_inner().unwrap()
    }

    /// Runs the CLI without blocking the runtime (the node serves on it).
    async fn cli(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(BIN)
            .args(args)
            .env("PLEXSPACES_ENDPOINT", &self.grpc)
            .env_remove("PLEXSPACES_TOKEN")
            .env_remove("PLEXSPACES_OUTPUT")
            .output()
            .await
            .expect("cli runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let (code, out, err) = self.cli(&all).await;
        assert_eq!(code, Some(0), "{args:?}: {out} {err}");
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_durable_handler_pauses_visibly_and_resume_or_abandon_clear_it() {
    let n = Running::start().await;

    // Key a: one good message, then one that fails on every attempt.
    assert_eq!(n.call("inc", "a", None).await, (200, json!({"count": 1})));
    assert_eq!(n.status("a").await["state"], "ok");
    n.failing.store(true, Ordering::SeqCst);
    let (code, body) = n.call("pay", "a", Some("pay-2")).await;
    assert_eq!(
        (code, body["code"].as_str()),
        (500, Some("actor_failed")),
        "{body}"
    );
    let status = n.status("a").await;
    assert_eq!(status["state"], "retrying", "{status}");
    assert_eq!(status["failed_message"]["attempts"], 1, "{status}");
    assert_eq!(status["failed_message"]["idempotency_key"], "pay-2");
    assert!(status["failed_message"]["retry_at_ms"].is_u64(), "{status}");

    // Calls retry the message after each backoff until the budget (3) is used, then the
    // actor is paused: calls are refused with a typed 409 naming the last error.
    let paused = n.call_until_paused("a").await;
    let message = paused["message"].as_str().unwrap();
    assert!(message.contains("payment service down (run 3)"), "{paused}");
    assert_eq!(
        n.failed_runs.load(Ordering::SeqCst),
        3,
        "exactly the budget ran"
    );
    let status = n.status("a").await;
    assert_eq!(status["state"], "paused", "{status}");
    assert_eq!(status["max_attempts"], 3);
    assert_eq!(status["failed_message"]["attempts"], 3);
    assert!(status["failed_message"]["retry_at_ms"].is_null());
    assert!(status["failed_message"]["last_error"]
        .as_str()
        .unwrap()
        .contains("run 3"));
    // Still paused later: no retries run on their own.
    let (code, _) = n.call("get", "a", None).await;
    assert_eq!(code, 409);
    assert_eq!(n.failed_runs.load(Ordering::SeqCst), 3);

    // The dashboard lists it.
    let (code, summary) = n
        .send(reqwest::Method::GET, "/api/v1/dashboard/summary", None)
        .await;
    assert_eq!(code, 200);
    let listed = summary["durable_failures"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{summary}");
    assert_eq!(listed[0]["actor"], "default/default/flaky/a");
    assert_eq!(listed[0]["state"], "paused");

    // gRPC through the CLI: the same state and error.
    let cli_status = n.cli_json(&["actor", "status", "flaky", "-k", "a"]).await;
    assert_eq!(cli_status["state"], "paused", "{cli_status}");
    assert_eq!(cli_status["failed_message"]["attempts"], 3);
    assert!(cli_status["failed_message"]["last_error"]
        .as_str()
        .unwrap()
        .contains("run 3"));
    let (code, human, _) = n.cli(&["actor", "status", "flaky", "-k", "a"]).await;
    assert_eq!(code, Some(0));
    assert!(
        human.contains("paused") && human.contains("run 3"),
        "{human}"
    );

    // The cause is fixed; `actor resume` retries the message on the next call, once.
    n.failing.store(false, Ordering::SeqCst);
    let resumed = n.cli_json(&["actor", "resume", "flaky", "-k", "a"]).await;
    assert_eq!(resumed["resumed"], true);
    assert_eq!(resumed["before"]["state"], "paused");
    assert_eq!(n.call("get", "a", None).await, (200, json!({"count": 2})));
    // The original caller's retry with its key gets the recorded reply.
    assert_eq!(
        n.call("pay", "a", Some("pay-2")).await,
        (200, json!({"count": 2}))
    );
    assert_eq!(n.status("a").await["state"], "ok");
    let (_, summary) = n
        .send(reqwest::Method::GET, "/api/v1/dashboard/summary", None)
        .await;
    assert_eq!(summary["durable_failures"], json!([]), "{summary}");
    // Nothing left to resume: a typed 409 (HTTP) and a failed-precondition (CLI, exit 1).
    let (code, body) = n
        .send(
            reqwest::Method::POST,
            "/api/v1/durable/default/flaky/a/resume",
            None,
        )
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (409, Some("no_failed_message"))
    );
    let (code, _, err) = n.cli(&["actor", "resume", "flaky", "-k", "a"]).await;
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("failedprecondition"), "{err}");

    // Key b: paused the same way, then abandoned: the message is dropped, the actor moves
    // on (its state never counted it) and is not retried again.
    assert_eq!(n.call("inc", "b", None).await, (200, json!({"count": 1})));
    n.failing.store(true, Ordering::SeqCst);
    let runs_before = n.failed_runs.load(Ordering::SeqCst);
    let (code, _) = n.call("pay", "b", None).await;
    assert_eq!(code, 500);
    n.call_until_paused("b").await;
    assert_eq!(n.failed_runs.load(Ordering::SeqCst), runs_before + 3);
    let abandoned = n
        .cli_json(&[
            "actor",
            "abandon",
            "flaky",
            "-k",
            "b",
            "--reason",
            "refunded by hand",
        ])
        .await;
    assert_eq!(abandoned["abandoned"], true);
    assert_eq!(abandoned["before"]["failed_message"]["attempts"], 3);
    assert_eq!(n.call("get", "b", None).await, (200, json!({"count": 1})));
    assert_eq!(n.failed_runs.load(Ordering::SeqCst), runs_before + 3);
    assert_eq!(n.status("b").await["state"], "ok");

    // Bad input is a 4xx: a type that is not durable, an unknown type, a bad body.
    let (code, body) = n
        .send(reqwest::Method::GET, "/api/v1/durable/default/echo/x", None)
        .await;
    assert_eq!(
        (code, body["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (code, _) = n
        .send(reqwest::Method::GET, "/api/v1/durable/default/nope/x", None)
        .await;
    assert_eq!(code, 404);
    let resp = n
        .client
        .post(format!("{}/api/v1/durable/default/flaky/b/abandon", n.http))
        .body("{\"why\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let (code, _, _) = n.cli(&["actor", "status", "echo", "-k", "x"]).await;
    assert_eq!(code, Some(6), "not durable: invalid input");

    n.handle.shutdown().await;
}
