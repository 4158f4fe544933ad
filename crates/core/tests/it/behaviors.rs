//! GenFSM state timeouts and GenEvent handler management.

use std::time::Duration;

use async_trait::async_trait;
use plexspaces_core::event::{EventHandler, EventManager, Handoff};
use plexspaces_core::fsm::{FsmActor, GenFsm, Transition};
use plexspaces_core::{BoxError, Context, ExitReason, Node, SpawnOptions};

use crate::common::{until, Log, Worker};

/// A code lock: the right code opens it for 10 s, then it locks itself again.
struct CodeLock {
    code: u32,
    log: Log,
}

#[derive(Debug, Clone, PartialEq)]
enum Door {
    Locked,
    Open,
}

impl GenFsm for CodeLock {
    type State = Door;
    type Event = u32;
    type Reply = bool;

    fn initial_state(&self) -> Door {
        Door::Locked
    }

    async fn handle_event(
        &mut self,
        state: &Door,
        code: u32,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Transition<Self>, BoxError> {
        Ok(match state {
            Door::Locked if code == self.code => Transition::next(Door::Open).reply(true),
            Door::Locked => Transition::keep().reply(false),
            // Entering any code while open locks it (and cancels the state timeout).
            Door::Open => Transition::next(Door::Locked).reply(false),
        })
    }

    async fn on_enter(
        &mut self,
        from: Option<&Door>,
        state: &Door,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Option<Duration>, BoxError> {
        self.log.push(format!("enter:{state:?}:from:{from:?}"));
        Ok(match state {
            Door::Open => Some(Duration::from_secs(10)),
            Door::Locked => None,
        })
    }

    async fn on_state_timeout(
        &mut self,
        state: &Door,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Transition<Self>, BoxError> {
        self.log.push(format!("timeout:{state:?}"));
        Ok(Transition::next(Door::Locked))
    }
}

#[tokio::test(start_paused = true)]
async fn fsm_state_timeout_fires_only_if_still_in_the_state() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let lock = node
        .start(
            FsmActor::new(CodeLock {
                code: 1234,
                log: log.clone(),
            }),
            SpawnOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(lock.state().await.unwrap(), Door::Locked);
    assert_eq!(lock.call_event(1).await.unwrap(), Some(false));
    assert_eq!(lock.state().await.unwrap(), Door::Locked);
    assert_eq!(lock.call_event(1234).await.unwrap(), Some(true));
    assert_eq!(lock.state().await.unwrap(), Door::Open);

    tokio::time::sleep(Duration::from_millis(9_990)).await;
    assert_eq!(lock.state().await.unwrap(), Door::Open, "not before 10 s");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        lock.state().await.unwrap(),
        Door::Locked,
        "the state timeout fired"
    );

    // Open again, then leave the state early: the old timeout must not fire later.
    lock.call_event(1234).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    lock.call_event(0).await.unwrap();
    lock.call_event(1234).await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(
        lock.state().await.unwrap(),
        Door::Open,
        "the first timeout was cancelled"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(lock.state().await.unwrap(), Door::Locked);
    assert_eq!(log.count("timeout:Open"), 2);
    assert_eq!(
        log.entries()[..3],
        [
            "enter:Locked:from:None",
            "enter:Open:from:Some(Locked)",
            "timeout:Open"
        ]
    );
    node.shutdown().await;
}

/// Records events; fails on a chosen event; hands its count over on swap.
struct Recorder {
    name: &'static str,
    log: Log,
    fail_on: Option<u32>,
    seen: u32,
}

#[async_trait]
impl EventHandler<u32> for Recorder {
    async fn init(&mut self, handoff: Handoff) -> Result<(), BoxError> {
        if let Some(count) = handoff.and_then(|h| h.downcast::<u32>().ok()) {
            self.seen = *count;
            self.log
                .push(format!("{}:handoff:{}", self.name, self.seen));
        }
        Ok(())
    }

    async fn handle_event(&mut self, event: &u32) -> Result<(), BoxError> {
        if Some(*event) == self.fail_on {
            if *event == 13 {
                panic!("unlucky");
            }
            return Err("bad event".into());
        }
        self.seen += 1;
        self.log.push(format!("{}:{event}", self.name));
        Ok(())
    }

    async fn terminate(&mut self, reason: &ExitReason) -> Handoff {
        self.log.push(format!("{}:terminate:{reason}", self.name));
        Some(Box::new(self.seen))
    }
}

fn recorder(name: &'static str, log: &Log, fail_on: Option<u32>) -> Recorder {
    Recorder {
        name,
        log: log.clone(),
        fail_on,
        seen: 0,
    }
}

#[tokio::test]
async fn gen_event_notify_sync_notify_swap_and_remove() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let manager = node.spawn(EventManager::<u32>::new()).unwrap();
    manager
        .add_handler("a", recorder("a", &log, None))
        .await
        .unwrap();
    manager
        .add_handler("b", recorder("b", &log, None))
        .await
        .unwrap();
    assert!(
        manager
            .add_handler("a", recorder("a2", &log, None))
            .await
            .is_err(),
        "ids are unique"
    );
    manager.notify(1).await.unwrap();
    manager.sync_notify(2).await.unwrap();
    assert_eq!(log.entries(), vec!["a:1", "b:1", "a:2", "b:2"]);
    log.clear();
    manager
        .swap_handler("a", "c", recorder("c", &log, None))
        .await
        .unwrap();
    assert_eq!(manager.which_handlers().await.unwrap(), vec!["b", "c"]);
    assert_eq!(log.entries(), vec!["a:terminate:normal", "c:handoff:2"]);
    manager.delete_handler("b").await.unwrap();
    assert!(manager.delete_handler("b").await.is_err());
    assert_eq!(manager.which_handlers().await.unwrap(), vec!["c"]);
    node.shutdown().await;
}

#[tokio::test]
async fn a_failing_handler_is_removed_the_manager_lives_and_the_owner_is_told() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let owner = node
        .spawn_named("owner", Worker::new("owner", &log))
        .unwrap();
    let manager = node.spawn(EventManager::<u32>::new()).unwrap();
    manager
        .add_sup_handler("flaky", recorder("flaky", &log, Some(7)), &owner.pid())
        .await
        .unwrap();
    manager
        .add_sup_handler("panicky", recorder("panicky", &log, Some(13)), &owner.pid())
        .await
        .unwrap();
    manager
        .add_handler("steady", recorder("steady", &log, None))
        .await
        .unwrap();
    manager.sync_notify(7).await.unwrap();
    manager.sync_notify(13).await.unwrap();
    manager.sync_notify(8).await.unwrap();
    assert_eq!(manager.which_handlers().await.unwrap(), vec!["steady"]);
    until("owner told twice", || {
        log.entries()
            .iter()
            .filter(|e| e.starts_with("handler-exit"))
            .count()
            == 2
    })
    .await;
    let entries = log.entries();
    assert!(
        entries.contains(&"handler-exit:owner:flaky:error: bad event".to_string()),
        "{entries:?}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e.starts_with("handler-exit:owner:panicky:error")),
        "{entries:?}"
    );
    assert!(
        entries.contains(&"steady:7".to_string()) && entries.contains(&"steady:13".to_string())
    );
    assert!(
        entries.contains(&"panicky:7".to_string()),
        "handlers before the failure saw events"
    );
    assert!(manager.is_alive() && owner.is_alive());
    node.shutdown().await;
}
