//! The node side of the WASM host (the `wasm` feature): the wasmtime runtime of the node,
//! what guests reach through their imports (messaging through the actors service, the
//! node's key-value store and tuple spaces, process groups), and the actor type of a
//! loaded module.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plexspaces_core::Envelope;
use plexspaces_wasm::{
    ActorScope, Code, HostEnv, ImportError, Limits, Module, Router, Runtime, RuntimeOptions,
    WasmActor,
};

use crate::actors::{Actors, Invocation, Reply};
use crate::deploy::{Deployment, DeploymentsOptions};
use crate::error::{Error, Result};
use crate::registry::{ActivationKey, ActorType, FacetFactory, NodeFacetFactory};
use crate::service::Caller;

pub(crate) struct Host {
    runtime: Runtime,
    env: Arc<HostEnv>,
    durability: FacetFactory,
    node_facets: NodeFacetFactory,
    max_module_bytes: usize,
}

impl Host {
    pub(crate) fn start(options: &DeploymentsOptions) -> Result<Host> {
        let c = &options.config;
        let cache_dir = c
            .cache_dir
            .clone()
            .unwrap_or_else(|| options.data_dir.join("wasm").join("cache"));
        let runtime = Runtime::start(RuntimeOptions {
            cache_dir: Some(cache_dir),
            pooling: c.pooling,
            max_instances: c.max_instances,
            max_memory_bytes: c.max_memory_bytes,
            max_call_timeout_ms: c.max_call_timeout_ms,
            max_module_bytes: c.max_module_bytes,
            ..RuntimeOptions::default()
        })
        .map_err(|e| Error::Config(format!("wasm: {e}")))?;
        let env = Arc::new(HostEnv {
            router: Some(Arc::new(NodeRouter {
                actors: options.actors.clone(),
            })),
            kv: Some(options.kv.clone()),
            spaces: Some(options.spaces.clone()),
            node: Some(options.actors.registry().node().clone()),
            ask_timeout: Some(options.ask_timeout),
        });
        Ok(Host {
            runtime,
            env,
            durability: options.durability.clone(),
            node_facets: options.node_facets.clone(),
            max_module_bytes: c.max_module_bytes,
        })
    }

    /// Checks and compiles (or loads from the cache) a module with its limits.
    pub(crate) async fn load(&self, wasm: &[u8], memory: u64, timeout_ms: u64) -> Result<Module> {
        let limits = Limits {
            max_memory_bytes: memory,
            call_timeout_ms: timeout_ms,
        };
        self.runtime
            .load(wasm, limits)
            .await
            .map_err(|e| load_error(e, self.max_module_bytes))
    }

    /// The virtual actor type serving `deployment` with `module`.
    pub(crate) fn actor_type(&self, deployment: &Deployment, module: Module) -> Result<ActorType> {
        let env = self.env.clone();
        let init = serde_json::to_vec(&deployment.config)
            .map_err(|e| Error::BadRequest(format!("config: {e}")))?;
        let ty = ActorType::virtual_actor(&deployment.actor_type, move |key: &ActivationKey| {
            let scope = ActorScope {
                tenant: key.tenant.clone(),
                namespace: key.namespace.clone(),
                actor_type: key.actor_type.clone(),
                key: key.key.clone(),
            };
            WasmActor::new(module.clone(), scope, env.clone(), init.clone())
        });
        let ty = if deployment.durable {
            let durability = self.durability.clone();
            ty.facets(move |key: &ActivationKey| {
                // Its own journal stream: never a built-in type's of the same name.
                let mut own = key.clone();
                own.actor_type = format!("wasm:{}", key.actor_type);
                durability(&own)
            })
        } else {
            ty
        };
        Ok(ty.attach_node_facets(self.node_facets.clone()))
    }
}

/// What a refused module means to the deployer.
fn load_error(e: plexspaces_wasm::Error, max_module_bytes: usize) -> Error {
    use plexspaces_wasm::Error as W;
    match e {
        W::TooLarge { .. } => Error::PayloadTooLarge(max_module_bytes),
        W::Instantiate(m) => Error::Overloaded(format!("cannot instantiate the module: {m}")),
        W::Cache(m) => Error::Io(format!("wasm module cache: {m}")),
        // Everything else is about the module itself (it does not describe itself
        // without trapping or in time, for example): the deployer's to fix.
        other => Error::BadRequest(other.to_string()),
    }
}

/// Messaging for guests: a target is resolved in the caller's own tenant and namespace
/// and invoked through the actors service, like an HTTP invocation.
struct NodeRouter {
    actors: Actors,
}

fn import_error(e: Error) -> ImportError {
    ImportError::new(Code::from_kind(e.kind()), e.public_message())
}

impl NodeRouter {
    fn address(&self, from: &ActorScope, actor_type: &str, key: &str) -> Result<ActivationKey> {
        let caller = Caller {
            tenant: from.tenant.clone(),
            operator: false,
            subject: None,
            roles: Vec::new(),
        };
        self.actors
            .address(&caller, &from.namespace, actor_type, key)
    }

    async fn invoke(
        &self,
        from: &ActorScope,
        actor_type: &str,
        key: &str,
        env: Envelope,
        reply: Reply,
    ) -> std::result::Result<Option<Envelope>, ImportError> {
        let target = self.address(from, actor_type, key).map_err(import_error)?;
        let invocation = Invocation {
            msg_type: env.msg_type.clone(),
            payload: env.payload.clone(),
            content_type: env.content_type.clone(),
            idempotency_key: None,
            // A guest's message is internal to its tenant: it carries no caller identity (an
            // `AuthorizationFacet` sees it as `internal`).
            caller: None,
            reply,
        };
        self.actors
            .invoke(&target, invocation)
            .await
            .map_err(import_error)
    }
}

#[async_trait]
impl Router for NodeRouter {
    async fn tell(
        &self,
        from: &ActorScope,
        actor_type: &str,
        key: &str,
        env: Envelope,
    ) -> std::result::Result<(), ImportError> {
        self.invoke(from, actor_type, key, env, Reply::Tell)
            .await
            .map(|_| ())
    }

    async fn ask(
        &self,
        from: &ActorScope,
        actor_type: &str,
        key: &str,
        env: Envelope,
        timeout: Duration,
    ) -> std::result::Result<Envelope, ImportError> {
        self.invoke(from, actor_type, key, env, Reply::Ask(timeout))
            .await?
            .ok_or_else(|| ImportError::new(Code::Internal, "no reply"))
    }

    async fn spawn(
        &self,
        from: &ActorScope,
        actor_type: &str,
        key: &str,
    ) -> std::result::Result<String, ImportError> {
        let target = self.address(from, actor_type, key).map_err(import_error)?;
        self.actors
            .spawn(&target)
            .await
            .map(|(id, _)| id)
            .map_err(import_error)
    }
}
