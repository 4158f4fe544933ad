//! The key-value service over HTTP:
//! - `GET /api/v1/kv/{namespace}?prefix=P&limit=N`: entries under a prefix, in key order;
//! - `GET /api/v1/kv/{namespace}/{key}`: the value as the body (`application/octet-stream`),
//!   its version in `x-plexspaces-version` (and `ETag`); 404 if missing;
//! - `PUT /api/v1/kv/{namespace}/{key}?ttl_ms=&if_version=&fence=`: write the body
//!   (`if_version` makes it a compare-and-swap, `0` meaning "only if missing"; a conflict is
//!   409 with `current_version`);
//! - `POST /api/v1/kv/{namespace}/{key}` with `{"delta": N}`: increment, answers `{value}`;
//! - `DELETE /api/v1/kv/{namespace}/{key}`: answers `{deleted}`.
//!
//! A key may hold `/` (the rest of the path is the key).

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http::{body_of, json_body, query_of, respond, Body, QueryOf, Scoped};
use crate::kv::{Write, Written};
use crate::service::NodeServices;

/// The header carrying a value's version.
pub const VERSION_HEADER: &str = "x-plexspaces-version";

/// The key-value routes.
pub fn routes() -> Router<NodeServices> {
    Router::new()
        .route("/api/v1/kv/{namespace}", get(list))
        .route(
            "/api/v1/kv/{namespace}/{*key}",
            get(get_key).put(put_key).post(increment).delete(delete_key),
        )
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    limit: usize,
}

/// A value in JSON: `value` when it is UTF-8 text, else `value_hex`.
#[derive(Debug, Serialize)]
pub struct JsonValue {
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_hex: Option<String>,
}

impl JsonValue {
    /// `bytes` as text, or hex if it is not UTF-8.
    pub fn of(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => JsonValue {
                value: Some(text.to_owned()),
                value_hex: None,
            },
            Err(_) => JsonValue {
                value: None,
                value_hex: Some(hex(bytes)),
            },
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

async fn list(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<String>,
    query: QueryOf<ListQuery>,
) -> Response {
    respond(
        async {
            let q = query_of(query)?;
            let entries = s.kv.list(&caller, &path, &q.prefix, q.limit).await?;
            let entries: Vec<_> = entries
                .into_iter()
                .map(|(key, v)| {
                    let mut e =
                        serde_json::to_value(JsonValue::of(&v.value)).unwrap_or_else(|_| json!({}));
                    e["key"] = json!(key);
                    e["version"] = json!(v.version);
                    e
                })
                .collect();
            Ok(Json(json!({ "entries": entries })).into_response())
        }
        .await,
    )
}

async fn get_key(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
) -> Response {
    respond(
        async {
            let (ns, key) = path;
            let Some(v) = s.kv.get(&caller, &ns, &key).await? else {
                return Err(crate::Error::NotFound(format!("key {key:?}")));
            };
            Ok((
                [
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (
                        header::HeaderName::from_static(VERSION_HEADER),
                        HeaderValue::from(v.version),
                    ),
                    (
                        header::ETAG,
                        HeaderValue::from_str(&format!("\"{}\"", v.version))
                            .unwrap_or(HeaderValue::from_static("\"0\"")),
                    ),
                ],
                v.value,
            )
                .into_response())
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
struct PutQuery {
    #[serde(default)]
    ttl_ms: u64,
    if_version: Option<u64>,
    fence: Option<u64>,
}

async fn put_key(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    query: QueryOf<PutQuery>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (ns, key) = path;
            let q = query_of(query)?;
            let body = body_of(&s, body)?;
            let write = Write {
                ttl: (q.ttl_ms > 0).then(|| Duration::from_millis(q.ttl_ms)),
                if_version: q.if_version,
                fence: q.fence,
            };
            match s.kv.put(&caller, &ns, &key, &body, write).await? {
                Written::Version(version) => {
                    Ok(Json(json!({ "version": version })).into_response())
                }
                Written::Conflict(current) => Ok((
                    StatusCode::CONFLICT,
                    Json(json!({
                        "code": "conflict",
                        "message": format!("key {key:?} is at version {current}"),
                        "current_version": current,
                    })),
                )
                    .into_response()),
            }
        }
        .await,
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Increment {
    delta: i64,
}

async fn increment(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (ns, key) = path;
            let body = body_of(&s, body)?;
            let Increment { delta } = json_body(&body, None)?;
            let value = s.kv.increment(&caller, &ns, &key, delta).await?;
            Ok(Json(json!({ "value": value })).into_response())
        }
        .await,
    )
}

async fn delete_key(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (ns, key) = path;
            let deleted = s.kv.delete(&caller, &ns, &key).await?;
            Ok(Json(json!({ "deleted": deleted })).into_response())
        }
        .await,
    )
}
