//! `plexspaces-journal`: the durability layer of PlexSpaces.
//!
//! What it is:
//! - [`Journal`]: per-actor streams (keyed by tenant, namespace and actor id) of checksummed
//!   entries with fenced, batched appends, snapshots and truncation. Backends: in-memory
//!   ([`MemoryJournal`], the default), SQLite (feature `sqlite`, WAL, group commit) and
//!   PostgreSQL (feature `postgres`, group commit). [`conformance`] is the one test suite
//!   every backend passes.
//! - [`DurableExecution`]: the engine that makes a message handler durable: journal before
//!   acknowledging, deterministic replay of side effects, clock reads and random values,
//!   idempotent requests, checkpoints and epoch fencing. [`Durable`] drives a
//!   [`DurableHandler`] with it and shows the exact call order the actor glue uses.
//! - [`event_sourcing`]: persist events, fold them into state, rebuild the state at any
//!   past sequence number (time travel).
//! - [`reminders`]: durable timers ([`ReminderStore`]) that survive a restart.
//!
//! What it is not: it knows nothing about actors, mailboxes or supervision
//! (`plexspaces-core` does); the durability facet there is a thin layer over
//! [`DurableExecution`]. It does not make external systems exactly-once: a side effect is
//! at-least-once and receives an [`IdempotencyKey`] so the external system can deduplicate.
//!
//! Invariants:
//! - Every accepted message is journaled before its reply or ack is released
//!   ([`DurableExecution::commit`] returns only after the append is durable).
//! - A side effect whose result is journaled is never executed again; replay returns the
//!   journaled result.
//! - Epochs strictly increase per stream; an append or snapshot with an older epoch fails
//!   with [`Error::Fenced`], so two activations can never both write.
//! - Replay that asks for different steps than the journal holds fails with
//!   [`Error::JournalMismatch`] and writes nothing.
//! - A torn or corrupt entry at the tail is truncated on activation; corruption followed by
//!   valid entries is reported as [`Error::Corrupt`], never silently dropped.
//! - Entries are only truncated once covered by a snapshot.
//!
//! See `docs/durability.md` for the exact guarantees.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use plexspaces_journal::{Begin, DurableExecution, DurableOptions, Journal, MemoryJournal, StreamId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> plexspaces_journal::Result<()> {
//! let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
//! let stream = StreamId::new("default", "bank", "account-1");
//! let mut exec = DurableExecution::activate(journal.clone(), stream.clone(), DurableOptions::default()).await?;
//! while let Some(_m) = exec.next_replay()? { /* nothing journaled yet */ }
//!
//! let mut balance = 0u64;
//! if let Begin::Started { .. } = exec.begin_message(b"deposit 10", Some("req-1")).await? {
//!     let receipt: String = exec
//!         .side_effect("notify", |key| async move { format!("sent with key {key}") })
//!         .await?;
//!     assert!(receipt.contains("/1/0"));
//!     balance += 10;
//!     let reply = exec.commit(balance.to_string().into_bytes()).await?; // durable now
//!     assert_eq!(reply, b"10");
//! }
//! // a duplicate request gets the first reply without running the handler
//! assert_eq!(exec.begin_message(b"deposit 10", Some("req-1")).await?, Begin::Duplicate(b"10".to_vec()));
//! # Ok(())
//! # }
//! ```

mod codec;
pub mod conformance;
mod durable;
mod engine;
mod error;
pub mod event_sourcing;
pub mod facet;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod group;
mod journal;
mod memory;
pub mod reminders;
mod types;

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use durable::{Durable, DurableHandler};
pub use engine::{
    failed_message, resolve_failed, Begin, CheckpointPolicy, CheckpointReport, DurableExecution,
    DurableOptions, FailedMessage, FaultHook, FaultPoint, IdempotencyKey, ReplayMessage,
    Resolution, RetryPolicy,
};
pub use error::{Error, Result};
pub use facet::{
    ActorReminderSink, Durability, DurabilityFacet, ReminderFired, IDEMPOTENCY_KEY_HEADER,
    REMINDER_MSG_TYPE,
};
pub use journal::{Committing, Journal};
pub use memory::{MemoryJournal, MemoryReminderStore};
pub use reminders::{
    FiredReminder, Reminder, ReminderScheduler, ReminderSchedulerHandle, ReminderSchedulerOptions,
    ReminderSink, ReminderStore, TickReport,
};
pub use types::{
    crc32, Clock, Entry, EntryKind, Epoch, ManualClock, Seq, Snapshot, SteadyClock, StreamId,
    SystemClock,
};

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use group::GroupCommitStats;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresJournal, PostgresOptions, PostgresReminderStore};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteJournal, SqliteOptions, SqliteReminderStore};
