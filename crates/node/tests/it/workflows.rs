//! Workflows over the HTTP API: the built-in `approval` and `countdown` types, bad input,
//! tenancy, and a workflow that survives a node restart (SQLite and PostgreSQL).

use serde_json::{json, Value};

use crate::common::{eventually, send, token, Setup, TestNode};

impl TestNode {
    fn wf(&self, path: &str) -> String {
        self.url(&format!("/api/v1/workflows/{path}"))
    }

    async fn start_workflow(&self, ns: &str, ty: &str, id: &str, input: Value) -> (u16, Value) {
        send(self.client.post(self.wf(ns)).json(&json!({
            "workflow_type": ty,
            "workflow_id": id,
            "input": input,
        })))
        .await
    }

    /// Waits until query `status` of the workflow reads `want`.
    async fn status_becomes(&self, ns: &str, id: &str, want: &str) -> bool {
        let url = self.wf(&format!("{ns}/{id}/queries/status"));
        eventually(|| async { send(self.client.post(&url)).await == (200, json!(want)) }).await
    }
}

#[tokio::test]
async fn start_signal_query_and_result() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let (status, started) = n
        .start_workflow(
            "ops",
            "approval",
            "deploy-1",
            json!({"subject": "deploy v2"}),
        )
        .await;
    assert_eq!(status, 201, "{started}");
    assert_eq!(
        started,
        json!({
            "key": {"tenant": "default", "namespace": "ops", "workflow_id": "deploy-1"},
            "workflow_type": "approval",
            "run": 1,
            "status": "running",
            "already_started": false,
        })
    );
    // Starting the same id again starts nothing (whatever the input).
    let (status, again) = n
        .start_workflow("ops", "approval", "deploy-1", json!({"subject": "other"}))
        .await;
    assert_eq!((status, &again["already_started"]), (200, &json!(true)));

    assert!(
        n.status_becomes("ops", "deploy-1", "awaiting_approval")
            .await
    );
    assert_eq!(
        send(c.get(n.wf("ops/deploy-1/result"))).await,
        (202, json!({"status": "running"}))
    );
    let (status, described) = send(c.get(n.wf("ops/deploy-1"))).await;
    assert_eq!(status, 200);
    assert_eq!(described["status"], "running");
    assert_eq!(described["input"], json!({"subject": "deploy v2"}));
    assert_eq!(described["active_here"], true);

    let signal = n.wf("ops/deploy-1/signals/approve");
    assert_eq!(
        send(c.post(&signal).json(&json!({"by": "ada"}))).await,
        (202, json!({"seq": 1}))
    );
    let (status, result) = send(c.get(n.wf("ops/deploy-1/result?wait_ms=10000"))).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["status"], "completed");
    assert_eq!(result["result"]["approved"], true);
    assert_eq!(result["result"]["approval"], json!({"by": "ada"}));
    assert_eq!(result["result"]["subject"], "deploy v2");
    assert_eq!(
        send(c.post(n.wf("ops/deploy-1/queries/status"))).await,
        (200, json!("approved")),
        "a closed workflow answers queries from its last values"
    );

    let (status, history) = send(c.get(n.wf("ops/deploy-1/history"))).await;
    assert_eq!(status, 200);
    assert_eq!(history["run"], 1);
    let events: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "workflow_started",
            "activity_completed",
            "signal_received",
            "workflow_completed"
        ]
    );

    // A closed workflow takes no more signals, updates or cancel requests: 409.
    let (status, body) = send(c.post(&signal).json(&json!({}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("closed")),
        "{body}"
    );
    let (status, _) = send(c.post(n.wf("ops/deploy-1/cancel"))).await;
    assert_eq!(status, 409);

    // Listing by status.
    let (status, listed) = send(c.get(n.wf("ops?status=completed"))).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["key"]["workflow_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["deploy-1"]);
    let (_, running) = send(c.get(n.wf("ops?status=running&limit=10"))).await;
    assert_eq!(running, json!({"workflows": []}));
    let (_, other_ns) = send(c.get(n.wf("elsewhere"))).await;
    assert_eq!(other_ns, json!({"workflows": []}));
    n.handle.shutdown().await;
}

#[tokio::test]
async fn updates_are_validated_and_answered_once_per_id() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let (status, _) = n
        .start_workflow(
            "ops",
            "approval",
            "review",
            json!({"subject": "budget", "require_comment": true}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(n.status_becomes("ops", "review", "awaiting_comment").await);
    let update = n.wf("ops/review/updates/comment");
    // The validator rejects empty and non-string comments: 422, nothing recorded.
    for bad in [json!(""), json!("   "), json!(5)] {
        let (status, body) = send(c.post(&update).json(&bad)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("update_rejected")),
            "{body}"
        );
    }
    let first = send(
        c.post(&update)
            .header("Idempotency-Key", "u-1")
            .json(&json!("LGTM")),
    )
    .await;
    assert_eq!(first, (200, json!({"accepted": true, "comment": "LGTM"})));
    let again = send(
        c.post(&update)
            .header("Idempotency-Key", "u-1")
            .json(&json!("LGTM")),
    )
    .await;
    assert_eq!(again, first, "the same update id gets the same answer");
    assert_eq!(
        send(c.post(n.wf("ops/review/queries/comment"))).await,
        (200, json!("LGTM"))
    );
    assert!(n.status_becomes("ops", "review", "awaiting_approval").await);
    // An update nobody takes is not answered in time: 504, naming the update id the node
    // chose (also in the response's Idempotency-Key header) to collect the answer later.
    let late = c
        .post(n.wf("ops/review/updates/comment?wait_ms=100"))
        .json(&json!("late"))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status().as_u16(), 504);
    let id = late.headers()["idempotency-key"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(id.starts_with("update-"), "{id}");
    let body: Value = late.json().await.unwrap();
    assert_eq!(body["code"], "timeout", "{body}");
    assert!(body["message"].as_str().unwrap().contains(&id), "{body}");
    // A caller's key is echoed.
    let resp = c
        .post(n.wf("ops/review/updates/comment?wait_ms=0"))
        .header("Idempotency-Key", "mine")
        .json(&json!("later"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 504);
    assert_eq!(resp.headers()["idempotency-key"], "mine");

    let (status, _) = send(c.post(n.wf("ops/review/signals/approve"))).await;
    assert_eq!(status, 202);
    let (status, result) = send(c.get(n.wf("ops/review/result?wait_ms=10000"))).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["result"]["comment"], "LGTM");
    assert_eq!(result["result"]["approval"], Value::Null);
    let (_, history) = send(c.get(n.wf("ops/review/history"))).await;
    let accepted = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "update_accepted")
        .count();
    assert_eq!(accepted, 1, "the update was recorded once");
    n.handle.shutdown().await;
}

#[tokio::test]
async fn cancel_countdown_and_signal_dedupe() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let (status, _) = n
        .start_workflow("default", "countdown", "short", json!(50))
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        send(c.get(n.wf("default/short/result?wait_ms=10000"))).await,
        (
            200,
            json!({"status": "completed", "result": {"slept_ms": 50}})
        )
    );

    let (status, _) = n
        .start_workflow("default", "countdown", "long", json!(600_000))
        .await;
    assert_eq!(status, 201);
    assert!(n.status_becomes("default", "long", "sleeping").await);
    let (status, body) = send(
        c.post(n.wf("default/long/cancel"))
            .json(&json!({"reason": "no longer needed"})),
    )
    .await;
    assert_eq!((status, body), (202, json!({"accepted": true})));
    assert_eq!(
        send(c.get(n.wf("default/long/result?wait_ms=10000"))).await,
        (
            200,
            json!({
                "status": "cancelled",
                "failure": {"kind": "cancelled", "message": "no longer needed"}
            })
        )
    );
    assert_eq!(
        send(c.post(n.wf("default/long/queries/status"))).await,
        (200, json!("cancelled"))
    );
    let (_, listed) = send(c.get(n.wf("default?status=cancelled"))).await;
    assert_eq!(listed["workflows"][0]["key"]["workflow_id"], "long");
    assert_eq!(listed["workflows"].as_array().unwrap().len(), 1);

    // A signal's Idempotency-Key is its dedupe id: the same key is stored once.
    n.start_workflow("default", "approval", "dedupe", json!({"subject": "x"}))
        .await;
    let url = n.wf("default/dedupe/signals/note");
    let one = send(c.post(&url).header("Idempotency-Key", "n-1").json(&1)).await;
    let two = send(c.post(&url).header("Idempotency-Key", "n-1").json(&2)).await;
    let three = send(c.post(&url).json(&3)).await;
    assert_eq!(one, (202, json!({"seq": 1})));
    assert_eq!(two, one);
    assert_eq!(three, (202, json!({"seq": 2})));
    n.handle.shutdown().await;
}

#[tokio::test]
async fn bad_requests_are_4xx_with_a_json_error() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    n.start_workflow("ns", "approval", "w", json!({"subject": "s"}))
        .await;
    let long = "x".repeat(201);
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        // Unknown workflows, types and queries.
        (c.get(n.wf("ns/nope")), 404, "not_found"),
        (c.get(n.wf("ns/nope/result")), 404, "not_found"),
        (c.get(n.wf("ns/nope/history")), 404, "not_found"),
        (c.post(n.wf("ns/nope/signals/s")), 404, "not_found"),
        (c.post(n.wf("ns/nope/queries/q")), 404, "not_found"),
        (c.post(n.wf("ns/nope/updates/u")), 404, "not_found"),
        (c.post(n.wf("ns/nope/cancel")), 404, "not_found"),
        (c.post(n.wf("ns/w/queries/nope")), 404, "not_found"),
        (c.get(n.wf("ns/w/history?run=2")), 404, "not_found"),
        (
            c.post(n.wf("ns"))
                .json(&json!({"workflow_type": "nope", "workflow_id": "a"})),
            404,
            "unknown_workflow_type",
        ),
        // Bodies.
        (c.post(n.wf("ns")).body("{nope"), 400, "bad_request"),
        (c.post(n.wf("ns")), 400, "bad_request"),
        (c.post(n.wf("ns")).body("[]"), 400, "bad_request"),
        (
            c.post(n.wf("ns")).json(&json!({
                "workflow_type": "approval", "workflow_id": "a", "input": {"subject": "s"}, "extra": 1
            })),
            400,
            "bad_request",
        ),
        (
            c.post(n.wf("ns"))
                .json(&json!({"workflow_type": "approval", "input": {"subject": "s"}})),
            400,
            "bad_request",
        ),
        (
            c.post(n.wf("ns"))
                .json(&json!({"workflow_type": "approval", "workflow_id": "a", "input": 5})),
            400,
            "invalid_argument",
        ),
        (
            c.post(n.wf("ns")).json(&json!({
                "workflow_type": "approval", "workflow_id": "a", "input": {"subject": "s", "x": 1}
            })),
            400,
            "invalid_argument",
        ),
        (c.post(n.wf("ns/w/signals/s")).body("{nope"), 400, "bad_request"),
        (c.post(n.wf("ns/w/updates/u")).body("{nope"), 400, "bad_request"),
        (c.post(n.wf("ns/w/cancel")).body("{nope"), 400, "bad_request"),
        (
            c.post(n.wf("ns/w/cancel")).json(&json!({"why": "x"})),
            400,
            "bad_request",
        ),
        (
            c.post(n.wf("ns/w/cancel")).json(&json!({"reason": "a\nb"})),
            400,
            "bad_request",
        ),
        // Ids, names and parameters.
        (c.get(n.wf(&format!("ns/{long}"))), 400, "invalid_argument"),
        (c.get(n.wf(&format!("{long}/w"))), 400, "invalid_argument"),
        (c.get(n.wf(&long)), 400, "invalid_argument"),
        (c.get(n.wf("ns/a%01b")), 400, "invalid_argument"),
        (c.get(n.wf("ns/%FF")), 400, "bad_request"),
        (
            c.post(n.wf(&format!("ns/w/signals/{long}"))),
            400,
            "bad_request",
        ),
        (
            c.post(n.wf("ns/w/signals/s")).header("Idempotency-Key", ""),
            400,
            "bad_request",
        ),
        (c.get(n.wf("ns?status=sleeping")), 400, "invalid_argument"),
        (c.get(n.wf("ns?limit=0")), 400, "bad_request"),
        (c.get(n.wf("ns?limit=many")), 400, "bad_request"),
        (c.get(n.wf("ns?color=red")), 400, "bad_request"),
        (c.get(n.wf("ns/w/result?wait_ms=30001")), 400, "bad_request"),
        (c.get(n.wf("ns/w/result?wait_ms=-1")), 400, "bad_request"),
        (
            c.post(n.wf("ns/w/updates/u?wait_ms=99999")),
            400,
            "bad_request",
        ),
        (c.get(n.wf("ns/w/history?run=0")), 404, "not_found"),
    ];
    for (req, want_status, want_code) in cases {
        let what = req
            .try_clone()
            .and_then(|r| r.build().ok())
            .map(|r| format!("{} {}", r.method(), r.url()))
            .unwrap_or_default();
        let (status, body) = send(req).await;
        assert_eq!(status, want_status, "{what}: {body}");
        assert_eq!(body["code"], want_code, "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
    }
    // Nothing above disturbed the workflow.
    let (status, d) = send(c.get(n.wf("ns/w"))).await;
    assert_eq!((status, &d["status"]), (200, &json!("running")));
    n.handle.shutdown().await;
}

#[tokio::test]
async fn workflows_belong_to_the_tokens_tenant() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let c = &n.client;
    let acme = token("acme", 300);
    let globex = token("globex", 300);
    let start = json!({"workflow_type": "countdown", "workflow_id": "t", "input": 600_000});
    let (status, started) = send(c.post(n.wf("ns")).bearer_auth(&acme).json(&start)).await;
    assert_eq!(status, 201);
    assert_eq!(started["key"]["tenant"], "acme");
    // Another tenant does not see it, and its own id of the same name is another workflow.
    let (status, _) = send(c.get(n.wf("ns/t")).bearer_auth(&globex)).await;
    assert_eq!(status, 404);
    let (status, _) = send(c.post(n.wf("ns/t/cancel")).bearer_auth(&globex)).await;
    assert_eq!(status, 404);
    let (status, _) = send(c.post(n.wf("ns")).bearer_auth(&globex).json(&start)).await;
    assert_eq!(status, 201);
    let (_, listed) = send(c.get(n.wf("ns")).bearer_auth(&acme)).await;
    assert_eq!(listed["workflows"].as_array().unwrap().len(), 1);
    // No token: 401.
    let (status, body) = send(c.get(n.wf("ns/t"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    n.handle.shutdown().await;
}

/// Starts an approval, stops the node while it waits for its signal, starts a new node on
/// the same storage, signals it there and checks that it completes with its first run's
/// state (the request activity ran once).
async fn survives_a_restart(setup: impl Fn() -> Setup) -> TestNode {
    let n = TestNode::start(setup()).await;
    let (status, _) = n
        .start_workflow(
            "ops",
            "approval",
            "restart",
            json!({"subject": "across restarts"}),
        )
        .await;
    assert_eq!(status, 201);
    assert!(
        n.status_becomes("ops", "restart", "awaiting_approval")
            .await
    );
    let (_, before) = send(n.client.get(n.wf("ops/restart/history"))).await;
    n.handle.shutdown().await;
    drop(n);

    let n = TestNode::start(setup()).await;
    let (status, d) = send(n.client.get(n.wf("ops/restart"))).await;
    assert_eq!((status, &d["status"]), (200, &json!("running")), "{d}");
    assert!(
        n.status_becomes("ops", "restart", "awaiting_approval")
            .await,
        "recovered by the new node"
    );
    let (status, _) = send(
        n.client
            .post(n.wf("ops/restart/signals/approve"))
            .json(&json!("after restart")),
    )
    .await;
    assert_eq!(status, 202);
    let (status, result) = send(n.client.get(n.wf("ops/restart/result?wait_ms=10000"))).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["result"]["approval"], "after restart");
    assert_eq!(result["result"]["subject"], "across restarts");
    let (_, after) = send(n.client.get(n.wf("ops/restart/history"))).await;
    let events = after["events"].as_array().unwrap();
    assert_eq!(
        &events[..2],
        &before["events"].as_array().unwrap()[..2],
        "the first run's start and activity were replayed, not run again"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "activity_completed")
            .count(),
        1
    );
    n
}

#[tokio::test]
async fn a_workflow_survives_a_node_restart_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let n = survives_a_restart(|| Setup {
        data_dir: Some(dir.path().to_owned()),
        ..Setup::default()
    })
    .await;
    assert!(dir.path().join("workflows.db").is_file());
    n.handle.shutdown().await;
}

#[tokio::test]
async fn a_workflow_survives_a_node_restart_on_postgres() {
    let schema = plexspaces_test_util::unique_name("node_workflows");
    let n = survives_a_restart(|| Setup {
        postgres: Some((plexspaces_test_util::postgres_database(), schema.clone())),
        ..Setup::default()
    })
    .await;
    n.handle.shutdown().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(
        &plexspaces_test_util::postgres_database(),
    )
    .await
    .unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn library_workflow_types_are_registered_before_serving() {
    use plexspaces_workflow::{workflow_fn, WorkflowContext};
    let dir = tempfile::tempdir().unwrap();
    let mut config = plexspaces_node::NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.auth.disabled = true;
    config.data_dir = dir.path().to_owned();
    let handle = plexspaces_node::NodeServer::builder(config)
        .workflow(workflow_fn(
            "double",
            |_ctx: WorkflowContext, n: i64| async move { Ok(n.saturating_mul(2)) },
        ))
        .start()
        .await
        .unwrap();
    let types: Vec<String> = handle
        .workflows()
        .workflow_types()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(types, ["approval", "countdown", "double"]);
    let base = format!("http://{}/api/v1/workflows/default", handle.http_addr());
    let c = reqwest::Client::new();
    let (status, _) = send(
        c.post(&base)
            .json(&json!({"workflow_type": "double", "workflow_id": "d", "input": 21})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        send(c.get(format!("{base}/d/result?wait_ms=10000"))).await,
        (200, json!({"status": "completed", "result": 42}))
    );
    handle.shutdown().await;
}
