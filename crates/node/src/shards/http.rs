//! The shard group service over HTTP, in the token's tenant:
//! `POST /api/v1/shards/{namespace}` (create), `GET|DELETE /api/v1/shards/{namespace}/{name}`,
//! `POST .../{name}/bulk` (bulk update), `POST .../{name}/query` (map or scatter-gather).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plexspaces_shard::KvQuery;
use serde::Deserialize;
use serde_json::Value;

use super::{no_extra_fields, GroupSpec, Mode};
use crate::http::{body_of, json_body, respond, Body, Scoped};
use crate::service::NodeServices;

/// The shard group routes.
pub fn routes() -> Router<NodeServices> {
    Router::new()
        .route("/api/v1/shards/{namespace}", post(create))
        .route(
            "/api/v1/shards/{namespace}/{name}",
            get(describe).delete(delete),
        )
        .route("/api/v1/shards/{namespace}/{name}/bulk", post(bulk))
        .route("/api/v1/shards/{namespace}/{name}/query", post(query))
}

/// One write of a bulk request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    key: String,
    #[serde(default)]
    value: Value,
}

/// The body of a bulk request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkBody {
    items: Vec<Item>,
}

/// The body of a query request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    query: KvQuery,
    #[serde(default)]
    timeout_ms: u64,
    #[serde(default)]
    mode: Mode,
}

type Named = (String, String);

async fn create(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<String>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let raw: serde_json::Value = json_body(&body_of(&s, body)?, None)?;
            no_extra_fields(raw.get("strategy"), "kind", &["hash"])?;
            let spec: GroupSpec = serde_json::from_value(raw)
                .map_err(|e| crate::Error::BadRequest(format!("body: {e}")))?;
            let info = s.shards.create(&caller, &path, spec).await?;
            Ok((StatusCode::CREATED, Json(info)).into_response())
        }
        .await,
    )
}

async fn describe(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Named>,
) -> Response {
    respond(
        s.shards
            .get(&caller, &path.0, &path.1)
            .map(|info| Json(info).into_response()),
    )
}

async fn delete(State(s): State<NodeServices>, Scoped { caller, path }: Scoped<Named>) -> Response {
    respond(
        async {
            s.shards.delete(&caller, &path.0, &path.1).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        .await,
    )
}

async fn bulk(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Named>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let body: BulkBody = json_body(&body_of(&s, body)?, None)?;
            let items = body.items.into_iter().map(|i| (i.key, i.value)).collect();
            let report = s
                .shards
                .bulk_update(&caller, &path.0, &path.1, items)
                .await?;
            Ok(Json(report).into_response())
        }
        .await,
    )
}

async fn query(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Named>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let raw: serde_json::Value = json_body(&body_of(&s, body)?, None)?;
            no_extra_fields(raw.get("query"), "op", &["count", "sum"])?;
            let body: QueryBody = serde_json::from_value(raw)
                .map_err(|e| crate::Error::BadRequest(format!("body: {e}")))?;
            let result = s
                .gate
                .until_stopped(s.shards.query(
                    &caller,
                    &path.0,
                    &path.1,
                    body.query,
                    body.timeout_ms,
                    body.mode,
                ))
                .await?;
            Ok(Json(result).into_response())
        }
        .await,
    )
}
