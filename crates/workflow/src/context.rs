//! The workflow context: every command a workflow issues (activity, sleep, signal, update,
//! child workflow, recorded value, version marker) goes through it, so it is recorded once
//! and replayed from history afterwards.
//!
//! Commands run one at a time: each holds the run's state for its whole duration, so even
//! futures joined concurrently get their steps in a deterministic order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plexspaces_journal::{Entry, EntryKind, Epoch, Seq, StreamId};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::activity::run_attempt;
use crate::engine::EngineInner;
use crate::history::{HistoryEvent, StepOutcome};
use crate::store::{InboxItem, InboxKind, WorkflowKey, WorkflowStatus};
use crate::{ActivityContext, ActivityFailure, ActivityOptions, Result, WorkflowError};

/// What the engine and the running workflow share: query values and the inbox wake-up.
#[derive(Debug, Default)]
pub(crate) struct RunShared {
    pub(crate) queries: Mutex<serde_json::Map<String, Value>>,
    pub(crate) wake: Notify,
    /// Set once the run got past its recorded history (its first live command, or its
    /// end): until then the query values are half-replayed and queries wait.
    pub(crate) live: std::sync::atomic::AtomicBool,
    pub(crate) went_live: Notify,
}

impl RunShared {
    /// The run is past its recorded history: release waiting queries.
    pub(crate) fn mark_live(&self) {
        if !self.live.swap(true, std::sync::atomic::Ordering::AcqRel) {
            self.went_live.notify_waiters();
        }
    }

    /// Waits until [`RunShared::mark_live`], at most `limit`; whether it happened.
    pub(crate) async fn wait_live(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.went_live.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.load(std::sync::atomic::Ordering::Acquire) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.live.load(std::sync::atomic::Ordering::Acquire);
            }
        }
    }
}

/// The run's replay cursor, inbox view and history counters.
#[derive(Debug)]
pub(crate) struct RunState {
    pub(crate) epoch: Epoch,
    /// A new run's start event, written together with its first command's event (one
    /// durable write fewer; until then the record holds everything needed to start over).
    pub(crate) pending_start: Option<HistoryEvent>,
    pub(crate) next_seq: Seq,
    pub(crate) replay: VecDeque<HistoryEvent>,
    pub(crate) versions: HashMap<String, u32>,
    pub(crate) step: u32,
    pub(crate) history_events: u64,
    pub(crate) history_bytes: u64,
    pub(crate) warned: bool,
    pub(crate) inbox_low_water: u64,
    pub(crate) consumed: BTreeSet<u64>,
    pub(crate) inbox_seen: u64,
    pub(crate) pending: BTreeMap<u64, InboxItem>,
    /// When the inbox was last read from the store.
    pub(crate) inbox_read_at: Option<Instant>,
    pub(crate) cancel_delivered: bool,
    pub(crate) rng: u64,
    /// Replay-only runs (the replay-test helper) stop where history ends.
    pub(crate) replay_only: bool,
    pub(crate) replay_ended: bool,
}

impl RunState {
    fn is_consumed(&self, seq: u64) -> bool {
        seq < self.inbox_low_water || self.consumed.contains(&seq)
    }

    fn consume(&mut self, seq: u64) {
        self.consumed.insert(seq);
        self.pending.remove(&seq);
    }

    /// The inbox low water mark and the consumed seqs above it, for the next run.
    pub(crate) fn inbox_handover(&self) -> (u64, Vec<u64>) {
        let mut low = self.inbox_low_water.max(1);
        while self.consumed.contains(&low) {
            low += 1;
        }
        (low, self.consumed.range(low..).copied().collect())
    }
}

pub(crate) struct CtxInner {
    pub(crate) engine: Arc<EngineInner>,
    pub(crate) key: WorkflowKey,
    pub(crate) run: u64,
    pub(crate) stream: StreamId,
    pub(crate) shared: Arc<RunShared>,
    pub(crate) state: tokio::sync::Mutex<RunState>,
    pub(crate) replay_end: Notify,
}

/// The handle workflow code uses for everything that must be recorded: activities, timers,
/// signals, updates, child workflows, time, randomness and ids. Cheap to clone.
#[derive(Clone)]
pub struct WorkflowContext {
    pub(crate) inner: Arc<CtxInner>,
}

impl std::fmt::Debug for WorkflowContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowContext")
            .field("key", &self.inner.key)
            .field("run", &self.inner.run)
            .finish()
    }
}

/// One kind of message [`WorkflowContext::receive`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive<'a> {
    /// A signal with this name.
    Signal(&'a str),
    /// An update with this name.
    Update(&'a str),
}

impl Receive<'_> {
    fn matches(&self, kind: InboxKind, name: &str) -> bool {
        match self {
            Receive::Signal(n) => kind == InboxKind::Signal && *n == name,
            Receive::Update(n) => kind == InboxKind::Update && *n == name,
        }
    }

    fn describe(&self) -> String {
        match self {
            Receive::Signal(n) => format!("signal {n}"),
            Receive::Update(n) => format!("update {n}"),
        }
    }
}

/// What [`WorkflowContext::receive`] got.
#[derive(Debug, Clone)]
pub enum Received {
    /// A signal.
    Signal {
        /// Its name.
        name: String,
        /// Its payload.
        payload: Value,
    },
    /// An update; answer it with [`WorkflowContext::complete_update`].
    Update {
        /// Its name.
        name: String,
        /// The request.
        request: UpdateRequest<Value>,
    },
}

/// An update handed to the workflow by [`WorkflowContext::next_update`]; answer it with
/// [`WorkflowContext::complete_update`].
#[derive(Debug, Clone)]
pub struct UpdateRequest<T> {
    /// The caller's update id.
    pub update_id: String,
    /// The update's arguments.
    pub payload: T,
    inbox_seq: u64,
}

fn decode<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(WorkflowError::from)
}

fn encode<T: Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(WorkflowError::from)
}

impl WorkflowContext {
    /// The workflow's identity.
    pub fn key(&self) -> &WorkflowKey {
        &self.inner.key
    }

    /// The workflow id.
    pub fn workflow_id(&self) -> &str {
        &self.inner.key.workflow_id
    }

    /// The run number (1, then +1 per continue-as-new).
    pub fn run(&self) -> u64 {
        self.inner.run
    }

    /// Whether the workflow is replaying recorded history (commands return recorded results).
    pub async fn is_replaying(&self) -> bool {
        !self.inner.state.lock().await.replay.is_empty()
    }

    /// Events in this run's history.
    pub async fn history_len(&self) -> u64 {
        self.inner.state.lock().await.history_events
    }

    /// Bytes of this run's history.
    pub async fn history_bytes(&self) -> u64 {
        self.inner.state.lock().await.history_bytes
    }

    /// Whether the history passed the engine's warning threshold: time to continue as new.
    pub async fn history_warning(&self) -> bool {
        let st = self.inner.state.lock().await;
        let o = &self.inner.engine.options;
        st.history_events >= o.history_warn_events || st.history_bytes >= o.history_warn_bytes
    }

    /// Sets the value a query named `name` answers with. Queries are read-only and never
    /// journaled: they see what the workflow last set.
    pub fn set_query<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let value = encode(value)?;
        self.inner
            .shared
            .queries
            .lock()
            .insert(name.to_owned(), value);
        Ok(())
    }

    /// Runs an activity: `f` is called for each attempt (any async code, for example an
    /// actor `ask`), with retries, timeouts and cancellation per `options`. Its result is
    /// journaled, so after a crash a completed activity returns its recorded result and
    /// `f` does not run again. A failure that exhausts the policy is returned as
    /// [`WorkflowError::Activity`], which workflow code may catch.
    pub async fn activity<T, F, Fut>(
        &self,
        name: &str,
        options: &ActivityOptions,
        f: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: Fn(ActivityContext) -> Fut,
        Fut: Future<Output = std::result::Result<T, ActivityFailure>>,
    {
        let mut st = self.inner.state.lock().await;
        let step = next_step(&mut st);
        let what = format!("activity {name}");
        let recorded = self
            .replay(&mut st, step, &what, |e| match e {
                HistoryEvent::ActivityCompleted {
                    name: n,
                    attempts,
                    outcome,
                    ..
                } if n == name => Some((*attempts, outcome.clone())),
                _ => None,
            })
            .await?;
        if let Some((attempts, outcome)) = recorded {
            return match outcome {
                StepOutcome::Ok(v) => decode(v),
                StepOutcome::Err(failure) => Err(WorkflowError::Activity {
                    name: name.to_owned(),
                    step,
                    attempts,
                    failure,
                }),
            };
        }
        let key = format!(
            "{}/{}/{}/{}/{step}",
            self.inner.key.tenant,
            self.inner.key.namespace,
            self.inner.key.workflow_id,
            self.inner.run
        );
        let mut attempt = 1u32;
        loop {
            let heartbeat = Arc::new(Mutex::new(Instant::now()));
            let (cancel_tx, cancel_rx) = watch::channel(false);
            let actx = ActivityContext {
                key: key.clone(),
                attempt,
                heartbeat: heartbeat.clone(),
                cancelled: cancel_rx,
            };
            let outcome = tokio::select! {
                r = run_attempt(f(actx), heartbeat, options) => r,
                c = self.cancel_requested(&mut st) => {
                    let _ = cancel_tx.send(true);
                    return Err(self.deliver_cancel(&mut st, step, c?).await);
                }
            };
            match outcome {
                Ok(v) => {
                    let value = encode(&v)?;
                    self.append(
                        &mut st,
                        HistoryEvent::ActivityCompleted {
                            step,
                            name: name.to_owned(),
                            attempts: attempt,
                            outcome: StepOutcome::Ok(value),
                        },
                    )
                    .await?;
                    return Ok(v);
                }
                Err(failure) if !options.retry.allows_retry(attempt, &failure) => {
                    tracing::debug!(workflow = %self.inner.key, activity = name, attempt, %failure, "activity failed for good");
                    self.append(
                        &mut st,
                        HistoryEvent::ActivityCompleted {
                            step,
                            name: name.to_owned(),
                            attempts: attempt,
                            outcome: StepOutcome::Err(failure.clone()),
                        },
                    )
                    .await?;
                    return Err(WorkflowError::Activity {
                        name: name.to_owned(),
                        step,
                        attempts: attempt,
                        failure,
                    });
                }
                Err(failure) => {
                    let delay = options.retry.delay_after(attempt);
                    tracing::debug!(workflow = %self.inner.key, activity = name, attempt, %failure, ?delay, "activity attempt failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        c = self.cancel_requested(&mut st) => {
                            return Err(self.deliver_cancel(&mut st, step, c?).await);
                        }
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// A durable timer: returns once `duration` has passed on the engine clock. It fires
    /// once and never early, also when the process restarts during the sleep.
    pub async fn sleep(&self, duration: Duration) -> Result<()> {
        let mut st = self.inner.state.lock().await;
        let step = next_step(&mut st);
        let started = self
            .replay(&mut st, step, "timer", |e| match e {
                HistoryEvent::TimerStarted { fire_at_ms, .. } => Some(*fire_at_ms),
                _ => None,
            })
            .await?;
        let fire_at_ms = match started {
            Some(fire_at_ms) => {
                let fired = self
                    .replay(&mut st, step, "timer", |e| {
                        matches!(e, HistoryEvent::TimerFired { .. }).then_some(())
                    })
                    .await?;
                if fired.is_some() {
                    return Ok(());
                }
                fire_at_ms
            }
            None => {
                let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                let fire_at_ms = self.inner.engine.now_ms().saturating_add(ms);
                self.append(&mut st, HistoryEvent::TimerStarted { step, fire_at_ms })
                    .await?;
                fire_at_ms
            }
        };
        tokio::select! {
            () = self.inner.engine.sleep_until_ms(fire_at_ms) => {}
            c = self.cancel_requested(&mut st) => {
                return Err(self.deliver_cancel(&mut st, step, c?).await);
            }
        }
        self.append(&mut st, HistoryEvent::TimerFired { step })
            .await?;
        if let Some(hook) = &self.inner.engine.options.timer_hook {
            hook(&self.inner.key, fire_at_ms, self.inner.engine.now_ms());
        }
        Ok(())
    }

    /// Waits for the next signal named `name`. Signals of one name are delivered in the
    /// order they were accepted; signals of other names wait for their own `signal` call.
    pub async fn signal<T: DeserializeOwned>(&self, name: &str) -> Result<T> {
        match self.receive(&[Receive::Signal(name)]).await? {
            Received::Signal { payload, .. } => decode(payload),
            Received::Update { name, .. } => Err(not_asked_for("update", &name)),
        }
    }

    /// Waits for the next update named `name` (updates were validated before they were
    /// accepted). Answer it with [`WorkflowContext::complete_update`].
    pub async fn next_update<T: DeserializeOwned>(&self, name: &str) -> Result<UpdateRequest<T>> {
        match self.receive(&[Receive::Update(name)]).await? {
            Received::Update { request, .. } => Ok(UpdateRequest {
                update_id: request.update_id,
                payload: decode(request.payload)?,
                inbox_seq: request.inbox_seq,
            }),
            Received::Signal { name, .. } => Err(not_asked_for("signal", &name)),
        }
    }

    /// Waits for whichever of several inbox messages comes first (Erlang's `receive` with
    /// several patterns): the oldest accepted signal or update that matches one of
    /// `patterns`. Others stay in the inbox.
    pub async fn receive(&self, patterns: &[Receive<'_>]) -> Result<Received> {
        let mut st = self.inner.state.lock().await;
        let step = next_step(&mut st);
        let what = patterns
            .iter()
            .map(Receive::describe)
            .collect::<Vec<_>>()
            .join(" or ");
        let wants = |kind: InboxKind, name: &str| patterns.iter().any(|p| p.matches(kind, name));
        let recorded = self
            .replay(&mut st, step, &what, |e| match e {
                HistoryEvent::SignalReceived { name, payload, .. }
                    if wants(InboxKind::Signal, name) =>
                {
                    Some(Received::Signal {
                        name: name.clone(),
                        payload: payload.clone(),
                    })
                }
                HistoryEvent::UpdateAccepted {
                    name,
                    inbox_seq,
                    update_id,
                    payload,
                    ..
                } if wants(InboxKind::Update, name) => Some(Received::Update {
                    name: name.clone(),
                    request: UpdateRequest {
                        update_id: update_id.clone(),
                        payload: payload.clone(),
                        inbox_seq: *inbox_seq,
                    },
                }),
                _ => None,
            })
            .await?;
        if let Some(received) = recorded {
            return Ok(received);
        }
        let item = self
            .wait_inbox(&mut st, step, |i| wants(i.kind, &i.name))
            .await?;
        let (event, received) = match item.kind {
            InboxKind::Update => {
                let update_id = crate::engine::caller_id(&item);
                (
                    HistoryEvent::UpdateAccepted {
                        step,
                        name: item.name.clone(),
                        inbox_seq: item.seq,
                        update_id: update_id.clone(),
                        payload: item.payload.clone(),
                    },
                    Received::Update {
                        name: item.name,
                        request: UpdateRequest {
                            update_id,
                            payload: item.payload,
                            inbox_seq: item.seq,
                        },
                    },
                )
            }
            _ => (
                HistoryEvent::SignalReceived {
                    step,
                    name: item.name.clone(),
                    inbox_seq: item.seq,
                    payload: item.payload.clone(),
                },
                Received::Signal {
                    name: item.name,
                    payload: item.payload,
                },
            ),
        };
        self.append(&mut st, event).await?;
        st.consume(item.seq);
        Ok(received)
    }

    /// Answers an update. The answer is recorded once; the caller (and any retry of the
    /// same update id) receives it.
    pub async fn complete_update<T, R: Serialize>(
        &self,
        request: &UpdateRequest<T>,
        result: &R,
    ) -> Result<()> {
        let mut st = self.inner.state.lock().await;
        let step = next_step(&mut st);
        let recorded = self
            .replay(&mut st, step, "update answer", |e| match e {
                HistoryEvent::UpdateCompleted {
                    inbox_seq, result, ..
                } if *inbox_seq == request.inbox_seq => Some(result.clone()),
                _ => None,
            })
            .await?;
        let result = match recorded {
            Some(result) => result,
            None => {
                let result = encode(result)?;
                self.append(
                    &mut st,
                    HistoryEvent::UpdateCompleted {
                        step,
                        inbox_seq: request.inbox_seq,
                        result: result.clone(),
                    },
                )
                .await?;
                result
            }
        };
        // Also after replay: the process may have died between history and store.
        if !st.replay_only {
            self.inner
                .engine
                .store
                .set_inbox_result(&self.inner.key, request.inbox_seq, &result)
                .await?;
            self.inner.engine.notify_changed(&self.inner.key, false);
        }
        Ok(())
    }

    /// Starts a child workflow (same tenant and namespace) and waits for its result. The
    /// start is idempotent, so a restarted parent finds the same child. Cancelling the
    /// parent while it waits cancels the child.
    pub async fn child<I: Serialize, O: DeserializeOwned>(
        &self,
        workflow_type: &str,
        child_id: &str,
        input: &I,
    ) -> Result<O> {
        let mut st = self.inner.state.lock().await;
        let step = next_step(&mut st);
        let what = format!("child workflow {workflow_type}");
        let started = self
            .replay(&mut st, step, &what, |e| {
                matches!(e, HistoryEvent::ChildStarted { workflow_type: t, .. } if t == workflow_type)
                    .then_some(())
            })
            .await?;
        match started {
            Some(()) => {
                let recorded = self
                    .replay(&mut st, step, "result of child", |e| match e {
                        HistoryEvent::ChildCompleted { outcome, .. } => Some(outcome.clone()),
                        _ => None,
                    })
                    .await?;
                if let Some(outcome) = recorded {
                    return child_outcome(child_id, outcome);
                }
            }
            None => {
                self.append(
                    &mut st,
                    HistoryEvent::ChildStarted {
                        step,
                        workflow_type: workflow_type.to_owned(),
                        child_id: child_id.to_owned(),
                    },
                )
                .await?;
            }
        }
        if st.replay_only {
            return Err(self.end_of_replay(&mut st).await);
        }
        let child_key =
            WorkflowKey::new(&self.inner.key.tenant, &self.inner.key.namespace, child_id);
        let engine = &self.inner.engine;
        let outcome = match engine
            .start_child(
                &child_key,
                workflow_type,
                encode(input)?,
                &self.inner.key.workflow_id,
            )
            .await
        {
            Err(e) if e.suspends() => return Err(e),
            Err(e) => StepOutcome::Err(e.to_failure()),
            Ok(()) => {
                let ended = tokio::select! {
                    r = engine.wait_closed(&child_key, None) => r?,
                    c = self.cancel_requested(&mut st) => {
                        let c = c?;
                        if let Err(e) = engine.cancel(&child_key, &c.name).await {
                            tracing::warn!(child = %child_key, error = %e, "could not cancel the child workflow");
                        }
                        return Err(self.deliver_cancel(&mut st, step, c).await);
                    }
                };
                match ended.status {
                    WorkflowStatus::Completed => {
                        StepOutcome::Ok(ended.result.unwrap_or(Value::Null))
                    }
                    _ => StepOutcome::Err(ended.failure.unwrap_or_else(|| crate::Failure {
                        kind: ended.status.as_str().to_owned(),
                        message: format!(
                            "child workflow {child_id} ended {}",
                            ended.status.as_str()
                        ),
                    })),
                }
            }
        };
        self.append(
            &mut st,
            HistoryEvent::ChildCompleted {
                step,
                child_id: child_id.to_owned(),
                outcome: outcome.clone(),
            },
        )
        .await?;
        child_outcome(child_id, outcome)
    }

    /// Runs a local, non-retried computation once and records its result (for values that
    /// must not change on replay: generated ids, configuration reads).
    pub async fn side_effect<T, F>(&self, name: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        self.recorded(name, |_| Ok(f())).await
    }

    /// The current time in ms since the Unix epoch, recorded (replay returns the same).
    pub async fn now_ms(&self) -> Result<u64> {
        let engine = self.inner.engine.clone();
        self.recorded("now", move |_| Ok(engine.now_ms())).await
    }

    /// A random number, recorded.
    pub async fn random_u64(&self) -> Result<u64> {
        self.recorded("random", |st| Ok(splitmix(&mut st.rng)))
            .await
    }

    /// A random (version 4) UUID, recorded.
    pub async fn uuid(&self) -> Result<String> {
        self.recorded("uuid", |st| {
            let hi = splitmix(&mut st.rng);
            let lo = splitmix(&mut st.rng);
            let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
            let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
            Ok(format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                hi >> 32,
                (hi >> 16) & 0xFFFF,
                hi & 0xFFFF,
                lo >> 48,
                lo & 0xFFFF_FFFF_FFFF
            ))
        })
        .await
    }

    /// The patch API. The first time an execution reaches `change_id` it records
    /// `max_supported` and returns it. An execution whose history passed this point before
    /// the change existed gets `min_supported` (the old code path) without recording
    /// anything. A recorded version outside `min_supported..=max_supported` is a
    /// non-determinism error: the code no longer supports that execution.
    pub async fn version(
        &self,
        change_id: &str,
        min_supported: u32,
        max_supported: u32,
    ) -> Result<u32> {
        let mut st = self.inner.state.lock().await;
        if let Some(&v) = st.versions.get(change_id) {
            if v < min_supported || v > max_supported {
                return Err(WorkflowError::NonDeterminism {
                    step: st.step,
                    expected: format!("version {v} of change {change_id}"),
                    found: format!("code supporting versions {min_supported}..={max_supported}"),
                });
            }
            return Ok(v);
        }
        if !st.replay.is_empty() {
            return Ok(min_supported);
        }
        if st.replay_only {
            return Err(self.end_of_replay(&mut st).await);
        }
        self.append(
            &mut st,
            HistoryEvent::VersionMarker {
                change_id: change_id.to_owned(),
                version: max_supported,
            },
        )
        .await?;
        st.versions.insert(change_id.to_owned(), max_supported);
        Ok(max_supported)
    }

    /// Ends this run and starts a new one of the same workflow with `input` and an empty
    /// history. Return the error this gives from the workflow function. Signals not yet
    /// consumed stay in the inbox for the new run.
    pub fn continue_as_new<I: Serialize>(&self, input: &I) -> WorkflowError {
        match encode(input) {
            Ok(v) => WorkflowError::ContinueAsNew(v),
            Err(e) => e,
        }
    }

    // ---- internals ----

    async fn recorded<T, F>(&self, name: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&mut RunState) -> Result<T>,
    {
        let mut st = self.inner.state.lock().await;
        let step = next_step(&mut st);
        let what = format!("recorded value {name}");
        let recorded = self
            .replay(&mut st, step, &what, |e| match e {
                HistoryEvent::Recorded { name: n, value, .. } if n == name => Some(value.clone()),
                _ => None,
            })
            .await?;
        if let Some(value) = recorded {
            return decode(value);
        }
        let v = f(&mut st)?;
        self.append(
            &mut st,
            HistoryEvent::Recorded {
                step,
                name: name.to_owned(),
                value: encode(&v)?,
            },
        )
        .await?;
        Ok(v)
    }

    /// Looks up the command at `step` in history: `Some` with what `recorded` takes from
    /// the event when history holds it, `None` where history ends (run live). A
    /// cancellation recorded at this step returns [`WorkflowError::Cancelled`]; any other
    /// event is a non-determinism error naming the step.
    async fn replay<R>(
        &self,
        st: &mut RunState,
        step: u32,
        what: &str,
        recorded: impl Fn(&HistoryEvent) -> Option<R>,
    ) -> Result<Option<R>> {
        let Some(front) = st.replay.front() else {
            if st.replay_only {
                return Err(self.end_of_replay(st).await);
            }
            self.inner.shared.mark_live();
            return Ok(None);
        };
        if front.step() == Some(step) {
            if let Some(r) = recorded(front) {
                st.replay.pop_front();
                return Ok(Some(r));
            }
            if let HistoryEvent::CancelRequested {
                reason, inbox_seq, ..
            } = front
            {
                let (reason, seq) = (reason.clone(), *inbox_seq);
                st.replay.pop_front();
                st.consume(seq);
                st.cancel_delivered = true;
                return Err(WorkflowError::Cancelled { reason });
            }
        }
        Err(WorkflowError::NonDeterminism {
            step,
            expected: front.describe(),
            found: what.to_owned(),
        })
    }

    /// In a replay-only run (the replay-test helper): history ended, so the run is done;
    /// wake the helper and never return.
    async fn end_of_replay(&self, st: &mut RunState) -> WorkflowError {
        st.replay_ended = true;
        self.inner.replay_end.notify_one();
        std::future::pending::<()>().await;
        WorkflowError::Unsupported("replay ended".into())
    }

    pub(crate) async fn append(&self, st: &mut RunState, event: HistoryEvent) -> Result<()> {
        self.inner.shared.mark_live();
        let payload = serde_json::to_vec(&event)?;
        let options = &self.inner.engine.options;
        let events = st.history_events + 1;
        let bytes = st.history_bytes + payload.len() as u64;
        if !event.is_terminal()
            && (events > options.history_max_events || bytes > options.history_max_bytes)
        {
            return Err(WorkflowError::HistoryLimitExceeded {
                events,
                bytes,
                max_events: options.history_max_events,
                max_bytes: options.history_max_bytes,
            });
        }
        if !st.warned
            && (events >= options.history_warn_events || bytes >= options.history_warn_bytes)
        {
            st.warned = true;
            tracing::warn!(workflow = %self.inner.key, events, bytes, "workflow history passed its warning threshold; consider continue-as-new");
        }
        let mut entries = Vec::with_capacity(2);
        let start = st.pending_start.take();
        if let Some(start) = &start {
            entries.push(Entry::new(
                st.next_seq,
                EntryKind::Event,
                serde_json::to_vec(start)?,
            ));
        }
        let seq = st.next_seq + entries.len() as u64;
        entries.push(Entry::new(seq, EntryKind::Event, payload));
        let written = entries.len() as u64;
        if let Err(e) = self
            .inner
            .engine
            .journal
            .append(&self.inner.stream, st.epoch, entries)
            .await
        {
            st.pending_start = start;
            return Err(e.into());
        }
        st.next_seq += written;
        st.history_events = events;
        st.history_bytes = bytes;
        if let Some(hook) = &options.event_hook {
            if let Some(start) = &start {
                hook(&self.inner.key, start);
            }
            hook(&self.inner.key, &event);
        }
        Ok(())
    }

    /// Reads new inbox items from the store into `pending`, unless `force` is false and the
    /// last read is younger than the poll interval: senders in this process wake the run
    /// (and a wake forces a read), so the store is polled only for other processes.
    async fn refresh_inbox(&self, st: &mut RunState, force: bool) -> Result<()> {
        let poll = self.inner.engine.options.inbox_poll;
        if !force && st.inbox_read_at.is_some_and(|t| t.elapsed() < poll) {
            return Ok(());
        }
        st.inbox_read_at = Some(Instant::now());
        let items = self
            .inner
            .engine
            .store
            .read_inbox(&self.inner.key, st.inbox_seen)
            .await?;
        for item in items {
            st.inbox_seen = st.inbox_seen.max(item.seq);
            if !st.is_consumed(item.seq) {
                st.pending.insert(item.seq, item);
            }
        }
        Ok(())
    }

    /// Waits until an inbox change may have happened (in-process wake-up or poll interval).
    async fn inbox_changed(&self) {
        tokio::select! {
            () = self.inner.shared.wake.notified() => {}
            () = tokio::time::sleep(self.inner.engine.options.inbox_poll) => {}
        }
    }

    /// Resolves when a cancel request is pending (never, once cancellation was delivered).
    async fn cancel_requested(&self, st: &mut RunState) -> Result<InboxItem> {
        if st.cancel_delivered || st.replay_only {
            return std::future::pending().await;
        }
        let mut force = false;
        loop {
            self.refresh_inbox(st, force).await?;
            if let Some(c) = st.pending.values().find(|i| i.kind == InboxKind::Cancel) {
                return Ok(c.clone());
            }
            self.inbox_changed().await;
            force = true;
        }
    }

    /// Waits for the first pending inbox item that `wanted` accepts, delivering a pending
    /// cancellation instead if there is one.
    async fn wait_inbox(
        &self,
        st: &mut RunState,
        step: u32,
        wanted: impl Fn(&InboxItem) -> bool,
    ) -> Result<InboxItem> {
        let mut force = false;
        loop {
            self.refresh_inbox(st, force).await?;
            if !st.cancel_delivered {
                if let Some(c) = st.pending.values().find(|i| i.kind == InboxKind::Cancel) {
                    let c = c.clone();
                    return Err(self.deliver_cancel(st, step, c).await);
                }
            }
            if let Some(item) = st
                .pending
                .values()
                .find(|i| i.kind != InboxKind::Cancel && wanted(i))
            {
                return Ok(item.clone());
            }
            self.inbox_changed().await;
            force = true;
        }
    }

    /// Records the cancellation at `step` and returns the error to hand to workflow code.
    async fn deliver_cancel(&self, st: &mut RunState, step: u32, item: InboxItem) -> WorkflowError {
        let event = HistoryEvent::CancelRequested {
            step,
            inbox_seq: item.seq,
            reason: item.name.clone(),
        };
        if let Err(e) = self.append(st, event).await {
            return e;
        }
        st.consume(item.seq);
        st.cancel_delivered = true;
        WorkflowError::Cancelled { reason: item.name }
    }
}

fn not_asked_for(kind: &str, name: &str) -> WorkflowError {
    WorkflowError::Storage(format!("received {kind} {name}, which was not asked for"))
}

fn next_step(st: &mut RunState) -> u32 {
    let s = st.step;
    st.step += 1;
    s
}

fn child_outcome<O: DeserializeOwned>(
    child_id: &str,
    outcome: StepOutcome<crate::Failure>,
) -> Result<O> {
    match outcome {
        StepOutcome::Ok(v) => decode(v),
        StepOutcome::Err(failure) => Err(WorkflowError::Child {
            id: child_id.to_owned(),
            failure,
        }),
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed for the run's random values (live only; replay returns recorded values).
pub(crate) fn random_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}
