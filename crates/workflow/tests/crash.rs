//! Real crash tests: `workflow-crash-child` runs a workflow on SQLite or PostgreSQL, hangs
//! right after a chosen history event is durable, is killed with SIGKILL (`Child::kill`),
//! and is restarted on the same database in recovery mode.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use plexspaces_journal::{Journal, PostgresJournal, PostgresOptions, SqliteJournal, SqliteOptions};
use plexspaces_workflow::{
    workflow_fn, EngineOptions, HistoryEvent, SqlWorkflowStore, WorkflowContext, WorkflowEngine,
    WorkflowKey, WorkflowStore,
};
use serde_json::{json, Value};

fn pg_url() -> String {
    plexspaces_test_util::postgres_database()
}

/// Storage for one test: a temp dir (SQLite files, effects file) and, for PostgreSQL, a
/// schema that is dropped afterwards.
struct Backend {
    spec: String,
    dir: tempfile::TempDir,
    schema: Option<String>,
}

impl Backend {
    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            spec: format!("sqlite:{}", dir.path().display()),
            dir,
            schema: None,
        }
    }

    fn postgres() -> Self {
        let schema = plexspaces_test_util::unique_name("wfcrash");
        Self {
            spec: format!("postgres:{schema}"),
            dir: tempfile::tempdir().unwrap(),
            schema: Some(schema),
        }
    }

    fn effects(&self) -> std::path::PathBuf {
        self.dir.path().join("effects")
    }

    /// The parent's own engine on the same storage: the client API (no workflow code).
    async fn client(&self) -> WorkflowEngine {
        let (journal, store): (Arc<dyn Journal>, Arc<dyn WorkflowStore>) = match &self.schema {
            None => (
                Arc::new(
                    SqliteJournal::open(SqliteOptions::new(self.dir.path().join("journal.db")))
                        .await
                        .unwrap(),
                ),
                Arc::new(
                    SqlWorkflowStore::open_sqlite(self.dir.path().join("workflows.db"))
                        .await
                        .unwrap(),
                ),
            ),
            Some(schema) => (
                Arc::new(
                    PostgresJournal::open(PostgresOptions::new(&pg_url()).with_schema(schema))
                        .await
                        .unwrap(),
                ),
                Arc::new(
                    SqlWorkflowStore::open_postgres(&pg_url(), schema)
                        .await
                        .unwrap(),
                ),
            ),
        };
        WorkflowEngine::new(None, journal, store, EngineOptions::default())
    }

    async fn drop_schema(&self) {
        if let Some(schema) = &self.schema {
            let pool = sqlx::PgPool::connect(&pg_url()).await.unwrap();
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

#[derive(Debug, Default)]
struct Run {
    result: Option<Value>,
    paused: Option<String>,
    fire_at_ms: Option<u64>,
}

/// Runs the child until it prints its result, or kills it with SIGKILL when it pauses.
fn run_child(backend: &Backend, mode: &str, id: &str, input: &str, pause: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_workflow-crash-child"));
    cmd.env("WF_BACKEND", &backend.spec)
        .env("WF_PG_URL", pg_url())
        .env("EFFECTS_FILE", backend.effects())
        .env("WF_MODE", mode)
        .env("WF_ID", id)
        .env("WF_INPUT", input)
        .env_remove("PAUSE_AFTER")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = pause {
        cmd.env("PAUSE_AFTER", p);
    }
    let mut child = cmd.spawn().expect("spawn crash child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut run = Run::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        if let Some(rest) = line.strip_prefix("RESULT ") {
            run.result = Some(serde_json::from_str(rest).expect("result json"));
        } else if let Some(rest) = line.strip_prefix("FIRE_AT ") {
            run.fire_at_ms = Some(rest.parse().expect("fire time"));
        } else if let Some(point) = line.strip_prefix("PAUSED ") {
            run.paused = Some(point.to_owned());
            child.kill().expect("kill -9 the child"); // SIGKILL on unix
            break;
        }
    }
    let status = child.wait().expect("wait for child");
    if run.paused.is_some() {
        assert!(!status.success(), "a killed child must not exit cleanly");
    } else {
        assert!(status.success(), "child failed: {status:?}");
        assert!(run.result.is_some(), "child ended without a result");
    }
    run
}

/// Executions per activity name (from the effects file), and the idempotency keys seen.
fn effects(path: &Path) -> (HashMap<String, u32>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let mut parts = line.split('\t');
        let name = parts.next().expect("activity name");
        *counts.entry(name.to_owned()).or_insert(0) += 1;
        keys.push(parts.next().expect("key").to_owned());
    }
    (counts, keys)
}

fn key(id: &str) -> WorkflowKey {
    WorkflowKey::new("crash", "tests", id)
}

async fn killed_between_activity_2_and_3(backend: Backend, reference: Backend) {
    let fault_free = run_child(&reference, "start:five", "order-5", "7", None);
    let expected = fault_free.result.clone().expect("reference result");
    assert_eq!(expected, json!([71, 72, 73, 74, 75]));

    let crashed = run_child(&backend, "start:five", "order-5", "7", Some("activity:a2"));
    assert_eq!(crashed.paused.as_deref(), Some("activity:a2"));
    let (counts, _) = effects(&backend.effects());
    assert_eq!(counts.get("a1"), Some(&1));
    assert_eq!(counts.get("a2"), Some(&1));
    assert_eq!(counts.get("a3"), None, "killed before activity 3 started");

    let recovered = run_child(&backend, "recover", "order-5", "null", None);
    assert_eq!(
        recovered.result,
        Some(expected),
        "same result as the fault-free run"
    );
    let (counts, keys) = effects(&backend.effects());
    for a in ["a1", "a2", "a3", "a4", "a5"] {
        assert_eq!(counts.get(a), Some(&1), "{a} ran exactly once");
    }
    let (_, reference_keys) = effects(&reference.effects());
    assert_eq!(keys, reference_keys, "idempotency keys are deterministic");
    backend.drop_schema().await;
    reference.drop_schema().await;
}

async fn killed_during_a_long_sleep(backend: Backend) {
    let crashed = run_child(&backend, "start:sleeper", "nap", "2500", Some("timer"));
    let fire_at = crashed.fire_at_ms.expect("timer start reported");
    let recovered = run_child(&backend, "recover", "nap", "null", None);
    let result = recovered.result.expect("result");
    let after = result["after_ms"].as_u64().expect("after time");
    assert!(
        after >= fire_at,
        "the timer fired early: {after} < {fire_at}"
    );
    let (counts, _) = effects(&backend.effects());
    assert_eq!(counts.get("before"), Some(&1));
    assert_eq!(counts.get("after"), Some(&1));
    let history = backend
        .client()
        .await
        .history(&key("nap"), None)
        .await
        .unwrap();
    let fired = history
        .iter()
        .filter(|e| matches!(e, HistoryEvent::TimerFired { .. }))
        .count();
    assert_eq!(fired, 1, "the timer fired once");
    assert!(
        history.iter().any(
            |e| matches!(e, HistoryEvent::TimerStarted { fire_at_ms, .. } if *fire_at_ms == fire_at)
        ),
        "the recovered run kept the recorded fire time"
    );
    backend.drop_schema().await;
}

async fn signal_sent_while_down_is_delivered_after_recovery(backend: Backend) {
    let crashed = run_child(
        &backend,
        "start:waiter",
        "wait",
        "null",
        Some("activity:prepare"),
    );
    assert_eq!(crashed.paused.as_deref(), Some("activity:prepare"));
    // The process is dead: the client API stores the signal.
    let client = backend.client().await;
    let payload = json!({ "approved_by": "ops", "n": 3 });
    client
        .signal(&key("wait"), "go", &payload, Some("sig-1"))
        .await
        .unwrap();
    drop(client);
    let recovered = run_child(&backend, "recover", "wait", "null", None);
    assert_eq!(recovered.result, Some(payload.clone()));
    let (counts, _) = effects(&backend.effects());
    assert_eq!(counts.get("prepare"), Some(&1));
    assert_eq!(counts.get("got"), Some(&1));
    backend.drop_schema().await;
}

/// Several signals, one of them sent twice with the same dedupe id, all while the process is
/// dead: after recovery they arrive in acceptance order and the duplicate is suppressed.
async fn signals_and_a_duplicate_sent_while_down_arrive_in_order_once(backend: Backend) {
    let crashed = run_child(
        &backend,
        "start:collector",
        "collect",
        "3",
        Some("activity:prepare"),
    );
    assert_eq!(crashed.paused.as_deref(), Some("activity:prepare"));
    let client = backend.client().await;
    let first = client
        .signal(&key("collect"), "item", &json!("a"), Some("s-a"))
        .await
        .unwrap();
    let second = client
        .signal(&key("collect"), "item", &json!("b"), Some("s-b"))
        .await
        .unwrap();
    let duplicate = client
        .signal(&key("collect"), "item", &json!("b-again"), Some("s-b"))
        .await
        .unwrap();
    assert_eq!(
        duplicate, second,
        "the duplicate is the already accepted signal"
    );
    let third = client
        .signal(&key("collect"), "item", &json!("c"), Some("s-c"))
        .await
        .unwrap();
    assert!(first < second && second < third, "acceptance order");
    drop(client);
    let recovered = run_child(&backend, "recover", "collect", "null", None);
    assert_eq!(recovered.result, Some(json!(["a", "b", "c"])));
    let (counts, _) = effects(&backend.effects());
    assert_eq!(counts.get("prepare"), Some(&1));
    backend.drop_schema().await;
}

/// kill -9 after an update was accepted (its `UpdateAccepted` durable), before its answer:
/// after recovery it completes once (its activity ran once, one accepted and one completed
/// event), and a caller that gave up re-attaches by the update id and gets the answer to the
/// original payload.
async fn update_killed_between_acceptance_and_answer_completes_once(backend: Backend) {
    let client = backend.client().await;
    client.register(
        workflow_fn("updater", |_ctx: WorkflowContext, _: ()| async move {
            Ok(Value::Null)
        })
        .with_update_validator("set", |_| Ok(())),
    );
    let client = Arc::new(client);
    let first_caller = {
        let client = client.clone();
        tokio::spawn(async move {
            while client.describe(&key("upd")).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            client
                .update(
                    &key("upd"),
                    "set",
                    &json!({ "x": 1 }),
                    "u-1",
                    Some(std::time::Duration::from_secs(120)),
                )
                .await
        })
    };
    let crashed = tokio::task::block_in_place(|| {
        run_child(&backend, "start:updater", "upd", "null", Some("update"))
    });
    assert_eq!(crashed.paused.as_deref(), Some("update"));
    let (counts, _) = effects(&backend.effects());
    assert_eq!(counts.get("apply"), None, "killed before the update's work");
    // the first caller gives up
    first_caller.abort();
    assert!(first_caller.await.unwrap_err().is_cancelled());

    // a caller re-attaches by update id (another payload: the recorded one counts), then
    // lets the workflow finish
    let reattached = {
        let client = client.clone();
        tokio::spawn(async move {
            let answer = client
                .update(
                    &key("upd"),
                    "set",
                    &json!({ "x": 2 }),
                    "u-1",
                    Some(std::time::Duration::from_secs(120)),
                )
                .await;
            client
                .signal(&key("upd"), "finish", &json!(true), None)
                .await
                .unwrap();
            answer
        })
    };
    let recovered =
        tokio::task::block_in_place(|| run_child(&backend, "recover", "upd", "null", None));
    let expected = json!({ "applied": { "x": 1 } });
    assert_eq!(reattached.await.unwrap().unwrap(), expected);
    assert_eq!(recovered.result, Some(expected));
    let (counts, _) = effects(&backend.effects());
    assert_eq!(counts.get("prepare"), Some(&1));
    assert_eq!(counts.get("apply"), Some(&1), "the update's work ran once");
    let history = client.history(&key("upd"), None).await.unwrap();
    let accepted: Vec<&str> = history
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::UpdateAccepted { update_id, .. } => Some(update_id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, ["u-1"], "recorded once");
    let completed = history
        .iter()
        .filter(|e| matches!(e, HistoryEvent::UpdateCompleted { .. }))
        .count();
    assert_eq!(completed, 1, "answered once");
    backend.drop_schema().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_update_killed_between_acceptance_and_answer_completes_once() {
    update_killed_between_acceptance_and_answer_completes_once(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_update_killed_between_acceptance_and_answer_completes_once() {
    update_killed_between_acceptance_and_answer_completes_once(Backend::postgres()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_signals_and_a_duplicate_sent_while_down_arrive_in_order_once() {
    signals_and_a_duplicate_sent_while_down_arrive_in_order_once(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_signals_and_a_duplicate_sent_while_down_arrive_in_order_once() {
    signals_and_a_duplicate_sent_while_down_arrive_in_order_once(Backend::postgres()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_killed_between_activity_2_and_3_completes_without_rerunning_them() {
    killed_between_activity_2_and_3(Backend::sqlite(), Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_killed_between_activity_2_and_3_completes_without_rerunning_them() {
    killed_between_activity_2_and_3(Backend::postgres(), Backend::postgres()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_timer_fires_once_after_a_kill_during_the_sleep() {
    killed_during_a_long_sleep(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_timer_fires_once_after_a_kill_during_the_sleep() {
    killed_during_a_long_sleep(Backend::postgres()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_signal_sent_while_down_is_delivered_after_recovery() {
    signal_sent_while_down_is_delivered_after_recovery(Backend::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_signal_sent_while_down_is_delivered_after_recovery() {
    signal_sent_while_down_is_delivered_after_recovery(Backend::postgres()).await;
}
