//! The shard group service over gRPC: `plexspaces.v1.ShardService`. Values, queries and
//! answers travel as JSON text.

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::shard_service_server::{ShardService, ShardServiceServer};
use plexspaces_shard::{KvQuery, ShardFailure, Strategy};
use tonic::{Request, Response, Status};

use super::{GroupInfo, GroupSpec, Mode};
use crate::error::{Error, Result};
use crate::grpc::caller;
use crate::service::NodeServices;

/// `plexspaces.v1.ShardService` over the node's shard group service.
#[derive(Clone)]
pub struct ShardApi(pub NodeServices);

impl std::fmt::Debug for ShardApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardApi").finish_non_exhaustive()
    }
}

impl ShardApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> ShardServiceServer<Self> {
        ShardServiceServer::new(self)
    }
}

fn info_to_proto(info: GroupInfo) -> pb::ShardGroupInfo {
    let (strategy, vnodes, bounds) = match info.strategy {
        Strategy::Hash => ("hash", 0, Vec::new()),
        Strategy::ConsistentHash { vnodes } => ("consistent_hash", vnodes as u32, Vec::new()),
        Strategy::Range { bounds } => ("range", 0, bounds),
    };
    pb::ShardGroupInfo {
        namespace: info.namespace,
        name: info.name,
        shards: info.shards,
        strategy: strategy.into(),
        vnodes,
        bounds,
        shard_ids: info.shard_ids,
    }
}

fn failure_to_proto(f: ShardFailure) -> pb::ShardFailure {
    pb::ShardFailure {
        shard: f.shard as u32,
        id: f.id,
        kind: f.kind,
        error: f.error,
    }
}

/// The strategy a create request names.
fn strategy_from_proto(r: &pb::CreateShardGroupRequest) -> Result<Strategy<String>> {
    match r.strategy.as_str() {
        "" | "hash" => Ok(Strategy::Hash),
        "consistent_hash" => Ok(Strategy::ConsistentHash {
            vnodes: if r.vnodes == 0 { 64 } else { r.vnodes as usize },
        }),
        "range" => Ok(Strategy::Range {
            bounds: r.bounds.clone(),
        }),
        other => Err(Error::BadRequest(format!(
            "strategy must be hash, consistent_hash or range, not {other:?}"
        ))),
    }
}

#[tonic::async_trait]
impl ShardService for ShardApi {
    async fn create_group(
        &self,
        request: Request<pb::CreateShardGroupRequest>,
    ) -> Result<Response<pb::ShardGroupInfo>, Status> {
        let s = &self.0;
        let caller = caller(s, &request, None)?;
        s.gate.check_open()?;
        let r = request.into_inner();
        let spec = GroupSpec {
            strategy: strategy_from_proto(&r)?,
            name: r.name,
            shards: r.shards,
        };
        let info = s.shards.create(&caller, &r.namespace, spec).await?;
        Ok(Response::new(info_to_proto(info)))
    }

    async fn get_group(
        &self,
        request: Request<pb::ShardGroupRef>,
    ) -> Result<Response<pb::ShardGroupInfo>, Status> {
        let s = &self.0;
        let caller = caller(s, &request, None)?;
        let r = request.get_ref();
        let info = s.shards.get(&caller, &r.namespace, &r.name)?;
        Ok(Response::new(info_to_proto(info)))
    }

    async fn delete_group(
        &self,
        request: Request<pb::ShardGroupRef>,
    ) -> Result<Response<pb::DeleteShardGroupResponse>, Status> {
        let s = &self.0;
        let caller = caller(s, &request, None)?;
        let r = request.get_ref();
        s.shards.delete(&caller, &r.namespace, &r.name).await?;
        Ok(Response::new(pb::DeleteShardGroupResponse {}))
    }

    async fn bulk_update(
        &self,
        request: Request<pb::BulkUpdateRequest>,
    ) -> Result<Response<pb::BulkUpdateResponse>, Status> {
        let s = &self.0;
        let caller = caller(s, &request, None)?;
        s.gate.check_open()?;
        let r = request.into_inner();
        let items = r
            .items
            .into_iter()
            .map(|i| {
                serde_json::from_str(&i.value_json)
                    .map(|v| (i.key, v))
                    .map_err(|e| Error::BadRequest(format!("value_json: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let report = s
            .shards
            .bulk_update(&caller, &r.namespace, &r.name, items)
            .await?;
        Ok(Response::new(pb::BulkUpdateResponse {
            submitted: report.submitted,
            applied: report.applied,
            failed: report.failed,
            shards: report
                .shards
                .into_iter()
                .map(|b| pb::ShardBulkReport {
                    shard: b.shard as u32,
                    applied: b.applied,
                    failed: b.failed,
                    error: b.error.map(failure_to_proto),
                })
                .collect(),
        }))
    }

    async fn query(
        &self,
        request: Request<pb::ShardQueryRequest>,
    ) -> Result<Response<pb::ShardQueryResponse>, Status> {
        let s = &self.0;
        let caller = caller(s, &request, None)?;
        s.gate.check_open()?;
        let r = request.into_inner();
        let raw: serde_json::Value = serde_json::from_str(&r.query_json)
            .map_err(|e| Error::BadRequest(format!("query_json: {e}")))?;
        super::no_extra_fields(Some(&raw), "op", &["count", "sum"])?;
        let query: KvQuery = serde_json::from_value(raw)
            .map_err(|e| Error::BadRequest(format!("query_json: {e}")))?;
        let mode = Mode::parse(&r.mode)?;
        let result = s
            .gate
            .until_stopped(s.shards.query(
                &caller,
                &r.namespace,
                &r.name,
                query,
                r.timeout_ms,
                mode,
            ))
            .await?;
        let result_json = serde_json::to_string(&result.result)
            .map_err(|e| Error::Core(plexspaces_core::Error::Encode(e.to_string())))?;
        Ok(Response::new(pb::ShardQueryResponse {
            result_json,
            answered: result.answered.into_iter().map(|i| i as u32).collect(),
            failed: result.failed.into_iter().map(failure_to_proto).collect(),
        }))
    }
}
