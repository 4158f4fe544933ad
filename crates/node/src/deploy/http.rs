//! The deploy service over HTTP:
//! - `POST /api/v1/deploy`, `multipart/form-data` with fields `namespace`, `actor_type` and
//!   `wasm` (the component file), optional `max_memory_bytes`, `call_timeout_ms` and
//!   `config` (JSON for the guest's `init`): deploys, answers 201 with the deployment;
//! - `GET /api/v1/deploy?namespace=NS`: the caller's deployments;
//! - `GET /api/v1/deploy/{namespace}/{actor_type}`: one deployment;
//! - `DELETE /api/v1/deploy/{namespace}/{actor_type}`: undeploys.
//!
//! The deploy route takes bodies up to `wasm.max_module_bytes` plus 1 MiB (not the node's
//! `http.max_body_bytes`); larger is 413.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::deploy::multipart::{self, Part};
use crate::deploy::DeployRequest;
use crate::error::Error;
use crate::http::{query_of, respond, Body, QueryOf, Scoped};
use crate::service::{Caller, NodeServices};

/// The deploy routes; `max_upload` is the deploy body limit.
pub fn routes(max_upload: usize) -> Router<NodeServices> {
    let upload = Router::new()
        .route("/api/v1/deploy", get(list).post(deploy))
        .layer(DefaultBodyLimit::max(max_upload));
    Router::new().merge(upload).route(
        "/api/v1/deploy/{namespace}/{actor_type}",
        get(describe).delete(undeploy),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    namespace: Option<String>,
}

async fn list(
    State(s): State<NodeServices>,
    caller: Caller,
    query: QueryOf<ListQuery>,
) -> Response {
    respond((|| -> crate::Result<Response> {
        let q = query_of(query)?;
        let deployments = s.deployments.list(&caller, q.namespace.as_deref())?;
        Ok(Json(json!({ "deployments": deployments })).into_response())
    })())
}

async fn describe(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
) -> Response {
    respond((|| -> crate::Result<Response> {
        let (namespace, actor_type) = path;
        let d = s.deployments.describe(&caller, &namespace, &actor_type)?;
        Ok(Json(d).into_response())
    })())
}

async fn undeploy(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (namespace, actor_type) = path;
            let (d, deactivated) = s
                .deployments
                .undeploy(&caller, &namespace, &actor_type)
                .await?;
            Ok(Json(json!({
                "undeployed": true,
                "deployment": d,
                "deactivated": deactivated,
            }))
            .into_response())
        }
        .await,
    )
}

async fn deploy(
    State(s): State<NodeServices>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let limit = s.deployments.config().max_upload_bytes();
            let body = body.map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::PayloadTooLarge(limit)
                } else {
                    Error::BadRequest(e.body_text())
                }
            })?;
            let content_type = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok());
            let parts = multipart::parse(content_type, body).await?;
            let request = request_of(&parts)?;
            let deployed = s.deployments.deploy(&caller, request).await?;
            Ok((StatusCode::CREATED, Json(deployed)).into_response())
        }
        .await,
    )
}

/// The deploy request of a form: each field at most once; unknown fields are refused.
fn request_of(parts: &[Part]) -> crate::Result<DeployRequest> {
    let mut request = DeployRequest::default();
    let mut seen: Vec<&str> = Vec::new();
    let mut wasm = false;
    for part in parts {
        if seen.contains(&part.name.as_str()) {
            return Err(Error::BadRequest(format!(
                "form field {:?} is given twice",
                part.name
            )));
        }
        seen.push(&part.name);
        let number = |p: &Part| -> crate::Result<u64> {
            p.text()?.parse().map_err(|_| {
                Error::BadRequest(format!("form field {:?} must be a whole number", p.name))
            })
        };
        match part.name.as_str() {
            "namespace" => request.namespace = part.text()?.to_owned(),
            "actor_type" => request.actor_type = part.text()?.to_owned(),
            "wasm" => {
                request.wasm = part.data.clone();
                wasm = true;
            }
            "max_memory_bytes" => request.max_memory_bytes = Some(number(part)?),
            "call_timeout_ms" => request.call_timeout_ms = Some(number(part)?),
            "config" => {
                let text = part.text()?;
                if !text.is_empty() {
                    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                        Error::BadRequest(format!("form field \"config\" is not JSON: {e}"))
                    })?;
                    request.config = Some(v);
                }
            }
            other => {
                return Err(Error::BadRequest(format!(
                    "unknown form field {other:?} (expected namespace, actor_type, wasm, \
                     max_memory_bytes, call_timeout_ms, config)"
                )))
            }
        }
    }
    if request.actor_type.is_empty() {
        return Err(Error::BadRequest(
            "form field \"actor_type\" is required".into(),
        ));
    }
    if !wasm {
        return Err(Error::BadRequest(
            "form field \"wasm\" (the component file) is required".into(),
        ));
    }
    Ok(request)
}
