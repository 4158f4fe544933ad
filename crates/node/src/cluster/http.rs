//! The cluster service over HTTP: `GET /api/v1/cluster/members`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::service::{Caller, NodeServices};

/// The cluster routes.
pub fn routes() -> Router<NodeServices> {
    Router::new().route("/api/v1/cluster/members", get(members))
}

async fn members(State(s): State<NodeServices>, caller: Caller) -> Response {
    Json(s.cluster.status(&caller)).into_response()
}
