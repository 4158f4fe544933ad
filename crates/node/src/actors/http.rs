//! The actors service over HTTP (FaaS invocation):
//! - `GET|POST|PUT|DELETE /api/v1/actors/[{tenant_id}/]{namespace}/{actor_type}`
//! - `POST /api/v1/actors/[{tenant_id}/]{namespace}/{actor_type}/invoke?msg_type=NAME`
//!
//! - `GET /api/v1/durable/{namespace}/{actor_type}/{key}`: a durable actor's retry state
//!   (`ok`, `retrying`, `paused`) with its failed message and last error;
//!   `POST .../resume` retries a paused message, `POST .../abandon` (optional body
//!   `{"reason": "..."}`) drops it. In the caller's tenant.
//!
//! Query parameters `msg_type`, `key`, `fire_and_forget` and `timeout_ms` steer the call;
//! on GET the other query parameters become the JSON payload. An `Idempotency-Key` header
//! becomes the envelope header [`plexspaces_journal::IDEMPOTENCY_KEY_HEADER`]: a durable
//! actor runs such a request once and answers duplicates with the first reply.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{MatchedPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::{Deserializer, Error as _};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::actors::{Invocation, Reply};
use crate::error::Error;
use crate::http::{body_of, respond, Body, Params, Scoped, ScopedPath};
use crate::service::{header_id, NodeServices};

/// Query parameters that steer a call and are never part of the payload.
pub const RESERVED_PARAMS: &[&str] = &["msg_type", "key", "fire_and_forget", "timeout_ms"];

/// The shortest `timeout_ms` accepted; shorter deadlines are a 400, not a guaranteed 504.
pub const MIN_TIMEOUT_MS: u64 = 100;

/// The actor routes.
pub fn routes() -> Router<NodeServices> {
    let plain = get(call).post(call).put(call).delete(call);
    Router::new()
        .route("/api/v1/actors/{p1}/{p2}", plain.clone())
        .route("/api/v1/actors/{p1}/{p2}/{p3}", plain)
        .route("/api/v1/actors/{p1}/{p2}/invoke", post(call))
        .route("/api/v1/actors/{p1}/{p2}/{p3}/invoke", post(call))
        .route("/api/v1/durable/{p1}/{p2}/{p3}", get(durable_status))
        .route(
            "/api/v1/durable/{p1}/{p2}/{p3}/resume",
            post(durable_resume),
        )
        .route(
            "/api/v1/durable/{p1}/{p2}/{p3}/abandon",
            post(durable_abandon),
        )
}

/// The body of `POST .../abandon` (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AbandonBody {
    #[serde(default)]
    reason: Option<String>,
}

async fn durable_status(
    State(s): State<NodeServices>,
    scoped: Scoped<(String, String, String)>,
) -> Response {
    respond(status_of_durable(&s, scoped).await)
}

async fn status_of_durable(
    s: &NodeServices,
    scoped: Scoped<(String, String, String)>,
) -> crate::Result<Response> {
    let Scoped { caller, path } = scoped;
    let key = s.actors.address(&caller, &path.0, &path.1, &path.2)?;
    let status = s.actors.durable_status(&key).await?;
    Ok(Json(status).into_response())
}

async fn durable_resume(
    State(s): State<NodeServices>,
    scoped: Scoped<(String, String, String)>,
) -> Response {
    respond(resolve_durable(&s, scoped, None).await)
}

async fn durable_abandon(
    State(s): State<NodeServices>,
    scoped: Scoped<(String, String, String)>,
    body: Body,
) -> Response {
    respond(resolve_durable(&s, scoped, Some(body)).await)
}

/// Resume (`abandon: None`) or abandon (with the request body) a failed message.
async fn resolve_durable(
    s: &NodeServices,
    scoped: Scoped<(String, String, String)>,
    abandon: Option<Body>,
) -> crate::Result<Response> {
    s.gate.check_open()?;
    let Scoped { caller, path } = scoped;
    let resolution = match abandon {
        None => crate::actors::Actors::resolution("resume", &caller.tenant, None)?,
        Some(body) => {
            let body = body_of(s, body)?;
            let AbandonBody { reason } =
                crate::http::json_body(&body, Some(AbandonBody::default()))?;
            crate::actors::Actors::resolution("abandon", &caller.tenant, reason.as_deref())?
        }
    };
    let key = s.actors.address(&caller, &path.0, &path.1, &path.2)?;
    let verb = match resolution {
        plexspaces_journal::Resolution::Resume => "resumed",
        plexspaces_journal::Resolution::Abandon { .. } => "abandoned",
    };
    let before = s.actors.resolve_failed(&key, resolution).await?;
    Ok(Json(json!({ verb: true, "before": before })).into_response())
}

/// `[{tenant_id}/]{namespace}/{actor_type}`: the tenant is named only in the long form.
#[derive(Debug)]
pub struct ActorPath {
    tenant: Option<String>,
    namespace: String,
    actor_type: String,
}

impl<'de> Deserialize<'de> for ActorPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut parts = Vec::<String>::deserialize(d)?.into_iter();
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(namespace), Some(actor_type), None, None) => Ok(ActorPath {
                tenant: None,
                namespace,
                actor_type,
            }),
            (Some(tenant), Some(namespace), Some(actor_type), None) => Ok(ActorPath {
                tenant: Some(tenant),
                namespace,
                actor_type,
            }),
            _ => Err(D::Error::custom("expected [tenant/]namespace/actor_type")),
        }
    }
}

impl ScopedPath for ActorPath {
    fn named_tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
}

/// Both route shapes: `.../invoke` needs a `msg_type`, the plain one defaults it from the
/// method.
async fn call(
    State(s): State<NodeServices>,
    method: Method,
    route: MatchedPath,
    scoped: Scoped<ActorPath>,
    headers: HeaderMap,
    query: Params,
    body: Body,
) -> Response {
    let named = route.as_str().ends_with("/invoke");
    respond(invoke_actor(&s, &method, scoped, named, &headers, query, body).await)
}

/// The default msg_type of each method (a `msg_type` parameter overrides it).
pub fn default_msg_type(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::DELETE => "delete",
        _ => "update",
    }
}

async fn invoke_actor(
    s: &NodeServices,
    method: &Method,
    scoped: Scoped<ActorPath>,
    named: bool,
    headers: &HeaderMap,
    query: Params,
    body: Body,
) -> crate::Result<Response> {
    let Scoped { caller, path } = scoped;
    s.gate.check_open()?;
    let params = crate::http::query_of(query)?;
    let body = body_of(s, body)?;
    let mut steer: BTreeMap<&str, String> = BTreeMap::new();
    let mut payload_params = serde_json::Map::new();
    for (k, v) in &params {
        if let Some(reserved) = RESERVED_PARAMS.iter().find(|r| **r == k) {
            steer.insert(reserved, v.clone());
        } else {
            payload_params.insert(k.clone(), Value::String(v.clone()));
        }
    }
    let msg_type = match steer.get("msg_type") {
        Some(t) if !t.is_empty() => t.clone(),
        Some(_) => return Err(Error::BadRequest("msg_type is empty".into())),
        None if named => {
            return Err(Error::BadRequest(
                "invoke needs a msg_type query parameter".into(),
            ))
        }
        None => default_msg_type(method).to_owned(),
    };
    let fire_and_forget = match steer.get("fire_and_forget").map(String::as_str) {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "fire_and_forget={other:?}: expected true or false"
            )))
        }
    };
    let timeout = match steer.get("timeout_ms") {
        None => None,
        Some(ms) => {
            let ms: u64 = ms.parse().map_err(|_| {
                Error::BadRequest(format!("timeout_ms={ms:?}: expected milliseconds"))
            })?;
            if ms < MIN_TIMEOUT_MS {
                return Err(Error::BadRequest(format!(
                    "timeout_ms={ms}: at least {MIN_TIMEOUT_MS}"
                )));
            }
            Some(Duration::from_millis(ms))
        }
    };
    let key = s.actors.address(
        &caller,
        &path.namespace,
        &path.actor_type,
        steer.get("key").map(String::as_str).unwrap_or(""),
    )?;
    let payload: Bytes =
        if *method == Method::GET || (body.is_empty() && !payload_params.is_empty()) {
            serde_json::to_vec(&Value::Object(payload_params))
                .map_err(|e| Error::BadRequest(e.to_string()))?
                .into()
        } else {
            body
        };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| *method != Method::GET)
        .filter(|t| !t.starts_with("application/x-www-form-urlencoded"))
        .unwrap_or("application/json");
    let idempotency_key = header_id(
        "Idempotency-Key",
        headers
            .get(plexspaces_journal::IDEMPOTENCY_KEY_HEADER)
            .map(HeaderValue::as_bytes),
    )?;
    let reply = if fire_and_forget {
        Reply::Tell
    } else {
        Reply::Ask(s.actors.ask_timeout(timeout))
    };
    let invocation = Invocation {
        msg_type,
        payload,
        content_type: content_type.to_owned(),
        idempotency_key,
        reply,
        caller: Some(caller),
    };
    let Some(reply) = s.actors.invoke(&key, invocation).await? else {
        return Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": true }))).into_response());
    };
    let content_type = if reply.content_type.is_empty() {
        "application/json".to_owned()
    } else {
        reply.content_type
    };
    let mut response = reply.payload.into_response();
    if let Ok(v) = HeaderValue::from_str(&content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(response)
}
