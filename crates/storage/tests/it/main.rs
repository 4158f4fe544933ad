//! Integration tests: the key-value, lock and blob conformance suites on every backend
//! against the real servers (PostgreSQL and Redis on 127.0.0.1), plus the facets.

use std::sync::Arc;

use plexspaces_storage::conformance;
use plexspaces_storage::{BlobBackend, Blobs, MemoryKeyValue, MemoryLocks};

mod facets;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_key_value_conformance() {
    conformance::key_value(Arc::new(MemoryKeyValue::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_locks_conformance() {
    conformance::locks(
        Arc::new(MemoryLocks::new()),
        Arc::new(MemoryKeyValue::new()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_blob_conformance() {
    conformance::blobs(&Blobs::memory()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_filesystem_blob_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Blobs::open(&BlobBackend::Local {
        root: dir.path().join("blobs"),
    })
    .expect("open");
    conformance::blobs(&blobs).await;
}

#[test]
fn s3_is_reported_unsupported() {
    let err = Blobs::open(&BlobBackend::S3 {
        bucket: "b".into(),
        endpoint: "http://127.0.0.1:1".into(),
    })
    .expect_err("not built");
    assert!(matches!(err, plexspaces_storage::Error::Unsupported(_)));
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use plexspaces_storage::{SqlOptions, SqlStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqlStore::connect(SqlOptions::sqlite(dir.path().join("kv.db")))
            .await
            .expect("open");
        let store = Arc::new(store);
        conformance::key_value(store.clone()).await;
        conformance::locks(store.clone(), store.clone()).await;
        // a second pool over the same file sees the same data (as a second process would)
        let again = SqlStore::connect(SqlOptions::sqlite(dir.path().join("kv.db")))
            .await
            .expect("reopen");
        let s = conformance::fresh_scope("t");
        use plexspaces_storage::{KeyValue, PutOptions};
        store
            .put(&s, "k", b"v", PutOptions::default())
            .await
            .expect("put");
        assert_eq!(
            again.get(&s, "k").await.expect("get").map(|v| v.value),
            Some(b"v".to_vec())
        );
        assert!(store.purge_expired().await.is_ok());
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use plexspaces_storage::{SqlOptions, SqlStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_conformance() {
        let schema = plexspaces_test_util::unique_name("storage_it");
        let mut options = SqlOptions::postgres(&plexspaces_test_util::postgres_database());
        options.schema = Some(schema.clone());
        let store = Arc::new(SqlStore::connect(options).await.expect("connect"));
        let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
            conformance::key_value(store.clone()).await;
            conformance::locks(store.clone(), store.clone()).await;
        }))
        .await;
        store.close().await;
        let pool = sqlx::PgPool::connect(&plexspaces_test_util::postgres_database())
            .await
            .expect("connect for cleanup");
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .execute(&pool)
            .await
            .expect("drop schema");
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

#[cfg(feature = "redis")]
mod redis_backend {
    use super::*;
    use plexspaces_storage::{RedisOptions, RedisStore};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_conformance() {
        let prefix = plexspaces_test_util::unique_name("storage_it");
        let mut options = RedisOptions::new(&plexspaces_test_util::redis_url());
        options.prefix = prefix.clone();
        let store = Arc::new(RedisStore::connect(options).await.expect("connect"));
        let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(async {
            conformance::key_value(store.clone()).await;
            conformance::locks(store.clone(), store.clone()).await;
        }))
        .await;
        let client = redis::Client::open(plexspaces_test_util::redis_url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect for cleanup");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}
