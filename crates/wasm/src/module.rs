//! A loaded module: a compiled component of the world `plexspaces:actor/actor`, checked
//! against the linker once ([`bindings::ActorPre`]), so each activation only instantiates.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use wasmtime::{Store, UpdateDeadline};

use crate::config::Limits;
use crate::error::{Error, Result};
use crate::host::{bindings, guest_error, ActorScope, HostEnv, HostState};
use crate::runtime::Runtime;

/// The facet a guest names to be journaled and recovered.
pub const DURABILITY_FACET: &str = "durability";
/// Facets a guest may ask for.
pub const KNOWN_FACETS: &[&str] = &[DURABILITY_FACET];

/// What a guest says about itself (`describe`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// Facets its activations need (`"durability"`).
    pub facets: Vec<String>,
    /// The message types it handles (informational).
    pub handlers: Vec<String>,
}

/// A compiled, checked module. Cheap to clone.
#[derive(Clone)]
pub struct Module {
    inner: Arc<ModuleInner>,
}

struct ModuleInner {
    runtime: Runtime,
    digest: String,
    size: usize,
    pre: bindings::ActorPre<HostState>,
    limits: Limits,
    descriptor: Descriptor,
}

impl std::fmt::Debug for Module {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Module")
            .field("digest", &self.inner.digest)
            .field("size", &self.inner.size)
            .field("limits", &self.inner.limits)
            .field("descriptor", &self.inner.descriptor)
            .finish()
    }
}

impl Module {
    pub(crate) fn new(
        runtime: Runtime,
        digest: String,
        size: usize,
        pre: bindings::ActorPre<HostState>,
        limits: Limits,
    ) -> Self {
        Module {
            inner: Arc::new(ModuleInner {
                runtime,
                digest,
                size,
                pre,
                limits,
                descriptor: Descriptor::default(),
            }),
        }
    }

    pub(crate) fn set_descriptor(&mut self, descriptor: Descriptor) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.descriptor = descriptor;
        }
    }

    /// The hex SHA-256 of the module's bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.inner.size
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// What the guest said about itself.
    pub fn descriptor(&self) -> &Descriptor {
        &self.inner.descriptor
    }

    /// Whether the guest asked for the durability facet.
    pub fn wants_durability(&self) -> bool {
        self.inner
            .descriptor
            .facets
            .iter()
            .any(|f| f == DURABILITY_FACET)
    }

    /// A fresh instance for one activation.
    pub(crate) async fn instantiate(&self, scope: ActorScope, env: Arc<HostEnv>) -> Result<Guest> {
        let limits = self.inner.limits;
        let state = HostState::new(scope, env, limits.max_memory_bytes);
        let mut store = Store::new(&self.inner.runtime.inner.engine, state);
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        store.epoch_deadline_callback(|mut ctx| {
            let data = ctx.data_mut();
            match data.deadline {
                Some(d) if Instant::now() >= d => {
                    data.timed_out = true;
                    Err(wasmtime::Error::msg("time limit reached"))
                }
                _ => Ok(UpdateDeadline::Yield(1)),
            }
        });
        let mut guest = Guest {
            store,
            bindings: None,
            limits,
        };
        guest.arm();
        let instance = self.inner.pre.instantiate_async(&mut guest.store).await;
        let bindings = instance.map_err(|e| match guest.classify(e) {
            Error::Trap(m) => Error::Instantiate(m),
            other => other,
        })?;
        guest.bindings = Some(bindings);
        Ok(guest)
    }

    /// Instantiates once (imports closed) and asks the guest to describe itself; checks
    /// the facets it names.
    pub(crate) async fn call_describe(&self, env: Arc<HostEnv>) -> Result<Descriptor> {
        let scope = ActorScope {
            tenant: "default".into(),
            namespace: "default".into(),
            actor_type: "describe".into(),
            key: "describe".into(),
        };
        let mut guest = self.instantiate(scope, env).await?;
        guest.store.data_mut().imports_open = false;
        let d = guest.describe().await?;
        if let Some(unknown) = d
            .facets
            .iter()
            .find(|f| !KNOWN_FACETS.contains(&f.as_str()))
        {
            return Err(Error::World(format!(
                "describe names the unknown facet {unknown:?} (known: {KNOWN_FACETS:?})"
            )));
        }
        Ok(d)
    }
}

fn gone() -> Error {
    Error::Instantiate("the instance is gone".into())
}

/// One live instance: its store and its typed exports.
pub(crate) struct Guest {
    pub(crate) store: Store<HostState>,
    bindings: Option<bindings::Actor>,
    limits: Limits,
}

impl Guest {
    /// Starts the time budget of one export call.
    fn arm(&mut self) {
        let data = self.store.data_mut();
        data.deadline = Some(Instant::now() + self.limits.call_timeout());
        data.timed_out = false;
        data.memory_exceeded = false;
        self.store.set_epoch_deadline(1);
    }

    /// What a failed call means: the time limit, the memory limit, or a trap.
    fn classify(&self, e: wasmtime::Error) -> Error {
        let data = self.store.data();
        if data.timed_out {
            Error::TimeLimit(self.limits.call_timeout())
        } else if data.memory_exceeded {
            Error::MemoryLimit(self.limits.max_memory_bytes)
        } else {
            Error::Trap(format!("{e:#}"))
        }
    }


    pub(crate) async fn describe(&mut self) -> Result<Descriptor> {
        self.arm();
        let exports = self.bindings.as_ref().ok_or_else(gone)?;
        let d = exports
            .call_describe(&mut self.store)
            .await
            .map_err(|e| self.classify(e))?;
        Ok(Descriptor {
            facets: d.facets,
            handlers: d.handlers,
        })
    }

    pub(crate) async fn init(&mut self, config: &[u8]) -> Result<()> {
        self.arm();
        let exports = self.bindings.as_ref().ok_or_else(gone)?;
        let r = exports
            .call_init(&mut self.store, config)
            .await
            .map_err(|e| self.classify(e))?;
        r.map_err(|e| {
            let (code, message) = guest_error(e);
            Error::Guest {
                code: code.as_str(),
                message,
            }
        })
    }

    /// One message: `Ok(Ok(reply))`, `Ok(Err(guest error))`, or `Err` when the instance
    /// failed (and must be dropped).
    pub(crate) async fn handle(
        &mut self,
        msg_type: &str,
        payload: &[u8],
    ) -> Result<Result<Vec<u8>, (crate::Code, String)>> {
        self.arm();
        self.store.data_mut().effects = 0;
        let exports = self.bindings.as_ref().ok_or_else(gone)?;
        let r = exports
            .call_handle(&mut self.store, msg_type, payload)
            .await
            .map_err(|e| self.classify(e))?;
        Ok(r.map_err(guest_error))
    }

    pub(crate) async fn snapshot(&mut self) -> Result<Vec<u8>> {
        self.arm();
        let exports = self.bindings.as_ref().ok_or_else(gone)?;
        exports
            .call_snapshot(&mut self.store)
            .await
            .map_err(|e| self.classify(e))
    }

    pub(crate) async fn restore(&mut self, state: &[u8]) -> Result<()> {
        self.arm();
        let exports = self.bindings.as_ref().ok_or_else(gone)?;
        let r = exports
            .call_restore(&mut self.store, state)
            .await
            .map_err(|e| self.classify(e))?;
        r.map_err(|e| {
            let (code, message) = guest_error(e);
            Error::Guest {
                code: code.as_str(),
                message,
            }
        })
    }
}
