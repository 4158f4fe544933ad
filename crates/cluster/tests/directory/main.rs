//! The activation directory's conformance suite on SQLite and a real PostgreSQL, and the
//! second line of fencing: a fenced owner cannot append to the actor's journal.

use std::sync::Arc;

use plexspaces_cluster::directory::{conformance, PostgresDirectory, SqliteDirectory};
use plexspaces_cluster::{ActorKey, Claim, Directory, Error};
use plexspaces_journal::{
    Entry, EntryKind, Journal, PostgresJournal, PostgresOptions, SqliteJournal, SqliteOptions,
    StreamId,
};
use plexspaces_test_util::{postgres_database, unique_name};

async fn sqlite(dir: &tempfile::TempDir) -> Arc<dyn Directory> {
    Arc::new(
        SqliteDirectory::open(dir.path().join("directory.db"))
            .await
            .unwrap(),
    )
}

async fn postgres(schema: &str) -> Arc<dyn Directory> {
    Arc::new(
        PostgresDirectory::open(&postgres_database(), schema)
            .await
            .unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sqlite_directory_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run_all(sqlite(&dir).await, "sqlite")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_postgres_directory_passes_the_conformance_suite() {
    let schema = unique_name("dir");
    conformance::run_all(postgres(&schema).await, "pg")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_from_separate_handles_on_one_sqlite_file_have_one_winner() {
    // Two handles on one file stand for two node processes on one host.
    let dir = tempfile::tempdir().unwrap();
    let a = sqlite(&dir).await;
    let b = sqlite(&dir).await;
    for round in 0..10 {
        let key = ActorKey::new("t", "ns", "counter", &format!("k{round}"));
        let (ra, rb) = tokio::join!(a.claim(&key, "alpha", 1), b.claim(&key, "beta", 1));
        let won = [ra.unwrap(), rb.unwrap()]
            .iter()
            .filter(|c| matches!(c, Claim::Granted(_)))
            .count();
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_postgres_schema_is_a_typed_error() {
    let e = PostgresDirectory::open(&postgres_database(), "bad; drop")
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidOption(_)), "{e}");
}

/// The owner claims and activates (journal epoch bound to its directory epoch); it is
/// declared lost and its entries reclaimed; a survivor claims and activates. The old
/// owner, still running (a partition), is refused by both lines: the directory and the
/// journal.
async fn a_fenced_owner_cannot_append(directory: Arc<dyn Directory>, journal: Arc<dyn Journal>) {
    let key = ActorKey::new("t", "ns", "counter", &unique_name("fence"));
    let stream = StreamId::new(&key.tenant, &key.namespace, &key.to_string());
    let entry = |seq| Entry::new(seq, EntryKind::Event, b"inc".to_vec());

    let Claim::Granted(old) = directory.claim(&key, "alpha", 1).await.unwrap() else {
        panic!("alpha claims first");
    };
    let old_journal = journal.acquire_epoch(&stream).await.unwrap();
    directory
        .bind_journal_epoch(&key, "alpha", old.epoch, old_journal.0)
        .await
        .unwrap();
    journal
        .append(&stream, old_journal, vec![entry(1)])
        .await
        .unwrap();

    // alpha is partitioned away: membership on the majority side reclaims its entries.
    assert_eq!(directory.reclaim("alpha", u64::MAX).await.unwrap(), 1);
    let Claim::Granted(new) = directory.claim(&key, "beta", 1).await.unwrap() else {
        panic!("beta claims the reclaimed key");
    };
    assert!(new.epoch > old.epoch);
    let new_journal = journal.acquire_epoch(&stream).await.unwrap();
    directory
        .bind_journal_epoch(&key, "beta", new.epoch, new_journal.0)
        .await
        .unwrap();

    // alpha still believes it owns the actor: both lines refuse it.
    let refused = directory
        .bind_journal_epoch(&key, "alpha", old.epoch, old_journal.0)
        .await;
    assert!(matches!(refused, Err(Error::Fenced { .. })), "{refused:?}");
    let append = journal.append(&stream, old_journal, vec![entry(2)]).await;
    assert!(
        matches!(append, Err(plexspaces_journal::Error::Fenced { .. })),
        "a stale journal epoch must not append: {append:?}"
    );
    // The new owner appends after what alpha committed.
    journal
        .append(&stream, new_journal, vec![entry(2)])
        .await
        .unwrap();
    assert_eq!(journal.next_seq(&stream).await.unwrap(), 3);
    assert_eq!(
        directory
            .lookup(&key)
            .await
            .unwrap()
            .and_then(|o| o.journal_epoch),
        Some(new_journal.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fenced_owner_cannot_append_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(SqliteOptions::new(dir.path().join("journal.db")))
        .await
        .unwrap();
    a_fenced_owner_cannot_append(sqlite(&dir).await, Arc::new(journal)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fenced_owner_cannot_append_postgres() {
    let schema = unique_name("dirj");
    let journal =
        PostgresJournal::open(PostgresOptions::new(&postgres_database()).with_schema(&schema))
            .await
            .unwrap();
    a_fenced_owner_cannot_append(postgres(&schema).await, Arc::new(journal)).await;
}
