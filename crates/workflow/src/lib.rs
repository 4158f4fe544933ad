//! `plexspaces-workflow`: Temporal-style durable workflows on the PlexSpaces journal.
//!
//! A workflow is ordinary async Rust over a [`WorkflowContext`]. Every command it issues
//! (an activity, a durable timer, waiting for a signal or an update, a child workflow, the
//! time, a random value) is recorded in the run's history, a journal stream. After a crash
//! the engine runs the code again from the top: each command finds its recorded result and
//! returns it without running again, until the code reaches the end of history and
//! continues live. So a completed activity never runs twice, and a workflow survives any
//! number of restarts.
//!
//! - [`WorkflowBehavior`] (or [`workflow_fn`]) is the code; [`WorkflowEngine`] runs it and
//!   is the client API (start, signal, query, update, cancel, result, describe, list).
//! - Activities ([`WorkflowContext::activity`]) are any async code, for example an actor
//!   `ask`, with a [`RetryPolicy`], per-attempt and heartbeat timeouts, and a deterministic
//!   idempotency key.
//! - [`Saga`] runs compensations in reverse order, each exactly once.
//! - [`testing::replay`] checks new code against recorded histories.
//!
//! Storage: history in a [`plexspaces_journal::Journal`] (memory, SQLite or PostgreSQL),
//! workflow records and inboxes in a [`WorkflowStore`] ([`MemoryWorkflowStore`], or
//! `SqlWorkflowStore` on SQLite/PostgreSQL with the features `sqlite`/`postgres`).
//!
//! See `docs/workflows.md` for the programming model, the guarantees and the determinism
//! rules.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use plexspaces_journal::MemoryJournal;
//! use plexspaces_workflow::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> plexspaces_workflow::Result<()> {
//! let engine = WorkflowEngine::new(
//!     None,
//!     Arc::new(MemoryJournal::new()),
//!     Arc::new(MemoryWorkflowStore::new()),
//!     EngineOptions::default(),
//! );
//! engine.register(workflow_fn("greet", |ctx: WorkflowContext, name: String| async move {
//!     let greeting: String = ctx
//!         .activity("compose", &ActivityOptions::default(), |_| {
//!             let name = name.clone();
//!             async move { Ok(format!("Hello, {name}!")) }
//!         })
//!         .await?;
//!     Ok(greeting)
//! }));
//! let key = WorkflowKey::new("default", "demo", "greet-1");
//! engine.start(&key, "greet", &"Ada").await?;
//! let out: String = engine.result(&key, None).await?;
//! assert_eq!(out, "Hello, Ada!");
//! # Ok(())
//! # }
//! ```

mod activity;
mod context;
mod engine;
mod error;
mod history;
mod saga;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;
pub mod testing;

pub use activity::{ActivityContext, ActivityOptions, RetryPolicy};
pub use context::{Receive, Received, UpdateRequest, WorkflowContext};
pub use engine::{
    workflow_fn, EngineOptions, EventHook, FnWorkflow, StartedWorkflow, TimerHook, TokioClock,
    WorkflowBehavior, WorkflowDescription, WorkflowEngine, QUERY_REPLAY_WAIT,
};
pub use error::{ActivityFailure, Failure, Result, WorkflowError};
pub use history::{HistoryEvent, StepOutcome};
pub use saga::Saga;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlWorkflowStore;
pub use store::{
    InboxItem, InboxKind, MemoryWorkflowStore, NewInboxItem, WorkflowKey, WorkflowRecord,
    WorkflowStatus, WorkflowStore,
};
