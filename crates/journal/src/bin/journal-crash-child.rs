//! Crash-test child: a durable bank account actor (an ordinary actor with a
//! `DurabilityFacet`) on SQLite or PostgreSQL that can pause at a named point so the parent
//! test can `kill -9` it there.
//!
//! Environment:
//! - `JOURNAL_BACKEND`: `sqlite:<file>` or `postgres:<schema>` (URL from `JOURNAL_PG_URL`,
//!   default `postgres://postgres@127.0.0.1:5432/test`)
//! - `EFFECTS_FILE`: file where every execution of the external effect is appended
//! - `OPS`: number of operations (default 12); op `i` has idempotency key `op-i`
//! - `CHECKPOINT_EVERY`: checkpoint every N messages (default 4)
//! - `PAUSE_AT`: `<point>:<n>`: print `PAUSED <point>` and hang at the n-th time the point
//!   is reached (`mid_handler`, `after_effect_before_journal`, `after_commit_before_reply`,
//!   `mid_checkpoint`, and with `REPLY=handle` `after_handle_reply`)
//! - `EFFECT_URL`: `http://127.0.0.1:<port>/<path>` of an idempotency-honouring effect stub
//!   (`plexspaces_test_util::EffectStub`): the effect also POSTs `{"op":<i>}` there with the
//!   step's idempotency key in `Idempotency-Key`, and the receipt carries the stub's answer
//! - `REPLY=handle`: the bank answers each op through `ctx.reply_handle()` inside its
//!   handler (then pauses at `after_handle_reply`) instead of returning the reply
//!
//! Output lines: `ACK op-<i> <reply json>` after each reply is released, `STATE <json>` and
//! `HISTORY_LEN <n>` at the end, then `DONE`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use plexspaces_core::{Actor, Context, Envelope, Node, SpawnOptions};
use plexspaces_journal::{
    CheckpointPolicy, Durability, DurabilityFacet, DurableOptions, Journal, StreamId,
    IDEMPOTENCY_KEY_HEADER,
};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn pause_spec() -> &'static Option<(String, u64)> {
    static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let v = std::env::var("PAUSE_AT").ok()?;
        let (name, n) = v.split_once(':')?;
        Some((name.to_owned(), n.parse().ok()?))
    })
}

fn maybe_pause(point: &str) {
    static COUNTS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();
    let Some((name, n)) = pause_spec() else {
        return;
    };
    if name != point {
        return;
    }
    let counts = COUNTS.get_or_init(|| Mutex::new(HashMap::new()));
    let hit = {
        let mut c = counts.lock().unwrap_or_else(|p| p.into_inner());
        let v = c.entry(point.to_owned()).or_insert(0);
        *v += 1;
        *v == *n
    };
    if hit {
        println!("PAUSED {point}");
        let _ = std::io::stdout().flush();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Req {
    id: u64,
    op: String,
    amount: i64,
}

/// The durable bank account: an ordinary actor made durable by a `DurabilityFacet`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Bank {
    balance: i64,
    history: Vec<(u64, String, i64, String)>,
    #[serde(skip)]
    effects_file: String,
}

enum BankMsg {
    Op(Req),
    State,
}

static EFFECT_RUNS: AtomicU64 = AtomicU64::new(0);

/// POSTs `{"op":<op>}` to the stub at `url` (`http://host:port/path`) with the idempotency
/// key, over a plain HTTP/1.1 connection; returns the response body.
fn call_stub(url: &str, key: &str, op: u64) -> std::io::Result<String> {
    use std::io::Read;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("EFFECT_URL must be http://"))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let body = format!("{{\"op\":{op}}}");
    let mut conn = std::net::TcpStream::connect(host)?;
    write!(
        conn,
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nIdempotency-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    let (head, answer) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("no HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(bad(head.lines().next().unwrap_or_default()));
    }
    Ok(answer.to_owned())
}

fn record_effect(path: &str, key: &str, op: u64) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{key}\t{op}")?;
    f.sync_data()
}

impl Bank {
    async fn apply(
        &mut self,
        durable: &Durability,
        req: Req,
    ) -> Result<serde_json::Value, BoxError> {
        let _at = durable.now_ms().await?;
        let _nonce = durable.random_u64().await?;
        maybe_pause("mid_handler");
        let path = self.effects_file.clone();
        let op = req.id;
        let receipt: std::result::Result<String, String> = durable
            .side_effect("notify", |key| async move {
                EFFECT_RUNS.fetch_add(1, Ordering::SeqCst);
                let key = key.to_string();
                let stub = match std::env::var("EFFECT_URL") {
                    Ok(url) => {
                        let k = key.clone();
                        tokio::task::spawn_blocking(move || call_stub(&url, &k, op))
                            .await
                            .map_err(|e| e.to_string())?
                            .map(|answer| format!(":{answer}"))
                            .map_err(|e| e.to_string())?
                    }
                    Err(_) => String::new(),
                };
                record_effect(&path, &key, op)
                    .map(|()| format!("receipt:{key}{stub}"))
                    .map_err(|e| e.to_string())
            })
            .await?;
        let receipt = receipt.map_err(|e| format!("effect failed: {e}"))?;
        let applied = match req.op.as_str() {
            "deposit" => req.amount,
            "withdraw" if self.balance >= req.amount => -req.amount,
            _ => 0,
        };
        self.balance += applied;
        self.history
            .push((req.id, req.op.clone(), applied, receipt.clone()));
        Ok(serde_json::json!({
            "op": req.id,
            "applied": applied,
            "balance": self.balance,
            "receipt": receipt,
        }))
    }
}

impl Actor for Bank {
    type Msg = BankMsg;
    type Reply = serde_json::Value;

    async fn handle_call(
        &mut self,
        msg: BankMsg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<serde_json::Value>, BoxError> {
        let durable = ctx
            .service::<Durability>()
            .ok_or("the bank needs a durability facet")?;
        match msg {
            BankMsg::Op(req) if std::env::var("REPLY").as_deref() == Ok("handle") => {
                let handle = ctx.reply_handle().ok_or("an op is an ask")?;
                let reply = self.apply(&durable, req).await?;
                handle.send(reply);
                maybe_pause("after_handle_reply");
                Ok(None)
            }
            BankMsg::Op(req) => self.apply(&durable, req).await.map(Some),
            BankMsg::State => Ok(Some(serde_json::json!({
                "state": serde_json::to_value(&*self)?,
                "history_len": durable.history_len().await?,
            }))),
        }
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<BankMsg> {
        match env.msg_type.as_str() {
            "op" => env.decode_json().map(BankMsg::Op),
            "state" => Ok(BankMsg::State),
            other => Err(plexspaces_core::Error::UnknownMsgType {
                msg_type: other.to_owned(),
                actor_type: "Bank".into(),
            }),
        }
    }

    fn encode_reply(
        request_type: &str,
        reply: &serde_json::Value,
    ) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn snapshot(&self) -> plexspaces_core::Result<Option<Vec<u8>>> {
        serde_json::to_vec(self)
            .map(Some)
            .map_err(|e| plexspaces_core::Error::Encode(e.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> plexspaces_core::Result<()> {
        let b: Bank =
            serde_json::from_slice(snapshot).map_err(|e| plexspaces_core::Error::Decode {
                msg_type: "snapshot".into(),
                detail: e.to_string(),
            })?;
        self.balance = b.balance;
        self.history = b.history;
        Ok(())
    }
}

async fn open_journal(spec: &str) -> std::result::Result<Arc<dyn Journal>, BoxError> {
    match spec.split_once(':') {
        #[cfg(feature = "sqlite")]
        Some(("sqlite", path)) => {
            let j = plexspaces_journal::SqliteJournal::open(
                plexspaces_journal::SqliteOptions::new(path),
            )
            .await?;
            Ok(Arc::new(j))
        }
        #[cfg(feature = "postgres")]
        Some(("postgres", schema)) => {
            let url = std::env::var("JOURNAL_PG_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let opts = plexspaces_journal::PostgresOptions::new(&url).with_schema(schema);
            let j = plexspaces_journal::PostgresJournal::open(opts).await?;
            Ok(Arc::new(j))
        }
        _ => Err(format!(
            "unsupported JOURNAL_BACKEND {spec:?} (enable the sqlite/postgres features)"
        )
        .into()),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::result::Result<(), BoxError> {
    let backend = std::env::var("JOURNAL_BACKEND")?;
    let effects_file = std::env::var("EFFECTS_FILE")?;
    let ops: u64 = std::env::var("OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let every: u64 = std::env::var("CHECKPOINT_EVERY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let journal = open_journal(&backend).await?;
    let options = DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(every),
            every: None,
            truncate: true,
        },
        fault_hook: Some(Arc::new(|p: plexspaces_journal::FaultPoint| {
            maybe_pause(p.name())
        })),
        ..DurableOptions::default()
    };
    let bank = Bank {
        effects_file,
        ..Bank::default()
    };
    let stream = StreamId::new("default", "crash", "bank-1");
    let node = Node::builder("crash").build().await?;
    let facet = DurabilityFacet::new(journal, stream, options);
    let account = node
        .start(bank, SpawnOptions::named("bank-1").facet(facet))
        .await?
        .pid();
    let timeout = std::time::Duration::from_secs(30);
    for i in 1..=ops {
        let req = Req {
            id: i,
            op: if i % 3 == 0 { "withdraw" } else { "deposit" }.into(),
            amount: if i % 3 == 0 { 15 } else { i as i64 * 10 },
        };
        let key = format!("op-{i}");
        let env = Envelope::json("op", &req)?.with_header(IDEMPOTENCY_KEY_HEADER, key.clone());
        let reply = account.ask_envelope(env, timeout).await?;
        println!("ACK {key} {}", String::from_utf8_lossy(&reply.payload));
        std::io::stdout().flush()?;
    }
    let state = account
        .ask_envelope(
            Envelope::new("state", Vec::new(), plexspaces_core::envelope::JSON),
            timeout,
        )
        .await?
        .decode_json::<serde_json::Value>()?;
    println!("STATE {}", state["state"]);
    println!("HISTORY_LEN {}", state["history_len"]);
    println!("EFFECT_RUNS {}", EFFECT_RUNS.load(Ordering::SeqCst));
    println!("DONE");
    std::io::stdout().flush()?;
    Ok(())
}
