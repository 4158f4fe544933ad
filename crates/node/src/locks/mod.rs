//! The node's locks: leases with fencing tokens on the key-value store's backend (`[kv]`:
//! SQLite by default, memory, PostgreSQL or Redis), served at
//! `/api/v1/locks/{namespace}/{lock}/...` ([`http`]).
//!
//! A lock is scoped by the caller's tenant and the namespace, like a key. `acquire` takes it
//! for a holder for a lease (waiting up to `wait_ms` for it to come free) and answers a
//! fencing token larger than every earlier acquisition's; `renew` extends a held lease
//! (`lease_lost` once it lapsed or was taken over); `release` gives it up. A holder passes
//! its token with each guarded write (`PUT /api/v1/kv/{ns}/{key}?fence=T`), so a write by a
//! holder whose lease lapsed and was taken over is refused (`fenced`) once the new
//! holder has written.
//!
//! Not served over gRPC (not built): the gRPC API has no lock service yet.

pub mod http;

use std::time::Duration;

use plexspaces_storage::Lease;

use crate::error::{Error, Result};
use crate::kv::{scope, NodeKv};
use crate::service::{field_id, Caller};

/// The longest lease a request takes: one hour.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);
/// The longest an acquire waits for the lock (a long poll; ask again for longer).
pub const MAX_WAIT: Duration = Duration::from_secs(5);

/// The lock service: the caller's scopes on the node's locks. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LockService {
    store: NodeKv,
}

fn check(lock: &str, holder: &str, lease: Option<Duration>) -> Result<()> {
    field_id("lock", lock)?;
    field_id("holder", holder)?;
    if let Some(lease) = lease {
        if lease.is_zero() || lease > MAX_LEASE {
            return Err(Error::BadRequest(format!(
                "lease_ms must be 1 to {}",
                MAX_LEASE.as_millis()
            )));
        }
    }
    Ok(())
}

impl LockService {
    /// The service over `store`.
    pub fn new(store: NodeKv) -> Self {
        LockService { store }
    }

    /// Takes `lock` for `holder` for `lease`, waiting up to `wait` (at most [`MAX_WAIT`])
    /// for it to come free; `None` if someone else still holds it.
    pub async fn acquire(
        &self,
        caller: &Caller,
        ns: &str,
        lock: &str,
        holder: &str,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Lease>> {
        check(lock, holder, Some(lease))?;
        if wait > MAX_WAIT {
            return Err(Error::BadRequest(format!(
                "wait_ms must be at most {}",
                MAX_WAIT.as_millis()
            )));
        }
        let scope = scope(caller, ns)?;
        Ok(self
            .store
            .locks
            .acquire(&scope, lock, holder, lease, wait)
            .await?)
    }

    /// Extends the lease `token` of `holder` to `lease` from now.
    pub async fn renew(
        &self,
        caller: &Caller,
        ns: &str,
        lock: &str,
        holder: &str,
        token: u64,
        lease: Duration,
    ) -> Result<()> {
        check(lock, holder, Some(lease))?;
        let scope = scope(caller, ns)?;
        let held = Lease {
            lock: lock.to_owned(),
            holder: holder.to_owned(),
            token,
        };
        Ok(self.store.locks.renew(&scope, &held, lease).await?)
    }

    /// Gives the lock up; whether this lease still held it.
    pub async fn release(
        &self,
        caller: &Caller,
        ns: &str,
        lock: &str,
        holder: &str,
        token: u64,
    ) -> Result<bool> {
        check(lock, holder, None)?;
        let scope = scope(caller, ns)?;
        let held = Lease {
            lock: lock.to_owned(),
            holder: holder.to_owned(),
            token,
        };
        Ok(self.store.locks.release(&scope, &held).await?)
    }
}
