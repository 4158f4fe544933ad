//! The key-value service over gRPC: `plexspaces.v1.KeyValueService`.

use std::time::Duration;

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::key_value_service_server::{KeyValueService, KeyValueServiceServer};
use tonic::{Request, Response, Status};

use crate::grpc::caller;
use crate::kv::{Write, Written};
use crate::service::NodeServices;

/// `plexspaces.v1.KeyValueService` over the node's key-value service.
#[derive(Clone)]
pub struct KeyValueApi(pub NodeServices);

impl std::fmt::Debug for KeyValueApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValueApi").finish_non_exhaustive()
    }
}

impl KeyValueApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> KeyValueServiceServer<Self> {
        KeyValueServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl KeyValueService for KeyValueApi {
    async fn get(
        &self,
        request: Request<pb::KvGetRequest>,
    ) -> Result<Response<pb::KvGetResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let v = self.0.kv.get(&c, &r.namespace, &r.key).await?;
        Ok(Response::new(match v {
            Some(v) => pb::KvGetResponse {
                found: true,
                value: v.value.into(),
                version: v.version,
            },
            None => pb::KvGetResponse::default(),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::KvPutRequest>,
    ) -> Result<Response<pb::KvPutResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let write = Write {
            ttl: (r.ttl_ms > 0).then(|| Duration::from_millis(r.ttl_ms)),
            if_version: r.if_version,
            fence: r.fence,
        };
        let written = self
            .0
            .kv
            .put(&c, &r.namespace, &r.key, &r.value, write)
            .await?;
        Ok(Response::new(match written {
            Written::Version(version) => pb::KvPutResponse {
                written: true,
                version,
                current_version: version,
            },
            Written::Conflict(current) => pb::KvPutResponse {
                written: false,
                version: 0,
                current_version: current,
            },
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::KvKeyRequest>,
    ) -> Result<Response<pb::KvDeleteResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let deleted = self.0.kv.delete(&c, &r.namespace, &r.key).await?;
        Ok(Response::new(pb::KvDeleteResponse { deleted }))
    }

    async fn list(
        &self,
        request: Request<pb::KvListRequest>,
    ) -> Result<Response<pb::KvListResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let entries = self
            .0
            .kv
            .list(&c, &r.namespace, &r.prefix, r.limit as usize)
            .await?
            .into_iter()
            .map(|(key, v)| pb::KvEntry {
                key,
                value: v.value.into(),
                version: v.version,
            })
            .collect();
        Ok(Response::new(pb::KvListResponse { entries }))
    }

    async fn increment(
        &self,
        request: Request<pb::KvIncrementRequest>,
    ) -> Result<Response<pb::KvIncrementResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let value = self
            .0
            .kv
            .increment(&c, &r.namespace, &r.key, r.delta)
            .await?;
        Ok(Response::new(pb::KvIncrementResponse { value }))
    }
}
