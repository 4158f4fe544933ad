//! GenFSM: a finite state machine behavior (in the spirit of Erlang's `gen_statem`).
//!
//! Write a [`GenFsm`] and spawn it wrapped in [`FsmActor`]. States are explicit values;
//! each event returns a [`Transition`]. Entering a new state runs [`GenFsm::on_enter`] (the
//! state enter call), which may arm a *state timeout*.
//!
//! What gen_statem offers, a transition offers too:
//! - **postpone** an event ([`Transition::postpone`]) until the state changes; postponed
//!   events are then retried in the order they came, before any event still queued;
//! - **insert events** ([`Transition::next_event`]) to handle next, before anything queued;
//! - a **state timeout** (cancelled by a state change), an **event timeout** (cancelled by
//!   any event) and **named generic timeouts** (cancelled only by re-arming or cancelling
//!   them). A zero timeout fires before any event already queued (a zero event timeout
//!   only if no event is queued, since an event would cancel it);
//! - **repeat the state** ([`Transition::repeat_state`]): run its enter call again.
//!
//! Order of work after a transition: inserted events, then timeouts due now, then (after a
//! state change) postponed events, then the mailbox.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use crate::actor::{Actor, ReplyHandle};
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

    /// No event arrived within the event timeout armed by the last transition.
    fn on_event_timeout(
        &mut self,
        state: &Self::State,
        ctx: &mut Context<FsmActor<Self>>,
    ) -> impl Future<Output = Result<Transition<Self>, BoxError>> + Send {
        let _ = (state, ctx);
        async { Ok(Transition::keep()) }
    }

    /// The generic timeout `name` expired.
    fn on_generic_timeout(
        &mut self,
        state: &Self::State,
        name: &str,
        ctx: &mut Context<FsmActor<Self>>,
    ) -> impl Future<Output = Result<Transition<Self>, BoxError>> + Send {
        let _ = (state, name, ctx);
        async { Ok(Transition::keep()) }
    }
}

/// What an event does: the next state, a reply, timeouts, inserted or postponed events,
/// or a stop.
pub struct Transition<F: GenFsm> {
    next: Option<F::State>,
    reply: Option<F::Reply>,
    timeout: Option<Duration>,
    stop: Option<ExitReason>,
    postponed: Option<F::Event>,
    inserted: Vec<F::Event>,
    event_timeout: Option<Duration>,
    generic: Vec<(String, Option<Duration>)>,
    repeat: bool,
}

impl<F: GenFsm> Transition<F> {
    fn empty() -> Self {
        Transition {
            next: None,
            reply: None,
            timeout: None,
            stop: None,
            postponed: None,
            inserted: Vec::new(),
            event_timeout: None,
            generic: Vec::new(),
            repeat: false,
        }
    }

    /// Move to `state` (no change if equal to the current one).
    pub fn next(state: F::State) -> Self {
        Transition {
            next: Some(state),
            ..Self::empty()
        }
    }

    /// Stay in the current state (a running state timeout keeps running).
    pub fn keep() -> Self {
        Self::empty()
    }

    /// Stop the machine with `reason`.
    pub fn stop(reason: ExitReason) -> Self {
        Transition {
            stop: Some(reason),
            ..Self::empty()
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

    /// Keep `event` (the one being handled, handed back) until the state changes, then
    /// handle it again (gen_statem's `postpone`). The caller of a postponed `call_event`
    /// waits for the retry's reply.
    pub fn postpone(mut self, event: F::Event) -> Self {
        self.postponed = Some(event);
        self
    }

    /// Handle `event` next, before anything queued (gen_statem's `next_event`); several
    /// are handled in the order given.
    pub fn next_event(mut self, event: F::Event) -> Self {
        self.inserted.push(event);
        self
    }

    /// Arm an event timeout: [`GenFsm::on_event_timeout`] runs unless an event arrives
    /// within `after`.
    pub fn event_timeout(mut self, after: Duration) -> Self {
        self.event_timeout = Some(after);
        self
    }

    /// Arm (or re-arm) the generic timeout `name`: [`GenFsm::on_generic_timeout`] runs
    /// after `after`, whatever happens meanwhile, unless it is re-armed or cancelled.
    pub fn generic_timeout(mut self, name: impl Into<String>, after: Duration) -> Self {
        self.generic.push((name.into(), Some(after)));
        self
    }

    /// Cancel the generic timeout `name`, if armed.
    pub fn cancel_generic_timeout(mut self, name: impl Into<String>) -> Self {
        self.generic.push((name.into(), None));
        self
    }

    /// Run the state's enter call again even if the state does not change (gen_statem's
    /// `repeat_state`); postponed events stay postponed.
    pub fn repeat_state(mut self) -> Self {
        self.repeat = true;
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
    #[doc(hidden)]
    EventTimeout(u64),
    #[doc(hidden)]
    GenericTimeout(String, u64),
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

type Reply<F> = ReplyHandle<FsmReply<<F as GenFsm>::State, <F as GenFsm>::Reply>>;

/// Who waits for an event's reply.
enum Caller<F: GenFsm> {
    /// Nobody (a cast, an inserted event).
    Nobody,
    /// The caller of the message being handled: answered through the handler's return, so
    /// facets see the reply like any actor's.
    Current,
    /// A caller whose event was postponed: answered through its handle.
    Later(Reply<F>),
}

/// One piece of work for the machine.
enum Work<F: GenFsm> {
    /// An event and who waits for its reply.
    Event(F::Event, Caller<F>),
    StateTimeout(u64),
    EventTimeout(u64),
    GenericTimeout(String, u64),
}

/// Runs a [`GenFsm`] as an actor.
pub struct FsmActor<F: GenFsm> {
    fsm: F,
    state: Option<F::State>,
    timer_generation: u64,
    timer: Option<TimerRef>,
    event_generation: u64,
    event_timer: Option<TimerRef>,
    generic: HashMap<String, (u64, Option<TimerRef>)>,
    generic_generation: u64,
    postponed: VecDeque<(F::Event, Option<Reply<F>>)>,
    /// Timeouts of zero armed by the last transition: they go before the mailbox.
    due: Vec<Work<F>>,
    /// The reply to the message being handled, once its transition gave one.
    current_reply: Option<Option<F::Reply>>,
}

impl<F: GenFsm> FsmActor<F> {
    /// Wraps `fsm`.
    pub fn new(fsm: F) -> Self {
        FsmActor {
            fsm,
            state: None,
            timer_generation: 0,
            timer: None,
            event_generation: 0,
            event_timer: None,
            generic: HashMap::new(),
            generic_generation: 0,
            postponed: VecDeque::new(),
            due: Vec::new(),
            current_reply: None,
        }
    }

    fn disarm(&mut self, ctx: &mut Context<Self>) {
        self.timer_generation += 1;
        if let Some(timer) = self.timer.take() {
            ctx.cancel_timer(timer);
        }
    }

    fn arm(&mut self, ctx: &mut Context<Self>, after: Duration) {
        self.disarm(ctx);
        let generation = self.timer_generation;
        if after.is_zero() {
            self.due.push(Work::StateTimeout(generation));
        } else {
            self.timer = Some(ctx.send_after(after, FsmMsg::StateTimeout(generation)));
        }
    }

    fn disarm_event_timeout(&mut self, ctx: &mut Context<Self>) {
        self.event_generation += 1;
        if let Some(timer) = self.event_timer.take() {
            ctx.cancel_timer(timer);
        }
    }

    fn arm_generic(&mut self, ctx: &mut Context<Self>, name: String, after: Option<Duration>) {
        if let Some((_, Some(timer))) = self.generic.remove(&name) {
            ctx.cancel_timer(timer);
        }
        let Some(after) = after else { return };
        self.generic_generation += 1;
        let generation = self.generic_generation;
        if after.is_zero() {
            self.generic.insert(name.clone(), (generation, None));
            self.due.push(Work::GenericTimeout(name, generation));
        } else {
            let timer = ctx.send_after(after, FsmMsg::GenericTimeout(name.clone(), generation));
            self.generic.insert(name, (generation, Some(timer)));
        }
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

    fn current(&self) -> Result<F::State, BoxError> {
        self.state
            .clone()
            .ok_or_else(|| "state machine has no state".into())
    }

    /// Runs timeouts due now, then `first`, and everything they lead to that must go before
    /// the mailbox.
    async fn process(
        &mut self,
        ctx: &mut Context<Self>,
        first: Option<Work<F>>,
    ) -> Result<(), BoxError> {
        let mut queue = VecDeque::new();
        self.drain_due(&mut queue);
        queue.extend(first);
        while let Some(work) = queue.pop_front() {
            if ctx.stop_request.is_some() {
                break;
            }
            let state = self.current()?;
            let (t, caller) = match work {
                Work::Event(event, caller) => {
                    self.disarm_event_timeout(ctx);
                    match self.fsm.handle_event(&state, event, ctx).await {
                        Ok(t) => (t, caller),
                        Err(e) => {
                            // The runtime answers this caller with the failure.
                            if let Caller::Later(handle) = caller {
                                ctx.reply = Some(handle);
                            }
                            return Err(e);
                        }
                    }
                }
                Work::StateTimeout(generation) => {
                    if generation != self.timer_generation {
                        continue;
                    }
                    self.timer = None;
                    (
                        self.fsm.on_state_timeout(&state, ctx).await?,
                        Caller::Nobody,
                    )
                }
                Work::EventTimeout(generation) => {
                    if generation != self.event_generation {
                        continue;
                    }
                    self.event_timer = None;
                    (
                        self.fsm.on_event_timeout(&state, ctx).await?,
                        Caller::Nobody,
                    )
                }
                Work::GenericTimeout(name, generation) => {
                    if self.generic.get(&name).map(|(g, _)| *g) != Some(generation) {
                        continue;
                    }
                    self.generic.remove(&name);
                    (
                        self.fsm.on_generic_timeout(&state, &name, ctx).await?,
                        Caller::Nobody,
                    )
                }
            };
            self.apply(ctx, t, caller, &mut queue).await?;
        }
        Ok(())
    }

    /// Moves timeouts due now to the front of `queue`.
    fn drain_due(&mut self, queue: &mut VecDeque<Work<F>>) {
        for work in self.due.drain(..).rev() {
            queue.push_front(work);
        }
    }

    async fn apply(
        &mut self,
        ctx: &mut Context<Self>,
        t: Transition<F>,
        caller: Caller<F>,
        queue: &mut VecDeque<Work<F>>,
    ) -> Result<(), BoxError> {
        let Transition {
            next,
            reply,
            timeout,
            stop,
            postponed,
            inserted,
            event_timeout,
            generic,
            repeat,
        } = t;
        if let Some(reason) = stop {
            ctx.stop(reason);
        }
        match (postponed, caller) {
            (Some(event), Caller::Later(handle)) => self.postponed.push_back((event, Some(handle))),
            // The handle leaves the handler's context: the caller is answered on the retry.
            (Some(event), Caller::Current) => self.postponed.push_back((event, ctx.reply_handle())),
            (Some(event), Caller::Nobody) => self.postponed.push_back((event, None)),
            (None, Caller::Later(handle)) => {
                handle.send(FsmReply::Event(reply));
            }
            (None, Caller::Current) => self.current_reply = Some(reply),
            (None, Caller::Nobody) => {}
        }
        let mut changed = false;
        match next {
            Some(next) if self.state.as_ref() != Some(&next) => {
                let from = self.state.take();
                self.enter(ctx, from, next).await?;
                changed = true;
            }
            _ if repeat => {
                let current = self.current()?;
                self.enter(ctx, Some(current.clone()), current).await?;
            }
            _ => {}
        }
        if let Some(after) = timeout {
            self.arm(ctx, after);
        }
        for (name, after) in generic {
            self.arm_generic(ctx, name, after);
        }
        if let Some(after) = event_timeout {
            self.disarm_event_timeout(ctx);
            let generation = self.event_generation;
            if after.is_zero() {
                // Any event cancels it, so it fires only if none is waiting.
                if inserted.is_empty() && queue.is_empty() && ctx.myself().mailbox_len() == 0 {
                    self.due.push(Work::EventTimeout(generation));
                }
            } else {
                self.event_timer = Some(ctx.send_after(after, FsmMsg::EventTimeout(generation)));
            }
        }
        // Front of the queue, in order: inserted events, timeouts due now, postponed events
        // (after a state change).
        if changed {
            for (event, handle) in self.postponed.drain(..).rev() {
                let caller = handle.map_or(Caller::Nobody, Caller::Later);
                queue.push_front(Work::Event(event, caller));
            }
        }
        self.drain_due(queue);
        for event in inserted.into_iter().rev() {
            queue.push_front(Work::Event(event, Caller::Nobody));
        }
        Ok(())
    }
}

impl<F: GenFsm> Actor for FsmActor<F> {
    type Msg = FsmMsg<F::Event>;
    type Reply = FsmReply<F::State, F::Reply>;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let initial = self.fsm.initial_state();
        self.enter(ctx, None, initial).await?;
        self.process(ctx, None).await
    }

    async fn handle_call(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Self::Reply>, BoxError> {
        let work = match msg {
            FsmMsg::Event(event) => Work::Event(event, Caller::Current),
            FsmMsg::GetState => return Ok(Some(FsmReply::State(self.current()?))),
            FsmMsg::StateTimeout(generation) => Work::StateTimeout(generation),
            FsmMsg::EventTimeout(generation) => Work::EventTimeout(generation),
            FsmMsg::GenericTimeout(name, generation) => Work::GenericTimeout(name, generation),
        };
        self.current_reply = None;
        self.process(ctx, Some(work)).await?;
        // A cast's reply is dropped by the runtime; a postponed call's handle was taken, so
        // answering `None` here leaves its caller waiting for the retry.
        Ok(self.current_reply.take().map(FsmReply::Event))
    }

    fn msg_name(msg: &Self::Msg) -> &'static str {
        match msg {
            FsmMsg::Event(_) => "event",
            FsmMsg::GetState => "get_state",
            FsmMsg::StateTimeout(_) => "state_timeout",
            FsmMsg::EventTimeout(_) => "event_timeout",
            FsmMsg::GenericTimeout(..) => "generic_timeout",
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

    /// Sends an event and waits for the transition; returns its reply, if any. A postponed
    /// event is answered when it is finally handled.
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
