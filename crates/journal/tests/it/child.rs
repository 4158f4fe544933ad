//! Runs `journal-crash-child` (a durable bank on SQLite or PostgreSQL) to its end or to a
//! named pause point where it is killed with SIGKILL (`Child::kill`), and reads what it
//! printed and the effects it recorded.

#![cfg(any(feature = "sqlite", feature = "postgres"))]
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

pub const OPS: u64 = 12;

#[derive(Debug, Default)]
pub struct Run {
    pub acks: BTreeMap<String, String>,
    pub state: Option<String>,
    pub paused: Option<String>,
}

/// Runs the child to its end, or until it reports `PAUSED` at `pause` and is killed with
/// SIGKILL there. `env` adds or overrides variables (e.g. `CHECKPOINT_EVERY`, `EFFECT_URL`).
pub fn run_child(
    backend: &str,
    effects: &Path,
    pause: Option<&str>,
    reply: Reply,
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_journal-crash-child"));
    match reply {
        Reply::Returned => cmd.env_remove("REPLY"),
        Reply::Handle => cmd.env("REPLY", "handle"),
    };
    #[cfg(feature = "postgres")]
    cmd.env("JOURNAL_PG_URL", crate::support::pg_url());
    cmd.env_remove("EFFECT_URL");
    cmd.env("JOURNAL_BACKEND", backend)
        .env("EFFECTS_FILE", effects)
        .env("OPS", OPS.to_string())
        .env("CHECKPOINT_EVERY", "4")
        .env_remove("PAUSE_AT")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(p) = pause {
        cmd.env("PAUSE_AT", p);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn crash child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut run = Run::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        if let Some(rest) = line.strip_prefix("ACK ") {
            let (key, reply) = rest.split_once(' ').expect("ack line");
            run.acks.insert(key.to_owned(), reply.to_owned());
        } else if let Some(rest) = line.strip_prefix("STATE ") {
            run.state = Some(rest.to_owned());
        } else if let Some(point) = line.strip_prefix("PAUSED ") {
            run.paused = Some(point.to_owned());
            child.kill().expect("kill -9 the child"); // SIGKILL on unix
            break;
        }
    }
    let status = child.wait().expect("wait for child");
    if run.paused.is_none() {
        assert!(status.success(), "child failed: {status:?}");
        assert!(
            run.state.is_some(),
            "child finished without printing its state"
        );
    } else {
        assert!(!status.success(), "killed child must not exit cleanly");
    }
    run
}

/// Effect executions per idempotency key, and the op of each key.
pub fn effects(path: &Path) -> (HashMap<String, u32>, HashMap<String, u64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = HashMap::new();
    let mut ops = HashMap::new();
    for line in text.lines() {
        let (key, op) = line.split_once('\t').expect("effect line");
        *counts.entry(key.to_owned()).or_insert(0) += 1;
        ops.insert(key.to_owned(), op.parse().expect("op id"));
    }
    (counts, ops)
}

/// How the bank answers: returns its reply, or sends it through `ctx.reply_handle()`
/// before its handler returns.
#[derive(Debug, Clone, Copy)]
pub enum Reply {
    Returned,
    Handle,
}
