//! The deploy service over gRPC: `plexspaces.v1.DeployService`. It takes messages up to
//! `wasm.max_module_bytes` plus 1 MiB (a module travels in one `DeployRequest`).

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::deploy_service_server::{DeployService, DeployServiceServer};
use tonic::{Request, Response, Status};

use crate::deploy::{DeployRequest, Deployment};
use crate::error::Error;
use crate::grpc::caller;
use crate::service::NodeServices;

/// `plexspaces.v1.DeployService` over the node's deploy service.
#[derive(Clone)]
pub struct DeployApi(pub NodeServices);

impl std::fmt::Debug for DeployApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployApi").finish_non_exhaustive()
    }
}

impl DeployApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> DeployServiceServer<Self> {
        let limit = self.0.deployments.config().max_upload_bytes();
        DeployServiceServer::new(self).max_decoding_message_size(limit)
    }
}

/// A deployment as the wire carries it.
pub fn info(d: Deployment) -> pb::DeploymentInfo {
    pb::DeploymentInfo {
        config_json: d.config.to_string(),
        tenant: d.tenant,
        namespace: d.namespace,
        actor_type: d.actor_type,
        version: d.version,
        digest: d.digest,
        size_bytes: d.size_bytes,
        facets: d.facets,
        handlers: d.handlers,
        durable: d.durable,
        max_memory_bytes: d.max_memory_bytes,
        call_timeout_ms: d.call_timeout_ms,
        deployed_at_ms: d.deployed_at_ms,
    }
}

#[tonic::async_trait]
impl DeployService for DeployApi {
    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::DeployResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let config = if r.config_json.trim().is_empty() {
            None
        } else {
            Some(
                serde_json::from_str(&r.config_json)
                    .map_err(|e| Error::BadRequest(format!("config_json is not JSON: {e}")))?,
            )
        };
        let deployed = self
            .0
            .deployments
            .deploy(
                &c,
                DeployRequest {
                    namespace: r.namespace,
                    actor_type: r.actor_type,
                    wasm: r.wasm,
                    max_memory_bytes: (r.max_memory_bytes > 0).then_some(r.max_memory_bytes),
                    call_timeout_ms: (r.call_timeout_ms > 0).then_some(r.call_timeout_ms),
                    config,
                },
            )
            .await?;
        Ok(Response::new(pb::DeployResponse {
            deployment: Some(info(deployed.deployment)),
            replaced_version: deployed.replaced_version.unwrap_or(0),
            deactivated: deployed.deactivated,
            notes: deployed.notes,
        }))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let namespace = (!r.namespace.is_empty()).then_some(r.namespace.as_str());
        let deployments = self
            .0
            .deployments
            .list(&c, namespace)?
            .into_iter()
            .map(info)
            .collect();
        Ok(Response::new(pb::ListDeploymentsResponse { deployments }))
    }

    async fn describe_deployment(
        &self,
        request: Request<pb::DeploymentRef>,
    ) -> Result<Response<pb::DeploymentInfo>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let d = self
            .0
            .deployments
            .describe(&c, &r.namespace, &r.actor_type)?;
        Ok(Response::new(info(d)))
    }

    async fn undeploy(
        &self,
        request: Request<pb::DeploymentRef>,
    ) -> Result<Response<pb::UndeployResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let (d, deactivated) = self
            .0
            .deployments
            .undeploy(&c, &r.namespace, &r.actor_type)
            .await?;
        Ok(Response::new(pb::UndeployResponse {
            deployment: Some(info(d)),
            deactivated,
        }))
    }
}
