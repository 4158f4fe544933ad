use std::sync::Arc;

use plexspaces_journal::reminders::{FiredReminder, ReminderSchedulerOptions};
use plexspaces_journal::{
    ManualClock, MemoryReminderStore, Reminder, ReminderScheduler, ReminderStore, StreamId,
};
use tokio::sync::mpsc;

use crate::support::unique_name;

const T0: u64 = 1_700_000_000_000;

fn reminder(owner: &StreamId, name: &str, due: u64, period: Option<u64>) -> Reminder {
    Reminder {
        owner: owner.clone(),
        name: name.into(),
        due_at_ms: due,
        period_ms: period,
        payload: name.as_bytes().to_vec(),
    }
}

fn scheduler(store: Arc<dyn ReminderStore>, clock: Arc<ManualClock>) -> ReminderScheduler {
    ReminderScheduler::new(
        store,
        ReminderSchedulerOptions {
            clock,
            ..ReminderSchedulerOptions::default()
        },
    )
}

/// Schedules reminders with one store, "restarts" by opening a second one on the same
/// storage after the process was down for 5.5 periods, and checks each fires once.
async fn survives_restart<F, Fut>(open: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn ReminderStore>>,
{
    let owner = StreamId::new("t", "rem", &unique_name("actor"));
    let clock = ManualClock::new(T0);
    {
        let store = open().await;
        store
            .upsert(&reminder(&owner, "tick", T0 + 1_000, Some(1_000)))
            .await
            .unwrap();
        store
            .upsert(&reminder(&owner, "once", T0 + 2_000, None))
            .await
            .unwrap();
        store
            .upsert(&reminder(&owner, "later", T0 + 60_000, None))
            .await
            .unwrap();
        store
            .upsert(&reminder(&owner, "cancelled", T0 + 10, None))
            .await
            .unwrap();
        assert!(store.cancel(&owner, "cancelled").await.unwrap());
        let (tx, mut rx) = mpsc::channel::<FiredReminder>(16);
        assert_eq!(scheduler(store, clock.clone()).tick(&tx).await.unwrap(), 0);
        assert!(rx.try_recv().is_err());
    } // the "process" stops here

    clock.set(T0 + 6_500); // down across 5.5 periods of "tick" and past "once"
    let store = open().await;
    assert_eq!(
        store.list(&owner).await.unwrap().len(),
        3,
        "reminders survived the restart"
    );
    let sched = scheduler(store.clone(), clock.clone());
    let (tx, mut rx) = mpsc::channel::<FiredReminder>(16);
    assert_eq!(sched.tick(&tx).await.unwrap(), 2);
    let mut fired = Vec::new();
    while let Ok(f) = rx.try_recv() {
        fired.push(f);
    }
    fired.sort_by(|a, b| a.reminder.name.cmp(&b.reminder.name));
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[0].reminder.name, "once");
    assert_eq!(fired[0].missed_ticks, 0);
    assert_eq!(fired[1].reminder.name, "tick");
    assert_eq!(fired[1].reminder.due_at_ms, T0 + 1_000);
    assert_eq!(
        fired[1].missed_ticks, 5,
        "missed ticks coalesce into one fire"
    );
    assert_eq!(fired[1].reminder.payload, b"tick");
    // nothing more is due now: the periodic one moved to the next tick on its schedule
    assert_eq!(sched.tick(&tx).await.unwrap(), 0);
    assert!(
        store.get(&owner, "once").await.unwrap().is_none(),
        "one-shot deleted after firing"
    );
    assert_eq!(
        store.get(&owner, "tick").await.unwrap().unwrap().due_at_ms,
        T0 + 7_000
    );
    clock.set(T0 + 7_000);
    assert_eq!(sched.tick(&tx).await.unwrap(), 1);
    assert_eq!(rx.try_recv().unwrap().missed_ticks, 0);
}

#[tokio::test]
async fn memory_reminders_fire_once_after_a_gap() {
    let store = MemoryReminderStore::new();
    survives_restart(|| {
        let s: Arc<dyn ReminderStore> = Arc::new(store.clone());
        async move { s }
    })
    .await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_reminders_survive_restart() {
    use plexspaces_journal::{SqliteOptions, SqliteReminderStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rem.db");
    survives_restart(|| {
        let path = path.clone();
        async move {
            let s: Arc<dyn ReminderStore> = Arc::new(
                SqliteReminderStore::open(SqliteOptions::new(path))
                    .await
                    .unwrap(),
            );
            s
        }
    })
    .await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_reminders_survive_restart() {
    use plexspaces_journal::PostgresReminderStore;
    let schema = crate::support::PgSchema::new("rem");
    let opts = schema.options();
    survives_restart(|| {
        let opts = opts.clone();
        async move {
            let s: Arc<dyn ReminderStore> =
                Arc::new(PostgresReminderStore::open(opts).await.unwrap());
            s
        }
    })
    .await;
}

#[tokio::test]
async fn scheduler_loop_delivers_due_reminders() {
    let store: Arc<dyn ReminderStore> = Arc::new(MemoryReminderStore::new());
    let owner = StreamId::new("t", "rem", &unique_name("loop"));
    let clock = ManualClock::new(T0);
    store
        .upsert(&reminder(&owner, "a", T0, None))
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::channel::<FiredReminder>(4);
    let handle = ReminderScheduler::new(
        store.clone(),
        ReminderSchedulerOptions {
            clock,
            poll_interval: std::time::Duration::from_millis(5),
            ..ReminderSchedulerOptions::default()
        },
    )
    .start(Arc::new(tx));
    let fired = rx.recv().await.unwrap();
    assert_eq!(fired.reminder.name, "a");
    handle.shutdown().await;
    assert!(store.get(&owner, "a").await.unwrap().is_none());
}
