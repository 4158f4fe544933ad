//! Location transparency: two nodes in one process over the loopback transport, which
//! really encodes every frame as protobuf.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::{
    Actor, ActorId, ActorRef, BoxError, Context, Error, ExitReason, Info, LoopbackNetwork,
    MonitorRef, Node, Pid,
};

use crate::common::{string_json_codec, until, Echo, Log};

async fn two_nodes() -> (Node, Node) {
    let net = LoopbackNetwork::new();
    let a = Node::builder("alpha")
        .transport(net.clone())
        .build()
        .await
        .unwrap();
    let b = Node::builder("beta").transport(net).build().await.unwrap();
    (a, b)
}

#[tokio::test]
async fn tell_and_ask_through_the_same_actor_ref_api_across_nodes() {
    let (alpha, beta) = two_nodes().await;
    alpha.spawn_named("echo", Echo).unwrap();
    let id = ActorId::parse("echo@alpha").unwrap();
    let remote: ActorRef<Echo> = beta.actor_ref(&id).unwrap();
    assert!(!remote.is_local());
    assert_eq!(remote.ask("hello".to_string()).await.unwrap(), "echo:hello");
    remote.tell("fire".to_string()).await.unwrap();
    // The local handle answers the same way.
    let local: ActorRef<Echo> = alpha.actor_ref(&id).unwrap();
    assert!(local.is_local());
    assert_eq!(local.ask("hello".to_string()).await.unwrap(), "echo:hello");
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn remote_errors_come_back_typed() {
    let (alpha, beta) = two_nodes().await;
    alpha.spawn_named("echo", Echo).unwrap();
    let missing: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("nobody@alpha").unwrap())
        .unwrap();
    assert!(matches!(
        missing.ask("x".to_string()).await,
        Err(Error::NoProc(_))
    ));
    let nowhere: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@gamma").unwrap())
        .unwrap();
    assert!(matches!(
        nowhere.ask("x".to_string()).await,
        Err(Error::Transport(_))
    ));
    let echo: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    let err = echo.ask("crash".to_string()).await.unwrap_err();
    assert_eq!(err.kind(), "actor_failed", "{err:?}");
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_remote_ask_timeout_drops_the_late_reply() {
    let (alpha, beta) = two_nodes().await;
    alpha.spawn_named("echo", Echo).unwrap();
    let echo: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    let err = echo
        .ask_timeout("slow:300".to_string(), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err, Error::Timeout(Duration::from_millis(50)));
    // The slow reply arrives while this ask waits; it must not be taken for this one.
    assert_eq!(echo.ask("next".to_string()).await.unwrap(), "echo:next");
    alpha.shutdown().await;
    beta.shutdown().await;
}

/// Links to or monitors a pid on command; logs what it gets.
struct Observer {
    log: Log,
}

enum Obs {
    Link(Pid),
    Monitor(Pid),
    Trap,
}

impl Actor for Observer {
    type Msg = Obs;
    type Reply = Option<MonitorRef>;

    async fn handle_call(
        &mut self,
        msg: Obs,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Option<MonitorRef>>, BoxError> {
        Ok(Some(match msg {
            Obs::Link(p) => {
                ctx.link(&p);
                None
            }
            Obs::Monitor(p) => Some(ctx.monitor(&p)),
            Obs::Trap => {
                ctx.trap_exit(true);
                None
            }
        }))
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        match info {
            Info::Exit { from, reason } => self.log.push(format!("exit:{}:{reason}", from.id())),
            Info::Down { id, reason, .. } => self.log.push(format!("down:{id}:{reason}")),
            Info::EventHandlerExit { .. } | Info::Timeout | Info::Message(_) => {}
        }
        Ok(())
    }
}

#[tokio::test]
async fn monitors_and_links_work_across_nodes() {
    let (alpha, beta) = two_nodes().await;
    let log = Log::default();
    let echo = alpha.spawn_named("echo", Echo).unwrap();
    let observer = beta
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    let remote_echo = beta.pid(&ActorId::parse("echo@alpha").unwrap()).unwrap();
    observer
        .ask(Obs::Monitor(remote_echo.clone()))
        .await
        .unwrap();
    observer.ask(Obs::Trap).await.unwrap();
    observer.ask(Obs::Link(remote_echo)).await.unwrap();
    // Crash it through beta: frames from beta to alpha are ordered, so the monitor and link
    // frames land before the crash.
    let _ = echo;
    let via_beta: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    let _ = via_beta.ask("crash".to_string()).await;
    until("down and exit arrive on beta", || log.entries().len() == 2).await;
    let mut entries = log.entries();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            "down:echo@alpha:error: echo crashed",
            "exit:echo@alpha:error: echo crashed"
        ]
    );
    // Monitoring something that is not there gives noproc.
    let ghost = beta.pid(&ActorId::parse("ghost@alpha").unwrap()).unwrap();
    observer.ask(Obs::Monitor(ghost)).await.unwrap();
    until("noproc down", || {
        log.entries()
            .contains(&"down:ghost@alpha:noproc".to_string())
    })
    .await;
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_remote_crash_kills_a_linked_non_trapping_actor() {
    let (alpha, beta) = two_nodes().await;
    let log = Log::default();
    alpha.spawn_named("echo", Echo).unwrap();
    let observer = beta.spawn_named("obs", Observer { log }).unwrap();
    let remote_echo = beta.pid(&ActorId::parse("echo@alpha").unwrap()).unwrap();
    observer.ask(Obs::Link(remote_echo)).await.unwrap();
    // Make sure the link frame was handled: a round trip on the same ordered channel.
    let echo: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    let _ = echo.ask("crash".to_string()).await;
    let reason = observer.wait().await.unwrap();
    assert_eq!(reason, ExitReason::error("echo crashed"));
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_node_without_transport_says_so() {
    let node = Node::builder("solo").build().await.unwrap();
    let err = node.pid(&ActorId::parse("x@other").unwrap()).unwrap_err();
    assert!(matches!(err, Error::Transport(_)));
    node.shutdown().await;
}

#[tokio::test]
async fn a_lost_node_turns_links_monitors_and_asks_into_noconnection_exactly_once() {
    let (alpha, beta) = two_nodes().await;
    let log = Log::default();
    alpha.spawn_named("echo", Echo).unwrap();
    let observer = beta
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    let remote_echo = beta.pid(&ActorId::parse("echo@alpha").unwrap()).unwrap();
    observer.ask(Obs::Trap).await.unwrap();
    observer
        .ask(Obs::Monitor(remote_echo.clone()))
        .await
        .unwrap();
    observer.ask(Obs::Link(remote_echo)).await.unwrap();
    beta.groups()
        .join(
            "g",
            &beta.pid(&ActorId::parse("echo@alpha").unwrap()).unwrap(),
        )
        .unwrap();
    let echo: ActorRef<Echo> = beta
        .actor_ref(&ActorId::parse("echo@alpha").unwrap())
        .unwrap();
    // Round trip on the same ordered channel: the monitor and link frames were handled.
    assert_eq!(echo.ask("sync".to_string()).await.unwrap(), "echo:sync");
    let mut pending = Box::pin(echo.ask_timeout("slow:500".to_string(), Duration::from_secs(60)));
    // One poll registers the ask and sends its frame.
    assert!(futures::poll!(&mut pending).is_pending());

    let lost = beta.node_lost("alpha");
    assert_eq!((lost.links, lost.monitors, lost.asks), (1, 1, 1));
    assert_eq!(lost.group_members, 1);
    assert!(beta.groups().members("g").is_empty());
    assert_eq!(
        pending.await.unwrap_err(),
        Error::NoConnection("alpha".into())
    );
    until("down and exit arrive", || log.entries().len() == 2).await;
    let mut entries = log.entries();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            "down:echo@alpha:noconnection",
            "exit:echo@alpha:noconnection"
        ]
    );
    // Told again, nothing is left to tell: each was answered once.
    assert_eq!(
        beta.node_lost("alpha"),
        plexspaces_core::NodeLost::default()
    );
    assert_eq!(log.entries().len(), 2);
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn a_lost_node_kills_a_linked_non_trapping_actor_with_noconnection() {
    let (alpha, beta) = two_nodes().await;
    alpha.spawn_named("echo", Echo).unwrap();
    let observer = beta
        .spawn_named(
            "obs",
            Observer {
                log: Log::default(),
            },
        )
        .unwrap();
    let remote_echo = beta.pid(&ActorId::parse("echo@alpha").unwrap()).unwrap();
    observer.ask(Obs::Link(remote_echo)).await.unwrap();
    beta.node_lost("alpha");
    assert_eq!(observer.wait().await.unwrap(), ExitReason::NoConnection);
    alpha.shutdown().await;
    beta.shutdown().await;
}

#[tokio::test]
async fn monitoring_or_linking_across_an_unreachable_node_is_noconnection_at_once() {
    let (alpha, beta) = two_nodes().await;
    let log = Log::default();
    let observer = beta
        .spawn_named("obs", Observer { log: log.clone() })
        .unwrap();
    observer.ask(Obs::Trap).await.unwrap();
    // gamma was never bound on this network: the transport refuses frames for it.
    let ghost = beta.pid(&ActorId::parse("x@gamma").unwrap()).unwrap();
    observer.ask(Obs::Monitor(ghost.clone())).await.unwrap();
    observer.ask(Obs::Link(ghost)).await.unwrap();
    until("down and exit", || log.entries().len() == 2).await;
    let mut entries = log.entries();
    entries.sort();
    assert_eq!(
        entries,
        vec!["down:x@gamma:noconnection", "exit:x@gamma:noconnection"]
    );
    alpha.shutdown().await;
    beta.shutdown().await;
}

/// Keeps the reply handles of `hold` asks; `release:X` answers them all with X; `stop`
/// stops the actor with its handles unanswered.
struct Keeper {
    held: Vec<plexspaces_core::ReplyHandle<String>>,
    count: Arc<AtomicUsize>,
}

impl Actor for Keeper {
    type Msg = String;
    type Reply = String;

    async fn handle_call(
        &mut self,
        msg: String,
        ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        if msg == "hold" {
            self.held.extend(ctx.reply_handle());
            self.count.store(self.held.len(), Ordering::SeqCst);
            return Ok(None);
        }
        if let Some(value) = msg.strip_prefix("release:") {
            for handle in self.held.drain(..) {
                handle.send(value.to_owned());
            }
            self.count.store(0, Ordering::SeqCst);
            return Ok(Some("released".into()));
        }
        if msg == "stop" {
            ctx.stop(ExitReason::Normal);
            return Ok(Some("stopping".into()));
        }
        Err(format!("unknown command {msg:?}").into())
    }

    string_json_codec!("keep");
}

/// The remote end answers from the actor's own task: a reply given later (from another
/// message) still reaches the caller, and a handle dropped unanswered when the actor stops
/// answers with the actor's exit, the same as for a local caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_reply_handles_answer_late_or_with_the_actors_exit() {
    let (alpha, beta) = two_nodes().await;
    let held = Arc::new(AtomicUsize::new(0));
    alpha
        .spawn_named(
            "keeper",
            Keeper {
                held: Vec::new(),
                count: held.clone(),
            },
        )
        .unwrap();
    let id = ActorId::parse("keeper@alpha").unwrap();
    let remote: ActorRef<Keeper> = beta.actor_ref(&id).unwrap();
    let local: ActorRef<Keeper> = alpha.actor_ref(&id).unwrap();

    let waiting = {
        let remote = remote.clone();
        tokio::spawn(async move { remote.ask("hold".to_string()).await })
    };
    until("the remote ask is held", || {
        held.load(Ordering::SeqCst) == 1
    })
    .await;
    assert_eq!(
        remote.ask("release:late".to_string()).await.unwrap(),
        "released"
    );
    assert_eq!(waiting.await.unwrap().unwrap(), "late");

    let remote_held = {
        let remote = remote.clone();
        tokio::spawn(async move { remote.ask("hold".to_string()).await })
    };
    let local_held = {
        let local = local.clone();
        tokio::spawn(async move { local.ask("hold".to_string()).await })
    };
    until("both asks are held", || held.load(Ordering::SeqCst) == 2).await;
    assert_eq!(local.ask("stop".to_string()).await.unwrap(), "stopping");
    let remote_err = remote_held.await.unwrap().unwrap_err();
    let local_err = local_held.await.unwrap().unwrap_err();
    assert_eq!(
        remote_err.kind(),
        local_err.kind(),
        "{remote_err:?} vs {local_err:?}"
    );
    assert!(matches!(remote_err, Error::NoProc(_)), "{remote_err:?}");
    alpha.shutdown().await;
    beta.shutdown().await;
}
