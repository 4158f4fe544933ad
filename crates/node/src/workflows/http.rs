//! The workflows service over HTTP, in the token's tenant:
//! `POST|GET /api/v1/workflows/{namespace}` (start, list), `GET .../{workflow_id}`
//! (describe), `GET .../{workflow_id}/result?wait_ms=N`, `GET .../{workflow_id}/history`,
//! `POST .../{workflow_id}/signals/{name}`, `POST .../{workflow_id}/queries/{name}`,
//! `POST .../{workflow_id}/updates/{name}`, `POST .../{workflow_id}/cancel`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plexspaces_workflow::{HistoryEvent, WorkflowRecord};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{body_of, json_body, query_of, respond, Body, QueryOf, Scoped};
use crate::service::{header_id, NodeServices};
use crate::workflows::{new_update_id, Outcome};

/// The workflow routes.
pub fn routes() -> Router<NodeServices> {
    Router::new()
        .route("/api/v1/workflows/{namespace}", post(start).get(list))
        .route("/api/v1/workflows/{namespace}/{workflow_id}", get(describe))
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/result",
            get(result),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/history",
            get(history),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/signals/{name}",
            post(signal),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/queries/{name}",
            post(query),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/updates/{name}",
            post(update),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/cancel",
            post(cancel),
        )
}

/// `?status=&limit=` of a list request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    limit: Option<u64>,
}

/// `?wait_ms=` of a result or update request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitParams {
    wait_ms: Option<u64>,
}

/// `?run=` of a history request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    run: Option<u64>,
}

/// The body of a start request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    workflow_type: String,
    workflow_id: String,
    #[serde(default)]
    input: Value,
}

/// The body of a cancel request (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: Option<String>,
}

/// A list response.
#[derive(Debug, Serialize)]
struct WorkflowList {
    workflows: Vec<WorkflowRecord>,
}

/// A history response.
#[derive(Debug, Serialize)]
struct WorkflowHistory {
    run: u64,
    events: Vec<HistoryEvent>,
}

/// `{namespace}/{workflow_id}` and `{namespace}/{workflow_id}/{name}`.
type Id = (String, String);
type Named = (String, String, String);

async fn start(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<String>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let body: StartBody = json_body(&body_of(&s, body)?, None)?;
            let key = s.workflows.key(&caller, &path, &body.workflow_id)?;
            let started = s
                .workflows
                .start(&key, &body.workflow_type, &body.input)
                .await?;
            let status = if started.already_started {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok((status, Json(started)).into_response())
        }
        .await,
    )
}

async fn list(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<String>,
    query: QueryOf<ListParams>,
) -> Response {
    respond(
        async {
            let params = query_of(query)?;
            let workflows = s
                .workflows
                .list(&caller, Some(&path), params.status.as_deref(), params.limit)
                .await?;
            Ok(Json(WorkflowList { workflows }).into_response())
        }
        .await,
    )
}

async fn describe(State(s): State<NodeServices>, Scoped { caller, path }: Scoped<Id>) -> Response {
    respond(
        async {
            let key = s.workflows.key(&caller, &path.0, &path.1)?;
            Ok(Json(s.workflows.describe(&key).await?).into_response())
        }
        .await,
    )
}

async fn result(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Id>,
    query: QueryOf<WaitParams>,
) -> Response {
    respond(
        async {
            let params = query_of(query)?;
            let key = s.workflows.key(&caller, &path.0, &path.1)?;
            let outcome = s
                .workflows
                .result(&key, params.wait_ms.unwrap_or(0))
                .await?;
            let status = if outcome == Outcome::Running {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok((status, Json(outcome.to_json())).into_response())
        }
        .await,
    )
}

async fn history(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Id>,
    query: QueryOf<HistoryParams>,
) -> Response {
    respond(
        async {
            let params = query_of(query)?;
            let key = s.workflows.key(&caller, &path.0, &path.1)?;
            let (run, events) = s.workflows.history(&key, params.run).await?;
            Ok(Json(WorkflowHistory { run, events }).into_response())
        }
        .await,
    )
}

/// The request's `Idempotency-Key` header, checked.
fn idempotency_key(headers: &HeaderMap) -> crate::Result<Option<String>> {
    header_id(
        "Idempotency-Key",
        headers
            .get(plexspaces_journal::IDEMPOTENCY_KEY_HEADER)
            .map(HeaderValue::as_bytes),
    )
}

async fn signal(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Named>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let key = s.workflows.key(&caller, &path.0, &path.1)?;
            let dedupe_id = idempotency_key(&headers)?;
            let payload: Value = json_body(&body_of(&s, body)?, Some(Value::Null))?;
            let seq = s
                .workflows
                .signal(&key, &path.2, &payload, dedupe_id.as_deref())
                .await?;
            Ok((StatusCode::ACCEPTED, Json(json!({ "seq": seq }))).into_response())
        }
        .await,
    )
}

async fn query(State(s): State<NodeServices>, Scoped { caller, path }: Scoped<Named>) -> Response {
    respond(
        async {
            let key = s.workflows.key(&caller, &path.0, &path.1)?;
            Ok(Json(s.workflows.query(&key, &path.2).await?).into_response())
        }
        .await,
    )
}

async fn update(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Named>,
    query: QueryOf<WaitParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The update id: the caller's Idempotency-Key, else a fresh one, echoed in the
    // response's Idempotency-Key header (a 504's retry collects the answer with it).
    let update_id = match idempotency_key(&headers) {
        Ok(id) => id.unwrap_or_else(new_update_id),
        Err(e) => return respond(Err(e)),
    };
    let mut response = respond(
        async {
            let params = query_of(query)?;
            let key = s.workflows.key(&caller, &path.0, &path.1)?;
            let payload: Value = json_body(&body_of(&s, body)?, Some(Value::Null))?;
            let value = s
                .workflows
                .update(&key, &path.2, &payload, &update_id, params.wait_ms)
                .await?;
            Ok(Json(value).into_response())
        }
        .await,
    );
    if matches!(
        response.status(),
        StatusCode::OK | StatusCode::GATEWAY_TIMEOUT
    ) {
        if let Ok(v) = HeaderValue::from_str(&update_id) {
            response
                .headers_mut()
                .insert(plexspaces_journal::IDEMPOTENCY_KEY_HEADER, v);
        }
    }
    response
}

async fn cancel(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<Id>,
    body: Body,
) -> Response {
    respond(
        async {
            let key = s.workflows.key(&caller, &path.0, &path.1)?;
            let body: Option<CancelBody> = json_body(&body_of(&s, body)?, Some(None))?;
            let reason = body.unwrap_or_default().reason;
            s.workflows.cancel(&key, reason.as_deref()).await?;
            Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": true }))).into_response())
        }
        .await,
    )
}
