//! The cluster service over gRPC: `plexspaces.v1.ClusterService`.

use plexspaces_proto::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use plexspaces_proto::v1::{ClusterMember, ClusterMembersRequest, ClusterMembersResponse};
use tonic::{Request, Response, Status};

use crate::grpc::caller;
use crate::service::NodeServices;

/// `plexspaces.v1.ClusterService`.
#[derive(Clone)]
pub struct ClusterApi(pub NodeServices);

impl ClusterApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> ClusterServiceServer<Self> {
        ClusterServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterApi {
    async fn members(
        &self,
        request: Request<ClusterMembersRequest>,
    ) -> Result<Response<ClusterMembersResponse>, Status> {
        let caller = caller(&self.0, &request, None)?;
        let status = self.0.cluster.status(&caller);
        Ok(Response::new(ClusterMembersResponse {
            node: status.node,
            cluster_name: status.cluster_name,
            clustered: status.clustered,
            members: status
                .members
                .into_iter()
                .map(|m| ClusterMember {
                    node: m.node,
                    state: m.state.to_owned(),
                    is_self: m.is_self,
                    addr: m.addr,
                    labels: m.labels.into_iter().collect(),
                    last_heartbeat_ms: m.last_heartbeat_ms,
                    heartbeat: m.heartbeat,
                    since_ms: m.since_ms,
                    generation: m.generation,
                    cpus: m.cpus,
                    live_actors: m.live_actors,
                    version: m.version,
                })
                .collect(),
        }))
    }
}
