//! Power loss under the SQLite journal: the child process runs the journal on
//! `plexspaces-powerloss-vfs`, a SQLite VFS that keeps every unsynced write in a volatile
//! cache (shared by the process's handles on a file, like a page cache). The child is
//! stopped inside SQLite's I/O and killed with SIGKILL, which drops exactly the writes a
//! power cut would: everything not fsynced. The parent reopens the files with the plain VFS:
//! nothing acknowledged is lost, every entry verifies, and the state is that of the
//! acknowledged prefix (plus at most the one message that was committing).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use plexspaces_journal::{
    CheckpointPolicy, Durable, DurableOptions, Journal, SqliteJournal, SqliteOptions, StreamId,
};
use plexspaces_powerloss_vfs::Pause;

use crate::support::Account;

const DB: &str = "PLEXSPACES_POWERLOSS_DB";
const PAUSE: &str = "PLEXSPACES_POWERLOSS_PAUSE";

fn stream() -> StreamId {
    StreamId::new("t1", "bank", "powerloss")
}

fn options() -> DurableOptions {
    DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(7),
            every: None,
            truncate: true,
        },
        ..DurableOptions::default()
    }
}

/// Run as a child process by the tests below: deposits `+1`, `+2`, ... with keys `op-<i>`
/// through the power-loss VFS, printing `ACK op-<i> <reply>` after each, until the VFS
/// pauses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by the power-loss tests"]
async fn powerloss_child() {
    let (Ok(db), Ok(pause)) = (std::env::var(DB), std::env::var(PAUSE)) else {
        return;
    };
    plexspaces_powerloss_vfs::register().expect("register the VFS");
    let (point, n) = pause.split_once(':').expect("point:n");
    let n: u64 = n.parse().expect("n");
    plexspaces_powerloss_vfs::set_pause(match point {
        "wal_write" => Pause::AfterWalWrites(n),
        "mid_sync" => Pause::MidSync(n),
        other => panic!("unknown pause {other}"),
    });
    let mut opts = SqliteOptions::new(&db);
    opts.vfs = Some(plexspaces_powerloss_vfs::NAME.into());
    let journal = Arc::new(SqliteJournal::open(opts).await.expect("open"));
    let effects = Arc::new(AtomicU64::new(0));
    let mut d = Durable::activate(journal, stream(), options(), Account::new(effects))
        .await
        .expect("activate");
    use std::io::Write;
    for i in 1..=2_000u64 {
        let reply = d
            .handle(format!("+{i}").as_bytes(), Some(&format!("op-{i}")))
            .await
            .expect("handle");
        println!("ACK op-{i} {}", String::from_utf8_lossy(&reply));
        std::io::stdout().flush().expect("flush");
    }
    println!("DONE");
}

async fn power_cut(pause: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "powerloss::powerloss_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DB, &db)
        .env(PAUSE, pause)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut acks = BTreeMap::new();
    let mut dropped = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("child output");
        if let Some(rest) = line.split("ACK ").nth(1) {
            let (key, reply) = rest.split_once(' ').expect("ack line");
            let i: u64 = key.trim_start_matches("op-").parse().expect("op number");
            acks.insert(i, reply.to_owned());
        } else if let Some(rest) = line.split("PAUSED ").nth(1) {
            let pending = rest.split("pending=").nth(1).expect("pending bytes");
            dropped = Some(pending.trim().parse::<u64>().expect("bytes"));
            child.kill().expect("SIGKILL: the power cut");
            break;
        } else if line.contains("DONE") {
            break;
        }
    }
    let status = child.wait().expect("reap");
    let dropped = dropped.expect("the child paused inside SQLite's I/O");
    assert!(!status.success());
    assert!(dropped > 0, "unsynced writes were dropped by the cut");
    let acked = acks.len() as u64;
    assert!(
        acked >= 5,
        "enough operations were acknowledged first: {acked}"
    );
    assert_eq!(
        acks.keys().copied().collect::<Vec<_>>(),
        (1..=acked).collect::<Vec<_>>()
    );

    // after the cut: the plain VFS on what reached the disk
    let journal = Arc::new(SqliteJournal::open(SqliteOptions::new(&db)).await.unwrap());
    let next = journal.next_seq(&stream()).await.unwrap();
    let entries = journal.read(&stream(), 1, next).await.unwrap();
    assert!(
        entries.iter().all(|e| e.is_valid()),
        "every stored entry verifies"
    );
    let effects = Arc::new(AtomicU64::new(0));
    let mut d = Durable::activate(
        journal.clone(),
        stream(),
        options(),
        Account::new(effects.clone()),
    )
    .await
    .expect("recovery after the power cut");
    let balance = d.handler().balance;
    let prefix = |k: u64| (k * (k + 1) / 2) as i64;
    assert!(
        balance == prefix(acked) || balance == prefix(acked + 1),
        "state is the acknowledged prefix (plus at most the committing message): {balance} \
         after {acked} acks"
    );
    for (i, reply) in &acks {
        let again = d
            .handle(b"+1000000", Some(&format!("op-{i}")))
            .await
            .unwrap();
        assert_eq!(
            &String::from_utf8(again).unwrap(),
            reply,
            "acknowledged op-{i} lost or changed"
        );
    }
    assert_eq!(
        effects.load(Ordering::SeqCst),
        0,
        "no recorded effect re-ran"
    );
    let before = d.handler().balance;
    d.handle(b"+5", Some("after-cut")).await.unwrap();
    assert_eq!(d.handler().balance, before + 5);
    eprintln!("power cut at {pause}: {acked} acknowledged, {dropped} unsynced bytes dropped");
}

/// The cut drops the cached WAL frames of a commit in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_power_cut_with_unsynced_wal_writes_loses_nothing_acknowledged() {
    power_cut("wal_write:400").await;
}

/// The cut lands in a WAL sync after half of the commit's frames reached the file: a torn
/// commit on disk, which recovery drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_power_cut_mid_sync_leaves_a_torn_commit_that_recovery_drops() {
    power_cut("mid_sync:60").await;
}
