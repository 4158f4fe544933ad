//! Supervision with Erlang's `supervisor` semantics.
//!
//! - Strategies: `one_for_one`, `one_for_all`, `rest_for_one`, `simple_one_for_one`.
//! - Restart types: `permanent` (always restarted), `transient` (restarted only after an
//!   exit other than `normal`/`shutdown`), `temporary` (never restarted; forgotten on exit).
//! - Restart intensity: more than `max_restarts` restarts within `period` makes the
//!   supervisor terminate its children and exit with `shutdown`, which its own supervisor
//!   sees as a child exit (escalation).
//! - Children start in order and stop in reverse order. Stopping a child sends it an exit
//!   signal `shutdown` from its parent and waits for its shutdown policy: `brutal_kill`,
//!   a timeout after which it is killed, or `infinity` (the default for supervisors).
//! - A child that fails to start during the supervisor's own start makes the start fail,
//!   after the children already started are stopped in reverse order. A start function may
//!   instead choose not to run the child (`ignore`, [`ChildSpec::from_fn_or_ignore`]).
//! - A restart that fails is tried again through a message the supervisor sends itself
//!   (OTP's try-again restart), never in a loop inside one message: calls are answered in
//!   between (the child shows as `restarting`) and the parent's shutdown is obeyed.
//! - Flags and child specs are validated before anything starts
//!   ([`SupervisorSpec::validate`]). `simple_one_for_one` children stop in parallel.
//! - `auto_shutdown` ends the supervisor when significant children end by themselves.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::actor::{Actor, Info};
use crate::context::Context;
use crate::error::{BoxError, Error, ExitReason, Result, SendError};
use crate::node::Node;
use crate::pid::{ActorRef, BoxFuture, Pid, Signal};
use crate::runtime::SpawnOptions;

/// How a supervisor reacts when a child exits and must be restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Restart only that child.
    OneForOne,
    /// Stop all other children (reverse order), then restart all (in order).
    OneForAll,
    /// Stop the children started after it (reverse order), then restart it and them.
    RestForOne,
    /// One child template; children are added at runtime with arguments and restarted
    /// individually.
    SimpleOneForOne,
}

/// When a child is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (not `normal` or `shutdown`).
    Transient,
    /// Never; the child is forgotten when it exits.
    Temporary,
}

impl Restart {
    /// Whether a child with this restart type is restarted after exiting with `reason`.
    pub fn restarts_after(self, reason: &ExitReason) -> bool {
        match self {
            Restart::Permanent => true,
            Restart::Transient => !reason.is_clean(),
            Restart::Temporary => false,
        }
    }
}

/// How a child is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Killed at once (`on_stop` does not run).
    BrutalKill,
    /// Asked to stop, and killed if still running after this long.
    Timeout(Duration),
    /// Asked to stop, and waited for (the default for supervisors).
    Infinity,
}

/// Worker or supervisor (for reporting; both are actors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildKind {
    /// A worker.
    Worker,
    /// A supervisor.
    Supervisor,
}

/// Arguments for a `simple_one_for_one` child.
pub type ChildArgs = Arc<dyn Any + Send + Sync>;

/// What a child's start function gets.
pub struct ChildStart {
    /// The node to start on.
    pub node: Node,
    /// The supervisor, to link to as parent.
    pub supervisor: Pid,
    /// The actor name to use, if the spec names one.
    pub name: Option<String>,
    /// Arguments of a `simple_one_for_one` child.
    pub args: Option<ChildArgs>,
}

/// Starts a child: its pid, or `None` if it chose not to run (OTP's `ignore`).
type StartFn = Arc<dyn Fn(ChildStart) -> BoxFuture<'static, Result<Option<Pid>>> + Send + Sync>;

/// When a supervisor shuts itself down because significant children ended (OTP's
/// `auto_shutdown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoShutdown {
    /// Never (the default); significant children are refused.
    #[default]
    Never,
    /// When any significant child ends by itself without being restarted.
    AnySignificant,
    /// When every significant child has ended by itself without being restarted.
    AllSignificant,
}

/// How to start, restart and stop one child.
#[derive(Clone)]
pub struct ChildSpec {
    id: String,
    start: StartFn,
    restart: Restart,
    shutdown: Shutdown,
    kind: ChildKind,
    name: Option<String>,
    significant: bool,
}

impl std::fmt::Debug for ChildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSpec")
            .field("id", &self.id)
            .field("restart", &self.restart)
            .field("shutdown", &self.shutdown)
            .field("kind", &self.kind)
            .field("significant", &self.significant)
            .finish()
    }
}

fn start_actor<A: Actor>(start: ChildStart, actor: A) -> BoxFuture<'static, Result<Option<Pid>>> {
    Box::pin(async move {
        let options = SpawnOptions {
            name: start.name,
            ..SpawnOptions::default()
        };
        let actor_ref = start
            .node
            .start_linked(actor, options, Some(start.supervisor))
            .await?;
        Ok(Some(actor_ref.pid()))
    })
}

impl ChildSpec {
    /// A permanent worker made by `factory` each time it (re)starts; stopped with a 5 s
    /// timeout.
    pub fn worker<A, F>(id: impl Into<String>, factory: F) -> ChildSpec
    where
        A: Actor,
        F: Fn() -> A + Send + Sync + 'static,
    {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |start| start_actor(start, factory())),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            kind: ChildKind::Worker,
            name: None,
            significant: false,
        }
    }

    /// A `simple_one_for_one` template: each child is `factory(args)` with the arguments
    /// given to `start_dynamic_child` (kept for its restarts).
    pub fn worker_with_args<A, Args, F>(id: impl Into<String>, factory: F) -> ChildSpec
    where
        A: Actor,
        Args: Clone + Send + Sync + 'static,
        F: Fn(Args) -> A + Send + Sync + 'static,
    {
        let id = id.into();
        let template = id.clone();
        ChildSpec {
            id,
            start: Arc::new(move |start| {
                let args = start
                    .args
                    .as_ref()
                    .and_then(|a| a.downcast_ref::<Args>())
                    .cloned();
                match args {
                    Some(args) => start_actor(start, factory(args)),
                    None => {
                        let error = Error::InvalidArgument(format!(
                            "child template {template} expects arguments of type {}",
                            std::any::type_name::<Args>()
                        ));
                        Box::pin(async move { Err(error) })
                    }
                }
            }),
            restart: Restart::Permanent,
            shutdown: Shutdown::Timeout(Duration::from_secs(5)),
            kind: ChildKind::Worker,
            name: None,
            significant: false,
        }
    }

    /// A child supervisor; stopped with `infinity`.
    pub fn supervisor(id: impl Into<String>, spec: SupervisorSpec) -> ChildSpec {
        ChildSpec {
            id: id.into(),
            start: Arc::new(move |start| start_actor(start, Supervisor::new(spec.clone()))),
            restart: Restart::Permanent,
            shutdown: Shutdown::Infinity,
            kind: ChildKind::Supervisor,
            name: None,
            significant: false,
        }
    }

    /// A child started by a custom function, which must start the actor linked to
    /// `ChildStart::supervisor` (for example with [`Node::start_linked`]).
    pub fn from_fn<F>(id: impl Into<String>, kind: ChildKind, start: F) -> ChildSpec
    where
        F: Fn(ChildStart) -> BoxFuture<'static, Result<Pid>> + Send + Sync + 'static,
    {
        Self::from_fn_or_ignore(id, kind, move |child| {
            let started = start(child);
            Box::pin(async move { started.await.map(Some) })
        })
    }

    /// Like [`ChildSpec::from_fn`], but the function may answer `Ok(None)`: the child
    /// chose not to run (OTP's `ignore` from `init`). The supervisor keeps the spec with no
    /// pid (a `simple_one_for_one` child is dropped) and does not restart it.
    pub fn from_fn_or_ignore<F>(id: impl Into<String>, kind: ChildKind, start: F) -> ChildSpec
    where
        F: Fn(ChildStart) -> BoxFuture<'static, Result<Option<Pid>>> + Send + Sync + 'static,
    {
        ChildSpec {
            id: id.into(),
            start: Arc::new(start),
            restart: Restart::Permanent,
            shutdown: match kind {
                ChildKind::Worker => Shutdown::Timeout(Duration::from_secs(5)),
                ChildKind::Supervisor => Shutdown::Infinity,
            },
            kind,
            name: None,
            significant: false,
        }
    }

    /// Sets the restart type.
    pub fn restart(mut self, restart: Restart) -> Self {
        self.restart = restart;
        self
    }

    /// Sets the shutdown policy.
    pub fn shutdown(mut self, shutdown: Shutdown) -> Self {
        self.shutdown = shutdown;
        self
    }

    /// Marks the child significant (OTP's `significant`): its ending by itself may shut
    /// the supervisor down, per [`SupervisorSpec::auto_shutdown`]. Only for transient and
    /// temporary children.
    pub fn significant(mut self, significant: bool) -> Self {
        self.significant = significant;
        self
    }

    /// Spawns the child as `name@node` (otherwise a generated name).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The child's id within its supervisor.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its restart type.
    pub fn restart_type(&self) -> Restart {
        self.restart
    }

    /// Its shutdown policy.
    pub fn shutdown_policy(&self) -> Shutdown {
        self.shutdown
    }

    /// Worker or supervisor.
    pub fn kind(&self) -> ChildKind {
        self.kind
    }
}

/// A supervisor's strategy, restart intensity and children.
#[derive(Debug, Clone)]
pub struct SupervisorSpec {
    strategy: Strategy,
    max_restarts: u32,
    period: Duration,
    auto_shutdown: AutoShutdown,
    children: Vec<ChildSpec>,
}

impl SupervisorSpec {
    /// A spec with Erlang's default intensity: 1 restart in 5 seconds.
    pub fn new(strategy: Strategy) -> Self {
        SupervisorSpec {
            strategy,
            max_restarts: 1,
            period: Duration::from_secs(5),
            auto_shutdown: AutoShutdown::Never,
            children: Vec::new(),
        }
    }

    /// Shuts the supervisor down when significant children end (OTP's `auto_shutdown`).
    pub fn auto_shutdown(mut self, auto_shutdown: AutoShutdown) -> Self {
        self.auto_shutdown = auto_shutdown;
        self
    }

    /// More than `max_restarts` restarts within `period` makes the supervisor give up.
    pub fn intensity(mut self, max_restarts: u32, period: Duration) -> Self {
        self.max_restarts = max_restarts;
        self.period = period;
        self
    }

    /// Checks the flags and child specs as Erlang's `supervisor:check_childspecs` and
    /// `init` do: a positive period, unique child ids, and exactly one template for
    /// `simple_one_for_one`. A supervisor with an invalid spec fails to start.
    pub fn validate(&self) -> Result<()> {
        if self.period.is_zero() {
            return Err(Error::InvalidArgument(
                "the restart period must be longer than zero".into(),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for child in &self.children {
            check_significant(child, self.auto_shutdown)?;
            if !ids.insert(child.id.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "duplicate child id {:?}",
                    child.id
                )));
            }
        }
        if self.strategy == Strategy::SimpleOneForOne && self.children.len() != 1 {
            return Err(Error::InvalidArgument(format!(
                "simple_one_for_one takes exactly one child spec, not {}",
                self.children.len()
            )));
        }
        Ok(())
    }

    /// Adds a child (started in the order added). For `simple_one_for_one`, the one child
    /// template.
    pub fn child(mut self, child: ChildSpec) -> Self {
        self.children.push(child);
        self
    }
}

/// A significant child must be transient or temporary, under a supervisor with an
/// `auto_shutdown` other than `never` (as OTP checks).
fn check_significant(child: &ChildSpec, auto_shutdown: AutoShutdown) -> Result<()> {
    if !child.significant {
        return Ok(());
    }
    if child.restart == Restart::Permanent {
        return Err(Error::InvalidArgument(format!(
            "child {:?} is significant but permanent",
            child.id
        )));
    }
    if auto_shutdown == AutoShutdown::Never {
        return Err(Error::InvalidArgument(format!(
            "child {:?} is significant but auto_shutdown is never",
            child.id
        )));
    }
    Ok(())
}

/// Counts restarts in a sliding window: more than `max` within `period` is too many.
#[derive(Debug, Clone)]
pub struct RestartIntensity {
    max: u32,
    period: Duration,
    history: VecDeque<Instant>,
}

impl RestartIntensity {
    /// A window allowing `max` restarts per `period`.
    pub fn new(max: u32, period: Duration) -> Self {
        RestartIntensity {
            max,
            period,
            history: VecDeque::new(),
        }
    }

    /// Records a restart at `now`. `false` means the limit is exceeded: the restarts still
    /// within the window (including this one) number more than `max`.
    pub fn record(&mut self, now: Instant) -> bool {
        while let Some(oldest) = self.history.front() {
            if now.saturating_duration_since(*oldest) >= self.period {
                self.history.pop_front();
            } else {
                break;
            }
        }
        self.history.push_back(now);
        self.history.len() as u64 <= u64::from(self.max)
    }
}

/// One child as a supervisor tracks it.
struct Child {
    spec: ChildSpec,
    pid: Option<Pid>,
    args: Option<ChildArgs>,
    /// A restart failed and a retry is queued.
    restarting: bool,
}

/// A child as reported by `which_children`.
#[derive(Debug, Clone)]
pub struct ChildInfo {
    /// The child's id.
    pub id: String,
    /// Its address, if running.
    pub pid: Option<Pid>,
    /// Worker or supervisor.
    pub kind: ChildKind,
    /// Its restart type.
    pub restart: Restart,
    /// Its restart failed and is being tried again (Erlang's `restarting` pid).
    pub restarting: bool,
}

/// Requests a supervisor serves.
pub enum SupervisorMsg {
    /// Adds and starts a child (not for `simple_one_for_one`).
    StartChild(ChildSpec),
    /// Starts a `simple_one_for_one` child with these arguments.
    StartDynamic(ChildArgs),
    /// Stops a child by id, keeping its spec.
    TerminateChild(String),
    /// Starts a stopped child again.
    RestartChild(String),
    /// Forgets a stopped child.
    DeleteChild(String),
    /// Lists the children.
    WhichChildren,
    /// Stops the child running as this pid (for `simple_one_for_one`, whose children have
    /// no ids of their own to the caller).
    TerminatePid(Pid),
    /// Counts the children.
    CountChildren,
    /// The spec of a child.
    GetChildSpec(String),
    /// Tries again to restart a child whose restart failed (sent by the supervisor to
    /// itself, so that calls and signals are served between attempts).
    #[doc(hidden)]
    TryAgain(String),
}

/// What a supervisor answers.
#[derive(Debug)]
pub enum SupervisorReply {
    /// The started child's address.
    Started(Pid),
    /// Done.
    Done,
    /// The children, in start order.
    Children(Vec<ChildInfo>),
    /// Child counts.
    Count(ChildCount),
    /// A child's spec.
    Spec(ChildSpec),
}

/// What `count_children` reports (Erlang's `supervisor:count_children/1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChildCount {
    /// Child specs (for `simple_one_for_one`, one per child).
    pub specs: usize,
    /// Children running now.
    pub active: usize,
    /// Children that are supervisors, running or not.
    pub supervisors: usize,
    /// Children that are workers, running or not.
    pub workers: usize,
}

/// The supervisor actor. Spawn it like any actor, or as a child through
/// [`ChildSpec::supervisor`].
pub struct Supervisor {
    /// Why the spec is invalid, if it is: the supervisor then fails to start.
    invalid: Option<Error>,
    strategy: Strategy,
    intensity: RestartIntensity,
    auto_shutdown: AutoShutdown,
    initial: Vec<ChildSpec>,
    template: Option<ChildSpec>,
    children: Vec<Child>,
    dynamic_seq: u64,
}

impl Supervisor {
    /// A supervisor that will start the children of `spec` when it starts.
    pub fn new(spec: SupervisorSpec) -> Self {
        let invalid = spec.validate().err();
        let (template, initial) = if spec.strategy == Strategy::SimpleOneForOne {
            (spec.children.first().cloned(), Vec::new())
        } else {
            (None, spec.children)
        };
        Supervisor {
            invalid,
            strategy: spec.strategy,
            intensity: RestartIntensity::new(spec.max_restarts, spec.period),
            auto_shutdown: spec.auto_shutdown,
            initial,
            template,
            children: Vec::new(),
            dynamic_seq: 0,
        }
    }

    /// Starts child `at`; `None` if it chose not to run.
    async fn start_child_at(&mut self, ctx: &Context<Self>, at: usize) -> Result<Option<Pid>> {
        let child = &self.children[at];
        let start = ChildStart {
            node: ctx.node().clone(),
            supervisor: ctx.pid(),
            name: child.spec.name.clone(),
            args: child.args.clone(),
        };
        let pid = (child.spec.start)(start).await?;
        self.children[at].pid = pid.clone();
        self.children[at].restarting = false;
        Ok(pid)
    }

    /// Stops one child per its shutdown policy and waits until it is gone.
    async fn terminate_at(&mut self, ctx: &Context<Self>, at: usize) {
        self.children[at].restarting = false;
        let Some(pid) = self.children[at].pid.take() else {
            return;
        };
        shutdown_child(&ctx.pid(), pid, self.children[at].spec.shutdown).await;
    }

    /// Stops the children from `from` to the end: last first, or all at once for
    /// `simple_one_for_one` (whose children have no order), as OTP does.
    async fn terminate_from(&mut self, ctx: &Context<Self>, from: usize) {
        if self.strategy == Strategy::SimpleOneForOne {
            let me = ctx.pid();
            let stopping = self.children[from..].iter_mut().filter_map(|child| {
                child.restarting = false;
                let pid = child.pid.take()?;
                Some(shutdown_child(&me, pid, child.spec.shutdown))
            });
            futures::future::join_all(stopping).await;
        } else {
            for at in (from..self.children.len()).rev() {
                self.terminate_at(ctx, at).await;
            }
        }
        // Temporary children stopped by the supervisor are forgotten.
        let mut at = from;
        while at < self.children.len() {
            if self.children[at].spec.restart == Restart::Temporary {
                self.children.remove(at);
            } else {
                at += 1;
            }
        }
    }

    /// Starts the stopped children from `from` on, in order. On failure, the index of the
    /// child that failed.
    async fn start_from(&mut self, ctx: &Context<Self>, from: usize) -> Result<(), usize> {
        for at in from..self.children.len() {
            if self.children[at].pid.is_none() {
                if let Err(e) = self.start_child_at(ctx, at).await {
                    tracing::warn!(child = %self.children[at].spec.id, error = %e, "child failed to restart");
                    return Err(at);
                }
            }
        }
        Ok(())
    }

    /// Restarts after child `at` exited, per strategy; gives up past the intensity. A
    /// failed restart is tried again through a message to itself (OTP's try-again restart),
    /// so calls and signals, a shutdown from its parent included, are served in between.
    async fn restart(&mut self, ctx: &mut Context<Self>, at: usize) {
        if !self.intensity.record(Instant::now()) {
            tracing::error!(supervisor = %ctx.id(), "restart intensity reached; shutting down");
            self.terminate_from(ctx, 0).await;
            ctx.stop(ExitReason::Shutdown);
            return;
        }
        let result = match self.strategy {
            Strategy::OneForOne | Strategy::SimpleOneForOne => {
                match self.start_child_at(ctx, at).await {
                    Ok(Some(_)) => Ok(()),
                    Ok(None) => {
                        // It chose not to run: a dynamic child is forgotten.
                        if self.strategy == Strategy::SimpleOneForOne {
                            self.children.remove(at);
                        }
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!(child = %self.children[at].spec.id, error = %e, "child failed to restart");
                        Err(at)
                    }
                }
            }
            Strategy::OneForAll => {
                self.terminate_from(ctx, 0).await;
                self.start_from(ctx, 0).await
            }
            Strategy::RestForOne => {
                self.terminate_from(ctx, at + 1).await;
                self.start_from(ctx, at).await
            }
        };
        if let Err(failed) = result {
            self.children[failed].restarting = true;
            let again = SupervisorMsg::TryAgain(self.children[failed].spec.id.clone());
            if let Err(SendError::Full(again)) = ctx.myself().try_tell(again) {
                // A full mailbox: queue the retry from a timer task instead of waiting here.
                ctx.send_after(Duration::ZERO, again);
            }
        }
    }

    /// A queued retry: restarts the child unless it was stopped or removed meanwhile.
    async fn try_again(&mut self, ctx: &mut Context<Self>, id: &str) {
        let Some(at) = self
            .children
            .iter()
            .position(|c| c.spec.id == id && c.restarting && c.pid.is_none())
        else {
            return;
        };
        self.restart(ctx, at).await;
    }

    fn position(&self, pid: &Pid) -> Option<usize> {
        self.children
            .iter()
            .position(|c| c.pid.as_ref().is_some_and(|p| p.same(pid)))
    }

    fn position_of_id(&self, id: &str) -> Result<usize> {
        self.children
            .iter()
            .position(|c| c.spec.id == id)
            .ok_or_else(|| Error::InvalidArgument(format!("no child {id:?}")))
    }

    async fn on_child_exit(&mut self, ctx: &mut Context<Self>, at: usize, reason: ExitReason) {
        self.children[at].pid = None;
        let restart = self.children[at].spec.restart;
        let dynamic = self.strategy == Strategy::SimpleOneForOne;
        if restart.restarts_after(&reason) {
            tracing::info!(child = %self.children[at].spec.id, %reason, "restarting child");
            self.restart(ctx, at).await;
            return;
        }
        let significant = self.children[at].spec.significant;
        if restart == Restart::Temporary || dynamic {
            self.children.remove(at);
        }
        if significant && self.auto_shutdown_due() {
            tracing::info!(supervisor = %ctx.id(), "significant children ended; shutting down");
            self.terminate_from(ctx, 0).await;
            ctx.stop(ExitReason::Shutdown);
        }
    }

    /// Whether a significant child having just ended shuts the supervisor down.
    fn auto_shutdown_due(&self) -> bool {
        match self.auto_shutdown {
            AutoShutdown::Never => false,
            AutoShutdown::AnySignificant => true,
            AutoShutdown::AllSignificant => !self
                .children
                .iter()
                .any(|c| c.spec.significant && c.pid.is_some()),
        }
    }

    /// Adds `child` and starts it; forgets it again if the start fails (or, for a
    /// `simple_one_for_one` child, if it chose not to run).
    async fn add_and_start(
        &mut self,
        ctx: &Context<Self>,
        child: Child,
    ) -> Result<SupervisorReply> {
        let id = child.spec.id.clone();
        self.children.push(child);
        let at = self.children.len() - 1;
        match self.start_child_at(ctx, at).await {
            Ok(Some(pid)) => Ok(SupervisorReply::Started(pid)),
            Ok(None) => {
                if self.strategy == Strategy::SimpleOneForOne {
                    self.children.remove(at);
                }
                Err(Error::Ignored(id))
            }
            Err(e) => {
                self.children.remove(at);
                Err(e)
            }
        }
    }

    /// Stops child `at` on request; a temporary or `simple_one_for_one` child is forgotten.
    async fn terminate_child_at(&mut self, ctx: &Context<Self>, at: usize) {
        self.terminate_at(ctx, at).await;
        if self.children[at].spec.restart == Restart::Temporary
            || self.strategy == Strategy::SimpleOneForOne
        {
            self.children.remove(at);
        }
    }

    async fn serve(
        &mut self,
        ctx: &mut Context<Self>,
        msg: SupervisorMsg,
    ) -> Result<SupervisorReply> {
        match msg {
            SupervisorMsg::StartChild(spec) => {
                if self.strategy == Strategy::SimpleOneForOne {
                    return Err(Error::InvalidArgument(
                        "simple_one_for_one takes start_dynamic_child".into(),
                    ));
                }
                if let Some(existing) = self.children.iter().find(|c| c.spec.id == spec.id) {
                    return Err(match &existing.pid {
                        Some(pid) => Error::AlreadyStarted {
                            name: spec.id.clone(),
                            pid: pid.clone(),
                        },
                        None => Error::AlreadyPresent(spec.id.clone()),
                    });
                }
                check_significant(&spec, self.auto_shutdown)?;
                let child = Child {
                    spec,
                    pid: None,
                    args: None,
                    restarting: false,
                };
                self.add_and_start(ctx, child).await
            }
            SupervisorMsg::StartDynamic(args) => {
                let template = self.template.clone().ok_or_else(|| {
                    Error::InvalidArgument("not a simple_one_for_one supervisor".into())
                })?;
                self.dynamic_seq += 1;
                let mut spec = template;
                spec.id = format!("{}-{}", spec.id, self.dynamic_seq);
                spec.name = None;
                let child = Child {
                    spec,
                    pid: None,
                    args: Some(args),
                    restarting: false,
                };
                self.add_and_start(ctx, child).await
            }
            SupervisorMsg::TerminateChild(id) => {
                let at = self.position_of_id(&id)?;
                self.terminate_child_at(ctx, at).await;
                Ok(SupervisorReply::Done)
            }
            SupervisorMsg::RestartChild(id) => {
                let at = self.position_of_id(&id)?;
                if self.children[at].pid.is_some() {
                    return Err(Error::InvalidArgument(format!("child {id:?} is running")));
                }
                match self.start_child_at(ctx, at).await? {
                    Some(pid) => Ok(SupervisorReply::Started(pid)),
                    None => Err(Error::Ignored(id)),
                }
            }
            SupervisorMsg::DeleteChild(id) => {
                let at = self.position_of_id(&id)?;
                if self.children[at].pid.is_some() {
                    return Err(Error::InvalidArgument(format!("child {id:?} is running")));
                }
                self.children.remove(at);
                Ok(SupervisorReply::Done)
            }
            SupervisorMsg::WhichChildren => Ok(SupervisorReply::Children(
                self.children
                    .iter()
                    .map(|c| ChildInfo {
                        id: c.spec.id.clone(),
                        pid: c.pid.clone(),
                        kind: c.spec.kind,
                        restart: c.spec.restart,
                        restarting: c.restarting,
                    })
                    .collect(),
            )),
            SupervisorMsg::TerminatePid(pid) => {
                let at = self.position(&pid).ok_or_else(|| {
                    Error::InvalidArgument(format!("{pid} is not a child of this supervisor"))
                })?;
                self.terminate_child_at(ctx, at).await;
                Ok(SupervisorReply::Done)
            }
            SupervisorMsg::CountChildren => {
                let mut count = ChildCount {
                    specs: self.children.len(),
                    ..ChildCount::default()
                };
                for child in &self.children {
                    if child.pid.is_some() {
                        count.active += 1;
                    }
                    match child.spec.kind {
                        ChildKind::Worker => count.workers += 1,
                        ChildKind::Supervisor => count.supervisors += 1,
                    }
                }
                Ok(SupervisorReply::Count(count))
            }
            SupervisorMsg::GetChildSpec(id) => {
                let at = self.position_of_id(&id)?;
                Ok(SupervisorReply::Spec(self.children[at].spec.clone()))
            }
            SupervisorMsg::TryAgain(id) => {
                self.try_again(ctx, &id).await;
                Ok(SupervisorReply::Done)
            }
        }
    }
}

/// Stops one child per its shutdown policy and waits until it is gone.
async fn shutdown_child(supervisor: &Pid, pid: Pid, shutdown: Shutdown) {
    // Unlink first, so its exit does not come back to us as a crash to handle.
    crate::context::unlink(supervisor, &pid);
    let exit = Signal::Exit {
        from: supervisor.clone(),
        reason: ExitReason::Shutdown,
    };
    match shutdown {
        Shutdown::BrutalKill => {
            pid.kill();
            let _ = pid.wait().await;
        }
        Shutdown::Infinity => {
            pid.signal(exit);
            let _ = pid.wait().await;
        }
        Shutdown::Timeout(limit) => {
            pid.signal(exit);
            if tokio::time::timeout(limit, pid.wait()).await.is_err() {
                tracing::warn!(child = %pid, "child did not stop in time; killing it");
                pid.kill();
                let _ = pid.wait().await;
            }
        }
    }
}

impl Actor for Supervisor {
    type Msg = SupervisorMsg;
    type Reply = Result<SupervisorReply>;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Some(invalid) = self.invalid.take() {
            return Err(invalid.into());
        }
        ctx.trap_exit(true);
        for spec in std::mem::take(&mut self.initial) {
            self.children.push(Child {
                spec,
                pid: None,
                args: None,
                restarting: false,
            });
            let at = self.children.len() - 1;
            if let Err(e) = self.start_child_at(ctx, at).await {
                let id = self.children[at].spec.id.clone();
                self.terminate_from(ctx, 0).await;
                return Err(format!("child {id} failed to start: {e}").into());
            }
        }
        Ok(())
    }

    async fn on_stop(&mut self, ctx: &mut Context<Self>, _reason: &ExitReason) {
        self.terminate_from(ctx, 0).await;
    }

    async fn handle_call(
        &mut self,
        msg: SupervisorMsg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Self::Reply>, BoxError> {
        Ok(Some(self.serve(ctx, msg).await))
    }

    async fn handle_info(&mut self, info: Info, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Info::Exit { from, reason } = info {
            if let Some(at) = self.position(&from) {
                self.on_child_exit(ctx, at, reason).await;
            }
        }
        Ok(())
    }

    fn msg_name(msg: &SupervisorMsg) -> &'static str {
        match msg {
            SupervisorMsg::StartChild(_) => "start_child",
            SupervisorMsg::StartDynamic(_) => "start_dynamic_child",
            SupervisorMsg::TerminateChild(_) => "terminate_child",
            SupervisorMsg::RestartChild(_) => "restart_child",
            SupervisorMsg::DeleteChild(_) => "delete_child",
            SupervisorMsg::WhichChildren => "which_children",
            SupervisorMsg::TerminatePid(_) => "terminate_child",
            SupervisorMsg::CountChildren => "count_children",
            SupervisorMsg::GetChildSpec(_) => "get_childspec",
            SupervisorMsg::TryAgain(_) => "try_again",
        }
    }
}

/// How long supervisor requests wait (children may take their shutdown time).
const SUPERVISOR_CALL_TIMEOUT: Duration = Duration::from_secs(60);

async fn call(sup: &ActorRef<Supervisor>, msg: SupervisorMsg) -> Result<SupervisorReply> {
    sup.ask_timeout(msg, SUPERVISOR_CALL_TIMEOUT).await?
}

fn started(reply: SupervisorReply) -> Result<Pid> {
    match reply {
        SupervisorReply::Started(pid) => Ok(pid),
        other => Err(Error::InvalidArgument(format!(
            "unexpected reply {other:?}"
        ))),
    }
}

pub(crate) async fn start_child(sup: &ActorRef<Supervisor>, spec: ChildSpec) -> Result<Pid> {
    started(call(sup, SupervisorMsg::StartChild(spec)).await?)
}

pub(crate) async fn terminate_child(sup: &ActorRef<Supervisor>, id: &str) -> Result<()> {
    call(sup, SupervisorMsg::TerminateChild(id.to_owned()))
        .await
        .map(drop)
}

pub(crate) async fn delete_child(sup: &ActorRef<Supervisor>, id: &str) -> Result<()> {
    call(sup, SupervisorMsg::DeleteChild(id.to_owned()))
        .await
        .map(drop)
}

impl ActorRef<Supervisor> {
    /// Adds and starts a child (`supervisor:start_child/2`).
    pub async fn start_child(&self, spec: ChildSpec) -> Result<Pid> {
        start_child(self, spec).await
    }

    /// Starts a `simple_one_for_one` child with `args` (must match the template's type).
    pub async fn start_dynamic_child<Args: Clone + Send + Sync + 'static>(
        &self,
        args: Args,
    ) -> Result<Pid> {
        started(call(self, SupervisorMsg::StartDynamic(Arc::new(args))).await?)
    }

    /// Stops a child, keeping its spec (`supervisor:terminate_child/2`).
    pub async fn terminate_child(&self, id: &str) -> Result<()> {
        terminate_child(self, id).await
    }

    /// Starts a stopped child again (`supervisor:restart_child/2`).
    pub async fn restart_child(&self, id: &str) -> Result<Pid> {
        started(call(self, SupervisorMsg::RestartChild(id.to_owned())).await?)
    }

    /// Forgets a stopped child (`supervisor:delete_child/2`).
    pub async fn delete_child(&self, id: &str) -> Result<()> {
        delete_child(self, id).await
    }

    /// Stops the child running as `pid` (`supervisor:terminate_child/2` with a pid; for
    /// `simple_one_for_one` the child is forgotten).
    pub async fn terminate_child_pid(&self, pid: &Pid) -> Result<()> {
        call(self, SupervisorMsg::TerminatePid(pid.clone()))
            .await
            .map(drop)
    }

    /// Counts specs, running children, supervisors and workers
    /// (`supervisor:count_children/1`).
    pub async fn count_children(&self) -> Result<ChildCount> {
        match call(self, SupervisorMsg::CountChildren).await? {
            SupervisorReply::Count(count) => Ok(count),
            other => Err(Error::InvalidArgument(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The spec of child `id` (`supervisor:get_childspec/2`).
    pub async fn get_childspec(&self, id: &str) -> Result<ChildSpec> {
        match call(self, SupervisorMsg::GetChildSpec(id.to_owned())).await? {
            SupervisorReply::Spec(spec) => Ok(spec),
            other => Err(Error::InvalidArgument(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }

    /// The children in start order (`supervisor:which_children/1`).
    pub async fn which_children(&self) -> Result<Vec<ChildInfo>> {
        match call(self, SupervisorMsg::WhichChildren).await? {
            SupervisorReply::Children(children) => Ok(children),
            other => Err(Error::InvalidArgument(format!(
                "unexpected reply {other:?}"
            ))),
        }
    }
}

/// A named supervision tree started and stopped as a unit on a node.
#[derive(Debug, Clone)]
pub struct Application {
    name: String,
    spec: SupervisorSpec,
}

impl Application {
    /// An application whose top supervisor follows `spec`.
    pub fn new(name: impl Into<String>, spec: SupervisorSpec) -> Self {
        Application {
            name: name.into(),
            spec,
        }
    }

    /// The application's name (also its child id under the root supervisor).
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn into_child_spec(self) -> ChildSpec {
        ChildSpec::supervisor(self.name.clone(), self.spec)
            .named(format!("{}_sup", self.name))
            .restart(Restart::Transient)
    }
}
