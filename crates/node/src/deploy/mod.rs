//! Deploying WASM actors: `POST /api/v1/deploy` ([`http`]), `plexspaces.v1.DeployService`
//! ([`grpc`]) and the service under both ([`Deployments`]).
//!
//! A deployment is a WebAssembly component of the world `plexspaces:actor/actor` (see
//! `docs/wasm.md`) registered as a virtual actor type of **one tenant and namespace**: the
//! caller's tenant (from its verified token, `default` with auth off) and the namespace it
//! names. It is invoked through the actor routes like any type
//! (`/api/v1/actors/{namespace}/{actor_type}/invoke?msg_type=...&key=...`).
//!
//! Rules (each kept by [`Deployments`]):
//! - **Precedence**: in its tenant and namespace a deployed type takes precedence over a
//!   node-wide (built-in or embedded) type of the same name
//!   ([`crate::registry::Registry::register_scoped`]); elsewhere the node-wide type is
//!   unchanged. Deploying `counter` in `default/default` replaces the built-in demo counter
//!   there, and undeploying it brings the built-in back.
//! - **Versions**: each deploy of the same `(tenant, namespace, actor_type)` gets the next
//!   version. A redeploy deactivates the type's live activations there (each after its
//!   in-flight messages; a durable one saves its snapshot), so every message after the
//!   redeploy answered runs the new version; a durable actor's state is carried over
//!   through the new version's `restore` export. Undeploy deactivates them too.
//! - **Persistence**: modules are kept by a [`ModuleStore`] (by default [`FsModuleStore`]
//!   under `<data_dir>/wasm/modules`) and registered again when the node starts, before it
//!   serves; compiled code is cached under `<data_dir>/wasm/cache`, so a restart does not
//!   compile again.
//! - **Bad uploads** are refused before anything is stored: not WebAssembly, a core module
//!   (not a component), a component that does not implement the world (a missing export),
//!   a guest that asks for an unknown facet: 400 with the reason; over
//!   `wasm.max_module_bytes`: 413.
//! - **Durability**: a guest whose `describe` names the `durability` facet is journaled and
//!   recovered like a durable Rust actor when the node runs with
//!   `wasm.durability_enabled = true`; otherwise it runs without the facet and the deploy
//!   answer says so in `notes`. Its journal stream is its own (`wasm:<type>`), never a
//!   built-in type's of the same name.
//!
//! The host (`plexspaces-wasm`, wasmtime) is compiled in with the node's `wasm` cargo
//! feature (the `plexspaces` binary enables it). Without it, deploy answers `unsupported`
//! (501) and stored deployments are listed but not served.

pub mod grpc;
pub mod http;
pub mod multipart;
pub mod store;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::registry::Registry;
use crate::service::Caller;

pub use store::{FsModuleStore, ModuleStore};

/// The longest namespace or actor type name of a deployment, in bytes.
pub const MAX_NAME: usize = 128;

/// `[wasm]`: the WASM host of deployed actors (docs/wasm.md, docs/configuration.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WasmConfig {
    /// Journal and recover guests that ask for the `durability` facet
    /// (`PLEXSPACES_WASM_DURABILITY`). Default false.
    pub durability_enabled: bool,
    /// Where compiled components are cached (unset: `<data_dir>/wasm/cache`).
    pub cache_dir: Option<PathBuf>,
    /// wasmtime's pooling allocator (memory reserved up front for `max_instances`).
    pub pooling: bool,
    /// The most live WASM activations (with pooling). Default 1000.
    pub max_instances: u32,
    /// The largest module accepted, in bytes (larger: 413). Default 64 MiB.
    pub max_module_bytes: usize,
    /// The memory of one activation unless the deploy names another, in bytes.
    /// Default 64 MiB.
    pub memory_bytes: u64,
    /// The most memory a deploy may give one activation, in bytes. Default 256 MiB.
    pub max_memory_bytes: u64,
    /// The time one export call may run unless the deploy names another, in ms.
    /// Default 10000.
    pub call_timeout_ms: u64,
    /// The longest `call_timeout_ms` a deploy may ask for. Default 60000.
    pub max_call_timeout_ms: u64,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            durability_enabled: false,
            cache_dir: None,
            pooling: true,
            max_instances: 1000,
            max_module_bytes: 64 << 20,
            memory_bytes: 64 << 20,
            max_memory_bytes: 256 << 20,
            call_timeout_ms: 10_000,
            max_call_timeout_ms: 60_000,
        }
    }
}

impl WasmConfig {
    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(Error::Config(format!("wasm.{m}")));
        if self.max_module_bytes == 0 {
            return bad("max_module_bytes must be at least 1");
        }
        if self.max_instances == 0 {
            return bad("max_instances must be at least 1");
        }
        if self.memory_bytes == 0 || self.memory_bytes > self.max_memory_bytes {
            return bad("memory_bytes must be 1..=max_memory_bytes");
        }
        if self.call_timeout_ms == 0 || self.call_timeout_ms > self.max_call_timeout_ms {
            return bad("call_timeout_ms must be 1..=max_call_timeout_ms");
        }
        Ok(())
    }

    /// The largest deploy request body: the module plus room for the other fields.
    pub fn max_upload_bytes(&self) -> usize {
        self.max_module_bytes.saturating_add(1 << 20)
    }
}

/// One deployed type: what the node keeps about it and answers with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Deployment {
    /// The tenant (the deployer's).
    pub tenant: String,
    /// The namespace.
    pub namespace: String,
    /// The type name it is invoked by.
    pub actor_type: String,
    /// 1 for the first deploy, one more for each redeploy.
    pub version: u64,
    /// The hex SHA-256 of the module.
    pub digest: String,
    /// The module's size.
    pub size_bytes: u64,
    /// The facets the guest asked for (`describe`).
    pub facets: Vec<String>,
    /// The handlers the guest lists (`describe`; informational).
    pub handlers: Vec<String>,
    /// Whether activations are journaled (asked for, and enabled on this node).
    pub durable: bool,
    /// The memory limit of one activation.
    pub max_memory_bytes: u64,
    /// The time limit of one export call, in ms.
    pub call_timeout_ms: u64,
    /// The JSON handed to the guest's `init`.
    pub config: serde_json::Value,
    /// When it was deployed (ms since the Unix epoch).
    pub deployed_at_ms: u64,
}

/// A deploy request, as a transport received it.
#[derive(Debug, Clone, Default)]
pub struct DeployRequest {
    /// The namespace (empty: `default`).
    pub namespace: String,
    /// The type name.
    pub actor_type: String,
    /// The component.
    pub wasm: Bytes,
    /// The memory limit of one activation (none: `wasm.memory_bytes`).
    pub max_memory_bytes: Option<u64>,
    /// The time limit of one export call (none: `wasm.call_timeout_ms`).
    pub call_timeout_ms: Option<u64>,
    /// JSON for the guest's `init` (none: `{}`).
    pub config: Option<serde_json::Value>,
}

/// What a deploy did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployed {
    /// The new deployment.
    #[serde(flatten)]
    pub deployment: Deployment,
    /// The version it replaced (a redeploy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_version: Option<u64>,
    /// Live activations deactivated so that the next message runs this version.
    pub deactivated: u64,
    /// Things the deployer should know (a durability request this node does not honour).
    pub notes: Vec<String>,
}

/// A name a deployment is known by: 1 to [`MAX_NAME`] bytes of letters, digits, `.`, `_`
/// and `-`.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(Error::BadRequest(format!(
            "{what} {name:?} must be 1 to {MAX_NAME} letters, digits, '.', '_' or '-'"
        )));
    }
    Ok(())
}

fn namespace_or_default(namespace: &str) -> &str {
    if namespace.is_empty() {
        "default"
    } else {
        namespace
    }
}

type Scoped = (String, String, String);

fn scoped(tenant: &str, namespace: &str, actor_type: &str) -> Scoped {
    (
        tenant.to_owned(),
        namespace.to_owned(),
        actor_type.to_owned(),
    )
}

struct Inner {
    config: WasmConfig,
    store: Arc<dyn ModuleStore>,
    registry: Registry,
    current: RwLock<HashMap<Scoped, Deployment>>,
    /// Serializes deploys and undeploys (versions are assigned under it).
    writes: tokio::sync::Mutex<()>,
    #[cfg(feature = "wasm")]
    host: host::Host,
}

/// The deploy service. Cheap to clone.
#[derive(Clone)]
pub struct Deployments {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Deployments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployments")
            .field("deployed", &self.inner.current.read().len())
            .finish_non_exhaustive()
    }
}

/// What the deploy service needs from the node.
pub struct DeploymentsOptions {
    /// `[wasm]`.
    pub config: WasmConfig,
    /// The node's data dir (modules and the compile cache live under `<data_dir>/wasm`).
    pub data_dir: PathBuf,
    /// Where modules are kept (none: [`FsModuleStore`] under the data dir).
    pub store: Option<Arc<dyn ModuleStore>>,
    /// The actors service: activations, and messaging for guests.
    pub actors: crate::actors::Actors,
    /// The durability facets of durable activations.
    pub durability: crate::registry::FacetFactory,
    /// The node's own facets of every activation.
    pub node_facets: crate::registry::NodeFacetFactory,
    /// Key-value entries for guests.
    pub kv: Arc<dyn plexspaces_storage::KeyValue>,
    /// The tuple spaces for guests.
    pub spaces: plexspaces_tuplespace::Spaces,
    /// The longest `ask` a guest may wait.
    pub ask_timeout: std::time::Duration,
}

impl std::fmt::Debug for DeploymentsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentsOptions")
            .field("config", &self.config)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Deployments {
    /// The service; call [`Deployments::restore`] before serving.
    pub fn start(options: DeploymentsOptions) -> Result<Deployments> {
        options.config.validate()?;
        let store = match options.store.clone() {
            Some(store) => store,
            None => Arc::new(FsModuleStore::open(
                options.data_dir.join("wasm").join("modules"),
            )?) as Arc<dyn ModuleStore>,
        };
        let registry = options.actors.registry().clone();
        #[cfg(feature = "wasm")]
        let host = host::Host::start(&options)?;
        Ok(Deployments {
            inner: Arc::new(Inner {
                config: options.config,
                store,
                registry,
                current: RwLock::new(HashMap::new()),
                writes: tokio::sync::Mutex::new(()),
                #[cfg(feature = "wasm")]
                host,
            }),
        })
    }

    /// `[wasm]`.
    pub fn config(&self) -> &WasmConfig {
        &self.inner.config
    }

    /// Whether this node can run WASM actors (built with the `wasm` feature).
    pub fn supported(&self) -> bool {
        cfg!(feature = "wasm")
    }

    /// Registers every stored deployment again (at start, before serving). A module that no
    /// longer loads is logged and skipped; the node serves the others. Returns how many
    /// were registered.
    pub async fn restore(&self) -> Result<usize> {
        let stored = self.inner.store.list().await?;
        let mut n = 0;
        for d in stored {
            match self.reload(&d).await {
                Ok(()) => n += 1,
                Err(e) => tracing::warn!(
                    tenant = %d.tenant,
                    namespace = %d.namespace,
                    actor_type = %d.actor_type,
                    version = d.version,
                    error = %e.public_message(),
                    "stored deployment not restored"
                ),
            }
        }
        if n > 0 {
            tracing::info!(deployments = n, "deployed wasm actor types restored");
        }
        Ok(n)
    }

    #[cfg(feature = "wasm")]
    async fn reload(&self, d: &Deployment) -> Result<()> {
        let Some((d, wasm)) = self
            .inner
            .store
            .get(&d.tenant, &d.namespace, &d.actor_type)
            .await?
        else {
            return Err(Error::NotFound("the module vanished".into()));
        };
        let module = self
            .inner
            .host
            .load(&wasm, d.max_memory_bytes, d.call_timeout_ms)
            .await?;
        let ty = self.inner.host.actor_type(&d, module)?;
        self.inner
            .registry
            .register_scoped(&d.tenant, &d.namespace, ty);
        self.inner
            .current
            .write()
            .insert(scoped(&d.tenant, &d.namespace, &d.actor_type), d);
        Ok(())
    }

    #[cfg(not(feature = "wasm"))]
    async fn reload(&self, d: &Deployment) -> Result<()> {
        // Listed, not served: this node cannot run it.
        self.inner
            .current
            .write()
            .insert(scoped(&d.tenant, &d.namespace, &d.actor_type), d.clone());
        Err(unsupported())
    }

    /// Deploys (or redeploys) a module for the caller's tenant.
    pub async fn deploy(&self, caller: &Caller, request: DeployRequest) -> Result<Deployed> {
        let namespace = namespace_or_default(&request.namespace).to_owned();
        check_name("namespace", &namespace)?;
        check_name("actor_type", &request.actor_type)?;
        let config = &self.inner.config;
        if request.wasm.is_empty() {
            return Err(Error::BadRequest("the wasm module is empty".into()));
        }
        if request.wasm.len() > config.max_module_bytes {
            return Err(Error::PayloadTooLarge(config.max_module_bytes));
        }
        let init = request.config.unwrap_or_else(|| serde_json::json!({}));
        self.deploy_checked(
            caller,
            namespace,
            request.actor_type,
            request.wasm,
            init,
            request.max_memory_bytes,
            request.call_timeout_ms,
        )
        .await
    }

    #[cfg(not(feature = "wasm"))]
    #[allow(clippy::too_many_arguments)]
    async fn deploy_checked(
        &self,
        _caller: &Caller,
        _namespace: String,
        _actor_type: String,
        _wasm: Bytes,
        _init: serde_json::Value,
        _memory: Option<u64>,
        _timeout: Option<u64>,
    ) -> Result<Deployed> {
        Err(unsupported())
    }

    #[cfg(feature = "wasm")]
    #[allow(clippy::too_many_arguments)]
    async fn deploy_checked(
        &self,
        caller: &Caller,
        namespace: String,
        actor_type: String,
        wasm: Bytes,
        init: serde_json::Value,
        memory: Option<u64>,
        timeout: Option<u64>,
    ) -> Result<Deployed> {
        let config = &self.inner.config;
        let memory = memory.unwrap_or(config.memory_bytes);
        let timeout = timeout.unwrap_or(config.call_timeout_ms);
        // Checked and compiled before anything is stored: a bad module changes nothing.
        let module = self.inner.host.load(&wasm, memory, timeout).await?;
        let descriptor = module.descriptor().clone();
        let wants_durability = module.wants_durability();
        let durable = wants_durability && config.durability_enabled;
        let mut notes = Vec::new();
        if wants_durability && !durable {
            notes.push(
                "the guest asks for the durability facet, but this node runs with \
                 wasm.durability_enabled = false: its state is not journaled"
                    .to_owned(),
            );
        }
        let _writes = self.inner.writes.lock().await;
        let key = scoped(&caller.tenant, &namespace, &actor_type);
        let previous = self.inner.current.read().get(&key).map(|d| d.version);
        let previous = match previous {
            Some(v) => Some(v),
            None => self
                .inner
                .store
                .get(&caller.tenant, &namespace, &actor_type)
                .await?
                .map(|(d, _)| d.version),
        };
        let deployment = Deployment {
            tenant: caller.tenant.clone(),
            namespace: namespace.clone(),
            actor_type: actor_type.clone(),
            version: previous.unwrap_or(0) + 1,
            digest: module.digest().to_owned(),
            size_bytes: wasm.len() as u64,
            facets: descriptor.facets,
            handlers: descriptor.handlers,
            durable,
            max_memory_bytes: memory,
            call_timeout_ms: timeout,
            config: init,
            deployed_at_ms: now_ms(),
        };
        let ty = self.inner.host.actor_type(&deployment, module)?;
        self.inner.store.put(&deployment, &wasm).await?;
        self.inner
            .registry
            .register_scoped(&caller.tenant, &namespace, ty);
        self.inner.current.write().insert(key, deployment.clone());
        // Live activations (of the older version, or of a built-in type this one now
        // shadows) end after their in-flight messages; the next message runs this version.
        let deactivated = self
            .inner
            .registry
            .deactivate_type(&caller.tenant, &namespace, &actor_type)
            .await as u64;
        tracing::info!(
            tenant = %caller.tenant,
            namespace = %namespace,
            actor_type = %actor_type,
            version = deployment.version,
            digest = %deployment.digest,
            durable,
            "wasm actor type deployed"
        );
        Ok(Deployed {
            deployment,
            replaced_version: previous,
            deactivated,
            notes,
        })
    }

    /// The caller's deployments, optionally of one namespace (empty: `default`); a namespace
    /// no deployment could have is a `bad_request`, not an empty list.
    pub fn list(&self, caller: &Caller, namespace: Option<&str>) -> Result<Vec<Deployment>> {
        let namespace = namespace.map(namespace_or_default);
        if let Some(ns) = namespace {
            check_name("namespace", ns)?;
        }
        let mut out: Vec<Deployment> = self
            .inner
            .current
            .read()
            .values()
            .filter(|d| d.tenant == caller.tenant)
            .filter(|d| namespace.is_none_or(|ns| d.namespace == ns))
            .cloned()
            .collect();
        out.sort_by(|a, b| (&a.namespace, &a.actor_type).cmp(&(&b.namespace, &b.actor_type)));
        Ok(out)
    }

    /// The caller's deployment of `actor_type` in `namespace`, or `not_found`.
    pub fn describe(
        &self,
        caller: &Caller,
        namespace: &str,
        actor_type: &str,
    ) -> Result<Deployment> {
        let namespace = namespace_or_default(namespace);
        self.inner
            .current
            .read()
            .get(&scoped(&caller.tenant, namespace, actor_type))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("no deployment {namespace}/{actor_type}")))
    }

    /// Removes the caller's deployment of `actor_type` in `namespace`: its live activations
    /// are deactivated (durable state stays in the journal), the module is deleted, and a
    /// node-wide type of that name, if any, is what the name means again. Returns the
    /// removed deployment and how many activations were deactivated.
    pub async fn undeploy(
        &self,
        caller: &Caller,
        namespace: &str,
        actor_type: &str,
    ) -> Result<(Deployment, u64)> {
        let namespace = namespace_or_default(namespace).to_owned();
        let _writes = self.inner.writes.lock().await;
        let key = scoped(&caller.tenant, &namespace, actor_type);
        let removed = self.inner.current.write().remove(&key);
        let Some(removed) = removed else {
            return Err(Error::NotFound(format!(
                "no deployment {namespace}/{actor_type}"
            )));
        };
        self.inner
            .registry
            .unregister_scoped(&caller.tenant, &namespace, actor_type);
        let deactivated = self
            .inner
            .registry
            .deactivate_type(&caller.tenant, &namespace, actor_type)
            .await as u64;
        self.inner
            .store
            .remove(&caller.tenant, &namespace, actor_type)
            .await?;
        tracing::info!(tenant = %caller.tenant, namespace = %namespace, actor_type, "wasm actor type undeployed");
        Ok((removed, deactivated))
    }
}

#[cfg(not(feature = "wasm"))]
fn unsupported() -> Error {
    Error::Core(plexspaces_core::Error::Unsupported(
        "this node was built without the `wasm` feature: it cannot run WASM actors".into(),
    ))
}

#[cfg(feature = "wasm")]
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(feature = "wasm")]
mod host;
