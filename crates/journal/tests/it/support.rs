//! Helpers: unique names, per-test PostgreSQL schemas, a test bank handler.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use plexspaces_journal::{DurableExecution, DurableHandler, Result};

/// The test PostgreSQL (`PLEXSPACES_TEST_POSTGRES_URL`), its database created if missing.
#[cfg(feature = "postgres")]
pub fn pg_url() -> String {
    plexspaces_test_util::postgres_database()
}

pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A PostgreSQL schema unique to one test, dropped (CASCADE) when the guard drops.
#[cfg(feature = "postgres")]
pub struct PgSchema {
    pub name: String,
}

#[cfg(feature = "postgres")]
impl PgSchema {
    pub fn new(prefix: &str) -> Self {
        Self {
            name: unique_name(&format!("pj_{prefix}")),
        }
    }

    pub fn options(&self) -> plexspaces_journal::PostgresOptions {
        plexspaces_journal::PostgresOptions::new(&pg_url()).with_schema(&self.name)
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&pg_url())
            .await
            .expect("connect to postgres")
    }
}

#[cfg(feature = "postgres")]
impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(pool) = sqlx::PgPool::connect(&pg_url()).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// A tiny durable account: "+n" deposits, "-n" withdraws if covered. Every message runs one
/// side effect named `effect_name` (counted in `effects`), reads the clock and a random value.
#[derive(Debug, Default, Clone)]
pub struct Account {
    pub balance: i64,
    pub log: Vec<String>,
    pub effects: Arc<AtomicU64>,
    pub effect_name: String,
}

impl Account {
    pub fn new(effects: Arc<AtomicU64>) -> Self {
        Self {
            effects,
            effect_name: "audit".into(),
            ..Self::default()
        }
    }
}

#[async_trait::async_trait]
impl DurableHandler for Account {
    async fn handle(&mut self, exec: &mut DurableExecution, message: &[u8]) -> Result<Vec<u8>> {
        let text = String::from_utf8_lossy(message).to_string();
        let now = exec.now()?;
        let rnd = exec.random_u64()?;
        let effects = self.effects.clone();
        let name = self.effect_name.clone();
        let receipt: String = exec
            .side_effect(&name, |key| async move {
                effects.fetch_add(1, Ordering::SeqCst);
                format!("{key}")
            })
            .await?;
        let n: i64 = text[1..].parse().unwrap_or(0);
        match &text[..1] {
            "+" => self.balance += n,
            "-" if self.balance >= n => self.balance -= n,
            _ => {}
        }
        self.log.push(format!("{text}:{receipt}:{rnd}:{now}"));
        Ok(format!("{}|{receipt}|{rnd}", self.balance).into_bytes())
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(&(self.balance, &self.log))?)
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        let (b, l): (i64, Vec<String>) = serde_json::from_slice(snapshot)?;
        self.balance = b;
        self.log = l;
        Ok(())
    }
}
