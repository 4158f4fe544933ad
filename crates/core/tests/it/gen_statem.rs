//! GenFSM against the code lock of gen_statem's user's guide: postponing, inserted events,
//! event timeouts, generic timeouts and state enter calls.

use std::time::Duration;

use plexspaces_core::fsm::{FsmActor, GenFsm, Transition};
use plexspaces_core::{ActorRef, BoxError, Context, Node, SpawnOptions};

use crate::common::Log;

/// The guide's code lock: buttons are collected while locked (and forgotten after 30 s
/// without a press); the right code opens the door for 10 s (a generic timeout named
/// `open`); buttons pressed while open are postponed until it locks again.
struct CodeLock {
    code: Vec<u32>,
    buttons: Vec<u32>,
    pressed: Option<u32>,
    log: Log,
}

#[derive(Debug, Clone, PartialEq)]
enum Door {
    Locked,
    Open,
}

#[derive(Debug)]
enum Input {
    Button(u32),
    Down(u32),
    Up(u32),
    Buttons,
    Repeat,
}

impl GenFsm for CodeLock {
    type State = Door;
    type Event = Input;
    type Reply = Vec<u32>;

    fn initial_state(&self) -> Door {
        Door::Locked
    }

    async fn handle_event(
        &mut self,
        state: &Door,
        input: Input,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Transition<Self>, BoxError> {
        Ok(match (state, input) {
            (_, Input::Buttons) => Transition::keep().reply(self.buttons.clone()),
            (_, Input::Repeat) => Transition::keep().repeat_state(),
            (_, Input::Down(button)) => {
                self.pressed = Some(button);
                Transition::keep()
            }
            (_, Input::Up(button)) if self.pressed == Some(button) => {
                self.pressed = None;
                Transition::keep().next_event(Input::Button(button))
            }
            (_, Input::Up(_)) => Transition::keep(),
            (Door::Open, button @ Input::Button(_)) => Transition::keep().postpone(button),
            (Door::Locked, Input::Button(button)) => {
                self.log.push(format!("button:{button}"));
                self.buttons.push(button);
                if self.buttons.ends_with(&self.code) {
                    Transition::next(Door::Open)
                        .generic_timeout("open", Duration::from_secs(10))
                        .reply(self.buttons.clone())
                } else {
                    Transition::keep()
                        .event_timeout(Duration::from_secs(30))
                        .reply(self.buttons.clone())
                }
            }
        })
    }

    async fn on_enter(
        &mut self,
        from: Option<&Door>,
        state: &Door,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Option<Duration>, BoxError> {
        self.log.push(format!("enter:{state:?}:from:{from:?}"));
        if *state == Door::Locked {
            self.buttons.clear();
        }
        Ok(None)
    }

    async fn on_event_timeout(
        &mut self,
        _state: &Door,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Transition<Self>, BoxError> {
        self.log.push("forgot buttons");
        self.buttons.clear();
        Ok(Transition::keep())
    }

    async fn on_generic_timeout(
        &mut self,
        _state: &Door,
        name: &str,
        _ctx: &mut Context<FsmActor<Self>>,
    ) -> Result<Transition<Self>, BoxError> {
        self.log.push(format!("timeout:{name}"));
        Ok(Transition::next(Door::Locked))
    }
}

async fn code_lock(node: &Node, log: &Log) -> ActorRef<FsmActor<CodeLock>> {
    node.start(
        FsmActor::new(CodeLock {
            code: vec![1, 2, 3],
            buttons: Vec::new(),
            pressed: None,
            log: log.clone(),
        }),
        SpawnOptions::default(),
    )
    .await
    .unwrap()
}

async fn enter_code(lock: &ActorRef<FsmActor<CodeLock>>) {
    for b in [1, 2, 3] {
        lock.call_event(Input::Button(b)).await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn buttons_pressed_while_open_are_postponed_until_it_locks() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let lock = code_lock(&node, &log).await;
    enter_code(&lock).await;
    assert_eq!(lock.state().await.unwrap(), Door::Open);
    lock.send_event(Input::Button(9)).await.unwrap();
    // A call postponed too: answered when it is finally handled, after the lock.
    let caller = lock.clone();
    let late = tokio::spawn(async move {
        caller
            .ask_timeout(
                plexspaces_core::fsm::FsmMsg::Event(Input::Button(8)),
                Duration::from_secs(60),
            )
            .await
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        lock.call_event(Input::Buttons).await.unwrap(),
        Some(vec![1, 2, 3]),
        "the postponed presses were not collected"
    );
    assert_eq!(lock.state().await.unwrap(), Door::Open);
    match late.await.unwrap().unwrap() {
        plexspaces_core::fsm::FsmReply::Event(reply) => assert_eq!(reply, Some(vec![9, 8])),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(lock.state().await.unwrap(), Door::Locked);
    let entries = log.entries();
    let at = entries.iter().position(|e| e == "timeout:open").unwrap();
    assert_eq!(
        entries[at..],
        [
            "timeout:open",
            "enter:Locked:from:Some(Open)",
            "button:9",
            "button:8"
        ],
        "postponed events are retried in order once the state changed"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn inserted_events_go_before_queued_ones() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let lock = code_lock(&node, &log).await;
    for b in [1, 2, 3] {
        lock.send_event(Input::Down(b)).await.unwrap();
        lock.send_event(Input::Up(b)).await.unwrap();
    }
    // Queued right behind the last `Up`: its inserted `Button(3)` goes first and opens
    // the lock, so this press is postponed rather than collected.
    lock.send_event(Input::Button(7)).await.unwrap();
    assert_eq!(lock.state().await.unwrap(), Door::Open);
    assert_eq!(log.count("button:7"), 0, "postponed while open");
    assert_eq!(
        log.entries()
            .iter()
            .filter(|e| e.starts_with("button:"))
            .collect::<Vec<_>>(),
        ["button:1", "button:2", "button:3"]
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn an_event_timeout_is_cancelled_by_any_event() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let lock = code_lock(&node, &log).await;
    lock.call_event(Input::Button(5)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    lock.call_event(Input::Button(6)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        lock.call_event(Input::Buttons).await.unwrap(),
        Some(vec![5, 6]),
        "each press restarted the 30 s"
    );
    // That query was an event too: it cancelled the timeout, so nothing is forgotten now.
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(log.count("forgot buttons"), 0);
    lock.call_event(Input::Button(7)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(log.count("forgot buttons"), 1);
    assert_eq!(lock.call_event(Input::Buttons).await.unwrap(), Some(vec![]));
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_generic_timeout_survives_events_and_state_enter_calls_repeat() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let lock = code_lock(&node, &log).await;
    assert_eq!(
        log.entries(),
        ["enter:Locked:from:None"],
        "the initial state is entered"
    );
    lock.call_event(Input::Repeat).await.unwrap();
    assert_eq!(
        log.entries()[1],
        "enter:Locked:from:Some(Locked)",
        "repeat_state runs the enter call again"
    );
    enter_code(&lock).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        lock.call_event(Input::Repeat).await.unwrap();
        assert_eq!(lock.state().await.unwrap(), Door::Open);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        lock.state().await.unwrap(),
        Door::Locked,
        "10 s after opening"
    );
    assert_eq!(log.count("timeout:open"), 1);
    node.shutdown().await;
}
