//! A Linda tuple space: processes (actors) coordinate by writing tuples into a shared,
//! named space and by reading or taking tuples that match a template, without knowing each
//! other or being alive at the same time.
//!
//! What it is: typed [`Tuple`]s, [`Template`]s, a [`Spaces`] engine over a pluggable
//! [`Backend`] (in memory by default; SQLite, PostgreSQL and Redis behind the cargo
//! features `sqlite`, `postgres`, `redis`), [`TupleSpace`] handles with blocking and
//! non-blocking operations, leases, notify, transactions, and a [`Barrier`].
//! What it is not: it does not know about actors. Access from an actor's context is wired by
//! the runtime crate, which hands actors a [`TupleSpace`].
//!
//! ```
//! use std::time::Duration;
//! use plexspaces_tuplespace::{template, tuple, SpaceId, Spaces};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> plexspaces_tuplespace::Result<()> {
//! let spaces = Spaces::memory();
//! let jobs = spaces.space(SpaceId::new("acme", "default", "jobs")?);
//!
//! let worker = {
//!     let jobs = jobs.clone();
//!     tokio::spawn(async move {
//!         let job = jobs.take(&template!("job", ?Int), Duration::from_secs(5)).await?;
//!         let n = job.get(1).and_then(|v| v.as_int()).unwrap_or(0);
//!         jobs.write(tuple!("done", n, n * n)).await
//!     })
//! };
//! jobs.write(tuple!("job", 7)).await?;
//! let done = jobs.read(&template!("done", 7, ?Int), Duration::from_secs(5)).await?;
//! assert_eq!(done, tuple!("done", 7, 49));
//! # worker.await.expect("worker ran")?;
//! # Ok(())
//! # }
//! ```
//!
//! # Matching rules
//!
//! - A tuple is an ordered list of fields; each field is null, bool, 64-bit integer, 64-bit
//!   float, string, bytes or a nested tuple ([`Value`]).
//! - A template matches a tuple only if both have the same arity, and every field matches
//!   the pattern in the same position ([`Pattern`]):
//!   - `_` ([`Pattern::Any`]), the wildcard, matches any field, null and tuples included;
//!   - a typed formal `?Int` ([`Pattern::Type`]) matches any field of exactly that type;
//!     there is no coercion: `?Float` does not match `1`, and `1` does not match `1.0`;
//!   - an actual value ([`Pattern::Exact`]) matches an equal field of the same type. Floats
//!     compare with IEEE `==` (so `0.0` matches `-0.0`); an exact NaN can never match and is
//!     rejected as a malformed template. Strings and bytes compare byte for byte; an exact
//!     nested tuple matches an equal nested tuple;
//!   - a nested template ([`Pattern::Tuple`]) matches a nested tuple field it matches by
//!     these same rules.
//! - Among several matching tuples, `read` and `take` return the oldest (lowest
//!   [`TupleId`]); `read_all` and `take_all` return them oldest first.
//!
//! # Bad input
//!
//! Tuples and templates are checked against [`Limits`] before they reach a backend: arity
//! must be `1..=max_arity` ([`Error::Arity`]); the encoded tuple must fit `max_tuple_bytes`
//! ([`Error::TooLarge`]); nesting must not exceed `max_depth` ([`Error::TooDeep`]); a
//! template that can never match is [`Error::MalformedTemplate`].
//!
//! # Invariants
//!
//! - **Exactly one taker.** When several callers block in [`TupleSpace::take`] for matching
//!   templates and one tuple is written, exactly one of them gets it; every blocked
//!   [`TupleSpace::read`] that matches gets a copy and the tuple stays.
//! - **Arrival order.** Blocked callers of one engine are served in the order they arrived:
//!   a new tuple is set aside for the earliest matching blocked taker, and other takers,
//!   blocking or not, skip it while that taker claims it. (A caller still busy with its
//!   first attempt when the tuple is written has not blocked yet and competes for it like
//!   a non-blocking take.)
//! - **No lost tuples.** A blocked caller whose future is dropped leaves the queue; a tuple
//!   set aside for it goes to the next matching taker or stays in the space. A claim runs
//!   to completion in its own task on backends whose calls are not cancel safe, and what
//!   it took is put back if its caller is gone.
//! - **Leases.** A tuple written with a lease is never returned, counted or renewed once its
//!   deadline has passed on the engine's [`Clock`].
//!
//! # Across processes
//!
//! The invariants above hold among the callers of one [`Spaces`] engine. Across processes
//! sharing a durable backend: a tuple is still taken by at most one caller (every claim is
//! an atomic delete), and lease deadlines are wall-clock milliseconds, so clocks should be
//! synchronised. PostgreSQL (LISTEN/NOTIFY) and Redis (pub/sub) wake waiters in other
//! processes when a tuple is written; arrival order between waiters of different processes
//! is not guaranteed. SQLite has no notification channel: a waiter in one process is not
//! woken by a write from another process; set [`Config::recheck_interval`] so that blocked
//! callers look again periodically.
//!
//! # Durability
//!
//! On SQLite, PostgreSQL and Redis a written tuple survives the process that wrote it (and,
//! for Redis, as long as the server's own persistence allows). A tuple taken inside a
//! [`Transaction`] is removed from storage at once and kept by the transaction until commit
//! or abort: if the process dies with the transaction open, that tuple is lost. A
//! transaction's writes reach storage only at commit, in one atomic write.

pub mod actors;
pub mod backend;
mod barrier;
mod clock;
pub mod codec;
mod error;
mod id;
mod space;
mod tuple;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use actors::{ScopedSpaces, TupleSpaceContext, TupleSpaceFacet};
pub use backend::memory::MemoryBackend;
pub use backend::{Backend, Capabilities, External};
pub use barrier::{Barrier, BarrierWaitResult};
pub use clock::{Clock, ManualClock, Timestamp, TokioClock};
pub use error::{Error, Result};
pub use id::{Entry, NewTuple, SpaceId, TupleId};
pub use space::{
    Config, Lease, Spaces, Subscription, TakeLease, Transaction, TupleSpace, WriteEvent,
};
pub use tuple::{FieldType, IntoPattern, Limits, Pattern, Template, Tuple, Value};

#[cfg(feature = "postgres")]
pub use backend::postgres::{PostgresBackend, PostgresOptions};
#[cfg(feature = "redis")]
pub use backend::redis::{RedisBackend, RedisOptions};
#[cfg(feature = "sqlite")]
pub use backend::sqlite::{SqliteBackend, SqliteOptions};
