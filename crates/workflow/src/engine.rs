//! The workflow engine: registered workflow code, the runs it drives, and the client API.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::{Mutex, RwLock};
use plexspaces_core::{Actor, BoxError, Context, ExitReason, Node};
use plexspaces_journal::{Clock, Epoch, Journal, StreamId, SystemClock};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{watch, Notify};

use crate::context::{random_seed, CtxInner, RunShared, RunState};
use crate::history::HistoryEvent;
use crate::store::{
    InboxKind, NewInboxItem, WorkflowKey, WorkflowRecord, WorkflowStatus, WorkflowStore,
};
use crate::{Failure, Result, WorkflowContext, WorkflowError};

/// Workflow code: an async function over a [`WorkflowContext`] (Temporal's workflow
/// definition). All time, randomness, ids and outside effects must come from the context.
pub trait WorkflowBehavior: Send + Sync + 'static {
    /// The input.
    type Input: Serialize + DeserializeOwned + Send + 'static;
    /// The result.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// The workflow type name clients start it by.
    fn workflow_type(&self) -> &str;

    /// The code version. New executions start on the highest registered version; a running
    /// execution replays on the version it started with.
    fn version(&self) -> u32 {
        1
    }

    /// The workflow.
    fn run(
        &self,
        ctx: WorkflowContext,
        input: Self::Input,
    ) -> impl Future<Output = Result<Self::Output>> + Send;

    /// Validates an update before it is accepted (nothing is recorded for a rejected one).
    /// Updates must be declared, as in Temporal: the default rejects every update, so a
    /// caller gets an immediate rejection instead of waiting for an answer that never comes.
    fn validate_update(&self, name: &str, payload: &Value) -> std::result::Result<(), String> {
        let _ = payload;
        Err(undeclared_update(self.workflow_type(), name))
    }
}

fn undeclared_update(workflow_type: &str, name: &str) -> String {
    format!("workflow type {workflow_type} declares no update named {name}")
}

type Validator = Arc<dyn Fn(&Value) -> std::result::Result<(), String> + Send + Sync>;

/// A workflow written as a closure; see [`workflow_fn`].
pub struct FnWorkflow<I, O, F> {
    name: String,
    version: u32,
    f: F,
    validators: HashMap<String, Validator>,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O, F> std::fmt::Debug for FnWorkflow<I, O, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnWorkflow")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

/// A workflow from an async closure `|ctx, input| async move { ... }`.
pub fn workflow_fn<I, O, F, Fut>(workflow_type: &str, f: F) -> FnWorkflow<I, O, F>
where
    F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O>> + Send + 'static,
{
    FnWorkflow {
        name: workflow_type.to_owned(),
        version: 1,
        f,
        validators: HashMap::new(),
        _types: PhantomData,
    }
}

impl<I, O, F> FnWorkflow<I, O, F> {
    /// Same workflow with another code version.
    pub fn with_version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Declares updates named `name`, validated by `validator` (return `Ok(())` to accept
    /// every payload). Updates with no declared name are rejected.
    pub fn with_update_validator(
        mut self,
        name: &str,
        validator: impl Fn(&Value) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.validators.insert(name.to_owned(), Arc::new(validator));
        self
    }
}

impl<I, O, F, Fut> WorkflowBehavior for FnWorkflow<I, O, F>
where
    I: Serialize + DeserializeOwned + Send + 'static,
    O: Serialize + DeserializeOwned + Send + 'static,
    F: Fn(WorkflowContext, I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O>> + Send + 'static,
{
    type Input = I;
    type Output = O;

    fn workflow_type(&self) -> &str {
        &self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn run(&self, ctx: WorkflowContext, input: I) -> impl Future<Output = Result<O>> + Send {
        (self.f)(ctx, input)
    }

    fn validate_update(&self, name: &str, payload: &Value) -> std::result::Result<(), String> {
        match self.validators.get(name) {
            Some(v) => v(payload),
            None => Err(undeclared_update(&self.name, name)),
        }
    }
}

/// A registered workflow with its types erased to JSON.
pub(crate) trait ErasedWorkflow: Send + Sync {
    fn run(
        self: Arc<Self>,
        ctx: WorkflowContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value>>;
    fn check_input(&self, input: &Value) -> Result<()>;
    fn validate_update(&self, name: &str, payload: &Value) -> std::result::Result<(), String>;
}

struct Erased<W>(W);

impl<W: WorkflowBehavior> ErasedWorkflow for Erased<W> {
    fn run(
        self: Arc<Self>,
        ctx: WorkflowContext,
        input: Value,
    ) -> BoxFuture<'static, Result<Value>> {
        Box::pin(async move {
            let input: W::Input = serde_json::from_value(input)?;
            let output = self.0.run(ctx, input).await?;
            Ok(serde_json::to_value(output)?)
        })
    }

    fn check_input(&self, input: &Value) -> Result<()> {
        serde_json::from_value::<W::Input>(input.clone())
            .map(drop)
            .map_err(|e| WorkflowError::InvalidArgument(format!("bad workflow input: {e}")))
    }

    fn validate_update(&self, name: &str, payload: &Value) -> std::result::Result<(), String> {
        self.0.validate_update(name, payload)
    }
}

/// A clock that reads the wall clock once and then moves with tokio's clock, so a paused
/// test clock also drives durable timers. In production it is the wall clock, but
/// monotonic.
#[derive(Debug)]
pub struct TokioClock {
    base_ms: u64,
    base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting at the current wall time.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base_ms: SystemClock.now_ms(),
            base: tokio::time::Instant::now(),
        })
    }
}

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        self.base_ms + u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Called after each history event is durable (metrics, tests that need to act at an exact
/// point of a run).
pub type EventHook = Arc<dyn Fn(&WorkflowKey, &HistoryEvent) + Send + Sync>;

/// Called when a durable timer fires (after its `TimerFired` event is durable) with the
/// run, the recorded fire time and the time it fired (ms since the Unix epoch, engine
/// clock): their difference is the timer's lateness (for example across a restart).
pub type TimerHook = Arc<dyn Fn(&WorkflowKey, u64, u64) + Send + Sync>;

/// Engine options.
#[derive(Clone)]
pub struct EngineOptions {
    /// The clock of durable timers and `now_ms` (default [`TokioClock`]).
    pub clock: Arc<dyn Clock>,
    /// How often a waiting run re-reads its inbox from the store (signals sent by another
    /// process) and a client re-reads a record; in-process changes wake them at once.
    pub inbox_poll: Duration,
    /// History events after which `history_warning` is true and a warning is logged.
    pub history_warn_events: u64,
    /// History bytes after which `history_warning` is true and a warning is logged.
    pub history_warn_bytes: u64,
    /// Hard limit of history events per run: the workflow fails with
    /// [`WorkflowError::HistoryLimitExceeded`] instead of writing more.
    pub history_max_events: u64,
    /// Hard limit of history bytes per run.
    pub history_max_bytes: u64,
    /// Called after each history event is durable.
    pub event_hook: Option<EventHook>,
    /// Called when a durable timer fires, with its lateness (a metric).
    pub timer_hook: Option<TimerHook>,
}

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("inbox_poll", &self.inbox_poll)
            .field("history_warn_events", &self.history_warn_events)
            .field("history_max_events", &self.history_max_events)
            .field("history_warn_bytes", &self.history_warn_bytes)
            .field("history_max_bytes", &self.history_max_bytes)
            .finish()
    }
}

impl Default for EngineOptions {
    /// Poll every second; warn at 10,000 events or 10 MiB, fail at 50,000 events or 50 MiB
    /// (Temporal's limits).
    fn default() -> Self {
        Self {
            clock: TokioClock::new(),
            inbox_poll: Duration::from_secs(1),
            history_warn_events: 10_000,
            history_warn_bytes: 10 << 20,
            history_max_events: 50_000,
            history_max_bytes: 50 << 20,
            event_hook: None,
            timer_hook: None,
        }
    }
}

/// The registered code versions of one workflow type.
type Versions = BTreeMap<u32, Arc<dyn ErasedWorkflow>>;

pub(crate) struct EngineInner {
    pub(crate) node: Option<Node>,
    pub(crate) journal: Arc<dyn Journal>,
    pub(crate) store: Arc<dyn WorkflowStore>,
    pub(crate) options: EngineOptions,
    definitions: RwLock<HashMap<String, Versions>>,
    running: Mutex<HashMap<WorkflowKey, RunEntry>>,
    /// Per workflow: bumped when its record changes or an update is answered, so waiters
    /// re-read only their own record.
    changed: Mutex<HashMap<WorkflowKey, watch::Sender<u64>>>,
}

impl EngineInner {
    pub(crate) fn now_ms(&self) -> u64 {
        self.options.clock.now_ms()
    }

    /// Sleeps until the engine clock reads at least `at_ms` (never returns early).
    pub(crate) async fn sleep_until_ms(&self, at_ms: u64) {
        loop {
            let now = self.now_ms();
            if now >= at_ms {
                return;
            }
            tokio::time::sleep(Duration::from_millis((at_ms - now).min(60_000))).await;
        }
    }

    /// Wakes whoever waits on `key`'s record; `closed`: nothing will change any more.
    pub(crate) fn notify_changed(&self, key: &WorkflowKey, closed: bool) {
        let mut changed = self.changed.lock();
        if let Some(tx) = changed.get(key) {
            tx.send_modify(|v| *v = v.wrapping_add(1));
        }
        if closed {
            changed.remove(key);
        }
    }

    fn watch_changes(&self, key: &WorkflowKey) -> watch::Receiver<u64> {
        self.changed
            .lock()
            .entry(key.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn definition(
        &self,
        workflow_type: &str,
        version: Option<u32>,
    ) -> Result<Arc<dyn ErasedWorkflow>> {
        let defs = self.definitions.read();
        let versions = defs.get(workflow_type);
        let found = match version {
            Some(v) => versions.and_then(|m| m.get(&v)),
            None => versions.and_then(|m| m.values().next_back()),
        };
        found.cloned().ok_or_else(|| WorkflowError::UnknownType {
            workflow_type: workflow_type.to_owned(),
            version: version.unwrap_or(0),
        })
    }

    fn latest_version(&self, workflow_type: &str) -> Option<u32> {
        self.definitions
            .read()
            .get(workflow_type)
            .and_then(|m| m.keys().next_back().copied())
    }

    async fn record(&self, key: &WorkflowKey) -> Result<WorkflowRecord> {
        self.store
            .get(key)
            .await?
            .ok_or_else(|| WorkflowError::NotFound(key.to_string()))
    }

    /// Waits until `done(record)` holds; `None` waits without limit.
    async fn wait_record(
        &self,
        key: &WorkflowKey,
        timeout: Option<Duration>,
        done: impl Fn(&WorkflowRecord) -> bool,
    ) -> Result<WorkflowRecord> {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut changes = self.watch_changes(key);
        loop {
            changes.borrow_and_update();
            let record = self.record(key).await?;
            if done(&record) {
                return Ok(record);
            }
            let wait = self.options.inbox_poll;
            let sleep = match deadline {
                Some(d) if tokio::time::Instant::now() >= d => {
                    return Err(WorkflowError::Timeout(format!(
                        "workflow {key} is still {}",
                        record.status.as_str()
                    )))
                }
                Some(d) => tokio::time::sleep_until(d.min(tokio::time::Instant::now() + wait)),
                None => tokio::time::sleep(wait),
            };
            tokio::select! {
                _ = changes.changed() => {}
                () = sleep => {}
            }
        }
    }

    pub(crate) async fn wait_closed(
        &self,
        key: &WorkflowKey,
        timeout: Option<Duration>,
    ) -> Result<WorkflowRecord> {
        self.wait_record(key, timeout, |r| r.status.is_closed())
            .await
    }

    pub(crate) async fn start_child(
        self: &Arc<Self>,
        key: &WorkflowKey,
        workflow_type: &str,
        input: Value,
        parent: &str,
    ) -> Result<()> {
        self.start(key, workflow_type, input, Some(parent))
            .await
            .map(drop)
    }

    async fn start(
        self: &Arc<Self>,
        key: &WorkflowKey,
        workflow_type: &str,
        input: Value,
        parent: Option<&str>,
    ) -> Result<StartedWorkflow> {
        key.validate()?;
        let def = self.definition(workflow_type, None)?;
        def.check_input(&input)?;
        let version = self.latest_version(workflow_type).unwrap_or(1);
        let now = self.now_ms();
        let record = WorkflowRecord {
            key: key.clone(),
            workflow_type: workflow_type.to_owned(),
            version,
            run: 1,
            status: WorkflowStatus::Running,
            input,
            result: None,
            failure: None,
            queries: None,
            parent: parent.map(str::to_owned),
            created_ms: now,
            updated_ms: now,
        };
        let (record, already_started) = match self.store.insert_if_absent(&record).await? {
            Some(existing) => (existing, true),
            None => (record, false),
        };
        if record.status == WorkflowStatus::Running {
            self.ensure_running(key);
        }
        Ok(StartedWorkflow {
            key: key.clone(),
            workflow_type: record.workflow_type,
            run: record.run,
            status: record.status,
            already_started,
        })
    }

    pub(crate) async fn cancel(self: &Arc<Self>, key: &WorkflowKey, reason: &str) -> Result<()> {
        if reason.len() > 1024 || reason.chars().any(char::is_control) {
            return Err(WorkflowError::InvalidArgument(
                "a cancel reason is at most 1024 bytes without control characters".into(),
            ));
        }
        self.push(key, InboxKind::Cancel, reason, &Value::Null, Some(""))
            .await
            .map(drop)
    }

    async fn push(
        &self,
        key: &WorkflowKey,
        kind: InboxKind,
        name: &str,
        payload: &Value,
        dedupe_id: Option<&str>,
    ) -> Result<crate::InboxItem> {
        let record = self.record(key).await?;
        self.push_open(&record, kind, name, payload, dedupe_id)
            .await
    }

    /// Stores an inbox item for the workflow of `record` (read by the caller) unless it
    /// has closed, and wakes its run if it runs here.
    async fn push_open(
        &self,
        record: &WorkflowRecord,
        kind: InboxKind,
        name: &str,
        payload: &Value,
        dedupe_id: Option<&str>,
    ) -> Result<crate::InboxItem> {
        let key = &record.key;
        if record.status.is_closed() {
            return Err(WorkflowError::Closed {
                id: key.workflow_id.clone(),
                status: record.status.as_str().to_owned(),
            });
        }
        // Dedupe ids are scoped by kind, so a caller's signal id can never collide with an
        // update id or take the place of the one cancel request.
        let scoped = dedupe_id.map(|id| format!("{}:{id}", kind_prefix(kind)));
        let item = self
            .store
            .push_inbox(
                key,
                NewInboxItem {
                    kind,
                    name,
                    payload,
                    dedupe_id: scoped.as_deref(),
                },
            )
            .await?;
        if let Some(entry) = self.running.lock().get(key) {
            entry.shared.wake.notify_one();
        }
        Ok(item)
    }

    /// Starts driving the workflow here unless this engine already does.
    fn ensure_running(self: &Arc<Self>, key: &WorkflowKey) {
        let (shared, task_slot) = {
            let mut running = self.running.lock();
            if running.contains_key(key) {
                return;
            }
            let entry = RunEntry::default();
            let parts = (entry.shared.clone(), entry.task.clone());
            running.insert(key.clone(), entry);
            parts
        };
        let driver: BoxFuture<'static, ()> = Box::pin(drive(self.clone(), key.clone(), shared));
        match &self.node {
            Some(node) => {
                let process = WorkflowProcess {
                    driver: Some(driver),
                    task: task_slot,
                };
                match node.spawn(process) {
                    // The name is still held only while an earlier process of this workflow
                    // is stopping; the workflow then runs unnamed.
                    Ok(actor) => {
                        if let Err(e) = node.register(&format!("workflow:{key}"), &actor.pid()) {
                            tracing::debug!(workflow = %key, error = %e, "workflow process name not registered");
                        }
                    }
                    Err(e) => {
                        tracing::error!(workflow = %key, error = %e, "could not spawn the workflow process");
                        self.running.lock().remove(key);
                    }
                }
            }
            None => {
                let handle = tokio::spawn(driver);
                *task_slot.lock() = Some(handle.abort_handle());
            }
        }
    }
}

/// A workflow this engine drives: what it shares with the run, and the run's task.
#[derive(Default)]
struct RunEntry {
    shared: Arc<RunShared>,
    task: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

/// The actor a running workflow lives in: registered as `workflow:<tenant>/<ns>/<id>`, so
/// it can be found, linked and monitored; it stops (normal) when the workflow's run ends.
struct WorkflowProcess {
    driver: Option<BoxFuture<'static, ()>>,
    task: Arc<Mutex<Option<tokio::task::AbortHandle>>>,
}

/// Messages of a workflow process.
#[derive(Debug)]
pub(crate) enum ProcessMsg {
    Finished,
}

impl Actor for WorkflowProcess {
    type Msg = ProcessMsg;
    type Reply = ();

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> std::result::Result<(), BoxError> {
        let me = ctx.myself().clone();
        if let Some(driver) = self.driver.take() {
            let handle = tokio::spawn(async move {
                driver.await;
                let _ = me.tell(ProcessMsg::Finished).await;
            });
            *self.task.lock() = Some(handle.abort_handle());
        }
        Ok(())
    }

    async fn handle_call(
        &mut self,
        msg: ProcessMsg,
        ctx: &mut Context<Self>,
    ) -> std::result::Result<Option<()>, BoxError> {
        match msg {
            ProcessMsg::Finished => ctx.stop(ExitReason::Normal),
        }
        Ok(Some(()))
    }

    async fn on_stop(&mut self, _ctx: &mut Context<Self>, _reason: &ExitReason) {
        if let Some(task) = self.task.lock().take() {
            task.abort();
        }
    }
}

/// The history stream of one run.
pub(crate) fn history_stream(key: &WorkflowKey, run: u64) -> StreamId {
    StreamId::new(
        &key.tenant,
        &key.namespace,
        &format!("workflow/{}/run/{run}", key.workflow_id),
    )
}

/// Reads a run's history, repairing a torn tail. Returns the events and their byte size.
async fn load_history(
    journal: &Arc<dyn Journal>,
    stream: &StreamId,
    epoch: Option<Epoch>,
) -> Result<(Vec<HistoryEvent>, u64)> {
    let next = journal.next_seq(stream).await?;
    if next <= 1 {
        return Ok((Vec::new(), 0));
    }
    let entries = journal.read(stream, 1, next - 1).await?;
    let mut events = Vec::with_capacity(entries.len());
    let mut bytes = 0u64;
    let last = entries.len().saturating_sub(1);
    for (i, entry) in entries.iter().enumerate() {
        let decoded = if entry.is_valid() {
            serde_json::from_slice::<HistoryEvent>(&entry.payload).ok()
        } else {
            None
        };
        match decoded {
            Some(e) => {
                bytes += entry.payload.len() as u64;
                events.push(e);
            }
            None if i == last && epoch.is_some() => {
                if let Some(epoch) = epoch {
                    tracing::warn!(%stream, seq = entry.seq, "truncating a torn history tail");
                    journal.truncate_from(stream, epoch, entry.seq).await?;
                }
            }
            None => {
                return Err(WorkflowError::Storage(format!(
                    "corrupt history entry {} in {stream}",
                    entry.seq
                )))
            }
        }
    }
    Ok((events, bytes))
}

/// Drives a workflow's runs until it closes, is suspended, or is taken over.
async fn drive(engine: Arc<EngineInner>, key: WorkflowKey, shared: Arc<RunShared>) {
    loop {
        match run_once(&engine, &key, &shared).await {
            Ok(true) => continue,
            Ok(false) => break,
            Err(WorkflowError::Fenced(e)) => {
                tracing::info!(workflow = %key, error = %e, "another activation took this workflow over");
                break;
            }
            Err(e) => {
                tracing::error!(workflow = %key, error = %e, "workflow suspended");
                if let Err(store_error) = suspend(&engine, &key, &shared, &e).await {
                    tracing::error!(workflow = %key, error = %store_error, "could not record the suspension");
                }
                break;
            }
        }
    }
    shared.mark_live();
    engine.running.lock().remove(&key);
    engine.notify_changed(&key, false);
}

async fn suspend(
    engine: &EngineInner,
    key: &WorkflowKey,
    shared: &RunShared,
    error: &WorkflowError,
) -> Result<()> {
    let mut record = engine.record(key).await?;
    if record.status.is_closed() {
        return Ok(());
    }
    record.status = WorkflowStatus::Suspended;
    record.failure = Some(error.to_failure());
    record.queries = Some(Value::Object(shared.queries.lock().clone()));
    record.updated_ms = engine.now_ms();
    engine.store.update(&record).await
}

/// Runs (or replays and continues) the workflow's current run. `Ok(true)`: it continued as
/// new and the next run should be driven.
async fn run_once(
    engine: &Arc<EngineInner>,
    key: &WorkflowKey,
    shared: &Arc<RunShared>,
) -> Result<bool> {
    let mut record = engine.record(key).await?;
    if record.status.is_closed() {
        return Ok(false);
    }
    let run = record.run;
    let stream = history_stream(key, run);
    let epoch = engine.journal.acquire_epoch(&stream).await?;
    let (mut events, mut bytes) = load_history(&engine.journal, &stream, Some(epoch)).await?;
    let mut pending_start = None;
    if events.is_empty() {
        let (inbox_low_water, consumed_above) = if run > 1 {
            inbox_handover_from(engine, &history_stream(key, run - 1)).await?
        } else {
            (1, Vec::new())
        };
        let started = HistoryEvent::WorkflowStarted {
            workflow_type: record.workflow_type.clone(),
            version: record.version,
            run,
            input: record.input.clone(),
            inbox_low_water,
            consumed_above,
        };
        bytes = serde_json::to_vec(&started)?.len() as u64;
        pending_start = Some(started.clone());
        events.push(started);
    }
    let history_events = events.len() as u64;
    let mut events: VecDeque<HistoryEvent> = events.into();
    let Some(HistoryEvent::WorkflowStarted {
        workflow_type,
        version,
        input,
        inbox_low_water,
        consumed_above,
        ..
    }) = events.pop_front()
    else {
        return Err(WorkflowError::Storage(format!(
            "history of {key} run {run} does not begin with its start"
        )));
    };
    if let Some(last) = events.back() {
        if last.is_terminal() {
            let last = last.clone();
            return finalize(engine, &mut record, shared, last).await;
        }
    }
    let definition = engine.definition(&workflow_type, Some(version))?;
    if record.status == WorkflowStatus::Suspended {
        record.status = WorkflowStatus::Running;
        record.failure = None;
        record.updated_ms = engine.now_ms();
        engine.store.update(&record).await?;
    }

    let mut versions = HashMap::new();
    let mut consumed: std::collections::BTreeSet<u64> = consumed_above.into_iter().collect();
    let mut replay = VecDeque::with_capacity(events.len());
    for e in events {
        match &e {
            HistoryEvent::VersionMarker { change_id, version } => {
                versions.insert(change_id.clone(), *version);
                continue;
            }
            HistoryEvent::SignalReceived { inbox_seq, .. }
            | HistoryEvent::UpdateAccepted { inbox_seq, .. } => {
                consumed.insert(*inbox_seq);
            }
            // Cancellation recorded in history is re-delivered by replay itself.
            HistoryEvent::CancelRequested { inbox_seq, .. } => {
                consumed.insert(*inbox_seq);
            }
            _ => {}
        }
        replay.push_back(e);
    }
    let state = RunState {
        epoch,
        next_seq: history_events + 1 - u64::from(pending_start.is_some()),
        pending_start,
        replay,
        versions,
        step: 0,
        history_events,
        history_bytes: bytes,
        warned: false,
        inbox_low_water,
        consumed,
        inbox_seen: 0,
        pending: BTreeMap::new(),
        inbox_read_at: None,
        cancel_delivered: false,
        rng: random_seed(),
        replay_only: false,
        replay_ended: false,
    };
    let ctx = WorkflowContext {
        inner: Arc::new(CtxInner {
            engine: engine.clone(),
            key: key.clone(),
            run,
            stream,
            shared: shared.clone(),
            state: tokio::sync::Mutex::new(state),
            replay_end: Notify::new(),
        }),
    };
    let outcome = AssertUnwindSafe(definition.run(ctx.clone(), input))
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "workflow code panicked".to_owned());
            Err(WorkflowError::Panicked(message))
        });
    let terminal = {
        let st = ctx.inner.state.lock().await;
        terminal_event(outcome, &st)?
    };
    let mut st = ctx.inner.state.lock().await;
    ctx.append(&mut st, terminal.clone()).await?;
    drop(st);
    finalize(engine, &mut record, shared, terminal).await
}

/// The terminal event for the workflow function's outcome, or the error that suspends it.
pub(crate) fn terminal_event(outcome: Result<Value>, st: &RunState) -> Result<HistoryEvent> {
    if let Err(e) = &outcome {
        if e.suspends() {
            return Err(e.clone());
        }
    }
    if let Some(front) = st.replay.front() {
        return Err(WorkflowError::NonDeterminism {
            step: st.step,
            expected: front.describe(),
            found: "the end of the workflow".into(),
        });
    }
    Ok(match outcome {
        Ok(result) => HistoryEvent::WorkflowCompleted { result },
        Err(WorkflowError::ContinueAsNew(input)) => {
            let (inbox_low_water, consumed_above) = st.inbox_handover();
            HistoryEvent::ContinuedAsNew {
                input,
                inbox_low_water,
                consumed_above,
            }
        }
        Err(WorkflowError::Cancelled { reason }) if st.cancel_delivered => {
            HistoryEvent::WorkflowCancelled { reason }
        }
        Err(e) => HistoryEvent::WorkflowFailed {
            failure: e.to_failure(),
        },
    })
}

async fn inbox_handover_from(engine: &EngineInner, previous: &StreamId) -> Result<(u64, Vec<u64>)> {
    let next = engine.journal.next_seq(previous).await?;
    let last = engine
        .journal
        .read(previous, next.saturating_sub(1), next.saturating_sub(1))
        .await?;
    match last
        .first()
        .map(|e| serde_json::from_slice::<HistoryEvent>(&e.payload))
    {
        Some(Ok(HistoryEvent::ContinuedAsNew {
            inbox_low_water,
            consumed_above,
            ..
        })) => Ok((inbox_low_water, consumed_above)),
        _ => Err(WorkflowError::Storage(format!(
            "{previous} does not end with continue-as-new"
        ))),
    }
}

/// Applies a run's terminal event to the record (idempotent: also used when recovery finds
/// a run that ended before the record was updated). `Ok(true)`: a next run follows.
async fn finalize(
    engine: &EngineInner,
    record: &mut WorkflowRecord,
    shared: &RunShared,
    terminal: HistoryEvent,
) -> Result<bool> {
    let queries = shared.queries.lock().clone();
    if !queries.is_empty() {
        record.queries = Some(Value::Object(queries));
    }
    let mut next_run = false;
    match terminal {
        HistoryEvent::WorkflowCompleted { result } => {
            record.status = WorkflowStatus::Completed;
            record.result = Some(result);
        }
        HistoryEvent::WorkflowFailed { failure } => {
            record.status = WorkflowStatus::Failed;
            record.failure = Some(failure);
        }
        HistoryEvent::WorkflowCancelled { reason } => {
            record.status = WorkflowStatus::Cancelled;
            record.failure = Some(Failure {
                kind: "cancelled".into(),
                message: reason,
            });
        }
        HistoryEvent::ContinuedAsNew { input, .. } => {
            record.run += 1;
            record.input = input;
            record.status = WorkflowStatus::Running;
            record.version = engine
                .latest_version(&record.workflow_type)
                .unwrap_or(record.version);
            next_run = true;
        }
        other => {
            return Err(WorkflowError::Storage(format!(
                "{} is not a terminal event",
                other.describe()
            )))
        }
    }
    record.updated_ms = engine.now_ms();
    engine.store.update(record).await?;
    engine.notify_changed(&record.key, record.status.is_closed());
    Ok(next_run)
}

/// What `start` did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartedWorkflow {
    /// The workflow.
    pub key: WorkflowKey,
    /// Its type (the running one's, when it already existed).
    pub workflow_type: String,
    /// Its current run.
    pub run: u64,
    /// Its status.
    pub status: WorkflowStatus,
    /// True when a workflow with this id already existed (nothing new was started).
    pub already_started: bool,
}

/// What `describe` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowDescription {
    /// The stored record.
    #[serde(flatten)]
    pub record: WorkflowRecord,
    /// Events in the current run's history.
    pub history_events: u64,
    /// Whether this engine is driving it now.
    pub active_here: bool,
}

/// The longest a query waits for a recovering workflow to finish replaying its history.
pub const QUERY_REPLAY_WAIT: Duration = Duration::from_secs(10);

/// Runs workflows and serves the client API (start, signal, query, update, cancel, result,
/// describe, list, history). Cheap to clone.
#[derive(Clone)]
pub struct WorkflowEngine {
    inner: Arc<EngineInner>,
}

impl std::fmt::Debug for WorkflowEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowEngine")
            .field("options", &self.inner.options)
            .field("running", &self.inner.running.lock().len())
            .finish()
    }
}

impl WorkflowEngine {
    /// An engine keeping history in `journal` and records in `store`. With a `node`, each
    /// running workflow is an actor process on it (`workflow:<tenant>/<ns>/<id>`);
    /// without one, a plain task.
    pub fn new(
        node: Option<Node>,
        journal: Arc<dyn Journal>,
        store: Arc<dyn WorkflowStore>,
        options: EngineOptions,
    ) -> Self {
        Self {
            inner: Arc::new(EngineInner {
                node,
                journal,
                store,
                options,
                definitions: RwLock::new(HashMap::new()),
                running: Mutex::new(HashMap::new()),
                changed: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Registers workflow code (a type may have several versions registered at once).
    pub fn register<W: WorkflowBehavior>(&self, workflow: W) -> &Self {
        let name = workflow.workflow_type().to_owned();
        let version = workflow.version();
        self.inner
            .definitions
            .write()
            .entry(name)
            .or_default()
            .insert(version, Arc::new(Erased(workflow)));
        self
    }

    /// Registered workflow types with their versions.
    pub fn workflow_types(&self) -> Vec<(String, Vec<u32>)> {
        let defs = self.inner.definitions.read();
        let mut out: Vec<_> = defs
            .iter()
            .map(|(k, v)| (k.clone(), v.keys().copied().collect()))
            .collect();
        out.sort();
        out
    }

    /// Resumes every running or suspended workflow whose code is registered here (call it
    /// once at startup, after registering). Returns how many were resumed.
    pub async fn recover(&self) -> Result<usize> {
        let mut resumed = 0;
        for mut record in self.inner.store.list_unfinished().await? {
            if self
                .inner
                .definition(&record.workflow_type, Some(record.version))
                .is_ok()
            {
                if record.status == WorkflowStatus::Suspended {
                    record.status = WorkflowStatus::Running;
                    record.failure = None;
                    record.updated_ms = self.inner.now_ms();
                    self.inner.store.update(&record).await?;
                }
                self.inner.ensure_running(&record.key);
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Starts a workflow. Idempotent: if a workflow with this id exists (running or not),
    /// nothing new starts and that workflow is returned with `already_started`.
    pub async fn start<I: Serialize>(
        &self,
        key: &WorkflowKey,
        workflow_type: &str,
        input: &I,
    ) -> Result<StartedWorkflow> {
        let input = serde_json::to_value(input)?;
        self.inner.start(key, workflow_type, input, None).await
    }

    /// Sends a signal. It is stored first, so it reaches the workflow even if no process
    /// runs it now. A second signal with the same `dedupe_id` is not stored again. Returns
    /// the signal's acceptance seq.
    pub async fn signal<P: Serialize>(
        &self,
        key: &WorkflowKey,
        name: &str,
        payload: &P,
        dedupe_id: Option<&str>,
    ) -> Result<u64> {
        check_name("signal", name)?;
        let payload = serde_json::to_value(payload)?;
        let item = self
            .inner
            .push(key, InboxKind::Signal, name, &payload, dedupe_id)
            .await?;
        Ok(item.seq)
    }

    /// Answers a query from the workflow's last committed query values (a closed workflow
    /// answers from the values it ended with). Never journaled. While a recovering run
    /// replays its history the query waits (up to [`QUERY_REPLAY_WAIT`]) for the replay to
    /// end, so it never sees a half-replayed value; past that it is a typed `Timeout`.
    pub async fn query(&self, key: &WorkflowKey, name: &str) -> Result<Value> {
        let shared = self.inner.running.lock().get(key).map(|e| e.shared.clone());
        if let Some(shared) = shared {
            if !shared.wait_live(QUERY_REPLAY_WAIT).await {
                return Err(WorkflowError::Timeout(format!(
                    "workflow {key} is still replaying its history; query again"
                )));
            }
            if let Some(v) = shared.queries.lock().get(name).cloned() {
                return Ok(v);
            }
        }
        let record = self.inner.record(key).await?;
        record
            .queries
            .and_then(|q| q.get(name).cloned())
            .ok_or_else(|| WorkflowError::NotFound(format!("query {name} of workflow {key}")))
    }

    /// Sends an update and waits for the workflow's answer. The update is validated first
    /// (a rejected one records nothing); it is recorded once per `update_id` and answered
    /// once: retrying with the same id returns the same answer. The caller picks the id,
    /// so after a timeout it can collect the answer by sending the same update again.
    pub async fn update<P: Serialize>(
        &self,
        key: &WorkflowKey,
        name: &str,
        payload: &P,
        update_id: &str,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        check_name("update", name)?;
        check_name("update id", update_id)?;
        let payload = serde_json::to_value(payload)?;
        let record = self.inner.record(key).await?;
        let definition = self
            .inner
            .definition(&record.workflow_type, Some(record.version))?;
        definition
            .validate_update(name, &payload)
            .map_err(|reason| WorkflowError::UpdateRejected {
                name: name.to_owned(),
                reason,
            })?;
        let item = self
            .inner
            .push_open(&record, InboxKind::Update, name, &payload, Some(update_id))
            .await?;
        if item.name != name {
            return Err(WorkflowError::InvalidArgument(format!(
                "update id {update_id} was already used by an update named {}",
                item.name
            )));
        }
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut changes = self.inner.watch_changes(key);
        loop {
            changes.borrow_and_update();
            if let Some(result) = self
                .inner
                .store
                .inbox_item(key, item.seq)
                .await?
                .and_then(|i| i.result)
            {
                return Ok(result);
            }
            let record = self.inner.record(key).await?;
            if record.status.is_closed() {
                return Err(WorkflowError::Closed {
                    id: key.workflow_id.clone(),
                    status: record.status.as_str().to_owned(),
                });
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Err(WorkflowError::Timeout(format!(
                    "update {name} of workflow {key} not answered yet"
                )));
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(self.inner.options.inbox_poll) => {}
            }
        }
    }

    /// Requests cancellation (recorded once; a repeated request changes nothing).
    pub async fn cancel(&self, key: &WorkflowKey, reason: &str) -> Result<()> {
        self.inner.cancel(key, reason).await
    }

    /// Waits for the workflow's result. A failed, cancelled or suspended workflow gives
    /// [`WorkflowError::Failed`] (or [`WorkflowError::Cancelled`]).
    pub async fn result<O: DeserializeOwned>(
        &self,
        key: &WorkflowKey,
        timeout: Option<Duration>,
    ) -> Result<O> {
        let record = self
            .inner
            .wait_record(key, timeout, |r| {
                r.status.is_closed() || r.status == WorkflowStatus::Suspended
            })
            .await?;
        let failure = record.failure.clone().unwrap_or_else(|| Failure {
            kind: record.status.as_str().into(),
            message: String::new(),
        });
        match record.status {
            WorkflowStatus::Completed => Ok(serde_json::from_value(
                record.result.unwrap_or(Value::Null),
            )?),
            WorkflowStatus::Cancelled => Err(WorkflowError::Cancelled {
                reason: failure.message,
            }),
            _ => Err(WorkflowError::Failed {
                id: key.workflow_id.clone(),
                failure,
            }),
        }
    }

    /// The workflow's record, history size and whether it runs here.
    pub async fn describe(&self, key: &WorkflowKey) -> Result<WorkflowDescription> {
        let record = self.inner.record(key).await?;
        let history_events = self
            .inner
            .journal
            .history_len(&history_stream(key, record.run))
            .await?;
        let active_here = self.inner.running.lock().contains_key(key);
        Ok(WorkflowDescription {
            record,
            history_events,
            active_here,
        })
    }

    /// Workflows of a tenant, newest first.
    pub async fn list(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        status: Option<WorkflowStatus>,
        limit: usize,
    ) -> Result<Vec<WorkflowRecord>> {
        self.inner
            .store
            .list(tenant, namespace, status, limit)
            .await
    }

    /// The recorded history of a run (the current run when `run` is `None`), for
    /// inspection and for [`crate::testing::replay`].
    pub async fn history(&self, key: &WorkflowKey, run: Option<u64>) -> Result<Vec<HistoryEvent>> {
        let run = match run {
            Some(r) => r,
            None => self.inner.record(key).await?.run,
        };
        Ok(
            load_history(&self.inner.journal, &history_stream(key, run), None)
                .await?
                .0,
        )
    }

    /// Stops driving every workflow here (they stay running in the store; `recover` in
    /// this or another engine resumes them). Used for a clean handover and in tests.
    pub fn shutdown(&self) {
        let entries: Vec<RunEntry> = self.inner.running.lock().drain().map(|(_, e)| e).collect();
        for entry in entries {
            if let Some(task) = entry.task.lock().take() {
                task.abort();
            }
        }
    }

    /// Whether this engine is driving the workflow now.
    pub fn is_active(&self, key: &WorkflowKey) -> bool {
        self.inner.running.lock().contains_key(key)
    }

    pub(crate) fn inner(&self) -> &Arc<EngineInner> {
        &self.inner
    }
}

fn kind_prefix(kind: InboxKind) -> &'static str {
    match kind {
        InboxKind::Signal => "signal",
        InboxKind::Update => "update",
        InboxKind::Cancel => "cancel",
    }
}

/// The caller's id of an inbox item (its dedupe id without the kind scope).
pub(crate) fn caller_id(item: &crate::InboxItem) -> String {
    let id = item.dedupe_id.as_deref().unwrap_or_default();
    id.strip_prefix(kind_prefix(item.kind))
        .and_then(|rest| rest.strip_prefix(':'))
        .unwrap_or(id)
        .to_owned()
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(WorkflowError::InvalidArgument(format!(
            "{what} name must be 1-200 bytes without control characters"
        )));
    }
    Ok(())
}
