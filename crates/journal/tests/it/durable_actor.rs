//! The durability facet on real actors: recovery by snapshot + replay, side effects that are
//! not re-run, idempotent requests, epoch fencing, journal mismatch, checkpoints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::{
    Actor, ActorRef, BoxError, Context, Envelope, Error, ExitReason, Node, SpawnOptions,
};
use plexspaces_journal::{
    CheckpointPolicy, Durability, DurabilityFacet, DurableOptions, Journal, MemoryJournal,
    StreamId, IDEMPOTENCY_KEY_HEADER,
};
use proptest::prelude::*;

/// A durable account: deposits go through a side effect ("charge") whose executions are
/// counted, so tests can tell whether replay re-ran it.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Account {
    balance: i64,
    history: Vec<i64>,
    #[serde(skip)]
    charges: Arc<AtomicU64>,
    /// The name of the side effect; a test changes it to simulate changed code.
    #[serde(skip)]
    effect_name: &'static str,
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum Op {
    Deposit(i64),
    Balance,
}

impl Account {
    fn new(charges: &Arc<AtomicU64>) -> Self {
        Account {
            charges: charges.clone(),
            effect_name: "charge",
            ..Account::default()
        }
    }
}

impl Actor for Account {
    type Msg = Op;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        op: Op,
        ctx: &mut Context<Self>,
    ) -> Result<Option<i64>, BoxError> {
        match op {
            Op::Deposit(amount) => {
                let durable = ctx.service::<Durability>().ok_or("not durable")?;
                let charges = self.charges.clone();
                let receipt: String = durable
                    .side_effect(self.effect_name, |key| async move {
                        charges.fetch_add(1, Ordering::SeqCst);
                        key.to_string()
                    })
                    .await?;
                assert!(
                    receipt.contains("/"),
                    "the effect got a deterministic key: {receipt}"
                );
                self.balance += amount;
                self.history.push(amount);
                Ok(Some(self.balance))
            }
            Op::Balance => Ok(Some(self.balance)),
        }
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<Op> {
        env.decode_json()
    }

    fn encode(op: &Op) -> plexspaces_core::Result<Envelope> {
        Envelope::json("op", op)
    }

    fn encode_reply(request_type: &str, reply: &i64) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<i64> {
        env.decode_json()
    }

    fn snapshot(&self) -> plexspaces_core::Result<Option<Vec<u8>>> {
        serde_json::to_vec(self)
            .map(Some)
            .map_err(|e| Error::Encode(e.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> plexspaces_core::Result<()> {
        let saved: Account = serde_json::from_slice(snapshot).map_err(|e| Error::Decode {
            msg_type: "snapshot".into(),
            detail: e.to_string(),
        })?;
        self.balance = saved.balance;
        self.history = saved.history;
        Ok(())
    }
}

fn options(every: Option<u64>) -> DurableOptions {
    DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: every,
            every: None,
            truncate: true,
        },
        // these tests pin abort-and-skip; retries are `crates/journal/tests/faults/retries.rs`
        retry: plexspaces_journal::RetryPolicy::disabled(),
        ..DurableOptions::default()
    }
}

async fn activate(
    node: &Node,
    journal: &Arc<dyn Journal>,
    account: Account,
    every: Option<u64>,
) -> plexspaces_core::Result<ActorRef<Account>> {
    let stream = StreamId::new("acme", "bank", "account-1");
    let facet = DurabilityFacet::new(journal.clone(), stream, options(every));
    node.start(account, SpawnOptions::named("account-1").facet(facet))
        .await
}

#[tokio::test]
async fn a_killed_durable_actor_recovers_its_state_without_re_running_effects() {
    let node = Node::builder("d1").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let charges = Arc::new(AtomicU64::new(0));
    let account = activate(&node, &journal, Account::new(&charges), Some(3))
        .await
        .unwrap();
    for amount in [10, 20, 30, 40, 50] {
        account.ask(Op::Deposit(amount)).await.unwrap();
    }
    account.kill();
    account.wait().await.unwrap();
    assert_eq!(charges.load(Ordering::SeqCst), 5);

    let revived = activate(&node, &journal, Account::new(&charges), Some(3))
        .await
        .unwrap();
    assert_eq!(revived.ask(Op::Balance).await.unwrap(), 150);
    assert_eq!(
        charges.load(Ordering::SeqCst),
        5,
        "replay returned journaled results"
    );
    revived.ask(Op::Deposit(1)).await.unwrap();
    assert_eq!(charges.load(Ordering::SeqCst), 6);
    node.shutdown().await;
}

#[tokio::test]
async fn checkpoints_bound_the_history_the_actor_sees() {
    let node = Node::builder("d2").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let charges = Arc::new(AtomicU64::new(0));
    let account = activate(&node, &journal, Account::new(&charges), Some(4))
        .await
        .unwrap();
    for _ in 0..40 {
        account.ask(Op::Deposit(1)).await.unwrap();
    }
    let stream = StreamId::new("acme", "bank", "account-1");
    let len = journal.history_len(&stream).await.unwrap();
    assert!(
        len < 40,
        "old entries were truncated after checkpoints ({len} left)"
    );
    account.stop(ExitReason::Shutdown);
    account.wait().await.unwrap();
    let revived = activate(&node, &journal, Account::new(&charges), Some(4))
        .await
        .unwrap();
    assert_eq!(revived.ask(Op::Balance).await.unwrap(), 40);
    node.shutdown().await;
}

#[tokio::test]
async fn fifty_concurrent_duplicates_run_once_and_get_the_same_reply() {
    let node = Node::builder("d3").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let charges = Arc::new(AtomicU64::new(0));
    let account = activate(&node, &journal, Account::new(&charges), None)
        .await
        .unwrap();
    let pid = account.pid();
    let asks = (0..50).map(|_| {
        let pid = pid.clone();
        tokio::spawn(async move {
            let env = Envelope::json("op", &Op::Deposit(25))?
                .with_header(IDEMPOTENCY_KEY_HEADER, "pay-1");
            pid.ask_envelope(env, Duration::from_secs(10)).await
        })
    });
    let mut replies: Vec<Envelope> = Vec::new();
    for ask in asks.collect::<Vec<_>>() {
        replies.push(ask.await.unwrap().unwrap());
    }
    assert!(
        replies.iter().all(|r| r == &replies[0]),
        "identical replies"
    );
    assert_eq!(replies[0].decode_json::<i64>().unwrap(), 25);
    assert_eq!(charges.load(Ordering::SeqCst), 1, "one execution");
    assert_eq!(account.ask(Op::Balance).await.unwrap(), 25);
    node.shutdown().await;
}

#[tokio::test]
async fn a_second_activation_fences_the_first() {
    let node = Node::builder("d4").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let charges = Arc::new(AtomicU64::new(0));
    let first = activate(&node, &journal, Account::new(&charges), None)
        .await
        .unwrap();
    first.ask(Op::Deposit(5)).await.unwrap();
    // A second activation of the same stream (say, on another node after a partition).
    let node2 = Node::builder("d4b").build().await.unwrap();
    let second = activate(&node2, &journal, Account::new(&charges), None)
        .await
        .unwrap();
    assert_eq!(second.ask(Op::Balance).await.unwrap(), 5);
    // The first activation's journal write (made before its side effect may run) is
    // refused, so the effect does not run and its caller gets an error.
    let err = first.ask(Op::Deposit(7)).await.unwrap_err();
    assert!(err.to_string().contains("fenced"), "{err:?}");
    assert_eq!(
        charges.load(Ordering::SeqCst),
        1,
        "the fenced activation ran no effect"
    );
    assert!(
        matches!(first.wait().await.unwrap(), ExitReason::Error(_)),
        "the fenced activation stops"
    );
    assert_eq!(
        second.ask(Op::Deposit(1)).await.unwrap(),
        6,
        "the new activation owns the stream"
    );
    node.shutdown().await;
    node2.shutdown().await;
}

#[tokio::test]
async fn changed_code_that_asks_for_another_effect_fails_with_a_mismatch_naming_the_step() {
    let node = Node::builder("d5").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let charges = Arc::new(AtomicU64::new(0));
    let account = activate(&node, &journal, Account::new(&charges), None)
        .await
        .unwrap();
    account.ask(Op::Deposit(5)).await.unwrap();
    account.kill();
    account.wait().await.unwrap();
    let mut changed = Account::new(&charges);
    changed.effect_name = "charge_v2";
    let err = activate(&node, &journal, changed, None).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::StartFailed(_)), "{err:?}");
    assert!(
        text.contains("mismatch") && text.contains("charge_v2"),
        "{text}"
    );
    assert_eq!(charges.load(Ordering::SeqCst), 1, "nothing re-ran");
    node.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]
    /// For random deposits, checkpoint intervals and kill points, the recovered state
    /// equals the live state.
    #[test]
    fn recovered_state_equals_live_state(
        amounts in proptest::collection::vec(-50i64..100, 1..30),
        every in proptest::option::of(1u64..6),
        kill_after in proptest::collection::vec(0usize..30, 0..3),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (live, recovered) = runtime.block_on(async {
            let node = Node::builder("p").build().await.unwrap();
            let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
            let charges = Arc::new(AtomicU64::new(0));
            let mut account = activate(&node, &journal, Account::new(&charges), every).await.unwrap();
            let mut live = 0;
            for (i, amount) in amounts.iter().enumerate() {
                live = account.ask(Op::Deposit(*amount)).await.unwrap();
                if kill_after.contains(&i) {
                    account.kill();
                    account.wait().await.unwrap();
                    account = activate(&node, &journal, Account::new(&charges), every).await.unwrap();
                }
            }
            account.kill();
            account.wait().await.unwrap();
            let revived = activate(&node, &journal, Account::new(&charges), every).await.unwrap();
            let recovered = revived.ask(Op::Balance).await.unwrap();
            node.shutdown().await;
            (live, recovered)
        });
        prop_assert_eq!(live, amounts.iter().sum::<i64>());
        prop_assert_eq!(recovered, live);
    }
}

/// Counts reminder fires; durable, so a re-delivered tick is handled once.
#[derive(Default)]
struct Alarm {
    fires: Vec<(String, u64)>,
}

impl Actor for Alarm {
    type Msg = plexspaces_journal::ReminderFired;
    type Reply = usize;

    async fn handle_call(
        &mut self,
        fired: plexspaces_journal::ReminderFired,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<usize>, BoxError> {
        self.fires.push((fired.name, fired.missed_ticks));
        Ok(Some(self.fires.len()))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<Self::Msg> {
        env.decode_json()
    }

    fn encode(msg: &Self::Msg) -> plexspaces_core::Result<Envelope> {
        Envelope::json(plexspaces_journal::REMINDER_MSG_TYPE, msg)
    }

    fn encode_reply(request_type: &str, reply: &usize) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<usize> {
        env.decode_json()
    }
}

#[tokio::test]
async fn reminders_reach_actors_and_a_missed_stretch_fires_once() {
    use plexspaces_journal::{
        ActorReminderSink, ManualClock, MemoryReminderStore, Reminder, ReminderScheduler,
        ReminderSchedulerOptions, ReminderStore,
    };
    let node = Node::builder("r1").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let owner = StreamId::new("acme", "alarms", "alarm-1");
    let facet = DurabilityFacet::new(journal, owner.clone(), options(None));
    let alarm = node
        .start(
            Alarm::default(),
            SpawnOptions::named("alarm-1").facet(facet),
        )
        .await
        .unwrap();
    let store: Arc<dyn ReminderStore> = Arc::new(MemoryReminderStore::new());
    store
        .upsert(&Reminder {
            owner: owner.clone(),
            name: "ring".into(),
            due_at_ms: 1_000,
            period_ms: Some(1_000),
            payload: b"wake up".to_vec(),
        })
        .await
        .unwrap();
    let clock = ManualClock::new(500);
    let scheduler = ReminderScheduler::new(
        store.clone(),
        ReminderSchedulerOptions {
            clock: clock.clone(),
            ..ReminderSchedulerOptions::default()
        },
    );
    let sink = ActorReminderSink::new(node.clone(), Duration::from_secs(5));
    assert_eq!(
        scheduler.tick(sink.as_ref()).await.unwrap(),
        0,
        "not due yet"
    );
    clock.set(1_000);
    assert_eq!(scheduler.tick(sink.as_ref()).await.unwrap(), 1);
    // Nothing polled for 4.5 periods (say the process was down): one fire, 4 ticks missed.
    clock.set(5_500);
    assert_eq!(scheduler.tick(sink.as_ref()).await.unwrap(), 1);
    assert_eq!(scheduler.tick(sink.as_ref()).await.unwrap(), 0, "no burst");
    let fires = alarm.ask(plexspaces_journal::ReminderFired {
        name: "probe".into(),
        payload: Vec::new(),
        due_at_ms: 0,
        missed_ticks: 0,
    });
    assert_eq!(
        fires.await.unwrap(),
        3,
        "two reminder fires, then this probe"
    );
    assert_eq!(
        store.get(&owner, "ring").await.unwrap().unwrap().due_at_ms,
        6_000
    );
    node.shutdown().await;
}

/// Adds to a durable sum; answers `Later` only after its handler has returned (from a
/// spawned task), and `Inside` through the reply handle before returning.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Summer {
    sum: i64,
}

#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
enum SumOp {
    Inside(i64),
    Later(i64),
    Sum,
}

impl Actor for Summer {
    type Msg = SumOp;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        op: SumOp,
        ctx: &mut Context<Self>,
    ) -> Result<Option<i64>, BoxError> {
        match op {
            SumOp::Inside(n) => {
                self.sum += n;
                let handle = ctx.reply_handle().ok_or("an ask")?;
                handle.send(self.sum);
                Ok(None)
            }
            SumOp::Later(n) => {
                self.sum += n;
                let handle = ctx.reply_handle().ok_or("an ask")?;
                let sum = self.sum;
                tokio::spawn(async move {
                    tokio::task::yield_now().await;
                    handle.send(sum);
                });
                Ok(None)
            }
            SumOp::Sum => Ok(Some(self.sum)),
        }
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<SumOp> {
        env.decode_json()
    }

    fn encode(op: &SumOp) -> plexspaces_core::Result<Envelope> {
        Envelope::json("op", op)
    }

    fn encode_reply(request_type: &str, reply: &i64) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<i64> {
        env.decode_json()
    }
}

#[tokio::test]
async fn replies_through_the_handle_are_journaled_first_or_refused() {
    let node = Node::builder("deferred").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let stream = StreamId::new("acme", "sums", "s-1");
    let start = |name: &str| {
        let facet = DurabilityFacet::new(journal.clone(), stream.clone(), options(None));
        node.start(Summer::default(), SpawnOptions::named(name).facet(facet))
    };
    let summer = start("s-1").await.unwrap();
    let keyed = |op: SumOp, key: &str| {
        Envelope::json("op", &op)
            .unwrap()
            .with_header(IDEMPOTENCY_KEY_HEADER, key.to_owned())
    };
    let pid = summer.pid();
    let timeout = Duration::from_secs(10);
    // Answered inside the handler: the reply is journaled, so a duplicate gets it back.
    let first = pid
        .ask_envelope(keyed(SumOp::Inside(5), "k1"), timeout)
        .await
        .unwrap();
    assert_eq!(first.decode_json::<i64>().unwrap(), 5);
    let duplicate = pid
        .ask_envelope(keyed(SumOp::Inside(5), "k1"), timeout)
        .await
        .unwrap();
    assert_eq!(
        duplicate.payload, first.payload,
        "the recorded reply, not an empty one"
    );

    // Answered after the handler returned: refused with a typed error, and the actor stops
    // so that its state does not outlive the journal.
    let refused = summer.ask(SumOp::Later(100)).await.unwrap_err();
    assert_eq!(refused.kind(), "unsupported", "{refused}");
    assert!(matches!(
        summer.pid().wait().await,
        Ok(ExitReason::Error(_))
    ));

    // A new activation recovers what the journal holds: 5, without the refused 100.
    let again = start("s-2").await.unwrap();
    assert_eq!(again.ask(SumOp::Sum).await.unwrap(), 5);
    node.shutdown().await;
}

/// J9 past the retention limit (guarantee 7 in docs/durability.md): with the default
/// retention of 10,000 keys, the oldest key is forgotten once 10,000 newer keys have run, so
/// a request resent with it runs again; a key still retained is answered from the cache,
/// live and after a reactivation that rebuilds the cache from a snapshot plus the journal
/// suffix (checkpoints every 1,000 messages, so both sources hold keys).
#[tokio::test]
async fn past_the_idempotency_retention_the_oldest_key_runs_again() {
    let retention = DurableOptions::default().idempotency_retention;
    assert_eq!(retention, 10_000, "the documented default");
    let node = Node::builder("d-retention").build().await.unwrap();
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let charges = Arc::new(AtomicU64::new(0));
    let deposit = |pid: &plexspaces_core::Pid, key: String| {
        let pid = pid.clone();
        async move {
            let env = Envelope::json("op", &Op::Deposit(1))
                .unwrap()
                .with_header(IDEMPOTENCY_KEY_HEADER, key);
            let reply = pid.ask_envelope(env, Duration::from_secs(10)).await;
            reply.unwrap().decode_json::<i64>().unwrap()
        }
    };
    let account = activate(&node, &journal, Account::new(&charges), Some(1_000))
        .await
        .unwrap();
    // key-0 .. key-10000: 10,001 keys, one more than the retention.
    for i in 0..=retention {
        assert_eq!(
            deposit(&account.pid(), format!("key-{i}")).await,
            i as i64 + 1
        );
    }
    let sent = retention as u64 + 1;
    assert_eq!(charges.load(Ordering::SeqCst), sent);

    // key-1 is the oldest retained key: answered from the cache, nothing runs.
    assert_eq!(deposit(&account.pid(), "key-1".into()).await, 2);
    assert_eq!(
        charges.load(Ordering::SeqCst),
        sent,
        "a retained key runs once"
    );

    // After a reactivation the cache comes back from the snapshot and the journal suffix.
    account.kill();
    account.wait().await.unwrap();
    let revived = activate(&node, &journal, Account::new(&charges), Some(1_000))
        .await
        .unwrap();
    assert_eq!(revived.ask(Op::Balance).await.unwrap(), sent as i64);
    assert_eq!(deposit(&revived.pid(), "key-1".into()).await, 2);
    assert_eq!(
        deposit(&revived.pid(), format!("key-{retention}")).await,
        sent as i64
    );
    assert_eq!(
        charges.load(Ordering::SeqCst),
        sent,
        "retained keys run once after recovery"
    );

    // key-0 was evicted: the request runs again, as a new one.
    assert_eq!(
        deposit(&revived.pid(), "key-0".into()).await,
        sent as i64 + 1
    );
    assert_eq!(
        charges.load(Ordering::SeqCst),
        sent + 1,
        "an evicted key runs again"
    );
    assert_eq!(revived.ask(Op::Balance).await.unwrap(), sent as i64 + 1);
    node.shutdown().await;
}
