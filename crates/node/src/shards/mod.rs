//! Shard groups served by the node (the ParallelClient's server side): groups of
//! [`KvShard`] actors (`key -> JSON value`) from `plexspaces-shard`, created, written in
//! bulk and queried in parallel over HTTP ([`http`]: `/api/v1/shards/{namespace}/...`) and
//! gRPC ([`grpc`]: `plexspaces.v1.ShardService`).
//!
//! A group is named by (the caller's tenant, namespace, name): a tenant never sees another
//! tenant's groups. Its shard actors run on the node's actor runtime under one supervisor
//! each group; their ids are internal (`shard.g<seq>_<name>.<i>@<node>`). Shard state is in
//! memory: it is lost on a node restart, and a crashed shard restarts empty.

pub mod grpc;
pub mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plexspaces_core::Node;
use plexspaces_shard::{
    BulkReport, KvAnswer, KvQuery, KvShard, ShardFailure, ShardGroup, ShardGroupOptions, Strategy,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::service::Caller;

/// The most shards in one group served by the node.
pub const MAX_SHARDS: u32 = 64;
/// The most groups on one node (all tenants).
pub const MAX_GROUPS: usize = 1024;
/// The longest per-shard query timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The per-shard query timeout when the request names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// What a create request asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// 1 to 64 letters, digits, `-` or `_`.
    pub name: String,
    /// 1 to [`MAX_SHARDS`].
    pub shards: u32,
    /// How keys map to shards (hash when absent).
    #[serde(default = "hash")]
    pub strategy: Strategy<String>,
}

fn hash() -> Strategy<String> {
    Strategy::Hash
}

/// A group as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// How many shards.
    pub shards: u32,
    /// How keys map to shards.
    pub strategy: Strategy<String>,
    /// The shard actors' ids, in shard order.
    pub shard_ids: Vec<String>,
}

/// How a query treats shards that do not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The answers that came in time, plus the failed shards.
    #[default]
    ScatterGather,
    /// Every shard must answer (else `unavailable` or `timeout`).
    Map,
}

impl Mode {
    /// The mode named `text` (empty: scatter-gather).
    pub fn parse(text: &str) -> Result<Mode> {
        match text {
            "" | "scatter_gather" => Ok(Mode::ScatterGather),
            "map" => Ok(Mode::Map),
            other => Err(Error::BadRequest(format!(
                "mode must be scatter_gather or map, not {other:?}"
            ))),
        }
    }
}

/// A query's merged answer, which shards answered and which failed.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    /// The merged answer: `{"count": n}`, `{"sum": x}` or `{"entries": [[key, value]...]}`.
    pub result: KvAnswer,
    /// The shards that answered.
    pub answered: Vec<usize>,
    /// The shards that did not, and why.
    pub failed: Vec<ShardFailure>,
}

type GroupKey = (String, String, String);

struct Entry {
    group: ShardGroup<KvShard>,
    info: GroupInfo,
}

/// The shard group service. Cheap to clone.
#[derive(Clone)]
pub struct Shards {
    node: Node,
    groups: Arc<Mutex<HashMap<GroupKey, Arc<Entry>>>>,
    /// Serializes creates and deletes (each starts or stops actors across an await).
    changes: Arc<tokio::sync::Mutex<()>>,
    seq: Arc<AtomicU64>,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("groups", &self.groups.lock().len())
            .finish()
    }
}

fn namespace_of(namespace: &str) -> Result<String> {
    let namespace = if namespace.is_empty() {
        "default"
    } else {
        namespace
    };
    crate::workflows::check_namespace(namespace)?;
    Ok(namespace.to_owned())
}

/// serde lets an internally tagged *unit* variant (`{"kind": "hash"}`, `{"op": "count"}`)
/// carry unknown fields even with `deny_unknown_fields`; this refuses them, so that the API
/// is as strict as its schema.
pub fn no_extra_fields(value: Option<&serde_json::Value>, tag: &str, units: &[&str]) -> Result<()> {
    if let Some(serde_json::Value::Object(map)) = value {
        let is_unit = map
            .get(tag)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|t| units.contains(&t));
        if is_unit && map.len() > 1 {
            return Err(Error::BadRequest(format!(
                "unknown field next to {tag:?}: this variant takes no fields"
            )));
        }
    }
    Ok(())
}

fn check_group_name(name: &str) -> Result<()> {
    if name.len() > 64 {
        return Err(Error::BadRequest("a group name is at most 64 bytes".into()));
    }
    plexspaces_shard::check_name(name).map_err(|e| Error::BadRequest(e.to_string()))
}

fn shard_error(e: plexspaces_shard::Error) -> Error {
    match e {
        plexspaces_shard::Error::InvalidArgument(m) => Error::BadRequest(m),
        plexspaces_shard::Error::Runtime(e) => Error::Core(e),
        plexspaces_shard::Error::ShardFailed { shard, id, error } => match error {
            plexspaces_core::Error::Timeout(t) => Error::Core(plexspaces_core::Error::Timeout(t)),
            other => Error::Core(plexspaces_core::Error::NoProc(format!(
                "shard {shard} ({id}) did not answer: {other}"
            ))),
        },
    }
}

impl Shards {
    /// The service, starting groups on `node`.
    pub fn new(node: Node) -> Self {
        Shards {
            node,
            groups: Arc::default(),
            changes: Arc::default(),
            seq: Arc::default(),
        }
    }

    fn entry(&self, caller: &Caller, namespace: &str, name: &str) -> Result<Arc<Entry>> {
        let key = (
            caller.tenant.clone(),
            namespace_of(namespace)?,
            name.to_owned(),
        );
        self.groups
            .lock()
            .get(&key)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("shard group {:?} in {:?}", key.2, key.1)))
    }

    /// Starts a group of `spec.shards` shards for the caller.
    pub async fn create(
        &self,
        caller: &Caller,
        namespace: &str,
        spec: GroupSpec,
    ) -> Result<GroupInfo> {
        let namespace = namespace_of(namespace)?;
        check_group_name(&spec.name)?;
        if spec.shards == 0 || spec.shards > MAX_SHARDS {
            return Err(Error::BadRequest(format!(
                "shards must be 1 to {MAX_SHARDS}, not {}",
                spec.shards
            )));
        }
        if let Strategy::Range { bounds } = &spec.strategy {
            if bounds.iter().any(|b| b.len() > MAX_KEY_LEN) {
                return Err(Error::BadRequest(format!(
                    "a range bound is at most {MAX_KEY_LEN} bytes"
                )));
            }
        }
        let key = (caller.tenant.clone(), namespace.clone(), spec.name.clone());
        let _change = self.changes.lock().await;
        {
            let groups = self.groups.lock();
            if groups.contains_key(&key) {
                return Err(plexspaces_core::Error::NameTaken(format!(
                    "shard group {:?} in {namespace:?}",
                    spec.name
                ))
                .into());
            }
            if groups.len() >= MAX_GROUPS {
                return Err(Error::Overloaded(format!(
                    "the node holds {MAX_GROUPS} shard groups"
                )));
            }
        }
        let internal = format!(
            "g{}_{}",
            self.seq.fetch_add(1, Ordering::Relaxed),
            spec.name
        );
        let options = ShardGroupOptions::new(internal, spec.shards as usize, spec.strategy.clone());
        let group = ShardGroup::start(&self.node, options, |_| KvShard::default())
            .await
            .map_err(shard_error)?;
        let info = GroupInfo {
            namespace,
            name: spec.name,
            shards: spec.shards,
            strategy: spec.strategy,
            shard_ids: group.shard_ids().iter().map(ToString::to_string).collect(),
        };
        self.groups.lock().insert(
            key,
            Arc::new(Entry {
                group,
                info: info.clone(),
            }),
        );
        Ok(info)
    }

    /// Describes one of the caller's groups.
    pub fn get(&self, caller: &Caller, namespace: &str, name: &str) -> Result<GroupInfo> {
        Ok(self.entry(caller, namespace, name)?.info.clone())
    }

    /// Stops one of the caller's groups and drops its data.
    pub async fn delete(&self, caller: &Caller, namespace: &str, name: &str) -> Result<()> {
        let _change = self.changes.lock().await;
        let entry = self.entry(caller, namespace, name)?;
        let key = (
            caller.tenant.clone(),
            entry.info.namespace.clone(),
            name.to_owned(),
        );
        self.groups.lock().remove(&key);
        entry.group.stop().await.map_err(shard_error)
    }

    /// Writes `items` to their shards and reports what was applied.
    pub async fn bulk_update(
        &self,
        caller: &Caller,
        namespace: &str,
        name: &str,
        items: Vec<(String, serde_json::Value)>,
    ) -> Result<BulkReport> {
        if let Some((key, _)) = items.iter().find(|(k, _)| k.len() > MAX_KEY_LEN) {
            return Err(Error::BadRequest(format!(
                "key of {} bytes is longer than {MAX_KEY_LEN}",
                key.len()
            )));
        }
        let entry = self.entry(caller, namespace, name)?;
        Ok(entry.group.bulk_update(items).await)
    }

    /// Sends `query` to every shard of a group, waiting at most `timeout` (0: the default)
    /// for each, and merges the answers.
    pub async fn query(
        &self,
        caller: &Caller,
        namespace: &str,
        name: &str,
        query: KvQuery,
        timeout_ms: u64,
        mode: Mode,
    ) -> Result<QueryResult> {
        let max = plexspaces_shard::kv::MAX_ENTRIES;
        match &query {
            KvQuery::Get { keys } if keys.len() > max => {
                return Err(Error::BadRequest(format!(
                    "a get query names at most {max} keys"
                )));
            }
            KvQuery::Scan { limit, .. } if *limit > max => {
                return Err(Error::BadRequest(format!("a scan limit is at most {max}")));
            }
            _ => {}
        }
        if Duration::from_millis(timeout_ms) > MAX_TIMEOUT {
            return Err(Error::BadRequest(format!(
                "timeout_ms is at most {}",
                MAX_TIMEOUT.as_millis()
            )));
        }
        let timeout = if timeout_ms == 0 {
            DEFAULT_TIMEOUT
        } else {
            Duration::from_millis(timeout_ms)
        };
        let entry = self.entry(caller, namespace, name)?;
        let gathered = entry.group.scatter_gather(query.clone(), timeout).await;
        if mode == Mode::Map {
            if let Some(f) = gathered.failed.first() {
                let error = if f.kind == "timeout" {
                    plexspaces_core::Error::Timeout(timeout)
                } else {
                    plexspaces_core::Error::NoProc(format!(
                        "shard {} ({}) did not answer: {}",
                        f.shard, f.id, f.error
                    ))
                };
                return Err(error.into());
            }
        }
        let answered = gathered.answers.iter().map(|(i, _)| *i).collect();
        let result = gathered
            .answers
            .into_iter()
            .fold(KvAnswer::empty(&query), |acc, (_, a)| acc.merge(a));
        Ok(QueryResult {
            result,
            answered,
            failed: gathered.failed,
        })
    }
}
