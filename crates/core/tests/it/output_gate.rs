//! The output gate: a facet that defers its commits (`after_message_gated`) lets the actor
//! go on while each reply is held until its commit, and the earlier ones, resolved.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use plexspaces_core::facet::{ActorInfo, Commit, MessageMeta, MessageOutcome};
use plexspaces_core::{
    Actor, ActorRef, BoxError, Context, Error, ExitReason, Facet, Node, SpawnOptions,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Adds what it is asked and answers the new total.
#[derive(Default)]
struct Sum(u64);

impl Actor for Sum {
    type Msg = u64;
    type Reply = u64;

    async fn handle_call(
        &mut self,
        n: u64,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<u64>, BoxError> {
        self.0 += n;
        Ok(Some(self.0))
    }
}

/// Defers every message's commit to a oneshot the test resolves.
#[derive(Default)]
struct Deferring {
    commits: Mutex<Vec<oneshot::Sender<plexspaces_core::Result<()>>>>,
}

impl Deferring {
    fn in_flight(&self) -> usize {
        self.commits.lock().len()
    }

    /// Resolves the `i`th commit (in message order).
    fn resolve(&self, i: usize, outcome: plexspaces_core::Result<()>) {
        let (tx, _) = oneshot::channel();
        let commit = std::mem::replace(&mut self.commits.lock()[i], tx);
        let _ = commit.send(outcome);
    }
}

#[async_trait]
impl Facet for Deferring {
    fn name(&self) -> &'static str {
        "deferring"
    }

    async fn after_message_gated(
        &self,
        _actor: &ActorInfo,
        _msg: &MessageMeta,
        _outcome: &MessageOutcome,
    ) -> plexspaces_core::Result<Option<Commit>> {
        let (tx, rx) = oneshot::channel();
        self.commits.lock().push(tx);
        Ok(Some(Box::pin(async move {
            rx.await
                .unwrap_or_else(|_| Err(Error::Transport("commit dropped".into())))
        })))
    }
}

async fn start(node: &Node, facet: &Arc<Deferring>) -> ActorRef<Sum> {
    node.start(Sum::default(), SpawnOptions::default().facet(facet.clone()))
        .await
        .expect("start")
}

fn ask(actor: &ActorRef<Sum>, n: u64) -> JoinHandle<plexspaces_core::Result<u64>> {
    let actor = actor.clone();
    tokio::spawn(async move { actor.ask_timeout(n, Duration::from_secs(20)).await })
}

/// Asks one at a time (so their order is known) until each has been handled and its commit
/// is in flight.
async fn asks_in_flight(
    actor: &ActorRef<Sum>,
    facet: &Deferring,
    amounts: &[u64],
) -> Vec<JoinHandle<plexspaces_core::Result<u64>>> {
    let mut asks = Vec::new();
    for (i, n) in amounts.iter().enumerate() {
        asks.push(ask(actor, *n));
        let handled = plexspaces_test_util::eventually(Duration::from_secs(10), || async {
            facet.in_flight() == i + 1
        })
        .await;
        assert!(
            handled,
            "message {i} was handled while earlier commits are in flight"
        );
    }
    asks
}

/// Lets the gate run, then says which asks have an answer.
async fn answered(asks: &[JoinHandle<plexspaces_core::Result<u64>>]) -> Vec<bool> {
    tokio::time::sleep(Duration::from_millis(50)).await;
    asks.iter().map(JoinHandle::is_finished).collect()
}

#[tokio::test]
async fn replies_wait_for_their_commit_and_leave_in_message_order() {
    let node = Node::builder("gate1").build().await.unwrap();
    let facet = Arc::new(Deferring::default());
    let actor = start(&node, &facet).await;
    let mut asks = asks_in_flight(&actor, &facet, &[1, 2, 3]).await;
    assert_eq!(
        answered(&asks).await,
        [false, false, false],
        "no reply before its commit"
    );
    // The second commit resolves first: its reply still waits for the first.
    facet.resolve(1, Ok(()));
    assert_eq!(answered(&asks).await, [false, false, false]);
    facet.resolve(0, Ok(()));
    assert_eq!(answered(&asks).await, [true, true, false]);
    facet.resolve(2, Ok(()));
    let mut totals = Vec::new();
    for ask in asks.drain(..) {
        totals.push(ask.await.unwrap().unwrap());
    }
    assert_eq!(
        totals,
        [1, 3, 6],
        "each reply is the state after its message"
    );
    assert!(actor.is_alive());
    node.shutdown().await;
}

#[tokio::test]
async fn a_failed_commit_fails_its_reply_and_every_later_one_and_stops_the_actor() {
    let node = Node::builder("gate2").build().await.unwrap();
    let facet = Arc::new(Deferring::default());
    let actor = start(&node, &facet).await;
    let asks = asks_in_flight(&actor, &facet, &[1, 2, 3]).await;
    facet.resolve(2, Ok(()));
    facet.resolve(0, Ok(()));
    facet.resolve(1, Err(Error::Transport("disk gone".into())));
    let mut outcomes = Vec::new();
    for ask in asks {
        outcomes.push(ask.await.unwrap());
    }
    assert_eq!(outcomes[0].as_ref().ok(), Some(&1));
    for later in &outcomes[1..] {
        match later {
            Err(Error::Transport(m)) => assert_eq!(m, "disk gone"),
            other => panic!("a reply after the failed commit leaked: {other:?}"),
        }
    }
    let reason = tokio::time::timeout(Duration::from_secs(10), actor.wait())
        .await
        .expect("the actor stops after a failed commit")
        .expect("wait");
    match reason {
        ExitReason::Error(m) => assert!(m.contains("commit failed"), "{m}"),
        other => panic!("unexpected exit {other:?}"),
    }
    node.shutdown().await;
}

#[tokio::test]
async fn a_reply_without_a_commit_queues_behind_held_ones() {
    /// Defers only the first message's commit.
    #[derive(Default)]
    struct FirstOnly {
        inner: Deferring,
    }

    #[async_trait]
    impl Facet for FirstOnly {
        fn name(&self) -> &'static str {
            "first-only"
        }

        async fn after_message_gated(
            &self,
            actor: &ActorInfo,
            msg: &MessageMeta,
            outcome: &MessageOutcome,
        ) -> plexspaces_core::Result<Option<Commit>> {
            if self.inner.in_flight() == 0 {
                self.inner.after_message_gated(actor, msg, outcome).await
            } else {
                Ok(None)
            }
        }
    }

    let node = Node::builder("gate3").build().await.unwrap();
    let facet = Arc::new(FirstOnly::default());
    let actor = node
        .start(Sum::default(), SpawnOptions::default().facet(facet.clone()))
        .await
        .unwrap();
    let first = ask(&actor, 1);
    assert!(
        plexspaces_test_util::eventually(Duration::from_secs(10), || async {
            facet.inner.in_flight() == 1
        })
        .await
    );
    let second = ask(&actor, 2);
    let asks = [first, second];
    assert_eq!(
        answered(&asks).await,
        [false, false],
        "the second reply needs no commit, yet waits for the first"
    );
    facet.inner.resolve(0, Ok(()));
    let [first, second] = asks;
    assert_eq!(first.await.unwrap().unwrap(), 1);
    assert_eq!(second.await.unwrap().unwrap(), 3);
    node.shutdown().await;
}
