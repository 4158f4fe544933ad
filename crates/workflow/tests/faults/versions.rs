//! Two code versions of one workflow type registered at once, a rollback and a roll
//! forward, across engine restarts on one journal and store: a run keeps the version it
//! started with; new runs take the newest registered version; a run whose version is no
//! longer registered is left untouched (not resumed, not failed, no history written) and
//! finishes on its version once that is registered again.

use std::sync::Arc;
use std::time::Duration;

use plexspaces_journal::{Journal, MemoryJournal};
use plexspaces_workflow::{
    workflow_fn, EngineOptions, HistoryEvent, MemoryWorkflowStore, WorkflowContext, WorkflowEngine,
    WorkflowKey, WorkflowStatus, WorkflowStore,
};
use serde_json::{json, Value};

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

/// `order` version `v`: waits for signal `go`, answers which version ran it.
fn order(v: u32) -> impl plexspaces_workflow::WorkflowBehavior {
    workflow_fn(
        "order",
        move |ctx: WorkflowContext, input: Value| async move {
            let go: Value = ctx.signal("go").await?;
            Ok(json!({ "version": v, "input": input, "go": go }))
        },
    )
    .with_version(v)
}

struct Storage {
    journal: Arc<dyn Journal>,
    store: Arc<dyn WorkflowStore>,
}

impl Storage {
    /// A fresh engine process on the same storage, with `versions` of `order` deployed.
    async fn deploy(&self, versions: &[u32]) -> (WorkflowEngine, usize) {
        let engine = WorkflowEngine::new(
            None,
            self.journal.clone(),
            self.store.clone(),
            EngineOptions {
                inbox_poll: Duration::from_millis(20),
                ..EngineOptions::default()
            },
        );
        for &v in versions {
            engine.register(order(v));
        }
        let resumed = engine.recover().await.expect("recover");
        (engine, resumed)
    }
}

fn key(id: &str) -> WorkflowKey {
    WorkflowKey::new("t", "versions", id)
}

async fn version_of(engine: &WorkflowEngine, id: &str) -> u32 {
    engine
        .describe(&key(id))
        .await
        .expect("describe")
        .record
        .version
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_runs_finish_on_their_version_through_a_rollback_and_a_roll_forward() {
    let storage = Storage {
        journal: Arc::new(MemoryJournal::new()),
        store: Arc::new(MemoryWorkflowStore::new()),
    };
    // v1 deployed: run a starts on v1
    let (e1, _) = storage.deploy(&[1]).await;
    e1.start(&key("a"), "order", &"a").await.unwrap();
    assert_eq!(version_of(&e1, "a").await, 1);
    e1.shutdown();

    // v1 and v2 deployed at once: a stays on v1, b starts on v2
    let (e2, resumed) = storage.deploy(&[1, 2]).await;
    assert_eq!(resumed, 1);
    e2.start(&key("b"), "order", &"b").await.unwrap();
    assert_eq!(version_of(&e2, "b").await, 2);
    e2.signal(&key("a"), "go", &1, None).await.unwrap();
    let a: Value = e2.result(&key("a"), WAIT).await.unwrap();
    assert_eq!(a["version"], 1, "the pinned run finished on v1: {a}");
    e2.start(&key("c"), "order", &"c").await.unwrap();
    assert_eq!(version_of(&e2, "c").await, 2);
    e2.shutdown();

    // rollback to v1 only: b and c (v2) are left alone, new runs start on v1
    let (e3, resumed) = storage.deploy(&[1]).await;
    assert_eq!(resumed, 0, "no v2 run is resumed by v1-only code");
    let b_history = e3.history(&key("b"), None).await.unwrap();
    e3.signal(&key("b"), "go", &2, None).await.unwrap();
    e3.start(&key("d"), "order", &"d").await.unwrap();
    assert_eq!(
        version_of(&e3, "d").await,
        1,
        "new runs take the rolled-back version"
    );
    e3.signal(&key("d"), "go", &3, None).await.unwrap();
    let d: Value = e3.result(&key("d"), WAIT).await.unwrap();
    assert_eq!(d["version"], 1);
    let b = e3.describe(&key("b")).await.unwrap();
    assert_eq!(b.record.status, WorkflowStatus::Running, "not failed");
    assert!(!b.active_here, "not driven by code of another version");
    assert_eq!(
        e3.history(&key("b"), None).await.unwrap(),
        b_history,
        "nothing written to the v2 run's history"
    );
    e3.shutdown();

    // roll forward: the v2 runs resume and finish on v2 (b got its signal while parked)
    let (e4, resumed) = storage.deploy(&[1, 2]).await;
    assert_eq!(resumed, 2, "b and c resume");
    let b: Value = e4.result(&key("b"), WAIT).await.unwrap();
    assert_eq!(b, json!({"version": 2, "input": "b", "go": 2}));
    e4.signal(&key("c"), "go", &4, None).await.unwrap();
    let c: Value = e4.result(&key("c"), WAIT).await.unwrap();
    assert_eq!(c["version"], 2);
    let started: Vec<u32> = e4
        .history(&key("c"), None)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::WorkflowStarted { version, .. } => Some(*version),
            _ => None,
        })
        .collect();
    assert_eq!(started, [2]);
    e4.shutdown();
}
