//! PlexSpaces SDK: one actor abstraction that unifies Erlang/OTP behaviors and supervision,
//! Orleans-style virtual actors, durable execution and Linda tuple spaces.
//!
//! This crate re-exports the runtime ([`plexspaces_core`]) and the `#[actor]` macro. Start
//! with the [`prelude`].
//!
//! # Example: a counter in ten lines
//! ```
//! use plexspaces::prelude::*;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default)]
//! struct Counter { count: i64 }
//! #[derive(Serialize, Deserialize)]
//! struct Increment { amount: i64 }
//!
//! #[actor]
//! impl Counter {
//!     #[handler("increment")]
//!     async fn increment(&mut self, msg: Increment) -> Result<i64, BoxError> {
//!         self.count += msg.amount;
//!         Ok(self.count)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), plexspaces::Error> {
//! let node = Node::builder("node1").build().await?;
//! let counter = node.spawn_named("counter", Counter::default())?;
//! assert_eq!(counter.request(Increment { amount: 5 }).await?, 5);
//! # node.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub use plexspaces_core::*;
pub use plexspaces_macros::{actor, handler};

/// Durable actors: journals, the durability facet, reminders, event sourcing (feature
/// `durability`).
#[cfg(feature = "durability")]
pub use plexspaces_journal as journal;

/// Linda tuple spaces and the facet that gives actors one (feature `tuplespace`).
#[cfg(feature = "tuplespace")]
pub use plexspaces_tuplespace as tuplespace;

/// Durable workflows: activities with retries, durable timers, signals, queries, updates,
/// child workflows, sagas (feature `workflow`).
#[cfg(feature = "workflow")]
pub use plexspaces_workflow as workflow;

/// The names most programs need.
pub mod prelude {
    pub use plexspaces_core::{
        Actor, ActorId, ActorRef, Application, BoxError, ChildSpec, Context, Envelope, Error,
        ExitReason, Info, MailboxConfig, Node, Pid, Request, Restart, Shutdown, SpawnOptions,
        Strategy, Supervisor, SupervisorSpec,
    };
    pub use plexspaces_macros::{actor, handler};
}

#[doc(hidden)]
pub mod __macro {
    pub use plexspaces_core::{Actor, BoxError, Context, Envelope, Error, Request, Result};
    pub use serde_json;
}
