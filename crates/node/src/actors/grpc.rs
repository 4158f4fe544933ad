//! The actors service over gRPC: `plexspaces.v1.ActorService`.
//!
//! An address's `tenant` field, when set, must be the caller's own (as a path's tenant on
//! HTTP).

use std::time::Duration;

use plexspaces_proto::v1::actor_service_server::{ActorService, ActorServiceServer};
use plexspaces_proto::v1::{
    ActorAddress, ActorSummary, AskRequest, AskResponse, DescribeRequest, DescribeResponse,
    DurableStatusRequest, DurableStatusResponse, FailedMessage, ListRequest, ListResponse,
    ResolveFailedRequest, SpawnRequest, SpawnResponse, StopRequest, StopResponse, TellRequest,
    TellResponse,
};
use tonic::{Request, Response, Status};

use crate::actors::{Invocation, Reply};
use crate::error::Error;
use crate::grpc::{caller, metadata_id};
use crate::registry::{lifecycle_name, Activation, ActivationKey};
use crate::service::{Caller, NodeServices};

/// `plexspaces.v1.ActorService`.
#[derive(Clone)]
pub struct ActorApi(pub NodeServices);

impl ActorApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> ActorServiceServer<Self> {
        ActorServiceServer::new(self)
    }

    /// The caller and the activation a request addresses (in the caller's tenant).
    fn resolve<T: Addressed>(
        &self,
        request: &Request<T>,
    ) -> Result<(Caller, ActivationKey), Status> {
        let address = request.get_ref().address();
        let named = address.map(|a| a.tenant.as_str()).filter(|t| !t.is_empty());
        let caller = caller(&self.0, request, named)?;
        let a = address.ok_or_else(|| Error::BadRequest("address is required".into()))?;
        let key = self
            .0
            .actors
            .address(&caller, &a.namespace, &a.actor_type, &a.key)?;
        Ok((caller, key))
    }

    /// Sends one message (tell or ask) to the addressed actor.
    async fn send<T: Addressed>(
        &self,
        request: Request<T>,
        message: impl FnOnce(T) -> (String, Vec<u8>, String, Reply),
    ) -> Result<Option<plexspaces_core::Envelope>, Status> {
        let (caller, key) = self.resolve(&request)?;
        self.0.gate.check_open()?;
        let idempotency_key = metadata_id(&request)?;
        let (msg_type, payload, content_type, reply) = message(request.into_inner());
        let invocation = Invocation {
            msg_type,
            payload: payload.into(),
            content_type,
            idempotency_key,
            reply,
            caller: Some(caller),
        };
        Ok(self.0.actors.invoke(&key, invocation).await?)
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
    DescribeRequest,
    DurableStatusRequest,
    ResolveFailedRequest
);

fn durable_status_of(s: crate::actors::DurableStatus) -> DurableStatusResponse {
    DurableStatusResponse {
        actor: s.actor,
        state: s.state.to_owned(),
        active: s.active,
        max_attempts: s.max_attempts,
        failed_message: s.failed_message.map(|f| FailedMessage {
            seq: f.seq,
            idempotency_key: f.idempotency_key.unwrap_or_default(),
            attempts: f.attempts,
            last_error: f.last_error,
            last_failed_at_ms: f.last_failed_at_ms,
            retry_at_ms: f.retry_at_ms.unwrap_or(0),
        }),
    }
}

#[tonic::async_trait]
impl ActorService for ActorApi {
    async fn spawn(
        &self,
        request: Request<SpawnRequest>,
    ) -> Result<Response<SpawnResponse>, Status> {
        let (_, key) = self.resolve(&request)?;
        self.0.gate.check_open()?;
        let (actor_id, activated) = self.0.actors.spawn(&key).await?;
        Ok(Response::new(SpawnResponse {
            actor_id,
            activated,
        }))
    }

    async fn tell(&self, request: Request<TellRequest>) -> Result<Response<TellResponse>, Status> {
        self.send(request, |r| {
            (r.msg_type, r.payload.to_vec(), r.content_type, Reply::Tell)
        })
        .await?;
        Ok(Response::new(TellResponse {}))
    }

    async fn ask(&self, request: Request<AskRequest>) -> Result<Response<AskResponse>, Status> {
        let actors = self.0.actors.clone();
        let reply = self
            .send(request, |r| {
                let wait = (r.timeout_ms != 0).then(|| Duration::from_millis(r.timeout_ms));
                let reply = Reply::Ask(actors.ask_timeout(wait));
                (r.msg_type, r.payload.to_vec(), r.content_type, reply)
            })
            .await?
            .ok_or_else(|| Status::internal("an ask ended without a reply"))?;
        Ok(Response::new(AskResponse {
            msg_type: reply.msg_type,
            payload: reply.payload,
            content_type: reply.content_type,
        }))
    }

    async fn stop(&self, request: Request<StopRequest>) -> Result<Response<StopResponse>, Status> {
        let (_, key) = self.resolve(&request)?;
        let stopped = self.0.actors.stop(&key).await;
        Ok(Response::new(StopResponse { stopped }))
    }

    async fn list(&self, request: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let named = Some(request.get_ref().tenant.as_str()).filter(|t| !t.is_empty());
        let caller = caller(&self.0, &request, named)?;
        let r = request.into_inner();
        let namespace = Some(r.namespace.as_str()).filter(|n| !n.is_empty());
        let actor_type = Some(r.actor_type.as_str()).filter(|t| !t.is_empty());
        let actors = self
            .0
            .actors
            .list(&caller, namespace, actor_type)
            .iter()
            .flat_map(|a| summaries(a))
            .collect();
        Ok(Response::new(ListResponse { actors }))
    }

    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        let (_, key) = self.resolve(&request)?;
        let activation = self.0.actors.describe(&key)?;
        let actor = summaries(&activation).into_iter().next();
        Ok(Response::new(DescribeResponse { actor }))
    }

    async fn durable_status(
        &self,
        request: Request<DurableStatusRequest>,
    ) -> Result<Response<DurableStatusResponse>, Status> {
        let (_, key) = self.resolve(&request)?;
        let status = self.0.actors.durable_status(&key).await?;
        Ok(Response::new(durable_status_of(status)))
    }

    async fn resolve_failed(
        &self,
        request: Request<ResolveFailedRequest>,
    ) -> Result<Response<DurableStatusResponse>, Status> {
        let (caller, key) = self.resolve(&request)?;
        self.0.gate.check_open()?;
        let r = request.into_inner();
        let resolution =
            crate::actors::Actors::resolution(&r.action, &caller.tenant, Some(r.reason.as_str()))?;
        let before = self.0.actors.resolve_failed(&key, resolution).await?;
        Ok(Response::new(durable_status_of(before)))
    }
}
