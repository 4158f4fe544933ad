//! Facets: capabilities attached to an actor, not new actor types.
//!
//! A facet hooks the actor's lifecycle (attach, activate, deactivate, detach) and each
//! message (before, after, and the tracing span it runs in). Facets run in priority order,
//! highest first, before a message and in reverse order after it; `before_message` may
//! refuse a message, which answers its caller with [`Error::Rejected`] and leaves the actor
//! running. An actor with no facets pays nothing: the loop takes a separate path.
//!
//! Two facets ship here: [`MetricsFacet`] and [`TracingFacet`].

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prometheus::{CounterVec, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry};

use crate::envelope::Envelope;
use crate::error::{Error, ExitReason, Result};
use crate::id::ActorId;

/// Facts about the actor a facet is attached to.
#[derive(Debug, Clone)]
pub struct ActorInfo {
    /// Its id.
    pub id: ActorId,
    /// Its Rust type name.
    pub actor_type: &'static str,
}

/// Whether a message is a call (`ask`) or a cast (`tell`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// Expects a reply.
    Call,
    /// Fire and forget.
    Cast,
}

/// Facts about one message, as facets see it.
#[derive(Debug, Clone)]
pub struct MessageMeta {
    /// The message as an envelope, present only when an attached facet asks for it
    /// ([`Facet::needs_payload`]): a local message is then encoded with the actor's codec.
    pub payload: Option<Envelope>,
    /// Whether this message is being replayed during recovery (see [`Facet::recover`]).
    pub replaying: bool,
    /// The envelope's `msg_type`, or `Actor::msg_name` for a local message.
    pub msg_type: String,
    /// The envelope's correlation id; empty for a local message.
    pub correlation_id: String,
    /// Call or cast.
    pub kind: MessageKind,
    /// Messages still queued behind this one.
    pub mailbox_len: usize,
}

/// How handling one message went.
#[derive(Debug, Clone)]
pub struct MessageOutcome {
    /// The encoded reply of a call, present only when a facet needs payloads. Facets see it
    /// before the caller does: a reply never leaves before every `after_message` returned.
    pub reply: Option<Envelope>,
    /// Time spent in the handler.
    pub elapsed: Duration,
    /// Whether the handler failed (the actor is stopping).
    pub failed: bool,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// What `before_message` decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Intercept {
    /// Run the handler.
    Continue,
    /// Do not run the handler; answer the caller with this reply (for example the recorded
    /// reply of a duplicate request).
    Reply(Envelope),
}

/// State to rebuild an actor from: a snapshot and the messages to replay after it.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// Restored with [`crate::Actor::restore`] before the replay.
    pub snapshot: Option<Vec<u8>>,
    /// Replayed through the actor's own handlers (decoded with its codec), in order.
    pub replay: Vec<Envelope>,
}

/// A commit a message's reply waits for (see [`Facet::after_message_gated`]): resolves once
/// what the facet recorded for the message is durable, or with why it is not.
pub type Commit = Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// A capability attached to an actor. Every hook has a default that does nothing.
#[async_trait]
pub trait Facet: Send + Sync + Any {
    /// Unique per actor: attaching a second facet with the same name replaces the first.
    fn name(&self) -> &'static str;

    /// Higher runs first before a message (outermost).
    fn priority(&self) -> i32 {
        0
    }

    /// The facet was attached.
    async fn on_attach(&self, actor: &ActorInfo) -> Result<()> {
        let _ = actor;
        Ok(())
    }

    /// The actor is becoming active (after attach, before its first message).
    async fn on_activate(&self, actor: &ActorInfo) -> Result<()> {
        let _ = actor;
        Ok(())
    }

    /// Whether this facet needs each message and reply as an envelope (a journal does).
    fn needs_payload(&self) -> bool {
        false
    }

    /// State to rebuild the actor from, taken once after activation and before `on_start`.
    async fn recover(&self, actor: &ActorInfo) -> Result<Option<Recovery>> {
        let _ = actor;
        Ok(None)
    }

    /// Before the handler. An error refuses the message; `Intercept::Reply` answers it
    /// without running the handler.
    async fn before_message(&self, actor: &ActorInfo, msg: &MessageMeta) -> Result<Intercept> {
        let _ = (actor, msg);
        Ok(Intercept::Continue)
    }

    /// Whether the actor's state should be snapshotted now (asked after each message).
    fn checkpoint_due(&self, actor: &ActorInfo) -> bool {
        let _ = actor;
        false
    }

    /// Stores a snapshot taken with [`crate::Actor::snapshot`] after `checkpoint_due`.
    async fn save_checkpoint(&self, actor: &ActorInfo, snapshot: Vec<u8>) -> Result<()> {
        let _ = (actor, snapshot);
        Ok(())
    }

    /// After the handler, before the caller gets the reply. An error (say, the journal
    /// could not make the message durable) fails the caller with it instead of replying,
    /// and stops the actor: its state may be ahead of what the facet could record.
    async fn after_message(
        &self,
        actor: &ActorInfo,
        msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> Result<()> {
        let _ = (actor, msg, outcome);
        Ok(())
    }

    /// [`Facet::after_message`] for a facet that pipelines its writes (an output gate):
    /// instead of waiting for its write, it may return the [`Commit`] to wait for. The actor
    /// then goes on with its next message while the reply of this one (success or failure)
    /// is held back until the commit resolves. Held replies leave in message order, each
    /// after every earlier hold is released. A failed commit fails its reply and every
    /// later held one, and stops the actor (its state is ahead of what the facet recorded;
    /// a durable actor is rebuilt from its journal on its next activation).
    ///
    /// The default waits in `after_message` and returns `None`: a reply then leaves as soon
    /// as the facets are done, and an actor whose facets never defer pays nothing for the
    /// gate.
    async fn after_message_gated(
        &self,
        actor: &ActorInfo,
        msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> Result<Option<Commit>> {
        self.after_message(actor, msg, outcome).await.map(|()| None)
    }

    /// A barrier for the messages the handler sends: while a handler runs, each of its
    /// `tell`/`ask`/`tell_envelope`/`ask_envelope` to another actor first awaits a
    /// [`Commit`] from this barrier, so nothing leaves before the work that led to it is
    /// durable (the durability facet journals the open message and waits for every
    /// in-flight commit). The first facet that offers one wins. Sends from tasks the handler
    /// spawns, and the non-waiting `try_tell`, are not covered.
    fn output_barrier(&self) -> Option<crate::gate::Barrier> {
        None
    }

    /// The span the handler runs in (the first facet that returns one wins).
    fn message_span(&self, actor: &ActorInfo, msg: &MessageMeta) -> Option<tracing::Span> {
        let _ = (actor, msg);
        None
    }

    /// The actor is stopping.
    async fn on_deactivate(&self, actor: &ActorInfo, reason: &ExitReason) {
        let _ = (actor, reason);
    }

    /// The facet was detached from a running actor.
    async fn on_detach(&self, actor: &ActorInfo) {
        let _ = actor;
    }

    /// A service this facet offers the actor through [`crate::Context::service`].
    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        None
    }
}

/// Sees a facet as `Any`, to find one by type.
pub(crate) fn as_any(facet: &dyn Facet) -> &dyn Any {
    facet
}

/// Inserts by priority (stable), replacing a facet of the same name, and activates it.
pub(crate) async fn attach(
    chain: &mut Vec<Arc<dyn Facet>>,
    facet: Arc<dyn Facet>,
    info: &ActorInfo,
) -> Result<()> {
    facet.on_attach(info).await?;
    facet.on_activate(info).await?;
    chain.retain(|f| f.name() != facet.name());
    let at = chain
        .iter()
        .position(|f| f.priority() < facet.priority())
        .unwrap_or(chain.len());
    chain.insert(at, facet);
    Ok(())
}

pub(crate) async fn detach(chain: &mut Vec<Arc<dyn Facet>>, name: &str, info: &ActorInfo) -> bool {
    match chain.iter().position(|f| f.name() == name) {
        Some(at) => {
            let facet = chain.remove(at);
            facet.on_detach(info).await;
            true
        }
        None => false,
    }
}

pub(crate) async fn deactivate_all(
    chain: &mut Vec<Arc<dyn Facet>>,
    info: &ActorInfo,
    reason: &ExitReason,
) {
    for facet in chain.iter().rev() {
        facet.on_deactivate(info, reason).await;
    }
}

/// Per-actor-type metrics in a Prometheus registry: messages, failures, handler latency and
/// mailbox depth. One instance is shared by every actor it is attached to.
pub struct MetricsFacet {
    registry: Registry,
    messages: CounterVec,
    errors: CounterVec,
    latency: HistogramVec,
    mailbox: GaugeVec,
}

impl MetricsFacet {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Arc<Self>> {
        let err = |e: prometheus::Error| Error::InvalidArgument(e.to_string());
        let messages = CounterVec::new(
            Opts::new("plexspaces_actor_messages_total", "messages handled"),
            &["actor_type"],
        )
        .map_err(err)?;
        let errors = CounterVec::new(
            Opts::new("plexspaces_actor_errors_total", "handlers that failed"),
            &["actor_type"],
        )
        .map_err(err)?;
        let latency = HistogramVec::new(
            HistogramOpts::new("plexspaces_actor_handler_seconds", "handler latency").buckets(
                vec![
                    1e-6, 1e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 0.1, 0.5, 1.0, 5.0,
                ],
            ),
            &["actor_type"],
        )
        .map_err(err)?;
        let mailbox = GaugeVec::new(
            Opts::new(
                "plexspaces_actor_mailbox_depth",
                "messages queued behind the last one handled",
            ),
            &["actor_type"],
        )
        .map_err(err)?;
        registry.register(Box::new(messages.clone())).map_err(err)?;
        registry.register(Box::new(errors.clone())).map_err(err)?;
        registry.register(Box::new(latency.clone())).map_err(err)?;
        registry.register(Box::new(mailbox.clone())).map_err(err)?;
        Ok(Arc::new(MetricsFacet {
            registry: registry.clone(),
            messages,
            errors,
            latency,
            mailbox,
        }))
    }

    /// The registry the metrics live in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of the registry.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }

    /// Messages handled so far by actors of this type.
    pub fn messages(&self, actor_type: &str) -> u64 {
        self.messages
            .with_label_values(&[short_type(actor_type)])
            .get() as u64
    }

    /// Failed handlers so far for actors of this type.
    pub fn errors(&self, actor_type: &str) -> u64 {
        self.errors
            .with_label_values(&[short_type(actor_type)])
            .get() as u64
    }
}

/// `my_crate::module::Counter` -> `Counter` (generic arguments shortened too).
pub fn short_type(type_name: &str) -> &str {
    let base = type_name.split('<').next().unwrap_or(type_name);
    base.rsplit("::").next().unwrap_or(base)
}

#[async_trait]
impl Facet for MetricsFacet {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn priority(&self) -> i32 {
        100
    }

    async fn after_message(
        &self,
        actor: &ActorInfo,
        msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> Result<()> {
        // A slice of the 'static type name: no allocation or lookup per message.
        let labels = [short_type(actor.actor_type)];
        self.messages.with_label_values(&labels).inc();
        if outcome.failed {
            self.errors.with_label_values(&labels).inc();
        }
        self.latency
            .with_label_values(&labels)
            .observe(outcome.elapsed.as_secs_f64());
        self.mailbox
            .with_label_values(&labels)
            .set(msg.mailbox_len as f64);
        Ok(())
    }
}

/// One `tracing` span per message, named `actor.message`, carrying the actor id, the message
/// type and the correlation id.
#[derive(Debug, Default)]
pub struct TracingFacet;

impl TracingFacet {
    /// A shared instance.
    pub fn new() -> Arc<Self> {
        Arc::new(TracingFacet)
    }
}

#[async_trait]
impl Facet for TracingFacet {
    fn name(&self) -> &'static str {
        "tracing"
    }

    fn priority(&self) -> i32 {
        200
    }

    fn message_span(&self, actor: &ActorInfo, msg: &MessageMeta) -> Option<tracing::Span> {
        Some(tracing::info_span!(
            "actor.message",
            actor = %actor.id,
            actor_type = short_type(actor.actor_type),
            msg_type = %msg.msg_type,
            correlation_id = %msg.correlation_id,
        ))
    }
}
