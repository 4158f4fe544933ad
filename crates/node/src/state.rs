//! Virtual actor state across deactivation and restart, until the durability facet of
//! `plexspaces-journal` takes this job: [`SnapshotFacet`] restores an activation from its
//! last snapshot (`Actor::restore`) and saves a snapshot (`Actor::snapshot`) after every
//! message, in a [`SnapshotStore`] (in memory, or one file per key under the data dir).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use dashmap::DashMap;
use plexspaces_core::facet::{ActorInfo, Recovery};
use plexspaces_core::{Error as CoreError, Facet, Result as CoreResult};

use crate::registry::ActivationKey;

/// Where snapshots are kept, by activation key.
#[async_trait]
pub trait SnapshotStore: Send + Sync + 'static {
    /// The last snapshot saved for `key`.
    async fn load(&self, key: &ActivationKey) -> CoreResult<Option<Vec<u8>>>;
    /// Replaces the snapshot for `key`.
    async fn save(&self, key: &ActivationKey, snapshot: Vec<u8>) -> CoreResult<()>;
    /// The backend's name, for logs.
    fn backend(&self) -> &'static str;
}

/// Snapshots in memory: they survive deactivation, not a restart.
#[derive(Debug, Default)]
pub struct MemorySnapshotStore {
    map: DashMap<ActivationKey, Vec<u8>>,
}

#[async_trait]
impl SnapshotStore for MemorySnapshotStore {
    async fn load(&self, key: &ActivationKey) -> CoreResult<Option<Vec<u8>>> {
        Ok(self.map.get(key).map(|v| v.clone()))
    }

    async fn save(&self, key: &ActivationKey, snapshot: Vec<u8>) -> CoreResult<()> {
        self.map.insert(key.clone(), snapshot);
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// One file per key under a directory; written to a temporary file and renamed, so a crash
/// leaves the old snapshot or the new one.
#[derive(Debug)]
pub struct FileSnapshotStore {
    dir: PathBuf,
}

impl FileSnapshotStore {
    /// Uses (and creates) `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(FileSnapshotStore { dir })
    }

    fn file(&self, key: &ActivationKey) -> PathBuf {
        let hex: String = key.path().bytes().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{hex}.snapshot"))
    }
}

fn io_error(e: std::io::Error) -> CoreError {
    CoreError::Remote {
        kind: "storage".into(),
        message: format!("snapshot file: {e}"),
    }
}

#[async_trait]
impl SnapshotStore for FileSnapshotStore {
    async fn load(&self, key: &ActivationKey) -> CoreResult<Option<Vec<u8>>> {
        match tokio::fs::read(self.file(key)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn save(&self, key: &ActivationKey, snapshot: Vec<u8>) -> CoreResult<()> {
        let file = self.file(key);
        let tmp = file.with_extension("tmp");
        tokio::fs::write(&tmp, snapshot).await.map_err(io_error)?;
        tokio::fs::rename(&tmp, &file).await.map_err(io_error)
    }

    fn backend(&self) -> &'static str {
        "file"
    }
}

/// Restores an activation from its snapshot and saves one after every handled message.
pub struct SnapshotFacet {
    store: Arc<dyn SnapshotStore>,
    key: ActivationKey,
}

impl SnapshotFacet {
    /// A facet for the activation `key`.
    pub fn new(store: Arc<dyn SnapshotStore>, key: ActivationKey) -> Arc<Self> {
        Arc::new(SnapshotFacet { store, key })
    }

    /// A facet factory for [`crate::ActorType::facets`].
    pub fn factory(
        store: Arc<dyn SnapshotStore>,
    ) -> impl Fn(&ActivationKey) -> Vec<Arc<dyn Facet>> + Send + Sync + 'static {
        move |key| vec![SnapshotFacet::new(store.clone(), key.clone()) as Arc<dyn Facet>]
    }
}

#[async_trait]
impl Facet for SnapshotFacet {
    fn name(&self) -> &'static str {
        "snapshot"
    }

    async fn recover(&self, _actor: &ActorInfo) -> CoreResult<Option<Recovery>> {
        Ok(self.store.load(&self.key).await?.map(|snapshot| Recovery {
            snapshot: Some(snapshot),
            replay: Vec::new(),
        }))
    }

    fn checkpoint_due(&self, _actor: &ActorInfo) -> bool {
        true
    }

    async fn save_checkpoint(&self, _actor: &ActorInfo, snapshot: Vec<u8>) -> CoreResult<()> {
        self.store.save(&self.key, snapshot).await
    }
}
