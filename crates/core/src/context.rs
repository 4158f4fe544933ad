//! `Context`: what a running actor can do besides handling its message.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::AbortHandle;

use crate::actor::{Actor, ReplyHandle};
use crate::error::{ExitReason, Result};
use crate::facet::{self, ActorInfo, Facet};
use crate::gate::OutputGate;
use crate::id::ActorId;
use crate::node::Node;
use crate::pid::Signal;
use crate::pid::{ActorRef, MonitorRef, Pid, Watcher};
use crate::runtime::{self, SpawnOptions};

/// A running actor's view of the runtime: its own address, its node, children, links,
/// monitors, timers, the reply handle of the current call, and its facets.
pub struct Context<A: Actor> {
    myself: ActorRef<A>,
    node: Node,
    pub(crate) reply: Option<ReplyHandle<A::Reply>>,
    pub(crate) stop_request: Option<ExitReason>,
    pub(crate) trap_exit: bool,
    pub(crate) parent: Option<Pid>,
    pub(crate) facets: Vec<Arc<dyn Facet>>,
    extras: Option<Box<Extras>>,
}

/// Rarely used state, allocated on first use so an idle actor stays small.
#[derive(Default)]
struct Extras {
    timers: HashMap<u64, AbortHandle>,
    next_timer: u64,
    monitors: HashSet<MonitorRef>,
    /// Set by `continue_with`: an `A::Msg` for `handle_continue`. In a mutex only so the
    /// context stays `Sync` (a message type need not be).
    continuation: parking_lot::Mutex<Option<Box<dyn Any + Send>>>,
    /// Set by `idle_timeout`, taken by the next wait for a message.
    idle_timeout: Option<Duration>,
    /// Started on the first commit a facet defers.
    gate: Option<OutputGate>,
}

impl Drop for Extras {
    fn drop(&mut self) {
        for timer in self.timers.values() {
            timer.abort();
        }
    }
}

/// How [`Context::demonitor_with`] removes a monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemonitorOptions {
    /// Drop a `Down` for this monitor that is already on its way (Erlang's `flush`).
    /// Without it, such a `Down` is still delivered.
    pub flush: bool,
}

/// A timer started by [`Context::send_after`] or [`Context::send_interval`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerRef(u64);

impl<A: Actor> Context<A> {
    pub(crate) fn new(myself: ActorRef<A>, node: Node, parent: Option<Pid>) -> Self {
        Context {
            myself,
            node,
            reply: None,
            stop_request: None,
            trap_exit: false,
            parent,
            facets: Vec::new(),
            extras: None,
        }
    }

    fn extras(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    /// This actor's typed handle.
    pub fn myself(&self) -> &ActorRef<A> {
        &self.myself
    }

    /// This actor's id.
    pub fn id(&self) -> &ActorId {
        self.myself.id()
    }

    /// This actor's untyped address.
    pub fn pid(&self) -> Pid {
        self.myself.pid()
    }

    /// The node this actor runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Who spawned this actor linked (its supervisor, usually).
    pub fn parent(&self) -> Option<&Pid> {
        self.parent.as_ref()
    }

    /// Stops this actor with `reason` once the current message is handled.
    pub fn stop(&mut self, reason: ExitReason) {
        self.stop_request = Some(reason);
    }

    /// Turns exit signals from linked actors into [`crate::Info::Exit`] messages instead of
    /// dying with them (Erlang's `process_flag(trap_exit, true)`).
    pub fn trap_exit(&mut self, trap: bool) {
        self.trap_exit = trap;
    }

    /// Whether exits are trapped.
    pub fn is_trapping_exits(&self) -> bool {
        self.trap_exit
    }

    /// Takes the reply handle of the `ask` being handled, to answer it later. Then return
    /// `Ok(None)` from `handle_call`. `None` if this message is not an ask.
    pub fn reply_handle(&mut self) -> Option<ReplyHandle<A::Reply>> {
        self.reply.take()
    }

    /// Spawns an unlinked actor on this node.
    pub fn spawn<B: Actor>(&self, actor: B) -> Result<ActorRef<B>> {
        self.node.spawn(actor)
    }

    /// Spawns a child linked to this actor, with this actor as its parent.
    pub fn spawn_link<B: Actor>(&self, actor: B) -> Result<ActorRef<B>> {
        self.spawn_link_with(actor, SpawnOptions::default())
    }

    /// [`Context::spawn_link`] with options.
    pub fn spawn_link_with<B: Actor>(
        &self,
        actor: B,
        options: SpawnOptions,
    ) -> Result<ActorRef<B>> {
        runtime::spawn(&self.node, actor, options, Some(self.pid()), None)
    }

    /// Links this actor with `other`: when either exits abnormally, the other gets an exit
    /// signal. Linking to a dead actor delivers an exit signal with reason `noproc`.
    pub fn link(&mut self, other: &Pid) {
        link(&self.pid(), other);
    }

    /// Removes a link in both directions.
    pub fn unlink(&mut self, other: &Pid) {
        unlink(&self.pid(), other);
    }

    /// Monitors `other`: when it exits, this actor gets [`crate::Info::Down`] with the
    /// returned reference. Monitoring a dead actor delivers `Down` with `noproc` at once.
    pub fn monitor(&mut self, other: &Pid) -> MonitorRef {
        let monitor = MonitorRef::next();
        self.extras().monitors.insert(monitor);
        add_watcher(other, self.pid(), monitor);
        monitor
    }

    /// Stops monitoring; a `Down` already queued for this reference is dropped.
    pub fn demonitor(&mut self, monitor: MonitorRef, target: &Pid) {
        if let Some(extras) = self.extras.as_mut() {
            extras.monitors.remove(&monitor);
        }
        remove_watcher(target, &self.pid(), monitor);
    }

    /// Stops monitoring and says whether the monitor was still active, i.e. `target` had
    /// not gone down yet (Erlang's `demonitor/2` with `info`). With `flush: false` a `Down`
    /// already on its way is delivered. For a remote target the answer is `true`: only its
    /// node knows.
    pub fn demonitor_with(
        &mut self,
        monitor: MonitorRef,
        target: &Pid,
        options: DemonitorOptions,
    ) -> bool {
        let active = remove_watcher(target, &self.pid(), monitor);
        if options.flush || active {
            if let Some(extras) = self.extras.as_mut() {
                extras.monitors.remove(&monitor);
            }
        }
        active
    }

    /// Monitors the actor registered as `name` on this node (Erlang's
    /// `monitor(process, Name)`). If no actor has that name, `Down` with `noproc` comes at
    /// once, naming `name@node`. A name that cannot be part of an actor id is
    /// [`crate::Error::InvalidId`] (Erlang's `badarg`).
    pub fn monitor_name(&mut self, name: &str) -> Result<MonitorRef> {
        let id = ActorId::new(name, self.node.name())?;
        if let Some(pid) = self.node.whereis(name) {
            return Ok(self.monitor(&pid));
        }
        let monitor = MonitorRef::next();
        self.extras().monitors.insert(monitor);
        self.myself
            .pid()
            .signal(Signal::Info(crate::actor::Info::Down {
                monitor,
                id,
                reason: ExitReason::NoProc,
            }));
        Ok(monitor)
    }

    /// Runs [`Actor::handle_continue`] with `msg` once the current handler returns, before
    /// any other message (gen_server's `{continue, Term}`). Set from `on_start` too.
    pub fn continue_with(&mut self, msg: A::Msg) {
        *self.extras().continuation.get_mut() = Some(Box::new(msg));
    }

    pub(crate) fn take_continuation(&mut self) -> Option<A::Msg> {
        let boxed = self.extras.as_mut()?.continuation.get_mut().take()?;
        boxed.downcast::<A::Msg>().ok().map(|msg| *msg)
    }

    /// If nothing arrives within `after` once the current handler returns, the actor gets
    /// [`crate::Info::Timeout`] (gen_server's timeout in a callback's return). Any message
    /// or signal cancels it; set it again to wait again.
    pub fn idle_timeout(&mut self, after: Duration) {
        self.extras().idle_timeout = Some(after);
    }

    pub(crate) fn take_idle_timeout(&mut self) -> Option<Duration> {
        self.extras.as_mut()?.idle_timeout.take()
    }

    /// Whether rarely used state (a continuation, an idle timeout) may need a look.
    pub(crate) fn has_extras(&self) -> bool {
        self.extras.is_some()
    }

    /// Whether the output gate still holds replies (see [`crate::gate`]).
    pub(crate) fn gate_is_holding(&self) -> bool {
        self.extras
            .as_ref()
            .and_then(|e| e.gate.as_ref())
            .is_some_and(OutputGate::is_holding)
    }

    /// The output gate, started on first use.
    pub(crate) fn gate(&mut self) -> &OutputGate {
        let (myself, node) = (&self.myself, &self.node);
        self.extras
            .get_or_insert_with(Box::default)
            .gate
            .get_or_insert_with(|| OutputGate::start(myself.pid(), node.runtime()))
    }

    /// Whether a `Down` for `monitor` should still be delivered (and forget it if so).
    pub(crate) fn take_monitor(&mut self, monitor: MonitorRef) -> bool {
        self.extras
            .as_mut()
            .is_some_and(|extras| extras.monitors.remove(&monitor))
    }

    /// Sends an exit signal to `target` as if this actor had exited with `reason`
    /// (Erlang's `exit/2`). `Killed` kills it untrappably.
    pub fn exit(&self, target: &Pid, reason: ExitReason) {
        if reason == ExitReason::Killed {
            target.kill();
        } else {
            target.signal(Signal::Exit {
                from: self.pid(),
                reason,
            });
        }
    }

    /// Registers this actor under `name` on its node; the name is freed when it dies.
    pub fn register(&self, name: &str) -> Result<()> {
        self.node.register(name, &self.pid())
    }

    /// Delivers `msg` to this actor (as a `tell`) after `delay`, unless cancelled first.
    pub fn send_after(&mut self, delay: Duration, msg: A::Msg) -> TimerRef {
        let target = self.myself.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = target.tell(msg).await;
        });
        self.add_timer(task.abort_handle())
    }

    /// Delivers a clone of `msg` every `period` (first after one period) until cancelled.
    pub fn send_interval(&mut self, period: Duration, msg: A::Msg) -> TimerRef
    where
        A::Msg: Clone,
    {
        let target = self.myself.clone();
        let task = tokio::spawn(async move {
            let start = tokio::time::Instant::now() + period;
            let mut ticks = tokio::time::interval_at(start, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if target.tell(msg.clone()).await.is_err() {
                    break;
                }
            }
        });
        self.add_timer(task.abort_handle())
    }

    fn add_timer(&mut self, handle: AbortHandle) -> TimerRef {
        let extras = self.extras();
        if extras.timers.len() >= 32 {
            extras.timers.retain(|_, timer| !timer.is_finished());
        }
        extras.next_timer += 1;
        let id = extras.next_timer;
        extras.timers.insert(id, handle);
        TimerRef(id)
    }

    /// Cancels a timer. Returns `false` if it had already fired (one-shot) or was unknown.
    pub fn cancel_timer(&mut self, timer: TimerRef) -> bool {
        match self.extras.as_mut().and_then(|e| e.timers.remove(&timer.0)) {
            Some(handle) => {
                let pending = !handle.is_finished();
                handle.abort();
                pending
            }
            None => false,
        }
    }

    /// Attaches a facet now (runs its `on_attach` and `on_activate`).
    pub async fn attach_facet(&mut self, facet: Arc<dyn Facet>) -> Result<()> {
        let info = self.info();
        facet::attach(&mut self.facets, facet, &info).await
    }

    /// Detaches the facet named `name`; `false` if none had that name.
    pub async fn detach_facet(&mut self, name: &str) -> bool {
        let info = self.info();
        facet::detach(&mut self.facets, name, &info).await
    }

    /// The attached facet of type `F`, to use the services it offers.
    pub fn facet<F: Facet>(&self) -> Option<&F> {
        self.facets
            .iter()
            .find_map(|f| facet::as_any(f.as_ref()).downcast_ref::<F>())
    }

    /// A service of type `T`: first from an attached facet that offers one, then from the
    /// node's services.
    pub fn service<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.facets
            .iter()
            .filter_map(|f| f.service())
            .find_map(|s| s.downcast::<T>().ok())
            .or_else(|| self.node.service::<T>())
    }

    /// Facts about this actor that facets see.
    pub fn info(&self) -> ActorInfo {
        ActorInfo {
            id: self.id().clone(),
            actor_type: std::any::type_name::<A>(),
        }
    }
}

/// Links `a` (alive, the caller) and `b` both ways.
pub(crate) fn link(a: &Pid, b: &Pid) {
    if a.same(b) {
        return;
    }
    if let Some(cell) = a.cell() {
        let mut state = cell.core().state.lock();
        if !state.links.iter().any(|l| l.same(b)) {
            state.links.push(b.clone());
        }
    }
    match b.cell() {
        Some(cell) => {
            let alive = {
                let mut state = cell.core().state.lock();
                let alive = state.exit.is_none();
                if alive && !state.links.iter().any(|l| l.same(a)) {
                    state.links.push(a.clone());
                }
                alive
            };
            if !alive {
                if let Some(cell) = a.cell() {
                    cell.core().state.lock().links.retain(|l| !l.same(b));
                }
                a.signal(Signal::Exit {
                    from: b.clone(),
                    reason: ExitReason::NoProc,
                });
            }
        }
        None => {
            if let Some(router) = remote_router(b) {
                if let Err(e) = router.send_link(a.id(), b.id()) {
                    // Erlang: linking to a pid on an unreachable node is an exit with
                    // `noconnection`.
                    tracing::debug!(to = %b.id(), error = %e, "link not delivered");
                    if let Some(cell) = a.cell() {
                        cell.core().state.lock().links.retain(|l| !l.same(b));
                    }
                    a.signal(Signal::Exit {
                        from: b.clone(),
                        reason: ExitReason::NoConnection,
                    });
                }
            }
        }
    }
}

/// Removes the link between `a` and `b` in both directions.
pub(crate) fn unlink(a: &Pid, b: &Pid) {
    if let Some(cell) = a.cell() {
        cell.core().state.lock().links.retain(|l| !l.same(b));
    }
    match b.cell() {
        Some(cell) => cell.core().state.lock().links.retain(|l| !l.same(a)),
        None => {
            if let Some(router) = remote_router(b) {
                router.send_unlink(a.id(), b.id());
            }
        }
    }
}

/// Makes `watcher` learn of `target`'s death through `monitor`.
pub(crate) fn add_watcher(target: &Pid, watcher: Pid, monitor: MonitorRef) {
    match target.cell() {
        Some(cell) => {
            let dead = {
                let mut state = cell.core().state.lock();
                match &state.exit {
                    Some(_) => true,
                    None => {
                        state.watchers.push(Watcher::Actor {
                            pid: watcher.clone(),
                            monitor,
                        });
                        false
                    }
                }
            };
            if dead {
                watcher.signal(Signal::Info(crate::actor::Info::Down {
                    monitor,
                    id: target.id().clone(),
                    reason: ExitReason::NoProc,
                }));
            }
        }
        None => {
            if let Some(router) = remote_router(target) {
                router.send_monitor(&watcher, target.id(), monitor);
            }
        }
    }
}

/// Removes a monitor; `true` if it was still in place (the target had not gone down).
pub(crate) fn remove_watcher(target: &Pid, watcher: &Pid, monitor: MonitorRef) -> bool {
    match target.cell() {
        Some(cell) => {
            let mut state = cell.core().state.lock();
            let before = state.watchers.len();
            state.watchers.retain(|w| {
                !matches!(w, Watcher::Actor { pid, monitor: m } if *m == monitor && pid.same(watcher))
            });
            state.watchers.len() != before
        }
        None => {
            if let Some(router) = remote_router(target) {
                router.send_demonitor(watcher.id(), target.id(), monitor);
            }
            true
        }
    }
}

fn remote_router(pid: &Pid) -> Option<Arc<crate::transport::Router>> {
    pid.router()
}
