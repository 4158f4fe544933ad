//! Format compatibility: the journal (a real SQLite journal file), its entry and snapshot
//! encodings, written by version 1 of the formats and committed under `tests/golden/`, must
//! be read by this code and give the same state and replies. A change to the entry payload
//! encoding, the snapshot envelope, the checksums or the SQLite schema without a migration
//! fails here.
//!
//! When a format changes on purpose: keep the old golden files and this test for them (the
//! new code must migrate or read them), and add `*-v2` files written by the new code with
//! `PLEXSPACES_WRITE_GOLDEN=v2 cargo nextest run -p plexspaces-journal --all-features
//! --test faults -E 'test(golden)'`, which never overwrites an existing file.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use plexspaces_journal::{
    CheckpointPolicy, Durable, DurableOptions, Entry, EntryKind, Epoch, Journal, ManualClock,
    MemoryJournal, Snapshot, StreamId,
};
use serde_json::{json, Value};

use crate::support::Account;

/// The messages of the golden stream, with their idempotency keys.
const MESSAGES: [(&str, &str); 5] = [
    ("+10", "k1"),
    ("+20", "k2"),
    ("-5", "k3"),
    ("+7", "k4"),
    ("-100", "k5"),
];

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn stream() -> StreamId {
    StreamId::new("t1", "bank", "golden-account")
}

/// Checkpoint after the 3rd message and keep the covered entries, so the golden journal has
/// a snapshot, the entries it covers and a suffix after it.
fn options() -> DurableOptions {
    DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: Some(3),
            every: None,
            truncate: false,
        },
        clock: ManualClock::new(1_767_225_600_000),
        ..DurableOptions::default()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn entry_json(e: &Entry) -> Value {
    json!({"seq": e.seq, "kind": e.kind.code(), "payload": hex(&e.payload), "checksum": e.checksum})
}

fn snapshot_json(s: &Snapshot) -> Value {
    json!({"seq": s.seq, "epoch": s.epoch.0, "data": hex(&s.data), "checksum": s.checksum})
}

async fn dump(journal: &dyn Journal) -> (Vec<Value>, Value) {
    let next = journal.next_seq(&stream()).await.unwrap();
    let entries = journal.read(&stream(), 1, next).await.unwrap();
    let snapshot = journal.latest_snapshot(&stream()).await.unwrap();
    (
        entries.iter().map(entry_json).collect(),
        snapshot.as_ref().map(snapshot_json).unwrap_or(Value::Null),
    )
}

/// Writes `journal-<version>.db` and `journal-<version>.json` (refusing to overwrite).
#[cfg(feature = "sqlite")]
async fn write_golden(version: &str) {
    use plexspaces_journal::{SqliteJournal, SqliteOptions};
    let db = golden_dir().join(format!("journal-{version}.db"));
    let text = golden_dir().join(format!("journal-{version}.json"));
    assert!(
        !db.exists() && !text.exists(),
        "golden files of {version} exist: never rewrite them"
    );
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("j.db");
    let journal = Arc::new(
        SqliteJournal::open(SqliteOptions::new(&work))
            .await
            .unwrap(),
    );
    let effects = Arc::new(AtomicU64::new(0));
    let mut d = Durable::activate(journal.clone(), stream(), options(), Account::new(effects))
        .await
        .unwrap();
    let mut replies = serde_json::Map::new();
    for (msg, key) in MESSAGES {
        let reply = d.handle(msg.as_bytes(), Some(key)).await.unwrap();
        replies.insert(key.into(), String::from_utf8(reply).unwrap().into());
    }
    let balance = d.handler().balance;
    let log = d.handler().log.clone();
    drop(d);
    let (entries, snapshot) = dump(journal.as_ref()).await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", work.display()))
        .await
        .unwrap();
    sqlx::query(&format!("VACUUM INTO '{}'", db.display()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let golden = json!({
        "format": version,
        "stream": {"tenant": "t1", "namespace": "bank", "actor_id": "golden-account"},
        "entries": entries,
        "snapshot": snapshot,
        "expect": {"balance": balance, "log": log, "replies": replies},
    });
    std::fs::write(&text, serde_json::to_string_pretty(&golden).unwrap() + "\n").unwrap();
}

fn read_golden(version: &str) -> Value {
    let path = golden_dir().join(format!("journal-{version}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Activates the golden stream on `journal` and checks state, replies and that nothing
/// re-ran; then a new message still works.
async fn check_recovery(journal: Arc<dyn Journal>, golden: &Value) {
    let effects = Arc::new(AtomicU64::new(0));
    let mut d = Durable::activate(journal, stream(), options(), Account::new(effects.clone()))
        .await
        .expect("the golden journal activates");
    let expect = &golden["expect"];
    assert_eq!(json!(d.handler().balance), expect["balance"]);
    assert_eq!(
        json!(d.handler().log),
        expect["log"],
        "state rebuilt exactly"
    );
    assert_eq!(
        effects.load(Ordering::SeqCst),
        0,
        "no journaled effect re-ran"
    );
    for (_, key) in MESSAGES {
        let reply = d.handle(b"+1000", Some(key)).await.unwrap();
        assert_eq!(
            json!(String::from_utf8(reply).unwrap()),
            expect["replies"][key],
            "duplicate {key} gets its recorded reply"
        );
    }
    assert_eq!(effects.load(Ordering::SeqCst), 0);
    let before = d.handler().balance;
    d.handle(b"+1", Some("k-new")).await.unwrap();
    assert_eq!(d.handler().balance, before + 1);
    assert_eq!(effects.load(Ordering::SeqCst), 1);
}

/// The v1 entry and snapshot bytes, loaded into a fresh in-memory journal, verify and
/// replay to the recorded state.
#[tokio::test]
async fn golden_v1_entry_and_snapshot_bytes_replay() {
    let golden = read_golden("v1");
    let journal = Arc::new(MemoryJournal::new());
    let epoch = journal.acquire_epoch(&stream()).await.unwrap();
    let entries: Vec<Entry> = golden["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            Entry::from_stored(
                e["seq"].as_u64().unwrap(),
                u8::try_from(e["kind"].as_u64().unwrap()).unwrap(),
                unhex(e["payload"].as_str().unwrap()),
                u32::try_from(e["checksum"].as_u64().unwrap()).unwrap(),
            )
        })
        .collect();
    assert!(entries.len() >= 15, "a real history: {}", entries.len());
    for e in &entries {
        assert!(e.is_valid(), "entry {} checksum (format v1)", e.seq);
        assert!(!matches!(e.kind, EntryKind::Unknown(_)));
    }
    journal.append(&stream(), epoch, entries).await.unwrap();
    let s = &golden["snapshot"];
    let snap = Snapshot {
        seq: s["seq"].as_u64().unwrap(),
        epoch: Epoch(s["epoch"].as_u64().unwrap()),
        data: unhex(s["data"].as_str().unwrap()),
        checksum: u32::try_from(s["checksum"].as_u64().unwrap()).unwrap(),
    };
    assert!(snap.is_valid(), "snapshot checksum (format v1)");
    assert!(snap.seq > 0 && snap.seq < journal.next_seq(&stream()).await.unwrap() - 1);
    journal
        .save_snapshot(&stream(), epoch, snap.seq, snap.data)
        .await
        .unwrap();
    check_recovery(journal, &golden).await;
}

/// The v1 SQLite journal file: this code opens it (schema), reads exactly the v1 entries and
/// snapshot, and recovers the recorded state from it.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn golden_v1_sqlite_journal_file_recovers() {
    use plexspaces_journal::{SqliteJournal, SqliteOptions};
    if let Ok(version) = std::env::var("PLEXSPACES_WRITE_GOLDEN") {
        write_golden(&version).await;
    }
    let golden = read_golden("v1");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    std::fs::copy(golden_dir().join("journal-v1.db"), &db).unwrap();
    let journal = Arc::new(SqliteJournal::open(SqliteOptions::new(&db)).await.unwrap());
    let (entries, snapshot) = dump(journal.as_ref()).await;
    assert_eq!(
        json!(entries),
        golden["entries"],
        "entries read back byte for byte"
    );
    assert_eq!(
        snapshot, golden["snapshot"],
        "snapshot read back byte for byte"
    );
    check_recovery(journal, &golden).await;
}
