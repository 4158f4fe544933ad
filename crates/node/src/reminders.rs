//! Durable reminders on a node: a [`ReminderFacet`] per virtual actor activation, and the
//! node's [`ReminderScheduler`] delivering fired reminders to activations, activating a
//! virtual actor that is not running.
//!
//! A handler sets a reminder with `ctx.service::<Reminders>()`
//! ([`Reminders::set`]/[`Reminders::cancel`]/[`Reminders::list`]). Reminders are stored in
//! the node's journal database (`<data_dir>/journal.db`, or the journal's PostgreSQL schema),
//! owned by the activation's journal stream ([`crate::stream_id`]), so they survive a crash
//! and a restart of the node. The scheduler ([`start`]) polls the store; a due reminder goes
//! through the registry's activation path ([`crate::Registry::lease`]) as an ask of
//! `msg_type` [`plexspaces_journal::REMINDER_MSG_TYPE`] with a
//! [`plexspaces_journal::ReminderFired`] JSON body and an idempotency key per tick (a durable
//! actor handles a re-delivered tick once), and is rescheduled only after the actor answered
//! (at least once).
//!
//! Invariant: the owner of a reminder set through this facet is always the activation's own
//! stream, so an actor cannot set or cancel another actor's reminders.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use plexspaces_core::{Actor, Context, Envelope, Facet};
use plexspaces_journal::{
    Clock, FiredReminder, PostgresOptions, PostgresReminderStore, Reminder, ReminderFired,
    ReminderScheduler, ReminderSchedulerHandle, ReminderSchedulerOptions, ReminderSink,
    ReminderStore, SqliteOptions, SqliteReminderStore, SteadyClock, StreamId,
    IDEMPOTENCY_KEY_HEADER, REMINDER_MSG_TYPE,
};

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::registry::{ActivationKey, Registry};

/// Opens the reminder store beside the node's journal: SQLite at
/// [`NodeConfig::journal_path`], or the journal's PostgreSQL schema.
pub async fn open_store(config: &NodeConfig) -> Result<Arc<dyn ReminderStore>> {
    let cannot = |e: plexspaces_journal::Error| {
        Error::Config(format!(
            "cannot open the reminder store: {}",
            crate::secret::mask_secrets(&e.to_string())
        ))
    };
    if let Some(url) = &config.journal.url {
        let store = PostgresReminderStore::open(
            PostgresOptions::new(url.expose()).with_schema(&config.journal.schema),
        )
        .await
        .map_err(cannot)?;
        return Ok(Arc::new(store));
    }
    let store = SqliteReminderStore::open(SqliteOptions::new(config.journal_path()))
        .await
        .map_err(cannot)?;
    Ok(Arc::new(store))
}

/// The reminders of one activation, as its handlers see them
/// (`ctx.service::<Reminders>()`).
#[derive(Clone)]
pub struct Reminders {
    store: Arc<dyn ReminderStore>,
    owner: StreamId,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Reminders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reminders")
            .field("owner", &self.owner)
            .finish()
    }
}

/// The longest delay or period of a reminder: ten years.
pub const MAX_REMINDER_DELAY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

impl Reminders {
    /// Sets (or replaces) the reminder `name`: due `after` from now, then every `period`
    /// if one is given, carrying `payload`. In a durable actor (one with a
    /// `plexspaces_journal::Durability` service) this is a journaled side effect, so
    /// replaying the message after a restart does not set it again.
    pub async fn set<A: Actor>(
        &self,
        ctx: &Context<A>,
        name: &str,
        after: Duration,
        period: Option<Duration>,
        payload: &[u8],
    ) -> Result<()> {
        if after > MAX_REMINDER_DELAY || period.is_some_and(|p| p > MAX_REMINDER_DELAY) {
            return Err(Error::BadRequest(
                "a reminder's delay and period must be at most ten years".into(),
            ));
        }
        let reminder = Reminder {
            owner: self.owner.clone(),
            name: name.to_owned(),
            due_at_ms: self.clock.now_ms().saturating_add(after.as_millis() as u64),
            period_ms: period.map(|p| p.as_millis() as u64),
            payload: payload.to_vec(),
        };
        reminder
            .validate()
            .map_err(|e| Error::BadRequest(format!("reminder: {e}")))?;
        let store = self.store.clone();
        once(ctx, &format!("reminder.set/{name}"), async move {
            store.upsert(&reminder).await
        })
        .await
    }

    /// Cancels the reminder `name`; whether it existed. Journaled like [`Reminders::set`].
    pub async fn cancel<A: Actor>(&self, ctx: &Context<A>, name: &str) -> Result<bool> {
        let (store, owner, name) = (self.store.clone(), self.owner.clone(), name.to_owned());
        once(ctx, &format!("reminder.cancel/{name}"), async move {
            store.cancel(&owner, &name).await
        })
        .await
    }

    /// This activation's reminders.
    pub async fn list(&self) -> Result<Vec<Reminder>> {
        self.store.list(&self.owner).await.map_err(storage)
    }
}

/// Runs `work` as a journaled side effect of a durable actor (once; its outcome replayed),
/// or plainly in an actor without durability.
async fn once<A, T, F>(ctx: &Context<A>, name: &str, work: F) -> Result<T>
where
    A: Actor,
    T: serde::Serialize + serde::de::DeserializeOwned,
    F: std::future::Future<Output = plexspaces_journal::Result<T>>,
{
    match ctx.service::<plexspaces_journal::Durability>() {
        Some(durability) => {
            let outcome: std::result::Result<T, String> = durability
                .side_effect(
                    name,
                    |_| async move { work.await.map_err(|e| e.to_string()) },
                )
                .await
                .map_err(storage)?;
            outcome.map_err(|e| Error::Io(format!("reminder store: {e}")))
        }
        None => work.await.map_err(storage),
    }
}

fn storage(e: plexspaces_journal::Error) -> Error {
    Error::Io(format!("reminder store: {e}"))
}

/// Gives an activation its [`Reminders`].
#[derive(Debug)]
pub struct ReminderFacet {
    reminders: Arc<Reminders>,
}

impl ReminderFacet {
    /// Reminders of the activation at `key`, in `store`.
    pub fn new(store: Arc<dyn ReminderStore>, key: &ActivationKey) -> Arc<Self> {
        Arc::new(ReminderFacet {
            reminders: Arc::new(Reminders {
                store,
                owner: crate::state::stream_id(key),
                // Immune to wall-clock jumps while the node runs (see `SteadyClock`).
                clock: SteadyClock::shared(),
            }),
        })
    }
}

#[async_trait]
impl Facet for ReminderFacet {
    fn name(&self) -> &'static str {
        "reminders"
    }

    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.reminders.clone())
    }
}

/// The activation a reminder owner names: the inverse of [`crate::stream_id`].
pub fn activation_of(owner: &StreamId) -> Option<ActivationKey> {
    let (ty, key) = owner.actor_id.split_once('/')?;
    Some(ActivationKey::new(
        &owner.tenant,
        &owner.namespace,
        &unescape(ty)?,
        &unescape(key)?,
    ))
}

fn unescape(part: &str) -> Option<String> {
    let mut out = Vec::with_capacity(part.len());
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = part.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Delivers fired reminders through the registry: the owner's activation is leased
/// (activated if it is not running) and asked.
#[derive(Debug, Clone)]
pub struct RegistrySink {
    registry: Registry,
    timeout: Duration,
    lateness: crate::lateness::LatenessMetrics,
}

#[async_trait]
impl ReminderSink for RegistrySink {
    async fn deliver(&self, fired: FiredReminder) -> plexspaces_journal::Result<()> {
        let owner = &fired.reminder.owner;
        let Some(key) = activation_of(owner) else {
            return Err(plexspaces_journal::Error::InvalidArgument(format!(
                "reminder owner {owner:?} names no activation"
            )));
        };
        let failed = |e: String| plexspaces_journal::Error::Backend {
            retryable: true,
            message: format!(
                "reminder {} not delivered to {key}: {e}",
                fired.reminder.name
            ),
        };
        let body = ReminderFired {
            name: fired.reminder.name.clone(),
            payload: fired.reminder.payload.clone(),
            due_at_ms: fired.reminder.due_at_ms,
            missed_ticks: fired.missed_ticks,
        };
        let env = Envelope::json(REMINDER_MSG_TYPE, &body)
            .map_err(|e| plexspaces_journal::Error::Codec(e.to_string()))?
            .with_header(
                IDEMPOTENCY_KEY_HEADER,
                format!("reminder/{}/{}", body.name, body.due_at_ms),
            );
        let lease = self
            .registry
            .lease(&key)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let outcome = lease.pid().try_ask_envelope(env, self.timeout).await;
        lease.record(outcome.is_ok());
        if outcome.is_ok() {
            let now = plexspaces_journal::Clock::now_ms(&*SteadyClock::shared());
            self.lateness
                .reminder_delivered(fired.reminder.due_at_ms, now);
        }
        outcome.map(drop).map_err(|e| failed(e.to_string()))
    }
}

/// Starts the node's reminder scheduler over `store`, delivering through `registry` and
/// waiting up to `timeout` for each actor's answer.
pub fn start(
    store: Arc<dyn ReminderStore>,
    registry: Registry,
    lateness: crate::lateness::LatenessMetrics,
    timeout: Duration,
    poll_interval: Duration,
) -> ReminderSchedulerHandle {
    let scheduler = ReminderScheduler::new(
        store,
        ReminderSchedulerOptions {
            poll_interval,
            clock: SteadyClock::shared(),
            ..ReminderSchedulerOptions::default()
        },
    );
    scheduler.start(Arc::new(RegistrySink {
        registry,
        timeout,
        lateness,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_name_their_activation() {
        for (ty, key) in [("counter", "a/b"), ("count@er", "%2F"), ("c", "")] {
            let k = ActivationKey::new("t", "ns", ty, key);
            assert_eq!(activation_of(&crate::state::stream_id(&k)), Some(k));
        }
        assert_eq!(activation_of(&StreamId::new("t", "n", "no-slash")), None);
        assert_eq!(activation_of(&StreamId::new("t", "n", "a/%zz")), None);
    }
}
