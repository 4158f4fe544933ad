//! The workflow store: one record per workflow id (its current run, status and result) and
//! the workflow's inbox (signals, updates, cancel requests in acceptance order).
//!
//! History lives in the journal; the store holds what clients need without replaying it, and
//! what is sent to a workflow while no process runs it.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::{Failure, Result, WorkflowError};

/// A workflow's identity: unique per tenant and namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkflowKey {
    /// The tenant.
    pub tenant: String,
    /// The namespace.
    pub namespace: String,
    /// The workflow id.
    pub workflow_id: String,
}

impl WorkflowKey {
    /// Builds a key.
    pub fn new(tenant: &str, namespace: &str, workflow_id: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            workflow_id: workflow_id.to_owned(),
        }
    }

    /// Checks that every part is non-empty, at most 200 bytes and free of control characters.
    pub fn validate(&self) -> Result<()> {
        for (what, v) in [
            ("tenant", &self.tenant),
            ("namespace", &self.namespace),
            ("workflow id", &self.workflow_id),
        ] {
            if v.is_empty() || v.len() > 200 || v.chars().any(char::is_control) {
                return Err(WorkflowError::InvalidArgument(format!(
                    "{what} must be 1-200 bytes without control characters"
                )));
            }
        }
        Ok(())
    }
}

impl fmt::Display for WorkflowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.workflow_id)
    }
}

/// Where a workflow is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowStatus {
    /// Running (or waiting to be resumed by an engine).
    Running,
    /// Completed with a result.
    Completed,
    /// Failed with a failure.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Stopped by an error that is not the business logic's (non-determinism, a missing code
    /// version, storage): an engine with compatible code resumes it on recovery.
    Suspended,
}

impl WorkflowStatus {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Running => "running",
            WorkflowStatus::Completed => "completed",
            WorkflowStatus::Failed => "failed",
            WorkflowStatus::Cancelled => "cancelled",
            WorkflowStatus::Suspended => "suspended",
        }
    }

    /// Whether the workflow has ended for good.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            WorkflowStatus::Completed | WorkflowStatus::Failed | WorkflowStatus::Cancelled
        )
    }
}

impl std::str::FromStr for WorkflowStatus {
    type Err = WorkflowError;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "running" => WorkflowStatus::Running,
            "completed" => WorkflowStatus::Completed,
            "failed" => WorkflowStatus::Failed,
            "cancelled" => WorkflowStatus::Cancelled,
            "suspended" => WorkflowStatus::Suspended,
            other => {
                return Err(WorkflowError::InvalidArgument(format!(
                    "unknown workflow status {other:?} (running, completed, failed, cancelled, suspended)"
                )))
            }
        })
    }
}

/// What the store keeps per workflow id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowRecord {
    /// Identity.
    pub key: WorkflowKey,
    /// Workflow type.
    pub workflow_type: String,
    /// Code version the current run started with.
    pub version: u32,
    /// Current run (1, then +1 per continue-as-new).
    pub run: u64,
    /// Status.
    pub status: WorkflowStatus,
    /// The current run's input.
    pub input: serde_json::Value,
    /// The result, once completed.
    pub result: Option<serde_json::Value>,
    /// The failure, once failed or cancelled, or the error that suspended it.
    pub failure: Option<Failure>,
    /// The last query values, saved when the workflow closes (so queries still answer).
    pub queries: Option<serde_json::Value>,
    /// The parent workflow's id, for a child workflow.
    pub parent: Option<String>,
    /// When it was started (ms since the Unix epoch).
    pub created_ms: u64,
    /// When the record last changed.
    pub updated_ms: u64,
}

/// What an inbox item asks of the workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxKind {
    /// A signal.
    Signal,
    /// An update (validated before it was stored).
    Update,
    /// A cancel request.
    Cancel,
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl InboxKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            InboxKind::Signal => "signal",
            InboxKind::Update => "update",
            InboxKind::Cancel => "cancel",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "signal" => InboxKind::Signal,
            "update" => InboxKind::Update,
            "cancel" => InboxKind::Cancel,
            other => return Err(WorkflowError::Storage(format!("bad inbox kind {other:?}"))),
        })
    }
}

/// One accepted signal, update or cancel request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    /// Acceptance order within the workflow (1, 2, ...).
    pub seq: u64,
    /// What it is.
    pub kind: InboxKind,
    /// Signal or update name (the reason, for a cancel).
    pub name: String,
    /// Payload.
    pub payload: serde_json::Value,
    /// The sender's dedupe id (update id for updates); a second item with the same id is
    /// not stored.
    pub dedupe_id: Option<String>,
    /// The workflow's answer (updates).
    pub result: Option<serde_json::Value>,
}

/// A new inbox item.
#[derive(Debug, Clone)]
pub struct NewInboxItem<'a> {
    /// What it is.
    pub kind: InboxKind,
    /// Name.
    pub name: &'a str,
    /// Payload.
    pub payload: &'a serde_json::Value,
    /// Dedupe id.
    pub dedupe_id: Option<&'a str>,
}

/// Storage of workflow records and inboxes. Implementations: [`MemoryWorkflowStore`] and
/// `SqlWorkflowStore` (SQLite or PostgreSQL, features `sqlite`/`postgres`).
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Inserts `record` unless its key exists; returns the existing record if it does.
    async fn insert_if_absent(&self, record: &WorkflowRecord) -> Result<Option<WorkflowRecord>>;
    /// The record of a workflow.
    async fn get(&self, key: &WorkflowKey) -> Result<Option<WorkflowRecord>>;
    /// Replaces the mutable fields of a record (run, version, status, input, result,
    /// failure, queries, updated_ms).
    async fn update(&self, record: &WorkflowRecord) -> Result<()>;
    /// Records of a tenant (all namespaces when `namespace` is `None`), optionally of one
    /// status, newest first, at most `limit`.
    async fn list(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        status: Option<WorkflowStatus>,
        limit: usize,
    ) -> Result<Vec<WorkflowRecord>>;
    /// Running and suspended workflows of every tenant (for recovery).
    async fn list_unfinished(&self) -> Result<Vec<WorkflowRecord>>;
    /// Appends an inbox item with the next seq. When `dedupe_id` matches an existing item,
    /// stores nothing and returns that item.
    async fn push_inbox(&self, key: &WorkflowKey, item: NewInboxItem<'_>) -> Result<InboxItem>;
    /// Inbox items with a seq above `after`, in seq order.
    async fn read_inbox(&self, key: &WorkflowKey, after: u64) -> Result<Vec<InboxItem>>;
    /// One inbox item.
    async fn inbox_item(&self, key: &WorkflowKey, seq: u64) -> Result<Option<InboxItem>>;
    /// Stores the workflow's answer to an update (idempotent).
    async fn set_inbox_result(
        &self,
        key: &WorkflowKey,
        seq: u64,
        result: &serde_json::Value,
    ) -> Result<()>;
}

/// An in-process store (tests, embedded use without persistence).
#[derive(Debug, Default)]
pub struct MemoryWorkflowStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    records: HashMap<WorkflowKey, WorkflowRecord>,
    inboxes: HashMap<WorkflowKey, BTreeMap<u64, InboxItem>>,
}

impl MemoryWorkflowStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WorkflowStore for MemoryWorkflowStore {
    async fn insert_if_absent(&self, record: &WorkflowRecord) -> Result<Option<WorkflowRecord>> {
        let mut inner = self.inner.lock();
        if let Some(existing) = inner.records.get(&record.key) {
            return Ok(Some(existing.clone()));
        }
        inner.records.insert(record.key.clone(), record.clone());
        Ok(None)
    }

    async fn get(&self, key: &WorkflowKey) -> Result<Option<WorkflowRecord>> {
        Ok(self.inner.lock().records.get(key).cloned())
    }

    async fn update(&self, record: &WorkflowRecord) -> Result<()> {
        let mut inner = self.inner.lock();
        match inner.records.get_mut(&record.key) {
            Some(r) => {
                *r = record.clone();
                Ok(())
            }
            None => Err(WorkflowError::NotFound(record.key.to_string())),
        }
    }

    async fn list(
        &self,
        tenant: &str,
        namespace: Option<&str>,
        status: Option<WorkflowStatus>,
        limit: usize,
    ) -> Result<Vec<WorkflowRecord>> {
        let inner = self.inner.lock();
        let mut out: Vec<WorkflowRecord> = inner
            .records
            .values()
            .filter(|r| r.key.tenant == tenant)
            .filter(|r| namespace.is_none_or(|ns| r.key.namespace == ns))
            .filter(|r| status.is_none_or(|s| r.status == s))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            b.created_ms
                .cmp(&a.created_ms)
                .then(a.key.workflow_id.cmp(&b.key.workflow_id))
        });
        out.truncate(limit);
        Ok(out)
    }

    async fn list_unfinished(&self) -> Result<Vec<WorkflowRecord>> {
        let inner = self.inner.lock();
        Ok(inner
            .records
            .values()
            .filter(|r| !r.status.is_closed())
            .cloned()
            .collect())
    }

    async fn push_inbox(&self, key: &WorkflowKey, item: NewInboxItem<'_>) -> Result<InboxItem> {
        let mut inner = self.inner.lock();
        let inbox = inner.inboxes.entry(key.clone()).or_default();
        if let Some(id) = item.dedupe_id {
            if let Some(existing) = inbox.values().find(|i| i.dedupe_id.as_deref() == Some(id)) {
                return Ok(existing.clone());
            }
        }
        let seq = inbox.keys().next_back().copied().unwrap_or(0) + 1;
        let stored = InboxItem {
            seq,
            kind: item.kind,
            name: item.name.to_owned(),
            payload: item.payload.clone(),
            dedupe_id: item.dedupe_id.map(str::to_owned),
            result: None,
        };
        inbox.insert(seq, stored.clone());
        Ok(stored)
    }

    async fn read_inbox(&self, key: &WorkflowKey, after: u64) -> Result<Vec<InboxItem>> {
        let inner = self.inner.lock();
        Ok(inner
            .inboxes
            .get(key)
            .map(|i| {
                i.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn inbox_item(&self, key: &WorkflowKey, seq: u64) -> Result<Option<InboxItem>> {
        let inner = self.inner.lock();
        Ok(inner.inboxes.get(key).and_then(|i| i.get(&seq)).cloned())
    }

    async fn set_inbox_result(
        &self,
        key: &WorkflowKey,
        seq: u64,
        result: &serde_json::Value,
    ) -> Result<()> {
        let mut inner = self.inner.lock();
        if let Some(item) = inner.inboxes.get_mut(key).and_then(|i| i.get_mut(&seq)) {
            if item.result.is_none() {
                item.result = Some(result.clone());
            }
        }
        Ok(())
    }
}
