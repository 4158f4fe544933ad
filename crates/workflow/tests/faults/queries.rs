//! Queries while a workflow recovers: an engine restarted on the same journal replays a
//! long history, and queries sent all through the replay never see a half-replayed value
//! (they answer with the state at the end of replay) and write nothing to history.

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

#[derive(Default)]
struct Probe {
    /// set while workflow code runs a replayed step
    replaying: AtomicBool,
    /// queries answered while `replaying` was set
    during_replay: AtomicU64,
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
                    if replaying {
                        // let queries in between replayed steps (the replay lasts 400 ms or
                        // more, so the querying task, started after recover(), meets it)
                        tokio::time::sleep(Duration::from_millis(10)).await;
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
#[ignore = "flaky: on a quiet machine the replay can end before any query meets it, and the vacuity guard then fails; the test needs a deterministic hook into replay"]
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
    let history = first.history(&key, None).await.unwrap();
    first.shutdown();

    // a restarted engine replays 40 steps while queries keep coming
    let second = engine(&journal, &store, &probe);
    assert_eq!(
        second.recover().await.unwrap(),
        1,
        "resumed (replay runs in its task)"
    );
    let querying = {
        let (second, key, probe) = (second.clone(), key.clone(), probe.clone());
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for _ in 0..400 {
                let during = probe.replaying.load(Ordering::SeqCst);
                match second.query(&key, "count").await {
                    Ok(v) => {
                        if during {
                            probe.during_replay.fetch_add(1, Ordering::SeqCst);
                        }
                        answers.push(v);
                    }
                    Err(e) => answers.push(json!({ "error": e.to_string() })),
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            answers
        })
    };
    let answers = querying.await.unwrap();
    assert!(
        probe.during_replay.load(Ordering::SeqCst) > 0,
        "some queries were asked while the history replayed"
    );
    for a in &answers {
        assert_eq!(
            a,
            &json!(STEPS),
            "a query saw a half-replayed or missing value"
        );
    }
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
