//! The gRPC API (tonic): `plexspaces.v1.ActorService`, `plexspaces.v1.NodeService`,
//! `plexspaces.v1.WorkflowService`, `grpc.health.v1.Health` and server reflection (the
//! tuple space service is in [`crate::tuplespace`]). Every declared RPC is served.
//!
//! The tenant comes from the `authorization: Bearer <jwt>` metadata, exactly as on HTTP;
//! an address's `tenant` field, when set, must match it.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::Envelope;
use plexspaces_proto::v1::actor_service_server::{ActorService, ActorServiceServer};
use plexspaces_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use plexspaces_proto::v1::workflow_service_server::{WorkflowService, WorkflowServiceServer};
use plexspaces_proto::v1::{
    ActorAddress, ActorSummary, AskRequest, AskResponse, CapacityRequest, CapacityResponse,
    DescribeRequest, DescribeResponse, HealthRequest, HealthResponse, ListRequest, ListResponse,
    MetricsSummaryRequest, MetricsSummaryResponse, SpawnRequest, SpawnResponse, StopRequest,
    StopResponse, TellRequest, TellResponse, TypeMetrics,
};
use plexspaces_proto::v1::{
    CancelWorkflowRequest, CancelWorkflowResponse, DescribeWorkflowRequest,
    DescribeWorkflowResponse, ListWorkflowsRequest, ListWorkflowsResponse, QueryWorkflowRequest,
    QueryWorkflowResponse, SignalWorkflowRequest, SignalWorkflowResponse, StartWorkflowRequest,
    StartWorkflowResponse, UpdateWorkflowRequest, UpdateWorkflowResponse, WorkflowFailure,
    WorkflowHistoryRequest, WorkflowHistoryResponse, WorkflowInfo, WorkflowResultRequest,
    WorkflowResultResponse,
};
use plexspaces_workflow::{Failure, WorkflowEngine, WorkflowKey, WorkflowRecord};
use serde_json::Value;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::auth::Authenticator;
use crate::error::Error;
use crate::http::HttpMetrics;
use crate::registry::{lifecycle_name, Activation, ActivationKey, Registry};
use crate::workflows::{self, Outcome};

/// What the gRPC services share.
#[derive(Clone)]
pub struct GrpcState {
    /// Actor types and activations.
    pub registry: Registry,
    /// Token verification.
    pub auth: Authenticator,
    /// HTTP metrics (for the summary).
    pub http_metrics: HttpMetrics,
    /// The node's actor metrics.
    pub actor_metrics: Arc<plexspaces_core::MetricsFacet>,
    /// Default (and largest) ask timeout.
    pub request_timeout: Duration,
    /// Default mailbox capacity (for `Capacity`).
    pub mailbox_capacity: usize,
    /// Most activations (for `Capacity`).
    pub max_activations: usize,
    /// Set when shutdown begins.
    pub draining: Arc<AtomicBool>,
    /// When the node started.
    pub started: tokio::time::Instant,
    /// gRPC requests served.
    pub requests: Arc<AtomicU64>,
}

impl GrpcState {
    fn tenant<T>(&self, request: &Request<T>, named: &str) -> Result<String, Status> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| {
                v.to_str().map_err(|_| {
                    Error::Unauthenticated("authorization metadata is not text".into())
                })
            })
            .transpose()?;
        let named = (!named.is_empty()).then_some(named);
        Ok(self.auth.tenant_for(authorization, named)?)
    }

    fn key(&self, tenant: &str, address: Option<&ActorAddress>) -> Result<ActivationKey, Status> {
        let a = address.ok_or_else(|| Error::BadRequest("address is required".into()))?;
        if a.actor_type.is_empty() {
            return Err(Error::BadRequest("address.actor_type is required".into()).into());
        }
        Ok(self
            .registry
            .resolve(tenant, &a.namespace, &a.actor_type, &a.key)?)
    }

    /// The activation a request addresses, for the caller's tenant (an address naming a
    /// tenant must name the caller's own).
    fn resolve<T: Addressed>(&self, request: &Request<T>) -> Result<ActivationKey, Status> {
        let address = request.get_ref().address();
        let named = address.map(|a| a.tenant.clone()).unwrap_or_default();
        let tenant = self.tenant(request, &named)?;
        self.key(&tenant, address)
    }

    fn check_open(&self) -> Result<(), Status> {
        if self.draining.load(Ordering::Acquire) {
            return Err(Error::Core(plexspaces_core::Error::ShuttingDown).into());
        }
        Ok(())
    }

    fn timeout(&self, ms: u64) -> Duration {
        if ms == 0 {
            self.request_timeout
        } else {
            Duration::from_millis(ms).min(self.request_timeout)
        }
    }
}

fn address_of(key: &ActivationKey) -> ActorAddress {
    ActorAddress {
        tenant: key.tenant.clone(),
        namespace: key.namespace.clone(),
        actor_type: key.actor_type.clone(),
        key: key.key.clone(),
    }
}

fn summaries(activation: &Activation) -> Vec<ActorSummary> {
    activation
        .pids()
        .iter()
        .map(|pid| ActorSummary {
            actor_id: pid.id().to_string(),
            address: Some(address_of(activation.key())),
            kind: activation.kind().as_str().to_owned(),
            lifecycle: lifecycle_name(pid.lifecycle()).to_owned(),
            mailbox_len: pid.mailbox_len() as u64,
            idle_ms: activation.idle_for().as_millis() as u64,
        })
        .collect()
}

/// The `idempotency-key` request metadata (as the HTTP `Idempotency-Key` header).
/// Requests that name an actor by address.
trait Addressed {
    fn address(&self) -> Option<&ActorAddress>;
}

macro_rules! addressed {
    ($($request:ty),*) => {$(
        impl Addressed for $request {
            fn address(&self) -> Option<&ActorAddress> {
                self.address.as_ref()
            }
        }
    )*};
}

addressed!(
    SpawnRequest,
    TellRequest,
    AskRequest,
    StopRequest,
    DescribeRequest
);

fn idempotency_key(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, Status> {
    let Some(value) = metadata.get(plexspaces_journal::IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::BadRequest("idempotency-key must be visible ASCII".into()))?;
    if text.is_empty() || text.len() > crate::http::MAX_IDEMPOTENCY_KEY {
        return Err(Error::BadRequest(format!(
            "idempotency-key must be 1 to {} bytes",
            crate::http::MAX_IDEMPOTENCY_KEY
        ))
        .into());
    }
    Ok(Some(text.to_owned()))
}

fn envelope(msg_type: &str, payload: Vec<u8>, content_type: &str) -> Result<Envelope, Status> {
    if msg_type.is_empty() {
        return Err(Error::BadRequest("msg_type is required".into()).into());
    }
    let content_type = if content_type.is_empty() {
        "application/json"
    } else {
        content_type
    };
    Ok(Envelope::new(msg_type, payload, content_type))
}

/// `plexspaces.v1.ActorService`.
#[derive(Clone)]
pub struct ActorApi(pub GrpcState);

#[tonic::async_trait]
impl ActorService for ActorApi {
    async fn spawn(
        &self,
        request: Request<SpawnRequest>,
    ) -> Result<Response<SpawnResponse>, Status> {
        let s = &self.0;
        let key = s.resolve(&request)?;
        s.check_open()?;
        let lease = s.registry.lease(&key).await?;
        Ok(Response::new(SpawnResponse {
            actor_id: lease.pid().id().to_string(),
            activated: lease.activated,
        }))
    }

    async fn tell(&self, request: Request<TellRequest>) -> Result<Response<TellResponse>, Status> {
        let s = &self.0;
        let key = s.resolve(&request)?;
        s.check_open()?;
        let idempotency_key = idempotency_key(request.metadata())?;
        let r = request.into_inner();
        let mut env = envelope(&r.msg_type, r.payload.to_vec(), &r.content_type)?;
        if let Some(k) = idempotency_key {
            env = env.with_header(plexspaces_journal::IDEMPOTENCY_KEY_HEADER, k);
        }
        let lease = s.registry.lease(&key).await?;
        lease.pid().try_tell_envelope(env).map_err(Error::from)?;
        Ok(Response::new(TellResponse {}))
    }

    async fn ask(&self, request: Request<AskRequest>) -> Result<Response<AskResponse>, Status> {
        let s = &self.0;
        let key = s.resolve(&request)?;
        s.check_open()?;
        let idempotency_key = idempotency_key(request.metadata())?;
        let r = request.into_inner();
        let mut env = envelope(&r.msg_type, r.payload.to_vec(), &r.content_type)?;
        if let Some(k) = idempotency_key {
            env = env.with_header(plexspaces_journal::IDEMPOTENCY_KEY_HEADER, k);
        }
        let lease = s.registry.lease(&key).await?;
        let reply = lease
            .pid()
            .try_ask_envelope(env, s.timeout(r.timeout_ms))
            .await
            .map_err(Error::from)?;
        Ok(Response::new(AskResponse {
            msg_type: reply.msg_type,
            payload: reply.payload,
            content_type: reply.content_type,
        }))
    }

    async fn stop(&self, request: Request<StopRequest>) -> Result<Response<StopResponse>, Status> {
        let s = &self.0;
        let key = s.resolve(&request)?;
        let stopped = s.registry.deactivate(&key).await;
        Ok(Response::new(StopResponse { stopped }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let s = &self.0;
        let named = request.get_ref().tenant.clone();
        let tenant = s.tenant(&request, &named)?;
        let r = request.into_inner();
        let actors = s
            .registry
            .activations(Some(&tenant))
            .iter()
            .filter(|a| r.namespace.is_empty() || a.key().namespace == r.namespace)
            .filter(|a| r.actor_type.is_empty() || a.key().actor_type == r.actor_type)
            .flat_map(|a| summaries(a))
            .collect();
        Ok(Response::new(ListResponse { actors }))
    }

    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        let s = &self.0;
        let key = s.resolve(&request)?;
        let activation = s
            .registry
            .get(&key)
            .ok_or_else(|| Error::NotFound(format!("nothing active at {key}")))?;
        let actor = summaries(&activation).into_iter().next();
        Ok(Response::new(DescribeResponse { actor }))
    }
}

/// `plexspaces.v1.NodeService`.
#[derive(Clone)]
pub struct NodeApi(pub GrpcState);

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn health(
        &self,
        request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        let s = &self.0;
        s.requests.fetch_add(1, Ordering::Relaxed);
        let _ = request;
        let node = s.registry.node();
        let status = if s.draining.load(Ordering::Acquire) || node.is_shutting_down() {
            "shutting_down"
        } else {
            "serving"
        };
        Ok(Response::new(HealthResponse {
            status: status.into(),
            node_id: node.name().to_owned(),
            uptime_ms: s.started.elapsed().as_millis() as u64,
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn capacity(
        &self,
        request: Request<CapacityRequest>,
    ) -> Result<Response<CapacityResponse>, Status> {
        let s = &self.0;
        let _ = s.tenant(&request, "")?;
        let node = s.registry.node();
        Ok(Response::new(CapacityResponse {
            actor_count: node.actor_count() as u64,
            activation_count: s.registry.live_count() as u64,
            max_activations: s.max_activations as u64,
            mailbox_capacity: s.mailbox_capacity as u64,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            actor_types: s.registry.type_names(),
        }))
    }

    async fn metrics_summary(
        &self,
        request: Request<MetricsSummaryRequest>,
    ) -> Result<Response<MetricsSummaryResponse>, Status> {
        let s = &self.0;
        let tenant = s.tenant(&request, "")?;
        let activations = s.registry.activations(Some(&tenant));
        let mut types = Vec::new();
        for name in s.registry.type_names() {
            // The runtime labels metrics by Rust type; report them under the registered name.
            let rust_type = activations
                .iter()
                .filter(|a| a.key().actor_type == name)
                .flat_map(|a| a.pids())
                .map(|p| p.actor_type())
                .next();
            let (messages, errors) = match rust_type {
                Some(t) => (s.actor_metrics.messages(t), s.actor_metrics.errors(t)),
                None => (0, 0),
            };
            types.push(TypeMetrics {
                activations: activations
                    .iter()
                    .filter(|a| a.key().actor_type == name)
                    .map(|a| a.pids().len() as u64)
                    .sum(),
                actor_type: name,
                messages,
                errors,
            });
        }
        Ok(Response::new(MetricsSummaryResponse {
            http_requests: s.http_metrics.total(),
            grpc_requests: s.requests.load(Ordering::Relaxed),
            types,
        }))
    }
}

/// `plexspaces.v1.WorkflowService` over the node's workflow engine.
#[derive(Clone)]
pub struct WorkflowApi {
    state: GrpcState,
    engine: WorkflowEngine,
    stop: watch::Receiver<bool>,
}

impl std::fmt::Debug for WorkflowApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowApi")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl WorkflowApi {
    /// The service over `engine`, with the gRPC API's auth. `stop` turning true ends waits
    /// for results and update answers (so that graceful shutdown does not wait on them).
    pub fn new(state: GrpcState, engine: WorkflowEngine, stop: watch::Receiver<bool>) -> Self {
        WorkflowApi {
            state,
            engine,
            stop,
        }
    }

    /// The tonic server for the router.
    pub fn into_server(self) -> WorkflowServiceServer<Self> {
        WorkflowServiceServer::new(self)
    }

    /// The caller's tenant, once the node is known to take new work.
    fn tenant<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let tenant = self.state.tenant(request, "")?;
        self.state.check_open()?;
        Ok(tenant)
    }

    /// The workflow a request names, in the caller's tenant.
    fn key<T>(
        &self,
        request: &Request<T>,
        namespace: &str,
        workflow_id: &str,
    ) -> Result<WorkflowKey, Status> {
        let tenant = self.tenant(request)?;
        Ok(workflows::key(&tenant, or_default(namespace), workflow_id)?)
    }

    /// Runs `work` unless the node begins to shut down first (then: unavailable).
    async fn until_stopped<T>(
        &self,
        work: impl Future<Output = crate::Result<T>>,
    ) -> crate::Result<T> {
        let mut stop = self.stop.clone();
        tokio::select! {
            r = work => r,
            _ = stop.wait_for(|s| *s) => Err(Error::Core(plexspaces_core::Error::ShuttingDown)),
        }
    }
}

fn or_default(namespace: &str) -> &str {
    if namespace.is_empty() {
        "default"
    } else {
        namespace
    }
}

/// JSON text of a request field; empty is `null`.
fn json_field(field: &str, text: &str) -> Result<Value, Status> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text)
        .map_err(|e| Error::BadRequest(format!("{field} is not JSON: {e}")).into())
}

fn failure_of(f: Failure) -> WorkflowFailure {
    WorkflowFailure {
        kind: f.kind,
        message: f.message,
    }
}

fn info_of(record: WorkflowRecord) -> WorkflowInfo {
    WorkflowInfo {
        tenant: record.key.tenant,
        namespace: record.key.namespace,
        workflow_id: record.key.workflow_id,
        workflow_type: record.workflow_type,
        version: record.version,
        run: record.run,
        status: record.status.as_str().to_owned(),
        input_json: record.input.to_string(),
        result_json: record.result.map(|v| v.to_string()).unwrap_or_default(),
        failure: record.failure.map(failure_of),
        queries_json: record.queries.map(|v| v.to_string()).unwrap_or_default(),
        parent: record.parent.unwrap_or_default(),
        created_ms: record.created_ms,
        updated_ms: record.updated_ms,
    }
}

#[tonic::async_trait]
impl WorkflowService for WorkflowApi {
    async fn start(
        &self,
        request: Request<StartWorkflowRequest>,
    ) -> Result<Response<StartWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let input = json_field("input_json", &r.input_json)?;
        let started = self
            .engine
            .start(&key, &r.workflow_type, &input)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(StartWorkflowResponse {
            namespace: started.key.namespace,
            workflow_id: started.key.workflow_id,
            workflow_type: started.workflow_type,
            run: started.run,
            status: started.status.as_str().to_owned(),
            already_started: started.already_started,
        }))
    }

    async fn signal(
        &self,
        request: Request<SignalWorkflowRequest>,
    ) -> Result<Response<SignalWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        workflows::check_name("signal", &r.name)?;
        let payload = json_field("payload_json", &r.payload_json)?;
        let dedupe_id = (!r.dedupe_id.is_empty()).then_some(r.dedupe_id.as_str());
        if let Some(id) = dedupe_id {
            check_id("dedupe_id", id)?;
        }
        let seq = self
            .engine
            .signal(&key, &r.name, &payload, dedupe_id)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(SignalWorkflowResponse { seq }))
    }

    async fn query(
        &self,
        request: Request<QueryWorkflowRequest>,
    ) -> Result<Response<QueryWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        workflows::check_name("query", &r.name)?;
        let value = self
            .engine
            .query(&key, &r.name)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(QueryWorkflowResponse {
            value_json: value.to_string(),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateWorkflowRequest>,
    ) -> Result<Response<UpdateWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        workflows::check_name("update", &r.name)?;
        let payload = json_field("payload_json", &r.payload_json)?;
        let wait = match r.wait_ms {
            0 => workflows::DEFAULT_UPDATE_WAIT,
            ms => workflows::wait("wait_ms", ms)?,
        };
        let update_id = if r.update_id.is_empty() {
            workflows::new_update_id()
        } else {
            check_id("update_id", &r.update_id)?;
            r.update_id.clone()
        };
        let value = self
            .until_stopped(workflows::update(
                &self.engine,
                &key,
                &r.name,
                &payload,
                &update_id,
                wait,
            ))
            .await?;
        Ok(Response::new(UpdateWorkflowResponse {
            value_json: value.to_string(),
            update_id,
        }))
    }

    async fn cancel(
        &self,
        request: Request<CancelWorkflowRequest>,
    ) -> Result<Response<CancelWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let reason = workflows::cancel_reason(Some(&r.reason))?;
        self.engine
            .cancel(&key, &reason)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(CancelWorkflowResponse {}))
    }

    async fn get_result(
        &self,
        request: Request<WorkflowResultRequest>,
    ) -> Result<Response<WorkflowResultResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let wait = workflows::wait("wait_ms", r.wait_ms)?;
        let outcome = self
            .until_stopped(workflows::outcome(&self.engine, &key, wait))
            .await?;
        Ok(Response::new(match outcome {
            Outcome::Completed(result) => WorkflowResultResponse {
                status: "completed".into(),
                result_json: result.to_string(),
                failure: None,
            },
            Outcome::Ended { status, failure } => WorkflowResultResponse {
                status: status.as_str().to_owned(),
                result_json: String::new(),
                failure: Some(failure_of(failure)),
            },
            Outcome::Running => WorkflowResultResponse {
                status: "running".into(),
                result_json: String::new(),
                failure: None,
            },
        }))
    }

    async fn describe(
        &self,
        request: Request<DescribeWorkflowRequest>,
    ) -> Result<Response<DescribeWorkflowResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let d = self.engine.describe(&key).await.map_err(Error::from)?;
        Ok(Response::new(DescribeWorkflowResponse {
            workflow: Some(info_of(d.record)),
            history_events: d.history_events,
            active_here: d.active_here,
        }))
    }

    async fn list(
        &self,
        request: Request<ListWorkflowsRequest>,
    ) -> Result<Response<ListWorkflowsResponse>, Status> {
        let tenant = self.tenant(&request)?;
        let r = request.into_inner();
        let namespace = (!r.namespace.is_empty()).then_some(r.namespace.as_str());
        if let Some(ns) = namespace {
            workflows::check_namespace(ns)?;
        }
        let status = workflows::status_filter(Some(&r.status))?;
        let limit = workflows::list_limit((r.limit != 0).then_some(u64::from(r.limit)))?;
        let records = self
            .engine
            .list(&tenant, namespace, status, limit)
            .await
            .map_err(Error::from)?;
        Ok(Response::new(ListWorkflowsResponse {
            workflows: records.into_iter().map(info_of).collect(),
        }))
    }

    async fn get_history(
        &self,
        request: Request<WorkflowHistoryRequest>,
    ) -> Result<Response<WorkflowHistoryResponse>, Status> {
        let r = request.get_ref();
        let key = self.key(&request, &r.namespace, &r.workflow_id)?;
        let run = (r.run != 0).then_some(r.run);
        let (run, events) = workflows::history(&self.engine, &key, run).await?;
        let events_json = events
            .iter()
            .map(|e| serde_json::to_string(e).map_err(|e| Error::Io(format!("history: {e}"))))
            .collect::<crate::Result<Vec<_>>>()?;
        Ok(Response::new(WorkflowHistoryResponse { run, events_json }))
    }
}

/// A caller-chosen id (update id, dedupe id): visible ASCII, 1 to
/// [`crate::http::MAX_IDEMPOTENCY_KEY`] bytes.
fn check_id(what: &str, id: &str) -> Result<(), Status> {
    let visible = id.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if id.is_empty() || id.len() > crate::http::MAX_IDEMPOTENCY_KEY || !visible {
        return Err(Error::BadRequest(format!(
            "{what} must be 1 to {} bytes of visible ASCII",
            crate::http::MAX_IDEMPOTENCY_KEY
        ))
        .into());
    }
    Ok(())
}

/// The gRPC router with every service: actor, node, health and reflection.
pub async fn routes(state: GrpcState) -> crate::Result<tonic::service::Routes> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ActorServiceServer<ActorApi>>()
        .await;
    health_reporter
        .set_serving::<NodeServiceServer<NodeApi>>()
        .await;
    health_reporter
        .set_serving::<WorkflowServiceServer<WorkflowApi>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(plexspaces_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("grpc reflection: {e}")))?;
    let mut routes = tonic::service::Routes::new(health_service);
    routes = routes
        .add_service(reflection)
        .add_service(ActorServiceServer::new(ActorApi(state.clone())))
        .add_service(NodeServiceServer::new(NodeApi(state)));
    Ok(routes)
}
