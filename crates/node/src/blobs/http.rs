//! The blob service over HTTP:
//! - `GET /api/v1/blobs/{namespace}?prefix=P`: `{blobs: [{key, size, e_tag}]}`;
//! - `PUT /api/v1/blobs/{namespace}/{key}`: upload the body, streamed (answers `{key, size,
//!   e_tag}`; over `blobs.max_blob_bytes`: 413 and nothing stored);
//! - `GET /api/v1/blobs/{namespace}/{key}`: download, streamed (chunked);
//! - `DELETE /api/v1/blobs/{namespace}/{key}`: remove (a missing blob is not an error).
//!
//! A key is a relative path (`a/b.txt`): no empty, `.` or `..` segments.

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::TryStreamExt;
use plexspaces_storage::BlobMeta;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{query_of, respond, QueryOf, Scoped};
use crate::service::NodeServices;

/// The blob routes.
pub fn routes() -> Router<NodeServices> {
    Router::new()
        .route("/api/v1/blobs/{namespace}", get(list))
        .route(
            "/api/v1/blobs/{namespace}/{*key}",
            get(download).put(upload).delete(remove),
        )
}

/// A blob's description in JSON.
pub fn meta_json(m: &BlobMeta) -> Value {
    json!({ "key": m.key, "size": m.size, "e_tag": m.e_tag })
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
}

async fn list(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<String>,
    query: QueryOf<ListQuery>,
) -> Response {
    respond(
        async {
            let q = query_of(query)?;
            let blobs = s.blobs.list(&caller, &path, &q.prefix).await?;
            let blobs: Vec<Value> = blobs.iter().map(meta_json).collect();
            Ok(Json(json!({ "blobs": blobs })).into_response())
        }
        .await,
    )
}

async fn upload(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (ns, key) = path;
            let meta = s
                .blobs
                .put(&caller, &ns, &key, body.into_data_stream())
                .await?;
            Ok(Json(meta_json(&meta)).into_response())
        }
        .await,
    )
}

async fn download(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
) -> Response {
    respond(
        async {
            let (ns, key) = path;
            let stream = s.blobs.get(&caller, &ns, &key).await?;
            let body = Body::from_stream(stream.map_err(|e| std::io::Error::other(e.to_string())));
            Ok((
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )],
                body,
            )
                .into_response())
        }
        .await,
    )
}

async fn remove(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (ns, key) = path;
            s.blobs.delete(&caller, &ns, &key).await?;
            Ok(Json(json!({ "deleted": true })).into_response())
        }
        .await,
    )
}
