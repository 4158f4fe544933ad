//! The blob service over gRPC: `plexspaces.v1.BlobService` (client-streamed `Put`,
//! server-streamed `Get`).

use std::pin::Pin;

use futures::{Stream, StreamExt};
use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::blob_service_server::{BlobService, BlobServiceServer};
use plexspaces_storage::BlobMeta;
use tonic::{Request, Response, Status, Streaming};

use crate::error::Error;
use crate::grpc::caller;
use crate::service::NodeServices;

/// `plexspaces.v1.BlobService` over the node's blob service.
#[derive(Clone)]
pub struct BlobApi(pub NodeServices);

impl std::fmt::Debug for BlobApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobApi").finish_non_exhaustive()
    }
}

impl BlobApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> BlobServiceServer<Self> {
        BlobServiceServer::new(self)
    }
}

fn meta(m: BlobMeta) -> pb::BlobMeta {
    pb::BlobMeta {
        key: m.key,
        size: m.size,
        e_tag: m.e_tag.unwrap_or_default(),
    }
}

/// The size of a chunk of a streamed download.
const CHUNK: usize = 64 * 1024;

#[tonic::async_trait]
impl BlobService for BlobApi {
    async fn put(
        &self,
        request: Request<Streaming<pb::BlobChunk>>,
    ) -> Result<Response<pb::BlobMeta>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let mut chunks = request.into_inner();
        let Some(first) = chunks.message().await? else {
            return Err(
                Error::BadRequest("an upload needs a first chunk naming the blob".into()).into(),
            );
        };
        let (ns, key) = (first.namespace, first.key);
        let rest = chunks.map(|c| c.map(|c| c.data));
        let data = futures::stream::iter([Ok::<_, Status>(first.data)]).chain(rest);
        let m = self.0.blobs.put(&c, &ns, &key, Box::pin(data)).await?;
        Ok(Response::new(meta(m)))
    }

    type GetStream = Pin<Box<dyn Stream<Item = Result<pb::BlobChunk, Status>> + Send>>;

    async fn get(
        &self,
        request: Request<pb::BlobKeyRequest>,
    ) -> Result<Response<Self::GetStream>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let stream = self.0.blobs.get(&c, &r.namespace, &r.key).await?;
        let chunks = stream.flat_map(|item| {
            let out: Vec<Result<pb::BlobChunk, Status>> = match item {
                Ok(bytes) => (0..bytes.len())
                    .step_by(CHUNK)
                    .map(|at| {
                        Ok(pb::BlobChunk {
                            data: bytes.slice(at..(at + CHUNK).min(bytes.len())),
                            ..Default::default()
                        })
                    })
                    .collect(),
                Err(e) => vec![Err(Error::from(e).into())],
            };
            futures::stream::iter(out)
        });
        Ok(Response::new(Box::pin(chunks)))
    }

    async fn head(
        &self,
        request: Request<pb::BlobKeyRequest>,
    ) -> Result<Response<pb::BlobMeta>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        Ok(Response::new(meta(
            self.0.blobs.head(&c, &r.namespace, &r.key).await?,
        )))
    }

    async fn delete(
        &self,
        request: Request<pb::BlobKeyRequest>,
    ) -> Result<Response<pb::BlobDeleteResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        self.0.blobs.delete(&c, &r.namespace, &r.key).await?;
        Ok(Response::new(pb::BlobDeleteResponse {}))
    }

    async fn list(
        &self,
        request: Request<pb::BlobListRequest>,
    ) -> Result<Response<pb::BlobListResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let blobs = self
            .0
            .blobs
            .list(&c, &r.namespace, &r.prefix)
            .await?
            .into_iter()
            .map(meta)
            .collect();
        Ok(Response::new(pb::BlobListResponse { blobs }))
    }
}
