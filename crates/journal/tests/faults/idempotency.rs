//! Past the idempotency retention limit (oldest keys evicted first), a forgotten key runs
//! again, as documented; retained keys still answer with the recorded reply, across a
//! restart. The default limit is 10,000 keys; this test uses 3 to reach it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use plexspaces_journal::{
    CheckpointPolicy, Durable, DurableOptions, Journal, MemoryJournal, StreamId,
};

use crate::support::{unique_name, Account};

#[tokio::test]
async fn a_key_past_the_retention_limit_runs_again_and_retained_keys_do_not() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let stream = StreamId::new("t1", "bank", &unique_name("retention"));
    let effects = Arc::new(AtomicU64::new(0));
    let opts = DurableOptions {
        idempotency_retention: 3,
        checkpoint: CheckpointPolicy {
            every_messages: Some(2),
            every: None,
            truncate: true,
        },
        ..DurableOptions::default()
    };
    let mut d = Durable::activate(
        journal.clone(),
        stream.clone(),
        opts.clone(),
        Account::new(effects.clone()),
    )
    .await
    .unwrap();
    let mut replies = Vec::new();
    for i in 1..=5 {
        let key = format!("k{i}");
        replies.push(
            d.handle(format!("+{i}").as_bytes(), Some(&key))
                .await
                .unwrap(),
        );
    }
    assert_eq!(d.handler().balance, 15);
    assert_eq!(effects.load(Ordering::SeqCst), 5);
    // k5 is retained: the duplicate gets the recorded reply, nothing runs
    assert_eq!(d.handle(b"+5", Some("k5")).await.unwrap(), replies[4]);
    assert_eq!(effects.load(Ordering::SeqCst), 5);
    // k1 was evicted (only the 3 newest keys are kept): it runs again
    let k1_again = d.handle(b"+1", Some("k1")).await.unwrap();
    assert_ne!(k1_again, replies[0], "a forgotten key is a new request");
    assert_eq!(d.handler().balance, 16);
    assert_eq!(effects.load(Ordering::SeqCst), 6);
    drop(d);

    // after a restart the retained keys (k4, k5, k1) still answer; k2 is forgotten
    let mut d = Durable::activate(journal, stream, opts, Account::new(effects.clone()))
        .await
        .unwrap();
    assert_eq!(d.handler().balance, 16);
    assert_eq!(d.handle(b"+4", Some("k4")).await.unwrap(), replies[3]);
    assert_eq!(d.handle(b"+1", Some("k1")).await.unwrap(), k1_again);
    assert_eq!(
        effects.load(Ordering::SeqCst),
        6,
        "retained keys ran nothing"
    );
    d.handle(b"+2", Some("k2")).await.unwrap();
    assert_eq!(d.handler().balance, 18, "the forgotten k2 ran again");
    assert_eq!(effects.load(Ordering::SeqCst), 7);
}
