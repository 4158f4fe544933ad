//! Distributed locks with leases and fencing tokens, and the in-memory backend.
//!
//! A lock is held under a lease: it lapses by itself unless renewed, so a crashed holder
//! cannot block others forever. Every acquisition gets a fencing token larger than any
//! earlier token of the same lock; a store that remembers the highest token it has seen
//! (here: [`crate::PutOptions::fence`]) refuses a write from a holder whose lease lapsed
//! and was taken over, even if that holder does not know yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::scope::check_key;
use crate::{Error, Result, Scope};

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// the lock name
    pub lock: String,
    /// who holds it
    pub holder: String,
    /// the fencing token: larger than every earlier acquisition's
    pub token: u64,
}

/// Lock storage scoped by tenant and namespace.
///
/// Implementations: [`MemoryLocks`], `SqlStore` (features `sqlite`, `postgres`),
/// `RedisStore` (feature `redis`). All pass [`crate::conformance`]. SQL backends compare
/// lease deadlines against the caller's wall clock, so nodes sharing one database need
/// synchronised clocks (NTP); Redis and memory use the server's own clock.
#[async_trait]
pub trait Locks: Send + Sync + 'static {
    /// Backend name for errors and logs.
    fn backend(&self) -> &'static str;

    /// Take `lock` for `holder` for `lease` if nobody holds it (or the last lease lapsed).
    /// `None`: someone else holds it. Not re-entrant: a holder asking again gets `None`.
    async fn try_acquire(
        &self,
        scope: &Scope,
        lock: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Lease>>;

    /// Extend a held lease to `lease` from now; [`Error::LeaseLost`] if it lapsed or was
    /// taken over.
    async fn renew(&self, scope: &Scope, lease: &Lease, duration: Duration) -> Result<()>;

    /// Give the lock up; whether this lease still held it.
    async fn release(&self, scope: &Scope, lease: &Lease) -> Result<bool>;

    /// [`Locks::try_acquire`], retried every `poll` until `wait` has passed.
    async fn acquire(
        &self,
        scope: &Scope,
        lock: &str,
        holder: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>> {
        let deadline = Instant::now() + wait;
        let poll = Duration::from_millis(20);
        loop {
            if let Some(l) = self.try_acquire(scope, lock, holder, lease).await? {
                return Ok(Some(l));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(poll).await;
        }
    }
}

pub(crate) fn check_lock(lock: &str, holder: &str, lease: Duration) -> Result<()> {
    check_key("lock", lock)?;
    check_key("holder", holder)?;
    if lease.is_zero() {
        return Err(Error::invalid("lease", "must be longer than zero"));
    }
    Ok(())
}

#[derive(Debug)]
struct MemLock {
    holder: Option<String>,
    token: u64,
    expires: Instant,
}

/// Locks in this process's memory. Lease expiry follows tokio's clock.
#[derive(Debug, Default, Clone)]
pub struct MemoryLocks {
    inner: Arc<Mutex<HashMap<(Scope, String), MemLock>>>,
}

impl MemoryLocks {
    /// No locks held.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Locks for MemoryLocks {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn try_acquire(
        &self,
        scope: &Scope,
        lock: &str,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Lease>> {
        check_lock(lock, holder, lease)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        let entry = map
            .entry((scope.clone(), lock.to_owned()))
            .or_insert(MemLock {
                holder: None,
                token: 0,
                expires: now,
            });
        if entry.holder.is_some() && entry.expires > now {
            return Ok(None);
        }
        entry.holder = Some(holder.to_owned());
        entry.token += 1;
        entry.expires = now + lease;
        Ok(Some(Lease {
            lock: lock.to_owned(),
            holder: holder.to_owned(),
            token: entry.token,
        }))
    }

    async fn renew(&self, scope: &Scope, lease: &Lease, duration: Duration) -> Result<()> {
        check_lock(&lease.lock, &lease.holder, duration)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        match map.get_mut(&(scope.clone(), lease.lock.clone())) {
            Some(l)
                if l.token == lease.token
                    && l.holder.as_deref() == Some(lease.holder.as_str())
                    && l.expires > now =>
            {
                l.expires = now + duration;
                Ok(())
            }
            _ => Err(Error::lease_lost(lease)),
        }
    }

    async fn release(&self, scope: &Scope, lease: &Lease) -> Result<bool> {
        let now = Instant::now();
        let mut map = self.inner.lock();
        match map.get_mut(&(scope.clone(), lease.lock.clone())) {
            Some(l)
                if l.token == lease.token && l.holder.as_deref() == Some(lease.holder.as_str()) =>
            {
                l.holder = None;
                Ok(l.expires > now)
            }
            _ => Ok(false),
        }
    }
}
