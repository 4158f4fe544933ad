//! Spawning and the actor loop.
//!
//! One tokio task per actor. The loop takes system signals (stop, exit, down, facet changes)
//! before user messages, runs one handler at a time, catches handler panics, and on the way
//! out notifies links, monitors, the registry and process groups exactly once — also when
//! the task is aborted by a kill, through [`ExitGuard`]'s `Drop`.

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::actor::{Actor, Info, ReplyHandle};
use crate::context::Context;
use crate::envelope::Envelope;
use crate::error::{BoxError, Error, ExitReason, Result};
use crate::facet::{
    self, ActorInfo, Commit, Facet, Intercept, MessageKind, MessageMeta, MessageOutcome,
};
use crate::id::ActorId;
use crate::mailbox::{Mailbox, Received};
use crate::node::Node;
use crate::pid::{
    ActorCell, ActorRef, CellCore, EnvelopeMail, Lifecycle, Mail, Pid, Signal, Watcher,
};

/// Mailbox capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxConfig {
    /// At most this many queued messages: `tell` waits for space, `try_tell` gives the
    /// message back.
    Bounded(usize),
    /// No limit (Erlang's default). Memory is the limit.
    Unbounded,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig::Bounded(1024)
    }
}

/// How to spawn one actor.
#[derive(Default, Clone)]
pub struct SpawnOptions {
    /// The name part of the id (`name@node`); generated when `None`.
    pub name: Option<String>,
    /// Mailbox capacity; the node's default when `None`.
    pub mailbox: Option<MailboxConfig>,
    /// Facets attached before `on_start`.
    pub facets: Vec<Arc<dyn Facet>>,
}

impl SpawnOptions {
    /// Options with this name.
    pub fn named(name: impl Into<String>) -> Self {
        SpawnOptions {
            name: Some(name.into()),
            ..SpawnOptions::default()
        }
    }

    /// Sets the mailbox capacity.
    pub fn mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// Adds a facet.
    pub fn facet(mut self, facet: Arc<dyn Facet>) -> Self {
        self.facets.push(facet);
        self
    }
}

/// Spawns `actor`. With `parent`, the new actor is linked to it and treats an exit signal
/// from it as an order to stop. With `started`, reports the outcome of `on_start`.
pub(crate) fn spawn<A: Actor>(
    node: &Node,
    actor: A,
    options: SpawnOptions,
    parent: Option<Pid>,
    started: Option<oneshot::Sender<Result<()>>>,
) -> Result<ActorRef<A>> {
    if node.is_shutting_down() {
        return Err(Error::ShuttingDown);
    }
    let seq = node.next_seq();
    let id = match &options.name {
        Some(name) => ActorId::new(name, node.name())?,
        None => ActorId::generated(seq, node.name())?,
    };
    let cell = Arc::new(ActorCell::<A> {
        core: CellCore::new(id, seq),
        mailbox: Mailbox::new(options.mailbox.unwrap_or(node.config().mailbox)),
    });
    let pid = Pid::local(cell.clone());
    node.insert_actor(&pid)?;
    if let Some(parent) = &parent {
        crate::context::link(&pid, parent);
    }
    let myself = ActorRef::from_cell(cell.clone());
    let mut ctx = Context::new(myself, node.clone(), parent);
    // The facets to attach wait in the chain itself, so the task keeps no list of its own.
    ctx.facets = node.default_facets().to_vec();
    ctx.facets.extend(options.facets);
    let guard = ExitGuard {
        cell: cell.clone(),
        node: node.clone(),
        reason: None,
        started,
    };
    let task = node.runtime().spawn(task(actor, ctx, guard));
    cell.core.set_abort(task.abort_handle());
    Ok(ActorRef::from_cell(cell))
}

/// The actor's task. Everything it owns is captured once and used in place: an idle actor's
/// memory is mostly this future. Not an `async fn`, whose parameters are moved into locals
/// and so stored twice; the message loop is written out here rather than in an `async fn`
/// taking references, and a message goes to its handler without intermediate `async fn`s, so
/// the only future awaited per message is the handler's own (issue 17: each nested layer
/// stored its parameters again and the handler future up to three times).
#[allow(clippy::manual_async_fn)]
fn task<A: Actor>(
    actor: A,
    ctx: Context<A>,
    guard: ExitGuard<A>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut own = Owned { guard, ctx, actor };
    async move {
        // Boxed: runs once, and its state would otherwise stay in the task for good.
        if let Err(reason) = Box::pin(start(&mut own.actor, &mut own.ctx, &mut own.guard)).await {
            own.guard.exited(reason);
            return;
        }
        let cell = &*own.guard.cell;
        let mut handled = 0u32;
        // Mail taken from the mailbox in one go; handled before anything still queued there,
        // so order is kept. Signals still overtake it: they are checked before every message.
        let mut batch: VecDeque<Mail<A>> = VecDeque::new();
        let reason = loop {
            // Turned into an `Accepted` before any handler runs, so what stays in the task
            // state across the handler's await is only the message itself.
            let accepted = match next(cell, &mut own.ctx, &mut batch).await {
                Received::Mail(mail) => accept(&mut own.ctx, mail),
                Received::Signal(signal) => Accepted::Signal(signal),
            };
            let mut outcome = match accepted {
                Accepted::Call(msg) => {
                    let result = guarded(own.actor.handle_call(msg, &mut own.ctx)).await;
                    complete(&mut own.ctx, result.map(Invoked::Call))
                }
                Accepted::Cast(msg) => {
                    let result = guarded(own.actor.handle_cast(msg, &mut own.ctx)).await;
                    complete(&mut own.ctx, result.map(|()| Invoked::Cast))
                }
                Accepted::WithFacets(msg, kind, env) => {
                    let env = env.map(|boxed| boxed.env);
                    Box::pin(dispatch_with_facets(
                        &mut own.actor,
                        &mut own.ctx,
                        msg,
                        kind,
                        env,
                        false,
                    ))
                    .await
                }
                Accepted::Rejected => None,
                Accepted::Signal(signal) => {
                    Box::pin(on_signal(&mut own.actor, &mut own.ctx, *signal)).await
                }
            };
            if outcome.is_none() && own.ctx.has_extras() {
                outcome = Box::pin(continue_work(&mut own.actor, &mut own.ctx)).await;
            }
            if let Some(reason) = outcome {
                break reason;
            }
            handled += 1;
            if handled == YIELD_EVERY {
                handled = 0;
                tokio::task::yield_now().await;
            }
        };
        // Calls taken into the batch but never handled learn the actor is gone.
        fail_unhandled(&cell.core.id, batch);
        cell.core.set_lifecycle(Lifecycle::Stopping);
        let reason = Box::pin(finish(&mut own.actor, &mut own.ctx, reason)).await;
        own.guard.exited(reason);
    }
}

/// What an actor's task owns, in the order it is dropped: the guard first, so the actor is
/// marked terminated (and its names freed) before its state and context go. A reply handle
/// the actor still holds (a deferred reply, or the call in hand when it was killed) then
/// answers with the actor's exit, as a local caller's dropped reply slot does, never with
/// `no_reply`.
struct Owned<A: Actor> {
    guard: ExitGuard<A>,
    ctx: Context<A>,
    actor: A,
}

/// Present so the task's `async move` block captures `Owned` whole: a closure or async
/// block never splits a value whose type has `Drop` into separately captured fields, whose
/// drop order would follow their first use in the block instead of the declaration above.
impl<A: Actor> Drop for Owned<A> {
    fn drop(&mut self) {}
}

/// The actor's next mail or signal: from `batch` unless a signal waits, else from the
/// mailbox (refilling `batch`). Signals overtake the rest of a batch.
async fn next<A: Actor>(
    cell: &ActorCell<A>,
    ctx: &mut Context<A>,
    batch: &mut VecDeque<Mail<A>>,
) -> Received<Mail<A>> {
    if !batch.is_empty() {
        if !cell.mailbox.signals_pending() {
            if let Some(mail) = batch.pop_front() {
                return Received::Mail(mail);
            }
        }
        return cell.mailbox.recv().await;
    }
    match ctx.has_extras().then(|| ctx.take_idle_timeout()).flatten() {
        None => cell.mailbox.recv_batch(batch, BATCH - 1).await,
        Some(limit) => Box::pin(recv_or_timeout(cell, batch, limit)).await,
    }
}

/// From spawn to the first message: facets attached, state recovered, `on_start`, the
/// starter answered, continuations run. The rare steps are boxed again inside, so this
/// future (boxed by the task) is about the size of `on_start`'s. `Err` is the actor's exit
/// reason: after a failed start `on_stop` does not run and the starter is left for
/// [`ExitGuard`], which answers only after the actor's names are freed.
async fn start<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    guard: &mut ExitGuard<A>,
) -> Result<(), ExitReason> {
    let failed = |ctx: &Context<A>, guard: &ExitGuard<A>, reason: ExitReason| {
        if guard.started.is_some() {
            unlink_parent(ctx);
        }
        Err(reason)
    };
    if !ctx.facets.is_empty() {
        if let Err(e) = Box::pin(attach_facets(ctx)).await {
            return failed(
                ctx,
                guard,
                ExitReason::error(format!("facet attach failed: {e}")),
            );
        }
    }
    if !ctx.facets.is_empty() {
        if let Err(reason) = Box::pin(recover(actor, ctx)).await {
            return failed(ctx, guard, reason);
        }
    }
    if let Err(reason) = guarded(actor.on_start(ctx)).await {
        return failed(ctx, guard, reason);
    }
    guard.cell.core.set_lifecycle(Lifecycle::Active);
    if let Some(tx) = guard.started.take() {
        let _ = tx.send(Ok(()));
    }
    if ctx.has_extras() {
        if let Some(reason) = Box::pin(continue_work(actor, ctx)).await {
            guard.cell.core.set_lifecycle(Lifecycle::Stopping);
            return Err(Box::pin(finish(actor, ctx, reason)).await);
        }
    }
    Ok(())
}

/// Attaches the facets waiting in `ctx.facets`, in order.
async fn attach_facets<A: Actor>(ctx: &mut Context<A>) -> Result<()> {
    for f in std::mem::take(&mut ctx.facets) {
        let info = ctx.info();
        facet::attach(&mut ctx.facets, f, &info).await?;
    }
    Ok(())
}

/// Catches a panic in a handler future and turns it into an error. Not an `async fn`,
/// which would hold `fut` twice: as its parameter and as the future it awaits.
pub(crate) fn guarded<T>(
    fut: impl std::future::Future<Output = Result<T, BoxError>>,
) -> impl std::future::Future<Output = Result<T, ExitReason>> {
    AssertUnwindSafe(fut)
        .catch_unwind()
        .map(|outcome| match outcome {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(ExitReason::error(e.to_string())),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(ExitReason::error(format!("panic: {text}")))
            }
        })
}

static NEXT_LOCAL_ID: AtomicU64 = AtomicU64::new(1);

/// How many messages the actor takes from its mailbox under one lock.
const BATCH: usize = 32;

/// Yield to the scheduler after this many messages in a row, so a busy actor cannot starve
/// others on its worker thread.
const YIELD_EVERY: u32 = 128;

/// Breaks the link to the parent of an actor that failed to start while its starter waits
/// for the outcome: the starter hears of the failure from the start's result, never as a
/// stray exit signal (OTP's `proc_lib` does the same for a failed `init`). An actor spawned
/// linked without waiting (`spawn_link`) keeps the link, so its parent gets the exit.
fn unlink_parent<A: Actor>(ctx: &Context<A>) {
    if let Some(parent) = &ctx.parent {
        crate::context::unlink(&ctx.pid(), parent);
    }
}

/// Waits for mail, or turns `limit` without any into [`Info::Timeout`].
async fn recv_or_timeout<A: Actor>(
    cell: &ActorCell<A>,
    batch: &mut VecDeque<Mail<A>>,
    limit: std::time::Duration,
) -> Received<Mail<A>> {
    match tokio::time::timeout(limit, cell.mailbox.recv_batch(batch, BATCH - 1)).await {
        Ok(received) => received,
        Err(_) => Received::Signal(Box::new(Signal::Info(Info::Timeout))),
    }
}

/// Runs `handle_continue` for as long as handlers ask for it (a continuation may set
/// another), before the next message.
async fn continue_work<A: Actor>(actor: &mut A, ctx: &mut Context<A>) -> Option<ExitReason> {
    while let Some(msg) = ctx.take_continuation() {
        if let Err(reason) = guarded(actor.handle_continue(msg, ctx)).await {
            return Some(reason);
        }
        if let Some(reason) = ctx.stop_request.take() {
            return Some(reason);
        }
    }
    None
}

/// `on_stop` (unless killed), then facet deactivation. A crash in `on_stop` replaces the
/// exit reason, as a crash in gen_server's `terminate` does.
async fn finish<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    mut reason: ExitReason,
) -> ExitReason {
    if reason != ExitReason::Killed {
        if let Err(crash) = guarded(actor.on_stop(ctx, &reason).map(Ok)).await {
            reason = crash;
        }
    }
    let info = ctx.info();
    facet::deactivate_all(&mut ctx.facets, &info, &reason).await;
    reason
}

/// A message taken from the mailbox, ready for its handler: the caller's reply handle is in
/// `ctx.reply` for a call.
enum Accepted<A: Actor> {
    Call(A::Msg),
    Cast(A::Msg),
    /// Facets are attached: the message takes the facet path (with its envelope, if any;
    /// boxed, as it came, so it takes no room in the task state).
    WithFacets(A::Msg, MessageKind, Option<Box<EnvelopeMail>>),
    /// An envelope that did not decode; its caller has been answered.
    Rejected,
    /// A system signal.
    Signal(Box<Signal>),
}

/// Decodes an envelope and parks the caller's reply handle in `ctx.reply`. Not async, so
/// nothing of it stays in the actor's task state.
fn accept<A: Actor>(ctx: &mut Context<A>, mail: Mail<A>) -> Accepted<A> {
    let (msg, reply, env) = match mail {
        Mail::Cast(msg) => (msg, None, None),
        Mail::Call(msg, tx) => (msg, Some(ReplyHandle::typed(tx)), None),
        Mail::Envelope(mut boxed) => {
            // The envelope stays boxed: unboxed, it would sit in every actor's task state.
            let msg = match A::decode(&boxed.env) {
                Ok(msg) => msg,
                Err(e) => {
                    tracing::debug!(actor = %ctx.id(), msg_type = %boxed.env.msg_type, error = %e, "rejected envelope");
                    if let Some(reply) = boxed.reply.take() {
                        reply.send(Err(e));
                    }
                    return Accepted::Rejected;
                }
            };
            let reply = boxed
                .reply
                .take()
                .map(|tx| ReplyHandle::encoded(tx, boxed.env.msg_type.clone(), A::encode_reply));
            (msg, reply, Some(boxed))
        }
    };
    let is_call = reply.is_some();
    ctx.reply = reply;
    if !ctx.facets.is_empty() {
        let kind = if is_call {
            MessageKind::Call
        } else {
            MessageKind::Cast
        };
        return Accepted::WithFacets(msg, kind, env);
    }
    if is_call {
        Accepted::Call(msg)
    } else {
        Accepted::Cast(msg)
    }
}

/// What a handler did.
enum Invoked<R> {
    Cast,
    Call(Option<R>),
}

/// Runs one handler, catching panics. For a call, `ctx.reply` holds the caller's handle.
async fn invoke<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    msg: A::Msg,
    is_call: bool,
) -> Result<Invoked<A::Reply>, ExitReason> {
    if is_call {
        guarded(actor.handle_call(msg, ctx))
            .await
            .map(Invoked::Call)
    } else {
        guarded(actor.handle_cast(msg, ctx))
            .await
            .map(|()| Invoked::Cast)
    }
}

/// Answers the caller and says whether the actor stops. On failure the caller gets
/// `ActorFailed` and the actor stops with the reason.
fn complete<A: Actor>(
    ctx: &mut Context<A>,
    result: Result<Invoked<A::Reply>, ExitReason>,
) -> Option<ExitReason> {
    match result {
        Ok(Invoked::Cast) => {}
        Ok(Invoked::Call(Some(value))) => {
            if let Some(handle) = ctx.reply.take() {
                handle.send(value);
            }
        }
        Ok(Invoked::Call(None)) => {
            if let Some(handle) = ctx.reply.take() {
                handle.fail(Error::NoReply);
            }
        }
        Err(reason) => {
            if let Some(handle) = ctx.reply.take() {
                handle.fail(Error::ActorFailed(reason.clone()));
            }
            return Some(reason);
        }
    }
    ctx.stop_request.take()
}

/// The header that records whether a journaled message was a call or a cast, so replay
/// runs the same handler.
pub const KIND_HEADER: &str = "plexspaces-kind";

/// The facet path: before hooks (which may refuse or answer), the handler in the first
/// span a facet offers, after hooks (which see the encoded reply before the caller does),
/// then a checkpoint if one is due.
async fn dispatch_with_facets<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    msg: A::Msg,
    kind: MessageKind,
    env: Option<Envelope>,
    replaying: bool,
) -> Option<ExitReason> {
    let facets = ctx.facets.clone();
    let needs_payload = facets.iter().any(|f| f.needs_payload());
    let (msg_type, mut correlation_id) = match &env {
        Some(env) => (env.msg_type.clone(), env.correlation_id.clone()),
        None => (A::msg_name(&msg).to_owned(), String::new()),
    };
    if correlation_id.is_empty() {
        // Local messages carry none; give each one an id so its span can be found.
        correlation_id = format!(
            "{}#{}",
            ctx.id(),
            NEXT_LOCAL_ID.fetch_add(1, Ordering::Relaxed)
        );
    }
    let payload = if needs_payload {
        let encoded = match env {
            Some(env) => Ok(env),
            None => A::encode(&msg),
        };
        match encoded {
            Ok(mut env) => {
                let kind = match kind {
                    MessageKind::Call => "call",
                    MessageKind::Cast => "cast",
                };
                env.headers.insert(KIND_HEADER.to_owned(), kind.to_owned());
                Some(env)
            }
            Err(e) => {
                tracing::warn!(actor = %ctx.id(), error = %e, "message refused: a facet needs it encoded");
                fail_gated(ctx, e);
                return None;
            }
        }
    } else {
        None
    };
    let meta = MessageMeta {
        payload,
        replaying,
        msg_type,
        correlation_id,
        kind,
        mailbox_len: ctx.myself().mailbox_len(),
    };
    let info = ctx.info();
    for f in &facets {
        match f.before_message(&info, &meta).await {
            Ok(Intercept::Continue) => {}
            Ok(Intercept::Reply(env)) => {
                // A recorded reply may belong to a message whose commit is still in flight:
                // it queues behind the held replies.
                if let Some(reply) = ctx.reply.take() {
                    answer(ctx, None, move |committed| {
                        let _ = match committed {
                            Ok(()) => reply.send_envelope(env, A::decode_reply),
                            Err(e) => reply.fail(e),
                        };
                    });
                }
                return None;
            }
            Err(e) => {
                tracing::debug!(actor = %info.id, facet = f.name(), error = %e, "facet refused message");
                fail_gated(ctx, e);
                return None;
            }
        }
    }
    let span = facets.iter().find_map(|f| f.message_span(&info, &meta));
    let started = Instant::now();
    let is_call = kind == MessageKind::Call;
    // A facet that journals replies must see the reply before the caller does, also when
    // the handler answers through `ctx.reply_handle()`: the handler gets a stand-in handle.
    let deferral = (needs_payload && is_call).then(|| DeferredReply::intercept(ctx));
    // Replay sends nothing new that could reveal state: what it replays is durable.
    let barrier = if replaying {
        None
    } else {
        facets.iter().find_map(|f| f.output_barrier())
    };
    let handler = crate::gate::under_barrier(barrier, invoke(actor, ctx, msg, is_call));
    let result = match span {
        Some(span) => handler.instrument(span).await,
        None => handler.await,
    };
    let result = match deferral {
        Some(deferral) => deferral.settle(ctx, result),
        None => result,
    };
    let reply = match (&result, needs_payload) {
        (Ok(Invoked::Call(Some(value))), true) => A::encode_reply(&meta.msg_type, value)
            .map_err(
                |e| tracing::warn!(actor = %info.id, error = %e, "reply not encodable for facets"),
            )
            .ok(),
        _ => None,
    };
    let outcome = MessageOutcome {
        reply,
        elapsed: started.elapsed(),
        failed: result.is_err(),
        error: result.as_ref().err().map(ToString::to_string),
    };
    let mut refused = None;
    let mut commits = Vec::new();
    for f in facets.iter().rev() {
        match f.after_message_gated(&info, &meta, &outcome).await {
            Ok(None) => {}
            Ok(Some(commit)) => commits.push(commit),
            Err(e) => {
                tracing::warn!(actor = %info.id, facet = f.name(), error = %e, "facet failed after the handler");
                refused.get_or_insert(e);
            }
        }
    }
    if let Some(e) = refused {
        fail_gated(ctx, e.clone());
        return Some(
            result
                .err()
                .unwrap_or_else(|| ExitReason::error(format!("facet failed: {e}"))),
        );
    }
    if result.is_ok() && !replaying {
        checkpoint(actor, &facets, &info).await;
    }
    let commit = match commits.len() {
        0 => None,
        1 => commits.pop(),
        _ => Some(Box::pin(async move {
            for commit in commits {
                commit.await?;
            }
            Ok(())
        }) as Commit),
    };
    if commit.is_none() && !ctx.gate_is_holding() {
        return complete(ctx, result);
    }
    complete_gated(ctx, result, commit)
}

/// Answers the caller now, or through the output gate when a commit covers the reply or
/// earlier replies are still held there (see [`crate::gate`]). `release` gets `Ok` once
/// everything before it is durable, or the error that made a commit fail.
fn answer<A: Actor>(
    ctx: &mut Context<A>,
    commit: Option<Commit>,
    release: impl FnOnce(Result<()>) + Send + 'static,
) {
    if commit.is_none() && !ctx.gate_is_holding() {
        release(Ok(()));
    } else {
        ctx.gate().hold(commit, Box::new(release));
    }
}

/// Fails the current call with `error`, in order behind any held reply.
fn fail_gated<A: Actor>(ctx: &mut Context<A>, error: Error) {
    if let Some(reply) = ctx.reply.take() {
        answer(ctx, None, move |_| {
            let _ = reply.fail(error);
        });
    }
}

/// [`complete`] through the output gate: the reply leaves once `commit` and every earlier
/// held commit are durable; a failed commit fails it instead.
fn complete_gated<A: Actor>(
    ctx: &mut Context<A>,
    result: Result<Invoked<A::Reply>, ExitReason>,
    commit: Option<Commit>,
) -> Option<ExitReason> {
    let stop = match &result {
        Err(reason) => Some(reason.clone()),
        Ok(_) => ctx.stop_request.take(),
    };
    let reply = ctx.reply.take();
    let release: Box<dyn FnOnce(Result<()>) + Send> = match (result, reply) {
        (Ok(Invoked::Call(Some(value))), Some(reply)) => Box::new(move |committed| {
            let _ = match committed {
                Ok(()) => reply.send(value),
                Err(e) => reply.fail(e),
            };
        }),
        (Ok(Invoked::Call(None)), Some(reply)) => Box::new(move |committed| {
            let _ = reply.fail(committed.err().unwrap_or(Error::NoReply));
        }),
        (Err(reason), Some(reply)) => Box::new(move |_| {
            let _ = reply.fail(Error::ActorFailed(reason));
        }),
        // A cast (or a call whose caller is gone): the hold still watches the commit, so a
        // failed one stops the actor.
        _ => Box::new(|_| {}),
    };
    ctx.gate().hold(commit, release);
    stop
}

/// The caller's reply handle, held back while the handler runs with a stand-in, so that a
/// reply given through `ctx.reply_handle()` reaches the facets (which journal it) before the
/// caller. Used for calls when a facet needs payloads (a journal); a replayed call, which
/// has no caller, gets a stand-in too, so the handler runs as it did live.
struct DeferredReply<R> {
    caller: Option<ReplyHandle<R>>,
    answer: oneshot::Receiver<Result<R>>,
}

impl<R> DeferredReply<R> {
    fn intercept<A: Actor<Reply = R>>(ctx: &mut Context<A>) -> Self {
        let caller = ctx.reply.take();
        let (tx, answer) = oneshot::channel();
        ctx.reply = Some(ReplyHandle::typed(tx));
        DeferredReply { caller, answer }
    }

    /// Puts the caller's handle back. A handler that took the stand-in and answered before
    /// returning gets its answer handled as a returned reply (journaled, then sent). One
    /// that had not answered when it returned cannot be journaled before its reply leaves:
    /// the caller gets [`Error::Unsupported`] and the message fails (the facets abort it and
    /// the actor stops, so no state outlives what the journal holds).
    fn settle<A: Actor<Reply = R>>(
        mut self,
        ctx: &mut Context<A>,
        result: Result<Invoked<R>, ExitReason>,
    ) -> Result<Invoked<R>, ExitReason> {
        let taken = ctx.reply.is_none();
        ctx.reply = self.caller.take();
        let replaying = ctx.reply.is_none();
        match result {
            Ok(Invoked::Call(None)) if taken => match self.answer.try_recv() {
                Ok(Ok(reply)) => Ok(Invoked::Call(Some(reply))),
                // Replay: nobody waits for this answer.
                _ if replaying => Ok(Invoked::Call(None)),
                // The handler refused the message through the handle before returning (a
                // WASM guest's typed error): the refusal reaches the caller and the message
                // counts as handled without a reply. It holds no state, so it may leave
                // before the journal's commit; a replay refuses it again.
                Ok(Err(refused)) => {
                    if let Some(caller) = ctx.reply.take() {
                        caller.fail(refused);
                    }
                    Ok(Invoked::Call(None))
                }
                _ => {
                    let refusal = "a durable actor must answer an ask before its handler \
                                   returns: a later reply (ctx.reply_handle) could leave \
                                   before the journal holds it";
                    if let Some(caller) = ctx.reply.take() {
                        caller.fail(Error::Unsupported(refusal.into()));
                    }
                    Err(ExitReason::error(refusal))
                }
            },
            other => other,
        }
    }
}

/// Takes a snapshot for every facet that wants one now.
async fn checkpoint<A: Actor>(actor: &mut A, facets: &[Arc<dyn Facet>], info: &ActorInfo) {
    let due: Vec<&Arc<dyn Facet>> = facets.iter().filter(|f| f.checkpoint_due(info)).collect();
    if due.is_empty() {
        return;
    }
    match actor.snapshot() {
        Ok(Some(snapshot)) => {
            for f in due {
                if let Err(e) = f.save_checkpoint(info, snapshot.clone()).await {
                    tracing::warn!(actor = %info.id, facet = f.name(), error = %e, "checkpoint failed");
                }
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(actor = %info.id, error = %e, "snapshot failed"),
    }
}

/// Rebuilds the actor from what its facets recovered: snapshot, then replay through its own
/// handlers (replies are discarded).
async fn recover<A: Actor>(actor: &mut A, ctx: &mut Context<A>) -> Result<(), ExitReason> {
    let facets = ctx.facets.clone();
    let info = ctx.info();
    for f in &facets {
        let recovery = f.recover(&info).await.map_err(|e| {
            ExitReason::error(format!("recovery by facet {} failed: {e}", f.name()))
        })?;
        let Some(recovery) = recovery else { continue };
        if let Some(snapshot) = &recovery.snapshot {
            actor
                .restore(snapshot)
                .map_err(|e| ExitReason::error(format!("snapshot restore failed: {e}")))?;
        }
        for env in recovery.replay {
            let msg = A::decode(&env)
                .map_err(|e| ExitReason::error(format!("replay decode failed: {e}")))?;
            let kind = match env.headers.get(KIND_HEADER).map(String::as_str) {
                Some("call") => MessageKind::Call,
                _ => MessageKind::Cast,
            };
            if let Some(reason) = dispatch_with_facets(actor, ctx, msg, kind, Some(env), true).await
            {
                return Err(reason);
            }
        }
    }
    Ok(())
}

async fn on_signal<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    signal: Signal,
) -> Option<ExitReason> {
    match signal {
        Signal::Stop(reason) => Some(reason),
        Signal::Exit { from, reason } => {
            let from_parent = ctx.parent.as_ref().is_some_and(|p| p.same(&from));
            if from_parent && (ctx.trap_exit || reason != ExitReason::Normal) {
                // gen_server: an exit from the parent is an order to terminate.
                return Some(reason);
            }
            if ctx.trap_exit {
                let info = Info::Exit { from, reason };
                return handle_info(actor, ctx, info).await;
            }
            // `exit(self(), normal)` ends the process in Erlang; a `normal` exit from
            // anyone else is ignored.
            if reason == ExitReason::Normal && !from.same(&ctx.pid()) {
                None
            } else {
                Some(reason)
            }
        }
        Signal::Info(info) => {
            if let Info::Down { monitor, .. } = &info {
                if !ctx.take_monitor(*monitor) {
                    return None;
                }
            }
            handle_info(actor, ctx, info).await
        }
        Signal::AttachFacet(f) => {
            let info = ctx.info();
            if let Err(e) = facet::attach(&mut ctx.facets, f, &info).await {
                tracing::warn!(actor = %info.id, error = %e, "facet attach failed");
            }
            None
        }
        Signal::DetachFacet(name) => {
            let info = ctx.info();
            facet::detach(&mut ctx.facets, &name, &info).await;
            None
        }
    }
}

async fn handle_info<A: Actor>(
    actor: &mut A,
    ctx: &mut Context<A>,
    info: Info,
) -> Option<ExitReason> {
    match guarded(actor.handle_info(info, ctx)).await {
        Ok(()) => ctx.stop_request.take(),
        Err(reason) => Some(reason),
    }
}

/// Finishes an actor exactly once, however its task ends (returned, or aborted by a kill).
struct ExitGuard<A: Actor> {
    cell: Arc<ActorCell<A>>,
    node: Node,
    reason: Option<ExitReason>,
    /// Who waits for the start, while the start has not succeeded.
    started: Option<oneshot::Sender<Result<()>>>,
}

impl<A: Actor> ExitGuard<A> {
    /// Records why the actor ended (read when the guard drops).
    fn exited(&mut self, reason: ExitReason) {
        self.reason = Some(reason);
    }
}

impl<A: Actor> Drop for ExitGuard<A> {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or(ExitReason::Killed);
        let id = self.cell.core.id.clone();
        match &reason {
            ExitReason::Normal | ExitReason::Shutdown | ExitReason::ShutdownWith(_) => {
                tracing::debug!(actor = %id, %reason, "actor stopped")
            }
            _ => tracing::info!(actor = %id, %reason, "actor exited"),
        }
        let pid = Pid::local(self.cell.clone());
        terminate(&pid, &self.cell.core, &self.node, &reason);
        // A failed start is reported only now, once the id and names are free, so the
        // caller can reuse them at once.
        if let Some(tx) = self.started.take() {
            let _ = tx.send(Err(Error::StartFailed(reason.to_string())));
        }
        // Calls that never reached the handler learn the actor is gone.
        fail_unhandled(&id, self.cell.mailbox.close());
    }
}

/// Answers every call in `mail` with `NoProc`: the actor stopped before handling it.
fn fail_unhandled<A: Actor>(id: &ActorId, mail: impl IntoIterator<Item = Mail<A>>) {
    for mail in mail {
        match mail {
            Mail::Call(_, tx) => {
                let _ = tx.send(Err(Error::NoProc(id.to_string())));
            }
            Mail::Envelope(env) => {
                if let Some(reply) = env.reply {
                    reply.send(Err(Error::NoProc(id.to_string())));
                }
            }
            Mail::Cast(_) => {}
        }
    }
}

/// Marks the cell dead and tells everyone who needs to know, exactly once.
fn terminate(pid: &Pid, core: &CellCore, node: &Node, reason: &ExitReason) {
    let (links, watchers, names, groups) = {
        let mut state = core.state.lock();
        if state.exit.is_some() {
            return;
        }
        state.exit = Some(reason.clone());
        core.set_lifecycle(match reason {
            ExitReason::Normal
            | ExitReason::Shutdown
            | ExitReason::ShutdownWith(_)
            | ExitReason::NoProc => Lifecycle::Terminated,
            ExitReason::Killed
            | ExitReason::Error(_)
            | ExitReason::Other(_)
            | ExitReason::NoConnection => Lifecycle::Failed,
        });
        (
            std::mem::take(&mut state.links),
            std::mem::take(&mut state.watchers),
            std::mem::take(&mut state.names),
            std::mem::take(&mut state.groups),
        )
    };
    for name in &names {
        node.unregister_if(name, pid);
    }
    for group in &groups {
        node.groups().remove_member(group, pid);
    }
    node.remove_actor(pid);
    for linked in links {
        if let Some(cell) = linked.cell() {
            cell.core().state.lock().links.retain(|l| !l.same(pid));
        }
        linked.signal(Signal::Exit {
            from: pid.clone(),
            reason: reason.clone(),
        });
    }
    for watcher in watchers {
        match watcher {
            Watcher::Actor {
                pid: watcher,
                monitor,
            } => watcher.signal(Signal::Info(Info::Down {
                monitor,
                id: core.id.clone(),
                reason: reason.clone(),
            })),
            Watcher::Waiter(tx) => {
                let _ = tx.send(reason.clone());
            }
        }
    }
}

#[cfg(test)]
mod footprint {
    use super::*;

    struct Tiny(u64);

    impl Actor for Tiny {
        type Msg = u64;
        type Reply = u64;
        async fn handle_call(
            &mut self,
            m: u64,
            _ctx: &mut Context<Self>,
        ) -> Result<Option<u64>, BoxError> {
            self.0 += m;
            Ok(Some(self.0))
        }
    }

    /// An idle actor's memory is mostly its loop future and its cell; rare paths are boxed
    /// to keep them small. This guards against a change quietly growing every actor.
    #[tokio::test]
    async fn an_actor_loop_stays_small() {
        let node = Node::builder("sz").build().await.expect("node");
        let cell = Arc::new(ActorCell::<Tiny> {
            core: CellCore::new(ActorId::new("a", "sz").expect("id"), 0),
            mailbox: Mailbox::new(MailboxConfig::Unbounded),
        });
        let ctx = Context::new(ActorRef::from_cell(cell.clone()), node.clone(), None);
        let guard = ExitGuard {
            cell: cell.clone(),
            node: node.clone(),
            reason: None,
            started: None,
        };
        let task_future = task(Tiny(0), ctx, guard);
        let task_bytes = std::mem::size_of_val(&task_future);
        drop(task_future);
        eprintln!(
            "task {task_bytes} B, cell {} B, context {} B, mail {} B",
            std::mem::size_of::<ActorCell<Tiny>>(),
            std::mem::size_of::<Context<Tiny>>(),
            std::mem::size_of::<Mail<Tiny>>()
        );
        // With tokio's task header and trailer (96 B) the task must stay within 512 B, the
        // allocation step it is rounded to being 128 B.
        assert!(
            task_bytes <= 416,
            "actor task future grew to {task_bytes} B"
        );
        assert!(std::mem::size_of::<Context<Tiny>>() <= 160);
        // Links, watchers, names and groups are one pointer each while empty, and so is the
        // mailbox's overflow buffer.
        assert!(std::mem::size_of::<ActorCell<Tiny>>() <= 224);
        assert!(std::mem::size_of::<Mail<Tiny>>() <= 32);
        node.shutdown().await;
    }
}
