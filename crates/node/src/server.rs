//! Starting and stopping a node with its HTTP and gRPC listeners.
//!
//! `NodeServer::start(config, types)` (or [`NodeServer::builder`], which also takes
//! workflow types) binds both listeners, starts the runtime node and its workflow engine,
//! and returns a [`ServerHandle`]. `handle.shutdown()` is the graceful path (also taken on
//! SIGTERM/SIGINT by [`ServerHandle::run_until_signal`]): `/ready` and new invocations
//! answer 503, the channel inboxes stop taking messages (finishing and acking the ones in
//! flight), the listeners stop accepting, in-flight requests finish, then the node stops
//! every actor (each saving its state through its facets).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use plexspaces_cluster::placement::{Placement, PlacementTable};
use plexspaces_core::{MailboxConfig, MetricsFacet, Node, TracingFacet};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actors::Actors;
use crate::auth::Authenticator;
use crate::builtin;
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::grpc;
use crate::http::{self, HttpMetrics};
use crate::registry::{ActorType, Registry, RegistryOptions};
use crate::service::{Gate, NodeServices, Telemetry};
use crate::state::NodeJournal;
use crate::tuplespace::TupleSpaces;
use crate::workflows::Workflows;
use crate::workflows::{NodeWorkflows, WorkflowType};

/// Starts nodes.
#[derive(Debug)]
pub struct NodeServer;

/// What a node starts with besides its configuration: the library user's actor types and
/// workflow types, registered after the built-in ones and before the node serves requests.
#[derive(Debug)]
pub struct NodeServerBuilder {
    config: NodeConfig,
    actor_types: Vec<ActorType>,
    workflow_types: Vec<WorkflowType>,
    placement: PlacementTable,
}

impl NodeServerBuilder {
    /// Places the first activation of `actor_type`'s keys with `placement` in a cluster
    /// with an activation directory (see [`plexspaces_cluster::placement`]). The node's
    /// config (`[virtual_actors.placement.<type>]`) wins over code for the same type, so
    /// an operator can change a placement without a rebuild.
    pub fn placement(mut self, actor_type: &str, placement: Placement) -> Self {
        self.placement.set(actor_type, placement);
        self
    }

    /// Adds an actor type.
    pub fn actor_type(mut self, actor_type: ActorType) -> Self {
        self.actor_types.push(actor_type);
        self
    }

    /// Adds actor types.
    pub fn actor_types(mut self, actor_types: impl IntoIterator<Item = ActorType>) -> Self {
        self.actor_types.extend(actor_types);
        self
    }

    /// Adds a workflow type (one version of it; register each version a running workflow
    /// may still need). Workflows of this type are resumed when the node starts.
    pub fn workflow<W: plexspaces_workflow::WorkflowBehavior>(mut self, workflow: W) -> Self {
        self.workflow_types.push(WorkflowType::new(workflow));
        self
    }

    /// Adds prepared workflow types.
    pub fn workflow_types(mut self, types: impl IntoIterator<Item = WorkflowType>) -> Self {
        self.workflow_types.extend(types);
        self
    }

    /// Starts the node (see [`NodeServer::start`]).
    pub async fn start(self) -> Result<ServerHandle> {
        NodeServer::start_with(
            self.config,
            self.actor_types,
            self.workflow_types,
            self.placement,
        )
        .await
    }
}

/// A running node with its listeners. Cheap to clone.
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    node: Node,
    registry: Registry,
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    draining: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    tasks: tokio::sync::Mutex<Vec<JoinHandle<()>>>,
    journal: NodeJournal,
    workflows: NodeWorkflows,
    cluster: Option<plexspaces_cluster::ClusterHandle>,
    placement: PlacementTable,
    reminders: tokio::sync::Mutex<Option<plexspaces_journal::ReminderSchedulerHandle>>,
    inboxes: tokio::sync::Mutex<Option<crate::inboxes::NodeInboxes>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("node", &self.inner.node.name())
            .field("http", &self.inner.http_addr)
            .field("grpc", &self.inner.grpc_addr)
            .finish()
    }
}

impl NodeServer {
    /// Starts a node: the built-in `counter` and `echo` types plus `types`, the journal
    /// (SQLite under the data dir, or PostgreSQL), the workflow engine with the built-in
    /// workflow types (see [`crate::workflows`]), HTTP and gRPC listeners on the
    /// configured addresses (port 0 picks a free one). Types marked
    /// [`ActorType::durable`] get a durability facet per activation.
    pub async fn start(config: NodeConfig, types: Vec<ActorType>) -> Result<ServerHandle> {
        Self::start_with(config, types, Vec::new(), PlacementTable::default()).await
    }

    /// A node to start with more actor and workflow types, registered before it serves:
    ///
    /// ```no_run
    /// use plexspaces_node::{NodeConfig, NodeServer};
    /// use plexspaces_workflow::{workflow_fn, WorkflowContext};
    ///
    /// # async fn run() -> Result<(), plexspaces_node::Error> {
    /// let double = workflow_fn("double", |_ctx: WorkflowContext, n: i64| async move {
    ///     Ok(n.saturating_mul(2))
    /// });
    /// let handle = NodeServer::builder(NodeConfig::default())
    ///     .workflow(double)
    ///     .start()
    ///     .await?;
    /// // curl -X POST http://127.0.0.1:8094/api/v1/workflows/default \
    /// //   -d '{"workflow_type": "double", "workflow_id": "d1", "input": 21}'
    /// handle.run_until_signal().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(config: NodeConfig) -> NodeServerBuilder {
        NodeServerBuilder {
            config,
            actor_types: Vec::new(),
            workflow_types: Vec::new(),
            placement: PlacementTable::default(),
        }
    }

    async fn start_with(
        config: NodeConfig,
        types: Vec<ActorType>,
        workflow_types: Vec<WorkflowType>,
        code_placement: PlacementTable,
    ) -> Result<ServerHandle> {
        config.validate()?;
        // Placement per type: from code, then the config's entries over it.
        let mut placement = code_placement;
        for (actor_type, p) in &config.virtual_actors.placement.types {
            placement.set(actor_type, p.clone());
        }
        let mut config = config;
        let http_addr = config.http_addr()?;
        let grpc_addr = config.grpc_addr()?;
        let no_key = config.auth.jwt_secret.is_none() && config.auth.jwt_public_key_file.is_none();
        if !config.auth.disabled && no_key {
            // Embedded defaults: a node on loopback only with no key runs open for local
            // work; anywhere else, a key (or an explicit opt-out) is required.
            if http_addr.ip().is_loopback() && grpc_addr.ip().is_loopback() {
                config.auth.disabled = true;
            } else {
                return Err(Error::Config(
                    "no token verification key for a node reachable beyond loopback: set \
                     auth.jwt_secret (PLEXSPACES_JWT_SECRET) or auth.jwt_public_key_file, or \
                     PLEXSPACES_DISABLE_AUTH=1"
                        .into(),
                ));
            }
        }
        let auth = Authenticator::from_config(&config.auth)?;
        if auth.is_disabled() {
            tracing::warn!("authentication is disabled: every request acts for the tenant in its path or `default`");
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::Config(format!(
                "cannot create data dir {}: {e}",
                config.data_dir.display()
            ))
        })?;
        let mut journal = NodeJournal::open(&config).await?;
        tracing::info!(backend = journal.backend, path = %journal.location, "journal initialized");

        let prometheus = prometheus::Registry::new();
        let actor_metrics = MetricsFacet::new(&prometheus)?;
        let mailbox = MailboxConfig::Bounded(config.actors.mailbox_capacity);
        // Spans (`actor.message`, `http.request`) only when something exports them.
        let spans = config.otlp.endpoint.is_some();
        let mut node = Node::builder(config.node_id.clone())
            .mailbox(mailbox)
            .facet(actor_metrics.clone());
        if spans {
            node = node.facet(TracingFacet::new());
        }
        // `[cluster]`: the transport to other nodes is the runtime node's, so it comes first.
        let plan = config.cluster.plan()?;
        let network = match &plan {
            Some(plan) => Some(crate::cluster::network(plan, &config.node_id).await?),
            None => None,
        };
        if let Some(network) = &network {
            node = node.transport(Arc::new(network.clone()));
        }
        let node = node.build().await?;
        let cluster = match (&plan, network) {
            (Some(plan), Some(network)) => Some(
                crate::cluster::join(&config.cluster, plan, &node, network, &prometheus).await?,
            ),
            _ => None,
        };
        let spaces = crate::tuplespace::open_spaces(&config).await?;
        node.insert_service(Arc::new(spaces.clone()));
        tracing::info!(backend = spaces.backend_name(), "tuple space initialized");
        let kv = crate::kv::open(&config).await?;
        let blobs = crate::blobs::open(&config)?;
        let channels = crate::channels::open(&config).await?;
        tracing::info!(
            kv = kv.backend,
            channels = channels.backend_name(),
            "key-value store, blob store and channels initialized"
        );
        node.insert_service(Arc::new(crate::kv::NodeStorage {
            kv: kv.clone(),
            blobs: blobs.clone(),
            channels: channels.clone(),
        }));
        let registry = Registry::new(
            node.clone(),
            RegistryOptions {
                idle_timeout: config.idle_timeout(),
                max_activations: config.actors.max_activations,
                mailbox,
                pool_workers: config.actors.pool_workers,
            },
        );
        if let Some(directory) = crate::virtual_actors::open_directory(&config).await? {
            let incarnation = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            // What an earlier run of this node left owned (killed before it could release):
            // that run is gone, so its entries are free.
            let stale = directory
                .reclaim(&config.node_id, incarnation)
                .await
                .map_err(|e| Error::Directory(e.to_string()))?;
            tracing::info!(stale, "activation directory initialized");
            registry.set_directory(crate::registry::DirectoryBinding {
                directory,
                node: config.node_id.clone(),
                incarnation,
            });
            // The second line of fencing, tied to the first: each activation's journal
            // epoch is recorded under its directory claim before it writes.
            journal.bind_claims(registry.claim_binder());
        }
        let reminder_store = crate::reminders::open_store(&config).await?;
        let node_facets = node_facets(&node, reminder_store.clone(), &kv, &blobs, &channels);
        registry.register(builtin::counter_type(&journal).attach_node_facets(node_facets.clone()));
        registry.register(builtin::echo_type().attach_node_facets(node_facets.clone()));
        let durability: crate::registry::FacetFactory = Arc::new(journal.facets());
        for ty in types {
            registry.register(
                ty.attach_durability(durability.clone())
                    .attach_node_facets(node_facets.clone()),
            );
        }
        let lateness = crate::lateness::LatenessMetrics::new(&prometheus)?;
        let workflows =
            crate::workflows::open(&node, &journal, &config, workflow_types, &lateness).await?;
        let http_metrics = HttpMetrics::new(&prometheus)?;
        let draining = Arc::new(AtomicBool::new(false));

        let http_listener = tokio::net::TcpListener::bind(http_addr)
            .await
            .map_err(|e| Error::Io(format!("cannot listen for http on {http_addr}: {e}")))?;
        let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
            .await
            .map_err(|e| Error::Io(format!("cannot listen for grpc on {grpc_addr}: {e}")))?;
        let http_addr = http_listener.local_addr()?;
        let grpc_addr = grpc_listener.local_addr()?;

        let (stop, stopped) = watch::channel(false);
        let gate = Gate::new(auth, draining.clone(), stopped.clone());
        let mut actors = Actors::new(
            registry.clone(),
            config.request_timeout(),
            config.actors.mailbox_capacity,
            actor_metrics.clone(),
        )
        .with_journal(journal.clone());
        if let Some(cluster) = &cluster {
            actors = actors.with_cluster(cluster.clone());
            if registry.directory().is_some() {
                actors = actors.with_placer(crate::virtual_actors::Placer::new(
                    &config.node_id,
                    placement.clone(),
                ));
                tokio::spawn(crate::virtual_actors::reclaim_on_membership(
                    cluster.clone(),
                    registry.clone(),
                ));
            }
            crate::cluster::forward::start_gateway(&node, actors.clone())?;
        }
        let deployments = crate::deploy::Deployments::start(crate::deploy::DeploymentsOptions {
            config: config.wasm.clone(),
            data_dir: config.data_dir.clone(),
            store: None,
            actors: actors.clone(),
            durability: durability.clone(),
            node_facets: node_facets.clone(),
            kv: kv.kv.clone(),
            spaces: spaces.clone(),
            ask_timeout: config.request_timeout(),
        })?;
        // Before serving: invocations of a deployed type find it at once after a restart.
        deployments.restore().await?;
        let services = NodeServices {
            deployments,
            cluster: crate::cluster::NodeCluster::new(node.name(), cluster.clone()),
            actors,
            workflows: Workflows::new(workflows.engine.clone(), gate.clone()),
            spaces: TupleSpaces::new(spaces, config.request_timeout()),
            shards: crate::shards::Shards::new(registry.node().clone()),
            locks: crate::locks::LockService::new(kv.clone()),
            kv: crate::kv::KvService::new(kv),
            blobs: crate::blobs::BlobService::new(blobs, config.blobs.max_blob_bytes),
            channels: crate::channels::ChannelService::new(channels.clone()),
            gate,
            telemetry: Telemetry {
                prometheus: prometheus.clone(),
                http: http_metrics,
                grpc_requests: Arc::new(AtomicU64::new(0)),
                actor_metrics,
                started: tokio::time::Instant::now(),
                journal_backend: journal.backend.to_owned(),
                request_spans: spans,
            },
            max_body_bytes: config.http.max_body_bytes,
        };
        let app = http::router(services.clone());
        let routes = grpc::routes(services).await?;
        let inboxes =
            crate::inboxes::NodeInboxes::start(&config.channels.inboxes, &channels, &registry)
                .await?;

        // Last before serving: nothing below fails, so no workflow is driven by a node that
        // did not start.
        if let Err(e) = workflows.recover().await {
            workflows.engine.shutdown();
            return Err(e);
        }
        let reminders = crate::reminders::start(
            reminder_store,
            registry.clone(),
            lateness.clone(),
            config.request_timeout(),
            std::time::Duration::from_millis(config.reminders.poll_interval_ms),
        );
        let mut http_stop = stopped.clone();
        let http_task = tokio::spawn(async move {
            let result = axum::serve(http_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = http_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "http server failed");
            }
        });
        let mut grpc_stop = stopped;
        let grpc_task = tokio::spawn(async move {
            // TCP_NODELAY: a reply is several small writes (headers, data, trailers); without it
            // Nagle plus delayed ACK can hold one back ~40 ms.
            let incoming =
                tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
            let result = tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = grpc_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "grpc server failed");
            }
        });
        tracing::info!(addr = %http_addr, backend = "axum", "http api listening");
        tracing::info!(addr = %grpc_addr, backend = "tonic", "grpc api listening");
        tracing::info!(node = %node.name(), config = %crate::secret::mask_secrets(&serde_json::to_string(&config).unwrap_or_default()), "node ready");
        Ok(ServerHandle {
            inner: Arc::new(HandleInner {
                node,
                registry,
                http_addr,
                grpc_addr,
                draining,
                stop,
                tasks: tokio::sync::Mutex::new(vec![http_task, grpc_task]),
                journal,
                workflows,
                cluster,
                placement,
                reminders: tokio::sync::Mutex::new(Some(reminders)),
                inboxes: tokio::sync::Mutex::new(Some(inboxes)),
            }),
        })
    }
}

impl ServerHandle {
    /// The runtime node.
    pub fn node(&self) -> &Node {
        &self.inner.node
    }

    /// Actor types and activations.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// The journal that keeps virtual actor state.
    pub fn journal(&self) -> &NodeJournal {
        &self.inner.journal
    }

    /// The workflow engine: start, signal, query, update, cancel and await workflows from
    /// Rust, as the HTTP and gRPC APIs do.
    pub fn workflows(&self) -> &plexspaces_workflow::WorkflowEngine {
        &self.inner.workflows.engine
    }

    /// The cluster membership, when the node runs in a cluster (`[cluster]`).
    pub fn cluster(&self) -> Option<&plexspaces_cluster::ClusterHandle> {
        self.inner.cluster.as_ref()
    }

    /// The placement of `actor_type`'s first activations in a cluster (from code, see
    /// [`NodeServerBuilder::placement`], or from the config, which wins).
    pub fn placement(&self, actor_type: &str) -> Placement {
        self.inner.placement.get(actor_type)
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.inner.http_addr
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.inner.grpc_addr
    }

    /// Graceful shutdown: refuse new work (503), stop accepting, end waits for workflow
    /// results and update answers (503), let in-flight requests finish, stop driving
    /// workflows (they stay running in the store and resume on the next start), then stop
    /// every actor. Idempotent.
    pub async fn shutdown(&self) {
        if self.inner.draining.swap(true, Ordering::AcqRel) {
            // Someone else is shutting down; wait for them.
            let mut tasks = self.inner.tasks.lock().await;
            for t in tasks.drain(..) {
                let _ = t.await;
            }
            return;
        }
        tracing::info!("shutting down: no new requests, finishing in-flight ones");
        // No reminder activates an actor once shutdown has begun (due ones fire on the next
        // start).
        if let Some(reminders) = self.inner.reminders.lock().await.take() {
            reminders.shutdown().await;
        }
        // Channel-backed mailboxes: stop taking messages, finish and ack the ones in
        // flight, give the rest back; before any actor stops.
        if let Some(inboxes) = self.inner.inboxes.lock().await.take() {
            if !inboxes.is_empty() {
                let stats = inboxes.shutdown().await;
                tracing::info!(
                    handled = stats.handled,
                    returned = stats.returned,
                    "inboxes drained"
                );
            }
        }
        let _ = self.inner.stop.send(true);
        let mut tasks = self.inner.tasks.lock().await;
        for t in tasks.drain(..) {
            let _ = t.await;
        }
        self.inner.workflows.engine.shutdown();
        if self.inner.registry.directory().is_some() {
            // Hand virtual actors off: final snapshots, directory entries released.
            self.inner.registry.drain().await;
        }
        if let Some(cluster) = &self.inner.cluster {
            // Peers see this node `leaving`, then gone once its connections close.
            cluster.leave().await;
        }
        self.inner.node.shutdown().await;
        tracing::info!("node stopped");
    }

    /// Runs until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_signal(&self) -> Result<()> {
        wait_for_signal().await?;
        self.shutdown().await;
        Ok(())
    }
}

/// The facets the node gives every activation: a [`crate::reminders::ReminderFacet`]
/// (virtual actors only), a [`crate::facets::TimerFacet`], and a key-value, blob and
/// event-emitter facet scoped to the activation's tenant and namespace (when those are
/// valid names for the store).
fn node_facets(
    node: &Node,
    reminders: Arc<dyn plexspaces_journal::ReminderStore>,
    kv: &crate::kv::NodeKv,
    blobs: &plexspaces_storage::Blobs,
    channels: &plexspaces_channels::Channels,
) -> crate::registry::NodeFacetFactory {
    let (kv, blobs, channels) = (kv.kv.clone(), blobs.clone(), channels.clone());
    let node = node.clone();
    Arc::new(move |key, is_virtual| {
        let mut facets: Vec<Arc<dyn plexspaces_core::Facet>> = Vec::new();
        if is_virtual {
            facets.push(crate::reminders::ReminderFacet::new(reminders.clone(), key));
        }
        facets.push(crate::facets::TimerFacet::new(node.clone()));
        if let Ok(scope) = plexspaces_storage::Scope::new(&key.tenant, &key.namespace) {
            facets.push(plexspaces_storage::KeyValueFacet::new(
                kv.clone(),
                scope.clone(),
            ));
            facets.push(plexspaces_storage::BlobStorageFacet::new(
                blobs.clone(),
                scope,
            ));
        }
        if let Ok(events) = plexspaces_channels::EventEmitterFacet::new(
            channels.clone(),
            &key.tenant,
            &key.namespace,
        ) {
            facets.push(events);
        }
        facets
    })
}

#[cfg(unix)]
async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "signal received"),
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
