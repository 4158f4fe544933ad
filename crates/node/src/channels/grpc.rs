//! The channel service over gRPC: `plexspaces.v1.ChannelService`.

use std::time::Duration;

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::channel_service_server::{ChannelService, ChannelServiceServer};
use tonic::{Request, Response, Status};

use crate::channels::Target;
use crate::error::Error;
use crate::grpc::caller;
use crate::service::NodeServices;

/// `plexspaces.v1.ChannelService` over the node's channel service.
#[derive(Clone)]
pub struct ChannelApi(pub NodeServices);

impl std::fmt::Debug for ChannelApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelApi").finish_non_exhaustive()
    }
}

impl ChannelApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> ChannelServiceServer<Self> {
        ChannelServiceServer::new(self)
    }
}

fn target(t: Option<pb::ChannelTarget>) -> Result<Target, Status> {
    let t = t.ok_or_else(|| Error::BadRequest("target is required".into()))?;
    Ok(Target {
        namespace: t.namespace,
        channel: t.channel,
        group: (!t.group.is_empty()).then_some(t.group),
    })
}

fn message(m: plexspaces_channels::Message) -> pb::ChannelMessage {
    pb::ChannelMessage {
        id: m.id,
        payload: m.payload,
        headers: m.headers.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl ChannelService for ChannelApi {
    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let message_id = self
            .0
            .channels
            .publish(
                &c,
                &r.namespace,
                &r.channel,
                r.topic,
                r.payload,
                r.headers.into_iter().collect(),
            )
            .await?;
        Ok(Response::new(pb::PublishResponse { message_id }))
    }

    async fn receive(
        &self,
        request: Request<pb::ReceiveRequest>,
    ) -> Result<Response<pb::ReceiveResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let t = target(r.target)?;
        let deliveries = self
            .0
            .gate
            .until_stopped(self.0.channels.receive(
                &c,
                &t,
                &r.consumer,
                r.max as usize,
                Duration::from_millis(r.wait_ms),
            ))
            .await?
            .into_iter()
            .map(|d| pb::ChannelDelivery {
                receipt: d.receipt.as_str().to_owned(),
                attempt: d.attempt,
                message: Some(message(d.message)),
            })
            .collect();
        Ok(Response::new(pb::ReceiveResponse { deliveries }))
    }

    async fn ack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let t = target(r.target)?;
        self.0.channels.ack(&c, &t, &r.receipt).await?;
        Ok(Response::new(pb::AckResponse {}))
    }

    async fn nack(
        &self,
        request: Request<pb::AckRequest>,
    ) -> Result<Response<pb::AckResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let t = target(r.target)?;
        self.0
            .channels
            .nack(&c, &t, &r.receipt, Duration::from_millis(r.delay_ms))
            .await?;
        Ok(Response::new(pb::AckResponse {}))
    }

    async fn dead_letters(
        &self,
        request: Request<pb::DeadLettersRequest>,
    ) -> Result<Response<pb::DeadLettersResponse>, Status> {
        let c = caller(&self.0, &request, None)?;
        let r = request.into_inner();
        let t = target(r.target)?;
        let dead_letters = self
            .0
            .channels
            .dead_letters(&c, &t, r.max as usize)
            .await?
            .into_iter()
            .map(|d| pb::DeadLetter {
                message: Some(message(d.message)),
                deliveries: d.deliveries,
            })
            .collect();
        Ok(Response::new(pb::DeadLettersResponse { dead_letters }))
    }
}
