//! The OTP API an Erlang user reaches for: supervisor queries, gen_server's continue,
//! timeout, stop and raw messages, monitors by name and demonitor options, gen_event calls,
//! and exit reasons with data.

use std::time::Duration;

use async_trait::async_trait;
use plexspaces_core::event::{EventHandler, EventManager, Request, Response};
use plexspaces_core::supervisor::ChildCount;
use plexspaces_core::{
    Actor, AutoShutdown, BoxError, ChildKind, ChildSpec, Context, DemonitorOptions, Error,
    ExitReason, Info, MonitorRef, Node, Pid, Restart, SpawnOptions, Strategy, Supervisor,
    SupervisorSpec,
};
use serde_json::json;

use crate::common::{until, Cmd, Log, Worker};

#[tokio::test]
async fn count_children_get_childspec_and_terminate_by_pid() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let template_log = log.clone();
    let spec = SupervisorSpec::new(Strategy::SimpleOneForOne).child(
        ChildSpec::worker_with_args("w", move |name: String| Worker::new(&name, &template_log))
            .restart(Restart::Transient),
    );
    let sup = node
        .start(Supervisor::new(spec), SpawnOptions::default())
        .await
        .unwrap();
    let a = sup.start_dynamic_child("a".to_owned()).await.unwrap();
    sup.start_dynamic_child("b".to_owned()).await.unwrap();
    assert_eq!(
        sup.count_children().await.unwrap(),
        ChildCount {
            specs: 2,
            active: 2,
            supervisors: 0,
            workers: 2
        }
    );
    sup.terminate_child_pid(&a).await.unwrap();
    assert!(!a.is_alive());
    assert_eq!(sup.count_children().await.unwrap().active, 1);
    assert!(
        sup.terminate_child_pid(&a).await.is_err(),
        "no longer a child"
    );
    let id = sup.which_children().await.unwrap()[0].id.clone();
    let child_spec = sup.get_childspec(&id).await.unwrap();
    assert_eq!(child_spec.restart_type(), Restart::Transient);
    assert!(sup.get_childspec("nope").await.is_err());
    node.shutdown().await;
}

/// Counts up in `handle_continue`; goes idle with a timeout.
struct Continuing {
    log: Log,
}

#[derive(Debug)]
enum Step {
    Begin,
    Continue(u32),
    Wait(Duration),
    Ping,
}

impl Actor for Continuing {
    type Msg = Step;
    type Reply = String;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.continue_with(Step::Continue(0));
        Ok(())
    }

    async fn handle_call(
        &mut self,
        msg: Step,
        ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        match msg {
            Step::Begin => ctx.continue_with(Step::Continue(1)),
            Step::Wait(after) => ctx.idle_timeout(after),
            Step::Ping => self.log.push("ping"),
            Step::Continue(_) => {}
        }
        Ok(Some("ok".into()))
    }

    async fn handle_continue(
        &mut self,
        msg: Step,
        ctx: &mut Context<Self>,
    ) -> Result<(), BoxError> {
        if let Step::Continue(n) = msg {
            self.log.push(format!("continue:{n}"));
            if n == 1 {
                ctx.continue_with(Step::Continue(2));
            }
        }
        Ok(())
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        match info {
            Info::Timeout => self.log.push("timeout"),
            Info::Message(msg) => self.log.push(format!(
                "raw:{}",
                msg.downcast_ref::<u64>().copied().unwrap_or_default()
            )),
            _ => {}
        }
        Ok(())
    }
}

async fn start_continuing() -> (Node, Log, plexspaces_core::ActorRef<Continuing>) {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let actor = node
        .start(Continuing { log: log.clone() }, SpawnOptions::default())
        .await
        .unwrap();
    (node, log, actor)
}

#[tokio::test(start_paused = true)]
async fn handle_continue_runs_before_the_next_message() {
    let (node, log, actor) = start_continuing().await;
    actor.tell(Step::Begin).await.unwrap();
    actor.tell(Step::Ping).await.unwrap();
    actor.ask(Step::Ping).await.unwrap();
    assert_eq!(
        log.entries(),
        vec!["continue:0", "continue:1", "continue:2", "ping", "ping"]
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_timeout_fires_only_without_messages() {
    let (node, log, actor) = start_continuing().await;
    log.clear();
    actor
        .ask(Step::Wait(Duration::from_secs(10)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    actor.ask(Step::Ping).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        log.entries(),
        vec!["ping"],
        "a message cancelled the timeout"
    );
    actor
        .ask(Step::Wait(Duration::from_secs(10)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(11)).await;
    actor.ask(Step::Ping).await.unwrap();
    assert_eq!(log.entries(), vec!["ping", "timeout", "ping"]);
    node.shutdown().await;
}

#[tokio::test]
async fn raw_info_messages_and_stop_returning_the_reason() {
    let (node, log, actor) = start_continuing().await;
    actor.send_info(42u64).unwrap();
    actor.ask(Step::Ping).await.unwrap();
    assert!(log.entries().contains(&"raw:42".to_string()));
    let reason = ExitReason::shutdown_with(json!({"drained": 3}));
    assert_eq!(actor.stop_and_wait(reason.clone()).await.unwrap(), reason);
    assert!(actor.send_info(1u64).is_err(), "dead actors take no info");
    node.shutdown().await;
}

/// Monitors by name and demonitors with options on command.
struct Monitoring {
    log: Log,
    last: Option<MonitorRef>,
}

enum Mon {
    ByName(&'static str),
    Demonitor(Pid, bool),
}

impl Actor for Monitoring {
    type Msg = Mon;
    type Reply = bool;

    async fn handle_call(
        &mut self,
        msg: Mon,
        ctx: &mut Context<Self>,
    ) -> Result<Option<bool>, BoxError> {
        Ok(Some(match msg {
            Mon::ByName(name) => {
                self.last = Some(ctx.monitor_name(name)?);
                true
            }
            Mon::Demonitor(target, flush) => {
                let monitor = self.last.take().ok_or("no monitor")?;
                ctx.demonitor_with(monitor, &target, DemonitorOptions { flush })
            }
        }))
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Info::Down { id, reason, .. } = info {
            self.log.push(format!("down:{id}:{reason}"));
        }
        Ok(())
    }
}

#[tokio::test]
async fn monitor_by_name_and_demonitor_info_without_flush() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let watcher = node
        .spawn(Monitoring {
            log: log.clone(),
            last: None,
        })
        .unwrap();
    watcher.ask(Mon::ByName("nobody")).await.unwrap();
    until("noproc for an unknown name", || {
        log.count("down:nobody@n1:noproc") == 1
    })
    .await;

    let target = node.spawn(Worker::new("t", &log)).unwrap();
    node.register("db", &target.pid()).unwrap();
    watcher.ask(Mon::ByName("db")).await.unwrap();
    assert!(
        watcher
            .ask(Mon::Demonitor(target.pid(), true))
            .await
            .unwrap(),
        "the monitor was active"
    );

    watcher.ask(Mon::ByName("db")).await.unwrap();
    target.stop(ExitReason::Shutdown);
    target.wait().await.unwrap();
    assert!(
        !watcher
            .ask(Mon::Demonitor(target.pid(), false))
            .await
            .unwrap(),
        "the target was already down"
    );
    let down = format!("down:{}:shutdown", target.id());
    until("the Down already sent is still delivered", || {
        log.count(&down) == 1
    })
    .await;
    node.shutdown().await;
}

/// Answers calls with its count; removes itself after `limit` events.
struct Counter {
    seen: u32,
    limit: u32,
    log: Log,
}

#[async_trait]
impl EventHandler<u32> for Counter {
    async fn handle_event(&mut self, _event: &u32) -> Result<(), BoxError> {
        self.seen += 1;
        Ok(())
    }

    async fn handle_call(&mut self, request: Request) -> Result<Response, BoxError> {
        match request.downcast::<&'static str>() {
            Ok(q) if *q == "count" => Ok(Box::new(self.seen)),
            _ => Err("unknown request".into()),
        }
    }

    fn is_done(&self) -> bool {
        self.seen >= self.limit
    }

    async fn terminate(&mut self, reason: &ExitReason) -> plexspaces_core::event::Handoff {
        self.log.push(format!("terminate:{reason}"));
        None
    }
}

#[tokio::test]
async fn gen_event_call_one_handler_and_a_handler_that_removes_itself() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let owner = node
        .spawn_named("owner", Worker::new("owner", &log))
        .unwrap();
    let manager = node.spawn(EventManager::<u32>::new()).unwrap();
    let counter = Counter {
        seen: 0,
        limit: 3,
        log: log.clone(),
    };
    manager
        .add_sup_handler("counter", counter, &owner.pid())
        .await
        .unwrap();
    manager.sync_notify(1).await.unwrap();
    manager.sync_notify(2).await.unwrap();
    assert_eq!(
        manager
            .call_handler::<_, u32>("counter", "count")
            .await
            .unwrap(),
        2
    );
    assert!(
        manager
            .call_handler::<_, String>("counter", "count")
            .await
            .is_err(),
        "wrong type"
    );
    manager.sync_notify(3).await.unwrap();
    assert!(
        manager.which_handlers().await.unwrap().is_empty(),
        "it removed itself"
    );
    assert!(log.entries().contains(&"terminate:normal".to_string()));
    until("the owner is told", || {
        log.count("handler-exit:owner:counter:normal") == 1
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn exit_reasons_carry_data_through_links_and_supervisors() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let data = json!({"why": "drained", "count": 3});
    let reason = ExitReason::shutdown_with(data.clone());
    assert!(reason.is_clean(), "{{shutdown, Term}} is a clean exit");
    assert_eq!(reason.data(), Some(&data));
    assert!(!ExitReason::other(json!(["bad", 1])).is_clean());

    let b = node.spawn_named("b", Worker::new("b", &log)).unwrap();
    b.ask(Cmd::Trap).await.unwrap();
    let a = node
        .start_linked(
            Worker::new("a", &log),
            SpawnOptions::named("a"),
            Some(b.pid()),
        )
        .await
        .unwrap();
    a.ask(Cmd::Stop(reason.clone())).await.unwrap();
    until("b sees the data", || {
        log.count(r#"exit:b:a:shutdown: {"count":3,"why":"drained"}"#) == 1
    })
    .await;

    // A transient child exiting with {shutdown, Term} is not restarted.
    let sup = node
        .start(
            Supervisor::new(SupervisorSpec::new(Strategy::OneForOne).child({
                let log = log.clone();
                ChildSpec::worker("t", move || Worker::new("t", &log)).restart(Restart::Transient)
            })),
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    let t = sup.which_children().await.unwrap()[0].pid.clone().unwrap();
    t.typed::<Worker>()
        .unwrap()
        .ask(Cmd::Stop(reason.clone()))
        .await
        .unwrap();
    assert_eq!(t.wait().await.unwrap(), reason);
    until("the child stays stopped", || log.count("start:t") == 1).await;
    assert!(sup.which_children().await.unwrap()[0].pid.is_none());
    node.shutdown().await;
}

fn ignoring(id: &'static str) -> ChildSpec {
    ChildSpec::from_fn_or_ignore(id, ChildKind::Worker, |_start| Box::pin(async { Ok(None) }))
}

#[tokio::test]
async fn a_child_may_ignore_its_start() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = |name: &'static str| {
        let log = log.clone();
        ChildSpec::worker(name, move || Worker::new(name, &log))
    };
    let sup = node
        .start(
            Supervisor::new(
                SupervisorSpec::new(Strategy::OneForOne)
                    .child(w("a"))
                    .child(ignoring("quiet"))
                    .child(w("b")),
            ),
            SpawnOptions::default(),
        )
        .await
        .expect("an ignored child does not fail the start");
    let children = sup.which_children().await.unwrap();
    assert_eq!(children.len(), 3);
    assert!(children[1].pid.is_none() && children[0].pid.is_some() && children[2].pid.is_some());
    assert!(matches!(
        sup.start_child(ignoring("later")).await,
        Err(Error::Ignored(id)) if id == "later"
    ));
    assert!(matches!(
        sup.start_child(ignoring("later")).await,
        Err(Error::AlreadyPresent(_))
    ));
    assert_eq!(sup.count_children().await.unwrap().specs, 4);

    let dynamic = SupervisorSpec::new(Strategy::SimpleOneForOne).child(
        ChildSpec::from_fn_or_ignore("d", ChildKind::Worker, |_start| {
            Box::pin(async { Ok(None) })
        }),
    );
    let dsup = node
        .start(Supervisor::new(dynamic), SpawnOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        dsup.start_dynamic_child(1u32).await,
        Err(Error::Ignored(_))
    ));
    assert_eq!(dsup.count_children().await.unwrap().specs, 0, "not kept");
    node.shutdown().await;
}

fn transient(name: &'static str, log: &Log) -> ChildSpec {
    let log = log.clone();
    ChildSpec::worker(name, move || Worker::new(name, &log)).restart(Restart::Transient)
}

async fn stop_child(sup: &plexspaces_core::ActorRef<Supervisor>, id: &str, reason: ExitReason) {
    let pid = sup
        .which_children()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
        .unwrap();
    pid.typed::<Worker>()
        .unwrap()
        .ask(Cmd::Stop(reason))
        .await
        .unwrap();
    pid.wait().await.unwrap();
}

#[tokio::test]
async fn auto_shutdown_follows_significant_children() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let permanent = {
        let log = log.clone();
        ChildSpec::worker("p", move || Worker::new("p", &log))
    };
    let any = node
        .start(
            Supervisor::new(
                SupervisorSpec::new(Strategy::OneForOne)
                    .intensity(5, Duration::from_secs(5))
                    .auto_shutdown(AutoShutdown::AnySignificant)
                    .child(permanent.clone())
                    .child(transient("s", &log).significant(true)),
            ),
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    stop_child(&any, "s", ExitReason::error("crash")).await;
    until("a crashed significant child is restarted", || {
        log.count("start:s") == 2
    })
    .await;
    assert!(any.is_alive());
    stop_child(&any, "s", ExitReason::Normal).await;
    assert_eq!(any.wait().await.unwrap(), ExitReason::Shutdown);
    assert!(
        log.entries().contains(&"stop:p".to_string()),
        "the others were stopped"
    );

    let all = node
        .start(
            Supervisor::new(
                SupervisorSpec::new(Strategy::OneForOne)
                    .auto_shutdown(AutoShutdown::AllSignificant)
                    .child(transient("s1", &log).significant(true))
                    .child(transient("s2", &log).significant(true)),
            ),
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    stop_child(&all, "s1", ExitReason::Normal).await;
    assert_eq!(all.count_children().await.unwrap().active, 1, "one is left");
    stop_child(&all, "s2", ExitReason::Shutdown).await;
    assert_eq!(all.wait().await.unwrap(), ExitReason::Shutdown);

    for bad in [
        SupervisorSpec::new(Strategy::OneForOne)
            .auto_shutdown(AutoShutdown::AnySignificant)
            .child(permanent.clone().significant(true)),
        SupervisorSpec::new(Strategy::OneForOne).child(transient("s", &log).significant(true)),
    ] {
        assert!(bad.validate().is_err());
    }
    node.shutdown().await;
}
