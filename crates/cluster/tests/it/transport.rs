//! Remote tell/ask/link/monitor over the TCP transport, with the same results as core's
//! loopback tests; handshake refusals; the bounded queue; batching; connection loss.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plexspaces_cluster::{Network, NetworkOptions};
use plexspaces_core::{ActorId, ActorRef, Error, ExitReason, Transport};

use crate::common::{tcp_node, two_tcp_nodes, until, Counter, Echo, Log, Obs, Observer};

const WAIT: Duration = Duration::from_secs(10);

fn id(text: &str) -> ActorId {
    ActorId::parse(text).expect("valid id")
}

#[tokio::test]
async fn tell_and_ask_cross_real_tcp_through_the_same_api() {
    let (alpha, _a, beta, _b) = two_tcp_nodes("t-tell").await;
    alpha.spawn_named("echo", Echo).unwrap();
    let remote: ActorRef<Echo> = beta.actor_ref(&id("echo@alpha")).unwrap();
    assert!(!remote.is_local());
    assert_eq!(remote.ask("hello".to_string()).await.unwrap(), "echo:hello");
    remote.tell("fire".to_string()).await.unwrap();
    assert_eq!(remote.ask("again".to_string()).await.unwrap(), "echo:again");
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn remote_errors_come_back_typed() {
    let (alpha, _a, beta, _b) = two_tcp_nodes("t-errors").await;
    alpha.spawn_named("echo", Echo).unwrap();
    let missing: ActorRef<Echo> = beta.actor_ref(&id("nobody@alpha")).unwrap();
    assert!(matches!(
        missing.ask("x".to_string()).await,
        Err(Error::NoProc(_))
    ));
    let unknown: ActorRef<Echo> = beta.actor_ref(&id("echo@gamma")).unwrap();
    assert!(matches!(
        unknown.ask("x".to_string()).await,
        Err(Error::Transport(_))
    ));
    let echo: ActorRef<Echo> = beta.actor_ref(&id("echo@alpha")).unwrap();
    let err = echo.ask("crash".to_string()).await.unwrap_err();
    assert_eq!(err.kind(), "actor_failed", "{err:?}");
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn frames_from_one_node_to_another_arrive_in_order() {
    let (alpha, a_net, beta, _b) = two_tcp_nodes("t-order").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    alpha
        .spawn_named("counter", Counter { seen: seen.clone() })
        .unwrap();
    let counter: ActorRef<Counter> = beta.actor_ref(&id("counter@alpha")).unwrap();
    for n in 0..5_000u64 {
        counter.tell(n).await.unwrap();
    }
    // An ask behind the tells on the same connection sees all of them.
    assert_eq!(counter.ask(0u64).await.unwrap(), 5_000);
    assert_eq!(*seen.lock(), (0..5_000u64).collect::<Vec<_>>());
    assert_eq!(a_net.stats().frames_received, 5_001);
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn queued_frames_are_written_in_batches() {
    let (alpha, _a, beta, b_net) = two_tcp_nodes("t-batch").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    alpha
        .spawn_named("counter", Counter { seen: seen.clone() })
        .unwrap();
    let counter: ActorRef<Counter> = beta.actor_ref(&id("counter@alpha")).unwrap();
    // On one thread the writer cannot run until this loop yields, so all 2000 frames are
    // queued when it does and go out in a few writes.
    for n in 0..2_000u64 {
        counter.try_tell(n).unwrap();
    }
    assert_eq!(counter.ask(0u64).await.unwrap(), 2_000);
    let stats = b_net.stats();
    assert_eq!(stats.frames_sent, 2_001);
    assert!(
        stats.writes * 10 < stats.frames_sent,
        "expected batching, got {stats:?}"
    );
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_send_queue_fails_the_send_at_once_and_hands_the_message_back() {
    let (alpha, _a, beta, b_net) = {
        let (a, a_net) = tcp_node("t-full", "alpha").await;
        let (b, b_net) =
            crate::common::tcp_node_with(NetworkOptions::new("t-full", "beta").send_queue(8)).await;
        b_net.add_peer("alpha", a_net.local_addr());
        (a, a_net, b, b_net)
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    alpha
        .spawn_named("counter", Counter { seen: seen.clone() })
        .unwrap();
    let counter: ActorRef<Counter> = beta.actor_ref(&id("counter@alpha")).unwrap();
    // Nothing yields in this loop, so the writer drains nothing: 8 fit, the 9th does not.
    for n in 0..8u64 {
        counter.try_tell(n).unwrap();
    }
    let err = counter.try_tell(8u64).unwrap_err();
    assert_eq!(err.to_error(counter.id()).kind(), "transport");
    assert_eq!(err.into_inner(), 8);
    assert_eq!(b_net.stats().queue_full, 1);
    // The queued ones are delivered; the refused one never is.
    until("8 delivered", WAIT, || seen.lock().len() == 8).await;
    assert_eq!(counter.ask(0u64).await.unwrap(), 8);
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn monitors_and_links_work_across_tcp() {
    let (alpha, _a, beta, _b) = two_tcp_nodes("t-links").await;
    let log = Log::default();
    alpha.spawn_named("echo", Echo).unwrap();
    let observer = beta
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    let remote_echo = beta.pid(&id("echo@alpha")).unwrap();
    observer
        .ask(Obs::Monitor(remote_echo.clone()))
        .await
        .unwrap();
    observer.ask(Obs::Trap).await.unwrap();
    observer.ask(Obs::Link(remote_echo)).await.unwrap();
    let echo: ActorRef<Echo> = beta.actor_ref(&id("echo@alpha")).unwrap();
    let _ = echo.ask("crash".to_string()).await;
    until("down and exit arrive", WAIT, || log.entries().len() == 2).await;
    assert_eq!(
        log.sorted(),
        vec![
            "down:echo@alpha:error: echo crashed",
            "exit:echo@alpha:error: echo crashed"
        ]
    );
    let ghost = beta.pid(&id("ghost@alpha")).unwrap();
    observer.ask(Obs::Monitor(ghost)).await.unwrap();
    until("noproc down", WAIT, || {
        log.entries()
            .contains(&"down:ghost@alpha:noproc".to_string())
    })
    .await;
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_lost_connection_is_noconnection_once_for_links_monitors_and_pending_asks() {
    let (alpha, a_net, beta, _b) = two_tcp_nodes("t-lost").await;
    let log = Log::default();
    alpha.spawn_named("echo", Echo).unwrap();
    let observer = beta
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    let remote_echo = beta.pid(&id("echo@alpha")).unwrap();
    observer.ask(Obs::Trap).await.unwrap();
    observer
        .ask(Obs::Monitor(remote_echo.clone()))
        .await
        .unwrap();
    observer.ask(Obs::Link(remote_echo)).await.unwrap();
    let echo: ActorRef<Echo> = beta.actor_ref(&id("echo@alpha")).unwrap();
    assert_eq!(echo.ask("sync".to_string()).await.unwrap(), "echo:sync");
    let pending = tokio::spawn({
        let echo = echo.clone();
        async move {
            echo.ask_timeout("slow:30000".to_string(), Duration::from_secs(60))
                .await
        }
    });
    until("the slow ask reached alpha", WAIT, || {
        a_net.stats().frames_received >= 4
    })
    .await;
    // Alpha's transport goes away as if its process died: its sockets close.
    a_net.shutdown();
    let answer = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("the ask fails fast, not after its 60 s timeout")
        .unwrap();
    assert_eq!(answer.unwrap_err(), Error::NoConnection("alpha".into()));
    until("down and exit arrive", WAIT, || log.entries().len() == 2).await;
    assert_eq!(
        log.sorted(),
        vec![
            "down:echo@alpha:noconnection",
            "exit:echo@alpha:noconnection"
        ]
    );
    // A new ask to the gone node fails at once too.
    let err = echo.ask("again".to_string()).await.unwrap_err();
    assert_eq!(err.kind(), "noconnection", "{err:?}");
    // Exactly once: nothing more arrives for the same loss.
    assert_eq!(
        beta.node_lost("alpha"),
        plexspaces_core::NodeLost::default()
    );
    assert_eq!(log.entries().len(), 2);
    beta.shutdown().await;
    let _ = ExitReason::NoConnection;
}

#[tokio::test]
async fn a_peer_of_another_cluster_is_refused_at_the_handshake() {
    let (alpha, a_net) = tcp_node("c-one", "alpha").await;
    let (beta, b_net) = tcp_node("c-two", "beta").await;
    alpha.spawn_named("echo", Echo).unwrap();
    b_net.add_peer("alpha", a_net.local_addr());
    let echo: ActorRef<Echo> = beta.actor_ref(&id("echo@alpha")).unwrap();
    let err = echo.ask("hello".to_string()).await.unwrap_err();
    assert_eq!(err.kind(), "noconnection", "{err:?}");
    until("alpha counts the refusal", WAIT, || {
        a_net.stats().refused == 1
    })
    .await;
    assert_eq!(a_net.stats().frames_received, 0);
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_transport_carries_only_its_own_node_and_rejects_bad_options() {
    let net = Network::start(NetworkOptions::new("c", "alpha"))
        .await
        .unwrap();
    let inbound: plexspaces_core::transport::Inbound =
        Arc::new(|_: bytes::Bytes| Box::pin(async {}));
    let err = net.bind("beta", inbound).unwrap_err();
    assert_eq!(err.kind(), "invalid_argument");
    let err = Network::start(NetworkOptions::new("", "alpha"))
        .await
        .unwrap_err();
    assert!(matches!(err, plexspaces_cluster::Error::InvalidOption(_)));
    net.shutdown();
}

/// Counts casts, but only while its gate is open.
struct Gated {
    open: Arc<tokio::sync::Semaphore>,
    seen: Arc<Mutex<Vec<u64>>>,
}

impl plexspaces_core::Actor for Gated {
    type Msg = u64;
    type Reply = u64;

    async fn handle_cast(
        &mut self,
        n: u64,
        _ctx: &mut plexspaces_core::Context<Self>,
    ) -> Result<(), plexspaces_core::BoxError> {
        // Waits until the test opens the gate (the semaphore is closed then: no more waiting).
        let _ = self.open.acquire().await;
        self.seen.lock().push(n);
        Ok(())
    }

    async fn handle_call(
        &mut self,
        _n: u64,
        _ctx: &mut plexspaces_core::Context<Self>,
    ) -> Result<Option<u64>, plexspaces_core::BoxError> {
        Ok(Some(self.seen.lock().len() as u64))
    }

    fn decode(env: &plexspaces_core::Envelope) -> plexspaces_core::Result<u64> {
        env.decode_json()
    }

    fn encode(msg: &u64) -> plexspaces_core::Result<plexspaces_core::Envelope> {
        plexspaces_core::Envelope::json("n", msg)
    }

    fn encode_reply(
        request_type: &str,
        reply: &u64,
    ) -> plexspaces_core::Result<plexspaces_core::Envelope> {
        plexspaces_core::Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &plexspaces_core::Envelope) -> plexspaces_core::Result<u64> {
        env.decode_json()
    }
}

#[tokio::test]
async fn a_slow_receiver_pushes_back_to_the_senders_queue() {
    let (alpha, _a, beta, b_net) = {
        let (a, a_net) = tcp_node("t-push", "alpha").await;
        let (b, b_net) =
            crate::common::tcp_node_with(NetworkOptions::new("t-push", "beta").send_queue(256))
                .await;
        b_net.add_peer("alpha", a_net.local_addr());
        (a, a_net, b, b_net)
    };
    let open = Arc::new(tokio::sync::Semaphore::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    alpha
        .spawn_with(
            Gated {
                open: open.clone(),
                seen: seen.clone(),
            },
            plexspaces_core::SpawnOptions::named("gated")
                .mailbox(plexspaces_core::MailboxConfig::Bounded(16)),
        )
        .unwrap();
    let gated: ActorRef<Gated> = beta.actor_ref(&id("gated@alpha")).unwrap();
    // The actor handles nothing, so its mailbox fills, alpha's reader stops reading, the
    // socket buffers fill, beta's writes stall and its 256-frame queue fills: a send fails.
    let mut accepted = 0u64;
    let refused = loop {
        match gated.try_tell(accepted) {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        if accepted % 256 == 0 {
            tokio::task::yield_now().await;
        }
        assert!(accepted < 10_000_000, "the queue never filled");
    };
    assert_eq!(refused.to_error(gated.id()).kind(), "transport");
    assert_eq!(refused.into_inner(), accepted);
    assert!(b_net.stats().queue_full >= 1);
    // Nothing accepted was lost: once the actor runs, every one arrives, in order.
    open.close();
    let want = accepted;
    until(
        "every accepted tell arrives",
        Duration::from_secs(60),
        || seen.lock().len() as u64 == want,
    )
    .await;
    assert_eq!(*seen.lock(), (0..accepted).collect::<Vec<_>>());
    alpha.shutdown().await;
    beta.shutdown().await;
}
