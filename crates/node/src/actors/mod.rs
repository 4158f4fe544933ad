//! The actors service: invoking, spawning, stopping, listing and describing the virtual
//! actors and worker pools of the [`Registry`], for one [`Caller`] at a time. HTTP
//! ([`http`]) and gRPC ([`grpc`]) are thin adapters over it.
//!
//! Every address is resolved in the caller's tenant; the figures a caller sees
//! ([`Actors::type_stats`]) are its own tenant's unless it is an operator.

pub mod grpc;
pub mod http;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use plexspaces_core::Envelope;

use crate::error::{Error, Result};
use crate::registry::{Activation, ActivationKey, Registry};
use crate::service::Caller;

/// How an invocation wants its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Wait up to this long for the actor's reply.
    Ask(Duration),
    /// Fire and forget: accepted once it is in the mailbox.
    Tell,
}

/// One message for an actor, as a transport received it.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The handler to run (non-empty).
    pub msg_type: String,
    /// The encoded message.
    pub payload: Bytes,
    /// Its content type; empty is `application/json`.
    pub content_type: String,
    /// The caller's idempotency key (already checked by [`crate::service::header_id`]).
    pub idempotency_key: Option<String>,
    /// Ask or tell.
    pub reply: Reply,
    /// Who calls: written into the envelope's caller headers (see [`Caller`]), replacing
    /// any the payload's sender chose. `None` sends no caller.
    pub caller: Option<Caller>,
}

/// Per-type figures of one view (a tenant's, or the node's for an operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeStats {
    /// The registered name.
    pub actor_type: String,
    /// `"virtual"` or `"worker"`.
    pub kind: &'static str,
    /// The Rust type of its actors.
    pub rust_type: &'static str,
    /// Live actors of this type in the view.
    pub actors: u64,
    /// Messages handled: node-wide for an operator, else the tenant's invocations of its
    /// live activations.
    pub messages: u64,
    /// Failed messages, counted as `messages` is.
    pub errors: u64,
}

/// The actors service. Cheap to clone.
#[derive(Clone)]
pub struct Actors {
    registry: Registry,
    request_timeout: Duration,
    mailbox_capacity: usize,
    actor_metrics: Arc<plexspaces_core::MetricsFacet>,
    cluster: Option<plexspaces_cluster::ClusterHandle>,
    placer: Option<crate::virtual_actors::Placer>,
    journal: Option<crate::state::NodeJournal>,
    /// Durable actors whose calls failed on this node since it started: the dashboard
    /// shows those that still have a failed message ([`Actors::failed_durable`]).
    failing: Arc<std::sync::Mutex<std::collections::BTreeSet<ActivationKey>>>,
}

/// A durable actor's retry state after handler failures (see `docs/durability.md`):
/// `ok` (no failed message), `retrying` (a failed message is retried on the next
/// activation, not before `retry_at_ms`) or `paused` (attempts used up: every call is
/// refused with `actor_paused` until the message is resumed or abandoned).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DurableStatus {
    /// The actor's address, `tenant/namespace/type/key`.
    pub actor: String,
    /// `ok`, `retrying` or `paused`.
    pub state: &'static str,
    /// Whether an activation is running now.
    pub active: bool,
    /// The attempts a message gets before the actor pauses (0: no retries).
    pub max_attempts: u32,
    /// The failed message, when there is one.
    pub failed_message: Option<FailedMessageView>,
}

/// A failed message as [`DurableStatus`] shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FailedMessageView {
    /// Its seq in the actor's journal stream.
    pub seq: u64,
    /// Its idempotency key, if it had one.
    pub idempotency_key: Option<String>,
    /// Failed attempts since it was received or last resumed.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When the last attempt failed (ms since the Unix epoch).
    pub last_failed_at_ms: u64,
    /// When the next attempt may run (ms since the Unix epoch); absent when paused.
    pub retry_at_ms: Option<u64>,
}

impl std::fmt::Debug for Actors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actors")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl Actors {
    /// The service over `registry`; `request_timeout` is the default and longest ask wait.
    pub fn new(
        registry: Registry,
        request_timeout: Duration,
        mailbox_capacity: usize,
        actor_metrics: Arc<plexspaces_core::MetricsFacet>,
    ) -> Self {
        Actors {
            registry,
            request_timeout,
            mailbox_capacity,
            actor_metrics,
            cluster: None,
            placer: None,
            journal: None,
            failing: Arc::default(),
        }
    }

    /// The journal of the node's durable actors (for [`Actors::durable_status`] and
    /// [`Actors::resolve_failed`], and to name a paused actor when it cannot activate).
    pub fn with_journal(mut self, journal: crate::state::NodeJournal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// The journal and stream of a durable actor type's activation at `key`.
    fn durable_stream(
        &self,
        key: &ActivationKey,
    ) -> Result<(crate::state::NodeJournal, plexspaces_journal::StreamId)> {
        let ty = self.registry.actor_type(&key.actor_type)?;
        if !ty.is_durable() {
            return Err(Error::BadRequest(format!(
                "actor type {:?} is not durable",
                key.actor_type
            )));
        }
        let journal = self.journal.clone().ok_or_else(|| {
            Error::Core(plexspaces_core::Error::Unsupported(
                "this node has no journal for durable actors".into(),
            ))
        })?;
        Ok((journal, crate::state::stream_id(key)))
    }

    /// A durable actor's retry state: whether a failed message waits for a retry or paused
    /// the actor, with its last error.
    pub async fn durable_status(&self, key: &ActivationKey) -> Result<DurableStatus> {
        let (journal, stream) = self.durable_stream(key)?;
        let failed = plexspaces_journal::failed_message(&*journal.journal, &stream).await?;
        let policy = journal.options.retry;
        let state = match &failed {
            None => "ok",
            Some(f) if f.is_paused(&policy) => "paused",
            Some(_) => "retrying",
        };
        Ok(DurableStatus {
            actor: key.to_string(),
            state,
            active: self.registry.get(key).is_some(),
            max_attempts: policy.max_attempts,
            failed_message: failed.map(|f| FailedMessageView {
                retry_at_ms: f.retry_at_ms(&policy),
                seq: f.seq,
                idempotency_key: f.idempotency_key,
                attempts: f.attempts,
                last_error: f.last_error,
                last_failed_at_ms: f.last_failed_at_ms,
            }),
        })
    }

    /// The resolution an operator of `tenant` asked for: `resume`, or `abandon` with an
    /// optional reason (kept in the journal). Any other action is a bad request.
    pub fn resolution(
        action: &str,
        tenant: &str,
        reason: Option<&str>,
    ) -> Result<plexspaces_journal::Resolution> {
        match action {
            "resume" => Ok(plexspaces_journal::Resolution::Resume),
            "abandon" => Ok(plexspaces_journal::Resolution::Abandon {
                reason: format!(
                    "abandoned by an operator of tenant {tenant}: {}",
                    reason
                        .filter(|r| !r.is_empty())
                        .unwrap_or("no reason given")
                ),
            }),
            other => Err(Error::BadRequest(format!(
                "action {other:?}: expected resume or abandon"
            ))),
        }
    }

    /// Resumes (retried on the next call, with a fresh attempt budget) or abandons (dropped,
    /// the actor moves on) a durable actor's failed message; returns the status before.
    /// Nothing failed: `no_failed_message`.
    pub async fn resolve_failed(
        &self,
        key: &ActivationKey,
        resolution: plexspaces_journal::Resolution,
    ) -> Result<DurableStatus> {
        let before = self.durable_status(key).await?;
        let (journal, stream) = self.durable_stream(key)?;
        plexspaces_journal::resolve_failed(
            &*journal.journal,
            &stream,
            resolution,
            &*journal.options.clock,
        )
        .await?;
        Ok(before)
    }

    /// Remembers a failed call of a durable actor for [`Actors::failed_durable`].
    fn watch_failure(&self, key: &ActivationKey) {
        let durable = self
            .registry
            .actor_type(&key.actor_type)
            .is_ok_and(|t| t.is_durable());
        if durable && self.journal.is_some() {
            if let Ok(mut failing) = self.failing.lock() {
                failing.insert(key.clone());
            }
        }
    }

    /// The durable actors (of `tenant`, or all) whose calls failed on this node since it
    /// started and that still have a failed message (retrying or paused), with it. An actor
    /// whose message was resolved, or that succeeded since, is dropped from the list.
    pub async fn failed_durable(&self, tenant: Option<&str>) -> Vec<DurableStatus> {
        let keys: Vec<ActivationKey> = match self.failing.lock() {
            Ok(failing) => failing
                .iter()
                .filter(|k| tenant.is_none_or(|t| k.tenant == t))
                .cloned()
                .collect(),
            Err(_) => return Vec::new(),
        };
        let mut out = Vec::new();
        for key in keys {
            match self.durable_status(&key).await {
                Ok(status) if status.failed_message.is_some() => out.push(status),
                Ok(_) => {
                    if let Ok(mut failing) = self.failing.lock() {
                        failing.remove(&key);
                    }
                }
                Err(e) => tracing::debug!(%key, error = %e, "durable status unreadable"),
            }
        }
        out
    }

    /// The typed error of a durable actor that could not activate because its failed
    /// message is paused or backing off (`None`: some other failure). Read again from the
    /// journal because core's `StartFailed` carries the activation's refusal as text only.
    async fn paused_error(&self, key: &ActivationKey) -> Option<Error> {
        let (journal, stream) = self.durable_stream(key).ok()?;
        let failed = plexspaces_journal::failed_message(&*journal.journal, &stream)
            .await
            .ok()??;
        let now = journal.options.clock.now_ms();
        let refused = failed.refusal(&stream, &journal.options.retry, now)?;
        Some(Error::Journal(refused))
    }

    /// Routes virtual actor calls by the activation directory (the registry's, see
    /// [`Registry::set_directory`]) and `placer` instead of by the cluster-wide names: with
    /// a cluster and a directory, a call goes to the key's owner, or, when nobody owns it,
    /// to the node its placement picks; worker pool calls go round robin over the nodes. A
    /// key active on this node is served here without reading the directory (the journal
    /// epoch bound to its claim fences it if it was reclaimed, see
    /// [`crate::registry::ClaimBinder`]).
    pub fn with_placer(mut self, placer: crate::virtual_actors::Placer) -> Self {
        self.placer = Some(placer);
        self
    }

    /// The service of a clustered node: a call for a virtual actor active on another node is
    /// forwarded there (see [`Actors::invoke`]), and this node's virtual activations are
    /// registered cluster-wide under their actor names.
    pub fn with_cluster(mut self, cluster: plexspaces_cluster::ClusterHandle) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The default mailbox capacity of an activation.
    pub fn mailbox_capacity(&self) -> usize {
        self.mailbox_capacity
    }

    /// The wait of an ask that asked for `requested` (none: the node's request timeout;
    /// never longer than it).
    pub fn ask_timeout(&self, requested: Option<Duration>) -> Duration {
        requested.map_or(self.request_timeout, |t| t.min(self.request_timeout))
    }

    /// The activation key of (namespace, type, key) in the caller's tenant; unknown types
    /// and bad parts are errors.
    pub fn address(
        &self,
        caller: &Caller,
        namespace: &str,
        actor_type: &str,
        key: &str,
    ) -> Result<ActivationKey> {
        if actor_type.is_empty() {
            return Err(Error::BadRequest("actor_type is required".into()));
        }
        self.registry
            .resolve(&caller.tenant, namespace, actor_type, key)
    }

    /// Sends `invocation` to the activation at `key` (activating it if needed). An ask
    /// returns the reply; a tell returns `None` once the message is queued.
    ///
    /// In a cluster, a virtual actor that is not active here but active on another node
    /// (found by its actor name in the cluster-wide registry) is invoked there
    /// ([`Actors::invoke_on`]); otherwise it runs here. Two nodes may still activate one
    /// key at the same moment: one activation per key in the whole cluster is not promised
    /// here (the activation directory of distributed virtual actors is).
    pub async fn invoke(
        &self,
        key: &ActivationKey,
        invocation: Invocation,
    ) -> Result<Option<Envelope>> {
        if let (Some(cluster), Some(placer), Some(binding)) =
            (&self.cluster, &self.placer, self.registry.directory())
        {
            return self
                .invoke_routed(cluster, placer, binding, key, invocation)
                .await;
        }
        if let Some(host) = self.remote_host(key) {
            return self.invoke_on(&host, key, invocation).await;
        }
        self.invoke_here(key, invocation).await
    }

    /// [`Actors::invoke`] with a directory: to the owner, or per placement. A claim lost
    /// to another node between the lookup and the activation (`moved`) routes again, up to
    /// three times.
    async fn invoke_routed(
        &self,
        cluster: &plexspaces_cluster::ClusterHandle,
        placer: &crate::virtual_actors::Placer,
        binding: &crate::registry::DirectoryBinding,
        key: &ActivationKey,
        invocation: Invocation,
    ) -> Result<Option<Envelope>> {
        use crate::virtual_actors::Route;
        let virtual_type = self.registry.type_of(key)?.kind() == crate::registry::TypeKind::Virtual;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // An activation here serves without a directory read: if a majority reclaimed
            // its key meanwhile (this node was partitioned away), its next journal write
            // is refused by the epoch the new owner's activation took, the activation
            // stops, and the call after that routes by the directory again.
            let route = if virtual_type && self.registry.get(key).is_some() {
                Route::Here
            } else {
                let members = cluster.members();
                let alive = plexspaces_cluster::placement::Candidate::alive(&members);
                placer
                    .route(binding, key, virtual_type, &alive, members.len())
                    .await?
            };
            let outcome = match route {
                Route::Here => self.invoke_here(key, invocation.clone()).await,
                Route::Remote(node) => self.invoke_on(&node, key, invocation.clone()).await,
            };
            match outcome {
                Err(e) if e.kind() == "moved" && attempt < 3 => {
                    tracing::debug!(%key, error = %e, "claimed elsewhere meanwhile: routing again");
                }
                other => return other,
            }
        }
    }

    /// The other node hosting the virtual activation at `key`, if it is not active here.
    fn remote_host(&self, key: &ActivationKey) -> Option<String> {
        let cluster = self.cluster.as_ref()?;
        if self.registry.get(key).is_some() {
            return None;
        }
        let pid = cluster.whereis(&key.virtual_actor_name())?;
        (!pid.is_local()).then(|| pid.id().node().to_owned())
    }

    /// Invokes the actor at `key` on cluster member `node`, through that node's gateway
    /// ([`crate::cluster::forward`]): the caller's tenant (in `key`), message, idempotency
    /// key and reply mode go along; the answer, or the error with its kind, is the one
    /// `node` gives. A lost node is `noconnection` at once (503 / Unavailable).
    pub async fn invoke_on(
        &self,
        node: &str,
        key: &ActivationKey,
        invocation: Invocation,
    ) -> Result<Option<Envelope>> {
        if invocation.msg_type.is_empty() {
            return Err(Error::BadRequest("msg_type is required".into()));
        }
        let gateway = self
            .registry
            .node()
            .pid(&crate::cluster::forward::gateway_id(node)?)?;
        let wait = match invocation.reply {
            Reply::Ask(timeout) => timeout,
            Reply::Tell => self.request_timeout,
        };
        let env = crate::cluster::forward::request(key, &invocation);
        tracing::debug!(%key, node, "invocation forwarded");
        let reply = gateway.try_ask_envelope(env, wait).await?;
        crate::cluster::forward::outcome(reply)
    }

    /// Like [`Actors::invoke`], but always on this node (never forwarded).
    pub async fn invoke_here(
        &self,
        key: &ActivationKey,
        invocation: Invocation,
    ) -> Result<Option<Envelope>> {
        if invocation.msg_type.is_empty() {
            return Err(Error::BadRequest("msg_type is required".into()));
        }
        let content_type = if invocation.content_type.is_empty() {
            "application/json"
        } else {
            invocation.content_type.as_str()
        };
        let mut env = Envelope::new(
            invocation.msg_type.as_str(),
            invocation.payload,
            content_type,
        );
        if let Some(k) = invocation.idempotency_key {
            env = env.with_header(plexspaces_journal::IDEMPOTENCY_KEY_HEADER, k);
        }
        if let Some(caller) = &invocation.caller {
            caller.write_headers(&mut env.headers);
        }
        let lease = match self.registry.lease(key).await {
            Ok(lease) => lease,
            Err(e) => {
                self.watch_failure(key);
                return Err(self.paused_error(key).await.unwrap_or(e));
            }
        };
        self.publish(key, &lease);
        let outcome = match invocation.reply {
            Reply::Tell => lease.pid().try_tell_envelope(env).map(|()| None),
            Reply::Ask(timeout) => lease.pid().try_ask_envelope(env, timeout).await.map(Some),
        };
        lease.record(outcome.is_ok());
        if outcome.is_err() {
            self.watch_failure(key);
        }
        Ok(outcome?)
    }

    /// Activates `key` if it is not active; returns the serving actor's id and whether this
    /// call activated it.
    pub async fn spawn(&self, key: &ActivationKey) -> Result<(String, bool)> {
        let lease = self.registry.lease(key).await?;
        self.publish(key, &lease);
        Ok((lease.pid().id().to_string(), lease.activated))
    }

    /// In a cluster, registers a virtual activation this lease created under its actor name,
    /// so other nodes forward calls for it here. The name is freed when the actor stops.
    fn publish(&self, key: &ActivationKey, lease: &crate::registry::Lease) {
        if self.cluster.is_none() || !lease.activated {
            return;
        }
        let virtual_type = self
            .registry
            .type_of(key)
            .is_ok_and(|t| t.kind() == crate::registry::TypeKind::Virtual);
        if virtual_type {
            let name = key.virtual_actor_name();
            if let Err(e) = self.registry.node().register(&name, lease.pid()) {
                tracing::warn!(%key, error = %e, "cannot register the activation cluster-wide");
            }
        }
    }

    /// Deactivates `key` (after its in-flight requests); whether something was active.
    pub async fn stop(&self, key: &ActivationKey) -> bool {
        self.registry.deactivate(key).await
    }

    /// The caller's live activations, optionally of one namespace and one type.
    pub fn list(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
        actor_type: Option<&str>,
    ) -> Vec<Arc<Activation>> {
        self.registry
            .activations(Some(&caller.tenant))
            .into_iter()
            .filter(|a| namespace.is_none_or(|ns| a.key().namespace == ns))
            .filter(|a| actor_type.is_none_or(|t| a.key().actor_type == t))
            .collect()
    }

    /// The live activation at `key`, or `not_found`.
    pub fn describe(&self, key: &ActivationKey) -> Result<Arc<Activation>> {
        self.registry
            .get(key)
            .ok_or_else(|| Error::NotFound(format!("nothing active at {key}")))
    }

    /// Per-type figures: with `tenant`, that tenant's activations and the invocations they
    /// served; without, the node's (every activation, the runtime's message counters).
    pub fn type_stats(&self, tenant: Option<&str>) -> Vec<TypeStats> {
        let activations = self.registry.activations(tenant);
        let mut stats = Vec::new();
        for name in self.registry.type_names() {
            let Ok(ty) = self.registry.actor_type(&name) else {
                continue;
            };
            let of_type = || activations.iter().filter(|a| a.key().actor_type == name);
            let actors = of_type().map(|a| a.pids().len() as u64).sum();
            let (messages, errors) = match tenant {
                None => (
                    self.actor_metrics.messages(ty.rust_type()),
                    self.actor_metrics.errors(ty.rust_type()),
                ),
                Some(_) => of_type().fold((0, 0), |(m, e), a| {
                    let (am, ae) = a.served();
                    (m + am, e + ae)
                }),
            };
            stats.push(TypeStats {
                kind: ty.kind().as_str(),
                rust_type: ty.rust_type(),
                actor_type: name,
                actors,
                messages,
                errors,
            });
        }
        stats
    }
}
