//! Durable workflows on the node: one [`WorkflowEngine`] per node, its built-in workflow
//! types ([`builtin`]), and the workflows service ([`Workflows`]) that HTTP ([`http`]) and
//! gRPC ([`grpc`]) adapt: addressing in the caller's tenant, limits, results.
//!
//! The engine runs on the node's actor runtime, so each running workflow is an actor process
//! (`workflow:<tenant>/<namespace>/<id>`). Its storage follows the journal configuration:
//! history goes to the node's journal (one stream per run), records and inboxes to a
//! [`SqlWorkflowStore`] in the same place: `<data_dir>/workflows.db` next to the SQLite
//! journal, or the journal's PostgreSQL database and schema. At start the node registers
//! the built-in types ([`builtin::approval`], [`builtin::countdown`]) and the library user's
//! ([`crate::NodeServerBuilder::workflow`]), then, once its listeners are bound, resumes
//! every unfinished workflow ([`WorkflowEngine::recover`]) before it serves requests.
//!
//! Every request acts for the tenant of its verified token (or `default` with auth
//! disabled); a workflow is addressed by (that tenant, namespace, workflow id), so no API
//! reaches another tenant's workflows.

pub mod builtin;
pub mod grpc;
pub mod http;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::Node;
use plexspaces_workflow::{
    EngineOptions, Failure, HistoryEvent, SqlWorkflowStore, StartedWorkflow, WorkflowBehavior,
    WorkflowDescription, WorkflowEngine, WorkflowError, WorkflowKey, WorkflowRecord,
    WorkflowStatus, WorkflowStore,
};
use serde_json::{json, Value};

use crate::config::NodeConfig;
pub use crate::config::WorkflowsConfig;
use crate::error::{Error, Result};
use crate::service::{Caller, Gate};
use crate::state::NodeJournal;
pub use builtin::{approval, countdown, ApprovalInput};

/// The longest a client waits for a result or an update answer in one request.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// How long an update waits for the workflow's answer unless the request says otherwise.
pub const DEFAULT_UPDATE_WAIT: Duration = Duration::from_secs(10);

/// The most workflows one list request returns.
pub const MAX_LIST_LIMIT: usize = 1000;

/// Workflows a list request returns unless it asks for another number.
pub const DEFAULT_LIST_LIMIT: usize = 50;

/// The longest cancel reason accepted, in bytes.
pub const MAX_REASON: usize = 1024;

/// The SQLite file of workflow records and inboxes (used when `journal.url` is unset).
pub fn sqlite_path(config: &NodeConfig) -> PathBuf {
    config.data_dir.join("workflows.db")
}

/// A workflow type to register with a node's engine (see
/// [`crate::NodeServerBuilder::workflow`]): the code, its type name and version.
pub struct WorkflowType {
    name: String,
    version: u32,
    register: Box<dyn FnOnce(&WorkflowEngine) + Send>,
}

impl std::fmt::Debug for WorkflowType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkflowType")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

impl WorkflowType {
    /// Wraps workflow code for registration.
    pub fn new<W: WorkflowBehavior>(workflow: W) -> Self {
        let name = workflow.workflow_type().to_owned();
        let version = workflow.version();
        WorkflowType {
            name,
            version,
            register: Box::new(move |engine| {
                engine.register(workflow);
            }),
        }
    }

    /// The workflow type name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The code version.
    pub fn version(&self) -> u32 {
        self.version
    }
}

/// The node's workflow engine with a description of its store for logs.
#[derive(Clone, Debug)]
pub struct NodeWorkflows {
    /// The engine: client API and the runs it drives.
    pub engine: WorkflowEngine,
    /// `"SQLite"` or `"PostgreSQL"`.
    pub backend: &'static str,
    /// The SQLite file, or the PostgreSQL URL (password masked) and schema.
    pub location: String,
}

/// Opens the workflow store the journal configuration implies and creates the engine on
/// `node` with history in `journal`, with the built-in types then `types` registered (a user
/// type with the name and version of a built-in one replaces it). Nothing runs until
/// [`NodeWorkflows::recover`].
pub async fn open(
    node: &Node,
    journal: &NodeJournal,
    config: &NodeConfig,
    types: Vec<WorkflowType>,
    lateness: &crate::lateness::LatenessMetrics,
) -> Result<NodeWorkflows> {
    let (store, backend, location): (Arc<dyn WorkflowStore>, _, _) = match &config.journal.url {
        Some(url) => {
            let masked = crate::state::mask_url_password(url.expose());
            let store = SqlWorkflowStore::open_postgres(url.expose(), &config.journal.schema)
                .await
                .map_err(|e| {
                    Error::Config(format!(
                        "cannot open the PostgreSQL workflow store at {masked}: {}",
                        crate::secret::mask_secrets(&e.to_string())
                    ))
                })?;
            (
                Arc::new(store),
                "PostgreSQL",
                format!("{masked} schema={}", config.journal.schema),
            )
        }
        None => {
            let path = sqlite_path(config);
            let store = SqlWorkflowStore::open_sqlite(&path).await.map_err(|e| {
                Error::Config(format!(
                    "cannot open the SQLite workflow store {}: {e}",
                    path.display()
                ))
            })?;
            (Arc::new(store), "SQLite", path.display().to_string())
        }
    };
    let options = EngineOptions {
        inbox_poll: Duration::from_millis(config.workflows.inbox_poll_ms),
        timer_hook: Some(lateness.timer_hook()),
        ..EngineOptions::default()
    };
    let engine = WorkflowEngine::new(Some(node.clone()), journal.journal.clone(), store, options);
    engine.register(approval());
    engine.register(countdown());
    for ty in types {
        (ty.register)(&engine);
    }
    Ok(NodeWorkflows {
        engine,
        backend,
        location,
    })
}

impl NodeWorkflows {
    /// Resumes every unfinished workflow whose type is registered; returns how many.
    pub async fn recover(&self) -> Result<usize> {
        let resumed = self.engine.recover().await?;
        let names: Vec<String> = self
            .engine
            .workflow_types()
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        tracing::info!(backend = self.backend, path = %self.location, types = %names.join(","), resumed, "workflows initialized");
        Ok(resumed)
    }
}

/// The workflows service: every client call on the node's engine, for one [`Caller`].
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct Workflows {
    engine: WorkflowEngine,
    gate: Gate,
}

impl Workflows {
    /// The service over `engine`; `gate` refuses new work during shutdown and ends waits.
    pub fn new(engine: WorkflowEngine, gate: Gate) -> Self {
        Workflows { engine, gate }
    }

    /// The engine.
    pub fn engine(&self) -> &WorkflowEngine {
        &self.engine
    }

    /// The workflow (namespace, id) in the caller's tenant (an empty namespace is
    /// `default`), once the node is known to take new work.
    pub fn key(&self, caller: &Caller, namespace: &str, workflow_id: &str) -> Result<WorkflowKey> {
        self.gate.check_open()?;
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        key(&caller.tenant, namespace, workflow_id)
    }

    /// Starts (or finds, with the same type) the workflow at `key`.
    pub async fn start(
        &self,
        key: &WorkflowKey,
        workflow_type: &str,
        input: &Value,
    ) -> Result<StartedWorkflow> {
        Ok(self.engine.start(key, workflow_type, input).await?)
    }

    /// The caller's workflows, newest first: of one namespace or all, of one status or all
    /// (`""` is all), at most `limit` (none: [`DEFAULT_LIST_LIMIT`]).
    pub async fn list(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
        status: Option<&str>,
        limit: Option<u64>,
    ) -> Result<Vec<WorkflowRecord>> {
        self.gate.check_open()?;
        if let Some(namespace) = namespace {
            check_namespace(namespace)?;
        }
        let status = status_filter(status)?;
        let limit = list_limit(limit)?;
        Ok(self
            .engine
            .list(&caller.tenant, namespace, status, limit)
            .await?)
    }

    /// The workflow's record and where it runs.
    pub async fn describe(&self, key: &WorkflowKey) -> Result<WorkflowDescription> {
        Ok(self.engine.describe(key).await?)
    }

    /// Waits up to `wait_ms` (at most [`MAX_WAIT`]) for the workflow's outcome.
    pub async fn result(&self, key: &WorkflowKey, wait_ms: u64) -> Result<Outcome> {
        let wait = wait("wait_ms", wait_ms)?;
        self.gate
            .until_stopped(outcome(&self.engine, key, wait))
            .await
    }

    /// The history of run `run` (the current one when `None`).
    pub async fn history(
        &self,
        key: &WorkflowKey,
        run: Option<u64>,
    ) -> Result<(u64, Vec<HistoryEvent>)> {
        history(&self.engine, key, run).await
    }

    /// Sends signal `name`; `dedupe_id` makes a retried signal count once. Returns its
    /// sequence number.
    pub async fn signal(
        &self,
        key: &WorkflowKey,
        name: &str,
        payload: &Value,
        dedupe_id: Option<&str>,
    ) -> Result<u64> {
        check_name("signal", name)?;
        Ok(self.engine.signal(key, name, payload, dedupe_id).await?)
    }

    /// Answers query `name` from the workflow's current state.
    pub async fn query(&self, key: &WorkflowKey, name: &str) -> Result<Value> {
        check_name("query", name)?;
        Ok(self.engine.query(key, name).await?)
    }

    /// Sends update `name` with id `update_id` and waits up to `wait_ms` (none:
    /// [`DEFAULT_UPDATE_WAIT`]) for the answer.
    pub async fn update(
        &self,
        key: &WorkflowKey,
        name: &str,
        payload: &Value,
        update_id: &str,
        wait_ms: Option<u64>,
    ) -> Result<Value> {
        check_name("update", name)?;
        let wait = match wait_ms {
            None => DEFAULT_UPDATE_WAIT,
            Some(ms) => wait("wait_ms", ms)?,
        };
        self.gate
            .until_stopped(update(&self.engine, key, name, payload, update_id, wait))
            .await
    }

    /// Requests cancellation (`reason` empty or absent: `cancelled by request`).
    pub async fn cancel(&self, key: &WorkflowKey, reason: Option<&str>) -> Result<()> {
        let reason = cancel_reason(reason)?;
        Ok(self.engine.cancel(key, &reason).await?)
    }
}

/// The key of a workflow in the caller's tenant; bad parts are a 400.
pub fn key(tenant: &str, namespace: &str, workflow_id: &str) -> Result<WorkflowKey> {
    let key = WorkflowKey::new(tenant, namespace, workflow_id);
    key.validate()?;
    Ok(key)
}

/// A namespace on its own (list requests): 1 to 200 bytes, no control characters.
pub fn check_namespace(namespace: &str) -> Result<()> {
    key("t", namespace, "w").map(drop)
}

/// A signal, query or update name: 1 to 200 bytes, no control characters.
pub fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(Error::BadRequest(format!(
            "{what} name must be 1-200 bytes without control characters"
        )));
    }
    Ok(())
}

/// A cancel reason: at most [`MAX_REASON`] bytes without control characters; empty or
/// absent is `cancelled by request`.
pub fn cancel_reason(reason: Option<&str>) -> Result<String> {
    match reason {
        None | Some("") => Ok("cancelled by request".to_owned()),
        Some(r) if r.len() > MAX_REASON || r.chars().any(char::is_control) => {
            Err(Error::BadRequest(format!(
                "reason must be at most {MAX_REASON} bytes without control characters"
            )))
        }
        Some(r) => Ok(r.to_owned()),
    }
}

/// A wait in milliseconds, at most [`MAX_WAIT`].
pub fn wait(what: &str, ms: u64) -> Result<Duration> {
    let wait = Duration::from_millis(ms);
    if wait > MAX_WAIT {
        return Err(Error::BadRequest(format!(
            "{what}={ms}: at most {}",
            MAX_WAIT.as_millis()
        )));
    }
    Ok(wait)
}

/// A fresh update id for an update whose caller gave none (`update-` and 16 hex digits), so
/// the caller can be told which id collects the answer later.
pub fn new_update_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("update-{:016x}", h.finish())
}

/// Sends an update with id `update_id` and waits up to `wait` for the answer. Not answered
/// in time: a timeout whose message names the id to retry with.
pub async fn update(
    engine: &WorkflowEngine,
    key: &WorkflowKey,
    name: &str,
    payload: &Value,
    update_id: &str,
    wait: Duration,
) -> Result<Value> {
    match engine
        .update(key, name, payload, update_id, Some(wait))
        .await
    {
        Err(WorkflowError::Timeout(_)) => Err(WorkflowError::Timeout(format!(
            "update {name} of workflow {key} not answered within {} ms; it stays accepted: \
             retry with update id {update_id} to collect the answer",
            wait.as_millis()
        ))
        .into()),
        other => Ok(other?),
    }
}

/// A list limit: 1 to [`MAX_LIST_LIMIT`].
pub fn list_limit(limit: Option<u64>) -> Result<usize> {
    match limit {
        None => Ok(DEFAULT_LIST_LIMIT),
        Some(n) if (1..=MAX_LIST_LIMIT as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(Error::BadRequest(format!(
            "limit={n}: between 1 and {MAX_LIST_LIMIT}"
        ))),
    }
}

/// A status filter (`running`, `completed`, `failed`, `cancelled`, `suspended`).
pub fn status_filter(status: Option<&str>) -> Result<Option<WorkflowStatus>> {
    match status {
        None | Some("") => Ok(None),
        Some(s) => Ok(Some(s.parse()?)),
    }
}

/// Where a workflow stands for a client waiting on its result.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Completed with this result.
    Completed(Value),
    /// Failed, cancelled or suspended, with the failure.
    Ended {
        /// `Failed`, `Cancelled` or `Suspended`.
        status: WorkflowStatus,
        /// What ended it.
        failure: Failure,
    },
    /// Still running after the wait.
    Running,
}

impl Outcome {
    /// The JSON clients see: `{"status": "completed", "result": ...}`,
    /// `{"status": "failed"|"cancelled"|"suspended", "failure": {...}}` or
    /// `{"status": "running"}`.
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Completed(result) => json!({ "status": "completed", "result": result }),
            Outcome::Ended { status, failure } => {
                json!({ "status": status.as_str(), "failure": failure })
            }
            Outcome::Running => json!({ "status": "running" }),
        }
    }
}

/// Waits up to `wait` for the workflow to complete, fail, be cancelled or be suspended.
pub async fn outcome(
    engine: &WorkflowEngine,
    key: &WorkflowKey,
    wait: Duration,
) -> Result<Outcome> {
    match engine.result::<Value>(key, Some(wait)).await {
        Ok(result) => Ok(Outcome::Completed(result)),
        Err(WorkflowError::Timeout(_)) => Ok(Outcome::Running),
        Err(WorkflowError::Cancelled { reason }) => Ok(Outcome::Ended {
            status: WorkflowStatus::Cancelled,
            failure: Failure {
                kind: "cancelled".into(),
                message: reason,
            },
        }),
        Err(WorkflowError::Failed { failure, .. }) => {
            // Failed and suspended both end here; the record tells which (a suspended one
            // may have been resumed since).
            let status = engine.describe(key).await?.record.status;
            Ok(match status {
                WorkflowStatus::Running => Outcome::Running,
                status => Outcome::Ended { status, failure },
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// The recorded history of run `run` (the current one when `None`) with its run number.
pub async fn history(
    engine: &WorkflowEngine,
    key: &WorkflowKey,
    run: Option<u64>,
) -> Result<(u64, Vec<HistoryEvent>)> {
    let current = engine.describe(key).await?.record.run;
    let run = run.unwrap_or(current);
    if run == 0 || run > current {
        return Err(Error::NotFound(format!(
            "run {run} of workflow {key} (runs 1 to {current})"
        )));
    }
    Ok((run, engine.history(key, Some(run)).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parts_are_checked() {
        assert!(key("t", "ns", "id").is_ok());
        assert_eq!(key("t", "", "id").unwrap_err().kind(), "invalid_argument");
        assert_eq!(
            key("t", "ns", &"x".repeat(201)).unwrap_err().kind(),
            "invalid_argument"
        );
        assert_eq!(
            key("t", "ns", "a\u{0}b").unwrap_err().kind(),
            "invalid_argument"
        );
        assert_eq!(check_name("signal", "").unwrap_err().kind(), "bad_request");
        assert!(check_name("signal", "approve").is_ok());
        assert_eq!(cancel_reason(None).unwrap(), "cancelled by request");
        assert_eq!(cancel_reason(Some("bye")).unwrap(), "bye");
        assert!(cancel_reason(Some("a\nb")).is_err());
        assert_eq!(wait("wait_ms", 30_000).unwrap(), MAX_WAIT);
        assert!(wait("wait_ms", 30_001).is_err());
        assert_eq!(list_limit(None).unwrap(), DEFAULT_LIST_LIMIT);
        let (a, b) = (new_update_id(), new_update_id());
        assert!(a.starts_with("update-") && a.len() == 23, "{a}");
        assert_ne!(a, b);
        assert!(list_limit(Some(0)).is_err());
        assert!(list_limit(Some(1001)).is_err());
        assert_eq!(
            status_filter(Some("running")).unwrap(),
            Some(WorkflowStatus::Running)
        );
        assert_eq!(
            status_filter(Some("nope")).unwrap_err().kind(),
            "invalid_argument"
        );
    }

    #[test]
    fn outcomes_render_as_documented() {
        assert_eq!(
            Outcome::Completed(json!(1)).to_json(),
            json!({"status": "completed", "result": 1})
        );
        assert_eq!(Outcome::Running.to_json(), json!({"status": "running"}));
        let ended = Outcome::Ended {
            status: WorkflowStatus::Cancelled,
            failure: Failure {
                kind: "cancelled".into(),
                message: "bye".into(),
            },
        };
        assert_eq!(
            ended.to_json(),
            json!({"status": "cancelled", "failure": {"kind": "cancelled", "message": "bye"}})
        );
    }
}
