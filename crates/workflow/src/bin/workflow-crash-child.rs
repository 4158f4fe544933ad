//! Crash-test child: a workflow engine on SQLite or PostgreSQL that runs one of three
//! workflows and can hang at an exact history event so the parent test can `kill -9` it.
//!
//! Environment:
//! - `WF_BACKEND`: `sqlite:<dir>` or `postgres:<schema>` (URL from `WF_PG_URL`, default
//!   `postgres://postgres@127.0.0.1:5432/test`)
//! - `EFFECTS_FILE`: every activity execution appends `<activity>\t<idempotency key>\t<detail>`
//! - `WF_MODE`: `start:<workflow type>` (start `WF_ID` with input `WF_INPUT`, a JSON value)
//!   or `recover` (resume what is unfinished)
//! - `WF_ID`: the workflow id
//! - `PAUSE_AFTER`: hang after this history event is durable, printing `PAUSED <what>`:
//!   `activity:<name>` (after its completion), `timer` (after the timer started) or
//!   `update` (after an update was accepted, before its answer)
//!
//! Workflows:
//! - `five`: activities `a1`..`a5`, each returning `input * 10 + i`; result: their list.
//! - `sleeper`: activity `before`, a durable sleep of `input` ms, activity `after` (which
//!   records the time it ran); result: `{ "after_ms" }`. The timer's fire time is printed
//!   as `FIRE_AT <ms>` when it starts.
//! - `waiter`: activity `prepare`, then waits for signal `go`, then activity `got`; result:
//!   the signal's payload.
//! - `collector`: activity `prepare`, then takes `input` signals named `item` one by one;
//!   result: their payloads in the order received.
//! - `updater`: activity `prepare`, then takes one update `set`, runs activity `apply` with
//!   its payload and answers `{ "applied": <payload> }`, then waits for signal `finish`;
//!   result: the update's answer.
//!
//! Output: `RESULT <json>` when the workflow completes, then `DONE`.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use plexspaces_journal::{Journal, PostgresJournal, PostgresOptions, SqliteJournal, SqliteOptions};
use plexspaces_workflow::{
    workflow_fn, ActivityOptions, EngineOptions, HistoryEvent, RetryPolicy, SqlWorkflowStore,
    StepOutcome, WorkflowContext, WorkflowEngine, WorkflowKey, WorkflowStore,
};
use serde_json::{json, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn effect(activity: &str, key: &str, detail: &str) {
    let path = std::env::var("EFFECTS_FILE").unwrap_or_else(|_| "/dev/null".into());
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open effects file: {e}"));
    writeln!(f, "{activity}\t{key}\t{detail}").unwrap_or_else(|e| panic!("write effect: {e}"));
    f.sync_all().unwrap_or_else(|e| panic!("sync effect: {e}"));
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn options() -> ActivityOptions {
    ActivityOptions::default().with_retry(RetryPolicy::no_retry())
}

fn pause_point(event: &HistoryEvent) -> Option<String> {
    match event {
        HistoryEvent::ActivityCompleted {
            name,
            outcome: StepOutcome::Ok(_),
            ..
        } => Some(format!("activity:{name}")),
        HistoryEvent::UpdateAccepted { .. } => Some("update".into()),
        HistoryEvent::TimerStarted { fire_at_ms, .. } => {
            println!("FIRE_AT {fire_at_ms}");
            Some("timer".into())
        }
        _ => None,
    }
}

async fn open(backend: &str) -> Result<(Arc<dyn Journal>, Arc<dyn WorkflowStore>), BoxError> {
    if let Some(dir) = backend.strip_prefix("sqlite:") {
        let dir = std::path::Path::new(dir);
        let journal = SqliteJournal::open(SqliteOptions::new(dir.join("journal.db"))).await?;
        let store = SqlWorkflowStore::open_sqlite(dir.join("workflows.db")).await?;
        return Ok((Arc::new(journal), Arc::new(store)));
    }
    if let Some(schema) = backend.strip_prefix("postgres:") {
        let url = std::env::var("WF_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let journal = PostgresJournal::open(PostgresOptions::new(&url).with_schema(schema)).await?;
        let store = SqlWorkflowStore::open_postgres(&url, schema).await?;
        return Ok((Arc::new(journal), Arc::new(store)));
    }
    Err(format!("bad WF_BACKEND {backend:?}").into())
}

fn register(engine: &WorkflowEngine) {
    engine.register(workflow_fn(
        "five",
        |ctx: WorkflowContext, input: u64| async move {
            let mut out = Vec::new();
            for i in 1..=5u64 {
                let name = format!("a{i}");
                let v: u64 = ctx
                    .activity(&name, &options(), |actx| {
                        let name = name.clone();
                        async move {
                            effect(&name, actx.idempotency_key(), "");
                            Ok(input * 10 + i)
                        }
                    })
                    .await?;
                out.push(v);
            }
            Ok(out)
        },
    ));
    engine.register(workflow_fn(
        "sleeper",
        |ctx: WorkflowContext, ms: u64| async move {
            ctx.activity("before", &options(), |actx| async move {
                effect("before", actx.idempotency_key(), "");
                Ok(())
            })
            .await?;
            ctx.sleep(Duration::from_millis(ms)).await?;
            let after_ms: u64 = ctx
                .activity("after", &options(), |actx| async move {
                    let t = now_ms();
                    effect("after", actx.idempotency_key(), &t.to_string());
                    Ok(t)
                })
                .await?;
            Ok(json!({ "after_ms": after_ms }))
        },
    ));
    engine.register(workflow_fn(
        "waiter",
        |ctx: WorkflowContext, _: ()| async move {
            ctx.activity("prepare", &options(), |actx| async move {
                effect("prepare", actx.idempotency_key(), "");
                Ok(())
            })
            .await?;
            let payload: Value = ctx.signal("go").await?;
            let p = payload.clone();
            ctx.activity("got", &options(), move |actx| {
                let p = p.clone();
                async move {
                    effect("got", actx.idempotency_key(), &p.to_string());
                    Ok(())
                }
            })
            .await?;
            Ok(payload)
        },
    ));
    engine.register(
        workflow_fn("updater", |ctx: WorkflowContext, _: ()| async move {
            ctx.activity("prepare", &options(), |actx| async move {
                effect("prepare", actx.idempotency_key(), "");
                Ok(())
            })
            .await?;
            let request = ctx.next_update::<Value>("set").await?;
            let payload = request.payload.clone();
            ctx.activity("apply", &options(), move |actx| {
                let p = payload.clone();
                async move {
                    effect("apply", actx.idempotency_key(), &p.to_string());
                    Ok(())
                }
            })
            .await?;
            let answer = json!({ "applied": request.payload });
            ctx.complete_update(&request, &answer).await?;
            let _: Value = ctx.signal("finish").await?;
            Ok(answer)
        })
        .with_update_validator("set", |_| Ok(())),
    );
    engine.register(workflow_fn(
        "collector",
        |ctx: WorkflowContext, count: u32| async move {
            ctx.activity("prepare", &options(), |actx| async move {
                effect("prepare", actx.idempotency_key(), "");
                Ok(())
            })
            .await?;
            let mut items = Vec::new();
            for _ in 0..count {
                let item: Value = ctx.signal("item").await?;
                items.push(item);
            }
            Ok(items)
        },
    ));
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let backend = std::env::var("WF_BACKEND")?;
    let mode = std::env::var("WF_MODE")?;
    let id = std::env::var("WF_ID")?;
    let pause = std::env::var("PAUSE_AFTER").ok();
    let (journal, store) = open(&backend).await?;
    let mut options = EngineOptions {
        // Signals sent by the parent process arrive through the store.
        inbox_poll: Duration::from_millis(20),
        ..EngineOptions::default()
    };
    options.event_hook = Some(Arc::new(move |_key, event| {
        if let (Some(pause), Some(point)) = (&pause, pause_point(event)) {
            if *pause == point {
                println!("PAUSED {point}");
                let _ = std::io::stdout().flush();
                loop {
                    std::thread::sleep(Duration::from_secs(3600));
                }
            }
        }
        let _ = std::io::stdout().flush();
    }));
    let engine = WorkflowEngine::new(None, journal, store, options);
    register(&engine);
    let key = WorkflowKey::new("crash", "tests", &id);
    if let Some(workflow_type) = mode.strip_prefix("start:") {
        let input: Value = serde_json::from_str(&std::env::var("WF_INPUT")?)?;
        engine.start(&key, workflow_type, &input).await?;
    } else if mode == "recover" {
        let resumed = engine.recover().await?;
        println!("RECOVERED {resumed}");
    } else {
        return Err(format!("bad WF_MODE {mode:?}").into());
    }
    let result: Value = engine.result(&key, Some(Duration::from_secs(120))).await?;
    println!("RESULT {result}");
    println!("DONE");
    Ok(())
}
