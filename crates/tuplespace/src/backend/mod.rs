//! The storage interface and its implementations.
//!
//! A backend stores entries and claims them atomically; it knows nothing of waiters.
//! Blocking, arrival order and notification live above it, in [`crate::Spaces`], which is
//! why every backend gets the same semantics.

use std::collections::HashSet;

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::{Entry, NewTuple, Result, SpaceId, Template, Timestamp, TupleId};

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
pub mod sqlite;
#[cfg(any(feature = "postgres", feature = "redis"))]
mod wake;

/// A write seen by a backend that another process (or backend instance) made.
#[derive(Debug, Clone, PartialEq)]
pub enum External {
    /// These tuples were written to this space.
    Written {
        /// the space
        space: SpaceId,
        /// the new tuples
        ids: Vec<TupleId>,
    },
    /// Notifications may have been lost (a reconnect): every waiter should look again.
    Resync,
}

/// What a backend can do beyond the basic contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Tuples survive the process that wrote them.
    pub durable: bool,
    /// Writes by another process wake waiters in this one ([`Backend::watch`]).
    pub cross_process_wakeups: bool,
}

/// Storage for tuple spaces.
///
/// Contract, checked by the conformance suite:
/// - ids are unique within the backend and never reused;
/// - `find`, `take`, `take_all` return entries oldest (lowest id) first;
/// - an entry whose `expires_at <= now` is never returned, counted or renewed;
/// - `take_by_id`, `take` and `take_all` are atomic claims: one entry is returned by at most
///   one call, across every process sharing the storage;
/// - `insert` is atomic: all entries become visible or none.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for errors and benchmarks ("memory", "sqlite"...).
    fn name(&self) -> &'static str;

    /// What this backend offers.
    fn capabilities(&self) -> Capabilities;

    /// True if dropping any of this backend's futures after its first poll cannot lose a
    /// claimed entry (the in-memory backend completes every call in one poll). Otherwise
    /// the space runs claims in a task of their own and puts back what nobody received.
    fn cancel_safe(&self) -> bool {
        false
    }

    /// Write tuples atomically; returns their ids in order.
    async fn insert(&self, space: &SpaceId, tuples: &[NewTuple]) -> Result<Vec<TupleId>>;

    /// Put back entries that were taken, with their ids and leases (transaction abort, a
    /// claim nobody received). Entries already present are left alone.
    async fn restore(&self, space: &SpaceId, entries: &[Entry]) -> Result<()>;

    /// The live entry with this id.
    async fn get(&self, space: &SpaceId, id: TupleId, now: Timestamp) -> Result<Option<Entry>>;

    /// Up to `limit` live matching entries, oldest first.
    async fn find(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Entry>>;

    /// Claim the oldest live matching entry whose id is not in `exclude`.
    async fn take(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        exclude: &HashSet<TupleId>,
    ) -> Result<Option<Entry>>;

    /// Claim the entry with this id if it is live.
    async fn take_by_id(
        &self,
        space: &SpaceId,
        id: TupleId,
        now: Timestamp,
    ) -> Result<Option<Entry>>;

    /// Claim every live matching entry whose id is not in `exclude`. By default: find them,
    /// then claim each by id (one that another caller claimed first is skipped).
    async fn take_all(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        exclude: &HashSet<TupleId>,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        for e in self.find(space, template, now, usize::MAX).await? {
            if exclude.contains(&e.id) {
                continue;
            }
            if let Some(got) = self.take_by_id(space, e.id, now).await? {
                out.push(got);
            }
        }
        Ok(out)
    }

    /// The number of live matching entries. By default: how many `find` returns.
    async fn count(&self, space: &SpaceId, template: &Template, now: Timestamp) -> Result<u64> {
        Ok(self.find(space, template, now, usize::MAX).await?.len() as u64)
    }

    /// Set a live entry's lease deadline (`None`: forever). False if there is no live entry.
    async fn renew(
        &self,
        space: &SpaceId,
        id: TupleId,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool>;

    /// Writes made through other instances of this backend, if it can see them. Called once
    /// by [`crate::Spaces::start`].
    async fn watch(&self) -> Result<Option<BoxStream<'static, External>>> {
        Ok(None)
    }
}
