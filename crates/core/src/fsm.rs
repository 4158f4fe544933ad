//! GenFSM: a finite state machine behavior (in the spirit of Erlang's `gen_statem`).
//!
//! Write a [`GenFsm`] and spawn it wrapped in [`FsmActor`]. States are explicit values;
//! each event returns a [`Transition`]. Entering a new state runs [`GenFsm::on_enter`], which
//! may arm a *state timeout*; a state timeout is cancelled by any state change and fires
//! [`GenFsm::on_state_timeout`] if the machine is still in that state when it expires.

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use crate::actor::Actor;
use crate::context::{Context, TimerRef};
use crate::error::{BoxError, ExitReason, Result};
use crate::pid::ActorRef;

/// A state machine.
pub trait GenFsm: Send + Sized + 'static {
    /// The states.
    type State: Clone + PartialEq + Debug + Send + Sync + 'static;
    /// The events it reacts to.
    type Event: Send + 'static;
    /// What a synchronous event (`call_event`) returns.
    type Reply: Send + 'static;

    /// The state to start in (its `on_enter` runs with `from = None`).
    fn initial_state(&self) -> Self::State;

    /// Reacts to `event` in `state`.
    fn handle_event(
        &mut self,
        state: &Self::State,
        event: Self::Event,
        ctx: &mut Context<FsmActor<Self>>,
    ) -> impl Future<Output = Result<Transition<Self>, BoxError>> + Send;

    /// Enter action: runs on every state change. Return a duration to arm a state timeout.
    fn on_enter(
        &mut self,
        from: Option<&Self::State>,
        state: &Self::State,
        ctx: &mut Context<FsmActor<Self>>,
    ) -> impl Future<Output = Result<Option<Duration>, BoxError>> + Send {
        let _ = (from, state, ctx);
        async { Ok(None) }
    }

    /// The state timeout armed for `state` expired.
    fn on_state_timeout(
        &mut self,
        state: &Self::State,
        ctx: &mut Context<FsmActor<Self>>,
    ) -> impl Future<Output = Result<Transition<Self>, BoxError>> + Send {
        let _ = (state, ctx);
        async { Ok(Transition::keep()) }
    }
}

/// What an event does: the next state, a reply, a state timeout, or a stop.
pub struct Transition<F: GenFsm> {
    next: Option<F::State>,
    reply: Option<F::Reply>,
    timeout: Option<Duration>,
    stop: Option<ExitReason>,
}

impl<F: GenFsm> Transition<F> {
    /// Move to `state` (no change if equal to the current one).
    pub fn next(state: F::State) -> Self {
        Transition {
            next: Some(state),
            reply: None,
            timeout: None,
            stop: None,
        }
    }

    /// Stay in the current state (a running state timeout keeps running).
    pub fn keep() -> Self {
        Transition {
            next: None,
            reply: None,
            timeout: None,
            stop: None,
        }
    }

    /// Stop the machine with `reason`.
    pub fn stop(reason: ExitReason) -> Self {
        Transition {
            next: None,
            reply: None,
            timeout: None,
            stop: Some(reason),
        }
    }

    /// Answer a `call_event`.
    pub fn reply(mut self, reply: F::Reply) -> Self {
        self.reply = Some(reply);
        self
    }

    /// Arm (or re-arm) a state timeout, overriding one armed by the enter action.
    pub fn state_timeout(mut self, after: Duration) -> Self {
        self.timeout = Some(after);
        self
    }
}

/// Messages to an [`FsmActor`].
pub enum FsmMsg<E> {
    /// An event.
    Event(E),
    /// Asks for the current state.
    GetState,
    #[doc(hidden)]
    StateTimeout(u64),
}

impl<E> From<E> for FsmMsg<E> {
    fn from(event: E) -> Self {
        FsmMsg::Event(event)
    }
}

/// Replies from an [`FsmActor`].
#[derive(Debug)]
pub enum FsmReply<S, R> {
    /// The event's reply, if the transition gave one.
    Event(Option<R>),
    /// The current state.
    State(S),
}

/// Runs a [`GenFsm`] as an actor.
pub struct FsmActor<F: GenFsm> {
    fsm: F,
    state: Option<F::State>,
    timer_generation: u64,
    timer: Option<TimerRef>,
    /// A zero state timeout is due: it fires before any queued event, as in gen_statem.
    timeout_due_now: bool,
}

impl<F: GenFsm> FsmActor<F> {
    /// Wraps `fsm`.
    pub fn new(fsm: F) -> Self {
        FsmActor {
            fsm,
            state: None,
            timer_generation: 0,
            timer: None,
            timeout_due_now: false,
        }
    }

    fn disarm(&mut self, ctx: &mut Context<Self>) {
        self.timeout_due_now = false;
        self.timer_generation += 1;
        if let Some(timer) = self.timer.take() {
            ctx.cancel_timer(timer);
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>, after: Duration) {
        self.disarm(ctx);
        if after.is_zero() {
            self.timeout_due_now = true;
            return;
        }
        let generation = self.timer_generation;
        self.timer = Some(ctx.send_after(after, FsmMsg::StateTimeout(generation)));
    }

    /// Fires zero state timeouts armed by the last transition, before the next message.
    async fn fire_due_timeouts(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        while self.timeout_due_now && ctx.stop_request.is_none() {
            self.timeout_due_now = false;
            let state = self.current()?;
            let t = self.fsm.on_state_timeout(&state, ctx).await?;
            self.apply(ctx, t).await?;
        }
        Ok(())
    }

    async fn enter(
        &mut self,
        ctx: &mut Context<Self>,
        from: Option<F::State>,
        to: F::State,
    ) -> Result<(), BoxError> {
        self.disarm(ctx);
        self.state = Some(to.clone());
        if let Some(after) = self.fsm.on_enter(from.as_ref(), &to, ctx).await? {
            self.arm(ctx, after);
        }
        Ok(())
    }

    async fn apply(
        &mut self,
        ctx: &mut Context<Self>,
        t: Transition<F>,
    ) -> Result<Option<F::Reply>, BoxError> {
        if let Some(reason) = t.stop {
            ctx.stop(reason);
        }
        if let Some(next) = t.next {
            if self.state.as_ref() != Some(&next) {
                let from = self.state.take();
                self.enter(ctx, from, next).await?;
            }
        }
        if let Some(after) = t.timeout {
            self.arm(ctx, after);
        }
        Ok(t.reply)
    }

    fn current(&self) -> Result<F::State, BoxError> {
        self.state
            .clone()
            .ok_or_else(|| "state machine has no state".into())
    }
}

impl<F: GenFsm> Actor for FsmActor<F> {
    type Msg = FsmMsg<F::Event>;
    type Reply = FsmReply<F::State, F::Reply>;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let initial = self.fsm.initial_state();
        self.enter(ctx, None, initial).await?;
        self.fire_due_timeouts(ctx).await
    }

    async fn handle_call(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Self::Reply>, BoxError> {
        match msg {
            FsmMsg::Event(event) => {
                let state = self.current()?;
                let t = self.fsm.handle_event(&state, event, ctx).await?;
                let reply = self.apply(ctx, t).await?;
                self.fire_due_timeouts(ctx).await?;
                Ok(Some(FsmReply::Event(reply)))
            }
            FsmMsg::GetState => Ok(Some(FsmReply::State(self.current()?))),
            FsmMsg::StateTimeout(generation) => {
                if generation == self.timer_generation {
                    self.timer = None;
                    let state = self.current()?;
                    let t = self.fsm.on_state_timeout(&state, ctx).await?;
                    self.apply(ctx, t).await?;
                    self.fire_due_timeouts(ctx).await?;
                }
                Ok(None)
            }
        }
    }

    fn msg_name(msg: &Self::Msg) -> &'static str {
        match msg {
            FsmMsg::Event(_) => "event",
            FsmMsg::GetState => "get_state",
            FsmMsg::StateTimeout(_) => "state_timeout",
        }
    }
}

impl<F: GenFsm> ActorRef<FsmActor<F>> {
    /// Sends an event without waiting for the transition.
    pub async fn send_event(&self, event: F::Event) -> Result<()> {
        self.tell(FsmMsg::Event(event))
            .await
            .map_err(|e| e.to_error(self.id()))
    }

    /// Sends an event and waits for the transition; returns its reply, if any.
    pub async fn call_event(&self, event: F::Event) -> Result<Option<F::Reply>> {
        match self.ask(FsmMsg::Event(event)).await? {
            FsmReply::Event(reply) => Ok(reply),
            FsmReply::State(_) => Ok(None),
        }
    }

    /// The current state.
    pub async fn state(&self) -> Result<F::State> {
        match self.ask(FsmMsg::GetState).await? {
            FsmReply::State(state) => Ok(state),
            FsmReply::Event(_) => Err(crate::Error::NoReply),
        }
    }
}
