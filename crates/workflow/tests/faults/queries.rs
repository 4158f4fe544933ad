//! Queries while a workflow recovers: an engine restarted on the same journal replays a
//! long history; the workflow code holds the replay halfway (a test gate at a replayed step)
//! until a query has been issued and has parked, so the query certainly meets the replay.
//! It never sees a half-replayed value (it answers with the state at the end of replay),
//! and queries write nothing to history.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plexspaces_journal::{Journal, MemoryJournal};
use plexspaces_workflow::{
    workflow_fn, ActivityOptions, EngineOptions, MemoryWorkflowStore, WorkflowContext,
    WorkflowEngine, WorkflowKey, WorkflowStore,
};
use serde_json::{json, Value};

const STEPS: u64 = 40;

struct Probe {
    /// set while workflow code runs a replayed step
    replaying: AtomicBool,
    /// set when the replay reached the gate (a replayed step halfway)
    held: AtomicBool,
    /// the gate: the replay goes on once a permit is added
    release: tokio::sync::Semaphore,
    /// queries answered while `replaying` was set
    during_replay: AtomicU64,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            replaying: AtomicBool::new(false),
            held: AtomicBool::new(false),
            release: tokio::sync::Semaphore::new(0),
            during_replay: AtomicU64::new(0),
        }
    }
}

fn engine(
    journal: &Arc<dyn Journal>,
    store: &Arc<dyn WorkflowStore>,
    probe: &Arc<Probe>,
) -> WorkflowEngine {
    let engine = WorkflowEngine::new(
        None,
        journal.clone(),
        store.clone(),
        EngineOptions {
            inbox_poll: Duration::from_millis(20),
            ..EngineOptions::default()
        },
    );
    let probe = probe.clone();
    engine.register(workflow_fn(
        "counter",
        move |ctx: WorkflowContext, _: ()| {
            let probe = probe.clone();
            async move {
                ctx.set_query("count", &0)?;
                for i in 1..=STEPS {
                    let replaying = ctx.is_replaying().await;
                    probe.replaying.store(replaying, Ordering::SeqCst);
                    let n: u64 = ctx
                        .activity("step", &ActivityOptions::default(), move |_| async move {
                            Ok(i)
                        })
                        .await?;
                    ctx.set_query("count", &n)?;
                    if replaying && i == STEPS / 2 {
                        // hold the replay halfway until the test has a query waiting
                        probe.held.store(true, Ordering::SeqCst);
                        let permit = probe.release.acquire().await;
                        drop(permit);
                    }
                }
                probe.replaying.store(false, Ordering::SeqCst);
                let done: Value = ctx.signal("finish").await?;
                Ok(done)
            }
        },
    ));
    engine
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_replay_see_the_replayed_state_and_write_nothing() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let store: Arc<dyn WorkflowStore> = Arc::new(MemoryWorkflowStore::new());
    let probe = Arc::new(Probe::default());
    let key = WorkflowKey::new("t", "queries", "q-1");

    let first = engine(&journal, &store, &probe);
    first.start(&key, "counter", &()).await.unwrap();
    let ready = plexspaces_test_util::eventually(Duration::from_secs(20), || async {
        first.query(&key, "count").await.ok() == Some(json!(STEPS))
    })
    .await;
    assert!(ready, "the first run reached its wait");
    assert!(!probe.held.load(Ordering::SeqCst), "a live run never holds");
    let history = first.history(&key, None).await.unwrap();
    first.shutdown();

    // a restarted engine replays 40 steps; the workflow holds the replay at step 20
    let second = engine(&journal, &store, &probe);
    assert_eq!(
        second.recover().await.unwrap(),
        1,
        "resumed (replay runs in its task)"
    );
    let held = plexspaces_test_util::eventually(Duration::from_secs(20), || async {
        probe.held.load(Ordering::SeqCst)
    })
    .await;
    assert!(held, "the replay reached the gate");
    assert!(
        probe.replaying.load(Ordering::SeqCst),
        "held at a replayed step"
    );
    // Queries issued now certainly meet the replay: each is polled once (it runs as far as
    // it can) and must be waiting, not answering with the half-replayed count (20).
    let mut queries = Vec::new();
    for _ in 0..3 {
        let mut q = Box::pin({
            let (second, key) = (second.clone(), key.clone());
            async move { second.query(&key, "count").await }
        });
        assert!(
            futures::poll!(q.as_mut()).is_pending(),
            "a query during replay waits for the replay to end"
        );
        probe.during_replay.fetch_add(1, Ordering::SeqCst);
        queries.push(tokio::spawn(q));
    }
    assert_eq!(probe.during_replay.load(Ordering::SeqCst), 3);
    // let the replay go on: every waiting query answers with the fully replayed state
    probe.release.add_permits(1);
    for q in queries {
        assert_eq!(
            q.await.unwrap().unwrap(),
            json!(STEPS),
            "a query saw a half-replayed or missing value"
        );
    }
    let answered = plexspaces_test_util::eventually(Duration::from_secs(20), || async {
        !probe.replaying.load(Ordering::SeqCst)
            && second.query(&key, "count").await.ok() == Some(json!(STEPS))
    })
    .await;
    assert!(answered, "the replay ended and queries answer at once");
    assert_eq!(
        second.history(&key, None).await.unwrap(),
        history,
        "queries wrote nothing to history"
    );
    second.signal(&key, "finish", &"ok", None).await.unwrap();
    let done: Value = second
        .result(&key, Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert_eq!(done, json!("ok"));
    second.shutdown();
}
