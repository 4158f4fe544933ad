//! kill -9 while a side effect runs, before its result is journaled, against a real
//! idempotency-honouring HTTP service (`EffectStub`): the re-run after recovery calls it
//! again with the same key (2 requests), the service applies the key once (1 application),
//! and the journal holds exactly one entry for the step.

use std::collections::BTreeMap;

use plexspaces_journal::{EntryKind, Journal, StreamId};
use plexspaces_test_util::EffectStub;

use crate::child::{run_child, Reply, Run, OPS};

const PAUSED_OP: u64 = 7;

/// Checkpoints (and truncation) off, so the whole journal can be read back afterwards.
async fn child(backend: &str, fx: &std::path::Path, stub: &EffectStub, pause: Option<&str>) -> Run {
    let (backend, fx, url, pause) = (
        backend.to_owned(),
        fx.to_owned(),
        stub.url(),
        pause.map(str::to_owned),
    );
    tokio::task::spawn_blocking(move || {
        run_child(
            &backend,
            &fx,
            pause.as_deref(),
            Reply::Returned,
            &[("CHECKPOINT_EVERY", "1000"), ("EFFECT_URL", &url)],
        )
    })
    .await
    .expect("child runner")
}

/// Decodes the optional idempotency key at the start of a `MessageReceived` payload
/// (tag byte, then a little-endian u64 length and the bytes).
fn message_key(payload: &[u8]) -> Option<String> {
    let (&tag, rest) = payload.split_first()?;
    if tag != 1 {
        return None;
    }
    let len = usize::try_from(u64::from_le_bytes(rest.get(..8)?.try_into().ok()?)).ok()?;
    String::from_utf8(rest.get(8..8 + len)?.to_vec()).ok()
}

/// Side-effect entries per message key, read from the journal itself.
async fn effects_per_message(journal: &dyn Journal, stream: &StreamId) -> BTreeMap<String, u32> {
    let next = journal.next_seq(stream).await.unwrap();
    let entries = journal.read(stream, 1, next).await.unwrap();
    assert_eq!(entries.first().map(|e| e.seq), Some(1), "nothing truncated");
    let mut out = BTreeMap::new();
    let mut current = None;
    for e in entries {
        assert!(e.is_valid(), "entry {} is intact", e.seq);
        match e.kind {
            EntryKind::MessageReceived => current = message_key(&e.payload),
            EntryKind::SideEffect => {
                *out.entry(current.clone().expect("an effect inside a keyed message"))
                    .or_insert(0) += 1;
            }
            _ => {}
        }
    }
    out
}

/// Runs the bank fault-free, then killed at op 7's effect and restarted, each against its own
/// stub; checks the stub's log and the replies.
async fn effect_cut_off_before_its_journal_write(backend: &str, ref_backend: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ref_stub = EffectStub::start().await.unwrap();
    let reference = child(ref_backend, &dir.path().join("ref-fx"), &ref_stub, None).await;
    assert_eq!(reference.acks.len() as u64, OPS);
    assert_eq!(ref_stub.applications(), OPS);

    let stub = EffectStub::start().await.unwrap();
    let fx = dir.path().join("fx");
    let pause = format!("after_effect_before_journal:{PAUSED_OP}");
    let crashed = child(backend, &fx, &stub, Some(&pause)).await;
    assert_eq!(
        crashed.paused.as_deref(),
        Some("after_effect_before_journal")
    );
    assert_eq!(
        crashed.acks.len() as u64,
        PAUSED_OP - 1,
        "ops before the kill acknowledged"
    );
    let cut = stub
        .requests()
        .last()
        .cloned()
        .expect("the effect reached the stub");
    assert_eq!(cut.body, format!("{{\"op\":{PAUSED_OP}}}"));
    assert!(
        cut.applied,
        "the stub applied op {PAUSED_OP} before the kill"
    );

    let restarted = child(backend, &fx, &stub, None).await;
    assert_eq!(
        restarted.acks, reference.acks,
        "replies equal the fault-free run"
    );
    assert_eq!(
        restarted.state, reference.state,
        "state equals the fault-free run"
    );

    // the re-run called the stub again with the same key; the stub applied it once
    let again = stub.requests_for(&cut.key);
    assert_eq!(
        again.len(),
        2,
        "two requests with the cut-off key: {again:?}"
    );
    assert_eq!(
        again.iter().map(|r| r.applied).collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(stub.applications(), OPS, "one application per op");
    assert_eq!(
        stub.requests().len() as u64,
        OPS + 1,
        "only the cut-off effect was repeated"
    );
}

/// The journal holds one side-effect entry per op, the cut-off one included.
async fn one_journal_entry_per_effect(journal: &dyn Journal) {
    let per_message =
        effects_per_message(journal, &StreamId::new("default", "crash", "bank-1")).await;
    assert_eq!(per_message.len() as u64, OPS, "{per_message:?}");
    assert!(per_message.values().all(|&n| n == 1), "{per_message:?}");
    assert_eq!(per_message.get(&format!("op-{PAUSED_OP}")), Some(&1));
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_kill_mid_effect_repeats_the_call_with_its_key_and_applies_it_once() {
    use plexspaces_journal::{SqliteJournal, SqliteOptions};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bank.db");
    let ref_db = dir.path().join("ref.db");
    effect_cut_off_before_its_journal_write(
        &format!("sqlite:{}", db.display()),
        &format!("sqlite:{}", ref_db.display()),
    )
    .await;
    one_journal_entry_per_effect(&SqliteJournal::open(SqliteOptions::new(&db)).await.unwrap())
        .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_kill_mid_effect_repeats_the_call_with_its_key_and_applies_it_once() {
    use crate::support::PgSchema;
    use plexspaces_journal::PostgresJournal;
    let (schema, ref_schema) = (PgSchema::new("fx"), PgSchema::new("fxref"));
    effect_cut_off_before_its_journal_write(
        &format!("postgres:{}", schema.name),
        &format!("postgres:{}", ref_schema.name),
    )
    .await;
    one_journal_entry_per_effect(&PostgresJournal::open(schema.options()).await.unwrap()).await;
}
