//! The PlexSpaces actor runtime.
//!
//! An actor is an id (`name@node`), a mailbox, private state and a handler ([`Actor`], which
//! is Erlang's gen_server). Everything else is built from that: [`fsm`] (GenFSM) and
//! [`event`] (GenEvent) behaviors, [`supervisor`] trees, process groups ([`pg`]), the
//! registry and timers (on [`Context`]), and [`facet`]s that add capabilities to any actor.
//!
//! This crate is not a cluster, a journal or an HTTP server: those live in other crates and
//! build on this one through the [`Transport`] trait, facets and node services.
//!
//! # Invariants
//! - Local messages are Rust values and are never serialized; [`Envelope`]s exist only at
//!   boundaries (another node, HTTP, gRPC, WASM).
//! - [`ActorRef`] and [`Pid`] are the same types for local and remote actors.
//! - One handler runs at a time per actor; system signals (stop, exit, down) are taken
//!   before queued user messages.
//! - A handler error or panic stops the actor with a reason; links, monitors, the registry
//!   and process groups learn of every death exactly once, a kill included.
//! - Every `ask` has a timeout and its own reply slot: a late reply is dropped.
//!
//! # Example
//! ```
//! use plexspaces_core::{Actor, BoxError, Context, Node};
//!
//! struct Counter(u64);
//!
//! impl Actor for Counter {
//!     type Msg = u64;
//!     type Reply = u64;
//!     async fn handle_call(&mut self, by: u64, _ctx: &mut Context<Self>) -> Result<Option<u64>, BoxError> {
//!         self.0 += by;
//!         Ok(Some(self.0))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), plexspaces_core::Error> {
//! let node = Node::builder("node1").build().await?;
//! let counter = node.spawn_named("counter", Counter(0))?;
//! counter.tell(2u64).await.expect("alive");
//! assert_eq!(counter.ask(3u64).await?, 5);
//! assert_eq!(counter.id().to_string(), "counter@node1");
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod actor;
pub mod clock;
pub mod context;
mod deadline;
pub mod envelope;
pub mod error;
pub mod event;
pub mod facet;
pub mod fsm;
pub mod gate;
pub mod id;
mod mailbox;
pub mod node;
pub mod pg;
pub mod pid;
pub mod runtime;
pub mod supervisor;
pub mod transport;

pub use actor::{Actor, Info, InfoMessage, ReplyHandle, Request};
pub use context::{Context, DemonitorOptions, TimerRef};
pub use envelope::Envelope;
pub use error::{BoxError, Error, ExitReason, ReasonData, Result, SendError};
pub use event::{EventHandler, EventManager};
pub use facet::{Facet, MetricsFacet, TracingFacet};
pub use fsm::{FsmActor, GenFsm, Transition};
pub use id::ActorId;
pub use node::{Node, NodeBuilder, NodeConfig, NodeLost, WeakNode};
pub use pg::ProcessGroups;
pub use pid::{ActorRef, Lifecycle, MonitorRef, Pid, DEFAULT_ASK_TIMEOUT};
pub use runtime::{MailboxConfig, SpawnOptions};
pub use supervisor::{
    Application, AutoShutdown, ChildKind, ChildSpec, Restart, Shutdown, Strategy, Supervisor,
    SupervisorSpec,
};
pub use transport::{LoopbackNetwork, Transport};

#[doc(hidden)]
pub mod __private {
    pub use serde_json;
}
