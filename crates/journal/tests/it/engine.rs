use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plexspaces_journal::{
    Begin, CheckpointPolicy, Durable, DurableExecution, DurableOptions, EntryKind, Error, Journal,
    ManualClock, MemoryJournal, RetryPolicy, StreamId,
};
use proptest::prelude::*;

use crate::support::{unique_name, Account};

fn stream() -> StreamId {
    StreamId::new("t1", "bank", &unique_name("acct"))
}

fn no_checkpoints() -> DurableOptions {
    DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: None,
            every: None,
            truncate: true,
        },
        ..DurableOptions::default()
    }
}

async fn fencing_case(journal: Arc<dyn Journal>) {
    let s = stream();
    let effects = Arc::new(AtomicU64::new(0));
    let mut first = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    first.handle(b"+10", Some("a")).await.unwrap();
    let mut second = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    assert!(second.execution().epoch() > first.execution().epoch());
    assert_eq!(
        second.handler().balance,
        10,
        "second activation replays the first's work"
    );
    let len_before = journal.history_len(&s).await.unwrap();
    let err = first.handle(b"+5", Some("b")).await.unwrap_err();
    assert!(
        matches!(err, Error::Fenced { .. }),
        "stale activation must be fenced, got {err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(
        journal.history_len(&s).await.unwrap(),
        len_before,
        "fenced write left nothing"
    );
    // the fenced execution is poisoned
    assert!(matches!(
        first.handle(b"+5", Some("c")).await,
        Err(Error::Poisoned(_))
    ));
    // the new activation keeps working; the fenced message was never acknowledged
    let reply = second.handle(b"+5", Some("b")).await.unwrap();
    assert!(String::from_utf8_lossy(&reply).starts_with("15|"));
}

#[tokio::test]
async fn second_activation_fences_first_memory() {
    fencing_case(Arc::new(MemoryJournal::new())).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_activation_fences_first_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let j = plexspaces_journal::SqliteJournal::open(plexspaces_journal::SqliteOptions::new(
        dir.path().join("j.db"),
    ))
    .await
    .unwrap();
    fencing_case(Arc::new(j)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_activation_fences_first_postgres() {
    let schema = crate::support::PgSchema::new("fence");
    let j = plexspaces_journal::PostgresJournal::open(schema.options())
        .await
        .unwrap();
    fencing_case(Arc::new(j)).await;
}

#[tokio::test]
async fn replay_asking_for_a_different_side_effect_is_a_typed_mismatch() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let s = stream();
    let effects = Arc::new(AtomicU64::new(0));
    let mut d = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    d.handle(b"+1", None).await.unwrap();
    d.handle(b"+2", None).await.unwrap();
    drop(d);
    let before = journal.read(&s, 1, u64::MAX).await.unwrap();
    let snap_before = journal.latest_snapshot(&s).await.unwrap();

    let mut changed = Account::new(effects.clone());
    changed.effect_name = "charge-card".into();
    let err = Durable::activate(journal.clone(), s.clone(), no_checkpoints(), changed)
        .await
        .unwrap_err();
    match err {
        Error::JournalMismatch {
            seq,
            step,
            expected,
            found,
        } => {
            assert_eq!(seq, 1, "first message");
            assert_eq!(step, 2, "clock (0), random (1), then the side effect (2)");
            assert!(expected.contains("audit"), "{expected}");
            assert!(found.contains("charge-card"), "{found}");
        }
        other => panic!("expected a journal mismatch, got {other:?}"),
    }
    assert_eq!(
        effects.load(Ordering::SeqCst),
        2,
        "no effect ran during the failed replay"
    );
    assert_eq!(
        journal.read(&s, 1, u64::MAX).await.unwrap(),
        before,
        "journal unchanged"
    );
    assert_eq!(journal.latest_snapshot(&s).await.unwrap(), snap_before);

    // the right code still recovers
    let d = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    assert_eq!(d.handler().balance, 3);
    assert_eq!(
        effects.load(Ordering::SeqCst),
        2,
        "journaled effects are not re-run"
    );
}

#[tokio::test]
async fn replay_with_fewer_steps_than_journaled_is_a_mismatch() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let s = stream();
    let mut exec = DurableExecution::activate(journal.clone(), s.clone(), no_checkpoints())
        .await
        .unwrap();
    exec.begin_message(b"m", None).await.unwrap();
    let _: u32 = exec.side_effect("one", |_| async { 1 }).await.unwrap();
    let _: u32 = exec.side_effect("two", |_| async { 2 }).await.unwrap();
    exec.commit(b"r".to_vec()).await.unwrap();

    let mut exec = DurableExecution::activate(journal.clone(), s.clone(), no_checkpoints())
        .await
        .unwrap();
    let m = exec.next_replay().unwrap().unwrap();
    assert!(m.completed);
    let v: u32 = exec
        .side_effect("one", |_| async { panic!("must not run on replay") })
        .await
        .unwrap();
    assert_eq!(v, 1);
    match exec.commit(b"r".to_vec()).await {
        Err(Error::JournalMismatch {
            seq: 1,
            step: 1,
            found,
            ..
        }) => assert_eq!(found, "commit"),
        other => panic!("expected mismatch, got {other:?}"),
    }
    assert!(matches!(
        exec.begin_message(b"x", None).await,
        Err(Error::Poisoned(_))
    ));
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_duplicates_execute_once_with_identical_replies() {
    let dir = tempfile::tempdir().unwrap();
    let j = plexspaces_journal::SqliteJournal::open(plexspaces_journal::SqliteOptions::new(
        dir.path().join("j.db"),
    ))
    .await
    .unwrap();
    let journal: Arc<dyn Journal> = Arc::new(j);
    let s = stream();
    let effects = Arc::new(AtomicU64::new(0));
    let d = Durable::activate(
        journal.clone(),
        s.clone(),
        DurableOptions::default(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    // the mutex plays the actor's mailbox: one message at a time
    let d = Arc::new(tokio::sync::Mutex::new(d));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            d.lock()
                .await
                .handle(b"+100", Some("transfer-42"))
                .await
                .unwrap()
        }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    assert_eq!(effects.load(Ordering::SeqCst), 1, "one execution");
    assert!(
        replies.iter().all(|r| r == &replies[0]),
        "identical replies"
    );
    assert_eq!(d.lock().await.handler().balance, 100);
    let messages = journal
        .read(&s, 1, u64::MAX)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == EntryKind::MessageReceived)
        .count();
    assert_eq!(messages, 1, "duplicates are not journaled as new messages");

    // after a restart the duplicate still gets the first reply
    drop(d);
    let mut again = Durable::activate(
        journal,
        s,
        DurableOptions::default(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    assert_eq!(
        again.handle(b"+100", Some("transfer-42")).await.unwrap(),
        replies[0]
    );
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn idempotency_keys_survive_checkpoint_and_truncation() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let s = stream();
    let effects = Arc::new(AtomicU64::new(0));
    let opts = DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(2),
            every: None,
            truncate: true,
        },
        ..DurableOptions::default()
    };
    let mut d = Durable::activate(
        journal.clone(),
        s.clone(),
        opts.clone(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    let first = d.handle(b"+1", Some("k1")).await.unwrap();
    for i in 2..=5 {
        d.handle(format!("+{i}").as_bytes(), Some(&format!("k{i}")))
            .await
            .unwrap();
    }
    assert_eq!(
        d.execution().snapshot_seq(),
        20,
        "checkpoint after 4 messages of 5 entries"
    );
    assert_eq!(
        journal.history_len(&s).await.unwrap(),
        5,
        "entries before the snapshot truncated"
    );
    drop(d);
    let mut d = Durable::activate(journal, s, opts, Account::new(effects.clone()))
        .await
        .unwrap();
    assert_eq!(d.handler().balance, 15);
    assert_eq!(d.handle(b"+1", Some("k1")).await.unwrap(), first);
    assert_eq!(effects.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn time_based_checkpoint_uses_the_clock() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let clock = ManualClock::new(1_000_000);
    let opts = DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: None,
            every: Some(Duration::from_secs(10)),
            truncate: true,
        },
        clock: clock.clone(),
        ..DurableOptions::default()
    };
    let s = stream();
    let mut d = Durable::activate(
        journal.clone(),
        s.clone(),
        opts,
        Account::new(Arc::default()),
    )
    .await
    .unwrap();
    d.handle(b"+1", None).await.unwrap();
    assert_eq!(d.execution().snapshot_seq(), 0);
    clock.advance(10_000);
    d.handle(b"+1", None).await.unwrap();
    assert_eq!(d.execution().snapshot_seq(), 10);
    assert_eq!(d.execution().history_len().await.unwrap(), 0);
}

#[tokio::test]
async fn with_retries_off_a_handler_error_aborts_and_replay_skips_the_message() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let s = stream();
    let no_retries = || DurableOptions {
        retry: RetryPolicy::disabled(),
        ..no_checkpoints()
    };
    let mut exec = DurableExecution::activate(journal.clone(), s.clone(), no_retries())
        .await
        .unwrap();
    exec.begin_message(b"ok", None).await.unwrap();
    exec.commit(b"1".to_vec()).await.unwrap();
    exec.begin_message(b"bad", None).await.unwrap();
    let _: u8 = exec.side_effect("e", |_| async { 7 }).await.unwrap();
    exec.abort("handler failed").await.unwrap();
    assert!(matches!(
        exec.begin_message(b"x", None).await,
        Err(Error::Poisoned(_))
    ));
    let mut exec = DurableExecution::activate(journal.clone(), s.clone(), no_retries())
        .await
        .unwrap();
    assert_eq!(
        exec.pending_replay().collect::<Vec<_>>(),
        vec![b"ok".as_slice()]
    );
    assert_eq!(exec.next_replay().unwrap().unwrap().payload, b"ok");
    exec.commit(b"1".to_vec()).await.unwrap();
    assert!(
        exec.next_replay().unwrap().is_none(),
        "aborted message is skipped"
    );
    assert!(matches!(
        exec.begin_message(b"next", None).await,
        Ok(Begin::Started { seq: 6 })
    ));
}

#[tokio::test]
async fn reply_is_durable_when_commit_returns() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let s = stream();
    let mut exec = DurableExecution::activate(journal.clone(), s.clone(), no_checkpoints())
        .await
        .unwrap();
    exec.begin_message(b"m", Some("key")).await.unwrap();
    let t = exec.now().unwrap();
    assert_eq!(
        journal.history_len(&s).await.unwrap(),
        0,
        "nothing durable before commit"
    );
    exec.commit(t.to_string().into_bytes()).await.unwrap();
    let kinds: Vec<_> = journal
        .read(&s, 1, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EntryKind::MessageReceived,
            EntryKind::ClockRead,
            EntryKind::Reply
        ]
    );
    // replay returns the journaled clock value
    let mut exec = DurableExecution::activate(journal, s, no_checkpoints())
        .await
        .unwrap();
    exec.next_replay().unwrap().unwrap();
    assert_eq!(exec.now().unwrap(), t);
}

async fn torn_tail_case(journal: Arc<dyn Journal>, corrupt: impl AsyncFn(&StreamId, u64)) {
    let s = stream();
    let effects = Arc::new(AtomicU64::new(0));
    let mut d = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    for m in ["+5", "+7", "-3"] {
        d.handle(m.as_bytes(), None).await.unwrap();
    }
    drop(d);
    let last = journal.next_seq(&s).await.unwrap() - 1;
    assert_eq!(last, 15);
    corrupt(&s, last).await;
    assert!(
        !journal.read(&s, last, last).await.unwrap()[0].is_valid(),
        "tail really corrupted"
    );

    let mut d = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(effects.clone()),
    )
    .await
    .expect("recovery must not fail on a torn tail");
    assert_eq!(d.execution().repaired_tail(), 1);
    // the third message lost its reply entry: it was replayed and completed live, its
    // journaled side effect was not re-run
    assert_eq!(d.handler().balance, 9);
    assert_eq!(effects.load(Ordering::SeqCst), 3);
    assert!(journal
        .read(&s, 1, u64::MAX)
        .await
        .unwrap()
        .iter()
        .all(|e| e.is_valid()));
    d.handle(b"+1", None).await.unwrap();
    assert_eq!(d.handler().balance, 10);

    // corruption followed by valid entries is not a torn tail: refuse, do not drop
    drop(d);
    corrupt(&s, 3).await;
    let err = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(effects),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Corrupt { seq: 3, .. }), "{err:?}");
}

#[tokio::test]
async fn torn_tail_is_truncated_on_recovery_memory() {
    let mem = MemoryJournal::new();
    let m2 = mem.clone();
    torn_tail_case(Arc::new(mem), async move |s: &StreamId, seq: u64| {
        assert!(m2.tamper(s, seq, |e| {
            let n = e.payload.len();
            e.payload.truncate(n / 2);
        }));
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_on_recovery_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = plexspaces_journal::SqliteJournal::open(plexspaces_journal::SqliteOptions::new(&path))
        .await
        .unwrap();
    let url = format!("sqlite://{}", path.display());
    torn_tail_case(Arc::new(j), async move |s: &StreamId, seq: u64| {
        // a torn write: the row's bytes are cut short and scrambled, as a partial page write would
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let n = sqlx::query(
            "UPDATE journal_entries SET payload = substr(randomblob(length(payload)), 1, length(payload) / 2 + 1)
             WHERE actor_id = ? AND seq = ?",
        )
        .bind(&s.actor_id)
        .bind(seq as i64)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(n, 1);
        pool.close().await;
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_is_truncated_on_recovery_postgres() {
    let schema = crate::support::PgSchema::new("torn");
    let j = plexspaces_journal::PostgresJournal::open(schema.options())
        .await
        .unwrap();
    let pool = schema.pool().await;
    let table = format!("{}.journal_entries", schema.name);
    torn_tail_case(Arc::new(j), async move |s: &StreamId, seq: u64| {
        let n = sqlx::query(&format!(
            "UPDATE {table} SET payload = substring(payload from 1 for length(payload) / 2) || '\\xdeadbeef'::bytea
             WHERE actor_id = $1 AND seq = $2"
        ))
        .bind(&s.actor_id)
        .bind(seq as i64)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(n, 1);
    })
    .await;
}

#[derive(Debug, Clone)]
enum Step {
    Deposit(u8),
    Withdraw(u8),
    Duplicate,
    Checkpoint,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<u8>().prop_map(Step::Deposit),
        3 => any::<u8>().prop_map(Step::Withdraw),
        1 => Just(Step::Duplicate),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn recovered_state_equals_live_state(steps in proptest::collection::vec(step(), 1..40), every in 1u64..6, truncate in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
            let s = stream();
            let effects = Arc::new(AtomicU64::new(0));
            let opts = DurableOptions {
                checkpoint: CheckpointPolicy { every_messages: Some(every), every: None, truncate },
                ..DurableOptions::default()
            };
            let mut live = Durable::activate(journal.clone(), s.clone(), opts.clone(), Account::new(effects.clone())).await.unwrap();
            let mut n = 0u64;
            let mut last_key: Option<(String, Vec<u8>, Vec<u8>)> = None;
            let mut executed = 0u64;
            for st in steps {
                match st {
                    Step::Deposit(v) | Step::Withdraw(v) => {
                        let msg = if matches!(st, Step::Deposit(_)) { format!("+{v}") } else { format!("-{v}") };
                        n += 1;
                        let key = format!("k{n}");
                        let reply = live.handle(msg.as_bytes(), Some(&key)).await.unwrap();
                        executed += 1;
                        last_key = Some((key, msg.into_bytes(), reply));
                    }
                    Step::Duplicate => {
                        if let Some((k, m, r)) = &last_key {
                            assert_eq!(&live.handle(m, Some(k)).await.unwrap(), r);
                        }
                    }
                    Step::Checkpoint => { live.checkpoint().await.unwrap(); }
                    Step::Restart => {
                        let recovered = Durable::activate(journal.clone(), s.clone(), opts.clone(), Account::new(effects.clone())).await.unwrap();
                        assert_eq!(recovered.handler().balance, live.handler().balance);
                        assert_eq!(recovered.handler().log, live.handler().log);
                        live = recovered;
                    }
                }
            }
            let recovered = Durable::activate(journal.clone(), s.clone(), opts.clone(), Account::new(effects.clone())).await.unwrap();
            assert_eq!(recovered.handler().balance, live.handler().balance);
            assert_eq!(recovered.handler().log, live.handler().log);
            assert_eq!(effects.load(Ordering::SeqCst), executed, "replay never re-runs a journaled effect");
        });
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
async fn concurrent_messages(journal: Arc<dyn Journal>) {
    let mut tasks = Vec::new();
    for i in 0..64 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let s = StreamId::new("t1", "group", &unique_name(&format!("g{i}")));
            let mut d = Durable::activate(
                journal.clone(),
                s.clone(),
                no_checkpoints(),
                Account::new(Arc::default()),
            )
            .await
            .unwrap();
            for _ in 0..5 {
                d.handle(b"+1", None).await.unwrap();
            }
            assert_eq!(journal.history_len(&s).await.unwrap(), 25);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_transactions_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let j = plexspaces_journal::SqliteJournal::open(plexspaces_journal::SqliteOptions::new(
        dir.path().join("j.db"),
    ))
    .await
    .unwrap();
    concurrent_messages(Arc::new(j.clone())).await;
    let stats = j.group_commit_stats();
    assert_eq!(
        stats.writes,
        64 * (1 + 5 * 3),
        "epoch + 3 appends per message: before the effect, its result, the reply"
    );
    assert!(
        stats.transactions < stats.writes,
        "concurrent appends share transactions: {stats:?}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_shares_transactions_postgres() {
    let schema = crate::support::PgSchema::new("group");
    let j = plexspaces_journal::PostgresJournal::open(schema.options())
        .await
        .unwrap();
    concurrent_messages(Arc::new(j.clone())).await;
    let stats = j.group_commit_stats();
    assert_eq!(stats.writes, 64 * (1 + 5 * 3));
    assert!(
        stats.transactions < stats.writes,
        "concurrent appends share transactions: {stats:?}"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_middle_entry_is_corruption_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let j = plexspaces_journal::SqliteJournal::open(plexspaces_journal::SqliteOptions::new(&path))
        .await
        .unwrap();
    let journal: Arc<dyn Journal> = Arc::new(j);
    let s = stream();
    let mut d = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(Arc::default()),
    )
    .await
    .unwrap();
    d.handle(b"+1", None).await.unwrap();
    d.handle(b"+2", None).await.unwrap();
    drop(d);
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("DELETE FROM journal_entries WHERE actor_id = ? AND seq = 3")
        .bind(&s.actor_id)
        .execute(&pool)
        .await
        .unwrap();
    let err = Durable::activate(
        journal.clone(),
        s.clone(),
        no_checkpoints(),
        Account::new(Arc::default()),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::Corrupt { seq: 3, .. }), "{err:?}");
    assert_eq!(
        journal.history_len(&s).await.unwrap(),
        9,
        "nothing was dropped"
    );
}
