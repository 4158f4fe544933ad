//! An Erlang/OTP-style rate limiter as a WASM actor: one virtual actor per client key
//! (`?key=CLIENT`), each keeping a sliding window log of the requests it allowed.
//!
//! Handlers (JSON in and out):
//! - `configure {"limit": n, "window_ms": ms}`: at most `n` requests per `ms` (default 10 per
//!   1000 ms);
//! - `check {}`: `{"allowed": bool, "remaining": n, "retry_after_ms": ms}`, recording the request
//!   when allowed;
//! - `status {}`: the window without recording anything;
//! - `crash {}`: panics (a trap): the supervisor restarts the activation, OTP style, and the
//!   next message is served by a fresh one with the default configuration.
//!
//! Time comes from the host's journaled clock (`durability::now-ms`), so a durable deployment
//! replays the same decisions.

use std::cell::RefCell;
use std::collections::VecDeque;

use serde_json::{json, Value};

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plexspaces:actor/actor",
});

use plexspaces::actor::durability;
use plexspaces::actor::types::ErrorCode;

struct Window {
    limit: u64,
    window_ms: u64,
    allowed: VecDeque<u64>,
    denied: u64,
}

impl Window {
    const fn new() -> Self {
        Window {
            limit: 10,
            window_ms: 1000,
            allowed: VecDeque::new(),
            denied: 0,
        }
    }

    fn expire(&mut self, now: u64) {
        while let Some(&t) = self.allowed.front() {
            if t + self.window_ms <= now {
                self.allowed.pop_front();
            } else {
                break;
            }
        }
    }

    fn status(&self, now: u64, allowed: bool) -> Value {
        let used = self.allowed.len() as u64;
        let retry_after_ms = if used < self.limit {
            0
        } else {
            self.allowed
                .front()
                .map_or(0, |&t| (t + self.window_ms).saturating_sub(now))
        };
        json!({
            "allowed": allowed,
            "remaining": self.limit.saturating_sub(used),
            "retry_after_ms": retry_after_ms,
            "limit": self.limit,
            "window_ms": self.window_ms,
            "denied": self.denied,
        })
    }
}

thread_local! {
    static WINDOW: RefCell<Window> = const { RefCell::new(Window::new()) };
}

struct RateLimiter;

fn err(code: ErrorCode, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into(),
    }
}

fn positive(v: &Value, field: &str, default: u64) -> Result<u64, Error> {
    match v.get(field) {
        None | Some(Value::Null) => Ok(default),
        Some(n) => n.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            err(
                ErrorCode::BadRequest,
                format!("`{field}` must be a positive whole number"),
            )
        }),
    }
}

fn reply(v: Value) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&v).map_err(|e| err(ErrorCode::Internal, e.to_string()))
}

impl Guest for RateLimiter {
    fn describe() -> Descriptor {
        Descriptor {
            facets: Vec::new(),
            handlers: ["configure", "check", "status", "crash"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    fn init(_config: Vec<u8>) -> Result<(), Error> {
        WINDOW.with(|w| *w.borrow_mut() = Window::new());
        Ok(())
    }

    fn handle(msg_type: String, payload: Vec<u8>) -> Result<Vec<u8>, Error> {
        let v: Value = if payload.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&payload)
                .map_err(|e| err(ErrorCode::BadRequest, format!("payload is not JSON: {e}")))?
        };
        match msg_type.as_str() {
            "configure" => {
                let limit = positive(&v, "limit", 10)?;
                let window_ms = positive(&v, "window_ms", 1000)?;
                let now = durability::now_ms()?;
                WINDOW.with(|w| {
                    let mut w = w.borrow_mut();
                    *w = Window {
                        limit,
                        window_ms,
                        allowed: VecDeque::new(),
                        denied: 0,
                    };
                    reply(w.status(now, true))
                })
            }
            "check" => {
                let now = durability::now_ms()?;
                WINDOW.with(|w| {
                    let mut w = w.borrow_mut();
                    w.expire(now);
                    let allowed = (w.allowed.len() as u64) < w.limit;
                    if allowed {
                        w.allowed.push_back(now);
                    } else {
                        w.denied += 1;
                    }
                    reply(w.status(now, allowed))
                })
            }
            "status" => {
                let now = durability::now_ms()?;
                WINDOW.with(|w| {
                    let mut w = w.borrow_mut();
                    w.expire(now);
                    let allowed = (w.allowed.len() as u64) < w.limit;
                    reply(w.status(now, allowed))
                })
            }
            "crash" => panic!("crash asked for: let it crash"),
            other => Err(err(
                ErrorCode::NotFound,
                format!("no handler for {other:?}"),
            )),
        }
    }

    fn snapshot() -> Vec<u8> {
        WINDOW.with(|w| {
            let w = w.borrow();
            serde_json::to_vec(&json!({
                "limit": w.limit,
                "window_ms": w.window_ms,
                "allowed": w.allowed.iter().collect::<Vec<_>>(),
                "denied": w.denied,
            }))
            .unwrap_or_default()
        })
    }

    fn restore(state: Vec<u8>) -> Result<(), Error> {
        let v: Value = serde_json::from_slice(&state)
            .map_err(|e| err(ErrorCode::BadRequest, format!("snapshot is not JSON: {e}")))?;
        let allowed = v
            .get("allowed")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        WINDOW.with(|w| {
            *w.borrow_mut() = Window {
                limit: positive(&v, "limit", 10)?,
                window_ms: positive(&v, "window_ms", 1000)?,
                allowed,
                denied: v.get("denied").and_then(Value::as_u64).unwrap_or(0),
            };
            Ok(())
        })
    }
}

export!(RateLimiter);
