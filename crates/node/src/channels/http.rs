//! The channel service over HTTP. A queue is `/api/v1/channels/{namespace}/queues/{queue}`,
//! a topic's subscriber group `/api/v1/channels/{namespace}/topics/{topic}/groups/{group}`:
//! - `POST .../queues/{queue}` or `.../topics/{topic}` with `{"payload": "text",
//!   "headers": {..}}` (or `payload_hex` for bytes): publish, answers `{message_id}`;
//! - `POST <queue or group>/receive` with `{"consumer": "c1", "max": 10, "wait_ms": 1000}`:
//!   answers `{deliveries: [{message_id, payload | payload_hex, headers, attempt,
//!   receipt}]}`;
//! - `POST <queue or group>/ack` with `{"receipt": ".."}`, `POST <queue or group>/nack`
//!   with `{"receipt": "..", "delay_ms": 0}`;
//! - `GET <queue or group>/dead-letters?max=N`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::channels::Target;
use crate::error::Error;
use crate::http::{body_of, json_body, query_of, respond, Body, QueryOf, Scoped};
use crate::kv::http::hex;
use crate::service::{Caller, NodeServices};

/// The channel routes.
pub fn routes() -> Router<NodeServices> {
    let q = "/api/v1/channels/{namespace}/queues/{queue}";
    let g = "/api/v1/channels/{namespace}/topics/{topic}/groups/{group}";
    Router::new()
        .route(q, post(publish_queue))
        .route(
            "/api/v1/channels/{namespace}/topics/{topic}",
            post(publish_topic),
        )
        .route(&format!("{q}/receive"), post(receive_queue))
        .route(&format!("{q}/ack"), post(ack_queue))
        .route(&format!("{q}/nack"), post(nack_queue))
        .route(&format!("{q}/dead-letters"), get(dead_queue))
        .route(&format!("{g}/receive"), post(receive_group))
        .route(&format!("{g}/ack"), post(ack_group))
        .route(&format!("{g}/nack"), post(nack_group))
        .route(&format!("{g}/dead-letters"), get(dead_group))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    payload: Option<String>,
    payload_hex: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

impl Publish {
    fn payload(&mut self) -> crate::Result<Bytes> {
        match (self.payload.take(), self.payload_hex.take()) {
            (Some(text), None) => Ok(Bytes::from(text)),
            (None, Some(h)) => unhex(&h)
                .map(Bytes::from)
                .ok_or_else(|| Error::BadRequest("payload_hex is not hex".into())),
            _ => Err(Error::BadRequest(
                "give exactly one of payload and payload_hex".into(),
            )),
        }
    }
}

/// A message's payload in JSON: `payload` when UTF-8 text, else `payload_hex`.
fn payload_json(out: &mut serde_json::Map<String, Value>, payload: &[u8]) {
    match std::str::from_utf8(payload) {
        Ok(text) => out.insert("payload".into(), json!(text)),
        Err(_) => out.insert("payload_hex".into(), json!(hex(payload))),
    };
}

fn message_json(m: &plexspaces_channels::Message) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("message_id".into(), json!(m.id));
    payload_json(&mut out, &m.payload);
    out.insert("headers".into(), json!(m.headers));
    out
}

async fn publish(
    s: &NodeServices,
    caller: &Caller,
    namespace: &str,
    channel: &str,
    topic: bool,
    body: Body,
) -> crate::Result<Response> {
    s.gate.check_open()?;
    let body = body_of(s, body)?;
    let mut p: Publish = json_body(&body, None)?;
    let payload = p.payload()?;
    let id = s
        .channels
        .publish(caller, namespace, channel, topic, payload, p.headers)
        .await?;
    Ok(Json(json!({ "message_id": id })).into_response())
}

async fn publish_queue(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(publish(&s, &caller, &path.0, &path.1, false, body).await)
}

async fn publish_topic(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(publish(&s, &caller, &path.0, &path.1, true, body).await)
}

fn queue(path: (String, String)) -> Target {
    Target {
        namespace: path.0,
        channel: path.1,
        group: None,
    }
}

fn group(path: (String, String, String)) -> Target {
    Target {
        namespace: path.0,
        channel: path.1,
        group: Some(path.2),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Receive {
    consumer: String,
    #[serde(default)]
    max: usize,
    #[serde(default)]
    wait_ms: u64,
}

async fn receive(
    s: &NodeServices,
    caller: &Caller,
    target: Target,
    body: Body,
) -> crate::Result<Response> {
    s.gate.check_open()?;
    let body = body_of(s, body)?;
    let r: Receive = json_body(&body, None)?;
    let deliveries = s
        .gate
        .until_stopped(s.channels.receive(
            caller,
            &target,
            &r.consumer,
            r.max,
            Duration::from_millis(r.wait_ms),
        ))
        .await?;
    let deliveries: Vec<Value> = deliveries
        .iter()
        .map(|d| {
            let mut m = message_json(&d.message);
            m.insert("attempt".into(), json!(d.attempt));
            m.insert("receipt".into(), json!(d.receipt.as_str()));
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({ "deliveries": deliveries })).into_response())
}

async fn receive_queue(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(receive(&s, &caller, queue(path), body).await)
}

async fn receive_group(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String, String)>,
    body: Body,
) -> Response {
    respond(receive(&s, &caller, group(path), body).await)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    receipt: String,
    #[serde(default)]
    delay_ms: Option<u64>,
}

async fn answer(
    s: &NodeServices,
    caller: &Caller,
    target: Target,
    body: Body,
    nack: bool,
) -> crate::Result<Response> {
    let body = body_of(s, body)?;
    let a: Answer = json_body(&body, None)?;
    if nack {
        let delay = Duration::from_millis(a.delay_ms.unwrap_or(0));
        s.channels.nack(caller, &target, &a.receipt, delay).await?;
    } else {
        if a.delay_ms.is_some() {
            return Err(Error::BadRequest("an ack takes no delay_ms".into()));
        }
        s.channels.ack(caller, &target, &a.receipt).await?;
    }
    Ok(Json(json!({})).into_response())
}

async fn ack_queue(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(answer(&s, &caller, queue(path), body, false).await)
}

async fn nack_queue(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    body: Body,
) -> Response {
    respond(answer(&s, &caller, queue(path), body, true).await)
}

async fn ack_group(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String, String)>,
    body: Body,
) -> Response {
    respond(answer(&s, &caller, group(path), body, false).await)
}

async fn nack_group(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String, String)>,
    body: Body,
) -> Response {
    respond(answer(&s, &caller, group(path), body, true).await)
}

#[derive(Debug, Deserialize)]
struct DeadQuery {
    #[serde(default)]
    max: usize,
}

async fn dead(
    s: &NodeServices,
    caller: &Caller,
    target: Target,
    query: QueryOf<DeadQuery>,
) -> crate::Result<Response> {
    let q = query_of(query)?;
    let dead = s.channels.dead_letters(caller, &target, q.max).await?;
    let dead: Vec<Value> = dead
        .iter()
        .map(|d| {
            let mut m = message_json(&d.message);
            m.insert("deliveries".into(), json!(d.deliveries));
            Value::Object(m)
        })
        .collect();
    Ok(Json(json!({ "dead_letters": dead })).into_response())
}

async fn dead_queue(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String)>,
    query: QueryOf<DeadQuery>,
) -> Response {
    respond(dead(&s, &caller, queue(path), query).await)
}

async fn dead_group(
    State(s): State<NodeServices>,
    Scoped { caller, path }: Scoped<(String, String, String)>,
    query: QueryOf<DeadQuery>,
) -> Response {
    respond(dead(&s, &caller, group(path), query).await)
}
