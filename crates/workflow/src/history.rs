//! History events: what a workflow run records in its journal stream, one entry each.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ActivityFailure, Failure};

/// The outcome of an activity or child workflow, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome<E> {
    /// It returned this value.
    Ok(Value),
    /// It failed.
    Err(E),
}

/// One history event. Steps are the 0-based index of the workflow's commands in one run
/// (activity, sleep, signal, update, child, side effect); replay matches them in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HistoryEvent {
    /// The run started (always the first event of a run).
    WorkflowStarted {
        /// The workflow type.
        workflow_type: String,
        /// The code version the run started with (it replays with the same one).
        version: u32,
        /// The run number (1, then +1 per continue-as-new).
        run: u64,
        /// The input.
        input: Value,
        /// Inbox items below this seq were consumed by earlier runs.
        inbox_low_water: u64,
        /// Inbox items at or above the low water mark consumed by earlier runs.
        consumed_above: Vec<u64>,
    },
    /// An activity finished for good (its attempts are not recorded).
    ActivityCompleted {
        /// Step.
        step: u32,
        /// Activity name.
        name: String,
        /// Attempts made.
        attempts: u32,
        /// Result or last failure.
        outcome: StepOutcome<ActivityFailure>,
    },
    /// A durable timer was started.
    TimerStarted {
        /// Step.
        step: u32,
        /// When it fires (ms since the Unix epoch, engine clock).
        fire_at_ms: u64,
    },
    /// The durable timer fired.
    TimerFired {
        /// Step.
        step: u32,
    },
    /// A signal was delivered to the workflow.
    SignalReceived {
        /// Step.
        step: u32,
        /// Signal name.
        name: String,
        /// Its inbox seq (acceptance order).
        inbox_seq: u64,
        /// Its payload.
        payload: Value,
    },
    /// An update passed validation and was handed to the workflow.
    UpdateAccepted {
        /// Step.
        step: u32,
        /// Update name.
        name: String,
        /// Its inbox seq.
        inbox_seq: u64,
        /// The caller's update id.
        update_id: String,
        /// Its payload.
        payload: Value,
    },
    /// The workflow answered an update.
    UpdateCompleted {
        /// Step.
        step: u32,
        /// Inbox seq of the update.
        inbox_seq: u64,
        /// The answer.
        result: Value,
    },
    /// A child workflow was started (idempotently: restarting it returns the same child).
    ChildStarted {
        /// Step.
        step: u32,
        /// The child's type.
        workflow_type: String,
        /// The child's workflow id.
        child_id: String,
    },
    /// The child workflow ended.
    ChildCompleted {
        /// Step.
        step: u32,
        /// The child's workflow id.
        child_id: String,
        /// Its result or failure.
        outcome: StepOutcome<Failure>,
    },
    /// A recorded value: time, randomness, an id, or a local side effect's result.
    Recorded {
        /// Step.
        step: u32,
        /// What was recorded (`now`, `random`, `uuid` or the side effect's name).
        name: String,
        /// The value.
        value: Value,
    },
    /// A version marker (the patch API): this run takes `version` for `change_id`.
    VersionMarker {
        /// The change's id.
        change_id: String,
        /// The version chosen when the marker was first reached.
        version: u32,
    },
    /// Cancellation was delivered to the command at `step`.
    CancelRequested {
        /// The step that was waiting.
        step: u32,
        /// Inbox seq of the cancel request.
        inbox_seq: u64,
        /// The reason.
        reason: String,
    },
    /// The run completed with a result.
    WorkflowCompleted {
        /// The result.
        result: Value,
    },
    /// The run failed.
    WorkflowFailed {
        /// The failure.
        failure: Failure,
    },
    /// The run ended cancelled.
    WorkflowCancelled {
        /// The reason.
        reason: String,
    },
    /// The run continued as a new run with this input.
    ContinuedAsNew {
        /// The next run's input.
        input: Value,
        /// Inbox low water mark handed to the next run.
        inbox_low_water: u64,
        /// Consumed inbox seqs at or above it.
        consumed_above: Vec<u64>,
    },
}

impl HistoryEvent {
    /// The step the event belongs to, if it belongs to one.
    pub fn step(&self) -> Option<u32> {
        match self {
            HistoryEvent::ActivityCompleted { step, .. }
            | HistoryEvent::TimerStarted { step, .. }
            | HistoryEvent::TimerFired { step }
            | HistoryEvent::SignalReceived { step, .. }
            | HistoryEvent::UpdateAccepted { step, .. }
            | HistoryEvent::UpdateCompleted { step, .. }
            | HistoryEvent::ChildStarted { step, .. }
            | HistoryEvent::ChildCompleted { step, .. }
            | HistoryEvent::Recorded { step, .. }
            | HistoryEvent::CancelRequested { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// Whether the event ends its run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            HistoryEvent::WorkflowCompleted { .. }
                | HistoryEvent::WorkflowFailed { .. }
                | HistoryEvent::WorkflowCancelled { .. }
                | HistoryEvent::ContinuedAsNew { .. }
        )
    }

    /// A short description for non-determinism errors: `activity charge`, `timer`, ...
    pub fn describe(&self) -> String {
        match self {
            HistoryEvent::WorkflowStarted { workflow_type, .. } => {
                format!("start of {workflow_type}")
            }
            HistoryEvent::ActivityCompleted { name, .. } => format!("activity {name}"),
            HistoryEvent::TimerStarted { .. } | HistoryEvent::TimerFired { .. } => "timer".into(),
            HistoryEvent::SignalReceived { name, .. } => format!("signal {name}"),
            HistoryEvent::UpdateAccepted { name, .. } => format!("update {name}"),
            HistoryEvent::UpdateCompleted { .. } => "update answer".into(),
            HistoryEvent::ChildStarted { workflow_type, .. } => {
                format!("child workflow {workflow_type}")
            }
            HistoryEvent::ChildCompleted { child_id, .. } => format!("result of child {child_id}"),
            HistoryEvent::Recorded { name, .. } => format!("recorded value {name}"),
            HistoryEvent::VersionMarker { change_id, .. } => format!("version marker {change_id}"),
            HistoryEvent::CancelRequested { .. } => "cancellation".into(),
            HistoryEvent::WorkflowCompleted { .. } => "workflow completion".into(),
            HistoryEvent::WorkflowFailed { .. } => "workflow failure".into(),
            HistoryEvent::WorkflowCancelled { .. } => "workflow cancellation".into(),
            HistoryEvent::ContinuedAsNew { .. } => "continue-as-new".into(),
        }
    }
}
