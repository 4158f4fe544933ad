//! The HTTP API (axum): FaaS invocation, health, readiness, metrics and the OpenAPI
//! document. See `docs/http-api.md`.
//!
//! Routes:
//! - `GET|POST|PUT|DELETE /api/v1/actors/{tenant_id}/{namespace}/{actor_type}`
//! - `GET|POST|PUT|DELETE /api/v1/actors/{namespace}/{actor_type}` (tenant: the token's, or
//!   `default` with auth disabled)
//! - `POST /api/v1/actors/[{tenant_id}/]{namespace}/{actor_type}/invoke?msg_type=NAME`
//! - `GET /health`, `GET /ready`, `GET /metrics`, `GET /api/v1/openapi.json`
//! - `GET /dashboard` (the web dashboard) and `GET /api/v1/dashboard/summary` (its data)
//! - workflows, in the token's tenant: `POST|GET /api/v1/workflows/{namespace}` (start,
//!   list), `GET .../{workflow_id}` (describe), `GET .../{workflow_id}/result?wait_ms=N`,
//!   `GET .../{workflow_id}/history`, `POST .../{workflow_id}/signals/{name}`,
//!   `POST .../{workflow_id}/queries/{name}`, `POST .../{workflow_id}/updates/{name}`,
//!   `POST .../{workflow_id}/cancel`
//!
//! Query parameters `msg_type`, `key`, `fire_and_forget` and `timeout_ms` steer the call;
//! on GET the other query parameters become the JSON payload. An `Idempotency-Key` header
//! becomes the envelope header [`plexspaces_journal::IDEMPOTENCY_KEY_HEADER`]: a durable
//! actor runs such a request once and answers duplicates with the first reply.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use plexspaces_core::Envelope;
use plexspaces_workflow::{HistoryEvent, WorkflowEngine, WorkflowRecord};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::auth::Authenticator;
use crate::error::Error;
use crate::registry::Registry;
use crate::workflows::{self, Outcome};

/// The OpenAPI document, kept in the repo as `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// Query parameters that steer a call and are never part of the payload.
pub const RESERVED_PARAMS: &[&str] = &["msg_type", "key", "fire_and_forget", "timeout_ms"];

/// The shortest `timeout_ms` accepted; shorter deadlines are a 400, not a guaranteed 504.
pub const MIN_TIMEOUT_MS: u64 = 100;

/// The longest `Idempotency-Key` accepted, in bytes.
pub const MAX_IDEMPOTENCY_KEY: usize = 256;

/// HTTP request metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    total: Arc<std::sync::atomic::AtomicU64>,
}

impl HttpMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &prometheus::Registry) -> crate::Result<Self> {
        let err = |e: prometheus::Error| Error::Config(format!("metrics: {e}"));
        let requests = IntCounterVec::new(
            Opts::new("plexspaces_http_requests_total", "HTTP requests served"),
            &["method", "route", "status"],
        )
        .map_err(err)?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "plexspaces_http_request_duration_seconds",
                "HTTP request latency",
            ),
            &["method", "route"],
        )
        .map_err(err)?;
        registry.register(Box::new(requests.clone())).map_err(err)?;
        registry.register(Box::new(latency.clone())).map_err(err)?;
        Ok(HttpMetrics {
            requests,
            latency,
            total: Arc::default(),
        })
    }

    /// Requests served so far.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Actor types and activations.
    pub registry: Registry,
    /// Token verification.
    pub auth: Authenticator,
    /// Prometheus registry rendered by `/metrics`.
    pub prometheus: prometheus::Registry,
    /// HTTP metrics.
    pub metrics: HttpMetrics,
    /// Default (and largest) invocation timeout.
    pub request_timeout: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Set when shutdown begins: new invocations and `/ready` answer 503.
    pub draining: Arc<AtomicBool>,
    /// The runtime's per-type message counters (the dashboard's rates).
    pub actor_metrics: Arc<plexspaces_core::MetricsFacet>,
    /// The journal backend, for the dashboard (`"SQLite"`, `"PostgreSQL"`).
    pub journal_backend: String,
    /// When the node started.
    pub started: tokio::time::Instant,
    /// Runs each request in an `http.request` span (on when spans are exported).
    pub request_spans: bool,
    /// The node's workflow engine.
    pub workflows: WorkflowEngine,
    /// Turns true when shutdown begins: waits for workflow results and update answers end.
    pub stopped: watch::Receiver<bool>,
}

/// The HTTP API router.
pub fn router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let actor = get(invoke_2).post(invoke_2).put(invoke_2).delete(invoke_2);
    let actor_t = get(invoke_3).post(invoke_3).put(invoke_3).delete(invoke_3);
    Router::new()
        .route("/api/v1/actors/{p1}/{p2}", actor)
        .route("/api/v1/actors/{p1}/{p2}/{p3}", actor_t)
        .route("/api/v1/actors/{p1}/{p2}/invoke", post(invoke_named_2))
        .route("/api/v1/actors/{p1}/{p2}/{p3}/invoke", post(invoke_named_3))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(dashboard_page))
        .route("/api/v1/dashboard/summary", get(dashboard_summary))
        .route(
            "/api/v1/workflows/{namespace}",
            post(workflow_start).get(workflow_list),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}",
            get(workflow_describe),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/result",
            get(workflow_result),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/history",
            get(workflow_history),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/signals/{name}",
            post(workflow_signal),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/queries/{name}",
            post(workflow_query),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/updates/{name}",
            post(workflow_update),
        )
        .route(
            "/api/v1/workflows/{namespace}/{workflow_id}/cancel",
            post(workflow_cancel),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// `{code, message}` with the status of the error's kind.
pub fn error_response(e: &Error) -> Response {
    let body = json!({ "code": e.kind(), "message": e.public_message() });
    (e.http_status(), Json(body)).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = tokio::time::Instant::now();
    let response = if state.request_spans {
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            "http.request",
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        );
        let response = next.run(req).instrument(span.clone()).await;
        span.record("http.response.status_code", response.status().as_u16());
        response
    } else {
        next.run(req).await
    };
    let status = response.status().as_u16().to_string();
    state.metrics.total.fetch_add(1, Ordering::Relaxed);
    state
        .metrics
        .requests
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .inc();
    state
        .metrics
        .latency
        .with_label_values(&[method.as_str(), route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> Response {
    error_response(&Error::NotFound("no such route".into()))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn health(State(state): State<AppState>) -> Response {
    Json(json!({ "status": "ok", "node_id": state.registry.node().name() })).into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    if state.draining.load(Ordering::Acquire) || state.registry.node().is_shutting_down() {
        return error_response(&Error::Core(plexspaces_core::Error::ShuttingDown));
    }
    Json(json!({ "status": "ready" })).into_response()
}

async fn dashboard_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        crate::dashboard::DASHBOARD_HTML,
    )
        .into_response()
}

async fn dashboard_summary(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let result = async {
        let authorization = authorization(&headers)?;
        let tenant = if state.auth.is_disabled() {
            None
        } else {
            Some(state.auth.tenant_for(authorization, None)?)
        };
        crate::dashboard::summary(&state, tenant.as_deref()).await
    }
    .await;
    match result {
        Ok(summary) => ([(header::CACHE_CONTROL, "no-store")], Json(summary)).into_response(),
        Err(e) => error_response(&e),
    }
}

fn authorization(headers: &HeaderMap) -> crate::Result<Option<&str>> {
    headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| Error::Unauthenticated("authorization header is not text".into()))
        })
        .transpose()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let families = state.prometheus.gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => error_response(&Error::Io(format!("metrics: {e}"))),
    }
}

type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;
type Body = Result<Bytes, BytesRejection>;

async fn invoke_2(
    State(s): State<AppState>,
    method: Method,
    Path((ns, ty)): Path<(String, String)>,
    headers: HeaderMap,
    q: Params,
    body: Body,
) -> Response {
    call(&s, &method, None, &ns, &ty, false, &headers, q, body).await
}

async fn invoke_3(
    State(s): State<AppState>,
    method: Method,
    Path((tenant, ns, ty)): Path<(String, String, String)>,
    headers: HeaderMap,
    q: Params,
    body: Body,
) -> Response {
    call(
        &s,
        &method,
        Some(&tenant),
        &ns,
        &ty,
        false,
        &headers,
        q,
        body,
    )
    .await
}

async fn invoke_named_2(
    State(s): State<AppState>,
    method: Method,
    Path((ns, ty)): Path<(String, String)>,
    headers: HeaderMap,
    q: Params,
    body: Body,
) -> Response {
    call(&s, &method, None, &ns, &ty, true, &headers, q, body).await
}

async fn invoke_named_3(
    State(s): State<AppState>,
    method: Method,
    Path((tenant, ns, ty)): Path<(String, String, String)>,
    headers: HeaderMap,
    q: Params,
    body: Body,
) -> Response {
    call(
        &s,
        &method,
        Some(&tenant),
        &ns,
        &ty,
        true,
        &headers,
        q,
        body,
    )
    .await
}

/// The `Idempotency-Key` header: printable text of 1 to [`MAX_IDEMPOTENCY_KEY`] bytes.
fn idempotency_key(headers: &HeaderMap) -> crate::Result<Option<String>> {
    let Some(value) = headers.get(plexspaces_journal::IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| Error::BadRequest("Idempotency-Key must be visible ASCII".into()))?;
    if text.is_empty() || text.len() > MAX_IDEMPOTENCY_KEY {
        return Err(Error::BadRequest(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} bytes"
        )));
    }
    Ok(Some(text.to_owned()))
}

/// The default msg_type of each method (a `msg_type` parameter overrides it).
pub fn default_msg_type(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::DELETE => "delete",
        _ => "update",
    }
}

#[allow(clippy::too_many_arguments)]
async fn call(
    s: &AppState,
    method: &Method,
    path_tenant: Option<&str>,
    namespace: &str,
    actor_type: &str,
    named: bool,
    headers: &HeaderMap,
    query: Params,
    body: Body,
) -> Response {
    match call_inner(
        s,
        method,
        path_tenant,
        namespace,
        actor_type,
        named,
        headers,
        query,
        body,
    )
    .await
    {
        Ok(response) => response,
        Err(e) => {
            if e.http_status().is_server_error() {
                tracing::warn!(error = %e.public_message(), actor_type, "invocation failed");
            }
            error_response(&e)
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn call_inner(
    s: &AppState,
    method: &Method,
    path_tenant: Option<&str>,
    namespace: &str,
    actor_type: &str,
    named: bool,
    headers: &HeaderMap,
    query: Params,
    body: Body,
) -> crate::Result<Response> {
    let tenant = s.auth.tenant_for(authorization(headers)?, path_tenant)?;
    if s.draining.load(Ordering::Acquire) {
        return Err(plexspaces_core::Error::ShuttingDown.into());
    }
    let Query(params) =
        query.map_err(|e| Error::BadRequest(format!("query string: {}", e.body_text())))?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge(s.max_body_bytes)
        } else {
            Error::BadRequest(e.body_text())
        }
    })?;
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
        None => s.request_timeout,
        Some(ms) => {
            let ms: u64 = ms.parse().map_err(|_| {
                Error::BadRequest(format!("timeout_ms={ms:?}: expected milliseconds"))
            })?;
            if ms < MIN_TIMEOUT_MS {
                return Err(Error::BadRequest(format!(
                    "timeout_ms={ms}: at least {MIN_TIMEOUT_MS}"
                )));
            }
            Duration::from_millis(ms).min(s.request_timeout)
        }
    };
    let key = s.registry.resolve(
        &tenant,
        namespace,
        actor_type,
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
    let mut env = Envelope::new(msg_type, payload, content_type);
    if let Some(key) = idempotency_key(headers)? {
        env = env.with_header(plexspaces_journal::IDEMPOTENCY_KEY_HEADER, key);
    }
    let lease = s.registry.lease(&key).await?;
    if fire_and_forget {
        lease.pid().try_tell_envelope(env)?;
        return Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": true }))).into_response());
    }
    let reply = lease.pid().try_ask_envelope(env, timeout).await?;
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

// ---- workflows ----

type PathOf<T> = Result<Path<T>, PathRejection>;
type QueryOf<T> = Result<Query<T>, QueryRejection>;

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

/// The response, or the error as JSON (server errors logged).
fn respond(result: crate::Result<Response>) -> Response {
    match result {
        Ok(response) => response,
        Err(e) => {
            if e.http_status().is_server_error() {
                tracing::warn!(error = %e.public_message(), "workflow request failed");
            }
            error_response(&e)
        }
    }
}

fn path_of<T>(path: PathOf<T>) -> crate::Result<T> {
    path.map(|Path(v)| v)
        .map_err(|e| Error::BadRequest(format!("path: {}", e.body_text())))
}

fn query_of<T>(query: QueryOf<T>) -> crate::Result<T> {
    query
        .map(|Query(v)| v)
        .map_err(|e| Error::BadRequest(format!("query string: {}", e.body_text())))
}

fn body_of(s: &AppState, body: Body) -> crate::Result<Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge(s.max_body_bytes)
        } else {
            Error::BadRequest(e.body_text())
        }
    })
}

/// A JSON body; an empty body is `empty` (or a 400 when there is no default).
fn json_body<T: DeserializeOwned>(bytes: &[u8], empty: Option<T>) -> crate::Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return empty.ok_or_else(|| Error::BadRequest("a JSON body is required".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("body: {e}")))
}

/// The caller's tenant, once the node is known to take new work.
fn workflow_tenant(s: &AppState, headers: &HeaderMap) -> crate::Result<String> {
    let tenant = s.auth.tenant_for(authorization(headers)?, None)?;
    if s.draining.load(Ordering::Acquire) {
        return Err(plexspaces_core::Error::ShuttingDown.into());
    }
    Ok(tenant)
}

/// Runs `work` unless the node begins to shut down first (then: 503).
async fn until_stopped<T>(
    s: &AppState,
    work: impl std::future::Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    let mut stopped = s.stopped.clone();
    tokio::select! {
        r = work => r,
        _ = stopped.wait_for(|s| *s) => Err(plexspaces_core::Error::ShuttingDown.into()),
    }
}

async fn workflow_start(
    State(s): State<AppState>,
    path: PathOf<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let namespace = path_of(path)?;
            let body: StartBody = json_body(&body_of(&s, body)?, None)?;
            let key = workflows::key(&tenant, &namespace, &body.workflow_id)?;
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

async fn workflow_list(
    State(s): State<AppState>,
    path: PathOf<String>,
    query: QueryOf<ListParams>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let namespace = path_of(path)?;
            let params = query_of(query)?;
            workflows::check_namespace(&namespace)?;
            let status = workflows::status_filter(params.status.as_deref())?;
            let limit = workflows::list_limit(params.limit)?;
            let records = s
                .workflows
                .list(&tenant, Some(&namespace), status, limit)
                .await?;
            Ok(Json(WorkflowList { workflows: records }).into_response())
        }
        .await,
    )
}

async fn workflow_describe(
    State(s): State<AppState>,
    path: PathOf<(String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let (namespace, workflow_id) = path_of(path)?;
            let key = workflows::key(&tenant, &namespace, &workflow_id)?;
            let description = s.workflows.describe(&key).await?;
            Ok(Json(description).into_response())
        }
        .await,
    )
}

async fn workflow_result(
    State(s): State<AppState>,
    path: PathOf<(String, String)>,
    query: QueryOf<WaitParams>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let (namespace, workflow_id) = path_of(path)?;
            let params = query_of(query)?;
            let key = workflows::key(&tenant, &namespace, &workflow_id)?;
            let wait = workflows::wait("wait_ms", params.wait_ms.unwrap_or(0))?;
            let outcome = until_stopped(&s, workflows::outcome(&s.workflows, &key, wait)).await?;
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

async fn workflow_history(
    State(s): State<AppState>,
    path: PathOf<(String, String)>,
    query: QueryOf<HistoryParams>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let (namespace, workflow_id) = path_of(path)?;
            let params = query_of(query)?;
            let key = workflows::key(&tenant, &namespace, &workflow_id)?;
            let (run, events) = workflows::history(&s.workflows, &key, params.run).await?;
            Ok(Json(WorkflowHistory { run, events }).into_response())
        }
        .await,
    )
}

async fn workflow_signal(
    State(s): State<AppState>,
    path: PathOf<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let (namespace, workflow_id, name) = path_of(path)?;
            let key = workflows::key(&tenant, &namespace, &workflow_id)?;
            workflows::check_name("signal", &name)?;
            let dedupe_id = idempotency_key(&headers)?;
            let payload: Value = json_body(&body_of(&s, body)?, Some(Value::Null))?;
            let seq = s
                .workflows
                .signal(&key, &name, &payload, dedupe_id.as_deref())
                .await?;
            Ok((StatusCode::ACCEPTED, Json(json!({ "seq": seq }))).into_response())
        }
        .await,
    )
}

async fn workflow_query(
    State(s): State<AppState>,
    path: PathOf<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let (namespace, workflow_id, name) = path_of(path)?;
            let key = workflows::key(&tenant, &namespace, &workflow_id)?;
            workflows::check_name("query", &name)?;
            let value = s.workflows.query(&key, &name).await?;
            Ok(Json(value).into_response())
        }
        .await,
    )
}

async fn workflow_update(
    State(s): State<AppState>,
    path: PathOf<(String, String, String)>,
    query: QueryOf<WaitParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The update id: the caller's Idempotency-Key, else a fresh one, echoed in the
    // response's Idempotency-Key header (a 504's retry collects the answer with it).
    let update_id = match idempotency_key(&headers) {
        Ok(id) => id.unwrap_or_else(workflows::new_update_id),
        Err(e) => return respond(Err(e)),
    };
    let mut response = respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let (namespace, workflow_id, name) = path_of(path)?;
            let params = query_of(query)?;
            let key = workflows::key(&tenant, &namespace, &workflow_id)?;
            workflows::check_name("update", &name)?;
            let wait = match params.wait_ms {
                None => workflows::DEFAULT_UPDATE_WAIT,
                Some(ms) => workflows::wait("wait_ms", ms)?,
            };
            let payload: Value = json_body(&body_of(&s, body)?, Some(Value::Null))?;
            let value = until_stopped(
                &s,
                workflows::update(&s.workflows, &key, &name, &payload, &update_id, wait),
            )
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

async fn workflow_cancel(
    State(s): State<AppState>,
    path: PathOf<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    respond(
        async {
            let tenant = workflow_tenant(&s, &headers)?;
            let (namespace, workflow_id) = path_of(path)?;
            let key = workflows::key(&tenant, &namespace, &workflow_id)?;
            let body: Option<CancelBody> = json_body(&body_of(&s, body)?, Some(None))?;
            let body = body.unwrap_or_default();
            let reason = workflows::cancel_reason(body.reason.as_deref())?;
            s.workflows.cancel(&key, &reason).await?;
            Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": true }))).into_response())
        }
        .await,
    )
}
