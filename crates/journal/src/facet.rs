//! The durability facet: makes any actor durable, no special actor type needed.
//!
//! Attach one [`DurabilityFacet`] per actor (it owns that actor's journal stream):
//!
//! - on activation it takes a new epoch, restores the latest snapshot with
//!   `Actor::restore` and replays the journal suffix through the actor's own handlers;
//! - every accepted message is journaled, and its reply recorded, before the caller gets
//!   the reply (a failed journal write fails the caller and stops the actor);
//! - with [`DurableOptions::output_gate`] (the default) commits are pipelined: the actor
//!   takes its next message while the previous commits are in flight, so the writes of
//!   consecutive messages coalesce into one group commit, and the runtime's output gate
//!   holds each reply until the commit that covers it is durable (in message order). A
//!   failed commit fails every held reply and stops the actor; its next activation
//!   rebuilds the state from the journal;
//! - a message a handler sends to another actor (`tell`, `ask`, their envelope forms) waits
//!   until the open message and every earlier commit are durable (the facet's output
//!   barrier), so no other actor learns of state that could still be lost;
//! - a request carrying the header [`IDEMPOTENCY_KEY_HEADER`] runs once; a duplicate gets
//!   the first reply without running the handler;
//! - handlers reach side effects, journaled time and randomness through
//!   `ctx.service::<Durability>()`;
//! - checkpoints follow the [`crate::CheckpointPolicy`], using `Actor::snapshot`.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use plexspaces_core::facet::{ActorInfo, Commit, Intercept, MessageMeta, MessageOutcome, Recovery};
use plexspaces_core::gate::Barrier;
use plexspaces_core::{Envelope, Facet};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

use crate::{
    Begin, DurableExecution, DurableOptions, Error, IdempotencyKey, Journal, Result, StreamId,
};

/// The header that names a request's idempotency key.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// What a durable actor's handlers use: side effects, journaled time and randomness, events.
/// Get it with `ctx.service::<Durability>()`.
pub struct Durability {
    journal: Arc<dyn Journal>,
    stream: StreamId,
    options: DurableOptions,
    exec: Mutex<Option<DurableExecution>>,
}

impl std::fmt::Debug for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durability")
            .field("stream", &self.stream)
            .finish()
    }
}

fn inactive() -> Error {
    Error::InvalidState("the durable actor is not active".into())
}

impl Durability {
    /// The actor's journal stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// Runs a side effect once per journaled result (see [`DurableExecution::side_effect`]):
    /// on replay the recorded result comes back and `f` does not run; live, `f` gets a
    /// deterministic idempotency key and its result is journaled before it is returned.
    pub async fn side_effect<T, F, Fut>(&self, name: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(IdempotencyKey) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut guard = self.exec.lock().await;
        let exec = guard.as_mut().ok_or_else(inactive)?;
        exec.side_effect(name, f).await
    }

    /// Milliseconds since the Unix epoch, journaled (replay returns the recorded value).
    pub async fn now_ms(&self) -> Result<u64> {
        let mut guard = self.exec.lock().await;
        guard.as_mut().ok_or_else(inactive)?.now()
    }

    /// A random number, journaled (replay returns the recorded value).
    pub async fn random_u64(&self) -> Result<u64> {
        let mut guard = self.exec.lock().await;
        guard.as_mut().ok_or_else(inactive)?.random_u64()
    }

    /// Persists a domain event with the current message (event sourcing).
    pub async fn persist<E: Serialize>(&self, event: &E) -> Result<()> {
        let mut guard = self.exec.lock().await;
        guard.as_mut().ok_or_else(inactive)?.persist(event)
    }

    /// Entries in the actor's journal stream now.
    pub async fn history_len(&self) -> Result<u64> {
        let guard = self.exec.lock().await;
        guard.as_ref().ok_or_else(inactive)?.history_len().await
    }

    /// Whether the current message is being replayed.
    pub async fn is_replaying(&self) -> bool {
        let guard = self.exec.lock().await;
        guard.as_ref().is_some_and(DurableExecution::is_replaying)
    }
}

/// Attaches durability to one actor. See the module docs.
pub struct DurabilityFacet {
    state: Arc<Durability>,
    barrier: Barrier,
}

impl std::fmt::Debug for DurabilityFacet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurabilityFacet")
            .field("stream", &self.state.stream)
            .finish()
    }
}

impl DurabilityFacet {
    /// Durability for the actor whose journal stream is `stream`.
    pub fn new(journal: Arc<dyn Journal>, stream: StreamId, options: DurableOptions) -> Arc<Self> {
        let state = Arc::new(Durability {
            journal,
            stream,
            options,
            exec: Mutex::new(None),
        });
        let durable = state.clone();
        let barrier: Barrier = Arc::new(move || {
            let state = durable.clone();
            Box::pin(async move {
                // Held: the send comes from inside a `Durability` call of this handler (a
                // side effect's closure), and `side_effect` made everything durable before
                // it ran the effect; waiting for the lock would deadlock.
                let Ok(mut guard) = state.exec.try_lock() else {
                    return Ok(());
                };
                let exec = guard.as_mut().ok_or_else(|| to_core(inactive()))?;
                exec.make_durable().await.map_err(to_core)
            })
        });
        Arc::new(DurabilityFacet { state, barrier })
    }

    /// The handle handlers use (also offered through `ctx.service::<Durability>()`).
    pub fn durability(&self) -> Arc<Durability> {
        self.state.clone()
    }
}

fn to_core(e: Error) -> plexspaces_core::Error {
    plexspaces_core::Error::Facet {
        facet: "durability".into(),
        retryable: e.is_retryable(),
        message: e.to_string(),
    }
}

#[async_trait]
impl Facet for DurabilityFacet {
    fn name(&self) -> &'static str {
        "durability"
    }

    /// Outermost: it sees a message first (to answer duplicates) and commits last, right
    /// before the reply leaves.
    fn priority(&self) -> i32 {
        1000
    }

    fn needs_payload(&self) -> bool {
        true
    }

    async fn recover(&self, _actor: &ActorInfo) -> plexspaces_core::Result<Option<Recovery>> {
        let s = &self.state;
        let exec =
            DurableExecution::activate(s.journal.clone(), s.stream.clone(), s.options.clone())
                .await
                .map_err(to_core)?;
        let snapshot = exec.snapshot_state().map(<[u8]>::to_vec);
        let replay = exec
            .pending_replay()
            .map(Envelope::from_bytes)
            .collect::<plexspaces_core::Result<Vec<_>>>()?;
        *s.exec.lock().await = Some(exec);
        Ok(Some(Recovery { snapshot, replay }))
    }

    async fn before_message(
        &self,
        _actor: &ActorInfo,
        msg: &MessageMeta,
    ) -> plexspaces_core::Result<Intercept> {
        let mut guard = self.state.exec.lock().await;
        let exec = guard.as_mut().ok_or_else(|| to_core(inactive()))?;
        if msg.replaying {
            // Replay goes in journal order, the same order `recover` handed the messages over.
            exec.next_replay().map_err(to_core)?;
            return Ok(Intercept::Continue);
        }
        let payload = msg.payload.as_ref().ok_or_else(|| {
            to_core(Error::InvalidState(
                "durability needs the message payload".into(),
            ))
        })?;
        let key = payload
            .headers
            .get(IDEMPOTENCY_KEY_HEADER)
            .map(String::as_str);
        match exec
            .begin_message(&payload.to_bytes(), key)
            .await
            .map_err(to_core)?
        {
            Begin::Started { .. } => Ok(Intercept::Continue),
            Begin::Duplicate(reply) => Ok(Intercept::Reply(Envelope::from_bytes(&reply)?)),
        }
    }

    async fn after_message(
        &self,
        _actor: &ActorInfo,
        _msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> plexspaces_core::Result<()> {
        let mut guard = self.state.exec.lock().await;
        let exec = guard.as_mut().ok_or_else(|| to_core(inactive()))?;
        if outcome.failed {
            // The actor is stopping; its half-applied message is journaled as a failed
            // attempt (retried on the next activation, see `RetryPolicy`), or aborted so
            // replay skips it when retries are off.
            let reason = outcome.error.as_deref().unwrap_or("handler failed");
            return exec.abort(reason).await.map_err(to_core);
        }
        let reply = outcome
            .reply
            .as_ref()
            .map(Envelope::to_bytes)
            .unwrap_or_default();
        exec.commit(reply).await.map(drop).map_err(to_core)
    }

    async fn after_message_gated(
        &self,
        actor: &ActorInfo,
        msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> plexspaces_core::Result<Option<Commit>> {
        if !self.state.options.output_gate || outcome.failed || msg.replaying {
            return self.after_message(actor, msg, outcome).await.map(|()| None);
        }
        let mut guard = self.state.exec.lock().await;
        let exec = guard.as_mut().ok_or_else(|| to_core(inactive()))?;
        let reply = outcome
            .reply
            .as_ref()
            .map(Envelope::to_bytes)
            .unwrap_or_default();
        let (_, durable) = exec.commit_pipelined(reply).await.map_err(to_core)?;
        Ok(Some(Box::pin(
            async move { durable.await.map_err(to_core) },
        )))
    }

    fn output_barrier(&self) -> Option<Barrier> {
        Some(self.barrier.clone())
    }

    fn checkpoint_due(&self, _actor: &ActorInfo) -> bool {
        // Called between messages on the actor's own task: the lock is free.
        self.state.exec.try_lock().is_ok_and(|guard| {
            guard
                .as_ref()
                .is_some_and(DurableExecution::should_checkpoint)
        })
    }

    async fn save_checkpoint(
        &self,
        _actor: &ActorInfo,
        snapshot: Vec<u8>,
    ) -> plexspaces_core::Result<()> {
        let mut guard = self.state.exec.lock().await;
        let exec = guard.as_mut().ok_or_else(|| to_core(inactive()))?;
        exec.checkpoint(snapshot).await.map(drop).map_err(to_core)
    }

    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.state.clone())
    }
}

/// The `msg_type` a fired reminder arrives with.
pub const REMINDER_MSG_TYPE: &str = "reminder";

/// The JSON body of a [`REMINDER_MSG_TYPE`] envelope.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReminderFired {
    /// The reminder's name.
    pub name: String,
    /// The payload it was registered with.
    pub payload: Vec<u8>,
    /// The tick that fired (ms since the Unix epoch).
    pub due_at_ms: u64,
    /// Ticks missed while nothing was running, coalesced into this one fire.
    pub missed_ticks: u64,
}

/// Delivers fired reminders to actors on a node: the reminder's owner stream names the actor
/// (`actor_id` as `name@node`, or a bare name on this node). The actor receives an envelope
/// [`REMINDER_MSG_TYPE`] carrying [`ReminderFired`] as an ask, and the reminder is
/// rescheduled only after the actor has handled it. The envelope carries an idempotency key
/// per tick, so a durable actor handles a re-delivered tick once.
#[derive(Debug, Clone)]
pub struct ActorReminderSink {
    node: plexspaces_core::Node,
    timeout: std::time::Duration,
}

impl ActorReminderSink {
    /// Delivers to actors of `node`, waiting up to `timeout` for each to handle its fire.
    pub fn new(node: plexspaces_core::Node, timeout: std::time::Duration) -> Arc<Self> {
        Arc::new(ActorReminderSink { node, timeout })
    }
}

#[async_trait]
impl crate::ReminderSink for ActorReminderSink {
    async fn deliver(&self, fired: crate::reminders::FiredReminder) -> Result<()> {
        let owner = &fired.reminder.owner;
        let id = plexspaces_core::ActorId::parse(&owner.actor_id)
            .or_else(|_| plexspaces_core::ActorId::new(&owner.actor_id, self.node.name()))
            .map_err(|e| Error::InvalidArgument(format!("reminder owner: {e}")))?;
        let undelivered = |e: plexspaces_core::Error| Error::Backend {
            retryable: true,
            message: format!(
                "reminder {} not delivered to {id}: {e}",
                fired.reminder.name
            ),
        };
        let body = ReminderFired {
            name: fired.reminder.name.clone(),
            payload: fired.reminder.payload.clone(),
            due_at_ms: fired.reminder.due_at_ms,
            missed_ticks: fired.missed_ticks,
        };
        let env = Envelope::json(REMINDER_MSG_TYPE, &body)
            .map_err(|e| Error::Codec(e.to_string()))?
            .with_header(
                IDEMPOTENCY_KEY_HEADER,
                format!("reminder/{}/{}", body.name, body.due_at_ms),
            );
        let pid = self.node.pid(&id).map_err(undelivered)?;
        pid.ask_envelope(env, self.timeout)
            .await
            .map(drop)
            .map_err(undelivered)
    }
}
