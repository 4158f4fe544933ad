//! The replay-test helper: run recorded histories against new workflow code in tests, so an
//! incompatible change is caught before it reaches running executions.
//!
//! Get a history with `engine.history(&key, None)` (or load one saved as JSON) and call
//! `testing::replay(new_code, &history)`; the crate's `tests/workflow.rs` does exactly that.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use plexspaces_journal::{Epoch, MemoryJournal};
use tokio::sync::Notify;

use crate::context::{CtxInner, RunShared, RunState};
use crate::engine::{history_stream, terminal_event};
use crate::{
    EngineOptions, HistoryEvent, MemoryWorkflowStore, Result, WorkflowBehavior, WorkflowContext,
    WorkflowEngine, WorkflowError, WorkflowKey,
};

/// Replays `history` (one run, as returned by [`WorkflowEngine::history`]) against
/// `workflow`. No activity, timer or child runs: every command must find its recorded
/// result. Returns `Ok` when the code follows the history to its end (and, for a completed
/// run, returns the recorded result), and [`WorkflowError::NonDeterminism`] naming the
/// first step that diverges otherwise.
pub async fn replay<W: WorkflowBehavior>(workflow: W, history: &[HistoryEvent]) -> Result<()> {
    let Some(HistoryEvent::WorkflowStarted {
        workflow_type,
        input,
        run,
        ..
    }) = history.first()
    else {
        return Err(WorkflowError::InvalidArgument(
            "a history begins with workflow_started".into(),
        ));
    };
    if workflow_type != workflow.workflow_type() {
        return Err(WorkflowError::InvalidArgument(format!(
            "history is of workflow type {workflow_type}, the code is {}",
            workflow.workflow_type()
        )));
    }
    let mut versions = HashMap::new();
    let mut replay = VecDeque::new();
    let mut terminal = None;
    for e in &history[1..] {
        match e {
            HistoryEvent::VersionMarker { change_id, version } => {
                versions.insert(change_id.clone(), *version);
            }
            e if e.is_terminal() => terminal = Some(e.clone()),
            e => replay.push_back(e.clone()),
        }
    }
    let engine = WorkflowEngine::new(
        None,
        Arc::new(MemoryJournal::new()),
        Arc::new(MemoryWorkflowStore::new()),
        EngineOptions::default(),
    );
    let key = WorkflowKey::new("replay", "replay", "replay");
    let state = RunState {
        epoch: Epoch(0),
        pending_start: None,
        next_seq: history.len() as u64 + 1,
        replay,
        versions,
        step: 0,
        history_events: history.len() as u64,
        history_bytes: 0,
        warned: true,
        inbox_low_water: 1,
        consumed: BTreeSet::new(),
        inbox_seen: 0,
        pending: BTreeMap::new(),
        cancel_delivered: false,
        rng: 0,
        replay_only: true,
        replay_ended: false,
    };
    let ctx = WorkflowContext {
        inner: Arc::new(CtxInner {
            engine: engine.inner().clone(),
            stream: history_stream(&key, *run),
            key,
            run: *run,
            shared: Arc::new(RunShared::default()),
            state: tokio::sync::Mutex::new(state),
            replay_end: Notify::new(),
        }),
    };
    let input: W::Input = serde_json::from_value(input.clone())?;
    let run_code = async {
        let out = workflow.run(ctx.clone(), input).await;
        out.and_then(|o| Ok(serde_json::to_value(o)?))
    };
    let outcome = tokio::select! {
        out = run_code => out,
        () = ctx.inner.replay_end.notified() => return Ok(()),
    };
    let st = ctx.inner.state.lock().await;
    let produced = terminal_event(outcome, &st)?;
    match (&terminal, &produced) {
        (None, _) => Ok(()),
        (
            Some(HistoryEvent::WorkflowCompleted { result: a }),
            HistoryEvent::WorkflowCompleted { result: b },
        ) if a != b => Err(WorkflowError::NonDeterminism {
            step: st.step,
            expected: format!("result {a}"),
            found: format!("result {b}"),
        }),
        (Some(a), b) if std::mem::discriminant(a) != std::mem::discriminant(b) => {
            Err(WorkflowError::NonDeterminism {
                step: st.step,
                expected: a.describe(),
                found: b.describe(),
            })
        }
        _ => Ok(()),
    }
}
