//! An idempotency-honouring effect stub: a small HTTP service on 127.0.0.1 standing in for an
//! external system (a payment provider, a mailer) that durable code calls as a side effect.
//!
//! `POST /effects` with an `Idempotency-Key` header logs the request (key and body) and
//! applies it once per key: the first request with a key is applied and its answer stored;
//! every later request with that key is logged too but only gets the stored answer back
//! (with `idempotent-replayed: true`), the way Stripe-style APIs behave. A request without
//! the header is a 400. Tests read the log with [`EffectStub::requests`] and
//! [`EffectStub::applications`] to tell "the call was repeated" from "the effect happened
//! twice".

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

/// The header carrying the idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// One request the stub received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRequest {
    /// Its `Idempotency-Key`.
    pub key: String,
    /// Its body (lossy UTF-8).
    pub body: String,
    /// Whether this request applied the effect (`false`: a repeat of an applied key).
    pub applied: bool,
}

#[derive(Debug, Default)]
struct Log {
    requests: Vec<StubRequest>,
    answers: HashMap<String, String>,
    applications: u64,
}

/// A running stub; the server task ends when this is dropped.
#[derive(Debug)]
pub struct EffectStub {
    addr: SocketAddr,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl EffectStub {
    /// Binds 127.0.0.1 on a free port and serves in a task of the current runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let log = Arc::new(Mutex::new(Log::default()));
        let app = Router::new()
            .route("/effects", post(apply))
            .with_state(log.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, log, task })
    }

    /// `host:port` of the stub.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://host:port/effects`.
    pub fn url(&self) -> String {
        format!("http://{}/effects", self.addr)
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<StubRequest> {
        self.lock().requests.clone()
    }

    /// The requests received with `key`.
    pub fn requests_for(&self, key: &str) -> Vec<StubRequest> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.key == key)
            .cloned()
            .collect()
    }

    /// How many effects were applied (one per distinct key).
    pub fn applications(&self) -> u64 {
        self.lock().applications
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for EffectStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn apply(State(log): State<Arc<Mutex<Log>>>, headers: HeaderMap, body: String) -> Response {
    let Some(key) = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    else {
        return (StatusCode::BAD_REQUEST, "missing Idempotency-Key").into_response();
    };
    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
    let (answer, applied) = match log.answers.get(&key) {
        Some(a) => (a.clone(), false),
        None => {
            log.applications += 1;
            let a = format!("applied-{}", log.applications);
            log.answers.insert(key.clone(), a.clone());
            (a, true)
        }
    };
    log.requests.push(StubRequest { key, body, applied });
    (
        StatusCode::OK,
        [(
            "idempotent-replayed",
            if applied { "false" } else { "true" },
        )],
        answer,
    )
        .into_response()
}
