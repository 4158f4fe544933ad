//! A torn or partial snapshot write in a real SQLite journal file.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use plexspaces_journal::{
    CheckpointPolicy, Durable, DurableOptions, Error, Journal, SqliteJournal, SqliteOptions,
    StreamId,
};

use crate::support::{unique_name, Account};

fn checkpoint_every_2(truncate: bool) -> DurableOptions {
    DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(2),
            every: None,
            truncate,
        },
        ..DurableOptions::default()
    }
}

/// Runs five deposits (checkpoints after the 2nd and 4th), then tears the stored snapshot
/// the way a partial page write would: its bytes cut short and scrambled.
async fn deposits_then_tear_the_snapshot(
    truncate: bool,
) -> (
    tempfile::TempDir,
    Arc<SqliteJournal>,
    StreamId,
    Arc<AtomicU64>,
) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.db");
    let journal = Arc::new(
        SqliteJournal::open(SqliteOptions::new(&path))
            .await
            .unwrap(),
    );
    let stream = StreamId::new("t1", "bank", &unique_name("torn_snap"));
    let effects = Arc::new(AtomicU64::new(0));
    let mut d = Durable::activate(
        journal.clone(),
        stream.clone(),
        checkpoint_every_2(truncate),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    for m in ["+1", "+2", "+3", "+4", "+5"] {
        d.handle(m.as_bytes(), None).await.unwrap();
    }
    assert_eq!(d.handler().balance, 15);
    drop(d);
    let snap = journal.latest_snapshot(&stream).await.unwrap().unwrap();
    assert!(snap.is_valid() && snap.seq > 0, "a checkpoint was taken");

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let torn = sqlx::query(
        "UPDATE journal_snapshots SET data = substr(randomblob(length(data)), 1, length(data) / 2)
         WHERE actor_id = ?",
    )
    .bind(&stream.actor_id)
    .execute(&pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(torn, 1);
    pool.close().await;
    assert!(
        !journal
            .latest_snapshot(&stream)
            .await
            .unwrap()
            .unwrap()
            .is_valid(),
        "the snapshot really is torn"
    );
    (dir, journal, stream, effects)
}

/// With the covered entries kept, recovery ignores the torn snapshot and rebuilds the state
/// from the whole log; journaled side effects are not re-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_snapshot_is_ignored_when_the_log_is_complete() {
    let (_dir, journal, stream, effects) = deposits_then_tear_the_snapshot(false).await;
    assert_eq!(effects.load(Ordering::SeqCst), 5);
    let mut d = Durable::activate(
        journal.clone(),
        stream.clone(),
        checkpoint_every_2(false),
        Account::new(effects.clone()),
    )
    .await
    .expect("recovery must not fail on a torn snapshot while the log is complete");
    assert_eq!(d.handler().balance, 15, "state rebuilt from the log");
    assert_eq!(effects.load(Ordering::SeqCst), 5, "no side effect re-ran");
    d.handle(b"+6", None).await.unwrap();
    assert_eq!(d.handler().balance, 21);
    assert_eq!(effects.load(Ordering::SeqCst), 6);
}

/// Once the entries a snapshot covers are truncated, a torn snapshot cannot be repaired:
/// activation is a typed `Corrupt` error naming the snapshot, never a silent state reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_snapshot_over_a_truncated_log_is_corrupt() {
    let (_dir, journal, stream, effects) = deposits_then_tear_the_snapshot(true).await;
    let snap_seq = journal.latest_snapshot(&stream).await.unwrap().unwrap().seq;
    let activated = Durable::activate(
        journal.clone(),
        stream.clone(),
        checkpoint_every_2(true),
        Account::new(effects),
    )
    .await;
    let Err(err) = activated else {
        panic!("a torn snapshot over a truncated log must not activate");
    };
    assert!(
        matches!(&err, Error::Corrupt { seq, .. } if *seq == snap_seq),
        "{err:?}"
    );
}
