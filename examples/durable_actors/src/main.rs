//! A durable actor: every acknowledged message survives `kill -9`.
//!
//! A `Tally` actor adds numbers. It is made durable by attaching a `DurabilityFacet` on a
//! SQLite journal: each message is journaled before its reply leaves, and a snapshot is
//! taken every 10 messages. The program starts itself as a child process that serves the
//! tally and adds 1, 2, 3, ... printing each acknowledgement; after the 25th the parent kills
//! the child with SIGKILL. A second child opens the same journal: the tally recovers (latest
//! snapshot, then replay of the messages after it) and reports its total and count.
//!
//! Check: the recovered state holds every acknowledged add (an add that was in flight at
//! the kill may be there too, but nothing else). Unlike `bank_account`, no request is
//! retried: this shows recovery alone.
//!
//! Prints `durable actors: 25 acknowledged adds survived kill -9 (total <t>): OK`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, ensure, Context as _};
use plexspaces::prelude::*;
use plexspaces_journal::{
    CheckpointPolicy, DurabilityFacet, DurableOptions, SqliteJournal, SqliteOptions, StreamId,
};
use serde::{Deserialize, Serialize};

const KILL_AFTER: u64 = 25;

#[derive(Default, Serialize, Deserialize)]
struct Tally {
    total: u64,
    count: u64,
}

#[derive(Serialize, Deserialize)]
struct Add {
    n: u64,
}

#[derive(Serialize, Deserialize)]
struct Read;

#[derive(Debug, Serialize, Deserialize)]
struct State {
    total: u64,
    count: u64,
}

#[actor(snapshot)]
impl Tally {
    #[handler("add")]
    async fn add(&mut self, msg: Add) -> Result<State, BoxError> {
        self.total += msg.n;
        self.count += 1;
        Ok(State {
            total: self.total,
            count: self.count,
        })
    }

    #[handler("read")]
    async fn read(&mut self, _msg: Read) -> Result<State, BoxError> {
        Ok(State {
            total: self.total,
            count: self.count,
        })
    }
}

/// Child: serve the tally on the journal at `db`; with `adds`, add 1..=1000 (the parent
/// kills it long before the end), else only report the recovered state.
async fn child(db: &str, adds: bool) -> anyhow::Result<()> {
    let journal = Arc::new(SqliteJournal::open(SqliteOptions::new(db)).await?);
    let node = Node::builder("durable").build().await?;
    let options = DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(10),
            every: None,
            truncate: true,
        },
        ..DurableOptions::default()
    };
    let facet = DurabilityFacet::new(journal, StreamId::new("default", "demo", "tally"), options);
    let tally = node
        .start(Tally::default(), SpawnOptions::named("tally").facet(facet))
        .await?;
    let state = tally.request(Read).await?;
    println!("RECOVERED {} {}", state.total, state.count);
    if adds {
        for n in 1..=1000 {
            let state = tally.request(Add { n }).await?;
            println!("ACK {n} {} {}", state.total, state.count);
            std::io::stdout().flush()?;
        }
    }
    node.shutdown().await;
    Ok(())
}

/// Runs a child; returns its output lines. With `kill_after`, SIGKILLs it after that many
/// acknowledgements.
fn run_child(
    db: &std::path::Path,
    adds: bool,
    kill_after: Option<u64>,
) -> anyhow::Result<Vec<String>> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("child")
        .arg(db)
        .arg(if adds { "adds" } else { "read" })
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = Vec::new();
    let mut acks = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let is_ack = line.starts_with("ACK ");
        lines.push(line);
        if is_ack {
            acks += 1;
            if Some(acks) == kill_after {
                child.kill()?; // SIGKILL
                break;
            }
        }
    }
    let status = child.wait()?;
    if kill_after.is_none() && !status.success() {
        bail!("child failed: {status}");
    }
    Ok(lines)
}

fn numbers(line: &str, prefix: &str) -> anyhow::Result<Vec<u64>> {
    line.strip_prefix(prefix)
        .context("line prefix")?
        .split(' ')
        .map(|n| n.parse().context("a number"))
        .collect()
}

fn parent() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("plexspaces-durable-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("tally.db");
    let result = (|| {
        let first = run_child(&db, true, Some(KILL_AFTER))?;
        let acked: Vec<Vec<u64>> = first
            .iter()
            .filter(|l| l.starts_with("ACK "))
            .map(|l| numbers(l, "ACK "))
            .collect::<anyhow::Result<_>>()?;
        ensure!(acked.len() as u64 == KILL_AFTER, "the child stopped early");
        let acked_total: u64 = (1..=KILL_AFTER).sum();
        println!("killed the tally with SIGKILL after {KILL_AFTER} acknowledged adds (total {acked_total})");

        let second = run_child(&db, false, None)?;
        let recovered = second
            .iter()
            .find(|l| l.starts_with("RECOVERED "))
            .context("the recovered state")
            .and_then(|l| numbers(l, "RECOVERED "))?;
        let (total, count) = (recovered[0], recovered[1]);
        println!("recovered: total {total} over {count} adds");
        // Every acknowledged add is there; at most the one in flight at the kill is added.
        let in_flight = KILL_AFTER + 1;
        ensure!(
            (total, count) == (acked_total, KILL_AFTER)
                || (total, count) == (acked_total + in_flight, KILL_AFTER + 1),
            "recovered ({total}, {count}) but {KILL_AFTER} adds totalling {acked_total} were acknowledged"
        );
        println!(
            "durable actors: {KILL_AFTER} acknowledged adds survived kill -9 (total {total}): OK"
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
            let db = args
                .get(2)
                .context("usage: durable_actors child <db> adds|read")?;
            let adds = args.get(3).map(String::as_str) == Some("adds");
            tokio::runtime::Runtime::new()?.block_on(child(db, adds))
        }
        _ => parent(),
    }
}
