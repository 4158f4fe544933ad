//! The counter of the quick start as a Rust WASM actor, plus `probe.*` handlers the host's
//! tests use to exercise each limit and import (they are harmless in a deployment).
//!
//! Handlers: `increment {"amount": n}` (default 1), `decrement {"amount": n}`, `get`,
//! `update {"count": n}`, `delete`; every reply is `{"count": n}`.

use std::cell::RefCell;

use serde_json::{json, Value};

wit_bindgen::generate!({
    path: "../../wit",
    world: "plexspaces:actor/actor",
});

use plexspaces::actor::types::{Address, ErrorCode};
use plexspaces::actor::{durability, key_value, logging, messaging, process_groups, tuple_space};

thread_local! {
    static COUNT: RefCell<i64> = const { RefCell::new(0) };
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

struct Counter;

fn err(code: ErrorCode, message: impl Into<String>) -> Error {
    Error {
        code,
        message: message.into(),
    }
}

fn reply(v: Value) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(&v).map_err(|e| err(ErrorCode::Internal, e.to_string()))
}

fn int(v: &Value, field: &str, default: Option<i64>) -> Result<i64, Error> {
    match v.get(field) {
        None | Some(Value::Null) => default
            .ok_or_else(|| err(ErrorCode::BadRequest, format!("missing field `{field}`"))),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| err(ErrorCode::BadRequest, format!("`{field}` must be a whole number"))),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| err(ErrorCode::BadRequest, format!("`{field}` must be a whole number"))),
        Some(_) => Err(err(ErrorCode::BadRequest, format!("`{field}` must be a whole number"))),
    }
}

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or("")
}

fn count_reply() -> Result<Vec<u8>, Error> {
    reply(json!({ "count": COUNT.with(|c| *c.borrow()) }))
}

fn probe(msg_type: &str, v: &Value) -> Result<Vec<u8>, Error> {
    match msg_type {
        // Runs until the host's time limit stops it.
        "probe.spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        // Keeps `mb` MiB (default 512) alive: fails past the memory limit.
        "probe.alloc" => {
            let mb = usize::try_from(int(v, "mb", Some(512))?).unwrap_or(0);
            for _ in 0..mb {
                let chunk = vec![1u8; 1 << 20];
                HOARD.with(|h| h.borrow_mut().push(chunk));
            }
            reply(json!({ "held_mb": HOARD.with(|h| h.borrow().len()) }))
        }
        "probe.trap" => panic!("probe.trap asked for a trap"),
        "probe.fail" => Err(err(ErrorCode::BadRequest, "probe.fail refuses")),
        "probe.log" => {
            logging::log(logging::Level::Info, text(v, "message"));
            reply(json!({}))
        }
        "probe.ask" => {
            let to = Address {
                actor_type: text(v, "actor_type").to_owned(),
                key: text(v, "key").to_owned(),
            };
            let payload = serde_json::to_vec(v.get("payload").unwrap_or(&json!({})))
                .map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
            let out = messaging::ask(&to, text(v, "msg_type"), &payload, 5000)?;
            let out: Value = serde_json::from_slice(&out).unwrap_or(Value::Null);
            reply(json!({ "reply": out }))
        }
        "probe.tell" => {
            let to = Address {
                actor_type: text(v, "actor_type").to_owned(),
                key: text(v, "key").to_owned(),
            };
            messaging::tell(&to, text(v, "msg_type"), b"{}")?;
            reply(json!({}))
        }
        "probe.kv_put" => {
            key_value::put(text(v, "key"), text(v, "value").as_bytes())?;
            reply(json!({}))
        }
        "probe.kv_get" => {
            let got = key_value::get(text(v, "key"))?;
            reply(json!({ "value": got.map(|b| String::from_utf8_lossy(&b).into_owned()) }))
        }
        "probe.tuple_write" => {
            tuple_space::write(text(v, "space"), text(v, "tuple"))?;
            reply(json!({}))
        }
        "probe.tuple_read" => {
            let got = tuple_space::read(text(v, "space"), text(v, "template"), 0)?;
            reply(json!({ "tuple": got }))
        }
        "probe.pg" => {
            process_groups::join(text(v, "group"))?;
            reply(json!({ "members": process_groups::members(text(v, "group")) }))
        }
        "probe.self" => {
            let me = messaging::self_address();
            reply(json!({
                "actor_type": me.actor_type,
                "key": me.key,
                "durable": durability::is_durable(),
            }))
        }
        "probe.now" => reply(json!({ "now_ms": durability::now_ms()? })),
        other => Err(err(ErrorCode::NotFound, format!("no handler for {other:?}"))),
    }
}

impl Guest for Counter {
    fn describe() -> Descriptor {
        Descriptor {
            facets: Vec::new(),
            handlers: ["increment", "decrement", "get", "update", "delete"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    fn init(_config: Vec<u8>) -> Result<(), Error> {
        Ok(())
    }

    fn handle(msg_type: String, payload: Vec<u8>) -> Result<Vec<u8>, Error> {
        let v: Value = if payload.is_empty() {
            json!({})
        } else {
            serde_json::from_slice(&payload)
                .map_err(|e| err(ErrorCode::BadRequest, format!("payload is not JSON: {e}")))?
        };
        let add = |n: i64| COUNT.with(|c| {
            let mut c = c.borrow_mut();
            *c = c.saturating_add(n);
        });
        match msg_type.as_str() {
            "increment" => add(int(&v, "amount", Some(1))?),
            "decrement" => add(int(&v, "amount", Some(1))?.saturating_neg()),
            "get" => {}
            "update" => {
                let n = int(&v, "count", None)?;
                COUNT.with(|c| *c.borrow_mut() = n);
            }
            "delete" => COUNT.with(|c| *c.borrow_mut() = 0),
            other => return probe(other, &v),
        }
        count_reply()
    }

    fn snapshot() -> Vec<u8> {
        serde_json::to_vec(&json!({ "count": COUNT.with(|c| *c.borrow()) })).unwrap_or_default()
    }

    fn restore(state: Vec<u8>) -> Result<(), Error> {
        let v: Value = serde_json::from_slice(&state)
            .map_err(|e| err(ErrorCode::BadRequest, format!("snapshot is not JSON: {e}")))?;
        let n = int(&v, "count", Some(0))?;
        COUNT.with(|c| *c.borrow_mut() = n);
        Ok(())
    }
}

export!(Counter);
