//! The lock service over HTTP:
//! - `POST /api/v1/locks/{namespace}/{lock}/acquire` with `{"holder": "h", "lease_ms": 30000,
//!   "wait_ms": 0}`: answers `{lock, holder, token}`, or 409 `conflict` when another holder
//!   still has it after `wait_ms`;
//! - `POST .../renew` with `{"holder": "h", "token": T, "lease_ms": 30000}`: answers
//!   `{renewed: true}`, or 409 `lease_lost`;
//! - `POST .../release` with `{"holder": "h", "token": T}`: answers `{released}` (whether
//!   that lease still held the lock).

use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::Error;
use crate::http::{body_of, json_body, respond, Body, Scoped};
use crate::kv::MAX_COUNTER;
use crate::service::NodeServices;

/// The lock routes.
pub fn routes() -> Router<NodeServices> {
    Router::new()
        .route("/api/v1/locks/{namespace}/{lock}/acquire", post(acquire))
        .route("/api/v1/locks/{namespace}/{lock}/renew", post(renew))
        .route("/api/v1/locks/{namespace}/{lock}/release", post(release))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Acquire {
    holder: String,
    lease_ms: u64,
    #[serde(default)]
    wait_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Renew {
    holder: String,
    token: u64,
    lease_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Release {
    holder: String,
    token: u64,
}

fn check_token(token: u64) -> crate::Result<()> {
    if token == 0 || token > MAX_COUNTER {
        return Err(Error::BadRequest(format!(
            "token must be 1 to {MAX_COUNTER}"
        )));
    }
    Ok(())
}

async fn acquire(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (ns, lock) = path;
            let a: Acquire = json_body(&body_of(&s, body)?, None)?;
            let lease = Duration::from_millis(a.lease_ms);
            let wait = Duration::from_millis(a.wait_ms);
            let got = s
                .gate
                .until_stopped(s.locks.acquire(&caller, &ns, &lock, &a.holder, lease, wait))
                .await?;
            match got {
                Some(l) => Ok(Json(json!({
                    "lock": l.lock,
                    "holder": l.holder,
                    "token": l.token,
                }))
                .into_response()),
                None => Err(Error::Conflict(format!(
                    "lock {lock:?} is held by another holder"
                ))),
            }
        }
        .await,
    )
}

async fn renew(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(
        async {
            s.gate.check_open()?;
            let (ns, lock) = path;
            let r: Renew = json_body(&body_of(&s, body)?, None)?;
            check_token(r.token)?;
            s.locks
                .renew(
                    &caller,
                    &ns,
                    &lock,
                    &r.holder,
                    r.token,
                    Duration::from_millis(r.lease_ms),
                )
                .await?;
            Ok(Json(json!({ "renewed": true })).into_response())
        }
        .await,
    )
}

async fn release(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(
        async {
            let (ns, lock) = path;
            let r: Release = json_body(&body_of(&s, body)?, None)?;
            check_token(r.token)?;
            let released = s
                .locks
                .release(&caller, &ns, &lock, &r.holder, r.token)
                .await?;
            Ok(Json(json!({ "released": released })).into_response())
        }
        .await,
    )
}
