//! Behaviours ported from OTP's own test suites (supervisor, gen_server, gen_statem,
//! gen_event, links and monitors) where we once differed from Erlang.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plexspaces_core::event::{EventHandler, EventManager};
use plexspaces_core::fsm::{FsmActor, GenFsm, Transition};
use plexspaces_core::{
    Actor, ActorRef, BoxError, ChildSpec, Context, Error, ExitReason, Info, Node, Shutdown,
    SpawnOptions, Strategy, Supervisor, SupervisorSpec,
};

use crate::common::{until, Cmd, Log, Worker};

/// Starts once; every later start takes a second and then fails.
struct FailsAfterFirstStart {
    attempts: Arc<AtomicU32>,
}

impl Actor for FailsAfterFirstStart {
    type Msg = Cmd;
    type Reply = String;

    async fn on_start(&mut self, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if self.attempts.fetch_add(1, Ordering::SeqCst) == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Err("cannot start again".into())
    }

    async fn handle_call(
        &mut self,
        cmd: Cmd,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        match cmd {
            Cmd::Fail => Err("crash".into()),
            _ => Ok(Some("ok".into())),
        }
    }
}

/// Fix 1: a supervisor retrying a failing restart answers calls (the child shows as
/// restarting) and obeys its parent's shutdown between attempts.
#[tokio::test(start_paused = true)]
async fn a_supervisor_in_a_restart_loop_answers_calls_and_obeys_its_parent() {
    let node = Node::builder("n1").build().await.unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let counter = attempts.clone();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(1000, Duration::from_secs(3600))
        .child(ChildSpec::worker("flaky", move || FailsAfterFirstStart {
            attempts: counter.clone(),
        }));
    let outer = node
        .start(
            Supervisor::new(
                SupervisorSpec::new(Strategy::OneForOne)
                    .child(ChildSpec::supervisor("inner", inner)),
            ),
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    let inner_pid = outer.which_children().await.unwrap()[0]
        .pid
        .clone()
        .unwrap();
    let inner_ref = inner_pid.typed::<Supervisor>().unwrap();
    let flaky = inner_ref.which_children().await.unwrap()[0]
        .pid
        .clone()
        .unwrap();
    let _ = flaky
        .typed::<FailsAfterFirstStart>()
        .unwrap()
        .ask(Cmd::Fail)
        .await;
    until("a restart attempt failed", || {
        attempts.load(Ordering::SeqCst) >= 3
    })
    .await;
    let children = inner_ref
        .ask_timeout(
            plexspaces_core::supervisor::SupervisorMsg::WhichChildren,
            Duration::from_secs(10),
        )
        .await
        .expect("the supervisor answers while it retries")
        .unwrap();
    let plexspaces_core::supervisor::SupervisorReply::Children(children) = children else {
        panic!("unexpected reply");
    };
    assert!(children[0].pid.is_none());
    assert!(children[0].restarting, "the child shows as restarting");
    let before = attempts.load(Ordering::SeqCst);
    outer.terminate_child("inner").await.unwrap();
    assert_eq!(inner_pid.wait().await.unwrap(), ExitReason::Shutdown);
    assert!(
        attempts.load(Ordering::SeqCst) <= before + 1,
        "at most the attempt in progress finished before the shutdown was obeyed"
    );
    node.shutdown().await;
}

/// Logs what it is told; its `terminate` may panic.
struct Handler {
    name: &'static str,
    log: Log,
    panic_in_terminate: bool,
}

#[async_trait]
impl EventHandler<u32> for Handler {
    async fn handle_event(&mut self, event: &u32) -> Result<(), BoxError> {
        self.log.push(format!("{}:{event}", self.name));
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) -> plexspaces_core::event::Handoff {
        if self.panic_in_terminate {
            panic!("terminate failed");
        }
        self.log.push(format!("{}:terminate:{reason}", self.name));
        None
    }
}

fn handler(name: &'static str, log: &Log) -> Handler {
    Handler {
        name,
        log: log.clone(),
        panic_in_terminate: false,
    }
}

/// Fix 2: a handler whose terminate panics is removed alone.
#[tokio::test]
async fn a_handler_whose_terminate_panics_is_removed_alone() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let manager = node.spawn(EventManager::<u32>::new()).unwrap();
    let mut bad = handler("bad", &log);
    bad.panic_in_terminate = true;
    manager.add_handler("bad", bad).await.unwrap();
    manager
        .add_handler("good", handler("good", &log))
        .await
        .unwrap();
    let _ = manager.delete_handler("bad").await;
    assert!(manager.is_alive(), "the manager survives");
    assert_eq!(manager.which_handlers().await.unwrap(), vec!["good"]);
    manager.sync_notify(1).await.unwrap();
    assert_eq!(log.entries(), vec!["good:1"]);
    node.shutdown().await;
}

/// Fix 3: supervised handlers go with their adder; the adder hears of deletes and stops.
#[tokio::test]
async fn supervised_handlers_follow_their_adder() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let manager = node.spawn(EventManager::<u32>::new()).unwrap();
    let adder = node
        .spawn_named("adder", Worker::new("adder", &log))
        .unwrap();
    manager
        .add_sup_handler("mine", handler("mine", &log), &adder.pid())
        .await
        .unwrap();
    manager
        .add_handler("other", handler("other", &log))
        .await
        .unwrap();
    adder.stop(ExitReason::Shutdown);
    adder.wait().await.unwrap();
    let m = manager.clone();
    let removed = plexspaces_test_util::eventually(Duration::from_secs(5), || {
        let m = m.clone();
        async move { m.which_handlers().await.unwrap() == vec!["other"] }
    })
    .await;
    assert!(removed, "the dead adder's handler is removed");

    let owner = node
        .spawn_named("owner", Worker::new("owner", &log))
        .unwrap();
    manager
        .add_sup_handler("h1", handler("h1", &log), &owner.pid())
        .await
        .unwrap();
    manager
        .add_sup_handler("h2", handler("h2", &log), &owner.pid())
        .await
        .unwrap();
    manager.delete_handler("h1").await.unwrap();
    until("owner told of the delete", || {
        log.count("handler-exit:owner:h1:normal") == 1
    })
    .await;
    manager.stop(ExitReason::Shutdown);
    manager.wait().await.unwrap();
    until("owner told of the stop", || {
        log.count("handler-exit:owner:h2:shutdown") == 1
    })
    .await;
    node.shutdown().await;
}

/// Registers itself under a name, then fails to start.
struct RegistersThenFails {
    name: String,
}

impl Actor for RegistersThenFails {
    type Msg = ();
    type Reply = ();

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.register(&self.name)?;
        Err("no".into())
    }

    async fn handle_call(&mut self, _: (), _: &mut Context<Self>) -> Result<Option<()>, BoxError> {
        Ok(Some(()))
    }
}

/// Fix 4: after a failed start, the id and the registered name are free at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_frees_its_names_before_the_caller_hears() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    for round in 0..200 {
        let mut failing = Worker::new("f", &log);
        failing.fail_start = true;
        let result = node.start(failing, SpawnOptions::named("taken")).await;
        assert!(matches!(result, Err(Error::StartFailed(_))));
        let again = node
            .spawn_named("taken", Worker::new("ok", &log))
            .unwrap_or_else(|e| panic!("round {round}: id still taken: {e}"));
        again.stop(ExitReason::Normal);
        again.wait().await.unwrap();

        let result = node
            .start(
                RegistersThenFails { name: "reg".into() },
                SpawnOptions::default(),
            )
            .await;
        assert!(result.is_err());
        let holder = node.spawn(Worker::new("h", &log)).unwrap();
        node.register("reg", &holder.pid())
            .unwrap_or_else(|e| panic!("round {round}: name still taken: {e}"));
        holder.stop(ExitReason::Normal);
        holder.wait().await.unwrap();
    }
    node.shutdown().await;
}

async fn start_fails(node: &Node, spec: SupervisorSpec) -> bool {
    matches!(
        node.start(Supervisor::new(spec), SpawnOptions::default())
            .await,
        Err(Error::StartFailed(_))
    )
}

/// Fix 5: bad supervisor flags and child specs are rejected.
#[tokio::test]
async fn supervisor_flags_and_child_specs_are_validated() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = |name: &'static str| {
        let log = log.clone();
        ChildSpec::worker(name, move || Worker::new(name, &log))
    };
    assert!(
        start_fails(
            &node,
            SupervisorSpec::new(Strategy::OneForOne).intensity(1, Duration::ZERO)
        )
        .await,
        "a zero period"
    );
    assert!(
        start_fails(
            &node,
            SupervisorSpec::new(Strategy::OneForOne)
                .child(w("a"))
                .child(w("a"))
        )
        .await,
        "duplicate ids"
    );
    assert!(
        start_fails(&node, SupervisorSpec::new(Strategy::SimpleOneForOne)).await,
        "no template"
    );
    assert!(
        start_fails(
            &node,
            SupervisorSpec::new(Strategy::SimpleOneForOne)
                .child(w("a"))
                .child(w("b"))
        )
        .await,
        "two templates"
    );
    assert_eq!(log.entries(), Vec::<String>::new(), "no child started");
    assert!(SupervisorSpec::new(Strategy::SimpleOneForOne)
        .child(w("a"))
        .validate()
        .is_ok());
    node.shutdown().await;
}

/// Fix 6: simple_one_for_one children are stopped in parallel.
#[tokio::test(start_paused = true)]
async fn simple_one_for_one_children_shut_down_in_parallel() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let template_log = log.clone();
    let spec = SupervisorSpec::new(Strategy::SimpleOneForOne).child(
        ChildSpec::worker_with_args("w", move |name: String| {
            let mut w = Worker::new(&name, &template_log);
            w.stop_delay = Some(Duration::from_secs(1));
            w
        })
        .shutdown(Shutdown::Timeout(Duration::from_secs(10))),
    );
    let sup = node
        .start(Supervisor::new(spec), SpawnOptions::default())
        .await
        .unwrap();
    for name in ["a", "b", "c"] {
        sup.start_dynamic_child(name.to_owned()).await.unwrap();
    }
    log.clear();
    sup.stop(ExitReason::Shutdown);
    sup.wait().await.unwrap();
    let entries = log.entries();
    assert_eq!(entries.len(), 6, "{entries:?}");
    assert!(
        entries[..3].iter().all(|e| e.starts_with("stop:")),
        "every child was asked to stop before any finished: {entries:?}"
    );
    node.shutdown().await;
}

/// Panics in `on_stop`.
struct BadStop;

impl Actor for BadStop {
    type Msg = ();
    type Reply = ();

    async fn on_stop(&mut self, _ctx: &mut Context<Self>, _reason: &ExitReason) {
        panic!("on_stop exploded");
    }

    async fn handle_call(&mut self, _: (), _: &mut Context<Self>) -> Result<Option<()>, BoxError> {
        Ok(Some(()))
    }
}

/// Fix 7: a crash in `on_stop` is the exit reason others see.
#[tokio::test]
async fn a_crash_in_on_stop_becomes_the_exit_reason() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let bad = node.spawn_named("bad", BadStop).unwrap();
    let linked = node
        .spawn_named("linked", Worker::new("linked", &log))
        .unwrap();
    linked.ask(Cmd::Trap).await.unwrap();
    bad.ask(()).await.unwrap();
    plexspaces_core::Pid::stop(&bad.pid(), ExitReason::Normal);
    let reason = bad.wait().await.unwrap();
    assert!(
        matches!(&reason, ExitReason::Error(text) if text.contains("on_stop exploded")),
        "{reason:?}"
    );
    node.shutdown().await;
}

/// Starts a child linked to itself while trapping exits; logs every exit it receives.
struct Starter {
    log: Log,
}

/// What a [`Starter`] does.
enum Start {
    /// Nothing: answers `idle`.
    Nothing,
    /// `start_linked` a child that fails to start.
    Waiting,
    /// `spawn_link` such a child without waiting for its start.
    NotWaiting,
}

impl Actor for Starter {
    type Msg = Start;
    type Reply = String;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.trap_exit(true);
        Ok(())
    }

    async fn handle_call(
        &mut self,
        start: Start,
        ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        let mut failing = Worker::new("child", &self.log);
        failing.fail_start = true;
        match start {
            Start::Nothing => return Ok(Some("idle".into())),
            Start::NotWaiting => {
                ctx.spawn_link_with(failing, SpawnOptions::named("child"))?;
                return Ok(Some("spawned".into()));
            }
            Start::Waiting => {}
        }
        let result = ctx
            .node()
            .start_linked(failing, SpawnOptions::named("child"), Some(ctx.pid()))
            .await;
        Ok(Some(match result {
            Ok(_) => "started".into(),
            Err(e) => e.kind().to_owned(),
        }))
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.log.push(format!("info:{info:?}"));
        Ok(())
    }
}

/// Fix 8: a failed `start_linked` leaves no link and no stray exit message.
#[tokio::test(start_paused = true)]
async fn a_failed_start_linked_leaves_no_exit_message() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let starter = node.spawn(Starter { log: log.clone() }).unwrap();
    assert_eq!(starter.ask(Start::Waiting).await.unwrap(), "start_failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(starter.ask(Start::Nothing).await.unwrap(), "idle");
    assert!(
        !log.entries().iter().any(|e| e.starts_with("info:")),
        "{:?}",
        log.entries()
    );
    // Without a start to wait for, the link stays and the exit arrives, as in Erlang.
    assert_eq!(starter.ask(Start::NotWaiting).await.unwrap(), "spawned");
    until(
        "the exit of a spawn_link child that failed to start",
        || log.entries().iter().any(|e| e.starts_with("info:Exit")),
    )
    .await;
    node.shutdown().await;
}

/// Calls itself, or exits itself.
struct SelfCaller;

enum SelfMsg {
    CallMyself,
    Echo,
    ExitMyself,
    Trap,
}

impl Actor for SelfCaller {
    type Msg = SelfMsg;
    type Reply = String;

    async fn handle_call(
        &mut self,
        msg: SelfMsg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        Ok(Some(match msg {
            SelfMsg::CallMyself => match ctx.myself().ask(SelfMsg::Echo).await {
                Ok(reply) => reply,
                Err(e) => e.kind().to_owned(),
            },
            SelfMsg::Echo => "echo".into(),
            SelfMsg::ExitMyself => {
                ctx.exit(&ctx.pid(), ExitReason::Normal);
                "exiting".into()
            }
            SelfMsg::Trap => {
                ctx.trap_exit(true);
                "trapping".into()
            }
        }))
    }

    async fn handle_info(&mut self, info: Info, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Info::Exit { from, reason } = info {
            if from == ctx.pid() && reason == ExitReason::Normal {
                ctx.stop(ExitReason::error("trapped my own exit"));
            }
        }
        Ok(())
    }
}

/// Fix 9: calling yourself fails at once.
#[tokio::test(start_paused = true)]
async fn calling_yourself_fails_at_once() {
    let node = Node::builder("n1").build().await.unwrap();
    let actor = node.spawn(SelfCaller).unwrap();
    let started = tokio::time::Instant::now();
    assert_eq!(
        actor
            .ask_timeout(SelfMsg::CallMyself, Duration::from_secs(60))
            .await
            .unwrap(),
        "calling_self"
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no timeout was waited for"
    );
    node.shutdown().await;
}

/// Fix 10: `exit(self, normal)` ends a non-trapping actor; a trapping one gets a message.
#[tokio::test(start_paused = true)]
async fn exit_self_normal_terminates_a_non_trapping_actor() {
    let node = Node::builder("n1").build().await.unwrap();
    let plain = node.spawn(SelfCaller).unwrap();
    plain.ask(SelfMsg::ExitMyself).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), plain.wait())
        .await
        .expect("it terminates")
        .unwrap();
    assert_eq!(reason, ExitReason::Normal);

    let trapping = node.spawn(SelfCaller).unwrap();
    trapping.ask(SelfMsg::Trap).await.unwrap();
    trapping.ask(SelfMsg::ExitMyself).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), trapping.wait())
        .await
        .expect("it handles its own exit message")
        .unwrap();
    assert_eq!(reason, ExitReason::error("trapped my own exit"));
    node.shutdown().await;
}

/// `go` moves to `Waiting` with a zero state timeout, whose expiry moves on to `Done`;
/// `probe` records the state it arrives in.
struct ZeroTimeout {
    log: Log,
}

#[derive(Debug, Clone, PartialEq)]
enum Phase {
    Idle,
    Waiting,
    Done,
}

impl GenFsm for ZeroTimeout {
    type State = Phase;
    type Event = &'static str;
    type Reply = ();

    fn initial_state(&self) -> Phase {
        Phase::Idle
    }

    async fn handle_event(
        &mut self,
        state: &Phase,
        event: &'static str,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Transition<Self>, BoxError> {
        Ok(match event {
            "go" => Transition::next(Phase::Waiting).state_timeout(Duration::ZERO),
            _ => {
                self.log.push(format!("{event}:{state:?}"));
                Transition::keep()
            }
        })
    }

    async fn on_state_timeout(
        &mut self,
        _state: &Phase,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Transition<Self>, BoxError> {
        Ok(Transition::next(Phase::Done))
    }
}

/// Fix 11: a zero state timeout fires before an event already queued.
#[tokio::test(start_paused = true)]
async fn a_zero_state_timeout_fires_before_queued_events() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let fsm: ActorRef<FsmActor<ZeroTimeout>> = node
        .spawn(FsmActor::new(ZeroTimeout { log: log.clone() }))
        .unwrap();
    fsm.send_event("go").await.unwrap();
    fsm.send_event("probe").await.unwrap();
    assert_eq!(fsm.state().await.unwrap(), Phase::Done);
    assert_eq!(log.entries(), vec!["probe:Done"]);
    node.shutdown().await;
}

/// Fix 12: one actor holds at most one registered name; a running child is "already
/// started" (with its pid), a stopped one "already present".
#[tokio::test]
async fn one_name_per_actor_and_already_started_differs_from_already_present() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let a = node.spawn(Worker::new("a", &log)).unwrap();
    node.register("first", &a.pid()).unwrap();
    assert!(node.register("second", &a.pid()).is_err());
    assert!(node.whereis("second").is_none());
    assert_eq!(node.whereis("first"), Some(a.pid()));

    let sup = node
        .start(
            Supervisor::new(SupervisorSpec::new(Strategy::OneForOne)),
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    let spec = {
        let log = log.clone();
        move || {
            let log = log.clone();
            ChildSpec::worker("w", move || Worker::new("w", &log))
        }
    };
    let pid = sup.start_child(spec()).await.unwrap();
    match sup.start_child(spec()).await {
        Err(Error::AlreadyStarted { pid: holder, .. }) => assert_eq!(holder, pid),
        other => panic!("expected already started, got {other:?}"),
    }
    sup.terminate_child("w").await.unwrap();
    match sup.start_child(spec()).await {
        Err(e) => assert_eq!(e.kind(), "already_present"),
        Ok(_) => panic!("a stopped child is already present"),
    }
    node.shutdown().await;
}
