//! Workflow errors: what workflow code can catch, and what stops an execution.

use serde::{Deserialize, Serialize};

/// A failure as it is recorded in history and shown to clients: a stable kind and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct Failure {
    /// A stable, machine-readable kind (`activity_failed`, `cancelled`, or an application kind).
    pub kind: String,
    /// A human-readable message.
    pub message: String,
}

/// What an activity attempt returns when it fails.
///
/// `kind` is matched against [`crate::RetryPolicy::non_retryable`]; an activity can also mark
/// one failure as never retryable with [`ActivityFailure::non_retryable`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ActivityFailure {
    /// The failure kind (for example `InsufficientFunds`, `timeout`, `heartbeat_timeout`).
    pub kind: String,
    /// A human-readable message.
    pub message: String,
    /// When true, no further attempt is made whatever the retry policy says.
    #[serde(default)]
    pub non_retryable: bool,
}

impl ActivityFailure {
    /// A failure the retry policy may retry.
    pub fn retryable(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            non_retryable: false,
        }
    }

    /// A failure that is never retried.
    pub fn non_retryable(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            non_retryable: true,
        }
    }
}

impl From<plexspaces_core::Error> for ActivityFailure {
    /// An actor call's error, with the runtime's error kind. Retryable when the runtime
    /// says so (timeouts, full mailboxes, transport) and also for `noproc`: inside an
    /// activity, a missing actor is usually one its supervisor is restarting, and the
    /// retry policy bounds the attempts anyway.
    fn from(e: plexspaces_core::Error) -> Self {
        let retryable = e.is_retryable() || e.kind() == "noproc";
        Self {
            kind: e.kind().to_owned(),
            message: e.to_string(),
            non_retryable: !retryable,
        }
    }
}

/// Errors of workflows, the engine and the client API.
///
/// Workflow code sees the first group (activity, child, cancellation, application) as
/// ordinary `Err` values it may catch. The second group (non-determinism, history limit,
/// storage) ends the execution.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum WorkflowError {
    /// An activity failed for good (retries exhausted, a non-retryable kind, or a timeout on
    /// the last attempt). Workflow code may catch it.
    #[error("activity {name} (step {step}) failed after {attempts} attempt(s): {failure}")]
    Activity {
        /// The activity's name.
        name: String,
        /// The workflow step of the activity.
        step: u32,
        /// How many attempts ran.
        attempts: u32,
        /// The last attempt's failure.
        failure: ActivityFailure,
    },
    /// A child workflow ended without a result.
    #[error("child workflow {id} ended with {failure}")]
    Child {
        /// The child's workflow id.
        id: String,
        /// How it ended.
        failure: Failure,
    },
    /// The workflow was cancelled. Delivered once, at the step that was waiting; cleanup code
    /// after catching it runs normally.
    #[error("workflow cancelled: {reason}")]
    Cancelled {
        /// The reason given to `cancel`.
        reason: String,
    },
    /// A failure raised by workflow code itself (see [`WorkflowError::application`]).
    #[error("{kind}: {message}")]
    Application {
        /// The application's failure kind.
        kind: String,
        /// The message.
        message: String,
    },
    /// Replay asked for a different step than history holds: the workflow code changed in a
    /// way that is not compatible with running executions. The execution is suspended.
    #[error(
        "non-determinism at step {step}: history holds {expected}, the code asked for {found}"
    )]
    NonDeterminism {
        /// The step (0-based command index in this run).
        step: u32,
        /// What history holds at this step.
        expected: String,
        /// What the workflow code asked for.
        found: String,
    },
    /// The run's history would exceed its hard limit; the workflow fails before storage does.
    #[error("history limit exceeded: {events} events, {bytes} bytes (limits {max_events} events, {max_bytes} bytes); use continue-as-new")]
    HistoryLimitExceeded {
        /// Events the history would hold.
        events: u64,
        /// Bytes the history would hold.
        bytes: u64,
        /// The event limit.
        max_events: u64,
        /// The byte limit.
        max_bytes: u64,
    },
    /// No workflow with this id (in this tenant and namespace).
    #[error("workflow not found: {0}")]
    NotFound(String),
    /// No definition of this workflow type (or of the version a running execution started
    /// with) is registered in this engine.
    #[error("workflow type {workflow_type} version {version} is not registered here")]
    UnknownType {
        /// The workflow type.
        workflow_type: String,
        /// The version (0: any).
        version: u32,
    },
    /// The workflow has closed; it takes no more signals, updates or cancel requests.
    #[error("workflow {id} is {status}")]
    Closed {
        /// The workflow id.
        id: String,
        /// Its final status.
        status: String,
    },
    /// The awaited workflow ended without a result (failed, cancelled, or suspended by a
    /// non-determinism or storage error).
    #[error("workflow {id} ended with {failure}")]
    Failed {
        /// The workflow id.
        id: String,
        /// How it ended.
        failure: Failure,
    },
    /// An update was rejected by its validator; nothing was recorded.
    #[error("update {name} rejected: {reason}")]
    UpdateRejected {
        /// The update's name.
        name: String,
        /// The validator's reason.
        reason: String,
    },
    /// A caller-supplied argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Waiting for a result, an update answer or a query took longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The operation is not supported here.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Workflow code panicked. The execution is suspended (a bug to fix, then resume).
    #[error("workflow code panicked: {0}")]
    Panicked(String),
    /// Another activation owns this execution (it was fenced); this one stopped.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The journal or the workflow store failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A value could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// Internal marker returned by [`crate::WorkflowContext::continue_as_new`]; return it from
    /// the workflow function.
    #[error("continued as new")]
    ContinueAsNew(serde_json::Value),
}

impl WorkflowError {
    /// A failure raised by workflow code, recorded with the workflow's result.
    pub fn application(kind: impl Into<String>, message: impl Into<String>) -> Self {
        WorkflowError::Application {
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// A stable kind name for clients (HTTP/gRPC error mapping, failure records).
    pub fn kind(&self) -> &str {
        match self {
            WorkflowError::Activity { .. } => "activity_failed",
            WorkflowError::Child { .. } => "child_failed",
            WorkflowError::Cancelled { .. } => "cancelled",
            WorkflowError::Application { kind, .. } => kind,
            WorkflowError::NonDeterminism { .. } => "non_determinism",
            WorkflowError::HistoryLimitExceeded { .. } => "history_limit_exceeded",
            WorkflowError::NotFound(_) => "not_found",
            WorkflowError::UnknownType { .. } => "unknown_workflow_type",
            WorkflowError::UpdateRejected { .. } => "update_rejected",
            WorkflowError::Closed { .. } => "closed",
            WorkflowError::Failed { failure, .. } => &failure.kind,
            WorkflowError::InvalidArgument(_) => "invalid_argument",
            WorkflowError::Timeout(_) => "timeout",
            WorkflowError::Unsupported(_) => "unsupported",
            WorkflowError::Fenced(_) => "fenced",
            WorkflowError::Panicked(_) => "panic",
            WorkflowError::Storage(_) => "storage",
            WorkflowError::Codec(_) => "codec",
            WorkflowError::ContinueAsNew(_) => "continued_as_new",
        }
    }

    /// The failure record of this error.
    pub fn to_failure(&self) -> Failure {
        Failure {
            kind: self.kind().to_owned(),
            message: self.to_string(),
        }
    }

    /// Errors that stop the execution without recording a result, because the code or the
    /// storage is at fault rather than the business logic: the execution can resume later.
    pub(crate) fn suspends(&self) -> bool {
        matches!(
            self,
            WorkflowError::NonDeterminism { .. }
                | WorkflowError::UnknownType { .. }
                | WorkflowError::Storage(_)
                | WorkflowError::Fenced(_)
                | WorkflowError::Panicked(_)
        )
    }
}

impl From<plexspaces_journal::Error> for WorkflowError {
    fn from(e: plexspaces_journal::Error) -> Self {
        if e.is_fenced() {
            WorkflowError::Fenced(e.to_string())
        } else {
            WorkflowError::Storage(e.to_string())
        }
    }
}

impl From<serde_json::Error> for WorkflowError {
    fn from(e: serde_json::Error) -> Self {
        WorkflowError::Codec(e.to_string())
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<sqlx::Error> for WorkflowError {
    fn from(e: sqlx::Error) -> Self {
        WorkflowError::Storage(e.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = WorkflowError> = std::result::Result<T, E>;
