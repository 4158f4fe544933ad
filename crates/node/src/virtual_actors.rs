//! Virtual actors across nodes: the `[virtual_actors]` config, the node's activation
//! directory ([`open_directory`]) and where a first activation goes ([`Placer`]).
//!
//! With a directory, the registry claims each virtual key before activating it and releases
//! it after the activation terminated (see [`crate::registry`]), so one key has at most one
//! activation among all the nodes sharing the directory. Entries of a node that membership
//! declares gone are reclaimed at once by the surviving majority ([`reclaim_lost`]); nothing
//! expires by time.

use std::sync::Arc;

use plexspaces_cluster::directory::{PostgresDirectory, SqliteDirectory};
use plexspaces_cluster::placement::{self, Candidate, Placement, PlacementTable};
use plexspaces_cluster::{MemoryDirectory, SharedDirectory};
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::registry::ActivationKey;
use crate::secret::Secret;

/// `[virtual_actors]`: the activation directory and placement per actor type.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VirtualActorsConfig {
    /// Where the activation directory lives (`PLEXSPACES_DIRECTORY`): unset = none (one
    /// activation per key per node only); `postgres://...` = PostgreSQL (nodes on many
    /// hosts); `journal` = the journal's PostgreSQL (`journal.url`); `sqlite:PATH` = a SQLite
    /// file shared by the nodes of one host; `memory` = this process only. Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<Secret>,
    /// PostgreSQL schema of the directory table (`PLEXSPACES_DIRECTORY_SCHEMA`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory_schema: Option<String>,
    /// Placement per actor type, e.g. `[virtual_actors.placement.counter] strategy =
    /// "consistent_hash"` (the default), `"prefer_local"`, `"pinned"` with `node`, or
    /// `"resource_aware"` with `cpu`, `memory_bytes`, `io` and `labels`.
    pub placement: PlacementTable,
}

/// Where the directory is, resolved from the config.
#[derive(Debug, Clone, PartialEq)]
pub enum DirectorySpec {
    /// In this process.
    Memory,
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// PostgreSQL: URL and schema.
    Postgres(String, String),
}

impl VirtualActorsConfig {
    /// The directory to open, `None` when unset.
    pub fn spec(&self, config: &NodeConfig) -> Result<Option<DirectorySpec>> {
        let Some(dir) = &self.directory else {
            return Ok(None);
        };
        let schema = self
            .directory_schema
            .clone()
            .unwrap_or_else(|| config.journal.schema.clone());
        let text = dir.expose().trim();
        let spec = if text == "memory" {
            DirectorySpec::Memory
        } else if text == "journal" {
            let url = config.journal.url.as_ref().ok_or_else(|| {
                Error::Config(
                    "virtual_actors.directory = \"journal\" needs a PostgreSQL journal.url".into(),
                )
            })?;
            DirectorySpec::Postgres(url.expose().to_owned(), schema)
        } else if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            DirectorySpec::Postgres(text.to_owned(), schema)
        } else if let Some(path) = text.strip_prefix("sqlite:") {
            if path.is_empty() {
                return Err(Error::Config(
                    "virtual_actors.directory = \"sqlite:PATH\" needs a path".into(),
                ));
            }
            DirectorySpec::Sqlite(path.into())
        } else {
            return Err(Error::Config(
                "virtual_actors.directory must be `memory`, `journal`, `sqlite:PATH` or a \
                 postgres:// URL"
                    .into(),
            ));
        };
        Ok(Some(spec))
    }
}

/// Opens the configured directory, `None` when unset.
pub async fn open_directory(config: &NodeConfig) -> Result<Option<SharedDirectory>> {
    let directory: SharedDirectory = match config.virtual_actors.spec(config)? {
        None => return Ok(None),
        Some(DirectorySpec::Memory) => Arc::new(MemoryDirectory::new()),
        Some(DirectorySpec::Sqlite(path)) => Arc::new(
            SqliteDirectory::open(&path)
                .await
                .map_err(|e| Error::Config(format!("directory {}: {e}", path.display())))?,
        ),
        Some(DirectorySpec::Postgres(url, schema)) => Arc::new(
            PostgresDirectory::open(&url, &schema)
                .await
                .map_err(|e| Error::Config(crate::secret::mask_secrets(&e.to_string())))?,
        ),
    };
    Ok(Some(directory))
}

/// Picks the node for a first activation, per type, among the alive members.
#[derive(Debug, Clone)]
pub struct Placer {
    local: String,
    table: PlacementTable,
    /// Round robin over the nodes for worker pool calls.
    next: Arc<std::sync::atomic::AtomicUsize>,
}

/// Where a call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// This node serves it (activating the key here if needed).
    Here,
    /// This member serves it.
    Remote(String),
}

impl Placer {
    /// A placer for node `local` with the types' placements (config and code merged).
    pub fn new(local: &str, table: PlacementTable) -> Self {
        Placer {
            local: local.to_owned(),
            table,
            next: Arc::default(),
        }
    }

    /// Where a call for `key` goes: a virtual key to its owner per the directory (a dead
    /// owner's entries reclaimed first, when this side is a majority of `known` members),
    /// else to its placement; a worker pool call round robin over the alive nodes, so pools
    /// spread across nodes. `alive`: the alive members, this node included.
    pub async fn route(
        &self,
        binding: &crate::registry::DirectoryBinding,
        key: &ActivationKey,
        virtual_type: bool,
        alive: &[Candidate],
        known: usize,
    ) -> Result<Route> {
        let here_or = |node: String| {
            if node == self.local {
                Route::Here
            } else {
                Route::Remote(node)
            }
        };
        if !virtual_type {
            if alive.is_empty() {
                return Ok(Route::Here);
            }
            let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % alive.len();
            return Ok(here_or(alive[i].node.clone()));
        }
        let owner = binding
            .directory
            .lookup(&key.directory_key())
            .await
            .map_err(|e| Error::Directory(e.to_string()))?;
        if let Some(owner) = owner {
            if owner.node == self.local || alive.iter().any(|c| c.node == owner.node) {
                return Ok(here_or(owner.node));
            }
            // Its owner is gone: free its entries (if membership has not already) and place
            // the key anew. On a minority side the key stays owned and the call fails.
            if reclaim_lost(&binding.directory, &owner.node, alive.len(), known).await? == 0 {
                let still = binding
                    .directory
                    .lookup(&key.directory_key())
                    .await
                    .map_err(|e| Error::Directory(e.to_string()))?;
                if let Some(o) = still.filter(|o| o.node == owner.node) {
                    return Err(Error::Moved {
                        key: key.to_string(),
                        owner: o.node,
                    });
                }
            }
        }
        Ok(here_or(self.target(key, alive)?))
    }

    /// The placement of `actor_type`.
    pub fn placement(&self, actor_type: &str) -> Placement {
        self.table.get(actor_type)
    }

    /// The node that should activate `key` first, among `candidates` (the alive members).
    pub fn target(&self, key: &ActivationKey, candidates: &[Candidate]) -> Result<String> {
        if candidates.is_empty() {
            return Ok(self.local.clone());
        }
        placement::place(
            &self.placement(&key.actor_type),
            &key.path(),
            &self.local,
            candidates,
        )
        .map_err(|e| Error::Directory(e.to_string()))
    }
}

/// Frees the directory entries of `lost` when this node sees a majority of the last known
/// members alive (`alive` of `known`): the minority side of a partition never takes over
/// (its claims would only be fenced). Returns how many entries were freed.
pub async fn reclaim_lost(
    directory: &SharedDirectory,
    lost: &str,
    alive: usize,
    known: usize,
) -> Result<u64> {
    if alive * 2 <= known {
        tracing::warn!(
            node = lost,
            alive,
            known,
            "not reclaiming a lost node's activations: this side is not a majority"
        );
        return Ok(0);
    }
    let n = directory
        .reclaim(lost, u64::MAX)
        .await
        .map_err(|e| Error::Directory(e.to_string()))?;
    if n > 0 {
        tracing::info!(
            node = lost,
            entries = n,
            "reclaimed the activations of a lost node"
        );
    }
    Ok(n)
}

/// Follows the membership while it runs: reclaims the directory entries of every node it
/// reports gone (dead, partitioned away or left) while this side is a majority, and when a
/// node joins or comes back (a partition healed) retires this node's activations whose
/// claims were reclaimed meanwhile ([`crate::registry::Registry::retire_stale`]).
pub async fn reclaim_on_membership(
    cluster: plexspaces_cluster::ClusterHandle,
    registry: crate::registry::Registry,
) {
    let Some(directory) = registry.directory().map(|d| d.directory.clone()) else {
        return;
    };
    let mut events = cluster.subscribe();
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            // Missed events: check this node's claims, as after a heal.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                retire_stale(&registry).await;
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        match event {
            plexspaces_cluster::MembershipEvent::Left(node) => {
                let members = cluster.members();
                let alive = Candidate::alive(&members).len();
                if let Err(e) = reclaim_lost(&directory, &node, alive, members.len()).await {
                    tracing::warn!(node, error = %e, "cannot reclaim a lost node's activations");
                }
            }
            plexspaces_cluster::MembershipEvent::Joined(_) => retire_stale(&registry).await,
            plexspaces_cluster::MembershipEvent::Leaving(_) => {}
        }
    }
}

async fn retire_stale(registry: &crate::registry::Registry) {
    match registry.retire_stale().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            activations = n,
            "retired activations reclaimed by the cluster"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot check this node's directory claims"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(dir: &str) -> NodeConfig {
        let mut c = NodeConfig::default();
        c.virtual_actors.directory = Some(Secret::new(dir));
        c
    }

    #[test]
    fn directory_specs_parse_and_bad_ones_are_config_errors() {
        let c = NodeConfig::default();
        assert_eq!(c.virtual_actors.spec(&c).unwrap(), None);
        let c = with("memory");
        assert_eq!(
            c.virtual_actors.spec(&c).unwrap(),
            Some(DirectorySpec::Memory)
        );
        let c = with("sqlite:/tmp/d.db");
        assert_eq!(
            c.virtual_actors.spec(&c).unwrap(),
            Some(DirectorySpec::Sqlite("/tmp/d.db".into()))
        );
        let c = with("postgres://u@h/db");
        assert_eq!(
            c.virtual_actors.spec(&c).unwrap(),
            Some(DirectorySpec::Postgres(
                "postgres://u@h/db".into(),
                "plexspaces".into()
            ))
        );
        for bad in ["journal", "sqlite:", "redis://x", ""] {
            let c = with(bad);
            assert!(
                matches!(c.virtual_actors.spec(&c), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[tokio::test]
    async fn only_a_majority_reclaims_a_lost_node() {
        let d: SharedDirectory = Arc::new(MemoryDirectory::new());
        let key = plexspaces_cluster::ActorKey::new("t", "n", "counter", "k");
        d.claim(&key, "a", 1).await.unwrap();
        assert_eq!(reclaim_lost(&d, "a", 1, 3).await.unwrap(), 0, "minority");
        assert!(d.lookup(&key).await.unwrap().is_some());
        assert_eq!(reclaim_lost(&d, "a", 2, 3).await.unwrap(), 1, "majority");
        assert!(d.lookup(&key).await.unwrap().is_none());
    }
}
