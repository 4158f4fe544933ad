//! A handler that always fails (J13): its message is journaled with each failed attempt,
//! retried on the next activation after a doubling backoff, and after the retry budget the
//! stream is paused (activation refused with a typed error naming the last error) until an
//! operator resumes (retried with a fresh budget) or abandons (skipped) the message.
//! Recorded side effects of the failed message never run again across the retries.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plexspaces_journal::{
    failed_message, resolve_failed, CheckpointPolicy, Durable, DurableExecution, DurableHandler,
    DurableOptions, Error, Journal, ManualClock, MemoryJournal, Resolution, Result, RetryPolicy,
    StreamId,
};

use crate::support::unique_name;

const T0: u64 = 1_700_000_000_000;

/// `inc` and `pay` add one after a side effect `charge`; `pay` fails while `failing` is set
/// (after the side effect, so the effect's result is journaled with the failed attempt).
#[derive(Debug, Clone, Default)]
struct Flaky {
    count: u64,
    failing: Arc<AtomicBool>,
    /// Handler runs of messages while failing (live and on retry).
    failed_runs: Arc<AtomicU32>,
    /// Times the `charge` side effect really ran.
    charges: Arc<AtomicU64>,
}

#[async_trait]
impl DurableHandler for Flaky {
    async fn handle(&mut self, exec: &mut DurableExecution, message: &[u8]) -> Result<Vec<u8>> {
        assert!(message == b"inc" || message == b"pay");
        let charges = self.charges.clone();
        let _: u64 = exec
            .side_effect("charge", |_| async move {
                charges.fetch_add(1, Ordering::SeqCst) + 1
            })
            .await?;
        if message == b"pay" && self.failing.load(Ordering::SeqCst) {
            let run = self.failed_runs.fetch_add(1, Ordering::SeqCst) + 1;
            return Err(Error::InvalidArgument(format!(
                "payment service down (run {run})"
            )));
        }
        self.count += 1;
        Ok(self.count.to_string().into_bytes())
    }

    fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(self.count.to_string().into_bytes())
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<()> {
        self.count = String::from_utf8_lossy(snapshot).parse().unwrap_or(0);
        Ok(())
    }
}

fn options(clock: &Arc<ManualClock>) -> DurableOptions {
    DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: None,
            every: None,
            truncate: false,
        },
        clock: clock.clone(),
        retry: RetryPolicy {
            max_attempts: 3,
            backoff: Duration::from_millis(1_000),
            max_backoff: Duration::from_millis(1_500),
        },
        ..DurableOptions::default()
    }
}

async fn activate(
    journal: &Arc<dyn Journal>,
    stream: &StreamId,
    clock: &Arc<ManualClock>,
    handler: &Flaky,
) -> Result<Durable<Flaky>> {
    Durable::activate(
        journal.clone(),
        stream.clone(),
        options(clock),
        handler.clone(),
    )
    .await
}

/// Fails the message `pay` (key `k2`) three times: live, then two retries after their
/// backoffs (1 s, then 1.5 s: doubled and capped); checks every refusal in between. Leaves
/// the stream paused.
async fn fail_until_paused(
    journal: &Arc<dyn Journal>,
    stream: &StreamId,
    clock: &Arc<ManualClock>,
    handler: &Flaky,
) {
    let mut d = activate(journal, stream, clock, handler).await.unwrap();
    assert_eq!(d.handle(b"inc", Some("k1")).await.unwrap(), b"1");
    handler.failing.store(true, Ordering::SeqCst);
    let live = d.handle(b"pay", Some("k2")).await.unwrap_err();
    assert!(
        live.to_string().contains("payment service down (run 1)"),
        "{live}"
    );
    drop(d);

    let failed = failed_message(&**journal, stream)
        .await
        .unwrap()
        .expect("failed");
    assert_eq!(failed.attempts, 1);
    assert_eq!(failed.idempotency_key.as_deref(), Some("k2"));
    assert!(failed.last_error.contains("run 1"), "{failed:?}");
    assert_eq!(failed.last_failed_at_ms, T0);

    // Backoff 1 s: an activation before it is refused, typed and retryable.
    clock.advance(999);
    match activate(journal, stream, clock, handler).await {
        Err(
            e @ Error::RetryLater {
                attempts: 1,
                retry_in_ms: 1,
                ..
            },
        ) => {
            assert!(e.is_retryable());
        }
        other => panic!("expected RetryLater, got {:?}", other.map(|_| ())),
    }
    // Due: the activation retries the message first (replayed; the effect is not re-run),
    // and it fails again.
    clock.advance(1);
    let retry = activate(journal, stream, clock, handler).await.unwrap_err();
    assert!(retry.to_string().contains("run 2"), "{retry}");
    // Second backoff: 2 s doubled, capped at 1.5 s.
    match activate(journal, stream, clock, handler).await {
        Err(Error::RetryLater {
            attempts: 2,
            retry_in_ms: 1_500,
            ..
        }) => {}
        other => panic!(
            "expected RetryLater after 2 attempts, got {:?}",
            other.map(|_| ())
        ),
    }
    clock.advance(1_500);
    let third = activate(journal, stream, clock, handler).await.unwrap_err();
    assert!(third.to_string().contains("run 3"), "{third}");

    // The budget is used up: paused, whatever the time, with the last error.
    clock.advance(3_600_000);
    for _ in 0..2 {
        match activate(journal, stream, clock, handler).await {
            Err(Error::Paused {
                seq,
                attempts: 3,
                last_error,
                ..
            }) => {
                assert_eq!(seq, failed.seq);
                assert!(last_error.contains("run 3"), "{last_error}");
            }
            other => panic!("expected Paused, got {:?}", other.map(|_| ())),
        }
    }
    assert_eq!(handler.failed_runs.load(Ordering::SeqCst), 3);
    assert_eq!(
        handler.charges.load(Ordering::SeqCst),
        2,
        "one charge per message: the failed message's journaled effect is replayed, not re-run"
    );
}

async fn always_failing_handler_pauses_then_resume_retries_it(journal: Arc<dyn Journal>) {
    let stream = StreamId::new("t", "faults", &unique_name("flaky"));
    let clock = ManualClock::new(T0);
    let handler = Flaky::default();
    fail_until_paused(&journal, &stream, &clock, &handler).await;

    // Resume while the cause is still there: a fresh budget, retried at once, fails again
    // and backs off (not paused).
    let resumed = resolve_failed(&*journal, &stream, Resolution::Resume, &*clock)
        .await
        .unwrap();
    assert_eq!(resumed.attempts, 3);
    let again = activate(&journal, &stream, &clock, &handler)
        .await
        .unwrap_err();
    assert!(again.to_string().contains("run 4"), "{again}");
    let failed = failed_message(&*journal, &stream).await.unwrap().unwrap();
    assert_eq!(failed.attempts, 1, "the budget restarted at the resume");

    // The cause is fixed: the next due activation completes the message exactly once.
    handler.failing.store(false, Ordering::SeqCst);
    clock.advance(1_000);
    let mut d = activate(&journal, &stream, &clock, &handler).await.unwrap();
    assert_eq!(d.handler().count, 2);
    assert!(failed_message(&*journal, &stream).await.unwrap().is_none());
    // The caller's retry with the same key gets the recorded reply; nothing runs twice.
    assert_eq!(d.handle(b"pay", Some("k2")).await.unwrap(), b"2");
    assert_eq!(d.handle(b"inc", Some("k3")).await.unwrap(), b"3");
    assert_eq!(handler.charges.load(Ordering::SeqCst), 3);
    drop(d);
    let d = activate(&journal, &stream, &clock, &handler).await.unwrap();
    assert_eq!(
        d.handler().count,
        3,
        "the state survives another activation"
    );
    // Nothing left to resolve.
    assert!(matches!(
        resolve_failed(&*journal, &stream, Resolution::Resume, &*clock).await,
        Err(Error::NoFailedMessage { .. })
    ));
}

async fn always_failing_handler_pauses_then_abandon_skips_it(journal: Arc<dyn Journal>) {
    let stream = StreamId::new("t", "faults", &unique_name("flaky"));
    let clock = ManualClock::new(T0);
    let handler = Flaky::default();
    fail_until_paused(&journal, &stream, &clock, &handler).await;

    let abandoned = resolve_failed(
        &*journal,
        &stream,
        Resolution::Abandon {
            reason: "operator: refund by hand".into(),
        },
        &*clock,
    )
    .await
    .unwrap();
    assert_eq!(abandoned.attempts, 3);
    // The handler is still broken, but the abandoned message is skipped: activation works
    // and the state never counted it.
    let mut d = activate(&journal, &stream, &clock, &handler).await.unwrap();
    assert_eq!(d.handler().count, 1);
    assert!(failed_message(&*journal, &stream).await.unwrap().is_none());
    assert_eq!(
        handler.failed_runs.load(Ordering::SeqCst),
        3,
        "not retried again"
    );
    handler.failing.store(false, Ordering::SeqCst);
    assert_eq!(d.handle(b"inc", Some("k3")).await.unwrap(), b"2");
    drop(d);
    let d = activate(&journal, &stream, &clock, &handler).await.unwrap();
    assert_eq!(d.handler().count, 2);
}

#[tokio::test]
async fn memory_an_always_failing_handler_is_retried_with_backoff_paused_and_resumed() {
    always_failing_handler_pauses_then_resume_retries_it(Arc::new(MemoryJournal::new())).await;
}

#[tokio::test]
async fn memory_a_paused_message_can_be_abandoned() {
    always_failing_handler_pauses_then_abandon_skips_it(Arc::new(MemoryJournal::new())).await;
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use plexspaces_journal::{SqliteJournal, SqliteOptions};

    async fn journal(dir: &tempfile::TempDir) -> Arc<dyn Journal> {
        Arc::new(
            SqliteJournal::open(SqliteOptions::new(dir.path().join("journal.db")))
                .await
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn an_always_failing_handler_is_retried_with_backoff_paused_and_resumed() {
        let dir = tempfile::tempdir().unwrap();
        always_failing_handler_pauses_then_resume_retries_it(journal(&dir).await).await;
    }

    #[tokio::test]
    async fn a_paused_message_can_be_abandoned() {
        let dir = tempfile::tempdir().unwrap();
        always_failing_handler_pauses_then_abandon_skips_it(journal(&dir).await).await;
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use crate::support::PgSchema;
    use plexspaces_journal::PostgresJournal;

    #[tokio::test]
    async fn an_always_failing_handler_is_retried_with_backoff_paused_and_resumed() {
        let schema = PgSchema::new("retries");
        let journal = PostgresJournal::open(schema.options()).await.unwrap();
        always_failing_handler_pauses_then_resume_retries_it(Arc::new(journal)).await;
    }
}

#[tokio::test]
async fn with_retries_off_a_failed_message_is_aborted_and_skipped() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let stream = StreamId::new("t", "faults", &unique_name("flaky"));
    let clock = ManualClock::new(T0);
    let handler = Flaky::default();
    let off = || DurableOptions {
        retry: RetryPolicy::disabled(),
        ..options(&clock)
    };
    let mut d = Durable::activate(journal.clone(), stream.clone(), off(), handler.clone())
        .await
        .unwrap();
    d.handle(b"inc", None).await.unwrap();
    handler.failing.store(true, Ordering::SeqCst);
    d.handle(b"pay", None).await.unwrap_err();
    drop(d);
    let d = Durable::activate(journal.clone(), stream.clone(), off(), handler.clone())
        .await
        .unwrap();
    assert_eq!(d.handler().count, 1);
    assert_eq!(
        handler.failed_runs.load(Ordering::SeqCst),
        1,
        "never retried"
    );
    assert!(failed_message(&*journal, &stream).await.unwrap().is_none());
}
