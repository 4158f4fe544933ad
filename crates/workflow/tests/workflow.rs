//! Workflow semantics on the in-memory journal and store, most on tokio's paused clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plexspaces_journal::MemoryJournal;
use plexspaces_workflow::*;
use serde_json::json;
use tokio::time::Instant;

fn engine_with(options: EngineOptions) -> WorkflowEngine {
    WorkflowEngine::new(
        None,
        Arc::new(MemoryJournal::new()),
        Arc::new(MemoryWorkflowStore::new()),
        options,
    )
}

fn engine() -> WorkflowEngine {
    engine_with(EngineOptions::default())
}

fn key(id: &str) -> WorkflowKey {
    WorkflowKey::new("acme", "orders", id)
}

fn quick_retry(max_attempts: u32) -> ActivityOptions {
    ActivityOptions::default().with_retry(RetryPolicy {
        initial_interval: Duration::from_secs(1),
        backoff_coefficient: 2.0,
        maximum_interval: Duration::from_secs(3),
        maximum_attempts: max_attempts,
        non_retryable: vec!["InsufficientFunds".into()],
    })
}

const TIMEOUT: Option<Duration> = Some(Duration::from_secs(600));

#[tokio::test(start_paused = true)]
async fn activities_run_in_order_and_their_results_are_recorded() {
    let e = engine();
    let runs = Arc::new(AtomicU32::new(0));
    let r = runs.clone();
    e.register(workflow_fn("three", move |ctx: WorkflowContext, x: u32| {
        let r = r.clone();
        async move {
            let mut acc = x;
            for name in ["a", "b", "c"] {
                let r = r.clone();
                acc = ctx
                    .activity(name, &ActivityOptions::default(), move |actx| {
                        let r = r.clone();
                        async move {
                            r.fetch_add(1, Ordering::SeqCst);
                            assert!(actx.idempotency_key().starts_with("acme/orders/wf-1/1/"));
                            Ok(acc * 2 + 1)
                        }
                    })
                    .await?;
            }
            Ok(acc)
        }
    }));
    let started = e.start(&key("wf-1"), "three", &1u32).await.unwrap();
    assert!(!started.already_started);
    let out: u32 = e.result(&key("wf-1"), TIMEOUT).await.unwrap();
    assert_eq!(out, 15);
    assert_eq!(runs.load(Ordering::SeqCst), 3);
    let history = e.history(&key("wf-1"), None).await.unwrap();
    let names: Vec<String> = history.iter().map(HistoryEvent::describe).collect();
    assert_eq!(
        names,
        vec![
            "start of three",
            "activity a",
            "activity b",
            "activity c",
            "workflow completion"
        ]
    );
    let d = e.describe(&key("wf-1")).await.unwrap();
    assert_eq!(d.record.status, WorkflowStatus::Completed);
    assert_eq!(d.history_events, 5);
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff_policy_on_a_paused_clock() {
    let e = engine();
    let attempts: Arc<Mutex<Vec<(u32, Instant)>>> = Arc::default();
    let a = attempts.clone();
    e.register(workflow_fn(
        "flaky",
        move |ctx: WorkflowContext, fail_times: u32| {
            let a = a.clone();
            async move {
                let v: u32 = ctx
                    .activity("flaky", &quick_retry(10), move |actx| {
                        let a = a.clone();
                        async move {
                            a.lock().push((actx.attempt(), Instant::now()));
                            if actx.attempt() <= fail_times {
                                Err(ActivityFailure::retryable("Unavailable", "try again"))
                            } else {
                                Ok(actx.attempt())
                            }
                        }
                    })
                    .await?;
                Ok(v)
            }
        },
    ));
    e.start(&key("flaky"), "flaky", &4u32).await.unwrap();
    let out: u32 = e.result(&key("flaky"), TIMEOUT).await.unwrap();
    assert_eq!(out, 5, "the fifth attempt succeeds");
    let attempts = attempts.lock().clone();
    assert_eq!(
        attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].1 - w[0].1).collect();
    // 1 s, 2 s, then capped at 3 s; the paused clock makes them exact up to scheduling.
    for (gap, want) in gaps.iter().zip([1, 2, 3, 3]) {
        let want = Duration::from_secs(want);
        assert!(*gap >= want, "gap {gap:?} shorter than {want:?}");
        assert!(
            *gap < want + Duration::from_millis(50),
            "gap {gap:?} longer than {want:?}"
        );
    }
    let history = e.history(&key("flaky"), None).await.unwrap();
    assert!(matches!(
        &history[1],
        HistoryEvent::ActivityCompleted { attempts: 5, .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn exhausted_and_non_retryable_failures_are_catchable_errors() {
    let e = engine();
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    e.register(workflow_fn(
        "pay",
        move |ctx: WorkflowContext, kind: String| {
            let c = c.clone();
            async move {
                let r: Result<u32> = ctx
                    .activity("charge", &quick_retry(3), move |_| {
                        let c = c.clone();
                        let kind = kind.clone();
                        async move {
                            c.fetch_add(1, Ordering::SeqCst);
                            Err::<u32, _>(ActivityFailure::retryable(kind, "no"))
                        }
                    })
                    .await;
                match r {
                    Err(WorkflowError::Activity {
                        attempts, failure, ..
                    }) => Ok(format!("caught {} after {attempts}", failure.kind)),
                    other => Err(WorkflowError::application(
                        "Unexpected",
                        format!("{other:?}"),
                    )),
                }
            }
        },
    ));
    e.start(&key("exhausted"), "pay", &"Unavailable")
        .await
        .unwrap();
    let out: String = e.result(&key("exhausted"), TIMEOUT).await.unwrap();
    assert_eq!(out, "caught Unavailable after 3");
    assert_eq!(calls.swap(0, Ordering::SeqCst), 3);

    e.start(&key("declined"), "pay", &"InsufficientFunds")
        .await
        .unwrap();
    let out: String = e.result(&key("declined"), TIMEOUT).await.unwrap();
    assert_eq!(out, "caught InsufficientFunds after 1");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a non-retryable kind is not retried"
    );
}

#[tokio::test(start_paused = true)]
async fn attempt_and_heartbeat_timeouts_fail_the_attempt() {
    let e = engine();
    e.register(workflow_fn(
        "slow",
        |ctx: WorkflowContext, heartbeat: bool| async move {
            let options = if heartbeat {
                ActivityOptions::default()
                    .with_heartbeat_timeout(Duration::from_secs(2))
                    .with_retry(RetryPolicy::no_retry())
            } else {
                ActivityOptions::default()
                    .with_start_to_close(Duration::from_secs(5))
                    .with_retry(RetryPolicy::no_retry())
            };
            let r: Result<()> = ctx
                .activity("slow", &options, |actx| async move {
                    actx.heartbeat();
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok(())
                })
                .await;
            match r {
                Err(WorkflowError::Activity { failure, .. }) => Ok(failure.kind),
                other => Ok(format!("{other:?}")),
            }
        },
    ));
    e.start(&key("t1"), "slow", &false).await.unwrap();
    e.start(&key("t2"), "slow", &true).await.unwrap();
    assert_eq!(
        e.result::<String>(&key("t1"), TIMEOUT).await.unwrap(),
        "timeout"
    );
    assert_eq!(
        e.result::<String>(&key("t2"), TIMEOUT).await.unwrap(),
        "heartbeat_timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn saga_compensates_in_reverse_order_once_each() {
    let e = engine();
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let l = log.clone();
    e.register(workflow_fn("trip", move |ctx: WorkflowContext, _: ()| {
        let log = l.clone();
        async move {
            let mut saga = Saga::new();
            for step in ["flight", "hotel", "car"] {
                let lg = log.clone();
                ctx.activity(
                    &format!("book_{step}"),
                    &ActivityOptions::default(),
                    move |_| {
                        let lg = lg.clone();
                        async move {
                            lg.lock().push(format!("book {step}"));
                            Ok(())
                        }
                    },
                )
                .await?;
                let lg = log.clone();
                saga.add_compensation(
                    &format!("cancel_{step}"),
                    ActivityOptions::default(),
                    move |_| {
                        let lg = lg.clone();
                        async move {
                            lg.lock().push(format!("cancel {step}"));
                            Ok(())
                        }
                    },
                );
            }
            let paid: Result<()> = ctx
                .activity("pay", &quick_retry(2), |_| async {
                    Err(ActivityFailure::non_retryable("CardDeclined", "declined"))
                })
                .await;
            if let Err(e) = paid {
                saga.compensate(&ctx).await?;
                return Err(e);
            }
            Ok(())
        }
    }));
    e.start(&key("trip"), "trip", &()).await.unwrap();
    let err = e.result::<()>(&key("trip"), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&err, WorkflowError::Failed { failure, .. } if failure.kind == "activity_failed"),
        "{err}"
    );
    assert_eq!(
        *log.lock(),
        vec![
            "book flight",
            "book hotel",
            "book car",
            "cancel car",
            "cancel hotel",
            "cancel flight"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn cancellation_reaches_the_running_activity_and_the_child_and_cleanup_runs() {
    let e = engine();
    let dropped = Arc::new(AtomicU32::new(0));
    let cleanups: Arc<Mutex<Vec<String>>> = Arc::default();

    struct DropFlag(Arc<AtomicU32>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    let (d, c) = (dropped.clone(), cleanups.clone());
    e.register(workflow_fn("child", move |ctx: WorkflowContext, _: ()| {
        let (d, c) = (d.clone(), c.clone());
        async move {
            let r: Result<()> = ctx
                .activity("long", &ActivityOptions::default(), move |_| {
                    let flag = DropFlag(d.clone());
                    async move {
                        let _flag = flag;
                        std::future::pending::<()>().await;
                        Ok(())
                    }
                })
                .await;
            if let Err(WorkflowError::Cancelled { reason }) = &r {
                let c = c.clone();
                ctx.activity("child_cleanup", &ActivityOptions::default(), move |_| {
                    let c = c.clone();
                    async move {
                        c.lock().push("child cleanup".to_owned());
                        Ok(())
                    }
                })
                .await?;
                return Err(WorkflowError::Cancelled {
                    reason: reason.clone(),
                });
            }
            r
        }
    }));
    let c = cleanups.clone();
    e.register(workflow_fn("parent", move |ctx: WorkflowContext, _: ()| {
        let c = c.clone();
        async move {
            let r: Result<()> = ctx.child("child", "parent-child-1", &()).await;
            if let Err(WorkflowError::Cancelled { .. }) = &r {
                let c = c.clone();
                ctx.activity("parent_cleanup", &ActivityOptions::default(), move |_| {
                    let c = c.clone();
                    async move {
                        c.lock().push("parent cleanup".to_owned());
                        Ok(())
                    }
                })
                .await?;
            }
            r
        }
    }));
    e.start(&key("parent"), "parent", &()).await.unwrap();
    let child = key("parent-child-1");
    assert!(
        plexspaces_test_util::eventually(Duration::from_secs(60), || async {
            e.describe(&child).await.is_ok()
        })
        .await
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    e.cancel(&key("parent"), "customer changed their mind")
        .await
        .unwrap();
    e.cancel(&key("parent"), "twice").await.unwrap();
    let err = e.result::<()>(&key("parent"), TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&err, WorkflowError::Cancelled { reason } if reason == "customer changed their mind"),
        "{err}"
    );
    let err = e.result::<()>(&child, TIMEOUT).await.unwrap_err();
    assert!(matches!(err, WorkflowError::Cancelled { .. }), "{err}");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        1,
        "the running activity was stopped"
    );
    let mut done = cleanups.lock().clone();
    done.sort();
    assert_eq!(done, vec!["child cleanup", "parent cleanup"]);
    let cancels = e
        .history(&key("parent"), None)
        .await
        .unwrap()
        .iter()
        .filter(|h| matches!(h, HistoryEvent::CancelRequested { .. }))
        .count();
    assert_eq!(cancels, 1, "cancellation is recorded once");
    assert!(matches!(
        e.signal(&key("parent"), "late", &1, None).await,
        Err(WorkflowError::Closed { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn continue_as_new_under_a_steady_signal_stream_loses_nothing() {
    let e = engine();
    #[derive(serde::Serialize, serde::Deserialize)]
    struct Acc {
        total: u64,
        seen: u64,
    }
    e.register(workflow_fn(
        "sum",
        |ctx: WorkflowContext, acc: Acc| async move {
            let mut acc = acc;
            for _ in 0..7 {
                let n: u64 = ctx.signal("add").await?;
                acc.total += n;
                acc.seen += 1;
                ctx.set_query("seen", &acc.seen)?;
                if acc.seen == 100 {
                    return Ok(acc.total);
                }
            }
            Err(ctx.continue_as_new(&acc))
        },
    ));
    let k = key("sum");
    e.start(&k, "sum", &Acc { total: 0, seen: 0 })
        .await
        .unwrap();
    let sender = {
        let e = e.clone();
        let k = k.clone();
        tokio::spawn(async move {
            for i in 1..=100u64 {
                e.signal(&k, "add", &i, None).await.unwrap();
                if i % 3 == 0 {
                    tokio::time::sleep(Duration::from_millis(7)).await;
                }
            }
        })
    };
    let total: u64 = e.result(&k, TIMEOUT).await.unwrap();
    sender.await.unwrap();
    assert_eq!(total, 5050);
    let d = e.describe(&k).await.unwrap();
    assert_eq!(d.record.run, 15, "100 signals at 7 per run");
    assert!(
        d.history_events <= 1 + 7 + 1,
        "each run's history stays bounded"
    );
    for run in 1..15 {
        let h = e.history(&k, Some(run)).await.unwrap();
        assert_eq!(h.len(), 9, "run {run}");
    }
    assert_eq!(e.query(&k, "seen").await.unwrap(), json!(100));
}

#[tokio::test(start_paused = true)]
async fn history_limit_fails_the_workflow_with_a_typed_error() {
    let e = engine_with(EngineOptions {
        history_warn_events: 5,
        history_max_events: 10,
        ..EngineOptions::default()
    });
    let warned = Arc::new(AtomicU32::new(0));
    let w = warned.clone();
    e.register(workflow_fn("chatty", move |ctx: WorkflowContext, _: ()| {
        let w = w.clone();
        async move {
            for i in 0..100u32 {
                if ctx.history_warning().await && w.load(Ordering::SeqCst) == 0 {
                    w.store(ctx.history_len().await as u32, Ordering::SeqCst);
                }
                ctx.activity("step", &ActivityOptions::default(), move |_| async move {
                    Ok(i)
                })
                .await?;
            }
            Ok(())
        }
    }));
    e.start(&key("chatty"), "chatty", &()).await.unwrap();
    let err = e.result::<()>(&key("chatty"), TIMEOUT).await.unwrap_err();
    match err {
        WorkflowError::Failed { failure, .. } => {
            assert_eq!(failure.kind, "history_limit_exceeded", "{failure}")
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(
        warned.load(Ordering::SeqCst),
        5,
        "the warning shows at 5 events"
    );
    let h = e.history(&key("chatty"), None).await.unwrap();
    assert_eq!(h.len(), 11, "10 events within the limit plus the failure");
}

fn order_v1() -> impl WorkflowBehavior<Input = (), Output = String> {
    workflow_fn("order", |ctx: WorkflowContext, _: ()| async move {
        let a: String = ctx
            .activity("reserve", &ActivityOptions::default(), |_| async {
                Ok("r".to_owned())
            })
            .await?;
        let go: String = ctx.signal("go").await?;
        let b: String = ctx
            .activity("ship", &ActivityOptions::default(), |_| async {
                Ok("s".to_owned())
            })
            .await?;
        let done: String = ctx.signal("done").await?;
        Ok(format!("{a}{go}{b}{done}"))
    })
}

fn order_v2_incompatible() -> impl WorkflowBehavior<Input = (), Output = String> {
    workflow_fn("order", |ctx: WorkflowContext, _: ()| async move {
        let a: String = ctx
            .activity("reserve", &ActivityOptions::default(), |_| async {
                Ok("r".to_owned())
            })
            .await?;
        let b: String = ctx
            .activity("charge", &ActivityOptions::default(), |_| async {
                Ok("c".to_owned())
            })
            .await?;
        Ok(format!("{a}{b}"))
    })
}

fn order_v2_patched() -> impl WorkflowBehavior<Input = (), Output = String> {
    workflow_fn("order", |ctx: WorkflowContext, _: ()| async move {
        let a: String = ctx
            .activity("reserve", &ActivityOptions::default(), |_| async {
                Ok("r".to_owned())
            })
            .await?;
        if ctx.version("charge-before-signal", 1, 2).await? == 2 {
            ctx.activity("charge", &ActivityOptions::default(), |_| async { Ok(()) })
                .await?;
        }
        let go: String = ctx.signal("go").await?;
        let b: String = ctx
            .activity("ship", &ActivityOptions::default(), |_| async {
                Ok("s".to_owned())
            })
            .await?;
        let done: String = ctx.signal("done").await?;
        Ok(format!("{a}{go}{b}{done}"))
    })
}

#[tokio::test(start_paused = true)]
async fn changed_code_is_a_non_determinism_error_naming_the_step() {
    let journal = Arc::new(MemoryJournal::new());
    let store = Arc::new(MemoryWorkflowStore::new());
    let old = WorkflowEngine::new(
        None,
        journal.clone(),
        store.clone(),
        EngineOptions::default(),
    );
    old.register(order_v1());
    let k = key("o-1");
    old.start(&k, "order", &()).await.unwrap();
    old.signal(&k, "go", &"!", None).await.unwrap();
    assert!(
        plexspaces_test_util::eventually(Duration::from_secs(60), || async {
            old.history(&k, None).await.unwrap().len() == 4
        })
        .await
    );
    old.shutdown();
    // A complete history, for the replay helper.
    let done = key("o-done");
    old.start(&done, "order", &()).await.unwrap();
    old.signal(&done, "go", &"+", None).await.unwrap();
    old.signal(&done, "done", &".", None).await.unwrap();
    assert_eq!(old.result::<String>(&done, TIMEOUT).await.unwrap(), "r+s.");
    let recorded = old.history(&done, None).await.unwrap();
    // Round trip through JSON, as a saved fixture would.
    let recorded: Vec<HistoryEvent> =
        serde_json::from_str(&serde_json::to_string(&recorded).unwrap()).unwrap();

    testing::replay(order_v1(), &recorded).await.unwrap();
    testing::replay(order_v2_patched(), &recorded)
        .await
        .unwrap();
    match testing::replay(order_v2_incompatible(), &recorded).await {
        Err(WorkflowError::NonDeterminism {
            step,
            expected,
            found,
        }) => {
            assert_eq!(step, 1);
            assert_eq!(expected, "signal go");
            assert_eq!(found, "activity charge");
        }
        other => panic!("expected non-determinism, got {other:?}"),
    }

    // A live execution picked up by an engine with incompatible code is suspended with the
    // same typed error; compatible code resumes it.
    let new = WorkflowEngine::new(
        None,
        journal.clone(),
        store.clone(),
        EngineOptions::default(),
    );
    new.register(order_v2_incompatible());
    new.recover().await.unwrap();
    match new.result::<String>(&k, TIMEOUT).await {
        Err(WorkflowError::Failed { failure, .. }) => {
            assert_eq!(failure.kind, "non_determinism");
            assert!(failure.message.contains("step 1"), "{}", failure.message);
            assert!(
                failure.message.contains("activity charge"),
                "{}",
                failure.message
            );
        }
        other => panic!("expected suspension, got {other:?}"),
    }
    assert_eq!(
        new.describe(&k).await.unwrap().record.status,
        WorkflowStatus::Suspended
    );

    let fixed = WorkflowEngine::new(None, journal, store, EngineOptions::default());
    fixed.register(order_v2_patched());
    assert_eq!(fixed.recover().await.unwrap(), 1);
    fixed.signal(&k, "done", &"?", None).await.unwrap();
    assert_eq!(fixed.result::<String>(&k, TIMEOUT).await.unwrap(), "r!s?");
}

#[tokio::test(start_paused = true)]
async fn signals_updates_and_queries() {
    let e = engine();
    e.register(
        workflow_fn("cart", |ctx: WorkflowContext, _: ()| async move {
            let mut items: Vec<String> = Vec::new();
            ctx.set_query("items", &items)?;
            for _ in 0..2 {
                let add: UpdateRequest<String> = ctx.next_update("add").await?;
                items.push(add.payload.clone());
                ctx.set_query("items", &items)?;
                ctx.complete_update(&add, &items.len()).await?;
            }
            let first: String = ctx.signal("note").await?;
            let second: String = ctx.signal("note").await?;
            let close: bool = ctx.signal("close").await?;
            Ok(json!({ "items": items, "notes": [first, second], "close": close }))
        })
        .with_update_validator("add", |v| match v.as_str() {
            Some(s) if !s.is_empty() => Ok(()),
            _ => Err("an item is a non-empty string".into()),
        }),
    );
    let k = key("cart");
    e.start(&k, "cart", &()).await.unwrap();
    let again = e.start(&k, "cart", &()).await.unwrap();
    assert!(again.already_started);
    assert_eq!(again.run, 1);

    // Signals sent before the workflow asks for them wait, in acceptance order per name.
    e.signal(&k, "close", &true, None).await.unwrap();
    let s1 = e.signal(&k, "note", &"first", Some("n1")).await.unwrap();
    let dup = e
        .signal(&k, "note", &"first again", Some("n1"))
        .await
        .unwrap();
    assert_eq!(s1, dup, "a duplicate signal is not stored again");
    e.signal(&k, "note", &"second", None).await.unwrap();

    let rejected = e.update(&k, "add", &"", "u0", TIMEOUT).await.unwrap_err();
    assert!(
        matches!(rejected, WorkflowError::UpdateRejected { .. }),
        "{rejected}"
    );
    let n = e.update(&k, "add", &"apple", "u1", TIMEOUT).await.unwrap();
    assert_eq!(n, json!(1));
    let n_again = e.update(&k, "add", &"apple", "u1", TIMEOUT).await.unwrap();
    assert_eq!(n_again, json!(1), "the same update id gets the same answer");
    assert_eq!(e.query(&k, "items").await.unwrap(), json!(["apple"]));
    let n = e.update(&k, "add", &"pear", "u2", TIMEOUT).await.unwrap();
    assert_eq!(n, json!(2));

    let out: serde_json::Value = e.result(&k, TIMEOUT).await.unwrap();
    assert_eq!(
        out,
        json!({ "items": ["apple", "pear"], "notes": ["first", "second"], "close": true })
    );
    assert_eq!(
        e.query(&k, "items").await.unwrap(),
        json!(["apple", "pear"])
    );
    assert!(matches!(
        e.query(&k, "nope").await,
        Err(WorkflowError::NotFound(_))
    ));
    let h = e.history(&k, None).await.unwrap();
    let accepted = h
        .iter()
        .filter(|e| matches!(e, HistoryEvent::UpdateAccepted { .. }))
        .count();
    assert_eq!(accepted, 2, "each update recorded once");
    let listed = e
        .list("acme", Some("orders"), Some(WorkflowStatus::Completed), 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(e
        .list("acme", None, Some(WorkflowStatus::Running), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(start_paused = true)]
async fn durable_timer_fires_after_its_duration_and_time_is_recorded() {
    let e = engine();
    e.register(workflow_fn(
        "nap",
        |ctx: WorkflowContext, secs: u64| async move {
            let before = ctx.now_ms().await?;
            ctx.sleep(Duration::from_secs(secs)).await?;
            let after = ctx.now_ms().await?;
            let id = ctx.uuid().await?;
            Ok((after - before, id))
        },
    ));
    let t0 = Instant::now();
    e.start(&key("nap"), "nap", &3600u64).await.unwrap();
    let (slept, id): (u64, String) = e
        .result(&key("nap"), Some(Duration::from_secs(7200)))
        .await
        .unwrap();
    assert!(slept >= 3_600_000, "slept {slept} ms");
    assert!(Instant::now() - t0 >= Duration::from_secs(3600));
    assert_eq!(id.len(), 36);
    let h = e.history(&key("nap"), None).await.unwrap();
    let fired = h
        .iter()
        .filter(|e| matches!(e, HistoryEvent::TimerFired { .. }))
        .count();
    assert_eq!(fired, 1);
}

#[tokio::test]
async fn bad_input_gets_typed_errors() {
    let e = engine();
    e.register(workflow_fn(
        "typed",
        |_ctx: WorkflowContext, n: u32| async move { Ok(n) },
    ));
    assert!(matches!(
        e.start(&key("x"), "typed", &"not a number").await,
        Err(WorkflowError::InvalidArgument(_))
    ));
    assert!(matches!(
        e.start(&key("x"), "missing", &1).await,
        Err(WorkflowError::UnknownType { .. })
    ));
    assert!(matches!(
        e.start(&WorkflowKey::new("acme", "", "x"), "typed", &1)
            .await,
        Err(WorkflowError::InvalidArgument(_))
    ));
    assert!(matches!(
        e.signal(&key("never"), "s", &1, None).await,
        Err(WorkflowError::NotFound(_))
    ));
    e.start(&key("x"), "typed", &7u32).await.unwrap();
    assert_eq!(e.result::<u32>(&key("x"), TIMEOUT).await.unwrap(), 7);
    assert!(matches!(
        e.signal(&key("x"), "", &1, None).await,
        Err(WorkflowError::InvalidArgument(_))
    ));
    assert!(matches!(
        e.cancel(&key("x"), "late").await,
        Err(WorkflowError::Closed { .. })
    ));
    assert!(matches!(
        e.result::<String>(&key("x"), TIMEOUT).await,
        Err(WorkflowError::Codec(_))
    ));
}

#[tokio::test]
async fn a_running_workflow_is_an_actor_process_on_the_node() {
    let node = plexspaces_core::Node::builder("wf-node")
        .build()
        .await
        .unwrap();
    let e = WorkflowEngine::new(
        Some(node.clone()),
        Arc::new(MemoryJournal::new()),
        Arc::new(MemoryWorkflowStore::new()),
        EngineOptions::default(),
    );
    e.register(workflow_fn(
        "wait",
        |ctx: WorkflowContext, _: ()| async move {
            let v: u32 = ctx.signal("go").await?;
            Ok(v)
        },
    ));
    let k = key("proc");
    e.start(&k, "wait", &()).await.unwrap();
    let name = format!("workflow:{k}");
    assert!(
        plexspaces_test_util::eventually(Duration::from_secs(5), || async {
            node.whereis(&name).is_some()
        })
        .await
    );
    e.signal(&k, "go", &9u32, None).await.unwrap();
    assert_eq!(e.result::<u32>(&k, TIMEOUT).await.unwrap(), 9);
    assert!(
        plexspaces_test_util::eventually(Duration::from_secs(5), || async {
            node.whereis(&name).is_none()
        })
        .await,
        "the process stops when the workflow closes"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_workflow_is_suspended_not_lost() {
    let e = engine();
    e.register(workflow_fn(
        "buggy",
        |ctx: WorkflowContext, _: ()| async move {
            ctx.activity("fine", &ActivityOptions::default(), |_| async { Ok(1u32) })
                .await?;
            if ctx.run() == 1 {
                panic!("bug in workflow code");
            }
            Ok(())
        },
    ));
    e.start(&key("buggy"), "buggy", &()).await.unwrap();
    match e.result::<()>(&key("buggy"), TIMEOUT).await {
        Err(WorkflowError::Failed { failure, .. }) => {
            assert_eq!(failure.kind, "panic");
            assert!(
                failure.message.contains("bug in workflow code"),
                "{}",
                failure.message
            );
        }
        other => panic!("expected a suspension, got {other:?}"),
    }
    let d = e.describe(&key("buggy")).await.unwrap();
    assert_eq!(d.record.status, WorkflowStatus::Suspended);
    assert!(!d.active_here);
    assert_eq!(d.history_events, 2, "the completed activity stays recorded");
}

#[tokio::test(start_paused = true)]
async fn dedupe_ids_of_signals_updates_and_cancel_do_not_collide() {
    let e = engine();
    e.register(
        workflow_fn("ids", |ctx: WorkflowContext, _: ()| async move {
            let s: String = ctx.signal("s").await?;
            let u: UpdateRequest<String> = ctx.next_update("u").await?;
            ctx.complete_update(&u, &format!("{}:{}", u.update_id, u.payload))
                .await?;
            ctx.signal::<String>("never").await?;
            Ok(s)
        })
        .with_update_validator("u", |_| Ok(())),
    );
    let k = key("ids");
    e.start(&k, "ids", &()).await.unwrap();
    e.signal(&k, "s", &"sig", Some("same")).await.unwrap();
    let answer = e.update(&k, "u", &"upd", "same", TIMEOUT).await.unwrap();
    assert_eq!(
        answer,
        json!("same:upd"),
        "the update id is the caller's, unscoped"
    );
    e.signal(&k, "other", &"x", Some("cancel")).await.unwrap();
    e.cancel(&k, "stop").await.unwrap();
    let err = e.result::<String>(&k, TIMEOUT).await.unwrap_err();
    assert!(
        matches!(&err, WorkflowError::Cancelled { reason } if reason == "stop"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn receive_takes_whichever_of_several_messages_was_accepted_first() {
    let e = engine();
    let approval = || {
        workflow_fn("approval", |ctx: WorkflowContext, _: ()| async move {
            let mut comments: Vec<String> = Vec::new();
            loop {
                match ctx
                    .receive(&[Receive::Signal("approve"), Receive::Update("comment")])
                    .await?
                {
                    Received::Update { request, .. } => {
                        comments.push(request.payload.as_str().unwrap_or_default().to_owned());
                        ctx.complete_update(&request, &comments.len()).await?;
                    }
                    Received::Signal { payload, .. } => {
                        return Ok(json!({ "approved_by": payload, "comments": comments }));
                    }
                }
            }
        })
        .with_update_validator("comment", |_| Ok(()))
    };
    e.register(approval());
    let k = key("approval");
    e.start(&k, "approval", &()).await.unwrap();
    assert_eq!(
        e.update(&k, "comment", &"looks fine", "c1", TIMEOUT)
            .await
            .unwrap(),
        json!(1)
    );
    assert_eq!(
        e.update(&k, "comment", &"ship it", "c2", TIMEOUT)
            .await
            .unwrap(),
        json!(2)
    );
    e.signal(&k, "unrelated", &0, None).await.unwrap();
    e.signal(&k, "approve", &"ops", None).await.unwrap();
    let out: serde_json::Value = e.result(&k, TIMEOUT).await.unwrap();
    assert_eq!(
        out,
        json!({ "approved_by": "ops", "comments": ["looks fine", "ship it"] })
    );
    let history = e.history(&k, None).await.unwrap();
    testing::replay(approval(), &history).await.unwrap();
    assert!(matches!(
        e.update(&k, "undeclared", &1, "x1", TIMEOUT).await,
        Err(WorkflowError::UpdateRejected { .. })
    ));
    assert!(matches!(
        e.cancel(&k, "bad\nreason").await,
        Err(WorkflowError::InvalidArgument(_))
    ));
}
