use std::sync::Arc;

use plexspaces_journal::{conformance, Journal, MemoryJournal};

#[tokio::test]
async fn memory_passes_conformance() {
    let mem = MemoryJournal::new();
    let factory = move || {
        let j: Arc<dyn Journal> = Arc::new(mem.clone());
        async move { Ok(j) }
    };
    conformance::run_all(&factory).await.unwrap();
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_conformance() {
    use plexspaces_journal::{SqliteJournal, SqliteOptions};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let factory = move || {
        let path = path.clone();
        async move {
            let j: Arc<dyn Journal> =
                Arc::new(SqliteJournal::open(SqliteOptions::new(path)).await?);
            Ok(j)
        }
    };
    conformance::run_all(&factory).await.unwrap();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_conformance() {
    use plexspaces_journal::PostgresJournal;
    let schema = crate::support::PgSchema::new("conf");
    let opts = schema.options();
    let factory = move || {
        let opts = opts.clone();
        async move {
            let j: Arc<dyn Journal> = Arc::new(PostgresJournal::open(opts).await?);
            Ok(j)
        }
    };
    conformance::run_all(&factory).await.unwrap();
}
