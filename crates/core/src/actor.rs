//! The `Actor` trait: Erlang's gen_server, in Rust.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::context::Context;
use crate::envelope::Envelope;
use crate::error::{BoxError, Error, ExitReason, Result};
use crate::id::ActorId;
use crate::pid::{EnvelopeReply, MonitorRef, Pid};

/// An actor: private state plus handlers, driven one message at a time.
///
/// This is Erlang's `gen_server`: [`Actor::handle_call`] answers `ask` (a call),
/// [`Actor::handle_cast`] takes `tell` (a cast) and [`Actor::handle_info`] takes runtime
/// notifications (exits of linked actors when trapping exits, monitor `Down`s, event handler
/// exits). GenFSM and GenEvent are written on top of it ([`crate::fsm`], [`crate::event`]).
///
/// Local messages are `Self::Msg` values and are never serialized. The four codec functions
/// let the same handlers serve envelopes from a boundary; by default they answer
/// [`Error::Unsupported`], and `#[plexspaces::actor]` generates JSON ones.
///
/// A handler that returns `Err` or panics stops the actor with [`ExitReason::Error`]; its
/// caller, if any, gets [`Error::ActorFailed`].
pub trait Actor: Sized + Send + 'static {
    /// The message type for both `tell` and `ask`.
    type Msg: Send + 'static;
    /// What `ask` returns.
    type Reply: Send + 'static;

    /// Runs before the first message. An error here means the actor never starts.
    fn on_start(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = ctx;
        async { Ok(()) }
    }

    /// Runs once when the actor stops for any reason except [`ExitReason::Killed`].
    fn on_stop(
        &mut self,
        ctx: &mut Context<Self>,
        reason: &ExitReason,
    ) -> impl Future<Output = ()> + Send {
        let _ = (ctx, reason);
        async {}
    }

    /// Serves an `ask`. Return `Some(reply)` to answer now, or `None` after taking
    /// [`Context::reply_handle`] to answer later (Erlang's `{noreply, State}`). Returning
    /// `None` without taking the handle answers the caller with [`Error::NoReply`].
    fn handle_call(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<Option<Self::Reply>, BoxError>> + Send;

    /// Serves a `tell`. By default runs [`Actor::handle_call`] and drops the reply.
    fn handle_cast(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        async move { self.handle_call(msg, ctx).await.map(drop) }
    }

    /// Continues work the last handler asked for with [`Context::continue_with`], before
    /// any other message is taken (gen_server's `handle_continue`). By default runs
    /// [`Actor::handle_cast`].
    fn handle_continue(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        async move { self.handle_cast(msg, ctx).await }
    }

    /// Serves a runtime notification. By default ignores it.
    fn handle_info(
        &mut self,
        info: Info,
        ctx: &mut Context<Self>,
    ) -> impl Future<Output = Result<(), BoxError>> + Send {
        let _ = (info, ctx);
        async { Ok(()) }
    }

    /// The actor's state as bytes, for facets that checkpoint (durability). `None`: this
    /// actor has no snapshot form, so recovery replays its whole history.
    fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Replaces the actor's state with a snapshot taken by [`Actor::snapshot`].
    fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        let _ = snapshot;
        Err(Error::Unsupported(format!(
            "actor type {} cannot restore a snapshot",
            std::any::type_name::<Self>()
        )))
    }

    /// A short name for `msg`, for metrics and traces.
    fn msg_name(msg: &Self::Msg) -> &'static str {
        let _ = msg;
        "message"
    }

    /// Turns an envelope into a message (boundary in).
    fn decode(env: &Envelope) -> Result<Self::Msg> {
        Err(Error::Unsupported(format!(
            "actor type {} takes no envelopes (message {:?})",
            std::any::type_name::<Self>(),
            env.msg_type
        )))
    }

    /// Turns a message into an envelope (boundary out, for a remote `tell`/`ask`).
    fn encode(msg: &Self::Msg) -> Result<Envelope> {
        let _ = msg;
        Err(Error::Unsupported(format!(
            "actor type {} has no message encoder",
            std::any::type_name::<Self>()
        )))
    }

    /// Encodes a reply to the envelope request `request_type`.
    fn encode_reply(request_type: &str, reply: &Self::Reply) -> Result<Envelope> {
        let _ = reply;
        Err(Error::Unsupported(format!(
            "actor type {} has no reply encoder for {request_type:?}",
            std::any::type_name::<Self>()
        )))
    }

    /// Decodes a reply that came back from a remote actor.
    fn decode_reply(env: &Envelope) -> Result<Self::Reply> {
        Err(Error::Unsupported(format!(
            "actor type {} has no reply decoder for {:?}",
            std::any::type_name::<Self>(),
            env.msg_type
        )))
    }
}

/// A typed request to actor type `A` with its own reply type, so that
/// `actor_ref.request(Increment { by: 5 })` returns that handler's reply rather than
/// `A::Reply`. `#[plexspaces::actor]` implements it for each handler's message type.
pub trait Request<A: Actor>: Into<A::Msg> {
    /// The handler's reply type.
    type Output;
    /// Picks this request's reply out of `A::Reply`.
    fn output(reply: A::Reply) -> Result<Self::Output>;
}

/// A runtime notification delivered to [`Actor::handle_info`].
#[derive(Debug, Clone, PartialEq)]
pub enum Info {
    /// A linked actor exited (delivered only while trapping exits).
    Exit {
        /// Who exited.
        from: Pid,
        /// Why.
        reason: ExitReason,
    },
    /// A monitored actor is gone.
    Down {
        /// The reference returned by `monitor`.
        monitor: MonitorRef,
        /// The actor that went down.
        id: ActorId,
        /// Why (`NoProc` if it was already gone when monitored).
        reason: ExitReason,
    },
    /// No message arrived within the inactivity timeout set by
    /// [`Context::idle_timeout`] (gen_server's `timeout`).
    Timeout,
    /// A message outside the actor's `Msg` type, sent with [`Pid::send_info`] (Erlang's
    /// `Pid ! Term` of a term the receiver handles in `handle_info`).
    Message(InfoMessage),
    /// An event handler this actor added to a [`crate::event::EventManager`] was removed
    /// (Erlang's `gen_event_EXIT`): it failed, was deleted, or its manager stopped.
    EventHandlerExit {
        /// The manager.
        manager: ActorId,
        /// The handler's id.
        handler: String,
        /// Why it was removed.
        reason: ExitReason,
    },
}

/// Any value sent to an actor's `handle_info` with [`Pid::send_info`]. Two are equal only
/// if they are the same message.
#[derive(Clone)]
pub struct InfoMessage(Arc<dyn Any + Send + Sync>);

impl InfoMessage {
    /// Wraps `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        InfoMessage(Arc::new(value))
    }

    /// The value, if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl std::fmt::Debug for InfoMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InfoMessage(..)")
    }
}

impl PartialEq for InfoMessage {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Answers one `ask`, now or later. Dropping it unanswered gives the caller
/// [`Error::NoReply`].
pub struct ReplyHandle<R> {
    inner: ReplyInner<R>,
}

enum ReplyInner<R> {
    Typed(oneshot::Sender<Result<R>>),
    // Boxed: rare (boundary requests only), and it keeps every actor's context small.
    Encoded(Box<EncodedReply<R>>),
}

struct EncodedReply<R> {
    tx: EnvelopeReply,
    request_type: String,
    encode: fn(&str, &R) -> Result<Envelope>,
}

impl<R> std::fmt::Debug for ReplyHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplyHandle")
    }
}

impl<R> ReplyHandle<R> {
    pub(crate) fn typed(tx: oneshot::Sender<Result<R>>) -> Self {
        ReplyHandle {
            inner: ReplyInner::Typed(tx),
        }
    }

    pub(crate) fn encoded(
        tx: EnvelopeReply,
        request_type: String,
        encode: fn(&str, &R) -> Result<Envelope>,
    ) -> Self {
        ReplyHandle {
            inner: ReplyInner::Encoded(Box::new(EncodedReply {
                tx,
                request_type,
                encode,
            })),
        }
    }

    /// Sends the reply. Returns `false` if the caller stopped waiting (timed out or gone).
    pub fn send(self, reply: R) -> bool {
        match self.inner {
            ReplyInner::Typed(tx) => tx.send(Ok(reply)).is_ok(),
            ReplyInner::Encoded(encoded) => {
                let EncodedReply {
                    tx,
                    request_type,
                    encode,
                } = *encoded;
                let env = encode(&request_type, &reply).map(|mut env| {
                    if env.msg_type.is_empty() {
                        env.msg_type = request_type;
                    }
                    env
                });
                tx.send(env)
            }
        }
    }

    /// Answers with a reply that is already encoded (a recorded reply): a typed caller gets
    /// it decoded with `decode`.
    pub(crate) fn send_envelope(self, env: Envelope, decode: fn(&Envelope) -> Result<R>) -> bool {
        match self.inner {
            ReplyInner::Typed(tx) => tx.send(decode(&env)).is_ok(),
            ReplyInner::Encoded(reply) => reply.tx.send(Ok(env)),
        }
    }

    /// Answers with an error.
    pub fn fail(self, error: Error) -> bool {
        match self.inner {
            ReplyInner::Typed(tx) => tx.send(Err(error)).is_ok(),
            ReplyInner::Encoded(reply) => reply.tx.send(Err(error)),
        }
    }

    /// Whether the caller has stopped waiting.
    pub fn is_closed(&self) -> bool {
        match &self.inner {
            ReplyInner::Typed(tx) => tx.is_closed(),
            ReplyInner::Encoded(reply) => reply.tx.is_closed(),
        }
    }
}
