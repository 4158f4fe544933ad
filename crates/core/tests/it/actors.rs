//! Tell, ask, timeouts, mailboxes, envelopes, lifecycle, registry, groups, timers.

use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::Lifecycle;
use plexspaces_core::{
    Actor, ActorId, BoxError, Context, Envelope, Error, ExitReason, MailboxConfig, Node,
    ReplyHandle, SendError, SpawnOptions,
};
use tokio::sync::Notify;

use crate::common::{until, Cmd, Log, Worker};

/// Adds to a total; `Hold` parks the handler until the gate opens; `Defer` keeps the reply
/// handle to answer later with `Release`.
struct Adder {
    total: i64,
    gate: Arc<Notify>,
    deferred: Vec<ReplyHandle<i64>>,
    handled: Arc<std::sync::atomic::AtomicUsize>,
}

enum AddMsg {
    Add(i64),
    Hold,
    Defer,
    Release(i64),
    Silent,
}

impl Adder {
    fn new() -> Self {
        Adder {
            total: 0,
            gate: Arc::new(Notify::new()),
            deferred: Vec::new(),
            handled: Arc::default(),
        }
    }
}

impl Actor for Adder {
    type Msg = AddMsg;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        msg: AddMsg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<i64>, BoxError> {
        self.handled
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match msg {
            AddMsg::Add(n) => {
                self.total += n;
                Ok(Some(self.total))
            }
            AddMsg::Hold => {
                self.gate.notified().await;
                Ok(Some(self.total))
            }
            AddMsg::Defer => {
                if let Some(handle) = ctx.reply_handle() {
                    self.deferred.push(handle);
                }
                Ok(None)
            }
            AddMsg::Release(value) => {
                for handle in self.deferred.drain(..) {
                    handle.send(value);
                }
                Ok(Some(value))
            }
            AddMsg::Silent => Ok(None),
        }
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<AddMsg> {
        match env.msg_type.as_str() {
            "add" => env.decode_json::<i64>().map(AddMsg::Add),
            other => Err(Error::UnknownMsgType {
                msg_type: other.to_owned(),
                actor_type: "Adder".into(),
            }),
        }
    }

    fn encode_reply(request_type: &str, reply: &i64) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }
}

#[tokio::test]
async fn tell_then_ask_sees_all_earlier_tells_in_order() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = node.spawn(Adder::new()).unwrap();
    for i in 1..=100 {
        adder.tell(AddMsg::Add(i)).await.unwrap();
    }
    assert_eq!(adder.ask(AddMsg::Add(0)).await.unwrap(), 5050);
    assert_eq!(adder.id().node(), "n1");
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn ask_timeout_is_typed_and_a_late_reply_never_reaches_the_next_caller() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = node.spawn(Adder::new()).unwrap();
    let err = adder
        .ask_timeout(AddMsg::Defer, Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(err, Error::Timeout(Duration::from_millis(100)));
    assert!(err.is_retryable());
    // Now the actor answers the first (timed-out) ask with 99: that reply is dropped, and
    // the next caller gets its own reply.
    assert_eq!(adder.ask(AddMsg::Release(99)).await.unwrap(), 99);
    assert_eq!(adder.ask(AddMsg::Add(1)).await.unwrap(), 1);
    node.shutdown().await;
}

#[tokio::test]
async fn deferred_reply_through_the_reply_handle() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = node.spawn(Adder::new()).unwrap();
    let waiting = {
        let adder = adder.clone();
        tokio::spawn(async move { adder.ask(AddMsg::Defer).await })
    };
    // Make sure the deferred ask was handled before releasing it.
    adder.ask(AddMsg::Add(0)).await.unwrap();
    adder.tell(AddMsg::Release(7)).await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 7);
    node.shutdown().await;
}

#[tokio::test]
async fn returning_none_without_taking_the_handle_answers_no_reply() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = node.spawn(Adder::new()).unwrap();
    assert_eq!(adder.ask(AddMsg::Silent).await.unwrap_err(), Error::NoReply);
    assert!(adder.is_alive());
    node.shutdown().await;
}

#[tokio::test]
async fn unknown_msg_type_and_bad_payload_get_typed_errors_and_the_actor_lives() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = node.spawn(Adder::new()).unwrap();
    let t = Duration::from_secs(5);
    let err = adder
        .ask_envelope(Envelope::json("multiply", &3).unwrap(), t)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnknownMsgType { ref msg_type, .. } if msg_type == "multiply"),
        "{err:?}"
    );
    let err = adder
        .ask_envelope(
            Envelope::new("add", &b"not json"[..], "application/json"),
            t,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(err.kind(), "decode");
    // Still alive, and the envelope path reaches the same handler as a typed message.
    let reply = adder
        .ask_envelope(Envelope::json("add", &5).unwrap(), t)
        .await
        .unwrap();
    assert_eq!(reply.msg_type, "add");
    assert_eq!(reply.decode_json::<i64>().unwrap(), 5);
    assert_eq!(adder.ask(AddMsg::Add(1)).await.unwrap(), 6);
    node.shutdown().await;
}

#[tokio::test]
async fn an_actor_without_a_codec_answers_unsupported() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let worker = node.spawn(Worker::new("w", &log)).unwrap();
    let err = worker
        .ask_envelope(Envelope::json("ping", &()).unwrap(), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
    assert!(worker.is_alive());
    node.shutdown().await;
}

#[tokio::test]
async fn full_mailbox_try_tell_gives_the_message_back_and_tell_waits_for_space() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = Adder::new();
    let gate = adder.gate.clone();
    let handled = adder.handled.clone();
    let adder = node
        .spawn_with(
            adder,
            SpawnOptions::default().mailbox(MailboxConfig::Bounded(2)),
        )
        .unwrap();
    adder.tell(AddMsg::Hold).await.unwrap();
    until("the handler holds", || {
        handled.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    adder
        .try_tell(AddMsg::Add(1))
        .map_err(|_| "first fits")
        .unwrap();
    adder
        .try_tell(AddMsg::Add(2))
        .map_err(|_| "second fits")
        .unwrap();
    match adder.try_tell(AddMsg::Add(3)) {
        Err(SendError::Full(AddMsg::Add(3))) => {}
        other => panic!(
            "expected Full with the message back, got {:?}",
            other.is_ok()
        ),
    }
    assert_eq!(adder.mailbox_len(), 2);
    // `tell` waits for space instead of failing.
    let blocked = {
        let adder = adder.clone();
        tokio::spawn(async move { adder.tell(AddMsg::Add(3)).await.is_ok() })
    };
    tokio::task::yield_now().await;
    assert!(
        !blocked.is_finished(),
        "tell must wait while the mailbox is full"
    );
    gate.notify_one();
    assert!(blocked.await.unwrap());
    assert_eq!(
        adder.ask(AddMsg::Add(0)).await.unwrap(),
        6,
        "nothing accepted was lost"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_stop_signal_overtakes_queued_user_messages() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = Adder::new();
    let gate = adder.gate.clone();
    let handled = adder.handled.clone();
    let adder = node.spawn(adder).unwrap();
    adder.tell(AddMsg::Hold).await.unwrap();
    until("the handler holds", || {
        handled.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    for i in 0..5 {
        adder.tell(AddMsg::Add(i)).await.unwrap();
    }
    // Queued asks learn that the actor is gone instead of hanging.
    let queued_ask = {
        let adder = adder.clone();
        tokio::spawn(async move { adder.ask(AddMsg::Add(100)).await })
    };
    until("the ask is queued", || adder.mailbox_len() == 6).await;
    adder.stop(ExitReason::Shutdown);
    gate.notify_one();
    assert_eq!(adder.wait().await.unwrap(), ExitReason::Shutdown);
    assert_eq!(
        handled.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "queued messages were not run"
    );
    assert!(matches!(queued_ask.await.unwrap(), Err(Error::NoProc(_))));
}

#[tokio::test]
async fn handler_error_and_panic_stop_the_actor_with_a_reason_and_fail_the_caller() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let a = node.spawn(Worker::new("a", &log)).unwrap();
    let err = a.ask(Cmd::Fail).await.unwrap_err();
    assert!(
        matches!(&err, Error::ActorFailed(ExitReason::Error(text)) if text.contains("failed on purpose")),
        "{err:?}"
    );
    assert!(matches!(a.wait().await.unwrap(), ExitReason::Error(_)));
    let b = node.spawn(Worker::new("b", &log)).unwrap();
    let err = b.ask(Cmd::Panic).await.unwrap_err();
    assert!(
        matches!(&err, Error::ActorFailed(ExitReason::Error(text)) if text.contains("panic")),
        "{err:?}"
    );
    assert!(!b.is_alive() || matches!(b.wait().await.unwrap(), ExitReason::Error(_)));
    // on_stop ran for both; a tell to a dead actor gives the message back.
    assert_eq!(log.count("stop:a"), 1);
    assert_eq!(log.count("stop:b"), 1);
    assert!(matches!(
        a.tell(Cmd::Ping).await,
        Err(SendError::Closed(Cmd::Ping))
    ));
    assert!(matches!(a.ask(Cmd::Ping).await, Err(Error::NoProc(_))));
    node.shutdown().await;
}

#[tokio::test]
async fn lifecycle_goes_creating_active_stopping_then_terminated_or_failed() {
    let node = Node::builder("n1").build().await.unwrap();
    let adder = Adder::new();
    let gate = adder.gate.clone();
    let handled = adder.handled.clone();
    let adder = node.spawn(adder).unwrap();
    let pid = adder.pid();
    assert!(matches!(
        pid.lifecycle(),
        Lifecycle::Creating | Lifecycle::Active
    ));
    adder.ask(AddMsg::Add(1)).await.unwrap();
    assert_eq!(pid.lifecycle(), Lifecycle::Active);
    adder.tell(AddMsg::Hold).await.unwrap();
    until("the handler holds", || {
        handled.load(std::sync::atomic::Ordering::SeqCst) == 2
    })
    .await;
    adder.stop(ExitReason::Normal);
    gate.notify_one();
    adder.wait().await.unwrap();
    assert_eq!(pid.lifecycle(), Lifecycle::Terminated);
    let log = Log::default();
    let w = node.spawn(Worker::new("w", &log)).unwrap();
    let _ = w.ask(Cmd::Fail).await;
    w.wait().await.unwrap();
    assert_eq!(w.pid().lifecycle(), Lifecycle::Failed);
    node.shutdown().await;
}

#[tokio::test]
async fn start_waits_for_on_start_and_reports_its_failure() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let mut bad = Worker::new("bad", &log);
    bad.fail_start = true;
    let err = node
        .start(bad, SpawnOptions::named("bad"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::StartFailed(_)), "{err:?}");
    assert_eq!(log.entries(), vec!["failstart:bad"]);
    until("the failed actor is gone", || {
        node.lookup(&ActorId::parse("bad@n1").unwrap()).is_none()
    })
    .await;
    let good = node
        .start(Worker::new("good", &log), SpawnOptions::named("good"))
        .await
        .unwrap();
    assert_eq!(good.ask(Cmd::Ping).await.unwrap(), "good");
    node.shutdown().await;
}

#[tokio::test]
async fn ids_are_unique_while_alive_and_reusable_after_death() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let first = node.spawn_named("solo", Worker::new("x", &log)).unwrap();
    assert!(matches!(
        node.spawn_named("solo", Worker::new("y", &log)),
        Err(Error::AlreadyStarted { pid, .. }) if pid == first.pid()
    ));
    assert!(matches!(
        node.spawn_named("bad@name", Worker::new("y", &log)),
        Err(Error::InvalidId(_))
    ));
    first.stop(ExitReason::Normal);
    first.wait().await.unwrap();
    let second = node.spawn_named("solo", Worker::new("z", &log)).unwrap();
    assert_eq!(second.ask(Cmd::Ping).await.unwrap(), "z");
    assert_ne!(first.pid(), second.pid(), "a new incarnation is a new pid");
    node.shutdown().await;
}

#[tokio::test]
async fn registry_names_are_freed_when_the_actor_dies() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let a = node.spawn(Worker::new("a", &log)).unwrap();
    let b = node.spawn(Worker::new("b", &log)).unwrap();
    node.register("db", &a.pid()).unwrap();
    assert!(matches!(
        node.register("db", &b.pid()),
        Err(Error::NameTaken(_))
    ));
    assert_eq!(node.whereis("db").unwrap(), a.pid());
    let typed = node.whereis_ref::<Worker>("db").unwrap();
    assert_eq!(typed.ask(Cmd::Ping).await.unwrap(), "a");
    a.ask(Cmd::Stop(ExitReason::Normal)).await.unwrap();
    a.wait().await.unwrap();
    assert!(node.whereis("db").is_none(), "name freed on death");
    node.register("db", &b.pid()).unwrap();
    assert!(node.unregister("db"));
    assert!(node.whereis("db").is_none());
    assert!(matches!(
        node.register("dead", &a.pid()),
        Err(Error::NoProc(_))
    ));
    node.shutdown().await;
}

#[tokio::test]
async fn process_groups_join_leave_broadcast_and_dead_members_leave() {
    let node = Node::builder("n1").build().await.unwrap();
    let adders: Vec<_> = (0..3).map(|_| node.spawn(Adder::new()).unwrap()).collect();
    let groups = node.groups();
    for a in &adders {
        groups.join("workers", &a.pid()).unwrap();
        groups.join("workers", &a.pid()).unwrap();
    }
    assert_eq!(
        groups.members("workers").len(),
        3,
        "joining twice is a no-op"
    );
    assert_eq!(
        groups.broadcast_envelope("workers", &Envelope::json("add", &10).unwrap()),
        3
    );
    for a in &adders {
        assert_eq!(a.ask(AddMsg::Add(0)).await.unwrap(), 10);
    }
    assert!(groups.leave("workers", &adders[0].pid()));
    assert!(!groups.leave("workers", &adders[0].pid()));
    adders[1].kill();
    adders[1].wait().await.unwrap();
    assert_eq!(groups.members("workers"), vec![adders[2].pid()]);
    node.shutdown().await;
}

#[derive(Clone)]
enum Tick {
    Once,
    Every,
    Count,
}

struct Ticker {
    once: u32,
    every: u32,
    interval: Option<plexspaces_core::TimerRef>,
}

impl Actor for Ticker {
    type Msg = Tick;
    type Reply = (u32, u32);

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.send_after(Duration::from_secs(10), Tick::Once);
        let cancelled = ctx.send_after(Duration::from_secs(5), Tick::Once);
        assert!(ctx.cancel_timer(cancelled));
        self.interval = Some(ctx.send_interval(Duration::from_secs(3), Tick::Every));
        Ok(())
    }

    async fn handle_call(
        &mut self,
        msg: Tick,
        ctx: &mut Context<Self>,
    ) -> Result<Option<(u32, u32)>, BoxError> {
        match msg {
            Tick::Once => self.once += 1,
            Tick::Every => {
                self.every += 1;
                if self.every == 4 {
                    if let Some(timer) = self.interval.take() {
                        ctx.cancel_timer(timer);
                    }
                }
            }
            Tick::Count => {}
        }
        Ok(Some((self.once, self.every)))
    }
}

#[tokio::test(start_paused = true)]
async fn timers_fire_on_the_paused_clock_and_cancel() {
    let node = Node::builder("n1").build().await.unwrap();
    let ticker = node
        .start(
            Ticker {
                once: 0,
                every: 0,
                interval: None,
            },
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    assert_eq!(
        ticker.ask(Tick::Count).await.unwrap(),
        (0, 3),
        "before 10 s: no one-shot, 3 ticks"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        ticker.ask(Tick::Count).await.unwrap(),
        (1, 3),
        "the cancelled 5 s timer never fired"
    );
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        ticker.ask(Tick::Count).await.unwrap(),
        (1, 4),
        "interval cancelled after 4 ticks"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn shutdown_stops_actors_in_reverse_start_order() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    for name in ["a", "b", "c"] {
        node.start(Worker::new(name, &log), SpawnOptions::named(name))
            .await
            .unwrap();
    }
    log.clear();
    node.shutdown().await;
    assert_eq!(log.entries(), vec!["stop:c", "stop:b", "stop:a"]);
    assert_eq!(node.actor_count(), 0);
    assert!(matches!(
        node.spawn(Worker::new("late", &log)),
        Err(Error::ShuttingDown)
    ));
}
