//! Addresses: the untyped [`Pid`] and the typed [`ActorRef`], and the per-actor cell behind
//! a local one. Both are the same type for a local and a remote actor; a local one holds the
//! actor's cell, a remote one holds the id and the node's router.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use thin_vec::ThinVec;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::actor::{Actor, Info, Request};
use crate::envelope::Envelope;
use crate::error::{Error, ExitReason, Result, SendError};
use crate::facet::Facet;
use crate::id::ActorId;
use crate::mailbox::{Mailbox, Refused};
use crate::transport::Router;

/// How long `ask` waits when no timeout is given.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Names one `monitor` call; `Down` carries it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MonitorRef(pub u64);

static NEXT_MONITOR: AtomicU64 = AtomicU64::new(1);

impl MonitorRef {
    pub(crate) fn next() -> MonitorRef {
        MonitorRef(NEXT_MONITOR.fetch_add(1, Ordering::Relaxed))
    }
}

/// Where an actor is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Lifecycle {
    /// Spawned; `on_start` has not finished.
    Creating = 0,
    /// Handling messages.
    Active = 1,
    /// Deactivated but still addressable (a virtual actor between activations).
    Inactive = 2,
    /// Leaving: `on_stop` and facet deactivation are running.
    Stopping = 3,
    /// Gone after a clean exit (`normal`, `shutdown`, `noproc`).
    Terminated = 4,
    /// Gone after a failure (`error`, `killed`).
    Failed = 5,
}

impl Lifecycle {
    fn from_u8(value: u8) -> Lifecycle {
        match value {
            0 => Lifecycle::Creating,
            1 => Lifecycle::Active,
            2 => Lifecycle::Inactive,
            3 => Lifecycle::Stopping,
            4 => Lifecycle::Terminated,
            _ => Lifecycle::Failed,
        }
    }
}

/// A system message: handled before any queued user message.
pub(crate) enum Signal {
    /// Stop gracefully with this reason (runs `on_stop`).
    Stop(ExitReason),
    /// An exit signal from a linked actor, or `exit/2`.
    Exit { from: Pid, reason: ExitReason },
    /// A notification for `handle_info` (`Down`, event handler exits).
    Info(Info),
    /// Attach a facet at runtime.
    AttachFacet(Arc<dyn Facet>),
    /// Detach the facet with this name.
    DetachFacet(String),
}

/// A user message in a typed mailbox.
pub(crate) enum Mail<A: Actor> {
    Cast(A::Msg),
    Call(A::Msg, oneshot::Sender<Result<A::Reply>>),
    Envelope(Box<EnvelopeMail>),
}

/// An envelope and, for an ask, where its encoded reply goes.
pub(crate) struct EnvelopeMail {
    pub env: Envelope,
    pub reply: Option<EnvelopeReply>,
}

/// Where the encoded reply of an envelope ask goes.
pub(crate) enum EnvelopeReply {
    /// A caller on this node awaits it.
    Channel(oneshot::Sender<Result<Envelope>>),
    /// The actor's own task hands it on (a remote ask: the reply frame is queued from the
    /// actor's task, so no task per ask waits for it and the reply takes no extra wake-up).
    Callback(ReplyCallback),
}

impl From<oneshot::Sender<Result<Envelope>>> for EnvelopeReply {
    fn from(tx: oneshot::Sender<Result<Envelope>>) -> Self {
        EnvelopeReply::Channel(tx)
    }
}

impl EnvelopeReply {
    /// Delivers the reply; `false` if the caller stopped waiting.
    pub(crate) fn send(self, reply: Result<Envelope>) -> bool {
        match self {
            EnvelopeReply::Channel(tx) => tx.send(reply).is_ok(),
            EnvelopeReply::Callback(mut callback) => {
                if let Some(f) = callback.0.take() {
                    f(Some(reply));
                }
                true
            }
        }
    }

    /// Whether the caller has stopped waiting (a callback's caller is on another node: it
    /// is never known here).
    pub(crate) fn is_closed(&self) -> bool {
        match self {
            EnvelopeReply::Channel(tx) => tx.is_closed(),
            EnvelopeReply::Callback(_) => false,
        }
    }
}

/// A function that takes an envelope ask's reply: `Some(result)` when answered, `None`
/// when the reply handle is dropped unanswered (the actor stopped first).
pub(crate) struct ReplyCallback(Option<ReplyFn>);

type ReplyFn = Box<dyn FnOnce(Option<Result<Envelope>>) + Send + Sync>;

impl ReplyCallback {
    pub(crate) fn new(f: impl FnOnce(Option<Result<Envelope>>) + Send + Sync + 'static) -> Self {
        ReplyCallback(Some(Box::new(f)))
    }
}

impl Drop for ReplyCallback {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(None);
        }
    }
}

/// Answers a refused envelope ask with `error` (which the sender also gets), so a reply
/// callback reports the refusal itself rather than the actor's exit.
fn refuse<A: Actor>(mail: Mail<A>, error: Error) -> Error {
    if let Mail::Envelope(mail) = mail {
        if let Some(reply) = mail.reply {
            reply.send(Err(error.clone()));
        }
    }
    error
}

/// Who learns of an actor's death.
pub(crate) enum Watcher {
    Actor { pid: Pid, monitor: MonitorRef },
    Waiter(oneshot::Sender<ExitReason>),
}

#[derive(Default)]
pub(crate) struct CellState {
    /// `Some` once the actor has terminated.
    pub exit: Option<ExitReason>,
    // Thin vectors (one pointer while empty, against three for a `Vec`): most actors have
    // none of these, and every actor's cell carries all four (issue 17's memory row).
    pub links: ThinVec<Pid>,
    pub watchers: ThinVec<Watcher>,
    pub names: ThinVec<String>,
    pub groups: ThinVec<String>,
}

/// The untyped part of an actor's cell, shared by every handle to it.
pub(crate) struct CellCore {
    pub id: ActorId,
    pub seq: u64,
    lifecycle: AtomicU8,
    pub state: Mutex<CellState>,
    abort: OnceLock<AbortHandle>,
}

impl CellCore {
    pub(crate) fn new(id: ActorId, seq: u64) -> Self {
        CellCore {
            id,
            seq,
            lifecycle: AtomicU8::new(Lifecycle::Creating as u8),
            state: Mutex::new(CellState::default()),
            abort: OnceLock::new(),
        }
    }

    pub(crate) fn set_lifecycle(&self, state: Lifecycle) {
        self.lifecycle.store(state as u8, Ordering::Release);
    }

    pub(crate) fn lifecycle(&self) -> Lifecycle {
        Lifecycle::from_u8(self.lifecycle.load(Ordering::Acquire))
    }

    pub(crate) fn set_abort(&self, handle: AbortHandle) {
        let _ = self.abort.set(handle);
    }

    pub(crate) fn is_alive(&self) -> bool {
        self.state.lock().exit.is_none()
    }

    pub(crate) fn exit_reason(&self) -> Option<ExitReason> {
        self.state.lock().exit.clone()
    }

    /// The error a caller sees when its request was never answered.
    pub(crate) fn gone_error(&self) -> Error {
        match self.exit_reason() {
            None => Error::NoReply,
            Some(
                ExitReason::Normal
                | ExitReason::Shutdown
                | ExitReason::ShutdownWith(_)
                | ExitReason::NoProc,
            ) => Error::NoProc(self.id.to_string()),
            Some(reason) => Error::ActorFailed(reason),
        }
    }

    /// Whether the code running now is this actor's own task (a call to itself could never
    /// be answered).
    pub(crate) fn is_current_task(&self) -> bool {
        match (self.abort.get(), tokio::task::try_id()) {
            (Some(handle), Some(current)) => handle.id() == current,
            _ => false,
        }
    }

    /// Fails a call the actor makes to itself (Erlang's `calling_self`).
    pub(crate) fn check_not_self(&self) -> Result<()> {
        if self.is_current_task() {
            return Err(Error::CallingSelf(self.id.to_string()));
        }
        Ok(())
    }

    /// Aborts the actor's task; `false` if the task is not known yet.
    fn abort(&self) -> bool {
        match self.abort.get() {
            Some(handle) => {
                handle.abort();
                true
            }
            None => false,
        }
    }
}

/// A local actor's cell, seen without its message type.
pub(crate) trait DynCell: Send + Sync + 'static {
    fn core(&self) -> &CellCore;
    /// The actor's Rust type name (from the cell's type, so no cell stores it).
    fn actor_type(&self) -> &'static str;
    /// Queues a system signal ahead of user mail; dropped if the actor is gone.
    fn signal(&self, signal: Signal);
    /// Kills at once: aborts the task (or, before it is known, asks it to stop as killed).
    fn kill(&self) {
        if !self.core().abort() {
            self.signal(Signal::Stop(ExitReason::Killed));
        }
    }
    fn try_envelope(&self, mail: Box<EnvelopeMail>) -> Result<()>;
    fn send_envelope(&self, mail: Box<EnvelopeMail>) -> BoxFuture<'_, Result<()>>;
    fn mailbox_len(&self) -> usize;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A local actor's cell: the untyped core plus its typed mailbox.
pub(crate) struct ActorCell<A: Actor> {
    pub core: CellCore,
    pub mailbox: Mailbox<Mail<A>>,
}

impl<A: Actor> DynCell for ActorCell<A> {
    fn core(&self) -> &CellCore {
        &self.core
    }

    fn actor_type(&self) -> &'static str {
        std::any::type_name::<A>()
    }

    fn signal(&self, signal: Signal) {
        self.mailbox.signal(signal);
    }

    fn try_envelope(&self, mail: Box<EnvelopeMail>) -> Result<()> {
        self.mailbox
            .try_send(Mail::Envelope(mail))
            .map_err(|e| match e {
                Refused::Full(mail) => refuse(mail, Error::MailboxFull(self.core.id.to_string())),
                Refused::Closed(mail) => refuse(mail, Error::NoProc(self.core.id.to_string())),
            })
    }

    fn send_envelope(&self, mail: Box<EnvelopeMail>) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            self.mailbox
                .send(Mail::Envelope(mail))
                .await
                .map_err(|mail| refuse(mail, Error::NoProc(self.core.id.to_string())))
        })
    }

    fn mailbox_len(&self) -> usize {
        self.mailbox.len()
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// A remote actor: its id and the router of the node holding this handle.
pub(crate) struct RemoteActor {
    pub id: ActorId,
    pub router: Arc<Router>,
}

/// An untyped, location-transparent actor address (Erlang's pid): enough to link, monitor,
/// stop, and send envelopes. Get a typed [`ActorRef`] for typed messages.
#[derive(Clone)]
pub struct Pid(PidInner);

#[derive(Clone)]
enum PidInner {
    Local(Arc<dyn DynCell>),
    Remote(Arc<RemoteActor>),
}

impl Pid {
    pub(crate) fn local(cell: Arc<dyn DynCell>) -> Pid {
        Pid(PidInner::Local(cell))
    }

    pub(crate) fn remote(id: ActorId, router: Arc<Router>) -> Pid {
        Pid(PidInner::Remote(Arc::new(RemoteActor { id, router })))
    }

    pub(crate) fn router(&self) -> Option<Arc<Router>> {
        match &self.0 {
            PidInner::Local(_) => None,
            PidInner::Remote(remote) => Some(remote.router.clone()),
        }
    }

    pub(crate) fn cell(&self) -> Option<&Arc<dyn DynCell>> {
        match &self.0 {
            PidInner::Local(cell) => Some(cell),
            PidInner::Remote(_) => None,
        }
    }

    /// `name@node`.
    pub fn id(&self) -> &ActorId {
        match &self.0 {
            PidInner::Local(cell) => &cell.core().id,
            PidInner::Remote(remote) => &remote.id,
        }
    }

    /// Whether the actor lives on this node.
    pub fn is_local(&self) -> bool {
        matches!(self.0, PidInner::Local(_))
    }

    /// Whether the actor is alive. Always `true` for a remote actor (ask it, or monitor it).
    pub fn is_alive(&self) -> bool {
        match &self.0 {
            PidInner::Local(cell) => cell.core().is_alive(),
            PidInner::Remote(_) => true,
        }
    }

    /// Where the actor is in its life (`Active` for a remote actor: ask it to know more).
    pub fn lifecycle(&self) -> Lifecycle {
        match &self.0 {
            PidInner::Local(cell) => cell.core().lifecycle(),
            PidInner::Remote(_) => Lifecycle::Active,
        }
    }

    /// Queued user messages (0 for a remote actor).
    pub fn mailbox_len(&self) -> usize {
        match &self.0 {
            PidInner::Local(cell) => cell.mailbox_len(),
            PidInner::Remote(_) => 0,
        }
    }

    /// The actor's Rust type name (`"remote"` for a remote actor).
    pub fn actor_type(&self) -> &'static str {
        match &self.0 {
            PidInner::Local(cell) => cell.actor_type(),
            PidInner::Remote(_) => "remote",
        }
    }

    /// Asks the actor to stop with `reason` after its current message (runs `on_stop`).
    pub fn stop(&self, reason: ExitReason) {
        self.signal(Signal::Stop(reason));
    }

    /// Stops the actor with `reason` and waits until it is gone (gen_server's `stop/2`).
    /// Returns the reason it exited with: `reason`, or a crash of its `on_stop`. A local
    /// actor only (see [`Pid::wait`]).
    pub async fn stop_and_wait(&self, reason: ExitReason) -> Result<ExitReason> {
        if !self.is_local() {
            return Err(Error::Unsupported(format!(
                "stop_and_wait on remote actor {}",
                self.id()
            )));
        }
        self.stop(reason);
        self.wait().await
    }

    /// Delivers `value` to the actor's `handle_info` as [`Info::Message`], ahead of queued
    /// user messages like every notification (Erlang's `Pid ! Term` for a term outside the
    /// actor's message type). A local actor only: such a value cannot cross nodes.
    pub fn send_info<T: Any + Send + Sync>(&self, value: T) -> Result<()> {
        match &self.0 {
            PidInner::Local(cell) => {
                if !cell.core().is_alive() {
                    return Err(Error::NoProc(self.id().to_string()));
                }
                cell.signal(Signal::Info(Info::Message(crate::actor::InfoMessage::new(
                    value,
                ))));
                Ok(())
            }
            PidInner::Remote(remote) => Err(Error::Unsupported(format!(
                "send_info to remote actor {}: the value cannot cross nodes",
                remote.id
            ))),
        }
    }

    /// Kills the actor at once: `on_stop` does not run; links and monitors see `killed`.
    pub fn kill(&self) {
        match &self.0 {
            PidInner::Local(cell) => cell.kill(),
            PidInner::Remote(remote) => remote.router.send_kill(&remote.id),
        }
    }

    /// Waits until the actor has terminated and returns why. A local actor only; a remote
    /// one answers [`Error::Unsupported`] (monitor it from an actor instead).
    pub async fn wait(&self) -> Result<ExitReason> {
        let cell = match &self.0 {
            PidInner::Local(cell) => cell,
            PidInner::Remote(remote) => {
                return Err(Error::Unsupported(format!(
                    "wait on remote actor {}",
                    remote.id
                )))
            }
        };
        let rx = {
            let mut state = cell.core().state.lock();
            if let Some(reason) = &state.exit {
                return Ok(reason.clone());
            }
            let (tx, rx) = oneshot::channel();
            state.watchers.push(Watcher::Waiter(tx));
            rx
        };
        Ok(rx.await.unwrap_or(ExitReason::Killed))
    }

    /// Sends an envelope without waiting for a reply (waits for mailbox space).
    pub async fn tell_envelope(&self, env: Envelope) -> Result<()> {
        crate::gate::before_send().await?;
        match &self.0 {
            PidInner::Local(cell) => {
                cell.send_envelope(Box::new(EnvelopeMail { env, reply: None }))
                    .await
            }
            PidInner::Remote(remote) => remote.router.tell(&remote.id, env),
        }
    }

    /// Sends an envelope if the mailbox has room, else fails with [`Error::MailboxFull`].
    pub fn try_tell_envelope(&self, env: Envelope) -> Result<()> {
        match &self.0 {
            PidInner::Local(cell) => cell.try_envelope(Box::new(EnvelopeMail { env, reply: None })),
            PidInner::Remote(remote) => remote.router.tell(&remote.id, env),
        }
    }

    /// Sends an envelope and waits up to `timeout` for the encoded reply.
    pub async fn ask_envelope(&self, env: Envelope, timeout: Duration) -> Result<Envelope> {
        match &self.0 {
            PidInner::Local(cell) => {
                cell.core().check_not_self()?;
                let work = async {
                    crate::gate::before_send().await?;
                    let (tx, rx) = oneshot::channel();
                    cell.send_envelope(Box::new(EnvelopeMail {
                        env,
                        reply: Some(tx.into()),
                    }))
                    .await?;
                    rx.await.unwrap_or_else(|_| Err(cell.core().gone_error()))
                };
                crate::deadline::within(timeout, work).await
            }
            PidInner::Remote(remote) => {
                tokio::time::timeout(timeout, crate::gate::before_send())
                    .await
                    .unwrap_or(Err(Error::Timeout(timeout)))?;
                remote.router.ask(&remote.id, env, timeout).await
            }
        }
    }

    /// Like [`Pid::ask_envelope`] but fails at once with [`Error::MailboxFull`] instead of
    /// waiting for mailbox space (for front doors that answer "overloaded").
    pub async fn try_ask_envelope(&self, env: Envelope, timeout: Duration) -> Result<Envelope> {
        match &self.0 {
            PidInner::Local(cell) => {
                cell.core().check_not_self()?;
                let (tx, rx) = oneshot::channel();
                cell.try_envelope(Box::new(EnvelopeMail {
                    env,
                    reply: Some(tx.into()),
                }))?;
                let reply = async { rx.await.unwrap_or_else(|_| Err(cell.core().gone_error())) };
                crate::deadline::within(timeout, reply).await
            }
            PidInner::Remote(remote) => remote.router.ask(&remote.id, env, timeout).await,
        }
    }

    /// The typed handle, if this is a local actor of type `A`, or a remote one (whose type
    /// cannot be checked here).
    pub fn typed<A: Actor>(&self) -> Option<ActorRef<A>> {
        match &self.0 {
            PidInner::Local(cell) => {
                cell.clone()
                    .as_any()
                    .downcast::<ActorCell<A>>()
                    .ok()
                    .map(|cell| ActorRef {
                        inner: RefInner::Local(cell),
                    })
            }
            PidInner::Remote(remote) => Some(ActorRef {
                inner: RefInner::Remote(remote.clone()),
            }),
        }
    }

    pub(crate) fn signal(&self, signal: Signal) {
        match &self.0 {
            PidInner::Local(cell) => cell.signal(signal),
            PidInner::Remote(remote) => remote.router.send_signal(&remote.id, signal),
        }
    }

    /// Same actor incarnation: for local actors the same cell (a restarted child with the
    /// same id is a different pid), for remote ones the same id.
    pub(crate) fn same(&self, other: &Pid) -> bool {
        match (&self.0, &other.0) {
            (PidInner::Local(a), PidInner::Local(b)) => {
                std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
            }
            _ => self.id() == other.id(),
        }
    }
}

impl PartialEq for Pid {
    fn eq(&self, other: &Self) -> bool {
        self.same(other)
    }
}

impl Eq for Pid {}

impl fmt::Debug for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pid({})", self.id())
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.id(), f)
    }
}

/// A typed, location-transparent handle to an actor of type `A`. Cheap to clone.
///
/// Locally, messages move as `A::Msg` values through the actor's mailbox (no encoding).
/// Remotely, they are encoded with `A::encode` and cross the node's transport.
pub struct ActorRef<A: Actor> {
    inner: RefInner<A>,
}

enum RefInner<A: Actor> {
    Local(Arc<ActorCell<A>>),
    Remote(Arc<RemoteActor>),
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        let inner = match &self.inner {
            RefInner::Local(cell) => RefInner::Local(cell.clone()),
            RefInner::Remote(remote) => RefInner::Remote(remote.clone()),
        };
        ActorRef { inner }
    }
}

impl<A: Actor> fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorRef({})", self.id())
    }
}

impl<A: Actor> PartialEq for ActorRef<A> {
    fn eq(&self, other: &Self) -> bool {
        self.pid() == other.pid()
    }
}

impl<A: Actor> ActorRef<A> {
    pub(crate) fn from_cell(cell: Arc<ActorCell<A>>) -> Self {
        ActorRef {
            inner: RefInner::Local(cell),
        }
    }

    pub(crate) fn remote(id: ActorId, router: Arc<Router>) -> Self {
        ActorRef {
            inner: RefInner::Remote(Arc::new(RemoteActor { id, router })),
        }
    }

    /// `name@node`.
    pub fn id(&self) -> &ActorId {
        match &self.inner {
            RefInner::Local(cell) => &cell.core.id,
            RefInner::Remote(remote) => &remote.id,
        }
    }

    /// The untyped address.
    pub fn pid(&self) -> Pid {
        match &self.inner {
            RefInner::Local(cell) => Pid::local(cell.clone()),
            RefInner::Remote(remote) => Pid(PidInner::Remote(remote.clone())),
        }
    }

    /// Whether the actor lives on this node.
    pub fn is_local(&self) -> bool {
        matches!(self.inner, RefInner::Local(_))
    }

    /// Whether the actor is alive (always `true` for a remote actor).
    pub fn is_alive(&self) -> bool {
        match &self.inner {
            RefInner::Local(cell) => cell.core.is_alive(),
            RefInner::Remote(_) => true,
        }
    }

    /// Queued user messages (0 for a remote actor).
    pub fn mailbox_len(&self) -> usize {
        match &self.inner {
            RefInner::Local(cell) => cell.mailbox.len(),
            RefInner::Remote(_) => 0,
        }
    }

    /// Fire and forget. Waits for space in a full bounded mailbox; gives the message back if
    /// the actor is gone.
    pub async fn tell(&self, msg: impl Into<A::Msg>) -> Result<(), SendError<A::Msg>> {
        let msg = msg.into();
        if let Err(e) = crate::gate::before_send().await {
            return Err(SendError::NotDurable(msg, e));
        }
        match &self.inner {
            RefInner::Local(cell) => cell
                .mailbox
                .send(Mail::Cast(msg))
                .await
                .map_err(|mail| SendError::Closed(unwrap_cast(mail))),
            RefInner::Remote(remote) => remote_tell::<A>(remote, msg),
        }
    }

    /// Fire and forget without waiting: a full mailbox gives the message back at once.
    pub fn try_tell(&self, msg: impl Into<A::Msg>) -> Result<(), SendError<A::Msg>> {
        let msg = msg.into();
        match &self.inner {
            RefInner::Local(cell) => cell.mailbox.try_send(Mail::Cast(msg)).map_err(|e| match e {
                Refused::Full(m) => SendError::Full(unwrap_cast(m)),
                Refused::Closed(m) => SendError::Closed(unwrap_cast(m)),
            }),
            RefInner::Remote(remote) => remote_tell::<A>(remote, msg),
        }
    }

    /// Request/reply with the default timeout ([`DEFAULT_ASK_TIMEOUT`]).
    pub async fn ask(&self, msg: impl Into<A::Msg>) -> Result<A::Reply> {
        self.ask_timeout(msg, DEFAULT_ASK_TIMEOUT).await
    }

    /// Request/reply. After `timeout` the caller gets [`Error::Timeout`] and a late reply is
    /// dropped (each ask has its own reply slot, so it can never reach another caller).
    pub async fn ask_timeout(&self, msg: impl Into<A::Msg>, timeout: Duration) -> Result<A::Reply> {
        let msg = msg.into();
        match &self.inner {
            RefInner::Local(cell) => {
                cell.core.check_not_self()?;
                let work = async {
                    crate::gate::before_send().await?;
                    let (tx, rx) = oneshot::channel();
                    if cell.mailbox.send(Mail::Call(msg, tx)).await.is_err() {
                        return Err(Error::NoProc(cell.core.id.to_string()));
                    }
                    rx.await.unwrap_or_else(|_| Err(cell.core.gone_error()))
                };
                crate::deadline::within(timeout, work).await
            }
            RefInner::Remote(remote) => {
                let env = A::encode(&msg)?;
                tokio::time::timeout(timeout, crate::gate::before_send())
                    .await
                    .unwrap_or(Err(Error::Timeout(timeout)))?;
                let reply = remote.router.ask(&remote.id, env, timeout).await?;
                A::decode_reply(&reply)
            }
        }
    }

    /// A typed request whose reply type is the handler's own (see [`Request`]).
    pub async fn request<M: Request<A>>(&self, msg: M) -> Result<M::Output> {
        M::output(self.ask(msg).await?)
    }

    /// [`ActorRef::request`] with a timeout.
    pub async fn request_timeout<M: Request<A>>(
        &self,
        msg: M,
        timeout: Duration,
    ) -> Result<M::Output> {
        M::output(self.ask_timeout(msg, timeout).await?)
    }

    /// Sends an envelope (the dynamic path: decoded by `A::decode` on arrival).
    pub async fn tell_envelope(&self, env: Envelope) -> Result<()> {
        self.pid().tell_envelope(env).await
    }

    /// Asks with an envelope; the reply comes back encoded by `A::encode_reply`.
    pub async fn ask_envelope(&self, env: Envelope, timeout: Duration) -> Result<Envelope> {
        self.pid().ask_envelope(env, timeout).await
    }

    /// Asks the actor to stop after its current message (runs `on_stop`).
    pub fn stop(&self, reason: ExitReason) {
        self.pid().stop(reason)
    }

    /// Kills the actor at once (no `on_stop`).
    pub fn kill(&self) {
        self.pid().kill()
    }

    /// Waits for the actor to terminate; returns why.
    pub async fn wait(&self) -> Result<ExitReason> {
        self.pid().wait().await
    }

    /// Stops the actor and waits for it; returns the reason it exited with (see
    /// [`Pid::stop_and_wait`]).
    pub async fn stop_and_wait(&self, reason: ExitReason) -> Result<ExitReason> {
        self.pid().stop_and_wait(reason).await
    }

    /// Delivers `value` to the actor's `handle_info` (see [`Pid::send_info`]).
    pub fn send_info<T: Any + Send + Sync>(&self, value: T) -> Result<()> {
        self.pid().send_info(value)
    }

    /// Attaches a facet to the running actor (applied before its next message).
    pub fn attach_facet(&self, facet: Arc<dyn Facet>) {
        self.pid().signal(Signal::AttachFacet(facet));
    }

    /// Detaches the facet named `name` from the running actor.
    pub fn detach_facet(&self, name: &str) {
        self.pid().signal(Signal::DetachFacet(name.to_owned()));
    }
}

fn unwrap_cast<A: Actor>(mail: Mail<A>) -> A::Msg {
    match mail {
        Mail::Cast(msg) | Mail::Call(msg, _) => msg,
        Mail::Envelope(_) => unreachable!("only casts are sent through this path"),
    }
}

fn remote_tell<A: Actor>(remote: &RemoteActor, msg: A::Msg) -> Result<(), SendError<A::Msg>> {
    match A::encode(&msg) {
        Ok(env) => remote
            .router
            .tell(&remote.id, env)
            .map_err(|e| SendError::Remote(msg, e)),
        Err(e) => Err(SendError::Remote(msg, e)),
    }
}
