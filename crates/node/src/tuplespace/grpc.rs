//! The tuple space service over gRPC: `plexspaces.v1.TupleSpaceService`, with the
//! protobuf conversions of tuples and templates.

use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::tuple_space_service_server::{
    TupleSpaceService, TupleSpaceServiceServer,
};
use plexspaces_tuplespace::{FieldType, Pattern, Template, Tuple, TupleSpace, Value};
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::grpc::caller;
use crate::service::NodeServices;

/// `plexspaces.v1.TupleSpaceService` over the node's tuple space service.
#[derive(Clone)]
pub struct TupleSpaceApi(pub NodeServices);

impl std::fmt::Debug for TupleSpaceApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TupleSpaceApi").finish_non_exhaustive()
    }
}

impl TupleSpaceApi {
    /// The tonic server for the router.
    pub fn into_server(self) -> TupleSpaceServiceServer<Self> {
        TupleSpaceServiceServer::new(self)
    }

    /// The space a request names, in the caller's tenant, once the node is known to take
    /// new work.
    fn space<T>(&self, request: &Request<T>, namespace: &str, space: &str) -> Result<TupleSpace> {
        let caller = caller(&self.0, request, None)?;
        self.0.gate.check_open()?;
        self.0.spaces.space(&caller, namespace, space)
    }

    /// The caller's space and the request's template (the non-blocking template calls).
    fn space_and_template(
        &self,
        request: Request<pb::TemplateRequest>,
    ) -> Result<(TupleSpace, Template), Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        let template = required_template(request.into_inner().template)?;
        Ok((space, template))
    }
}

// ---- conversions ---------------------------------------------------------------------

/// A tuple from its protobuf form.
pub fn tuple_from_proto(t: pb::Tuple) -> Result<Tuple> {
    t.fields
        .into_iter()
        .map(value_from_proto)
        .collect::<Result<Vec<_>>>()
        .map(Tuple::new)
}

/// A field from its protobuf form; a value with no kind set is a bad request.
pub fn value_from_proto(v: pb::Value) -> Result<Value> {
    use pb::value::Kind;
    Ok(match v.kind {
        None => return Err(Error::BadRequest("a tuple field has no value set".into())),
        Some(Kind::Null(_)) => Value::Null,
        Some(Kind::Bool(b)) => Value::Bool(b),
        Some(Kind::Int(i)) => Value::Int(i),
        Some(Kind::Float(f)) => Value::Float(f),
        Some(Kind::String(s)) => Value::String(s),
        Some(Kind::Bytes(b)) => Value::Bytes(b.to_vec()),
        Some(Kind::Tuple(t)) => Value::Tuple(tuple_from_proto(t)?),
    })
}

/// A tuple in its protobuf form.
pub fn tuple_to_proto(t: Tuple) -> pb::Tuple {
    pb::Tuple {
        fields: t.into_fields().into_iter().map(value_to_proto).collect(),
    }
}

/// A field in its protobuf form.
pub fn value_to_proto(v: Value) -> pb::Value {
    use pb::value::Kind;
    let kind = match v {
        Value::Null => Kind::Null(pb::Empty {}),
        Value::Bool(b) => Kind::Bool(b),
        Value::Int(i) => Kind::Int(i),
        Value::Float(f) => Kind::Float(f),
        Value::String(s) => Kind::String(s),
        Value::Bytes(b) => Kind::Bytes(b.into()),
        Value::Tuple(t) => Kind::Tuple(tuple_to_proto(t)),
    };
    pb::Value { kind: Some(kind) }
}

fn field_type_from_proto(code: i32) -> Result<FieldType> {
    Ok(match pb::FieldType::try_from(code) {
        Ok(pb::FieldType::Null) => FieldType::Null,
        Ok(pb::FieldType::Bool) => FieldType::Bool,
        Ok(pb::FieldType::Int) => FieldType::Int,
        Ok(pb::FieldType::Float) => FieldType::Float,
        Ok(pb::FieldType::String) => FieldType::String,
        Ok(pb::FieldType::Bytes) => FieldType::Bytes,
        Ok(pb::FieldType::Tuple) => FieldType::Tuple,
        Ok(pb::FieldType::Unspecified) | Err(_) => {
            return Err(Error::BadRequest(format!(
                "typed formal with unknown field type {code}"
            )))
        }
    })
}

/// A template from its protobuf form; a pattern with nothing set is a bad request.
pub fn template_from_proto(t: pb::Template) -> Result<Template> {
    use pb::pattern::Kind;
    t.patterns
        .into_iter()
        .map(|p| {
            Ok(match p.kind {
                None => {
                    return Err(Error::BadRequest(
                        "a template pattern has nothing set".into(),
                    ))
                }
                Some(Kind::Any(_)) => Pattern::Any,
                Some(Kind::Type(code)) => Pattern::Type(field_type_from_proto(code)?),
                Some(Kind::Exact(v)) => Pattern::Exact(value_from_proto(v)?),
                Some(Kind::Template(t)) => Pattern::Tuple(template_from_proto(t)?),
            })
        })
        .collect::<Result<Vec<_>>>()
        .map(Template::new)
}

fn required_template(t: Option<pb::Template>) -> Result<Template> {
    template_from_proto(t.ok_or_else(|| Error::BadRequest("template is required".into()))?)
}

fn tuple_response(t: Option<Tuple>) -> Response<pb::TupleResponse> {
    Response::new(pb::TupleResponse {
        tuple: t.map(tuple_to_proto),
    })
}

fn tuples_response(ts: Vec<Tuple>) -> Response<pb::TuplesResponse> {
    Response::new(pb::TuplesResponse {
        tuples: ts.into_iter().map(tuple_to_proto).collect(),
    })
}

fn ts_err(e: plexspaces_tuplespace::Error) -> Status {
    Error::from(e).into()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::WriteEvent, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl TupleSpaceService for TupleSpaceApi {
    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::WriteResponse>, Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        let r = request.into_inner();
        let tuple = tuple_from_proto(
            r.tuple
                .ok_or_else(|| Error::BadRequest("tuple is required".into()))?,
        )?;
        let (id, expires_at_ms) = if r.ttl_ms == 0 {
            (space.write(tuple).await.map_err(ts_err)?, 0)
        } else {
            let lease = space
                .write_with_lease(tuple, Duration::from_millis(r.ttl_ms))
                .await
                .map_err(ts_err)?;
            (lease.id(), lease.expires_at().0)
        };
        Ok(Response::new(pb::WriteResponse {
            id: id.0,
            expires_at_ms,
        }))
    }

    async fn read(
        &self,
        request: Request<pb::WaitRequest>,
    ) -> Result<Response<pb::TupleResponse>, Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        let r = request.into_inner();
        let template = required_template(r.template)?;
        let tuple = space
            .read(&template, self.0.spaces.wait(r.timeout_ms))
            .await
            .map_err(ts_err)?;
        Ok(tuple_response(Some(tuple)))
    }

    async fn take(
        &self,
        request: Request<pb::WaitRequest>,
    ) -> Result<Response<pb::TupleResponse>, Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        let r = request.into_inner();
        let template = required_template(r.template)?;
        let tuple = space
            .take(&template, self.0.spaces.wait(r.timeout_ms))
            .await
            .map_err(ts_err)?;
        Ok(tuple_response(Some(tuple)))
    }

    async fn read_if_exists(
        &self,
        request: Request<pb::TemplateRequest>,
    ) -> Result<Response<pb::TupleResponse>, Status> {
        let (space, template) = self.space_and_template(request)?;
        let tuple = space.read_if_exists(&template).await.map_err(ts_err)?;
        Ok(tuple_response(tuple))
    }

    async fn take_if_exists(
        &self,
        request: Request<pb::TemplateRequest>,
    ) -> Result<Response<pb::TupleResponse>, Status> {
        let (space, template) = self.space_and_template(request)?;
        let tuple = space.take_if_exists(&template).await.map_err(ts_err)?;
        Ok(tuple_response(tuple))
    }

    async fn read_all(
        &self,
        request: Request<pb::TemplateRequest>,
    ) -> Result<Response<pb::TuplesResponse>, Status> {
        let (space, template) = self.space_and_template(request)?;
        let tuples = space.read_all(&template).await.map_err(ts_err)?;
        Ok(tuples_response(tuples))
    }

    async fn take_all(
        &self,
        request: Request<pb::TemplateRequest>,
    ) -> Result<Response<pb::TuplesResponse>, Status> {
        let (space, template) = self.space_and_template(request)?;
        let tuples = space.take_all(&template).await.map_err(ts_err)?;
        Ok(tuples_response(tuples))
    }

    async fn count(
        &self,
        request: Request<pb::TemplateRequest>,
    ) -> Result<Response<pb::CountResponse>, Status> {
        let (space, template) = self.space_and_template(request)?;
        let count = space.count(&template).await.map_err(ts_err)?;
        Ok(Response::new(pb::CountResponse { count }))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<pb::TemplateRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        let template = required_template(request.into_inner().template)?;
        let subscription = space.subscribe(&template).map_err(ts_err)?;
        let mut stop = self.0.gate.stopped();
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let events = futures::stream::unfold(subscription, |mut sub| async move {
            let ev = sub.next().await?;
            let event = pb::WriteEvent {
                id: ev.id.0,
                tuple: Some(tuple_to_proto(ev.tuple)),
                missed: sub.missed(),
            };
            Some((Ok(event), sub))
        })
        .take_until(stopped);
        Ok(Response::new(Box::pin(events)))
    }

    async fn take_leased(
        &self,
        request: Request<pb::TakeLeasedRequest>,
    ) -> Result<Response<pb::TakeLeasedResponse>, Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        let r = request.into_inner();
        let template = required_template(r.template)?;
        if r.lease_ms == 0 || r.lease_ms > MAX_TAKE_LEASE_MS {
            return Err(Error::BadRequest(format!(
                "lease_ms must be within 1..={MAX_TAKE_LEASE_MS}"
            ))
            .into());
        }
        let taken = space
            .take_leased(
                &template,
                self.0.spaces.wait(r.timeout_ms),
                Duration::from_millis(r.lease_ms),
            )
            .await
            .map_err(ts_err)?;
        Ok(Response::new(pb::TakeLeasedResponse {
            lease: taken.lease,
            id: taken.id.0,
            tuple: Some(tuple_to_proto(taken.tuple)),
        }))
    }

    async fn confirm_take(
        &self,
        request: Request<pb::TakeLeaseRequest>,
    ) -> Result<Response<pb::TupleResponse>, Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        let tuple = space.confirm(r.lease).await.map_err(ts_err)?;
        Ok(tuple_response(Some(tuple)))
    }

    async fn release_take(
        &self,
        request: Request<pb::TakeLeaseRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let r = request.get_ref();
        let space = self.space(&request, &r.namespace, &r.space)?;
        space.release(r.lease).await.map_err(ts_err)?;
        Ok(Response::new(pb::Empty {}))
    }
}

/// The longest take lease a caller may ask for (5 minutes).
pub const MAX_TAKE_LEASE_MS: u64 = 300_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_roundtrip_through_proto() {
        let t = Tuple::new(vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(-7),
            Value::Float(1.5),
            Value::String("job".into()),
            Value::Bytes(vec![0, 255]),
            Value::Tuple(Tuple::new(vec![Value::Int(1)])),
        ]);
        assert_eq!(
            tuple_from_proto(tuple_to_proto(t.clone())).expect("decodes"),
            t
        );
    }

    #[test]
    fn unset_fields_and_patterns_are_bad_requests() {
        let t = pb::Tuple {
            fields: vec![pb::Value { kind: None }],
        };
        assert_eq!(tuple_from_proto(t).unwrap_err().kind(), "bad_request");
        let tpl = pb::Template {
            patterns: vec![pb::Pattern { kind: None }],
        };
        assert_eq!(template_from_proto(tpl).unwrap_err().kind(), "bad_request");
        let tpl = pb::Template {
            patterns: vec![pb::Pattern {
                kind: Some(pb::pattern::Kind::Type(99)),
            }],
        };
        assert_eq!(template_from_proto(tpl).unwrap_err().kind(), "bad_request");
    }
}
