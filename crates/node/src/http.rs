//! The HTTP transport (axum): the router over every feature's routes
//! ([`crate::actors::http`], [`crate::workflows::http`]), the node's own routes (health,
//! readiness, metrics, the OpenAPI document, the dashboard), the one extractor of caller and
//! path ([`Scoped`]), and errors. See `docs/http-api.md`.
//!
//! Node routes: `GET /health`, `GET /ready`, `GET /metrics`, `GET /api/v1/openapi.json`,
//! `GET /dashboard` (the web dashboard) and `GET /api/v1/dashboard/summary` (its data).
//!
//! Every error is JSON `{code, message}` with the status of its kind
//! ([`crate::error::status_of`]), also those axum produces before a handler runs (a path
//! segment that is not UTF-8, a wrong method, a body over the limit) and a URI longer than
//! [`MAX_URI_BYTES`] (414).
//!
//! Metric labels take no raw value from a request: the method is one of a fixed set (else
//! `other`), the route is the matched route template (else `unmatched`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::Error;
use crate::service::{Caller, NodeServices};

/// The OpenAPI document, kept in the repo as `docs/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// The longest request URI (path and query) served, in bytes; longer: 414 with a JSON body.
/// (Far longer ones, beyond hyper's header buffer, are refused by hyper itself.)
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The longest error text from axum kept in a JSON error message, in bytes.
const MAX_REJECTION_TEXT: usize = 4 * 1024;

/// HTTP request metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    total: Arc<AtomicU64>,
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

/// The `method` label of a request: one of the methods HTTP defines, else `other`, so that
/// made-up methods cannot add series.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The HTTP API router.
pub fn router(services: NodeServices) -> Router {
    let limit = services.max_body_bytes;
    Router::new()
        .merge(crate::actors::http::routes())
        .merge(crate::workflows::http::routes())
        .merge(crate::cluster::http::routes())
        .merge(crate::shards::http::routes())
        .merge(crate::kv::http::routes())
        .merge(crate::locks::http::routes())
        .merge(crate::blobs::http::routes())
        .merge(crate::channels::http::routes())
        .merge(crate::deploy::http::routes(
            services.deployments.config().max_upload_bytes(),
        ))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/dashboard", get(dashboard_page))
        .route("/api/v1/dashboard/summary", get(dashboard_summary))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(services.clone(), track))
        .with_state(services)
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

/// The response, or the error as JSON (server errors logged).
pub fn respond(result: crate::Result<Response>) -> Response {
    match result {
        Ok(response) => response,
        Err(e) => {
            if e.http_status().is_server_error() {
                tracing::warn!(error = %e.public_message(), "request failed");
            }
            error_response(&e)
        }
    }
}

/// The request's `Authorization` header, raw.
fn authorization(parts: &Parts) -> Option<&[u8]> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes)
}

/// The caller of a request that names no tenant in its path.
impl FromRequestParts<NodeServices> for Caller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &NodeServices,
    ) -> Result<Self, Self::Rejection> {
        services
            .gate
            .caller(authorization(parts), None)
            .map_err(|e| error_response(&e))
    }
}

/// A path whose parts may name a tenant (the actor routes' long form).
pub trait ScopedPath: DeserializeOwned + Send {
    /// The tenant the path names, if any: it must be the caller's own.
    fn named_tenant(&self) -> Option<&str> {
        None
    }
}

impl ScopedPath for String {}
impl ScopedPath for (String, String) {}
impl ScopedPath for (String, String, String) {}

/// The one extractor of who calls and what the path names: the path's parameters and the
/// caller ([`crate::service::Gate::caller`] on the `Authorization` header and the tenant
/// the path names). Failures are JSON errors; credentials are judged before a malformed
/// path (401 before 400).
#[derive(Debug)]
pub struct Scoped<P> {
    /// Who calls.
    pub caller: Caller,
    /// The path's parameters.
    pub path: P,
}

impl<P: ScopedPath> FromRequestParts<NodeServices> for Scoped<P> {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        services: &NodeServices,
    ) -> Result<Self, Self::Rejection> {
        let path = Path::<P>::from_request_parts(parts, services).await;
        let named = path.as_ref().ok().and_then(|Path(p)| p.named_tenant());
        let caller = services
            .gate
            .caller(authorization(parts), named)
            .map_err(|e| error_response(&e))?;
        match path {
            Ok(Path(path)) => Ok(Scoped { caller, path }),
            Err(e) => Err(error_response(&Error::BadRequest(format!(
                "path: {}",
                e.body_text()
            )))),
        }
    }
}

/// A query string, parsed by the handler (its errors are 400 JSON).
pub type QueryOf<T> = Result<Query<T>, QueryRejection>;
/// Query parameters as pairs.
pub type Params = QueryOf<Vec<(String, String)>>;
/// A body, read by the handler (its errors are 400 or 413 JSON).
pub type Body = Result<Bytes, BytesRejection>;

/// The query's value, or a 400.
pub fn query_of<T>(query: QueryOf<T>) -> crate::Result<T> {
    query
        .map(|Query(v)| v)
        .map_err(|e| Error::BadRequest(format!("query string: {}", e.body_text())))
}

/// The body, or a 413 over the limit, or a 400.
pub fn body_of(s: &NodeServices, body: Body) -> crate::Result<Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Error::PayloadTooLarge(s.max_body_bytes)
        } else {
            Error::BadRequest(e.body_text())
        }
    })
}

/// A JSON body; an empty body is `empty` (or a 400 when there is no default).
pub fn json_body<T: DeserializeOwned>(bytes: &[u8], empty: Option<T>) -> crate::Result<T> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return empty.ok_or_else(|| Error::BadRequest("a JSON body is required".into()));
    }
    serde_json::from_slice(bytes).map_err(|e| Error::BadRequest(format!("body: {e}")))
}

/// Refuses URIs longer than [`MAX_URI_BYTES`], and turns every error response that is not
/// JSON yet (axum's own: wrong method, rejected extractors, body limit) into `{code,
/// message}`, keeping its status and headers (`Allow` on a 405).
async fn json_errors(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return error_response(&Error::UriTooLong(MAX_URI_BYTES));
    }
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, MAX_REJECTION_TEXT).await {
        Ok(bytes) if !bytes.is_empty() => String::from_utf8_lossy(&bytes).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let body = json!({ "code": code, "message": crate::secret::mask_secrets(&text) });
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, axum::body::Body::from(body.to_string()))
}

async fn track(State(state): State<NodeServices>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let started = tokio::time::Instant::now();
    let response = if state.telemetry.request_spans {
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
    let metrics = &state.telemetry.http;
    metrics.total.fetch_add(1, Ordering::Relaxed);
    metrics
        .requests
        .with_label_values(&[method, route.as_str(), status.as_str()])
        .inc();
    metrics
        .latency
        .with_label_values(&[method, route.as_str()])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn not_found() -> Response {
    error_response(&Error::NotFound("no such route".into()))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

async fn health(State(s): State<NodeServices>) -> Response {
    Json(json!({ "status": "ok", "node_id": s.actors.registry().node().name() })).into_response()
}

async fn ready(State(s): State<NodeServices>) -> Response {
    if s.gate.is_draining() || s.actors.registry().node().is_shutting_down() {
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

/// The dashboard's data: the caller's tenant only, unless it is an operator (auth off, or
/// a token with the operator claim), who sees the whole node.
async fn dashboard_summary(State(s): State<NodeServices>, caller: Caller) -> Response {
    let scope = (!caller.operator).then_some(caller.tenant.as_str());
    match crate::dashboard::summary(&s, scope).await {
        Ok(summary) => ([(header::CACHE_CONTROL, "no-store")], Json(summary)).into_response(),
        Err(e) => error_response(&e),
    }
}

async fn metrics(State(s): State<NodeServices>) -> Response {
    let families = s.telemetry.prometheus.gather();
    match prometheus::TextEncoder::new().encode_to_string(&families) {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => error_response(&Error::Io(format!("metrics: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_a_closed_set() {
        assert_eq!(method_label(&Method::GET), "GET");
        let made_up = Method::from_bytes(b"FROBNICATE").expect("a valid token");
        assert_eq!(method_label(&made_up), "other");
    }
}
