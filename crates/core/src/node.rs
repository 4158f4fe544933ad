//! `Node`: owns the actors of one process, their registry, process groups, the root
//! supervisor and the transport to other nodes.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;

type ActorTableHasher = foldhash::fast::RandomState;
use parking_lot::RwLock;
use tokio::sync::oneshot;

use crate::actor::Actor;
use crate::error::{Error, ExitReason, Result};
use crate::facet::Facet;
use crate::id::ActorId;
use crate::pg::ProcessGroups;
use crate::pid::{ActorRef, Pid};
use crate::runtime::{self, MailboxConfig, SpawnOptions};
use crate::supervisor::{Application, ChildSpec, Strategy, Supervisor, SupervisorSpec};
use crate::transport::{Router, Transport};

/// How often the node's timer heartbeat ticks (see `Node::start_timer_heartbeat`).
const TIMER_HEARTBEAT: Duration = Duration::from_millis(100);

/// Node-wide settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Mailbox capacity for actors that do not choose their own.
    pub mailbox: MailboxConfig,
    /// How long a graceful stop waits for each actor before killing it.
    pub shutdown_timeout: Duration,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            mailbox: MailboxConfig::default(),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// What [`Node::node_lost`] did: how many links got an exit, monitors a `Down`, asks an
/// error, and how many process-group members on the lost node were dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeLost {
    /// Links to actors on the lost node, each now an exit signal with `noconnection`.
    pub links: usize,
    /// Monitors of actors on the lost node, each now a `Down` with `noconnection`.
    pub monitors: usize,
    /// Asks that were waiting on the lost node, each now [`Error::NoConnection`].
    pub asks: usize,
    /// Process-group members on the lost node that left their groups.
    pub group_members: usize,
}

/// Builds a [`Node`].
pub struct NodeBuilder {
    name: String,
    config: NodeConfig,
    transport: Option<Arc<dyn Transport>>,
    facets: Vec<Arc<dyn Facet>>,
}

impl NodeBuilder {
    /// Sets the default mailbox capacity.
    pub fn mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.config.mailbox = mailbox;
        self
    }

    /// Sets how long a graceful stop waits for each actor.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.config.shutdown_timeout = timeout;
        self
    }

    /// Connects the node to others through `transport`.
    pub fn transport(mut self, transport: Arc<dyn Transport>) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Attaches `facet` to every actor spawned on this node.
    pub fn facet(mut self, facet: Arc<dyn Facet>) -> Self {
        self.facets.push(facet);
        self
    }

    /// Starts the node: binds the transport and starts the root supervisor. Must run inside
    /// a tokio runtime.
    pub async fn build(self) -> Result<Node> {
        let name: Arc<str> = ActorId::new("root_sup", &self.name)?.node().into();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| Error::InvalidArgument(format!("no tokio runtime: {e}")))?;
        let router = Arc::new(Router::new(name.clone(), self.transport.clone()));
        let node = Node {
            inner: Arc::new(NodeInner {
                name,
                runtime,
                config: self.config,
                facets: self.facets,
                router,
                actors: DashMap::with_hasher(ActorTableHasher::default()),
                registry: DashMap::new(),
                groups: ProcessGroups::default(),
                services: RwLock::new(HashMap::new()),
                seq: AtomicU64::new(0),
                shutting_down: AtomicBool::new(false),
                root: OnceLock::new(),
            }),
        };
        if let Some(transport) = &self.transport {
            transport.bind_batched(
                node.name(),
                crate::transport::inbound_handler(&node),
                crate::transport::inbound_batch_handler(&node),
            )?;
        }
        let root_spec =
            SupervisorSpec::new(Strategy::OneForOne).intensity(1000, Duration::from_secs(1));
        let (tx, rx) = oneshot::channel();
        let root = runtime::spawn(
            &node,
            Supervisor::new(root_spec),
            SpawnOptions::named("root_sup").mailbox(MailboxConfig::Unbounded),
            None,
            Some(tx),
        )?;
        rx.await.unwrap_or(Err(Error::NoReply))?;
        let _ = node.inner.root.set(root);
        node.start_timer_heartbeat();
        tracing::info!(node = %node.name(), "node started");
        Ok(node)
    }
}

struct NodeInner {
    name: Arc<str>,
    runtime: tokio::runtime::Handle,
    config: NodeConfig,
    facets: Vec<Arc<dyn Facet>>,
    router: Arc<Router>,
    /// Every local actor. foldhash, not SipHash: ids are ours (no hash flooding from
    /// outside decides them) and every spawn and exit hashes one.
    actors: DashMap<ActorId, Pid, ActorTableHasher>,
    registry: DashMap<String, Pid>,
    groups: ProcessGroups,
    services: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    seq: AtomicU64,
    shutting_down: AtomicBool,
    root: OnceLock<ActorRef<Supervisor>>,
}

/// One process's actor system. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Node({})", self.inner.name)
    }
}

/// A node handle that does not keep the node alive (for transports and services that the
/// node itself holds).
#[derive(Clone)]
pub struct WeakNode(std::sync::Weak<NodeInner>);

impl std::fmt::Debug for WeakNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WeakNode")
    }
}

impl WeakNode {
    /// The node, if it still exists.
    pub fn upgrade(&self) -> Option<Node> {
        self.0.upgrade().map(|inner| Node { inner })
    }
}

impl Node {
    /// A handle that does not keep the node alive.
    pub fn downgrade(&self) -> WeakNode {
        WeakNode(Arc::downgrade(&self.inner))
    }

    /// Starts building a node named `name`.
    pub fn builder(name: impl Into<String>) -> NodeBuilder {
        NodeBuilder {
            name: name.into(),
            config: NodeConfig::default(),
            transport: None,
            facets: Vec::new(),
        }
    }

    /// The node's name (the part after `@` in its actors' ids).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The node's settings.
    pub fn config(&self) -> &NodeConfig {
        &self.inner.config
    }

    /// Ticks every [`TIMER_HEARTBEAT`] while the node lives, for two reasons.
    ///
    /// It sweeps the ask deadlines (see `crate::deadline`): a local `ask` with a timeout of
    /// a second or more has no tokio timer of its own, and this tick is what wakes it when
    /// its deadline passes. It keeps sweeping while the node shuts down, so asks to actors
    /// that have not stopped yet stay bounded.
    ///
    /// It also keeps a timer due within 100 ms: when no timer is due sooner, tokio's parked
    /// timer driver sleeps without a deadline, and a new timer earlier than that (a short
    /// ask timeout, `send_after`) must wake a parked worker (a syscall); on an idle machine
    /// that tripled the cost of an ask (see BENCHMARKS.md). The tick costs ten wake-ups a
    /// second per node.
    fn start_timer_heartbeat(&self) {
        let node = self.downgrade();
        self.inner.runtime.spawn(async move {
            let mut tick = tokio::time::interval(TIMER_HEARTBEAT);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                crate::deadline::sweep();
                if node.upgrade().is_none() {
                    break;
                }
            }
        });
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.inner.runtime
    }

    pub(crate) fn router(&self) -> &Arc<Router> {
        &self.inner.router
    }

    pub(crate) fn default_facets(&self) -> &[Arc<dyn Facet>] {
        &self.inner.facets
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `shutdown` has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Spawns an actor with a generated name. Returns at once; `on_start` runs before the
    /// actor's first message.
    pub fn spawn<A: Actor>(&self, actor: A) -> Result<ActorRef<A>> {
        runtime::spawn(self, actor, SpawnOptions::default(), None, None)
    }

    /// Spawns an actor as `name@node`; fails with [`Error::AlreadyStarted`] (naming the
    /// holder) if that id is alive.
    pub fn spawn_named<A: Actor>(&self, name: &str, actor: A) -> Result<ActorRef<A>> {
        runtime::spawn(self, actor, SpawnOptions::named(name), None, None)
    }

    /// Spawns an actor with options.
    pub fn spawn_with<A: Actor>(&self, actor: A, options: SpawnOptions) -> Result<ActorRef<A>> {
        runtime::spawn(self, actor, options, None, None)
    }

    /// Spawns an actor and waits for its `on_start` to finish (Erlang's `start`): an error
    /// in `on_start` comes back as [`Error::StartFailed`].
    pub async fn start<A: Actor>(&self, actor: A, options: SpawnOptions) -> Result<ActorRef<A>> {
        self.start_linked(actor, options, None).await
    }

    /// Like [`Node::start`], linked to `parent` (which becomes the actor's parent).
    pub async fn start_linked<A: Actor>(
        &self,
        actor: A,
        options: SpawnOptions,
        parent: Option<Pid>,
    ) -> Result<ActorRef<A>> {
        let (tx, rx) = oneshot::channel();
        let actor_ref = runtime::spawn(self, actor, options, parent, Some(tx))?;
        // The actor answers a failed start only after its names are free (see `runtime`).
        rx.await.unwrap_or_else(|_| {
            Err(Error::StartFailed("actor was killed while starting".into()))
        })?;
        Ok(actor_ref)
    }

    pub(crate) fn insert_actor(&self, pid: &Pid) -> Result<()> {
        use dashmap::mapref::entry::Entry;
        match self.inner.actors.entry(pid.id().clone()) {
            Entry::Occupied(mut slot) => {
                if slot.get().is_alive() {
                    return Err(Error::AlreadyStarted {
                        name: pid.id().to_string(),
                        pid: slot.get().clone(),
                    });
                }
                slot.insert(pid.clone());
            }
            Entry::Vacant(slot) => {
                slot.insert(pid.clone());
            }
        }
        Ok(())
    }

    pub(crate) fn remove_actor(&self, pid: &Pid) {
        self.inner.actors.remove_if(pid.id(), |_, p| p.same(pid));
    }

    /// The local actor with this id, if alive.
    pub fn lookup(&self, id: &ActorId) -> Option<Pid> {
        self.inner.actors.get(id).map(|p| p.clone())
    }

    /// An address for `id`: the local actor if `id` is on this node (error if not alive),
    /// otherwise a remote address routed through the transport.
    pub fn pid(&self, id: &ActorId) -> Result<Pid> {
        if id.node() == self.name() {
            self.lookup(id).ok_or_else(|| Error::NoProc(id.to_string()))
        } else {
            self.remote_check()?;
            Ok(Pid::remote(id.clone(), self.inner.router.clone()))
        }
    }

    /// A typed handle for `id`, local or remote. A local actor of another type is an
    /// [`Error::InvalidArgument`].
    pub fn actor_ref<A: Actor>(&self, id: &ActorId) -> Result<ActorRef<A>> {
        if id.node() == self.name() {
            let pid = self
                .lookup(id)
                .ok_or_else(|| Error::NoProc(id.to_string()))?;
            pid.typed::<A>().ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{id} is a {}, not a {}",
                    pid.actor_type(),
                    std::any::type_name::<A>()
                ))
            })
        } else {
            self.remote_check()?;
            Ok(ActorRef::remote(id.clone(), self.inner.router.clone()))
        }
    }

    fn remote_check(&self) -> Result<()> {
        if self.inner.router.has_transport() {
            Ok(())
        } else {
            Err(Error::Transport(format!(
                "node {} has no transport to reach other nodes",
                self.name()
            )))
        }
    }

    /// Tells this node that `peer` is gone: it was declared dead or the connection to it was
    /// lost. Called by the transport or the cluster membership, never by actors.
    ///
    /// Every local actor linked to an actor on `peer` gets an exit signal with reason
    /// [`ExitReason::NoConnection`], every local monitor of an actor there a `Down` with that
    /// reason, every ask waiting on `peer` fails with [`Error::NoConnection`]; names and
    /// process-group memberships held by actors on `peer` are dropped. Each link, monitor and
    /// ask is taken out of its table before it is answered, so it is answered exactly once
    /// however many times `node_lost` is called for the same loss.
    pub fn node_lost(&self, peer: &str) -> NodeLost {
        if peer == self.name() {
            return NodeLost::default();
        }
        let (asks, monitors) = self.inner.router.node_lost(peer);
        let on_peer = |p: &Pid| !p.is_local() && p.id().node() == peer;
        let mut links = 0;
        for entry in self.inner.actors.iter() {
            let local = entry.value();
            let Some(cell) = local.cell() else { continue };
            let broken: thin_vec::ThinVec<Pid> = {
                let mut state = cell.core().state.lock();
                if state.exit.is_some() {
                    continue;
                }
                // Nobody is left on `peer` to tell of this actor's death.
                state.watchers.retain(
                    |w| !matches!(w, crate::pid::Watcher::Actor { pid, .. } if on_peer(pid)),
                );
                let (broken, kept) = std::mem::take(&mut state.links)
                    .into_iter()
                    .partition(|l| on_peer(l));
                state.links = kept;
                broken
            };
            for remote in broken {
                links += 1;
                local.signal(crate::pid::Signal::Exit {
                    from: remote,
                    reason: ExitReason::NoConnection,
                });
            }
        }
        self.inner
            .registry
            .retain(|_, holder| holder.is_local() || holder.id().node() != peer);
        let group_members = self.inner.groups.remove_node(peer);
        let lost = NodeLost {
            links,
            monitors,
            asks,
            group_members,
        };
        tracing::info!(node = %self.name(), peer, ?lost, "peer node lost");
        lost
    }

    /// Ids of all live local actors.
    pub fn actor_ids(&self) -> Vec<ActorId> {
        self.inner.actors.iter().map(|e| e.key().clone()).collect()
    }

    /// How many local actors are alive.
    pub fn actor_count(&self) -> usize {
        self.inner.actors.len()
    }

    /// Registers `pid` under `name` (Erlang's `register/2`). The name is freed when the actor
    /// dies. Fails if the name is taken by a live actor ([`Error::NameTaken`]), the actor is
    /// dead ([`Error::NoProc`]) or already has a name ([`Error::InvalidArgument`]: one name
    /// per actor, as in Erlang).
    pub fn register(&self, name: &str, pid: &Pid) -> Result<()> {
        use dashmap::mapref::entry::Entry;
        if name.is_empty() {
            return Err(Error::InvalidArgument("empty name".into()));
        }
        match self.inner.registry.entry(name.to_owned()) {
            Entry::Occupied(slot) if slot.get().is_alive() => {
                return Err(Error::NameTaken(name.to_owned()))
            }
            Entry::Occupied(mut slot) => {
                slot.insert(pid.clone());
            }
            Entry::Vacant(slot) => {
                slot.insert(pid.clone());
            }
        }
        if let Some(cell) = pid.cell() {
            let mut state = cell.core().state.lock();
            if state.exit.is_some() {
                drop(state);
                self.unregister_if(name, pid);
                return Err(Error::NoProc(pid.id().to_string()));
            }
            if let Some(held) = state.names.first() {
                let error = Error::InvalidArgument(format!(
                    "{} is already registered as {held:?}",
                    pid.id()
                ));
                let same = held == name;
                drop(state);
                if !same {
                    self.unregister_if(name, pid);
                }
                return Err(error);
            }
            state.names.push(name.to_owned());
        }
        Ok(())
    }

    /// Removes a registered name. Returns whether it was registered.
    pub fn unregister(&self, name: &str) -> bool {
        match self.inner.registry.remove(name) {
            Some((_, pid)) => {
                if let Some(cell) = pid.cell() {
                    cell.core().state.lock().names.retain(|n| n != name);
                }
                true
            }
            None => false,
        }
    }

    pub(crate) fn unregister_if(&self, name: &str, pid: &Pid) {
        self.inner.registry.remove_if(name, |_, p| p.same(pid));
    }

    /// The actor registered under `name` (Erlang's `whereis/1`).
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        self.inner
            .registry
            .get(name)
            .map(|p| p.clone())
            .filter(Pid::is_alive)
    }

    /// The typed actor registered under `name`.
    pub fn whereis_ref<A: Actor>(&self, name: &str) -> Option<ActorRef<A>> {
        self.whereis(name).and_then(|p| p.typed::<A>())
    }

    /// All registered names.
    pub fn registered(&self) -> Vec<String> {
        self.inner
            .registry
            .iter()
            .map(|e| e.key().clone())
            .collect()
    }

    /// Process groups (Erlang's `pg`).
    pub fn groups(&self) -> &ProcessGroups {
        &self.inner.groups
    }

    /// Makes `service` available to every actor through `Context::service`.
    pub fn insert_service<T: Any + Send + Sync>(&self, service: Arc<T>) {
        self.inner
            .services
            .write()
            .insert(TypeId::of::<T>(), service);
    }

    /// A node-wide service of type `T`.
    pub fn service<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.inner
            .services
            .read()
            .get(&TypeId::of::<T>())
            .cloned()
            .and_then(|s| s.downcast::<T>().ok())
    }

    /// The root supervisor; applications run under it.
    pub fn root_supervisor(&self) -> Option<&ActorRef<Supervisor>> {
        self.inner.root.get()
    }

    /// Starts an application: its top supervisor becomes a child of the root supervisor.
    pub async fn start_application(&self, app: Application) -> Result<Pid> {
        let root = self
            .root_supervisor()
            .ok_or_else(|| Error::NoProc(format!("root_sup@{}", self.name())))?;
        let spec: ChildSpec = app.into_child_spec();
        crate::supervisor::start_child(root, spec).await
    }

    /// Stops an application and forgets it.
    pub async fn stop_application(&self, name: &str) -> Result<()> {
        let root = self
            .root_supervisor()
            .ok_or_else(|| Error::NoProc(format!("root_sup@{}", self.name())))?;
        crate::supervisor::terminate_child(root, name).await?;
        crate::supervisor::delete_child(root, name).await
    }

    /// Graceful shutdown: takes no new actors, stops the root supervisor (applications in
    /// reverse start order), then every other actor in reverse start order, each given
    /// `shutdown_timeout` before it is killed.
    pub async fn shutdown(&self) {
        if self.inner.shutting_down.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::info!(node = %self.name(), "node shutting down");
        let timeout = self.inner.config.shutdown_timeout;
        if let Some(root) = self.root_supervisor() {
            stop_and_wait(&root.pid(), ExitReason::Shutdown, None).await;
        }
        let mut rest: Vec<(u64, Pid)> = self
            .inner
            .actors
            .iter()
            .filter_map(|e| {
                let pid = e.value().clone();
                let seq = pid.cell()?.core().seq;
                Some((seq, pid))
            })
            .collect();
        rest.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        for (_, pid) in rest {
            stop_and_wait(&pid, ExitReason::Shutdown, Some(timeout)).await;
        }
        if let Some(transport) = self.inner.router.transport() {
            transport.unbind(self.name());
        }
        tracing::info!(node = %self.name(), "node stopped");
    }
}

/// Stops `pid` with `reason` and waits until it is gone; after `timeout` it is killed.
pub(crate) async fn stop_and_wait(
    pid: &Pid,
    reason: ExitReason,
    timeout: Option<Duration>,
) -> ExitReason {
    pid.stop(reason);
    match timeout {
        None => pid.wait().await.unwrap_or(ExitReason::Killed),
        Some(limit) => match tokio::time::timeout(limit, pid.wait()).await {
            Ok(result) => result.unwrap_or(ExitReason::Killed),
            Err(_) => {
                pid.kill();
                pid.wait().await.unwrap_or(ExitReason::Killed)
            }
        },
    }
}
