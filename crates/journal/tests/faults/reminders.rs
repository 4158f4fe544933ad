//! Reminder delivery faults: an undeliverable reminder (its owner is not running) must not
//! block the others; failures are retried with backoff up to a limit.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use plexspaces_journal::{
    Error, FiredReminder, ManualClock, MemoryReminderStore, Reminder, ReminderScheduler,
    ReminderSchedulerOptions, ReminderSink, ReminderStore, Result, StreamId,
};

const T0: u64 = 1_700_000_000_000;

/// Delivers to every owner except those in `down`; records every attempt.
#[derive(Default)]
struct PartlyDownSink {
    down: Mutex<HashSet<String>>,
    attempts: Mutex<Vec<(String, String)>>,
    delivered: Mutex<Vec<String>>,
}

impl PartlyDownSink {
    fn attempts_of(&self, name: &str) -> usize {
        let attempts = self.attempts.lock().unwrap();
        attempts.iter().filter(|(_, n)| n == name).count()
    }
    fn delivered(&self) -> Vec<String> {
        self.delivered.lock().unwrap().clone()
    }
}

#[async_trait]
impl ReminderSink for PartlyDownSink {
    async fn deliver(&self, fired: FiredReminder) -> Result<()> {
        let owner = fired.reminder.owner.actor_id.clone();
        self.attempts
            .lock()
            .unwrap()
            .push((owner.clone(), fired.reminder.name.clone()));
        if self.down.lock().unwrap().contains(&owner) {
            return Err(Error::Closed);
        }
        self.delivered
            .lock()
            .unwrap()
            .push(fired.reminder.name.clone());
        Ok(())
    }
}

fn reminder(owner: &str, name: &str, due: u64, period: Option<u64>) -> Reminder {
    Reminder {
        owner: StreamId::new("t", "faults", owner),
        name: name.into(),
        due_at_ms: due,
        period_ms: period,
        payload: vec![],
    }
}

fn scheduler(store: &MemoryReminderStore, clock: Arc<ManualClock>) -> ReminderScheduler {
    ReminderScheduler::new(
        Arc::new(store.clone()),
        ReminderSchedulerOptions {
            clock,
            max_attempts: 4,
            retry_backoff: Duration::from_millis(1_000),
            max_retry_backoff: Duration::from_millis(3_000),
            ..ReminderSchedulerOptions::default()
        },
    )
}

/// The oldest due reminder belongs to an actor that is not running. Before the fix `tick`
/// returned on that first failure, so the two reminders due after it never fired.
#[tokio::test]
async fn an_undeliverable_reminder_does_not_block_the_others() {
    let store = MemoryReminderStore::new();
    let clock = ManualClock::new(T0);
    for r in [
        reminder("gone", "stuck", T0 - 300, None),
        reminder("alive", "first", T0 - 200, None),
        reminder("alive", "second", T0 - 100, Some(60_000)),
    ] {
        store.upsert(&r).await.unwrap();
    }
    let sink = PartlyDownSink::default();
    sink.down.lock().unwrap().insert("gone".into());
    let sched = scheduler(&store, clock.clone());

    let fired = sched.tick(&sink).await.unwrap();
    assert_eq!(fired, 2, "both deliverable reminders fired");
    assert_eq!(sink.delivered(), vec!["first", "second"]);
    assert_eq!(sink.attempts_of("stuck"), 1);
    // the undeliverable one is still stored, at its original tick, for a retry
    let stuck = store
        .get(&reminder("gone", "", 0, None).owner, "stuck")
        .await
        .unwrap()
        .expect("the failed reminder is kept");
    assert_eq!(stuck.due_at_ms, T0 - 300);
}

/// Retries back off exponentially (1 s, 2 s, then capped at 3 s), stop after
/// `max_attempts`, and give up only the failing tick: a one-shot reminder is deleted, a
/// periodic one moves to its next tick and fires there once its owner is back.
#[tokio::test]
async fn failed_deliveries_back_off_and_give_up_after_the_limit() {
    let store = MemoryReminderStore::new();
    let clock = ManualClock::new(T0);
    let once = reminder("gone", "once", T0, None);
    let periodic = reminder("gone", "periodic", T0, Some(60_000));
    store.upsert(&once).await.unwrap();
    store.upsert(&periodic).await.unwrap();
    store
        .upsert(&reminder("alive", "healthy", T0, Some(500)))
        .await
        .unwrap();
    let sink = PartlyDownSink::default();
    sink.down.lock().unwrap().insert("gone".into());
    let sched = scheduler(&store, clock.clone());

    // attempt 1 at T0
    let report = sched.tick_report(&sink).await.unwrap();
    assert_eq!((report.fired, report.failed, report.backing_off), (1, 2, 0));
    // polling again before the backoff ends does not retry (no 100 ms hammering)
    clock.set(T0 + 999);
    let report = sched.tick_report(&sink).await.unwrap();
    assert_eq!((report.failed, report.backing_off), (0, 2));
    assert_eq!(sink.attempts_of("once"), 1);
    // attempt 2 at +1 s, then a 2 s backoff
    clock.set(T0 + 1_000);
    assert_eq!(sched.tick_report(&sink).await.unwrap().failed, 2);
    clock.set(T0 + 2_999);
    assert_eq!(sched.tick_report(&sink).await.unwrap().backing_off, 2);
    // attempt 3 at +3 s, then the backoff is capped at 3 s (not 4 s)
    clock.set(T0 + 3_000);
    assert_eq!(sched.tick_report(&sink).await.unwrap().failed, 2);
    assert_eq!(sink.attempts_of("once"), 3);
    // attempt 4 (= max_attempts) at +6 s: this tick is given up
    clock.set(T0 + 6_000);
    let report = sched.tick_report(&sink).await.unwrap();
    let mut given_up: Vec<_> = report.given_up.iter().map(|(_, n)| n.clone()).collect();
    given_up.sort();
    assert_eq!(given_up, vec!["once", "periodic"]);
    assert_eq!(sink.attempts_of("once"), 4);
    assert_eq!(sink.attempts_of("periodic"), 4);
    assert!(
        store.get(&once.owner, "once").await.unwrap().is_none(),
        "a given-up one-shot reminder is deleted"
    );
    assert_eq!(
        store
            .get(&periodic.owner, "periodic")
            .await
            .unwrap()
            .unwrap()
            .due_at_ms,
        T0 + 60_000,
        "a given-up periodic reminder moves to its next tick"
    );
    // no further attempts of the given-up tick
    clock.set(T0 + 30_000);
    sched.tick_report(&sink).await.unwrap();
    assert_eq!(sink.attempts_of("once"), 4);
    assert_eq!(sink.attempts_of("periodic"), 4);
    // the owner comes back: the next tick fires normally, with a fresh attempt count
    sink.down.lock().unwrap().clear();
    clock.set(T0 + 60_000);
    let report = sched.tick_report(&sink).await.unwrap();
    assert!(report.given_up.is_empty());
    assert!(sink.delivered().contains(&"periodic".to_string()));
    // the healthy reminder kept firing throughout
    let healthy = sink.delivered().iter().filter(|n| *n == "healthy").count();
    assert!(healthy >= 6, "healthy reminder fired {healthy} times");
}

/// More reminders in backoff than fit in one batch cannot starve the one due after them.
#[tokio::test]
async fn reminders_in_backoff_do_not_fill_the_batch() {
    let store = MemoryReminderStore::new();
    let clock = ManualClock::new(T0);
    for i in 0..8 {
        store
            .upsert(&reminder("gone", &format!("stuck{i}"), T0 - 100 + i, None))
            .await
            .unwrap();
    }
    store
        .upsert(&reminder("alive", "late", T0, None))
        .await
        .unwrap();
    let sink = PartlyDownSink::default();
    sink.down.lock().unwrap().insert("gone".into());
    let sched = ReminderScheduler::new(
        Arc::new(store.clone()),
        ReminderSchedulerOptions {
            clock: clock.clone(),
            batch: 4,
            retry_backoff: Duration::from_secs(60),
            ..ReminderSchedulerOptions::default()
        },
    );
    let mut fired = 0;
    for _ in 0..4 {
        fired += sched.tick(&sink).await.unwrap();
    }
    assert_eq!(fired, 1);
    assert_eq!(sink.delivered(), vec!["late"]);
    for i in 0..8 {
        assert_eq!(sink.attempts_of(&format!("stuck{i}")), 1, "stuck{i}");
    }
}
