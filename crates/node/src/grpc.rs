//! The gRPC transport (tonic): the router with every service, `grpc.health.v1.Health`
//! (a status for each served service) and server reflection, plus
//! `plexspaces.v1.NodeService`. The feature services are adapted in their own folders:
//! [`crate::actors::grpc`], [`crate::workflows::grpc`], [`crate::tuplespace::grpc`].
//!
//! The tenant comes from the `authorization: Bearer <jwt>` metadata through the same
//! [`crate::service::Gate`] as on HTTP.

use std::sync::atomic::Ordering;

use plexspaces_proto::v1::actor_service_server::ActorServiceServer;
use plexspaces_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use plexspaces_proto::v1::tuple_space_service_server::TupleSpaceServiceServer;
use plexspaces_proto::v1::workflow_service_server::WorkflowServiceServer;
use plexspaces_proto::v1::{
    CapacityRequest, CapacityResponse, HealthRequest, HealthResponse, MetricsSummaryRequest,
    MetricsSummaryResponse, TypeMetrics,
};
use tonic::{Request, Response, Status};

use crate::actors::grpc::ActorApi;
use crate::blobs::grpc::BlobApi;
use crate::channels::grpc::ChannelApi;
use crate::cluster::grpc::ClusterApi;
use crate::error::Error;
use crate::kv::grpc::KeyValueApi;
use crate::service::{header_id, Caller, NodeServices};
use crate::tuplespace::grpc::TupleSpaceApi;
use crate::workflows::grpc::WorkflowApi;
use plexspaces_proto::v1::blob_service_server::BlobServiceServer;
use plexspaces_proto::v1::channel_service_server::ChannelServiceServer;
use plexspaces_proto::v1::cluster_service_server::ClusterServiceServer;
use plexspaces_proto::v1::key_value_service_server::KeyValueServiceServer;

/// The caller of a gRPC request (counted as one gRPC request): its `authorization`
/// metadata through [`crate::service::Gate::caller`].
pub fn caller<T>(
    services: &NodeServices,
    request: &Request<T>,
    named_tenant: Option<&str>,
) -> crate::Result<Caller> {
    services
        .telemetry
        .grpc_requests
        .fetch_add(1, Ordering::Relaxed);
    let authorization = request
        .metadata()
        .get("authorization")
        .map(|v| v.as_bytes());
    services.gate.caller(authorization, named_tenant)
}

/// The `idempotency-key` request metadata (as the HTTP `Idempotency-Key` header).
pub fn metadata_id<T>(request: &Request<T>) -> crate::Result<Option<String>> {
    header_id(
        "idempotency-key",
        request
            .metadata()
            .get(plexspaces_journal::IDEMPOTENCY_KEY_HEADER)
            .map(|v| v.as_bytes()),
    )
}

/// `plexspaces.v1.NodeService`.
#[derive(Clone)]
pub struct NodeApi(pub NodeServices);

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn health(
        &self,
        request: Request<HealthRequest>,
    ) -> Result<Response<HealthResponse>, Status> {
        let s = &self.0;
        s.telemetry.grpc_requests.fetch_add(1, Ordering::Relaxed);
        let _ = request;
        let node = s.actors.registry().node();
        let status = if s.gate.is_draining() || node.is_shutting_down() {
            "shutting_down"
        } else {
            "serving"
        };
        Ok(Response::new(HealthResponse {
            status: status.into(),
            node_id: node.name().to_owned(),
            uptime_ms: s.telemetry.started.elapsed().as_millis() as u64,
            version: env!("CARGO_PKG_VERSION").into(),
        }))
    }

    async fn capacity(
        &self,
        request: Request<CapacityRequest>,
    ) -> Result<Response<CapacityResponse>, Status> {
        let s = &self.0;
        let _ = caller(s, &request, None)?;
        let registry = s.actors.registry();
        Ok(Response::new(CapacityResponse {
            actor_count: registry.node().actor_count() as u64,
            activation_count: registry.live_count() as u64,
            max_activations: registry.max_activations() as u64,
            mailbox_capacity: s.actors.mailbox_capacity() as u64,
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as u64)
                .unwrap_or(1),
            actor_types: registry.type_names(),
        }))
    }

    /// The caller's figures: its tenant's activations and messages; node-wide request
    /// counts and every tenant's messages only for an operator.
    async fn metrics_summary(
        &self,
        request: Request<MetricsSummaryRequest>,
    ) -> Result<Response<MetricsSummaryResponse>, Status> {
        let s = &self.0;
        let caller = caller(s, &request, None)?;
        let scope = (!caller.operator).then_some(caller.tenant.as_str());
        let types = s
            .actors
            .type_stats(scope)
            .into_iter()
            .map(|t| TypeMetrics {
                actor_type: t.actor_type,
                activations: t.actors,
                messages: t.messages,
                errors: t.errors,
            })
            .collect();
        let (http_requests, grpc_requests) = if caller.operator {
            (
                s.telemetry.http.total(),
                s.telemetry.grpc_requests.load(Ordering::Relaxed),
            )
        } else {
            (0, 0)
        };
        Ok(Response::new(MetricsSummaryResponse {
            http_requests,
            grpc_requests,
            types,
        }))
    }
}

/// The gRPC router with every service: actors, node, workflows, tuple space, health (each
/// of them reported serving) and reflection.
pub async fn routes(services: NodeServices) -> crate::Result<tonic::service::Routes> {
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
    health_reporter
        .set_serving::<TupleSpaceServiceServer<TupleSpaceApi>>()
        .await;
    health_reporter
        .set_serving::<ClusterServiceServer<ClusterApi>>()
        .await;
    health_reporter
        .set_serving::<plexspaces_proto::v1::shard_service_server::ShardServiceServer<
            crate::shards::grpc::ShardApi,
        >>()
        .await;
    health_reporter
        .set_serving::<KeyValueServiceServer<KeyValueApi>>()
        .await;
    health_reporter
        .set_serving::<BlobServiceServer<BlobApi>>()
        .await;
    health_reporter
        .set_serving::<ChannelServiceServer<ChannelApi>>()
        .await;
    health_reporter
        .set_serving::<plexspaces_proto::v1::deploy_service_server::DeployServiceServer<
            crate::deploy::grpc::DeployApi,
        >>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(plexspaces_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Config(format!("grpc reflection: {e}")))?;
    Ok(tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(ActorApi(services.clone()).into_server())
        .add_service(NodeServiceServer::new(NodeApi(services.clone())))
        .add_service(WorkflowApi(services.clone()).into_server())
        .add_service(ClusterApi(services.clone()).into_server())
        .add_service(crate::shards::grpc::ShardApi(services.clone()).into_server())
        .add_service(KeyValueApi(services.clone()).into_server())
        .add_service(BlobApi(services.clone()).into_server())
        .add_service(ChannelApi(services.clone()).into_server())
        .add_service(crate::deploy::grpc::DeployApi(services.clone()).into_server())
        .add_service(TupleSpaceApi(services).into_server()))
}
