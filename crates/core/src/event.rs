//! GenEvent: an event manager with handlers added, removed and swapped at runtime.
//!
//! `notify` delivers an event to every handler without waiting; `sync_notify` returns once
//! every handler has seen it. A handler that fails (returns an error or panics) is removed
//! without harming the manager or the other handlers (a panic in its `terminate` too), and
//! the actor that added it (its owner) gets [`Info::EventHandlerExit`], like Erlang's
//! `gen_event_EXIT`.
//!
//! A handler added with `add_sup_handler` is supervised by its owner: it is removed when
//! the owner dies, and the owner is told whenever it is removed (`normal` when deleted, the
//! manager's exit reason when the manager stops).

use std::any::Any;
use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures::FutureExt;

use crate::actor::{Actor, Info};
use crate::context::Context;
use crate::error::{BoxError, Error, ExitReason, Result};
use crate::id::ActorId;
use crate::pid::{ActorRef, MonitorRef, Pid, Signal};
use crate::runtime::guarded;

/// State handed from a swapped-out handler to its replacement.
pub type Handoff = Option<Box<dyn Any + Send>>;

/// A request to one handler (`gen_event:call/3`); the handler downcasts it.
pub type Request = Box<dyn Any + Send>;

/// A handler's answer to a [`Request`].
pub type Response = Box<dyn Any + Send>;

/// One event handler.
#[async_trait]
pub trait EventHandler<E: Sync>: Send + 'static {
    /// Runs when the handler is added; `handoff` is what the handler it replaces returned
    /// from `terminate` (on a swap).
    async fn init(&mut self, handoff: Handoff) -> Result<(), BoxError> {
        let _ = handoff;
        Ok(())
    }

    /// Handles one event. An error removes this handler.
    async fn handle_event(&mut self, event: &E) -> Result<(), BoxError>;

    /// Answers a request sent to this handler alone with [`ActorRef::call_handler`]
    /// (`gen_event:call/3`). An error removes this handler, as in `handle_event`. By default
    /// the handler takes no requests.
    async fn handle_call(&mut self, request: Request) -> Result<Response, BoxError> {
        let _ = request;
        Err("this event handler takes no calls".into())
    }

    /// Checked after each event and call: `true` removes the handler with reason `normal`
    /// (gen_event's `remove_handler` return).
    fn is_done(&self) -> bool {
        false
    }

    /// Runs when the handler is removed; may hand state to a replacement.
    async fn terminate(&mut self, reason: &ExitReason) -> Handoff {
        let _ = reason;
        None
    }
}

struct Installed<E> {
    id: String,
    handler: Box<dyn EventHandler<E>>,
    /// The actor that added it with `add_sup_handler`, and the manager's monitor of it.
    owner: Option<(Pid, MonitorRef)>,
}

/// Runs a handler's `terminate`, catching a panic: a failing handler goes alone.
async fn terminate_handler<E: Sync + 'static>(
    manager: &ActorId,
    installed: &mut Installed<E>,
    reason: &ExitReason,
) -> Handoff {
    match AssertUnwindSafe(installed.handler.terminate(reason))
        .catch_unwind()
        .await
    {
        Ok(handoff) => handoff,
        Err(_) => {
            tracing::warn!(manager = %manager, handler = %installed.id, "event handler panicked in terminate");
            None
        }
    }
}

/// Requests to an [`EventManager`].
pub enum EventMsg<E> {
    /// Deliver to every handler (cast) or and wait until all have handled it (call).
    Notify(E),
    /// Add a handler under `id`, optionally owned by an actor that is told if it fails.
    Add {
        /// The handler's id (unique within the manager).
        id: String,
        /// The handler.
        handler: Box<dyn EventHandler<E>>,
        /// Who is told if it fails.
        owner: Option<Pid>,
    },
    /// Remove a handler.
    Remove(String),
    /// Replace handler `old` with `handler` under `id`, handing over state.
    Swap {
        /// The handler to remove.
        old: String,
        /// The new handler's id.
        id: String,
        /// The new handler.
        handler: Box<dyn EventHandler<E>>,
    },
    /// List handler ids.
    Which,
    /// A request to one handler.
    Call {
        /// The handler's id.
        id: String,
        /// The request.
        request: Request,
    },
}

/// Replies from an [`EventManager`].
#[derive(Debug)]
pub enum EventReply {
    /// Done.
    Done,
    /// Handler ids in the order they were added.
    Handlers(Vec<String>),
    /// One handler's answer to a call.
    Response(Response),
}

/// The event manager actor.
pub struct EventManager<E> {
    handlers: Vec<Installed<E>>,
}

impl<E> Default for EventManager<E> {
    fn default() -> Self {
        EventManager {
            handlers: Vec::new(),
        }
    }
}

impl<E: Send + Sync + 'static> EventManager<E> {
    /// A manager with no handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells a removed handler's owner why it went (`gen_event_EXIT`) and stops watching it.
    fn release(
        ctx: &mut Context<Self>,
        id: String,
        owner: Option<(Pid, MonitorRef)>,
        reason: ExitReason,
    ) {
        if let Some((owner, monitor)) = owner {
            ctx.demonitor(monitor, &owner);
            owner.signal(Signal::Info(Info::EventHandlerExit {
                manager: ctx.id().clone(),
                handler: id,
                reason,
            }));
        }
    }

    async fn deliver(&mut self, ctx: &mut Context<Self>, event: &E) {
        let mut at = 0;
        while at < self.handlers.len() {
            let outcome = guarded(self.handlers[at].handler.handle_event(event)).await;
            match self.leaving(at, &outcome) {
                None => at += 1,
                Some(reason) => self.drop_handler(ctx, at, reason).await,
            }
        }
    }

    /// Why handler `at` leaves after an event or call ended with `outcome`, if it does: it
    /// failed, or it is done.
    fn leaving<T>(&self, at: usize, outcome: &Result<T, ExitReason>) -> Option<ExitReason> {
        match outcome {
            Err(reason) => Some(reason.clone()),
            Ok(_) if self.handlers[at].handler.is_done() => Some(ExitReason::Normal),
            Ok(_) => None,
        }
    }

    /// Removes handler `at` for `reason`: runs its `terminate` and tells its owner.
    async fn drop_handler(&mut self, ctx: &mut Context<Self>, at: usize, reason: ExitReason) {
        let mut removed = self.handlers.remove(at);
        if reason != ExitReason::Normal {
            tracing::warn!(manager = %ctx.id(), handler = %removed.id, %reason, "event handler removed");
        }
        terminate_handler(ctx.id(), &mut removed, &reason).await;
        Self::release(ctx, removed.id, removed.owner, reason);
    }

    async fn add(
        &mut self,
        ctx: &mut Context<Self>,
        id: String,
        mut handler: Box<dyn EventHandler<E>>,
        owner: Option<Pid>,
        handoff: Handoff,
    ) -> Result<()> {
        if self.handlers.iter().any(|h| h.id == id) {
            return Err(Error::NameTaken(id));
        }
        handler
            .init(handoff)
            .await
            .map_err(|e| Error::StartFailed(format!("event handler {id}: {e}")))?;
        // A supervised handler goes when its owner dies (gen_event links the two).
        let owner = owner.map(|owner| {
            let monitor = ctx.monitor(&owner);
            (owner, monitor)
        });
        self.handlers.push(Installed { id, handler, owner });
        Ok(())
    }

    /// Sends `request` to handler `id` alone. A handler that fails is removed.
    async fn call(
        &mut self,
        ctx: &mut Context<Self>,
        id: &str,
        request: Request,
    ) -> Result<Response> {
        let at = self
            .handlers
            .iter()
            .position(|h| h.id == id)
            .ok_or_else(|| Error::InvalidArgument(format!("no event handler {id:?}")))?;
        let outcome = guarded(self.handlers[at].handler.handle_call(request)).await;
        if let Some(reason) = self.leaving(at, &outcome) {
            self.drop_handler(ctx, at, reason).await;
        }
        outcome.map_err(Error::ActorFailed)
    }

    /// Removes handler `id`, running its `terminate`.
    async fn remove(
        &mut self,
        ctx: &Context<Self>,
        id: &str,
        reason: &ExitReason,
    ) -> Result<(Handoff, Installed<E>)> {
        let at = self
            .handlers
            .iter()
            .position(|h| h.id == id)
            .ok_or_else(|| Error::InvalidArgument(format!("no event handler {id:?}")))?;
        let mut removed = self.handlers.remove(at);
        let handoff = terminate_handler(ctx.id(), &mut removed, reason).await;
        Ok((handoff, removed))
    }

    /// The owner of supervised handlers died: they go too (their `terminate` sees the
    /// owner's exit reason).
    async fn owner_down(&mut self, ctx: &Context<Self>, monitor: MonitorRef, reason: &ExitReason) {
        let mut at = 0;
        while at < self.handlers.len() {
            if self.handlers[at]
                .owner
                .as_ref()
                .is_some_and(|(_, m)| *m == monitor)
            {
                let mut removed = self.handlers.remove(at);
                terminate_handler(ctx.id(), &mut removed, reason).await;
            } else {
                at += 1;
            }
        }
    }
}

impl<E: Send + Sync + 'static> Actor for EventManager<E> {
    type Msg = EventMsg<E>;
    type Reply = Result<EventReply>;

    async fn handle_call(
        &mut self,
        msg: Self::Msg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Self::Reply>, BoxError> {
        let reply = match msg {
            EventMsg::Notify(event) => {
                self.deliver(ctx, &event).await;
                Ok(EventReply::Done)
            }
            EventMsg::Add { id, handler, owner } => self
                .add(ctx, id, handler, owner, None)
                .await
                .map(|_| EventReply::Done),
            EventMsg::Remove(id) => match self.remove(ctx, &id, &ExitReason::Normal).await {
                Ok((_, removed)) => {
                    Self::release(ctx, removed.id, removed.owner, ExitReason::Normal);
                    Ok(EventReply::Done)
                }
                Err(e) => Err(e),
            },
            EventMsg::Swap { old, id, handler } => {
                match self.remove(ctx, &old, &ExitReason::Normal).await {
                    Ok((handoff, removed)) => {
                        // The replacement keeps the old handler's owner.
                        let owner = removed.owner.map(|(owner, monitor)| {
                            ctx.demonitor(monitor, &owner);
                            owner
                        });
                        self.add(ctx, id, handler, owner, handoff)
                            .await
                            .map(|_| EventReply::Done)
                    }
                    Err(e) => Err(e),
                }
            }
            EventMsg::Which => Ok(EventReply::Handlers(
                self.handlers.iter().map(|h| h.id.clone()).collect(),
            )),
            EventMsg::Call { id, request } => {
                self.call(ctx, &id, request).await.map(EventReply::Response)
            }
        };
        Ok(Some(reply))
    }

    async fn handle_info(&mut self, info: Info, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Info::Down {
            monitor, reason, ..
        } = info
        {
            self.owner_down(ctx, monitor, &reason).await;
        }
        Ok(())
    }

    async fn on_stop(&mut self, ctx: &mut Context<Self>, reason: &ExitReason) {
        let handlers = std::mem::take(&mut self.handlers);
        for mut installed in handlers.into_iter().rev() {
            terminate_handler(ctx.id(), &mut installed, reason).await;
            Self::release(ctx, installed.id, installed.owner, reason.clone());
        }
    }

    fn msg_name(msg: &Self::Msg) -> &'static str {
        match msg {
            EventMsg::Notify(_) => "notify",
            EventMsg::Add { .. } => "add_handler",
            EventMsg::Remove(_) => "delete_handler",
            EventMsg::Swap { .. } => "swap_handler",
            EventMsg::Which => "which_handlers",
            EventMsg::Call { .. } => "call",
        }
    }
}

impl<E: Send + Sync + 'static> ActorRef<EventManager<E>> {
    /// Delivers `event` to every handler; does not wait for them.
    pub async fn notify(&self, event: E) -> Result<()> {
        self.tell(EventMsg::Notify(event))
            .await
            .map_err(|e| e.to_error(self.id()))
    }

    /// Delivers `event` and waits until every handler has handled it.
    pub async fn sync_notify(&self, event: E) -> Result<()> {
        self.ask(EventMsg::Notify(event)).await?.map(drop)
    }

    /// Adds a handler (`gen_event:add_handler`).
    pub async fn add_handler(&self, id: &str, handler: impl EventHandler<E>) -> Result<()> {
        self.add(id, Box::new(handler), None).await
    }

    /// Adds a handler owned by `owner`, which gets [`Info::EventHandlerExit`] if the handler
    /// fails (`gen_event:add_sup_handler`).
    pub async fn add_sup_handler(
        &self,
        id: &str,
        handler: impl EventHandler<E>,
        owner: &Pid,
    ) -> Result<()> {
        self.add(id, Box::new(handler), Some(owner.clone())).await
    }

    async fn add(
        &self,
        id: &str,
        handler: Box<dyn EventHandler<E>>,
        owner: Option<Pid>,
    ) -> Result<()> {
        self.ask(EventMsg::Add {
            id: id.to_owned(),
            handler,
            owner,
        })
        .await?
        .map(drop)
    }

    /// Removes a handler (`gen_event:delete_handler`).
    pub async fn delete_handler(&self, id: &str) -> Result<()> {
        self.ask(EventMsg::Remove(id.to_owned())).await?.map(drop)
    }

    /// Replaces `old` with `handler` under `id`, handing over state (`gen_event:swap_handler`).
    pub async fn swap_handler(
        &self,
        old: &str,
        id: &str,
        handler: impl EventHandler<E>,
    ) -> Result<()> {
        self.ask(EventMsg::Swap {
            old: old.to_owned(),
            id: id.to_owned(),
            handler: Box::new(handler),
        })
        .await?
        .map(drop)
    }

    /// Handler ids in order (`gen_event:which_handlers`).
    pub async fn which_handlers(&self) -> Result<Vec<String>> {
        match self.ask(EventMsg::Which).await?? {
            EventReply::Handlers(ids) => Ok(ids),
            _ => Ok(Vec::new()),
        }
    }

    /// Sends `request` to handler `id` alone and returns its answer as an `R`
    /// (`gen_event:call/3`). A handler that fails the call is removed and the caller gets
    /// [`Error::ActorFailed`]; an answer of another type is [`Error::InvalidArgument`].
    pub async fn call_handler<Q: Send + 'static, R: 'static>(
        &self,
        id: &str,
        request: Q,
    ) -> Result<R> {
        let reply = self
            .ask(EventMsg::Call {
                id: id.to_owned(),
                request: Box::new(request),
            })
            .await??;
        match reply {
            EventReply::Response(response) => response.downcast::<R>().map(|r| *r).map_err(|_| {
                Error::InvalidArgument(format!(
                    "handler {id} answered with another type than {}",
                    std::any::type_name::<R>()
                ))
            }),
            other => Err(Error::InvalidArgument(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }
}
