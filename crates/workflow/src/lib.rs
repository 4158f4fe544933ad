//! `plexspaces-workflow`: durable workflows on the PlexSpaces journal.

mod error;
mod history;
mod store;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;

pub use error::{ActivityFailure, Failure, Result, WorkflowError};
pub use history::{HistoryEvent, StepOutcome};
pub use store::{
    InboxItem, InboxKind, MemoryWorkflowStore, NewInboxItem, WorkflowKey, WorkflowRecord,
    WorkflowStatus, WorkflowStore,
};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::SqlWorkflowStore;
