//! The durability facet's output gate on the SQLite journal: commits of consecutive
//! messages coalesce, every reply leaves after its commit, and a commit that fails for real
//! (the stream fenced by a newer activation while commits are in flight) fails its reply and
//! every later one, and the next activation's state holds exactly the acknowledged messages.

#![cfg(feature = "sqlite")]

use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::{Actor, ActorRef, BoxError, Context, Envelope, Error, Node, SpawnOptions};
use plexspaces_journal::{
    CheckpointPolicy, DurabilityFacet, DurableOptions, Journal, SqliteJournal, SqliteOptions,
    StreamId,
};

/// A counter: `Some(n)` adds n, `None` reads. Answers the count, and tells the new count to
/// its probe if it has one.
#[derive(Default)]
struct Counter(u64, Option<ActorRef<Probe>>);

impl Actor for Counter {
    type Msg = Option<u64>;
    type Reply = u64;

    async fn handle_call(
        &mut self,
        n: Option<u64>,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<u64>, BoxError> {
        self.0 += n.unwrap_or(0);
        if let (Some(probe), Some(_)) = (&self.1, n) {
            probe.tell(self.0).await.map_err(|e| e.to_string())?;
        }
        Ok(Some(self.0))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<Option<u64>> {
        env.decode_json()
    }

    fn encode(msg: &Option<u64>) -> plexspaces_core::Result<Envelope> {
        Envelope::json("add", msg)
    }

    fn encode_reply(request_type: &str, reply: &u64) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<u64> {
        env.decode_json()
    }
}

/// Records, for each count it is told, how many messages the journal held durably then.
struct Probe {
    journal: Arc<SqliteJournal>,
    seen: Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
}

impl Actor for Probe {
    type Msg = u64;
    type Reply = ();

    async fn handle_call(
        &mut self,
        _: u64,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        Ok(Some(()))
    }

    async fn handle_cast(&mut self, count: u64, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let entries = self.journal.read(&stream(), 1, u64::MAX).await?;
        let received = entries
            .iter()
            .filter(|e| e.kind == plexspaces_journal::EntryKind::MessageReceived)
            .count() as u64;
        self.seen.lock().unwrap().push((count, received));
        Ok(())
    }
}

fn stream() -> StreamId {
    StreamId::new("acme", "gate", "counter")
}

async fn activate(node: &Node, journal: &Arc<SqliteJournal>, name: &str) -> ActorRef<Counter> {
    activate_with(node, journal, name, Counter::default()).await
}

async fn activate_with(
    node: &Node,
    journal: &Arc<SqliteJournal>,
    name: &str,
    counter: Counter,
) -> ActorRef<Counter> {
    let options = DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(64),
            every: None,
            truncate: false,
        },
        ..DurableOptions::default()
    };
    let journal: Arc<dyn Journal> = journal.clone();
    let facet = DurabilityFacet::new(journal, stream(), options);
    node.start(
        counter,
        SpawnOptions::named(name)
            .mailbox(plexspaces_core::MailboxConfig::Unbounded)
            .facet(facet),
    )
    .await
    .expect("activate")
}

/// 200 concurrent increments of 1: every reply is a distinct count (none lost, none
/// applied twice), and they took fewer transactions than messages (commits coalesced).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_coalesce_and_each_reply_follows_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(
        SqliteJournal::open(SqliteOptions::new(dir.path().join("j.db")))
            .await
            .unwrap(),
    );
    let node = Node::builder("og1").build().await.unwrap();
    let counter = activate(&node, &journal, "c").await;
    let before = journal.group_commit_stats();
    let mut asks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let counter = counter.clone();
        asks.spawn(async move { counter.ask_timeout(Some(1), Duration::from_secs(30)).await });
    }
    let mut counts = Vec::new();
    while let Some(r) = asks.join_next().await {
        counts.push(r.unwrap().unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=200).collect::<Vec<_>>());
    let after = journal.group_commit_stats();
    let transactions = after.transactions - before.transactions;
    assert!(
        transactions < 200,
        "200 messages took {transactions} transactions: commits did not coalesce"
    );
    // A fresh activation (the first one is fenced by it) rebuilds the same state.
    counter.stop(plexspaces_core::ExitReason::Normal);
    let _ = counter.wait().await;
    let again = activate(&node, &journal, "c2").await;
    assert_eq!(again.ask(None).await.unwrap(), 200);
    node.shutdown().await;
}

/// A newer activation fences the stream while commits are in flight: commits queued after
/// the fence fail for real in SQLite. Replies of failed commits (and any after them) fail;
/// the actor stops; the next activation's count is exactly the number of acknowledged
/// increments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_failed_by_fencing_releases_no_reply_and_the_state_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(
        SqliteJournal::open(SqliteOptions::new(dir.path().join("j.db")))
            .await
            .unwrap(),
    );
    let node = Node::builder("og2").build().await.unwrap();
    let counter = activate(&node, &journal, "c").await;
    let mut asks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let counter = counter.clone();
        let journal = journal.clone();
        asks.spawn(async move {
            if i == 100 {
                // What a second activation does first: take a newer epoch.
                journal.acquire_epoch(&stream()).await.expect("fence");
            }
            counter.ask_timeout(Some(1), Duration::from_secs(30)).await
        });
    }
    let mut acked = Vec::new();
    let mut failed = 0;
    while let Some(r) = asks.join_next().await {
        match r.unwrap() {
            Ok(count) => acked.push(count),
            Err(Error::Facet { message, .. }) => {
                assert!(
                    message.contains("fenced")
                        || message.contains("commit")
                        || message.contains("poison"),
                    "{message}"
                );
                failed += 1;
            }
            // Asks that reached the mailbox after the actor stopped.
            Err(Error::NoProc(_)) | Err(Error::ActorFailed(_)) => failed += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert!(failed > 0, "the fence failed some commits");
    acked.sort_unstable();
    let n = acked.len() as u64;
    assert_eq!(
        acked,
        (1..=n).collect::<Vec<_>>(),
        "acknowledged counts are 1..=n: no gap, no duplicate"
    );
    let reason = tokio::time::timeout(Duration::from_secs(10), counter.wait())
        .await
        .expect("the fenced actor stops");
    assert!(reason.is_ok());
    let rebuilt = activate(&node, &journal, "c2").await;
    assert_eq!(
        rebuilt.ask(None).await.unwrap(),
        n,
        "the rebuilt state holds exactly the acknowledged increments"
    );
    node.shutdown().await;
}

/// A message a durable handler sends to another actor leaves only once the message being
/// handled, and every earlier one, is in the journal: the probe, reading the journal when
/// told count n, always finds at least n messages there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_another_actor_waits_until_the_sender_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Arc::new(
        SqliteJournal::open(SqliteOptions::new(dir.path().join("j.db")))
            .await
            .unwrap(),
    );
    let node = Node::builder("og3").build().await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let probe = node
        .spawn(Probe {
            journal: journal.clone(),
            seen: seen.clone(),
        })
        .unwrap();
    let counter = activate_with(&node, &journal, "c", Counter(0, Some(probe))).await;
    let mut asks = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let counter = counter.clone();
        asks.spawn(async move { counter.ask_timeout(Some(1), Duration::from_secs(30)).await });
    }
    while let Some(r) = asks.join_next().await {
        r.unwrap().unwrap();
    }
    assert!(
        plexspaces_test_util::eventually(Duration::from_secs(10), || {
            let n = seen.lock().unwrap().len();
            async move { n == 100 }
        })
        .await
    );
    for (count, received) in seen.lock().unwrap().iter() {
        assert!(
            received >= count,
            "count {count} reached another actor while the journal held {received} messages"
        );
    }
    node.shutdown().await;
}
