//! Links, monitors, exit reasons and trap_exit.

use plexspaces_core::{Actor, BoxError, Context, ExitReason, Info, MonitorRef, Node, Pid};

use crate::common::{until, Cmd, Log, Worker};

/// An actor that links to or monitors others on command and logs what it receives.
struct Watcher {
    log: Log,
    monitors: Vec<(MonitorRef, Pid)>,
}

enum W {
    Link(Pid),
    Unlink(Pid),
    Monitor(Pid),
    DemonitorAll,
    Trap,
    Exit(Pid, ExitReason),
    Ping,
}

impl Actor for Watcher {
    type Msg = W;
    type Reply = ();

    async fn handle_call(
        &mut self,
        msg: W,
        ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        match msg {
            W::Link(p) => ctx.link(&p),
            W::Unlink(p) => ctx.unlink(&p),
            W::Monitor(p) => {
                let m = ctx.monitor(&p);
                self.monitors.push((m, p));
            }
            W::DemonitorAll => {
                for (m, p) in self.monitors.drain(..) {
                    ctx.demonitor(m, &p);
                }
            }
            W::Trap => ctx.trap_exit(true),
            W::Exit(p, reason) => ctx.exit(&p, reason),
            W::Ping => {}
        }
        Ok(Some(()))
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        match info {
            Info::Exit { from, reason } => {
                self.log.push(format!("exit:{}:{reason}", from.id().name()))
            }
            Info::Down {
                monitor,
                id,
                reason,
            } => {
                assert!(
                    self.monitors.iter().any(|(m, _)| *m == monitor),
                    "down for a known monitor"
                );
                self.log.push(format!("down:{}:{reason}", id.name()))
            }
            Info::EventHandlerExit { .. } | Info::Timeout | Info::Message(_) => {}
        }
        Ok(())
    }
}

fn watcher(node: &Node, name: &str, log: &Log) -> plexspaces_core::ActorRef<Watcher> {
    node.spawn_named(
        name,
        Watcher {
            log: log.clone(),
            monitors: Vec::new(),
        },
    )
    .unwrap()
}

#[tokio::test]
async fn an_abnormal_exit_kills_linked_actors_with_the_same_reason() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = watcher(&node, "w", &log);
    let target = node.spawn_named("t", Worker::new("t", &log)).unwrap();
    w.ask(W::Link(target.pid())).await.unwrap();
    let _ = target.ask(Cmd::Fail).await;
    let reason = w.wait().await.unwrap();
    assert!(
        matches!(&reason, ExitReason::Error(t) if t.contains("failed on purpose")),
        "{reason:?}"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_normal_exit_does_not_kill_linked_actors_and_killed_does() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = watcher(&node, "w", &log);
    let t1 = node.spawn(Worker::new("t1", &log)).unwrap();
    w.ask(W::Link(t1.pid())).await.unwrap();
    t1.ask(Cmd::Stop(ExitReason::Normal)).await.unwrap();
    t1.wait().await.unwrap();
    w.ask(W::Ping).await.unwrap();
    assert!(
        w.is_alive(),
        "normal exits are ignored by non-trapping links"
    );

    let t2 = node.spawn(Worker::new("t2", &log)).unwrap();
    w.ask(W::Link(t2.pid())).await.unwrap();
    t2.kill();
    assert_eq!(t2.wait().await.unwrap(), ExitReason::Killed);
    assert_eq!(w.wait().await.unwrap(), ExitReason::Killed);
    assert_eq!(
        log.count("stop:t2"),
        0,
        "a killed actor does not run on_stop"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn trap_exit_turns_exit_signals_into_messages() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = watcher(&node, "w", &log);
    w.ask(W::Trap).await.unwrap();
    let t = node.spawn_named("t", Worker::new("t", &log)).unwrap();
    let n = node.spawn_named("n", Worker::new("n", &log)).unwrap();
    w.ask(W::Link(t.pid())).await.unwrap();
    w.ask(W::Link(n.pid())).await.unwrap();
    let _ = t.ask(Cmd::Panic).await;
    n.ask(Cmd::Stop(ExitReason::Normal)).await.unwrap();
    until("both exits trapped", || {
        log.entries()
            .iter()
            .filter(|e| e.starts_with("exit:"))
            .count()
            == 2
    })
    .await;
    let entries = log.entries();
    assert!(
        entries.iter().any(|e| e.starts_with("exit:t:error: panic")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&"exit:n:normal".to_string()),
        "{entries:?}"
    );
    assert!(w.is_alive());
    node.shutdown().await;
}

#[tokio::test]
async fn unlink_stops_propagation_and_links_are_bidirectional() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = watcher(&node, "w", &log);
    let t = node.spawn(Worker::new("t", &log)).unwrap();
    w.ask(W::Link(t.pid())).await.unwrap();
    w.ask(W::Unlink(t.pid())).await.unwrap();
    let _ = t.ask(Cmd::Fail).await;
    t.wait().await.unwrap();
    w.ask(W::Ping).await.unwrap();
    assert!(w.is_alive());

    // The other direction: the watcher dies, the linked worker dies with it.
    let t2 = node.spawn(Worker::new("t2", &log)).unwrap();
    w.ask(W::Link(t2.pid())).await.unwrap();
    w.kill();
    assert_eq!(t2.wait().await.unwrap(), ExitReason::Killed);
    node.shutdown().await;
}

#[tokio::test]
async fn linking_to_a_dead_actor_delivers_noproc() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = watcher(&node, "w", &log);
    let t = node.spawn_named("t", Worker::new("t", &log)).unwrap();
    t.kill();
    t.wait().await.unwrap();
    w.ask(W::Trap).await.unwrap();
    w.ask(W::Link(t.pid())).await.unwrap();
    until("noproc exit", || {
        log.entries().contains(&"exit:t:noproc".to_string())
    })
    .await;
    node.shutdown().await;
}

#[tokio::test]
async fn monitors_deliver_down_once_noproc_for_dead_and_nothing_after_demonitor() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = watcher(&node, "w", &log);
    let a = node.spawn_named("a", Worker::new("a", &log)).unwrap();
    let b = node.spawn_named("b", Worker::new("b", &log)).unwrap();
    w.ask(W::Monitor(a.pid())).await.unwrap();
    a.ask(Cmd::Stop(ExitReason::Shutdown)).await.unwrap();
    until("down for a", || {
        log.entries().contains(&"down:a:shutdown".to_string())
    })
    .await;

    // Already dead: Down with noproc at once.
    w.ask(W::Monitor(a.pid())).await.unwrap();
    until("noproc down", || {
        log.entries().contains(&"down:a:noproc".to_string())
    })
    .await;

    w.ask(W::Monitor(b.pid())).await.unwrap();
    w.ask(W::DemonitorAll).await.unwrap();
    b.kill();
    b.wait().await.unwrap();
    w.ask(W::Ping).await.unwrap();
    assert!(
        !log.entries().iter().any(|e| e.starts_with("down:b")),
        "{:?}",
        log.entries()
    );
    assert!(w.is_alive(), "a monitor never kills the watcher");
    node.shutdown().await;
}

#[tokio::test]
async fn exit_signal_from_a_context() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = watcher(&node, "w", &log);
    let t = node.spawn(Worker::new("t", &log)).unwrap();
    w.ask(W::Exit(t.pid(), ExitReason::error("told to die")))
        .await
        .unwrap();
    assert_eq!(t.wait().await.unwrap(), ExitReason::error("told to die"));
    let trapper = node.spawn(Worker::new("trapper", &log)).unwrap();
    trapper.ask(Cmd::Trap).await.unwrap();
    w.ask(W::Exit(trapper.pid(), ExitReason::Shutdown))
        .await
        .unwrap();
    until("trapped", || {
        log.entries()
            .contains(&"exit:trapper:w:shutdown".to_string())
    })
    .await;
    w.ask(W::Exit(trapper.pid(), ExitReason::Killed))
        .await
        .unwrap();
    assert_eq!(
        trapper.wait().await.unwrap(),
        ExitReason::Killed,
        "kill cannot be trapped"
    );
    node.shutdown().await;
}

struct Parent {
    log: Log,
}

impl Actor for Parent {
    type Msg = ();
    type Reply = Pid;

    async fn handle_call(
        &mut self,
        _: (),
        ctx: &mut Context<Self>,
    ) -> Result<Option<Pid>, BoxError> {
        let child = ctx.spawn_link(Worker::new("child", &self.log))?;
        Ok(Some(child.pid()))
    }
}

#[tokio::test]
async fn spawn_link_children_die_with_their_parent() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let parent = node.spawn(Parent { log: log.clone() }).unwrap();
    let child = parent.ask(()).await.unwrap();
    assert!(child.is_alive());
    parent.stop(ExitReason::Shutdown);
    assert_eq!(child.wait().await.unwrap(), ExitReason::Shutdown);
    node.shutdown().await;
}
