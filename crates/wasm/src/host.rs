//! The host side of the world `plexspaces:actor/actor`: the per-activation store data
//! ([`HostState`]) and every import, scoped by the activation's own tenant and namespace.
//!
//! Architecture invariant: no import takes a tenant. Messaging goes through [`Router`] with
//! the caller's [`ActorScope`]; key-value entries, tuple spaces and process groups are named
//! inside `(tenant, namespace)` of that scope. A guest has no way to spell another tenant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use plexspaces_core::{Envelope, Node, Pid};
use plexspaces_journal::Durability;
use plexspaces_storage::KeyValue;
use plexspaces_tuplespace::{SpaceId, Spaces};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::error::{Error, Result};

pub(crate) mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "plexspaces:actor/actor",
        imports: { default: async },
        exports: { default: async },
    });
}

use bindings::plexspaces::actor::types::{
    Address, Error as WitError, ErrorCode,
};
use bindings::plexspaces::actor::{
    durability, key_value, logging, messaging, process_groups, timers, tuple_space, types,
};

/// Where an activation lives: its tenant, namespace, type and key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ActorScope {
    /// The tenant (never chosen by the guest).
    pub tenant: String,
    /// The namespace.
    pub namespace: String,
    /// The deployed type.
    pub actor_type: String,
    /// The virtual-actor key.
    pub key: String,
}

/// The class of an import's failure (the WIT `error-code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// Malformed request.
    BadRequest,
    /// Unknown target.
    NotFound,
    /// Not allowed.
    Denied,
    /// Did not finish in time.
    Timeout,
    /// A backing service is down.
    Unavailable,
    /// Not offered by this node.
    Unsupported,
    /// Conflicting state.
    Conflict,
    /// Anything else.
    Internal,
}

impl Code {
    /// The code of an error kind (`plexspaces_core::Error::kind` and the node's kinds).
    pub fn from_kind(kind: &str) -> Code {
        match kind {
            "bad_request" | "decode" | "invalid_argument" | "invalid_id" | "unknown_msg_type" => {
                Code::BadRequest
            }
            "unknown_actor_type" | "not_found" | "noproc" => Code::NotFound,
            "forbidden" | "rejected" | "unauthenticated" => Code::Denied,
            "timeout" => Code::Timeout,
            "shutting_down" | "noconnection" | "unavailable" | "mailbox_full" | "overloaded"
            | "transport" | "storage" => Code::Unavailable,
            "unsupported" => Code::Unsupported,
            "calling_self" | "name_taken" | "conflict" => Code::Conflict,
            _ => Code::Internal,
        }
    }

    fn wit(self) -> ErrorCode {
        match self {
            Code::BadRequest => ErrorCode::BadRequest,
            Code::NotFound => ErrorCode::NotFound,
            Code::Denied => ErrorCode::Denied,
            Code::Timeout => ErrorCode::Timeout,
            Code::Unavailable => ErrorCode::Unavailable,
            Code::Unsupported => ErrorCode::Unsupported,
            Code::Conflict => ErrorCode::Conflict,
            Code::Internal => ErrorCode::Internal,
        }
    }

    fn from_wit(code: ErrorCode) -> Code {
        match code {
            ErrorCode::BadRequest => Code::BadRequest,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::Denied => Code::Denied,
            ErrorCode::Timeout => Code::Timeout,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Unsupported => Code::Unsupported,
            ErrorCode::Conflict => Code::Conflict,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// The WIT name (`bad-request`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest => "bad-request",
            Code::NotFound => "not-found",
            Code::Denied => "denied",
            Code::Timeout => "timeout",
            Code::Unavailable => "unavailable",
            Code::Unsupported => "unsupported",
            Code::Conflict => "conflict",
            Code::Internal => "internal",
        }
    }
}

/// A failed import, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportError {
    /// Its class, by WIT name.
    pub code: String,
    /// What happened.
    pub message: String,
}

impl ImportError {
    /// An error of class `code`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ImportError {
            code: code.as_str().to_owned(),
            message: message.into(),
        }
    }

    fn code(&self) -> Code {
        [
            Code::BadRequest,
            Code::NotFound,
            Code::Denied,
            Code::Timeout,
            Code::Unavailable,
            Code::Unsupported,
            Code::Conflict,
        ]
        .into_iter()
        .find(|c| c.as_str() == self.code)
        .unwrap_or(Code::Internal)
    }

    fn wit(self) -> WitError {
        WitError {
            code: self.code().wit(),
            message: self.message,
        }
    }
}

pub(crate) fn guest_error(e: WitError) -> (Code, String) {
    (Code::from_wit(e.code), e.message)
}

/// Messaging between actors, provided by the node: every call carries the caller's own
/// scope, and the target is resolved in the caller's tenant and namespace.
#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// Queues `env` for `(actor_type, key)` of `from`'s tenant and namespace.
    async fn tell(
        &self,
        from: &ActorScope,
        actor_type: &str,
        key: &str,
        env: Envelope,
    ) -> Result<(), ImportError>;
    /// Asks and waits up to `timeout`.
    async fn ask(
        &self,
        from: &ActorScope,
        actor_type: &str,
        key: &str,
        env: Envelope,
        timeout: Duration,
    ) -> Result<Envelope, ImportError>;
    /// Activates the target; the id of the actor serving it.
    async fn spawn(&self, from: &ActorScope, actor_type: &str, key: &str)
        -> Result<String, ImportError>;
}

/// What the node offers guests. Each service is optional; a missing one answers
/// `unsupported`.
#[derive(Default, Clone)]
pub struct HostEnv {
    /// Messaging (`tell`/`ask`/`spawn`).
    pub router: Option<Arc<dyn Router>>,
    /// Key-value entries.
    pub kv: Option<Arc<dyn KeyValue>>,
    /// Tuple spaces.
    pub spaces: Option<Spaces>,
    /// The node (process groups).
    pub node: Option<Node>,
    /// The longest `ask` a guest may wait (and the default).
    pub ask_timeout: Option<Duration>,
}

impl std::fmt::Debug for HostEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEnv")
            .field("router", &self.router.is_some())
            .field("kv", &self.kv.is_some())
            .field("spaces", &self.spaces.is_some())
            .field("node", &self.node.is_some())
            .finish()
    }
}

impl HostEnv {
    /// No services: what `describe` runs with at deploy time.
    pub fn detached() -> Arc<HostEnv> {
        Arc::new(HostEnv::default())
    }
}

/// The most keys one `list-keys` returns.
const MAX_LIST_KEYS: u32 = 1000;
/// The longest a tuple-space `read`/`take` waits.
const MAX_TUPLE_WAIT: Duration = Duration::from_secs(300);

/// The data of one activation's store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) env: Arc<HostEnv>,
    pub(crate) scope: ActorScope,
    /// Bytes of linear memory allowed, and used so far (all memories).
    max_memory: u64,
    memory_used: u64,
    pub(crate) memory_exceeded: bool,
    /// When the current export call must end.
    pub(crate) deadline: Option<Instant>,
    pub(crate) timed_out: bool,
    pub(crate) durability: Option<Arc<Durability>>,
    pub(crate) myself: Option<Pid>,
    timers: HashMap<u64, tokio::task::AbortHandle>,
    next_timer: u64,
    /// Side effects of the current message so far (names them for the journal).
    pub(crate) effects: u64,
    /// Whether imports may be called (not during `describe`).
    pub(crate) imports_open: bool,
}

impl Drop for HostState {
    fn drop(&mut self) {
        for (_, t) in self.timers.drain() {
            t.abort();
        }
    }
}

impl HostState {
    pub(crate) fn new(scope: ActorScope, env: Arc<HostEnv>, max_memory: u64) -> Self {
        HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            env,
            scope,
            max_memory,
            memory_used: 0,
            memory_exceeded: false,
            deadline: None,
            timed_out: false,
            durability: None,
            myself: None,
            timers: HashMap::new(),
            next_timer: 0,
            effects: 0,
            imports_open: true,
        }
    }

    fn space(&self, name: &str) -> Result<plexspaces_tuplespace::TupleSpace, WitError> {
        let spaces = self.env.spaces.as_ref().ok_or_else(|| {
            ImportError::new(Code::Unsupported, "this node offers no tuple space").wit()
        })?;
        let id = SpaceId::new(&self.scope.tenant, &self.scope.namespace, name)
            .map_err(|e| ImportError::new(Code::BadRequest, e.to_string()).wit())?;
        Ok(spaces.space(id))
    }

    fn kv(&self) -> Result<(Arc<dyn KeyValue>, plexspaces_storage::Scope), WitError> {
        let kv = self.env.kv.clone().ok_or_else(|| {
            ImportError::new(Code::Unsupported, "this node offers no key-value store").wit()
        })?;
        let scope = plexspaces_storage::Scope::new(&self.scope.tenant, &self.scope.namespace)
            .map_err(|e| ImportError::new(Code::BadRequest, e.to_string()).wit())?;
        Ok((kv, scope))
    }

    fn group(&self, group: &str) -> String {
        format!(
            "wasm/{}/{}/{}",
            crate::escape(&self.scope.tenant),
            crate::escape(&self.scope.namespace),
            group
        )
    }

    fn check_open(&self) -> Result<(), WitError> {
        if self.imports_open {
            Ok(())
        } else {
            Err(ImportError::new(Code::Denied, "imports are closed during describe").wit())
        }
    }

    /// Runs `effect` once per journaled result when the activation is durable (replay
    /// returns the recorded outcome); plainly otherwise.
    async fn effect<T, F>(&mut self, what: &str, effect: F) -> Result<T, WitError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: std::future::Future<Output = Result<T, ImportError>> + Send,
    {
        let Some(d) = self.durability.clone() else {
            return effect.await.map_err(ImportError::wit);
        };
        self.effects += 1;
        let name = format!("{what}#{}", self.effects);
        let recorded: Result<T, ImportError> = d
            .side_effect(&name, |_key| effect)
            .await
            .map_err(|e| ImportError::new(Code::Unavailable, format!("journal: {e}")).wit())?;
        recorded.map_err(ImportError::wit)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime::ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = desired.saturating_sub(current) as u64;
        if self.memory_used.saturating_add(grow) > self.max_memory {
            self.memory_exceeded = true;
            return Ok(false);
        }
        self.memory_used += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Adds WASI (sandboxed: no files, no network, no environment) and the world's imports.
pub(crate) fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)
        .map_err(|e| Error::Config(format!("wasi: {e:#}")))?;
    bindings::Actor::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
        .map_err(|e| Error::Config(format!("imports: {e:#}")))?;
    Ok(())
}

impl types::Host for HostState {}

impl logging::Host for HostState {
    async fn log(&mut self, level: logging::Level, message: String) {
        let s = &self.scope;
        let (tenant, namespace, actor_type, key) = (&s.tenant, &s.namespace, &s.actor_type, &s.key);
        match level {
            logging::Level::Trace => {
                tracing::trace!(tenant, namespace, actor_type, key, "{message}")
            }
            logging::Level::Debug => {
                tracing::debug!(tenant, namespace, actor_type, key, "{message}")
            }
            logging::Level::Info => tracing::info!(tenant, namespace, actor_type, key, "{message}"),
            logging::Level::Warn => tracing::warn!(tenant, namespace, actor_type, key, "{message}"),
            logging::Level::Error => {
                tracing::error!(tenant, namespace, actor_type, key, "{message}")
            }
        }
    }
}

fn envelope(scope: &ActorScope, myself: Option<&Pid>, msg_type: String, payload: Vec<u8>) -> Envelope {
    let mut env = Envelope::new(msg_type, payload, "application/json");
    if let Some(pid) = myself {
        env.sender = pid.id().to_string();
    }
    let _ = scope;
    env
}

impl messaging::Host for HostState {
    async fn self_address(&mut self) -> Address {
        Address {
            actor_type: self.scope.actor_type.clone(),
            key: self.scope.key.clone(),
        }
    }

    async fn tell(
        &mut self,
        to: Address,
        msg_type: String,
        payload: Vec<u8>,
    ) -> Result<(), WitError> {
        self.check_open()?;
        let router = self.router()?;
        let env = envelope(&self.scope, self.myself.as_ref(), msg_type, payload);
        let from = self.scope.clone();
        self.effect("tell", async move {
            router.tell(&from, &to.actor_type, &to.key, env).await
        })
        .await
    }

    async fn ask(
        &mut self,
        to: Address,
        msg_type: String,
        payload: Vec<u8>,
        timeout_ms: u32,
    ) -> Result<Vec<u8>, WitError> {
        self.check_open()?;
        if to.actor_type == self.scope.actor_type
            && (to.key == self.scope.key || (to.key.is_empty() && self.scope.key == "default"))
        {
            return Err(ImportError::new(Code::Conflict, "an actor cannot ask itself").wit());
        }
        let router = self.router()?;
        let ceiling = self.env.ask_timeout.unwrap_or(Duration::from_secs(30));
        let timeout = match timeout_ms {
            0 => ceiling,
            ms => Duration::from_millis(u64::from(ms)).min(ceiling),
        };
        let env = envelope(&self.scope, self.myself.as_ref(), msg_type, payload);
        let from = self.scope.clone();
        self.effect("ask", async move {
            let reply = router
                .ask(&from, &to.actor_type, &to.key, env, timeout)
                .await?;
            Ok(reply.payload.to_vec())
        })
        .await
    }

    async fn spawn(&mut self, to: Address) -> Result<String, WitError> {
        self.check_open()?;
        let router = self.router()?;
        let from = self.scope.clone();
        self.effect("spawn", async move {
            router.spawn(&from, &to.actor_type, &to.key).await
        })
        .await
    }
}

impl HostState {
    fn router(&self) -> Result<Arc<dyn Router>, WitError> {
        self.env.router.clone().ok_or_else(|| {
            ImportError::new(Code::Unsupported, "this node offers no messaging to guests").wit()
        })
    }
}

fn storage_err(e: plexspaces_storage::Error) -> ImportError {
    use plexspaces_storage::Error as S;
    let code = match &e {
        S::Invalid { .. } | S::NotAnInteger { .. } => Code::BadRequest,
        S::NotFound(_) => Code::NotFound,
        S::Fenced { .. } | S::LeaseLost { .. } | S::Contended { .. } => Code::Conflict,
        S::Unsupported(_) => Code::Unsupported,
        e if e.is_retryable() => Code::Unavailable,
        _ => Code::Internal,
    };
    ImportError::new(code, e.to_string())
}

impl key_value::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitError> {
        self.check_open()?;
        let (kv, scope) = self.kv()?;
        kv.get(&scope, &key)
            .await
            .map(|v| v.map(|v| v.value))
            .map_err(|e| storage_err(e).wit())
    }

    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), WitError> {
        self.check_open()?;
        let (kv, scope) = self.kv()?;
        self.effect("kv.put", async move {
            kv.put(&scope, &key, &value, Default::default())
                .await
                .map(|_| ())
                .map_err(storage_err)
        })
        .await
    }

    async fn delete(&mut self, key: String) -> Result<bool, WitError> {
        self.check_open()?;
        let (kv, scope) = self.kv()?;
        self.effect("kv.delete", async move {
            kv.delete(&scope, &key).await.map_err(storage_err)
        })
        .await
    }

    async fn list_keys(&mut self, prefix: String, limit: u32) -> Result<Vec<String>, WitError> {
        self.check_open()?;
        let (kv, scope) = self.kv()?;
        let limit = if limit == 0 { MAX_LIST_KEYS } else { limit.min(MAX_LIST_KEYS) };
        kv.list(&scope, &prefix, limit as usize)
            .await
            .map(|entries| entries.into_iter().map(|(k, _)| k).collect())
            .map_err(|e| storage_err(e).wit())
    }
}

fn space_err(e: plexspaces_tuplespace::Error) -> ImportError {
    let code = match &e {
        plexspaces_tuplespace::Error::Timeout(_) => Code::Timeout,
        e if e.is_retryable() => Code::Unavailable,
        _ => Code::BadRequest,
    };
    ImportError::new(code, e.to_string())
}

fn bad(e: String) -> WitError {
    ImportError::new(Code::BadRequest, e).wit()
}

impl tuple_space::Host for HostState {
    async fn write(&mut self, space: String, fields: String) -> Result<(), WitError> {
        self.check_open()?;
        let space = self.space(&space)?;
        let tuple = crate::tuple_json::tuple_from_json(&fields).map_err(bad)?;
        self.effect("tuple.write", async move {
            space.write(tuple).await.map(|_| ()).map_err(space_err)
        })
        .await
    }

    async fn read(
        &mut self,
        space: String,
        template: String,
        timeout_ms: u32,
    ) -> Result<Option<String>, WitError> {
        self.check_open()?;
        let space = self.space(&space)?;
        let template = crate::tuple_json::template_from_json(&template).map_err(bad)?;
        self.effect("tuple.read", async move {
            let found = if timeout_ms == 0 {
                space.read_if_exists(&template).await
            } else {
                let wait = Duration::from_millis(u64::from(timeout_ms)).min(MAX_TUPLE_WAIT);
                match space.read(&template, wait).await {
                    Err(plexspaces_tuplespace::Error::Timeout(_)) => Ok(None),
                    other => other.map(Some),
                }
            };
            found
                .map(|t| t.as_ref().map(crate::tuple_json::tuple_to_json))
                .map_err(space_err)
        })
        .await
    }

    async fn take(
        &mut self,
        space: String,
        template: String,
        timeout_ms: u32,
    ) -> Result<Option<String>, WitError> {
        self.check_open()?;
        let space = self.space(&space)?;
        let template = crate::tuple_json::template_from_json(&template).map_err(bad)?;
        self.effect("tuple.take", async move {
            let found = if timeout_ms == 0 {
                space.take_if_exists(&template).await
            } else {
                let wait = Duration::from_millis(u64::from(timeout_ms)).min(MAX_TUPLE_WAIT);
                match space.take(&template, wait).await {
                    Err(plexspaces_tuplespace::Error::Timeout(_)) => Ok(None),
                    other => other.map(Some),
                }
            };
            found
                .map(|t| t.as_ref().map(crate::tuple_json::tuple_to_json))
                .map_err(space_err)
        })
        .await
    }

    async fn count(&mut self, space: String, template: String) -> Result<u64, WitError> {
        self.check_open()?;
        let space = self.space(&space)?;
        let template = crate::tuple_json::template_from_json(&template).map_err(bad)?;
        space.count(&template).await.map_err(|e| space_err(e).wit())
    }
}

fn journal_err(e: plexspaces_journal::Error) -> WitError {
    ImportError::new(Code::Unavailable, format!("journal: {e}")).wit()
}

fn wall_clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn fresh_random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // Each `RandomState` is seeded from the OS; not for cryptography (WASI random is).
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(wall_clock_ms());
    h.finish()
}

impl durability::Host for HostState {
    async fn is_durable(&mut self) -> bool {
        self.durability.is_some()
    }

    async fn is_replaying(&mut self) -> bool {
        match &self.durability {
            Some(d) => d.is_replaying().await,
            None => false,
        }
    }

    async fn now_ms(&mut self) -> Result<u64, WitError> {
        match &self.durability {
            Some(d) => d.now_ms().await.map_err(journal_err),
            None => Ok(wall_clock_ms()),
        }
    }

    async fn random_u64(&mut self) -> Result<u64, WitError> {
        match &self.durability {
            Some(d) => d.random_u64().await.map_err(journal_err),
            None => Ok(fresh_random()),
        }
    }

    async fn remember(&mut self, name: String, value: Vec<u8>) -> Result<Vec<u8>, WitError> {
        self.effect(&format!("remember:{name}"), async move { Ok(value) })
            .await
    }
}

impl timers::Host for HostState {
    async fn send_after(
        &mut self,
        delay_ms: u64,
        msg_type: String,
        payload: Vec<u8>,
    ) -> Result<u64, WitError> {
        self.start_timer(delay_ms, None, msg_type, payload)
    }

    async fn send_interval(
        &mut self,
        period_ms: u64,
        msg_type: String,
        payload: Vec<u8>,
    ) -> Result<u64, WitError> {
        if period_ms == 0 {
            return Err(bad("period-ms must be at least 1".into()));
        }
        self.start_timer(period_ms, Some(period_ms), msg_type, payload)
    }

    async fn cancel(&mut self, timer: u64) -> bool {
        match self.timers.remove(&timer) {
            Some(t) => {
                let pending = !t.is_finished();
                t.abort();
                pending
            }
            None => false,
        }
    }
}

/// The most timers one activation may hold.
const MAX_TIMERS: usize = 1024;

impl HostState {
    fn start_timer(
        &mut self,
        delay_ms: u64,
        period_ms: Option<u64>,
        msg_type: String,
        payload: Vec<u8>,
    ) -> Result<u64, WitError> {
        self.check_open()?;
        let pid = self
            .myself
            .clone()
            .ok_or_else(|| ImportError::new(Code::Unsupported, "no actor to deliver to").wit())?;
        self.timers.retain(|_, t| !t.is_finished());
        if self.timers.len() >= MAX_TIMERS {
            return Err(ImportError::new(Code::Unavailable, "too many timers").wit());
        }
        let env = Envelope::new(msg_type, payload, "application/json");
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            loop {
                if pid.try_tell_envelope(env.clone()).is_err() && !pid.is_alive() {
                    return;
                }
                let Some(period) = period_ms else { return };
                tokio::time::sleep(Duration::from_millis(period)).await;
            }
        });
        self.next_timer += 1;
        self.timers.insert(self.next_timer, task.abort_handle());
        Ok(self.next_timer)
    }
}

impl process_groups::Host for HostState {
    async fn join(&mut self, group: String) -> Result<(), WitError> {
        self.check_open()?;
        let (Some(node), Some(pid)) = (self.env.node.clone(), self.myself.clone()) else {
            return Err(ImportError::new(Code::Unsupported, "no process groups here").wit());
        };
        node.groups()
            .join(&self.group(&group), &pid)
            .map_err(|e| ImportError::new(Code::from_kind(e.kind()), e.to_string()).wit())
    }

    async fn leave(&mut self, group: String) -> bool {
        match (self.env.node.clone(), self.myself.clone()) {
            (Some(node), Some(pid)) => node.groups().leave(&self.group(&group), &pid),
            _ => false,
        }
    }

    async fn members(&mut self, group: String) -> Vec<String> {
        match &self.env.node {
            Some(node) => node
                .groups()
                .members(&self.group(&group))
                .iter()
                .map(|p| p.id().to_string())
                .collect(),
            None => Vec::new(),
        }
    }

    async fn broadcast(
        &mut self,
        group: String,
        msg_type: String,
        payload: Vec<u8>,
    ) -> Result<u32, WitError> {
        self.check_open()?;
        let Some(node) = self.env.node.clone() else {
            return Err(ImportError::new(Code::Unsupported, "no process groups here").wit());
        };
        let env = envelope(&self.scope, self.myself.as_ref(), msg_type, payload);
        let group = self.group(&group);
        self.effect("pg.broadcast", async move {
            let n = node.groups().broadcast_envelope(&group, &env);
            Ok(u32::try_from(n).unwrap_or(u32::MAX))
        })
        .await
    }
}
