//! Actor types registered with a node, and their activations.
//!
//! A type is either **virtual** (Orleans-style: one activation per [`ActivationKey`],
//! created by the first message, deactivated after an idle timeout, recreated by the next
//! message) or a **stateless worker pool** (N workers per tenant/namespace, requests spread
//! round robin).
//!
//! Architecture invariant: at most one activation per key on the node. Each key has one
//! slot; activation and deactivation happen under the slot's lock, a deactivation finishes
//! (the actor has terminated, its state saved by its facets) before the slot is retired,
//! and a caller that finds a retired slot goes back to the map, where only one live slot
//! per key can exist.
//!
//! The live-activation count ([`Registry::live_count`], bounded by `max_activations`) is
//! added to when an activation's actors start and taken back exactly once per activation
//! ([`Activation::release`]), however it ends: retired, found dead, or failed to restart.
//! Readers ([`Registry::get`], [`Registry::activations`]) never wait on a slot's lock: each
//! slot publishes its current activation, so a busy slot still reads as active.
//!
//! In a cluster ([`Registry::set_directory`]) the invariant is cluster-wide for virtual
//! actors: under the slot's lock and before activating, the registry claims the key in the
//! shared activation directory ([`plexspaces_cluster::directory`]); a key another node owns
//! is not activated here ([`Error::Moved`] names the owner). The directory entry is released
//! only after the activation has terminated (its final snapshot saved), so the next owner
//! starts from everything this one committed.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use plexspaces_cluster::{ActorKey, Claim, SharedDirectory};
use plexspaces_core::{
    Actor, ExitReason, Facet, Lifecycle, MailboxConfig, Node, Pid, SpawnOptions,
};
use plexspaces_tuplespace::{Spaces, TupleSpaceFacet};
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Where one activation lives: tenant / namespace / actor type / key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActivationKey {
    /// The tenant (from the verified token).
    pub tenant: String,
    /// The namespace (from the path).
    pub namespace: String,
    /// The registered type name.
    pub actor_type: String,
    /// The instance key (empty for a worker pool).
    pub key: String,
}

impl ActivationKey {
    /// A key; empty namespace and key become `default`.
    pub fn new(tenant: &str, namespace: &str, actor_type: &str, key: &str) -> Self {
        let or_default = |s: &str| {
            if s.is_empty() {
                "default".to_owned()
            } else {
                s.to_owned()
            }
        };
        ActivationKey {
            tenant: or_default(tenant),
            namespace: or_default(namespace),
            actor_type: actor_type.to_owned(),
            key: or_default(key),
        }
    }

    /// A stable string form, `tenant/namespace/type/key` with each part escaped, used for
    /// actor names and state files.
    pub fn path(&self) -> String {
        [&self.tenant, &self.namespace, &self.actor_type, &self.key]
            .iter()
            .map(|p| escape(p))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The directory's key for this activation.
    pub fn directory_key(&self) -> ActorKey {
        ActorKey::new(&self.tenant, &self.namespace, &self.actor_type, &self.key)
    }

    /// The actor name of this key's virtual activation (`v:<path>`); a clustered node also
    /// registers the activation under it, cluster-wide.
    pub fn virtual_actor_name(&self) -> String {
        self.actor_name(None)
    }

    fn actor_name(&self, worker: Option<usize>) -> String {
        match worker {
            None => format!("v:{}", self.path()),
            Some(i) => format!("w{i}:{}", self.path()),
        }
    }
}

impl fmt::Display for ActivationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// Percent-escapes `%`, `/` and `@` so that a key part can be embedded anywhere.
pub(crate) fn escape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    for c in part.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '@' => out.push_str("%40"),
            c => out.push(c),
        }
    }
    out
}

fn scoped_key(tenant: &str, namespace: &str, name: &str) -> (String, String, String) {
    (tenant.to_owned(), namespace.to_owned(), name.to_owned())
}

/// The longest tenant, namespace or key, in bytes.
pub const MAX_KEY_PART: usize = 256;

fn check_part(what: &str, part: &str) -> Result<()> {
    if part.len() > MAX_KEY_PART {
        return Err(Error::BadRequest(format!(
            "{what} is longer than {MAX_KEY_PART} bytes"
        )));
    }
    if part.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "{what} contains a control character"
        )));
    }
    Ok(())
}

/// Makes the facets of one activation (a durability facet bound to its key, for example).
pub type FacetFactory = Arc<dyn Fn(&ActivationKey) -> Vec<Arc<dyn Facet>> + Send + Sync>;

/// Makes the node's own facets of one activation, given whether its type is virtual.
pub type NodeFacetFactory = Arc<dyn Fn(&ActivationKey, bool) -> Vec<Arc<dyn Facet>> + Send + Sync>;

type SpawnFn = Arc<
    dyn Fn(Node, ActivationKey, SpawnOptions) -> BoxFuture<'static, plexspaces_core::Result<Pid>>
        + Send
        + Sync,
>;

/// Virtual or worker pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    /// One activation per key; deactivated when idle.
    Virtual,
    /// `workers` stateless workers per tenant/namespace, round robin.
    WorkerPool {
        /// How many workers (0: the node's `actors.pool_workers`).
        workers: usize,
    },
}

impl TypeKind {
    /// `"virtual"` or `"worker"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TypeKind::Virtual => "virtual",
            TypeKind::WorkerPool { .. } => "worker",
        }
    }
}

/// An actor type: a name, a kind, a factory and options.
#[derive(Clone)]
pub struct ActorType {
    name: String,
    kind: TypeKind,
    spawn: SpawnFn,
    rust_type: &'static str,
    facets: Option<FacetFactory>,
    durable: bool,
    idle_timeout: Option<Duration>,
    mailbox: Option<MailboxConfig>,
}

impl fmt::Debug for ActorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActorType")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

impl ActorType {
    fn new<A, F>(name: &str, kind: TypeKind, factory: F) -> Self
    where
        A: Actor,
        F: Fn(&ActivationKey) -> A + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        let spawn: SpawnFn = Arc::new(move |node: Node, key: ActivationKey, options| {
            let actor = factory(&key);
            Box::pin(async move { node.start(actor, options).await.map(|r| r.pid()) })
        });
        ActorType {
            name: name.to_owned(),
            kind,
            spawn,
            rust_type: std::any::type_name::<A>(),
            facets: None,
            durable: false,
            idle_timeout: None,
            mailbox: None,
        }
    }

    /// A virtual actor type: `factory` makes the actor for a key on its activation.
    pub fn virtual_actor<A, F>(name: &str, factory: F) -> Self
    where
        A: Actor,
        F: Fn(&ActivationKey) -> A + Send + Sync + 'static,
    {
        Self::new(name, TypeKind::Virtual, factory)
    }

    /// A stateless worker pool of `workers` actors (0: the node's default) per
    /// tenant/namespace; `factory` makes each worker.
    pub fn worker_pool<A, F>(name: &str, workers: usize, factory: F) -> Self
    where
        A: Actor,
        F: Fn(&ActivationKey) -> A + Send + Sync + 'static,
    {
        Self::new(name, TypeKind::WorkerPool { workers }, factory)
    }

    /// Facets for each activation, made from its key (a durability facet, for example).
    pub fn facets<F>(mut self, factory: F) -> Self
    where
        F: Fn(&ActivationKey) -> Vec<Arc<dyn Facet>> + Send + Sync + 'static,
    {
        self.facets = Some(Arc::new(factory));
        self
    }

    /// Keeps each activation's state in the node's journal: the node adds a
    /// `plexspaces_journal::DurabilityFacet` per activation (after the facets of
    /// [`ActorType::facets`]). The actor is recovered by snapshot (`Actor::snapshot` /
    /// `Actor::restore`) plus replay of its journaled messages, so its handlers must be
    /// deterministic (see `docs/durability.md`).
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// Whether [`ActorType::durable`] was asked for.
    pub fn is_durable(&self) -> bool {
        self.durable
    }

    /// Adds the node's durability facets to a type marked [`ActorType::durable`].
    pub(crate) fn attach_durability(mut self, durability: FacetFactory) -> Self {
        if !self.durable {
            return self;
        }
        let own = self.facets.take();
        self.facets = Some(Arc::new(move |key: &ActivationKey| {
            let mut facets = own.as_ref().map(|f| f(key)).unwrap_or_default();
            facets.extend(durability(key));
            facets
        }));
        self
    }

    /// Adds the node's own facets (made per activation by `node`, given whether the type
    /// is virtual) to every activation, after the type's own.
    pub(crate) fn attach_node_facets(mut self, node: NodeFacetFactory) -> Self {
        let own = self.facets.take();
        let is_virtual = self.kind == TypeKind::Virtual;
        self.facets = Some(Arc::new(move |key: &ActivationKey| {
            let mut facets = own.as_ref().map(|f| f(key)).unwrap_or_default();
            facets.extend(node(key, is_virtual));
            facets
        }));
        self
    }

    /// The Rust type of its actors (`std::any::type_name`), the label of its runtime
    /// metrics.
    pub fn rust_type(&self) -> &'static str {
        self.rust_type
    }

    /// Overrides the node's idle timeout for this type.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Overrides the node's mailbox capacity for this type.
    pub fn mailbox(mut self, mailbox: MailboxConfig) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Virtual or worker pool.
    pub fn kind(&self) -> TypeKind {
        self.kind
    }
}

/// Registry settings.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Default idle timeout of virtual actors.
    pub idle_timeout: Duration,
    /// Most live activations.
    pub max_activations: usize,
    /// Default mailbox capacity.
    pub mailbox: MailboxConfig,
    /// Default worker pool size.
    pub pool_workers: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            idle_timeout: Duration::from_secs(300),
            max_activations: 100_000,
            mailbox: MailboxConfig::Bounded(1024),
            pool_workers: 4,
        }
    }
}

/// The cluster's activation directory as this node uses it.
#[derive(Clone)]
pub struct DirectoryBinding {
    /// The shared directory.
    pub directory: SharedDirectory,
    /// This node's name (the owner it claims as).
    pub node: String,
    /// This node's incarnation (start time in ms): entries of an older incarnation of the
    /// same name are taken over, not waited for.
    pub incarnation: u64,
}

impl fmt::Debug for DirectoryBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryBinding")
            .field("node", &self.node)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

/// Binds the journal epoch an activation acquired to the directory epoch of its claim
/// ([`plexspaces_cluster::Directory::bind_journal_epoch`]): the durability facet's journal
/// calls [`ClaimBinder::bind`] right after it took a new epoch for the activation's stream
/// (`crate::state`), before the activation recovers or writes anything.
///
/// Architecture invariant: a virtual activation of a clustered node writes to its journal
/// stream only after the directory accepted its journal epoch for the current ownership
/// period. A claimer whose entry was reclaimed (and maybe claimed by another node) meanwhile
/// is refused here and its activation fails; the journal's own epoch fencing then refuses
/// whichever activation of the key acquired its journal epoch first.
#[derive(Clone)]
pub struct ClaimBinder(Weak<Inner>);

impl fmt::Debug for ClaimBinder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimBinder").finish_non_exhaustive()
    }
}

impl ClaimBinder {
    /// Records `journal_epoch` as the journal epoch of this node's claim on `key`. Ok
    /// without a directory, for a worker pool, or once the registry is gone; an error when
    /// the key is virtual and this node holds no claim on it, or the directory refuses
    /// (the claim is no longer current: [`plexspaces_cluster::Error::Fenced`]).
    pub async fn bind(&self, key: &ActivationKey, journal_epoch: u64) -> Result<()> {
        let Some(inner) = self.0.upgrade() else {
            return Ok(());
        };
        let registry = Registry { inner };
        let Some(d) = registry.directory() else {
            return Ok(());
        };
        let is_virtual = registry
            .actor_type(&key.actor_type)
            .is_ok_and(|t| t.kind == TypeKind::Virtual);
        if !is_virtual {
            return Ok(());
        }
        let epoch = registry.claimed_epoch(key).ok_or_else(|| {
            Error::Directory(format!(
                "{key}: fenced: this node holds no directory claim on it"
            ))
        })?;
        d.directory
            .bind_journal_epoch(&key.directory_key(), &d.node, epoch, journal_epoch)
            .await
            .map_err(|e| Error::Directory(e.to_string()))?;
        tracing::debug!(%key, epoch, journal_epoch, "journal epoch bound to the directory claim");
        Ok(())
    }
}

/// One live activation: a virtual actor, or a pool's workers.
pub struct Activation {
    key: ActivationKey,
    /// Its directory epoch, when the registry claimed it in a cluster's directory.
    claim: Mutex<Option<u64>>,
    kind: TypeKind,
    workers: Mutex<Vec<Pid>>,
    next: AtomicUsize,
    inflight: AtomicUsize,
    /// Woken when `inflight` drops to zero (a deactivation waits for it).
    idle: tokio::sync::Notify,
    last_used: Mutex<Instant>,
    idle_timeout: Duration,
    /// Counted in the registry's live count until [`Activation::release`].
    counted: AtomicBool,
    /// Invocations served through leases, and how many of them failed.
    served: AtomicU64,
    failed: AtomicU64,
}

impl Activation {
    /// Its key.
    pub fn key(&self) -> &ActivationKey {
        &self.key
    }

    /// Its type's kind.
    pub fn kind(&self) -> TypeKind {
        self.kind
    }

    /// Its directory epoch (in a cluster).
    pub fn directory_epoch(&self) -> Option<u64> {
        *self.claim.lock()
    }

    /// Its actors (one for a virtual actor).
    pub fn pids(&self) -> Vec<Pid> {
        self.workers.lock().clone()
    }

    /// How long since it last finished a request.
    pub fn idle_for(&self) -> Duration {
        if self.inflight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        self.last_used.lock().elapsed()
    }

    fn all_alive(&self) -> bool {
        self.workers.lock().iter().all(Pid::is_alive)
    }

    /// Invocations this activation served through the node's APIs, and how many failed.
    pub fn served(&self) -> (u64, u64) {
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    /// Takes this activation's actors out of `live`, the first time only.
    fn release(&self, live: &AtomicUsize) {
        if self.counted.swap(false, Ordering::AcqRel) {
            live.fetch_sub(self.workers.lock().len(), Ordering::AcqRel);
        }
    }

    /// Waits until no lease is held on this activation.
    async fn drained(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a lease dropped in between still wakes us.
            notified.as_mut().enable();
            if self.inflight.load(Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A claim on an activation for one request: while it lives, the activation is not idle.
pub struct Lease {
    activation: Arc<Activation>,
    pid: Pid,
    /// Whether this request created the activation.
    pub activated: bool,
}

impl Lease {
    /// The actor that serves this request.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// Counts one invocation served through this lease (see [`Activation::served`]).
    pub fn record(&self, ok: bool) {
        self.activation.served.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.activation.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.activation.last_used.lock() = Instant::now();
        if self.activation.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.activation.idle.notify_waiters();
        }
    }
}

enum SlotState {
    Empty,
    Active(Arc<Activation>),
    Retired,
}

struct Slot {
    state: tokio::sync::Mutex<SlotState>,
    /// The active activation, published on every change of `state` (under its lock) so
    /// that readers need not take the lock.
    current: RwLock<Option<Arc<Activation>>>,
}

impl Slot {
    fn new() -> Self {
        Slot {
            state: tokio::sync::Mutex::new(SlotState::Empty),
            current: RwLock::new(None),
        }
    }

    /// Sets the state (the caller holds `state`'s lock) and publishes it.
    fn set(&self, state: &mut SlotState, next: SlotState) {
        *self.current.write() = match &next {
            SlotState::Active(a) => Some(a.clone()),
            SlotState::Empty | SlotState::Retired => None,
        };
        *state = next;
    }

    fn current(&self) -> Option<Arc<Activation>> {
        self.current.read().clone()
    }
}

struct Inner {
    node: Node,
    options: RegistryOptions,
    types: RwLock<HashMap<String, Arc<ActorType>>>,
    /// Types of one tenant and namespace (deployed WASM modules), keyed by
    /// `(tenant, namespace, name)`: they take precedence over `types` there.
    scoped: RwLock<HashMap<(String, String, String), Arc<ActorType>>>,
    slots: DashMap<ActivationKey, Arc<Slot>>,
    live: AtomicUsize,
    directory: OnceLock<DirectoryBinding>,
    /// The directory epoch this node holds for each virtual key it claimed, until it
    /// releases the key ([`ClaimBinder`] binds journal epochs to them).
    claims: DashMap<ActivationKey, u64>,
    /// Set by [`Registry::drain`]: no new activation.
    closing: AtomicBool,
}

/// The node's actor types and their activations. Cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("types", &self.type_names())
            .field("activations", &self.inner.slots.len())
            .finish()
    }
}

impl Registry {
    /// A registry for `node`. Starts the idle sweeper, which ends when the node shuts down
    /// or the registry is dropped.
    pub fn new(node: Node, options: RegistryOptions) -> Self {
        let registry = Registry {
            inner: Arc::new(Inner {
                node,
                options,
                types: RwLock::new(HashMap::new()),
                scoped: RwLock::new(HashMap::new()),
                slots: DashMap::new(),
                live: AtomicUsize::new(0),
                directory: OnceLock::new(),
                claims: DashMap::new(),
                closing: AtomicBool::new(false),
            }),
        };
        let weak = Arc::downgrade(&registry.inner);
        tokio::spawn(sweeper(weak));
        registry
    }

    /// The node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Makes one activation per virtual key a cluster-wide promise: from now on a virtual
    /// actor is activated here only after this node claimed it in `binding`'s directory.
    /// Set once, before serving; false when a directory was already set.
    pub fn set_directory(&self, binding: DirectoryBinding) -> bool {
        self.inner.directory.set(binding).is_ok()
    }

    /// The directory set by [`Registry::set_directory`].
    pub fn directory(&self) -> Option<&DirectoryBinding> {
        self.inner.directory.get()
    }

    /// Claims `key` for this node when it is a virtual key and a directory is set; returns
    /// the directory epoch (`None` without a directory or for a worker pool).
    async fn claim(&self, ty: &ActorType, key: &ActivationKey) -> Result<Option<u64>> {
        let Some(d) = self.directory() else {
            return Ok(None);
        };
        if ty.kind != TypeKind::Virtual {
            return Ok(None);
        }
        let claim = d
            .directory
            .claim(&key.directory_key(), &d.node, d.incarnation)
            .await
            .map_err(|e| Error::Directory(e.to_string()))?;
        match claim {
            Claim::Granted(owner) => {
                self.inner.claims.insert(key.clone(), owner.epoch);
                Ok(Some(owner.epoch))
            }
            Claim::Held(owner) => Err(Error::Moved {
                key: key.to_string(),
                owner: owner.node,
            }),
        }
    }

    /// The directory epoch this node holds for `key`, if it claimed it and has not released
    /// it (it may have been reclaimed by other nodes since: the directory decides).
    pub fn claimed_epoch(&self, key: &ActivationKey) -> Option<u64> {
        self.inner.claims.get(key).map(|e| *e)
    }

    /// A handle that binds activations' journal epochs to this registry's directory claims
    /// (see [`ClaimBinder`]). It does not keep the registry alive.
    pub fn claim_binder(&self) -> ClaimBinder {
        ClaimBinder(Arc::downgrade(&self.inner))
    }

    /// Gives up this node's directory entry for `key` in period `epoch`.
    async fn release_claim(&self, key: &ActivationKey, epoch: Option<u64>) {
        let (Some(d), Some(epoch)) = (self.directory(), epoch) else {
            return;
        };
        self.inner.claims.remove_if(key, |_, held| *held == epoch);
        match d
            .directory
            .release(&key.directory_key(), &d.node, epoch)
            .await
        {
            Ok(true) => tracing::debug!(%key, epoch, "directory entry released"),
            Ok(false) => tracing::warn!(%key, epoch, "directory entry was no longer ours"),
            Err(e) => tracing::warn!(%key, error = %e, "cannot release the directory entry"),
        }
    }

    /// Registers (or replaces) a type.
    pub fn register(&self, actor_type: ActorType) {
        tracing::info!(actor_type = %actor_type.name, kind = actor_type.kind.as_str(), "actor type registered");
        self.inner
            .types
            .write()
            .insert(actor_type.name.clone(), Arc::new(actor_type));
    }

    /// Registers (or replaces) a type for one tenant and namespace only (a deployed WASM
    /// module). There it takes precedence over a node-wide type of the same name; other
    /// tenants and namespaces do not see it.
    pub fn register_scoped(&self, tenant: &str, namespace: &str, actor_type: ActorType) {
        tracing::info!(
            tenant,
            namespace,
            actor_type = %actor_type.name,
            "scoped actor type registered"
        );
        let key = scoped_key(tenant, namespace, &actor_type.name);
        self.inner.scoped.write().insert(key, Arc::new(actor_type));
    }

    /// Removes a type registered with [`Registry::register_scoped`]; whether there was one.
    /// Live activations are not touched (see [`Registry::deactivate_type`]).
    pub fn unregister_scoped(&self, tenant: &str, namespace: &str, name: &str) -> bool {
        self.inner
            .scoped
            .write()
            .remove(&scoped_key(tenant, namespace, name))
            .is_some()
    }

    /// The type `name` means in `(tenant, namespace)`: a scoped type there, else the
    /// node-wide one.
    pub fn type_in(&self, tenant: &str, namespace: &str, name: &str) -> Result<Arc<ActorType>> {
        let scoped = self
            .inner
            .scoped
            .read()
            .get(&scoped_key(tenant, namespace, name))
            .cloned();
        match scoped {
            Some(ty) => Ok(ty),
            None => self.actor_type(name),
        }
    }

    /// The type of the activation at `key` ([`Registry::type_in`]).
    pub fn type_of(&self, key: &ActivationKey) -> Result<Arc<ActorType>> {
        self.type_in(&key.tenant, &key.namespace, &key.actor_type)
    }

    /// Deactivates every live activation of `name` in `(tenant, namespace)`, each after
    /// its in-flight requests (its facets save a final snapshot). Returns how many.
    pub async fn deactivate_type(&self, tenant: &str, namespace: &str, name: &str) -> usize {
        let keys: Vec<ActivationKey> = self
            .inner
            .slots
            .iter()
            .filter(|e| {
                let k = e.key();
                k.tenant == tenant && k.namespace == namespace && k.actor_type == name
            })
            .map(|e| e.key().clone())
            .collect();
        let mut n = 0;
        for key in keys {
            if self.deactivate(&key).await {
                n += 1;
            }
        }
        n
    }

    /// The registered type names, sorted.
    pub fn type_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.types.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The type registered as `name`.
    pub fn actor_type(&self, name: &str) -> Result<Arc<ActorType>> {
        self.inner
            .types
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownActorType(name.to_owned()))
    }

    /// The key a request for `key` resolves to: worker pools have one per tenant/namespace.
    /// Each part must be at most [`MAX_KEY_PART`] bytes without control characters.
    pub fn resolve(
        &self,
        tenant: &str,
        namespace: &str,
        actor_type: &str,
        key: &str,
    ) -> Result<ActivationKey> {
        for (what, part) in [("tenant", tenant), ("namespace", namespace), ("key", key)] {
            check_part(what, part)?;
        }
        let tenant_or_default = if tenant.is_empty() { "default" } else { tenant };
        let namespace_or_default = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        let ty = self.type_in(tenant_or_default, namespace_or_default, actor_type)?;
        let key = match ty.kind {
            TypeKind::Virtual => key,
            TypeKind::WorkerPool { .. } => "",
        };
        Ok(ActivationKey::new(tenant, namespace, actor_type, key))
    }

    /// The activation for `key`, created if needed, claimed for one request.
    pub async fn lease(&self, key: &ActivationKey) -> Result<Lease> {
        let ty = self.type_of(key)?;
        loop {
            let slot = self
                .inner
                .slots
                .entry(key.clone())
                .or_insert_with(|| Arc::new(Slot::new()))
                .clone();
            let mut state = slot.state.lock().await;
            let (activation, activated) = match &*state {
                SlotState::Retired => continue,
                SlotState::Active(a) if a.all_alive() => (a.clone(), false),
                SlotState::Active(a) => {
                    // An actor died (a handler failed, or it was fenced): start a fresh
                    // activation, if this node still owns the key.
                    let a = a.clone();
                    for pid in a.pids() {
                        pid.stop(ExitReason::Shutdown);
                        let _ = pid.wait().await;
                    }
                    a.release(&self.inner.live);
                    let claimed = match self.claim(&ty, key).await {
                        Ok(epoch) => epoch,
                        Err(e) => {
                            self.vacate(key, &slot, &mut state);
                            return Err(e);
                        }
                    };
                    match self.activate(&ty, key, claimed).await {
                        Ok(fresh) => {
                            slot.set(&mut state, SlotState::Active(fresh.clone()));
                            (fresh, true)
                        }
                        Err(e) => {
                            // The dead activation is gone: retire the slot so that nothing
                            // finds (and releases) it again.
                            self.release_claim(key, claimed).await;
                            self.vacate(key, &slot, &mut state);
                            return Err(e);
                        }
                    }
                }
                SlotState::Empty => {
                    let claimed = match self.claim(&ty, key).await {
                        Ok(epoch) => epoch,
                        Err(e) => {
                            self.vacate(key, &slot, &mut state);
                            return Err(e);
                        }
                    };
                    let fresh = match self.activate(&ty, key, claimed).await {
                        Ok(a) => a,
                        Err(e) => {
                            self.release_claim(key, claimed).await;
                            self.vacate(key, &slot, &mut state);
                            return Err(e);
                        }
                    };
                    slot.set(&mut state, SlotState::Active(fresh.clone()));
                    (fresh, true)
                }
            };
            activation.inflight.fetch_add(1, Ordering::AcqRel);
            drop(state);
            let pid = {
                let workers = activation.workers.lock();
                let i = activation.next.fetch_add(1, Ordering::Relaxed) % workers.len().max(1);
                workers
                    .get(i)
                    .cloned()
                    .ok_or_else(|| Error::NotFound(format!("no workers for {key}")))
            };
            let pid = match pid {
                Ok(pid) => pid,
                Err(e) => {
                    activation.inflight.fetch_sub(1, Ordering::AcqRel);
                    return Err(e);
                }
            };
            return Ok(Lease {
                activation,
                pid,
                activated,
            });
        }
    }

    async fn activate(
        &self,
        ty: &ActorType,
        key: &ActivationKey,
        claim: Option<u64>,
    ) -> Result<Arc<Activation>> {
        let node = &self.inner.node;
        if node.is_shutting_down() || self.inner.closing.load(Ordering::Acquire) {
            return Err(plexspaces_core::Error::ShuttingDown.into());
        }
        let count = match ty.kind {
            TypeKind::Virtual => 1,
            TypeKind::WorkerPool { workers: 0 } => self.inner.options.pool_workers.max(1),
            TypeKind::WorkerPool { workers } => workers,
        };
        let live = self.inner.live.fetch_add(count, Ordering::AcqRel);
        if live + count > self.inner.options.max_activations {
            self.inner.live.fetch_sub(count, Ordering::AcqRel);
            return Err(Error::Overloaded(format!(
                "activation limit {} reached",
                self.inner.options.max_activations
            )));
        }
        let mut workers = Vec::with_capacity(count);
        for i in 0..count {
            let name = match ty.kind {
                TypeKind::Virtual => key.actor_name(None),
                TypeKind::WorkerPool { .. } => key.actor_name(Some(i)),
            };
            let mut options =
                SpawnOptions::named(name).mailbox(ty.mailbox.unwrap_or(self.inner.options.mailbox));
            if let Some(facets) = &ty.facets {
                for f in facets(key) {
                    options = options.facet(f);
                }
            }
            if let Some(spaces) = node.service::<Spaces>() {
                // Scopes `ctx.tuple_space(name)` to the activation's own tenant and namespace:
                // without it an actor would reach the node-wide default scope.
                let scoped = TupleSpaceFacet::new((*spaces).clone(), &key.tenant, &key.namespace)
                    .map_err(|e| Error::BadRequest(format!("tenant or namespace: {e}")))?;
                options = options.facet(scoped);
            }
            match (ty.spawn)(node.clone(), key.clone(), options).await {
                Ok(pid) => workers.push(pid),
                Err(e) => {
                    for pid in &workers {
                        pid.stop(ExitReason::Shutdown);
                    }
                    self.inner.live.fetch_sub(count, Ordering::AcqRel);
                    return Err(e.into());
                }
            }
        }
        tracing::debug!(key = %key, kind = ty.kind.as_str(), "activated");
        Ok(Arc::new(Activation {
            key: key.clone(),
            claim: Mutex::new(claim),
            kind: ty.kind,
            workers: Mutex::new(workers),
            next: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
            last_used: Mutex::new(Instant::now()),
            idle_timeout: ty.idle_timeout.unwrap_or(self.inner.options.idle_timeout),
            counted: AtomicBool::new(true),
            served: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }))
    }

    /// The live activation for `key`, if any (does not activate, never waits on a busy
    /// slot).
    pub fn get(&self, key: &ActivationKey) -> Option<Arc<Activation>> {
        let slot = self.inner.slots.get(key)?.clone();
        slot.current()
    }

    /// Every live activation of `tenant` (all tenants with `None`).
    pub fn activations(&self, tenant: Option<&str>) -> Vec<Arc<Activation>> {
        let slots: Vec<Arc<Slot>> = self
            .inner
            .slots
            .iter()
            .filter(|e| tenant.is_none_or(|t| e.key().tenant == t))
            .map(|e| e.value().clone())
            .collect();
        let mut out: Vec<Arc<Activation>> = slots.iter().filter_map(|s| s.current()).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Live activations (actors) of registered types.
    pub fn live_count(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// The most live activations (actors) allowed.
    pub fn max_activations(&self) -> usize {
        self.inner.options.max_activations
    }

    /// Deactivates `key` now, waiting for in-flight requests to finish first. Returns whether
    /// something was active.
    pub async fn deactivate(&self, key: &ActivationKey) -> bool {
        let Some(slot) = self.inner.slots.get(key).map(|s| s.clone()) else {
            return false;
        };
        let mut state = slot.state.lock().await;
        let SlotState::Active(activation) = &*state else {
            return false;
        };
        let activation = activation.clone();
        activation.drained().await;
        self.retire(key, &slot, &mut state, &activation).await;
        true
    }

    async fn retire(
        &self,
        key: &ActivationKey,
        slot: &Arc<Slot>,
        state: &mut SlotState,
        activation: &Activation,
    ) {
        let pids = activation.pids();
        for pid in &pids {
            pid.stop(ExitReason::Shutdown);
        }
        for pid in &pids {
            let _ = pid.wait().await;
        }
        activation.release(&self.inner.live);
        // After the actors terminated (their final snapshot saved): the next owner starts
        // from everything this activation committed.
        let claim = activation.claim.lock().take();
        self.release_claim(key, claim).await;
        self.vacate(key, slot, state);
        tracing::debug!(key = %key, "deactivated");
    }

    /// Marks `slot` retired (its lock held as `state`) and takes it out of the map, so
    /// that the next caller makes a fresh one.
    fn vacate(&self, key: &ActivationKey, slot: &Arc<Slot>, state: &mut SlotState) {
        slot.set(state, SlotState::Retired);
        self.inner.slots.remove_if(key, |_, s| Arc::ptr_eq(s, slot));
    }

    /// Hands every activation off before the node exits: refuses new activations, then
    /// deactivates each one after its in-flight requests (its facets save a final
    /// snapshot) and releases its directory entry, so that another node activates it next
    /// with all its state. Returns how many were deactivated.
    pub async fn drain(&self) -> usize {
        self.inner.closing.store(true, Ordering::Release);
        let keys: Vec<ActivationKey> = self.inner.slots.iter().map(|e| e.key().clone()).collect();
        let mut n = 0;
        for key in keys {
            if self.deactivate(&key).await {
                n += 1;
            }
        }
        tracing::info!(activations = n, "drained");
        n
    }

    /// Retires every virtual activation of this node whose directory claim is no longer
    /// current (the key was reclaimed while this node was cut off, and maybe claimed by
    /// another node), after its in-flight requests. Such an activation could not write
    /// anyway (its journal epoch is fenced); retiring it keeps the node's activation list
    /// true and frees its slot. Returns how many were retired.
    pub async fn retire_stale(&self) -> Result<usize> {
        let Some(d) = self.directory() else {
            return Ok(0);
        };
        let owned: std::collections::HashSet<(ActorKey, u64)> = d
            .directory
            .entries(Some(&d.node))
            .await
            .map_err(|e| Error::Directory(e.to_string()))?
            .into_iter()
            .filter(|(_, o)| o.incarnation == d.incarnation)
            .map(|(k, o)| (k, o.epoch))
            .collect();
        let stale: Vec<ActivationKey> = self
            .activations(None)
            .into_iter()
            .filter_map(|a| {
                let epoch = a.directory_epoch()?;
                (!owned.contains(&(a.key.directory_key(), epoch))).then(|| a.key.clone())
            })
            .collect();
        let mut n = 0;
        for key in stale {
            tracing::warn!(%key, "retiring an activation whose directory claim was reclaimed");
            if self.deactivate(&key).await {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Deactivates every idle activation past its timeout. Returns how many.
    pub async fn sweep(&self) -> usize {
        let slots: Vec<(ActivationKey, Arc<Slot>)> = self
            .inner
            .slots
            .iter()
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let mut swept = 0;
        for (key, slot) in slots {
            // A slot busy activating or serving is not idle.
            let Ok(mut state) = slot.state.try_lock() else {
                continue;
            };
            let SlotState::Active(activation) = &*state else {
                continue;
            };
            let activation = activation.clone();
            let idle = activation.kind == TypeKind::Virtual
                && activation.inflight.load(Ordering::Acquire) == 0
                && activation.last_used.lock().elapsed() >= activation.idle_timeout;
            if idle {
                self.retire(&key, &slot, &mut state, &activation).await;
                swept += 1;
            }
        }
        swept
    }

    fn sweep_interval(&self) -> Duration {
        let types = self.inner.types.read();
        let shortest = types
            .values()
            .filter_map(|t| t.idle_timeout)
            .chain(std::iter::once(self.inner.options.idle_timeout))
            .min()
            .unwrap_or(Duration::from_secs(1));
        (shortest / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
    }
}

async fn sweeper(weak: Weak<Inner>) {
    loop {
        let interval = match weak.upgrade() {
            Some(inner) if !inner.node.is_shutting_down() => Registry { inner }.sweep_interval(),
            _ => return,
        };
        tokio::time::sleep(interval).await;
        match weak.upgrade() {
            Some(inner) if !inner.node.is_shutting_down() => {
                Registry { inner }.sweep().await;
            }
            _ => return,
        }
    }
}

/// `creating`, `active`, `stopping`, `terminated` or `failed`.
pub fn lifecycle_name(lifecycle: Lifecycle) -> &'static str {
    match lifecycle {
        Lifecycle::Creating => "creating",
        Lifecycle::Active => "active",
        Lifecycle::Inactive => "inactive",
        Lifecycle::Stopping => "stopping",
        Lifecycle::Terminated => "terminated",
        Lifecycle::Failed => "failed",
    }
}
