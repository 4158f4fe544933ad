//! Durable reminders: timers stored with the journal backend that survive a restart.
//!
//! A reminder belongs to an actor (its [`StreamId`]) and has a name, a due time, an optional
//! period and a payload. A [`ReminderScheduler`] polls the store, hands each due reminder to a
//! [`ReminderSink`] and only then reschedules it (periodic) or deletes it (one-shot), so
//! delivery is at-least-once.
//!
//! Missed ticks: when the process was down across several periods, the reminder fires
//! **once** on recovery (with [`FiredReminder::missed_ticks`] telling how many ticks were
//! coalesced) and its next due time is the first tick strictly after "now" on the original
//! schedule (`due + k * period`), so a long outage never causes a burst of fires.
//!
//! Failed deliveries: a reminder whose delivery fails (its owner is not running, its handler
//! failed) never blocks the others due in the same poll. It is retried with exponential
//! backoff ([`ReminderSchedulerOptions::retry_backoff`] doubling up to
//! [`ReminderSchedulerOptions::max_retry_backoff`]) and, after
//! [`ReminderSchedulerOptions::max_attempts`] failed deliveries of the same tick, that tick is
//! given up: a periodic reminder moves to its next tick, a one-shot reminder is deleted, and a
//! warning names it. The retry state lives in the scheduler (in memory): a restart retries a
//! failing reminder from its first attempt again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::{Clock, Error, Result, StreamId, SystemClock};

/// A durable timer owned by an actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    /// The actor that owns the reminder.
    pub owner: StreamId,
    /// Unique per owner.
    pub name: String,
    /// When it fires next (ms since the Unix epoch).
    pub due_at_ms: u64,
    /// Repeat period in ms; `None` for a one-shot reminder.
    pub period_ms: Option<u64>,
    /// Opaque bytes delivered with each fire.
    pub payload: Vec<u8>,
}

impl Reminder {
    /// Checks the fields (non-empty name, non-zero period).
    pub fn validate(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::InvalidArgument("reminder name is empty".into()));
        }
        if self.period_ms == Some(0) {
            return Err(Error::InvalidArgument("reminder period must be > 0".into()));
        }
        if self.due_at_ms > i64::MAX as u64 || self.period_ms.unwrap_or(0) > i64::MAX as u64 {
            return Err(Error::InvalidArgument("reminder time out of range".into()));
        }
        Ok(())
    }

    /// The next due time after firing at `now_ms` and how many ticks were missed (coalesced),
    /// or `None` for a one-shot reminder.
    pub fn next_after(&self, now_ms: u64) -> (Option<u64>, u64) {
        match self.period_ms {
            None => (None, 0),
            Some(p) => {
                let p = p.max(1);
                let late = now_ms.saturating_sub(self.due_at_ms);
                let missed = late / p;
                (Some(self.due_at_ms + (missed + 1) * p), missed)
            }
        }
    }
}

/// Where reminders are stored. Implementations: [`crate::MemoryReminderStore`],
/// `SqliteReminderStore` (feature `sqlite`), `PostgresReminderStore` (feature `postgres`).
#[async_trait]
pub trait ReminderStore: Send + Sync + 'static {
    /// Creates or replaces the reminder `(owner, name)`.
    async fn upsert(&self, reminder: &Reminder) -> Result<()>;
    /// Deletes a reminder; returns whether it existed.
    async fn cancel(&self, owner: &StreamId, name: &str) -> Result<bool>;
    /// One reminder.
    async fn get(&self, owner: &StreamId, name: &str) -> Result<Option<Reminder>>;
    /// All reminders of an owner.
    async fn list(&self, owner: &StreamId) -> Result<Vec<Reminder>>;
    /// Reminders due at `now_ms`, oldest first, at most `limit`.
    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Reminder>>;
    /// After `fired` was delivered: moves it to `next_due_ms`, or deletes it when `None`.
    /// Only acts if the stored due time still equals `fired.due_at_ms` (a concurrent upsert
    /// wins); returns whether it acted.
    async fn reschedule(&self, fired: &Reminder, next_due_ms: Option<u64>) -> Result<bool>;
}

/// A reminder being delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiredReminder {
    /// The reminder as stored when it fired (`due_at_ms` is the tick that fired).
    pub reminder: Reminder,
    /// How many further ticks passed while nobody was polling (coalesced into this fire).
    pub missed_ticks: u64,
    /// When it was fired.
    pub fired_at_ms: u64,
}

/// Receives fired reminders. The reminder is rescheduled only after `deliver` returns `Ok`.
#[async_trait]
pub trait ReminderSink: Send + Sync + 'static {
    /// Delivers one fire (for an actor: enqueue a message and wait for its durable ack).
    async fn deliver(&self, fired: FiredReminder) -> Result<()>;
}

#[async_trait]
impl ReminderSink for mpsc::Sender<FiredReminder> {
    async fn deliver(&self, fired: FiredReminder) -> Result<()> {
        self.send(fired).await.map_err(|_| Error::Closed)
    }
}

/// Options of a [`ReminderScheduler`].
#[derive(Debug, Clone)]
pub struct ReminderSchedulerOptions {
    /// How often the store is polled.
    pub poll_interval: Duration,
    /// At most this many reminders per poll.
    pub batch: usize,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Failed deliveries of one tick before that tick is given up (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry of a failed delivery; doubles with each further failure.
    pub retry_backoff: Duration,
    /// Upper bound of the retry wait.
    pub max_retry_backoff: Duration,
}

impl Default for ReminderSchedulerOptions {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(100),
            batch: 256,
            clock: Arc::new(SystemClock),
            max_attempts: 10,
            retry_backoff: Duration::from_millis(200),
            max_retry_backoff: Duration::from_secs(30),
        }
    }
}

/// Polls a [`ReminderStore`] and fires due reminders.
#[derive(Debug, Clone)]
pub struct ReminderScheduler {
    store: Arc<dyn ReminderStore>,
    options: ReminderSchedulerOptions,
    /// Reminders whose last delivery failed, by `(owner, name)`; shared by clones.
    retries: Arc<Mutex<HashMap<(StreamId, String), Retry>>>,
}

/// Retry state of one failing tick of one reminder.
#[derive(Debug, Clone)]
struct Retry {
    /// The tick being retried (the stored `due_at_ms` when it first failed).
    due_at_ms: u64,
    /// Failed deliveries so far.
    attempts: u32,
    /// Not retried before this time (ms since the Unix epoch).
    retry_at_ms: u64,
}

/// What one [`ReminderScheduler::tick_report`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    /// Delivered and rescheduled.
    pub fired: usize,
    /// Delivery failed; will be retried after a backoff.
    pub failed: usize,
    /// Due but still waiting for the backoff of an earlier failure.
    pub backing_off: usize,
    /// Failed `max_attempts` times: this tick was given up (periodic: moved to the next
    /// tick; one-shot: deleted).
    pub given_up: Vec<(StreamId, String)>,
}

impl std::fmt::Debug for dyn ReminderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReminderStore")
    }
}

impl ReminderScheduler {
    /// A scheduler over `store`.
    pub fn new(store: Arc<dyn ReminderStore>, options: ReminderSchedulerOptions) -> Self {
        Self {
            store,
            options,
            retries: Arc::default(),
        }
    }

    /// Fires everything due now through `sink`; returns how many were delivered.
    ///
    /// A failed delivery does not stop the others; see [`Self::tick_report`].
    pub async fn tick(&self, sink: &dyn ReminderSink) -> Result<usize> {
        Ok(self.tick_report(sink).await?.fired)
    }

    /// Fires everything due now through `sink` and reports what happened to each reminder.
    ///
    /// Only a store error fails the whole tick; a delivery error is counted, backed off and
    /// retried on a later tick (see the module docs).
    pub async fn tick_report(&self, sink: &dyn ReminderSink) -> Result<TickReport> {
        let now = self.options.clock.now_ms();
        // Reminders in backoff are due but skipped; fetch enough that they cannot fill the
        // batch and starve reminders due after them.
        let in_backoff = self.retries_lock().len();
        let due = self
            .store
            .due(now, self.options.batch.saturating_add(in_backoff))
            .await?;
        let mut report = TickReport::default();
        for reminder in due {
            let key = (reminder.owner.clone(), reminder.name.clone());
            let prior = self.retries_lock().get(&key).cloned();
            // A retry entry for another tick is stale (the reminder was re-upserted).
            let prior = prior.filter(|r| r.due_at_ms == reminder.due_at_ms);
            if prior.as_ref().is_some_and(|r| now < r.retry_at_ms) {
                report.backing_off += 1;
                continue;
            }
            let (next, missed_ticks) = reminder.next_after(now);
            let delivered = sink
                .deliver(FiredReminder {
                    reminder: reminder.clone(),
                    missed_ticks,
                    fired_at_ms: now,
                })
                .await;
            match delivered {
                Ok(()) => {
                    self.retries_lock().remove(&key);
                    self.store.reschedule(&reminder, next).await?;
                    report.fired += 1;
                }
                Err(error) => {
                    let attempts = prior.map_or(0, |r| r.attempts).saturating_add(1);
                    if attempts >= self.options.max_attempts.max(1) {
                        tracing::warn!(
                            owner = %reminder.owner,
                            reminder = %reminder.name,
                            attempts,
                            %error,
                            "reminder delivery failed too often; this tick is given up"
                        );
                        self.retries_lock().remove(&key);
                        self.store.reschedule(&reminder, next).await?;
                        report.given_up.push(key);
                    } else {
                        let wait = self.backoff(attempts);
                        tracing::debug!(
                            owner = %reminder.owner,
                            reminder = %reminder.name,
                            attempts,
                            %error,
                            retry_in_ms = wait,
                            "reminder delivery failed; retrying after a backoff"
                        );
                        self.retries_lock().insert(
                            key,
                            Retry {
                                due_at_ms: reminder.due_at_ms,
                                attempts,
                                retry_at_ms: now.saturating_add(wait),
                            },
                        );
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// The wait after the `attempts`-th failure: `retry_backoff * 2^(attempts-1)`, capped.
    fn backoff(&self, attempts: u32) -> u64 {
        let base = u64::try_from(self.options.retry_backoff.as_millis()).unwrap_or(u64::MAX);
        let cap = u64::try_from(self.options.max_retry_backoff.as_millis()).unwrap_or(u64::MAX);
        let factor = 1u64
            .checked_shl(attempts.saturating_sub(1))
            .unwrap_or(u64::MAX);
        base.saturating_mul(factor).min(cap)
    }

    fn retries_lock(&self) -> std::sync::MutexGuard<'_, HashMap<(StreamId, String), Retry>> {
        // The map holds no invariant a panicking holder could break half-way.
        self.retries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the poll loop in a task until the handle is shut down or dropped.
    pub fn start(self, sink: Arc<dyn ReminderSink>) -> ReminderSchedulerHandle {
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut interval = tokio::time::interval(self.options.poll_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {
                        if let Err(e) = self.tick(sink.as_ref()).await {
                            tracing::warn!(error = %e, "reminder poll failed");
                        }
                    }
                    changed = stop_rx.changed() => {
                        if changed.is_err() || *stop_rx.borrow() {
                            break;
                        }
                    }
                }
            }
        });
        ReminderSchedulerHandle {
            stop: stop_tx,
            task: Some(task),
        }
    }
}

/// Controls a running scheduler; dropping it stops the loop.
#[derive(Debug)]
pub struct ReminderSchedulerHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl ReminderSchedulerHandle {
    /// Stops the loop and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReminderSchedulerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(due: u64, period: Option<u64>) -> Reminder {
        Reminder {
            owner: StreamId::new("t", "n", "a"),
            name: "r".into(),
            due_at_ms: due,
            period_ms: period,
            payload: vec![],
        }
    }

    #[test]
    fn missed_ticks_coalesce_into_one_fire() {
        assert_eq!(r(1000, Some(100)).next_after(1000), (Some(1100), 0));
        assert_eq!(r(1000, Some(100)).next_after(1550), (Some(1600), 5));
        assert_eq!(r(1000, None).next_after(5000), (None, 0));
    }
}
