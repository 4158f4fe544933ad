//! A durable bank account (deposit, withdraw, balance, history) that survives `kill -9`.
//!
//! Run with no arguments. The program starts itself as a child process that serves the
//! account on a SQLite journal and sends it ten operations, each with an idempotency key.
//! After the sixth acknowledgement the parent kills the child with SIGKILL, starts a new one
//! on the same journal, and the client retries every operation with the same keys. The
//! account recovers from its journal, answers the retried operations it had already done
//! with their first replies, does the rest, and the final balance and history equal those
//! of a run without the crash.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use plexspaces::prelude::*;
use plexspaces_journal::{
    CheckpointPolicy, Durability, DurabilityFacet, DurableOptions, SqliteJournal, SqliteOptions,
    StreamId, IDEMPOTENCY_KEY_HEADER,
};
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
    history: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Entry {
    op: String,
    amount: i64,
    /// Journaled time: replay sees the same value the live run saw.
    at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Deposit {
    amount: i64,
}

#[derive(Serialize, Deserialize)]
struct Withdraw {
    amount: i64,
}

#[derive(Serialize, Deserialize)]
struct Balance;

#[derive(Serialize, Deserialize)]
struct History;

#[derive(Debug, Serialize, Deserialize)]
struct Receipt {
    ok: bool,
    balance: i64,
}

impl Account {
    async fn record(&mut self, ctx: &Context<Self>, op: &str, amount: i64) -> Result<(), BoxError> {
        let durable = ctx
            .service::<Durability>()
            .ok_or("the account needs durability")?;
        let at_ms = durable.now_ms().await?;
        self.history.push(Entry {
            op: op.to_owned(),
            amount,
            at_ms,
        });
        Ok(())
    }
}

#[actor(snapshot)]
impl Account {
    #[handler("deposit")]
    async fn deposit(
        &mut self,
        ctx: &mut Context<Self>,
        msg: Deposit,
    ) -> Result<Receipt, BoxError> {
        if msg.amount <= 0 {
            return Ok(Receipt {
                ok: false,
                balance: self.balance,
            });
        }
        self.record(ctx, "deposit", msg.amount).await?;
        self.balance += msg.amount;
        Ok(Receipt {
            ok: true,
            balance: self.balance,
        })
    }

    #[handler("withdraw")]
    async fn withdraw(
        &mut self,
        ctx: &mut Context<Self>,
        msg: Withdraw,
    ) -> Result<Receipt, BoxError> {
        if msg.amount <= 0 || msg.amount > self.balance {
            // Refused, not a crash: the account stays as it was.
            return Ok(Receipt {
                ok: false,
                balance: self.balance,
            });
        }
        self.record(ctx, "withdraw", msg.amount).await?;
        self.balance -= msg.amount;
        Ok(Receipt {
            ok: true,
            balance: self.balance,
        })
    }

    #[handler("balance")]
    async fn balance(&mut self, _msg: Balance) -> Result<i64, BoxError> {
        Ok(self.balance)
    }

    #[handler("history")]
    async fn history(&mut self, _msg: History) -> Result<Vec<Entry>, BoxError> {
        Ok(self.history.clone())
    }
}

/// The ten operations of the demo: (idempotency key, msg_type, amount).
fn operations() -> Vec<(String, &'static str, i64)> {
    (1..=10)
        .map(|i| {
            let (kind, amount) = if i % 4 == 0 {
                ("withdraw", 30)
            } else {
                ("deposit", i * 10)
            };
            (format!("op-{i}"), kind, amount)
        })
        .collect()
}

/// Child: serve the account on the journal at `db` and send every operation.
async fn child(db: &str) -> anyhow::Result<()> {
    let journal = Arc::new(SqliteJournal::open(SqliteOptions::new(db)).await?);
    let node = Node::builder("bank").build().await?;
    let options = DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(4),
            every: None,
            truncate: true,
        },
        ..DurableOptions::default()
    };
    let facet = DurabilityFacet::new(journal, StreamId::new("default", "bank", "alice"), options);
    let account = node
        .start(
            Account::default(),
            SpawnOptions::named("alice").facet(facet),
        )
        .await?;
    let timeout = Duration::from_secs(10);
    for (key, kind, amount) in operations() {
        let env = Envelope::json(kind, &serde_json::json!({ "amount": amount }))?
            .with_header(IDEMPOTENCY_KEY_HEADER, key.clone());
        let reply = account.pid().ask_envelope(env, timeout).await?;
        println!("ACK {key} {}", String::from_utf8_lossy(&reply.payload));
        std::io::stdout().flush()?;
    }
    let balance = account.request(Balance).await?;
    let history = account.request(History).await?;
    println!("BALANCE {balance}");
    println!("HISTORY {}", serde_json::to_string(&history)?);
    node.shutdown().await;
    Ok(())
}

struct Outcome {
    acks: Vec<(String, String)>,
    balance: Option<i64>,
    history: Option<Vec<Entry>>,
}

/// Runs a child; with `kill_after`, SIGKILLs it after that many acknowledgements.
fn run_child(db: &std::path::Path, kill_after: Option<usize>) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("child")
        .arg(db)
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut outcome = Outcome {
        acks: Vec::new(),
        balance: None,
        history: None,
    };
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, reply) = rest.split_once(' ').context("ack line")?;
            outcome.acks.push((key.to_owned(), reply.to_owned()));
            if Some(outcome.acks.len()) == kill_after {
                child.kill()?; // SIGKILL
                break;
            }
        } else if let Some(rest) = line.strip_prefix("BALANCE ") {
            outcome.balance = Some(rest.parse()?);
        } else if let Some(rest) = line.strip_prefix("HISTORY ") {
            outcome.history = Some(serde_json::from_str(rest)?);
        }
    }
    let status = child.wait()?;
    if kill_after.is_none() && !status.success() {
        bail!("child failed: {status}");
    }
    Ok(outcome)
}

fn parent() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("plexspaces-bank-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        let reference = run_child(&dir.join("reference.db"), None)?;
        let crashed_db = dir.join("crashed.db");
        let crashed = run_child(&crashed_db, Some(6))?;
        println!(
            "killed the account with SIGKILL after {} acknowledged operations",
            crashed.acks.len()
        );
        let recovered = run_child(&crashed_db, None)?;
        for (key, reply) in &crashed.acks {
            let again = recovered
                .acks
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, r)| r);
            if again != Some(reply) {
                bail!("acknowledged {key} changed after recovery: {reply} vs {again:?}");
            }
        }
        let expected: Vec<(String, i64)> = reference
            .history
            .as_ref()
            .context("reference history")?
            .iter()
            .map(|e| (e.op.clone(), e.amount))
            .collect();
        let got: Vec<(String, i64)> = recovered
            .history
            .as_ref()
            .context("recovered history")?
            .iter()
            .map(|e| (e.op.clone(), e.amount))
            .collect();
        if recovered.balance != reference.balance || got != expected {
            bail!(
                "recovered account differs: balance {:?} vs {:?}, history {got:?} vs {expected:?}",
                recovered.balance,
                reference.balance
            );
        }
        println!(
            "bank account: balance {} with {} entries after kill -9 and recovery: OK",
            recovered.balance.unwrap_or_default(),
            got.len()
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child") => {
            let db = args.get(2).context("usage: bank_account child <db>")?;
            tokio::runtime::Runtime::new()?.block_on(child(db))
        }
        _ => parent(),
    }
}
