//! Built-in actor types: `counter`, the durable virtual actor of the README's curl
//! sequence, and `echo`, a stateless worker pool.

use plexspaces_core::{Actor, BoxError, Context, Envelope, Error, Result};
use serde_json::{json, Value};

use crate::registry::ActorType;
use crate::state::NodeJournal;

/// A counter: `increment {"amount": n}` (default 1), `decrement {"amount": n}`,
/// `get`, `update {"count": n}` (sets), `delete` (back to 0), and
/// `remind {"after_ms": t, "amount": n, "name": "r"}`: sets a durable reminder (through
/// the node's [`crate::reminders::ReminderFacet`]) that adds `n` (default 1) when it fires
/// `t` ms later, even after a node restart. Every reply is `{"count": n}`; the count
/// saturates at the `i64` bounds. Its state is kept by the node's durability facet
/// (snapshot + journal replay).
#[derive(Debug, Default)]
pub struct Counter {
    count: i64,
}

/// A counter message.
#[derive(Debug, Clone, PartialEq)]
pub enum CounterMsg {
    /// Adds.
    Add(i64),
    /// Reads.
    Get,
    /// Sets.
    Set(i64),
    /// Sets a reminder `name` that adds `amount` after `after_ms`.
    Remind {
        /// The reminder's name (one per name: setting it again replaces it).
        name: String,
        /// Fires this long from now.
        after_ms: u64,
        /// Added when it fires.
        amount: i64,
    },
    /// A reminder fired: adds its amount.
    Fired(i64),
}

/// The payload a counter's reminder carries.
fn reminder_payload(amount: i64) -> Vec<u8> {
    json!({ "amount": amount }).to_string().into_bytes()
}

fn number(v: &Value, field: &str, msg_type: &str, default: Option<i64>) -> Result<i64> {
    let decode = |detail: String| Error::Decode {
        msg_type: msg_type.to_owned(),
        detail,
    };
    match v.get(field) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| decode(format!("missing field `{field}`")))
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| decode(format!("`{field}` must be a whole number"))),
        // Query parameters arrive as strings.
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map_err(|_| decode(format!("`{field}` must be a whole number"))),
        Some(_) => Err(decode(format!("`{field}` must be a whole number"))),
    }
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        msg: CounterMsg,
        ctx: &mut Context<Self>,
    ) -> std::result::Result<Option<i64>, BoxError> {
        match msg {
            // Saturating: no input makes the handler fail.
            CounterMsg::Add(n) | CounterMsg::Fired(n) => self.count = self.count.saturating_add(n),
            CounterMsg::Remind {
                name,
                after_ms,
                amount,
            } => {
                let reminders = ctx
                    .service::<crate::reminders::Reminders>()
                    .ok_or("this counter has no reminders (not run by a node)")?;
                reminders
                    .set(
                        ctx,
                        &name,
                        std::time::Duration::from_millis(after_ms),
                        None,
                        &reminder_payload(amount),
                    )
                    .await?;
            }
            CounterMsg::Get => {}
            CounterMsg::Set(n) => self.count = n,
        }
        Ok(Some(self.count))
    }

    fn snapshot(&self) -> Result<Option<Vec<u8>>> {
        serde_json::to_vec(&json!({ "count": self.count }))
            .map(Some)
            .map_err(|e| Error::Encode(e.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        let v: Value = serde_json::from_slice(snapshot).map_err(|e| Error::Decode {
            msg_type: "snapshot".into(),
            detail: e.to_string(),
        })?;
        self.count = number(&v, "count", "snapshot", None)?;
        Ok(())
    }

    fn msg_name(msg: &CounterMsg) -> &'static str {
        match msg {
            CounterMsg::Add(_) => "increment",
            CounterMsg::Get => "get",
            CounterMsg::Set(_) => "update",
            CounterMsg::Remind { .. } => "remind",
            CounterMsg::Fired(_) => plexspaces_journal::REMINDER_MSG_TYPE,
        }
    }

    fn decode(env: &Envelope) -> Result<CounterMsg> {
        let t = env.msg_type.as_str();
        let known = [
            "increment",
            "decrement",
            "get",
            "update",
            "delete",
            "remind",
            plexspaces_journal::REMINDER_MSG_TYPE,
        ];
        if !known.contains(&t) {
            return Err(Error::UnknownMsgType {
                msg_type: t.to_owned(),
                actor_type: "counter".into(),
            });
        }
        if t == plexspaces_journal::REMINDER_MSG_TYPE {
            let decode = |detail: String| Error::Decode {
                msg_type: t.to_owned(),
                detail,
            };
            let fired: plexspaces_journal::ReminderFired =
                serde_json::from_slice(&env.payload).map_err(|e| decode(e.to_string()))?;
            let v: Value =
                serde_json::from_slice(&fired.payload).map_err(|e| decode(e.to_string()))?;
            return Ok(CounterMsg::Fired(number(&v, "amount", t, Some(1))?));
        }
        let v: Value = env.decode_json()?;
        if !(v.is_object() || v.is_null()) {
            return Err(Error::Decode {
                msg_type: t.to_owned(),
                detail: "expected a JSON object".into(),
            });
        }
        Ok(match t {
            "increment" => CounterMsg::Add(number(&v, "amount", t, Some(1))?),
            "decrement" => {
                CounterMsg::Add(number(&v, "amount", t, Some(1))?.checked_neg().ok_or_else(
                    || Error::Decode {
                        msg_type: t.to_owned(),
                        detail: "`amount` out of range".into(),
                    },
                )?)
            }
            "update" => CounterMsg::Set(number(&v, "count", t, None)?),
            "delete" => CounterMsg::Set(0),
            "remind" => CounterMsg::Remind {
                name: match v.get("name") {
                    None | Some(Value::Null) => "remind".to_owned(),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => {
                        return Err(Error::Decode {
                            msg_type: t.to_owned(),
                            detail: "`name` must be a string".into(),
                        })
                    }
                },
                after_ms: u64::try_from(number(&v, "after_ms", t, None)?).map_err(|_| {
                    Error::Decode {
                        msg_type: t.to_owned(),
                        detail: "`after_ms` must not be negative".into(),
                    }
                })?,
                amount: number(&v, "amount", t, Some(1))?,
            },
            _ => CounterMsg::Get,
        })
    }

    fn encode(msg: &CounterMsg) -> Result<Envelope> {
        match msg {
            CounterMsg::Add(n) => Envelope::json("increment", &json!({ "amount": n })),
            CounterMsg::Get => Envelope::json("get", &json!({})),
            CounterMsg::Set(n) => Envelope::json("update", &json!({ "count": n })),
            CounterMsg::Remind {
                name,
                after_ms,
                amount,
            } => Envelope::json(
                "remind",
                &json!({ "name": name, "after_ms": after_ms, "amount": amount }),
            ),
            CounterMsg::Fired(n) => Envelope::json(
                plexspaces_journal::REMINDER_MSG_TYPE,
                &plexspaces_journal::ReminderFired {
                    name: String::new(),
                    payload: reminder_payload(*n),
                    due_at_ms: 0,
                    missed_ticks: 0,
                },
            ),
        }
    }

    fn encode_reply(request_type: &str, reply: &i64) -> Result<Envelope> {
        Envelope::json(request_type, &json!({ "count": reply }))
    }

    fn decode_reply(env: &Envelope) -> Result<i64> {
        let v: Value = env.decode_json()?;
        number(&v, "count", &env.msg_type, None)
    }
}

/// The `counter` type: virtual, its state in `journal` (a durability facet per activation).
pub fn counter_type(journal: &NodeJournal) -> ActorType {
    ActorType::virtual_actor("counter", |_| Counter::default())
        .facets(journal.facets())
        .durable()
}

/// Echo: any `msg_type`, replies with its JSON payload unchanged (`null` for an empty
/// body). Stateless.
#[derive(Debug, Default)]
pub struct Echo;

impl Actor for Echo {
    type Msg = Value;
    type Reply = Value;

    async fn handle_call(
        &mut self,
        msg: Value,
        _ctx: &mut Context<Self>,
    ) -> std::result::Result<Option<Value>, BoxError> {
        Ok(Some(msg))
    }

    fn decode(env: &Envelope) -> Result<Value> {
        env.decode_json()
    }

    fn encode(msg: &Value) -> Result<Envelope> {
        Envelope::json("echo", msg)
    }

    fn encode_reply(request_type: &str, reply: &Value) -> Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> Result<Value> {
        env.decode_json()
    }
}

/// The `echo` type: a stateless worker pool (the node's `actors.pool_workers`).
pub fn echo_type() -> ActorType {
    ActorType::worker_pool("echo", 0, |_| Echo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(t: &str, body: &str) -> Envelope {
        Envelope::new(t, body.as_bytes().to_vec(), "application/json")
    }

    #[test]
    fn decodes_bodies_and_query_strings() {
        assert_eq!(
            Counter::decode(&env("increment", r#"{"amount": 5}"#)).unwrap(),
            CounterMsg::Add(5)
        );
        assert_eq!(
            Counter::decode(&env("increment", "")).unwrap(),
            CounterMsg::Add(1)
        );
        assert_eq!(
            Counter::decode(&env("decrement", r#"{"amount": "2"}"#)).unwrap(),
            CounterMsg::Add(-2)
        );
        assert_eq!(
            Counter::decode(&env("get", r#"{"key": "a"}"#)).unwrap(),
            CounterMsg::Get
        );
        assert_eq!(
            Counter::decode(&env("update", r#"{"count": 9}"#)).unwrap(),
            CounterMsg::Set(9)
        );
        assert_eq!(
            Counter::decode(&env("delete", "")).unwrap(),
            CounterMsg::Set(0)
        );
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        assert_eq!(
            Counter::decode(&env("explode", "{}")).unwrap_err().kind(),
            "unknown_msg_type"
        );
        assert_eq!(
            Counter::decode(&env("increment", "{nope"))
                .unwrap_err()
                .kind(),
            "decode"
        );
        assert_eq!(
            Counter::decode(&env("increment", r#"{"amount": "x"}"#))
                .unwrap_err()
                .kind(),
            "decode"
        );
        assert_eq!(
            Counter::decode(&env("increment", "[1]"))
                .unwrap_err()
                .kind(),
            "decode"
        );
        assert_eq!(
            Counter::decode(&env("update", "{}")).unwrap_err().kind(),
            "decode"
        );
    }
}
