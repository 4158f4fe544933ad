//! Temporal: a money transfer workflow of two activities with a retry policy.
//!
//! ```typescript
//! const { withdraw, deposit } = proxyActivities<typeof activities>({
//!   startToCloseTimeout: '1 minute',
//!   retry: { initialInterval: '10ms', maximumAttempts: 3 },
//! });
//! export async function transfer(t: Transfer): Promise<string> {
//!   await withdraw(t.from, t.amount);
//!   await deposit(t.to, t.amount);
//!   return `moved ${t.amount}`;
//! }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::ensure;
use parking_lot::Mutex;
use plexspaces_journal::MemoryJournal;
use plexspaces_workflow::{
    workflow_fn, ActivityFailure, ActivityOptions, EngineOptions, MemoryWorkflowStore, RetryPolicy,
    WorkflowContext, WorkflowEngine, WorkflowKey,
};
use serde::{Deserialize, Serialize};

/// The workflow's input.
#[derive(Clone, Serialize, Deserialize)]
pub struct Transfer {
    /// Debited account.
    pub from: String,
    /// Credited account.
    pub to: String,
    /// How much.
    pub amount: i64,
}

/// Balances, and how many times each activity ran.
#[derive(Default)]
pub struct Bank {
    balances: HashMap<String, i64>,
    attempts: HashMap<&'static str, u32>,
}

fn options() -> ActivityOptions {
    ActivityOptions::default().with_retry(RetryPolicy {
        initial_interval: Duration::from_millis(10),
        maximum_attempts: 3,
        ..RetryPolicy::default()
    })
}

/// Runs the transfer; the deposit fails on its first attempt and is retried.
pub async fn demo() -> anyhow::Result<String> {
    let bank = Arc::new(Mutex::new(Bank::default()));
    bank.lock()
        .balances
        .extend([("alice".into(), 100), ("bob".into(), 0)]);
    let engine = WorkflowEngine::new(
        None,
        Arc::new(MemoryJournal::new()),
        Arc::new(MemoryWorkflowStore::new()),
        EngineOptions::default(),
    );
    let b = bank.clone();
    engine.register(workflow_fn(
        "transfer",
        move |ctx: WorkflowContext, t: Transfer| {
            let bank = b.clone();
            async move {
                let (from, to, amount) = (t.from.clone(), t.to.clone(), t.amount);
                let withdraw_bank = bank.clone();
                ctx.activity("withdraw", &options(), move |_| {
                    let bank = withdraw_bank.clone();
                    let from = from.clone();
                    async move {
                        let mut bank = bank.lock();
                        *bank.attempts.entry("withdraw").or_default() += 1;
                        *bank.balances.entry(from).or_default() -= amount;
                        Ok::<_, ActivityFailure>(())
                    }
                })
                .await?;
                ctx.activity("deposit", &options(), move |_| {
                    let bank = bank.clone();
                    let to = to.clone();
                    async move {
                        let mut bank = bank.lock();
                        let attempt = bank.attempts.entry("deposit").or_default();
                        *attempt += 1;
                        if *attempt == 1 {
                            return Err(ActivityFailure::retryable(
                                "Unavailable",
                                "the bank is down",
                            ));
                        }
                        *bank.balances.entry(to).or_default() += amount;
                        Ok(())
                    }
                })
                .await?;
                Ok(format!("moved {amount}"))
            }
        },
    ));
    let key = WorkflowKey::new("default", "payments", "transfer-1");
    let transfer = Transfer {
        from: "alice".into(),
        to: "bob".into(),
        amount: 30,
    };
    engine.start(&key, "transfer", &transfer).await?;
    let out: String = engine.result(&key, Some(Duration::from_secs(30))).await?;
    ensure!(out == "moved 30");
    let bank = bank.lock();
    ensure!(
        bank.balances["alice"] == 70 && bank.balances["bob"] == 30,
        "balances"
    );
    ensure!(bank.attempts["withdraw"] == 1, "withdraw ran once");
    ensure!(bank.attempts["deposit"] == 2, "deposit retried once");
    Ok(
        "workflow: two activities, the failed deposit retried by its policy, withdraw run once"
            .into(),
    )
}
