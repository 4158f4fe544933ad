//! [`TimerFacet`]: timers a handler sets through `ctx` ([`Timers`]), one-shot or interval,
//! each delivering an envelope to the actor itself.
//!
//! Timers are not durable: they live as long as the activation, and are cancelled when it
//! stops (deactivated when idle, crashed, node stopped). Reminders are the durable kind
//! ([`crate::reminders::ReminderFacet`]). A typed actor that knows its own message type can
//! use the runtime's `ctx.send_after` / `ctx.send_interval` directly; this facet is the same
//! mechanism (one runtime timer task per timer, aborted with the actor) for actors
//! addressed by envelopes (the node's virtual actors, whose messages are a `msg_type` and a
//! payload), with a cap per actor and a count of what is pending.
//!
//! A timer's message carries the header [`TIMER_HEADER`] (its id) and no caller, so an
//! [`crate::facets::AuthorizationFacet`] policy sees it as sent from the node itself
//! ([`crate::facets::Allow::Internal`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use plexspaces_core::facet::ActorInfo;
use plexspaces_core::{ActorId, Envelope, ExitReason, Facet, Node};
use tokio::task::AbortHandle;

/// The header naming the timer that sent a message (its [`TimerId`] as a number).
pub const TIMER_HEADER: &str = "x-plexspaces-timer";

/// The most timers one actor may have pending by default.
pub const DEFAULT_MAX_TIMERS: usize = 1024;

/// A timer set with [`Timers::after`] or [`Timers::every`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerId(pub u64);

/// Why a timer could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimerError {
    /// The actor already has this many timers pending.
    #[error("too many timers: {0} are pending")]
    TooMany(usize),
    /// An interval timer needs a period above zero.
    #[error("an interval timer needs a period above zero")]
    ZeroPeriod,
    /// The actor is not active (its timers are gone with it).
    #[error("the actor is not active")]
    Inactive,
}

impl From<TimerError> for plexspaces_core::Error {
    fn from(e: TimerError) -> Self {
        plexspaces_core::Error::InvalidArgument(e.to_string())
    }
}

struct State {
    target: Option<ActorId>,
    next: u64,
    pending: HashMap<u64, AbortHandle>,
}

/// One actor's timers, offered by [`TimerFacet`] through `ctx.service::<Timers>()`.
pub struct Timers {
    node: Node,
    max: usize,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("max", &self.max)
            .field("pending", &self.pending())
            .finish()
    }
}

impl Timers {
    /// Delivers `message` to the actor once, after `delay`, unless cancelled first.
    pub fn after(&self, delay: Duration, message: Envelope) -> Result<TimerId, TimerError> {
        self.set(delay, None, message)
    }

    /// Delivers a copy of `message` every `period` (first after one period) until
    /// cancelled or the actor stops. A tick that finds the mailbox full waits for room;
    /// ticks missed meanwhile are not made up.
    pub fn every(&self, period: Duration, message: Envelope) -> Result<TimerId, TimerError> {
        if period.is_zero() {
            return Err(TimerError::ZeroPeriod);
        }
        self.set(period, Some(period), message)
    }

    /// Cancels a timer; `false` if it had already fired (one-shot) or is unknown.
    pub fn cancel(&self, timer: TimerId) -> bool {
        match self.state.lock().pending.remove(&timer.0) {
            Some(task) => {
                let pending = !task.is_finished();
                task.abort();
                pending
            }
            None => false,
        }
    }

    /// Timers set and not yet fired (one-shot) or cancelled.
    pub fn pending(&self) -> usize {
        let mut state = self.state.lock();
        state.pending.retain(|_, t| !t.is_finished());
        state.pending.len()
    }

    fn set(
        &self,
        delay: Duration,
        period: Option<Duration>,
        message: Envelope,
    ) -> Result<TimerId, TimerError> {
        let mut state = self.state.lock();
        let target = state.target.clone().ok_or(TimerError::Inactive)?;
        state.pending.retain(|_, t| !t.is_finished());
        if state.pending.len() >= self.max {
            return Err(TimerError::TooMany(state.pending.len()));
        }
        state.next += 1;
        let id = state.next;
        let message = message.with_header(TIMER_HEADER, id.to_string());
        let node = self.node.clone();
        let shared = Arc::downgrade(&self.state);
        let task = tokio::spawn(async move {
            let deliver = |env: Envelope| {
                let node = node.clone();
                let target = target.clone();
                async move {
                    match node.pid(&target) {
                        Ok(pid) => pid.tell_envelope(env).await.is_ok(),
                        Err(_) => false,
                    }
                }
            };
            match period {
                None => {
                    tokio::time::sleep(delay).await;
                    deliver(message).await;
                    // Fired: no longer pending.
                    if let Some(state) = shared.upgrade() {
                        state.lock().pending.remove(&id);
                    }
                }
                Some(period) => {
                    let start = tokio::time::Instant::now() + period;
                    let mut ticks = tokio::time::interval_at(start, period);
                    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        ticks.tick().await;
                        if !deliver(message.clone()).await {
                            break;
                        }
                    }
                }
            }
        });
        state.pending.insert(id, task.abort_handle());
        Ok(TimerId(id))
    }

    fn cancel_all(&self) {
        let mut state = self.state.lock();
        state.target = None;
        for (_, task) in state.pending.drain() {
            task.abort();
        }
    }
}

/// Gives an actor [`Timers`]; every pending timer is cancelled when the actor stops or the
/// facet is detached.
#[derive(Debug)]
pub struct TimerFacet {
    timers: Arc<Timers>,
}

impl TimerFacet {
    /// Timers on `node` (the actor's node), at most [`DEFAULT_MAX_TIMERS`] pending.
    pub fn new(node: Node) -> Arc<Self> {
        Self::with_max(node, DEFAULT_MAX_TIMERS)
    }

    /// Timers with at most `max` pending.
    pub fn with_max(node: Node, max: usize) -> Arc<Self> {
        Arc::new(TimerFacet {
            timers: Arc::new(Timers {
                node,
                max,
                state: Arc::new(Mutex::new(State {
                    target: None,
                    next: 0,
                    pending: HashMap::new(),
                })),
            }),
        })
    }
}

#[async_trait]
impl Facet for TimerFacet {
    fn name(&self) -> &'static str {
        "timer"
    }

    async fn on_activate(&self, actor: &ActorInfo) -> plexspaces_core::Result<()> {
        self.timers.state.lock().target = Some(actor.id.clone());
        Ok(())
    }

    async fn on_deactivate(&self, _actor: &ActorInfo, _reason: &ExitReason) {
        self.timers.cancel_all();
    }

    async fn on_detach(&self, _actor: &ActorInfo) {
        self.timers.cancel_all();
    }

    fn service(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self.timers.clone())
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        self.cancel_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexspaces_core::{Actor, BoxError, Context, SpawnOptions};

    /// Tries to set `n` interval timers on each message and answers how many it could.
    struct Setter;

    impl Actor for Setter {
        type Msg = Envelope;
        type Reply = usize;

        async fn handle_call(
            &mut self,
            msg: Envelope,
            ctx: &mut Context<Self>,
        ) -> Result<Option<usize>, BoxError> {
            let timers = ctx.service::<Timers>().ok_or("no timers")?;
            let n: usize = msg.decode_json()?;
            let set = (0..n)
                .filter(|_| {
                    timers
                        .every(
                            Duration::from_secs(3600),
                            Envelope::new("tick", Vec::new(), ""),
                        )
                        .is_ok()
                })
                .count();
            Ok(Some(set))
        }

        fn decode(env: &Envelope) -> plexspaces_core::Result<Envelope> {
            Ok(env.clone())
        }

        fn encode_reply(t: &str, n: &usize) -> plexspaces_core::Result<Envelope> {
            Envelope::json(t, n)
        }

        fn decode_reply(env: &Envelope) -> plexspaces_core::Result<usize> {
            env.decode_json()
        }
    }

    #[tokio::test]
    async fn timers_are_capped_and_cancelled_with_the_actor() {
        let node = Node::builder("timers").build().await.unwrap();
        let facet = TimerFacet::with_max(node.clone(), 3);
        let actor = node
            .start(Setter, SpawnOptions::default().facet(facet.clone()))
            .await
            .unwrap();
        let pid = actor.pid();
        let set =
            |n: usize| pid.ask_envelope(Envelope::json("set", &n).unwrap(), Duration::from_secs(5));
        let first: usize = set(2).await.unwrap().decode_json().unwrap();
        assert_eq!(first, 2);
        let second: usize = set(2).await.unwrap().decode_json().unwrap();
        assert_eq!(second, 1, "the cap of 3 refuses the fourth");
        let timers = facet
            .service()
            .and_then(|s| s.downcast::<Timers>().ok())
            .unwrap();
        assert_eq!(timers.pending(), 3);
        assert_eq!(
            timers.after(Duration::from_millis(1), Envelope::new("x", Vec::new(), "")),
            Err(TimerError::TooMany(3))
        );
        assert_eq!(
            timers.every(Duration::ZERO, Envelope::new("x", Vec::new(), "")),
            Err(TimerError::ZeroPeriod)
        );
        actor.stop_and_wait(ExitReason::Normal).await.unwrap();
        assert_eq!(timers.pending(), 0, "stopping the actor cancels its timers");
        assert_eq!(
            timers.after(Duration::from_millis(1), Envelope::new("x", Vec::new(), "")),
            Err(TimerError::Inactive)
        );
        node.shutdown().await;
    }
}
