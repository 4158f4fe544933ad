//! Format compatibility of workflow history: `tests/golden/history-v1.jsonl` holds one
//! event of every kind, as this version writes them into the journal (one JSON object per
//! entry). The next version must read each line back into the same event and, until a
//! migration says otherwise, write it identically.
//!
//! A new event kind fails to compile here (the match in `kind` has no wildcard): add it to
//! `v1_events` only together with a new golden file (`history-v2.jsonl`, written with
//! `PLEXSPACES_WRITE_GOLDEN=v2`, which never overwrites), keeping v1 and its check.

use std::path::{Path, PathBuf};

use plexspaces_workflow::{ActivityFailure, Failure, HistoryEvent, StepOutcome};
use serde_json::{json, Value};

fn golden(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/history-{version}.jsonl"))
}

/// The event's tag; exhaustive on purpose.
fn kind(e: &HistoryEvent) -> &'static str {
    match e {
        HistoryEvent::WorkflowStarted { .. } => "workflow_started",
        HistoryEvent::ActivityCompleted { .. } => "activity_completed",
        HistoryEvent::TimerStarted { .. } => "timer_started",
        HistoryEvent::TimerFired { .. } => "timer_fired",
        HistoryEvent::SignalReceived { .. } => "signal_received",
        HistoryEvent::UpdateAccepted { .. } => "update_accepted",
        HistoryEvent::UpdateCompleted { .. } => "update_completed",
        HistoryEvent::ChildStarted { .. } => "child_started",
        HistoryEvent::ChildCompleted { .. } => "child_completed",
        HistoryEvent::Recorded { .. } => "recorded",
        HistoryEvent::VersionMarker { .. } => "version_marker",
        HistoryEvent::CancelRequested { .. } => "cancel_requested",
        HistoryEvent::WorkflowCompleted { .. } => "workflow_completed",
        HistoryEvent::WorkflowFailed { .. } => "workflow_failed",
        HistoryEvent::WorkflowCancelled { .. } => "workflow_cancelled",
        HistoryEvent::ContinuedAsNew { .. } => "continued_as_new",
    }
}

const KINDS: usize = 16;

/// Every v1 event kind (both outcomes where an event has one).
fn v1_events() -> Vec<HistoryEvent> {
    vec![
        HistoryEvent::WorkflowStarted {
            workflow_type: "order".into(),
            version: 2,
            run: 1,
            input: json!({"order": "o-1", "items": [1, 2]}),
            inbox_low_water: 3,
            consumed_above: vec![5, 7],
        },
        HistoryEvent::ActivityCompleted {
            step: 0,
            name: "charge".into(),
            attempts: 2,
            outcome: StepOutcome::Ok(json!({"receipt": "r-1"})),
        },
        HistoryEvent::ActivityCompleted {
            step: 1,
            name: "ship".into(),
            attempts: 3,
            outcome: StepOutcome::Err(ActivityFailure {
                kind: "OutOfStock".into(),
                message: "none left".into(),
                non_retryable: true,
            }),
        },
        HistoryEvent::TimerStarted {
            step: 2,
            fire_at_ms: 1_767_225_600_000,
        },
        HistoryEvent::TimerFired { step: 2 },
        HistoryEvent::SignalReceived {
            step: 3,
            name: "approve".into(),
            inbox_seq: 4,
            payload: json!({"by": "ann"}),
        },
        HistoryEvent::UpdateAccepted {
            step: 4,
            name: "set_address".into(),
            inbox_seq: 6,
            update_id: "u-1".into(),
            payload: json!("Main St 1"),
        },
        HistoryEvent::UpdateCompleted {
            step: 4,
            inbox_seq: 6,
            result: json!({"ok": true}),
        },
        HistoryEvent::ChildStarted {
            step: 5,
            workflow_type: "invoice".into(),
            child_id: "o-1/invoice".into(),
        },
        HistoryEvent::ChildCompleted {
            step: 5,
            child_id: "o-1/invoice".into(),
            outcome: StepOutcome::Ok(json!(42)),
        },
        HistoryEvent::ChildCompleted {
            step: 6,
            child_id: "o-1/refund".into(),
            outcome: StepOutcome::Err(Failure {
                kind: "activity_failed".into(),
                message: "bank down".into(),
            }),
        },
        HistoryEvent::Recorded {
            step: 7,
            name: "uuid".into(),
            value: json!("5f0c6f0e-0000-4000-8000-000000000001"),
        },
        HistoryEvent::VersionMarker {
            change_id: "new-tax".into(),
            version: 1,
        },
        HistoryEvent::CancelRequested {
            step: 8,
            inbox_seq: 9,
            reason: "customer asked".into(),
        },
        HistoryEvent::WorkflowCompleted {
            result: json!({"total": 99.5}),
        },
        HistoryEvent::WorkflowFailed {
            failure: Failure {
                kind: "InsufficientFunds".into(),
                message: "balance 3".into(),
            },
        },
        HistoryEvent::WorkflowCancelled {
            reason: "timeout".into(),
        },
        HistoryEvent::ContinuedAsNew {
            input: json!({"cursor": 100}),
            inbox_low_water: 10,
            consumed_above: vec![12],
        },
    ]
}

#[test]
fn golden_v1_history_events_read_back_and_write_identically() {
    if let Ok(version) = std::env::var("PLEXSPACES_WRITE_GOLDEN") {
        let path = golden(&version);
        assert!(
            !path.exists(),
            "{} exists: never rewrite it",
            path.display()
        );
        let lines: Vec<String> = v1_events()
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }
    let path = golden("v1");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let expected = v1_events();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), expected.len(), "one golden line per event");
    for (line, want) in lines.iter().zip(&expected) {
        let read: HistoryEvent = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("v1 line no longer reads ({e}): {line}"));
        assert_eq!(&read, want, "v1 line reads as a different event: {line}");
        let written: Value = serde_json::to_value(want).unwrap();
        let stored: Value = serde_json::from_str(line).unwrap();
        assert_eq!(written, stored, "{} is now written differently", kind(want));
    }
    let mut kinds: Vec<&str> = expected.iter().map(kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), KINDS, "every event kind has a golden line");
}
