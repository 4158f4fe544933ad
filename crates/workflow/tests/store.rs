//! One conformance suite for every `WorkflowStore`: in memory, SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use plexspaces_workflow::{
    Failure, InboxKind, MemoryWorkflowStore, NewInboxItem, WorkflowError, WorkflowKey,
    WorkflowRecord, WorkflowStatus, WorkflowStore,
};
use serde_json::{json, Value};

fn record(tenant: &str, namespace: &str, id: &str, created_ms: u64) -> WorkflowRecord {
    WorkflowRecord {
        key: WorkflowKey::new(tenant, namespace, id),
        workflow_type: "order".into(),
        version: 3,
        run: 1,
        status: WorkflowStatus::Running,
        input: json!({"order": id, "items": [1, 2, 3]}),
        result: None,
        failure: None,
        queries: None,
        parent: None,
        created_ms,
        updated_ms: created_ms,
    }
}

fn item<'a>(name: &'a str, payload: &'a Value, dedupe_id: Option<&'a str>) -> NewInboxItem<'a> {
    NewInboxItem {
        kind: InboxKind::Signal,
        name,
        payload,
        dedupe_id,
    }
}

fn ids(records: &[WorkflowRecord]) -> Vec<String> {
    records.iter().map(|r| r.key.workflow_id.clone()).collect()
}

/// Every test of the suite, on a store nothing else uses.
async fn run_all(store: Arc<dyn WorkflowStore>) {
    conformance(store.as_ref()).await;
    concurrent_pushes(store).await;
}

async fn conformance(store: &dyn WorkflowStore) {
    records(store).await;
    listing(store).await;
    unfinished(store).await;
    inbox(store).await;
    json_round_trip(store).await;
}

async fn records(store: &dyn WorkflowStore) {
    let mut first = record("rec", "ns", "wf-1", 1_000);
    first.parent = Some("parent-7".into());
    assert_eq!(store.insert_if_absent(&first).await.expect("insert"), None);
    assert_eq!(
        store.get(&first.key).await.expect("get"),
        Some(first.clone())
    );

    // A second insert with the same key returns the existing record and changes nothing.
    let mut second = record("rec", "ns", "wf-1", 2_000);
    second.workflow_type = "other".into();
    second.input = json!("different");
    assert_eq!(
        store.insert_if_absent(&second).await.expect("insert again"),
        Some(first.clone())
    );
    assert_eq!(
        store.get(&first.key).await.expect("get"),
        Some(first.clone())
    );

    // Missing keys: other id, other namespace, other tenant.
    for key in [
        WorkflowKey::new("rec", "ns", "wf-2"),
        WorkflowKey::new("rec", "ns2", "wf-1"),
        WorkflowKey::new("rec2", "ns", "wf-1"),
    ] {
        assert_eq!(store.get(&key).await.expect("get missing"), None, "{key}");
    }

    // Update: status, result, run and the rest of the mutable fields.
    let mut done = first.clone();
    done.run = 2;
    done.version = 4;
    done.status = WorkflowStatus::Completed;
    done.input = json!({"continued": true});
    done.result = Some(json!({"total": 42}));
    done.queries = Some(json!({"progress": 100}));
    done.updated_ms = 5_000;
    store.update(&done).await.expect("update");
    assert_eq!(
        store.get(&first.key).await.expect("get"),
        Some(done.clone())
    );

    // Failure round-trips, and fields can go back to null.
    let mut failed = done.clone();
    failed.status = WorkflowStatus::Failed;
    failed.result = None;
    failed.queries = None;
    failed.failure = Some(Failure {
        kind: "InsufficientFunds".into(),
        message: "balance 3 < 10".into(),
    });
    failed.updated_ms = 6_000;
    store.update(&failed).await.expect("update to failed");
    assert_eq!(store.get(&first.key).await.expect("get"), Some(failed));

    // Update of a missing key.
    let missing = record("rec", "ns", "nobody", 1);
    match store.update(&missing).await {
        Err(WorkflowError::NotFound(what)) => assert!(what.contains("nobody"), "{what}"),
        other => panic!("update of a missing record: {other:?}"),
    }
    assert_eq!(store.get(&missing.key).await.expect("get"), None);
}

async fn listing(store: &dyn WorkflowStore) {
    let t = "lst";
    let mut rows = vec![
        record(t, "a", "w1", 100),
        record(t, "a", "w2", 300),
        record(t, "b", "w3", 200),
        record(t, "a", "w5", 250),
        record(t, "a", "w4", 250),
        record("lst-other", "a", "x1", 999),
    ];
    rows[1].status = WorkflowStatus::Completed;
    rows[2].status = WorkflowStatus::Suspended;
    for r in &rows {
        assert_eq!(store.insert_if_absent(r).await.expect("insert"), None);
    }

    // Whole tenant: newest first, ties by workflow id.
    let all = store.list(t, None, None, 100).await.expect("list");
    assert_eq!(ids(&all), ["w2", "w4", "w5", "w3", "w1"]);
    assert!(all.iter().all(|r| r.key.tenant == t));
    assert_eq!(all[0], rows[1]);

    // Limit.
    let two = store.list(t, None, None, 2).await.expect("list 2");
    assert_eq!(ids(&two), ["w2", "w4"]);
    assert!(store
        .list(t, None, None, 0)
        .await
        .expect("list 0")
        .is_empty());

    // Namespace.
    let a = store.list(t, Some("a"), None, 100).await.expect("list a");
    assert_eq!(ids(&a), ["w2", "w4", "w5", "w1"]);
    let b = store.list(t, Some("b"), None, 100).await.expect("list b");
    assert_eq!(ids(&b), ["w3"]);
    assert!(store
        .list(t, Some("zzz"), None, 100)
        .await
        .expect("list none")
        .is_empty());

    // Status, alone and with a namespace.
    let running = store
        .list(t, None, Some(WorkflowStatus::Running), 100)
        .await
        .expect("list running");
    assert_eq!(ids(&running), ["w4", "w5", "w1"]);
    let suspended_a = store
        .list(t, Some("a"), Some(WorkflowStatus::Suspended), 100)
        .await
        .expect("list suspended in a");
    assert!(suspended_a.is_empty());
    let suspended_b = store
        .list(t, Some("b"), Some(WorkflowStatus::Suspended), 100)
        .await
        .expect("list suspended in b");
    assert_eq!(ids(&suspended_b), ["w3"]);
    let running_a_1 = store
        .list(t, Some("a"), Some(WorkflowStatus::Running), 1)
        .await
        .expect("list running in a, 1");
    assert_eq!(ids(&running_a_1), ["w4"]);

    // Other tenants.
    let other = store
        .list("lst-other", None, None, 100)
        .await
        .expect("list");
    assert_eq!(ids(&other), ["x1"]);
    assert!(store
        .list("nobody", None, None, 100)
        .await
        .expect("list")
        .is_empty());
}

/// Runs after `records` and `listing`: the store holds exactly their records.
async fn unfinished(store: &dyn WorkflowStore) {
    let mut cancelled = record("unf", "n", "cancelled", 10);
    cancelled.status = WorkflowStatus::Cancelled;
    let mut suspended = record("unf-2", "n", "suspended", 11);
    suspended.status = WorkflowStatus::Suspended;
    for r in [&cancelled, &suspended, &record("unf-3", "n", "running", 12)] {
        store.insert_if_absent(r).await.expect("insert");
    }
    let mut got: Vec<(String, String, WorkflowStatus)> = store
        .list_unfinished()
        .await
        .expect("list_unfinished")
        .into_iter()
        .map(|r| (r.key.tenant, r.key.workflow_id, r.status))
        .collect();
    got.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let expected = [
        ("lst", "w1", WorkflowStatus::Running),
        ("lst", "w3", WorkflowStatus::Suspended),
        ("lst", "w4", WorkflowStatus::Running),
        ("lst", "w5", WorkflowStatus::Running),
        ("lst-other", "x1", WorkflowStatus::Running),
        ("unf-2", "suspended", WorkflowStatus::Suspended),
        ("unf-3", "running", WorkflowStatus::Running),
    ]
    .map(|(t, id, s)| (t.to_owned(), id.to_owned(), s));
    assert_eq!(got, expected);
}

async fn inbox(store: &dyn WorkflowStore) {
    let a = WorkflowKey::new("inb", "ns", "a");
    let b = WorkflowKey::new("inb", "ns", "b");
    let empty = json!({});

    assert!(store.read_inbox(&a, 0).await.expect("read").is_empty());
    assert_eq!(store.inbox_item(&a, 1).await.expect("item"), None);

    let p1 = json!({"n": 1});
    let p2 = json!({"n": 2});
    let p3 = json!([3]);
    let first = store
        .push_inbox(&a, item("s1", &p1, None))
        .await
        .expect("push 1");
    assert_eq!(first.seq, 1);
    assert_eq!(first.kind, InboxKind::Signal);
    assert_eq!(first.name, "s1");
    assert_eq!(first.payload, p1);
    assert_eq!(first.dedupe_id, None);
    assert_eq!(first.result, None);

    // Seqs are per workflow.
    let other = store
        .push_inbox(&b, item("elsewhere", &empty, None))
        .await
        .expect("push b");
    assert_eq!(other.seq, 1);

    let update = store
        .push_inbox(
            &a,
            NewInboxItem {
                kind: InboxKind::Update,
                name: "add",
                payload: &p2,
                dedupe_id: Some("upd-1"),
            },
        )
        .await
        .expect("push 2");
    assert_eq!(update.seq, 2);
    assert_eq!(update.kind, InboxKind::Update);
    assert_eq!(update.dedupe_id.as_deref(), Some("upd-1"));

    let cancel = store
        .push_inbox(
            &a,
            NewInboxItem {
                kind: InboxKind::Cancel,
                name: "user asked",
                payload: &p3,
                dedupe_id: None,
            },
        )
        .await
        .expect("push 3");
    assert_eq!(cancel.seq, 3);
    assert_eq!(cancel.kind, InboxKind::Cancel);

    let b2 = store
        .push_inbox(&b, item("elsewhere", &empty, None))
        .await
        .expect("push b 2");
    assert_eq!(b2.seq, 2);

    // Dedupe: the original comes back and nothing new is stored, whatever else differs.
    let other_payload = json!("ignored");
    let again = store
        .push_inbox(
            &a,
            NewInboxItem {
                kind: InboxKind::Signal,
                name: "not add",
                payload: &other_payload,
                dedupe_id: Some("upd-1"),
            },
        )
        .await
        .expect("push duplicate");
    assert_eq!(again, update);
    let all = store.read_inbox(&a, 0).await.expect("read all");
    assert_eq!(all, vec![first.clone(), update.clone(), cancel.clone()]);

    // The same dedupe id in another workflow is another item.
    let b3 = store
        .push_inbox(&b, item("elsewhere", &empty, Some("upd-1")))
        .await
        .expect("push b dedupe");
    assert_eq!(b3.seq, 3);
    // Items without a dedupe id are never deduplicated.
    let b4 = store
        .push_inbox(&b, item("elsewhere", &empty, None))
        .await
        .expect("push b 4");
    assert_eq!(b4.seq, 4);
    let b_seqs: Vec<u64> = store
        .read_inbox(&b, 0)
        .await
        .expect("read b")
        .iter()
        .map(|i| i.seq)
        .collect();
    assert_eq!(b_seqs, [1, 2, 3, 4]);

    // read_inbox(after).
    assert_eq!(
        store.read_inbox(&a, 1).await.expect("read after 1"),
        vec![update.clone(), cancel.clone()]
    );
    assert_eq!(
        store.read_inbox(&a, 2).await.expect("read after 2"),
        vec![cancel.clone()]
    );
    assert!(store.read_inbox(&a, 3).await.expect("after 3").is_empty());

    // inbox_item.
    assert_eq!(
        store.inbox_item(&a, 2).await.expect("item 2"),
        Some(update.clone())
    );
    assert_eq!(store.inbox_item(&a, 4).await.expect("item 4"), None);
    assert_eq!(store.inbox_item(&a, 0).await.expect("item 0"), None);
    assert_eq!(
        store.inbox_item(&a, u64::MAX).await.expect("item max"),
        None
    );

    // set_inbox_result: the first answer wins.
    store
        .set_inbox_result(&a, 2, &json!({"ok": 1}))
        .await
        .expect("set result");
    store
        .set_inbox_result(&a, 2, &json!({"ok": 2}))
        .await
        .expect("set result again");
    let answered = store
        .inbox_item(&a, 2)
        .await
        .expect("item 2")
        .expect("present");
    assert_eq!(answered.result, Some(json!({"ok": 1})));
    assert_eq!(answered.payload, p2);
    // Other items are untouched, and a missing seq is ignored.
    assert_eq!(
        store.inbox_item(&a, 1).await.expect("item 1"),
        Some(first.clone())
    );
    store
        .set_inbox_result(&a, 99, &json!(1))
        .await
        .expect("set result of a missing item");
    assert_eq!(store.inbox_item(&a, 99).await.expect("item 99"), None);
    // A dedupe hit after the answer returns the answered item.
    let again = store
        .push_inbox(&a, item("add", &p2, Some("upd-1")))
        .await
        .expect("push duplicate");
    assert_eq!(again, answered);
}

async fn json_round_trip(store: &dyn WorkflowStore) {
    let tricky = json!({
        "nested": {"deeper": {"list": [1, -2, 2.5, true, null, {"k": "v"}], "empty": {}}},
        "unicode": "Grüße, 日本語, emoji 🎉, rtl עברית",
        "escapes": "quote \" backslash \\ newline \n tab \t nul \u{0} end",
        "big": u64::MAX,
        "negative": i64::MIN,
        "": "empty key",
    });
    let mut r = record("json", "ns", "wf-ü-🎉", 7);
    r.input = tricky.clone();
    r.result = Some(json!(["a", {"b": tricky.clone()}]));
    r.queries = Some(json!(null));
    r.status = WorkflowStatus::Completed;
    r.failure = Some(Failure {
        kind: "kind ü".into(),
        message: "line 1\nline 2 🎉".into(),
    });
    store.insert_if_absent(&r).await.expect("insert");
    assert_eq!(store.get(&r.key).await.expect("get"), Some(r.clone()));

    let pushed = store
        .push_inbox(&r.key, item("sïgnal 🎉", &tricky, Some("dédupe")))
        .await
        .expect("push");
    let read = store.read_inbox(&r.key, 0).await.expect("read");
    assert_eq!(read, vec![pushed.clone()]);
    assert_eq!(read[0].payload, tricky);
    assert_eq!(read[0].name, "sïgnal 🎉");
    store
        .set_inbox_result(&r.key, pushed.seq, &tricky)
        .await
        .expect("set result");
    assert_eq!(
        store
            .inbox_item(&r.key, pushed.seq)
            .await
            .expect("item")
            .and_then(|i| i.result),
        Some(tricky)
    );
}

async fn concurrent_pushes(store: Arc<dyn WorkflowStore>) {
    let key = WorkflowKey::new("conc", "ns", "busy");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let payload = json!({ "i": i });
            store
                .push_inbox(&key, item("sig", &payload, None))
                .await
                .map(|stored| (i, stored))
        }));
    }
    let mut seqs = BTreeSet::new();
    for task in tasks {
        let (i, stored) = task.await.expect("task").expect("push");
        assert_eq!(stored.payload, json!({ "i": i }));
        assert!(seqs.insert(stored.seq), "seq {} given twice", stored.seq);
    }
    assert_eq!(seqs, (1..=20).collect::<BTreeSet<u64>>());

    // What was stored matches what each pusher was told.
    let stored = store.read_inbox(&key, 0).await.expect("read");
    assert_eq!(stored.len(), 20);
    let mut payloads: Vec<i64> = stored
        .iter()
        .enumerate()
        .map(|(n, it)| {
            assert_eq!(it.seq, n as u64 + 1);
            it.payload["i"].as_i64().expect("i")
        })
        .collect();
    payloads.sort_unstable();
    assert_eq!(payloads, (0..20).collect::<Vec<i64>>());

    // Concurrent pushes of one dedupe id store it once.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let payload = json!("once");
            store
                .push_inbox(&key, item("sig", &payload, Some("the-one")))
                .await
        }));
    }
    let mut got = BTreeSet::new();
    for task in tasks {
        got.insert(task.await.expect("task").expect("push").seq);
    }
    assert_eq!(got, BTreeSet::from([21]));
    assert_eq!(store.read_inbox(&key, 20).await.expect("read").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store() {
    run_all(Arc::new(MemoryWorkflowStore::new())).await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use plexspaces_workflow::SqlWorkflowStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqlWorkflowStore::open_sqlite(dir.path().join("workflows.db"))
            .await
            .expect("open");
        run_all(Arc::new(store)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file name the URL would misread unless it is escaped.
        let path = dir.path().join("odd name #1?.db");
        let r = record("t", "n", "kept", 1);
        let payload = json!({"kept": true});
        {
            let store = SqlWorkflowStore::open_sqlite(&path).await.expect("open");
            store.insert_if_absent(&r).await.expect("insert");
            store
                .push_inbox(&r.key, item("s", &payload, Some("d")))
                .await
                .expect("push");
        }
        assert!(path.exists(), "database file at {}", path.display());
        let store = SqlWorkflowStore::open_sqlite(&path).await.expect("reopen");
        assert_eq!(store.get(&r.key).await.expect("get"), Some(r.clone()));
        let inbox = store.read_inbox(&r.key, 0).await.expect("read");
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].payload, payload);
        let next = store
            .push_inbox(&r.key, item("s", &payload, None))
            .await
            .expect("push");
        assert_eq!(next.seq, 2);
        // WAL mode: the write-ahead log sits next to the database while it is open.
        let wal = dir.path().join("odd name #1?.db-wal");
        assert!(wal.exists(), "no WAL file at {}", wal.display());
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use plexspaces_workflow::SqlWorkflowStore;

    fn url() -> String {
        plexspaces_test_util::postgres_database()
    }

    async fn schema_exists(pool: &sqlx::PgPool, schema: &str) -> bool {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = $1",
        )
        .bind(schema)
        .fetch_one(pool)
        .await
        .expect("query schemata");
        n > 0
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_store() {
        let schema = plexspaces_test_util::unique_name("wfstore");
        let admin = sqlx::PgPool::connect(&url()).await.expect("connect");
        let store = SqlWorkflowStore::open_postgres(&url(), &schema)
            .await
            .expect("open");
        assert!(schema_exists(&admin, &schema).await);

        let reopen_schema = schema.clone();
        let outcome = tokio::spawn(async move {
            run_all(Arc::new(store)).await;
            // Opening again over existing tables works and sees the same data.
            let again = SqlWorkflowStore::open_postgres(&url(), &reopen_schema)
                .await
                .expect("reopen");
            let key = WorkflowKey::new("rec", "ns", "wf-1");
            let kept = again.get(&key).await.expect("get").expect("kept");
            assert_eq!(kept.status, WorkflowStatus::Failed);
            assert_eq!(
                again
                    .read_inbox(&WorkflowKey::new("conc", "ns", "busy"), 0)
                    .await
                    .expect("read")
                    .len(),
                21
            );
        })
        .await;

        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&admin)
            .await
            .expect("drop schema");
        assert!(!schema_exists(&admin, &schema).await);
        admin.close().await;
        if let Err(e) = outcome {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    #[tokio::test]
    async fn postgres_rejects_bad_schema_names() {
        let too_long = "a".repeat(64);
        for bad in [
            "",
            "bad-name",
            "x; DROP TABLE y",
            "with space",
            "quo\"te",
            "dot.ted",
            "1starts_with_digit",
            "ünicode",
            too_long.as_str(),
        ] {
            match SqlWorkflowStore::open_postgres(&url(), bad).await {
                Err(WorkflowError::InvalidArgument(_)) => {}
                other => panic!("schema {bad:?}: {other:?}"),
            }
        }
    }
}
