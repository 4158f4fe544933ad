//! Where deployed modules are kept: the [`ModuleStore`] trait, and [`FsModuleStore`], its
//! implementation under the node's data dir (`<data_dir>/wasm/modules`).
//!
//! The trait is the seam for a cluster-wide store later (a blob store or a database): the
//! deploy service only puts, gets, lists and removes whole deployments through it.
//!
//! Layout of [`FsModuleStore`]: one directory per `(tenant, namespace, actor type)`, named by
//! the SHA-256 of the three names (any tenant name fits a file name), holding
//! `v<version>.wasm` and `deployment.json` (the [`Deployment`] record, which names the
//! version). A put writes the module first, then replaces `deployment.json` atomically
//! (write to a temporary file, fsync, rename), then removes older modules: a crash at any
//! point leaves either the old deployment or the new one, never a record without its module.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::deploy::Deployment;
use crate::error::{Error, Result};

/// Stores deployed modules and their records.
#[async_trait]
pub trait ModuleStore: Send + Sync + 'static {
    /// Stores `wasm` as `deployment` (replacing an earlier version of the same type).
    async fn put(&self, deployment: &Deployment, wasm: &[u8]) -> Result<()>;
    /// The deployment of `(tenant, namespace, actor_type)` and its module, if any.
    async fn get(
        &self,
        tenant: &str,
        namespace: &str,
        actor_type: &str,
    ) -> Result<Option<(Deployment, Bytes)>>;
    /// Every stored deployment (all tenants), without the modules.
    async fn list(&self) -> Result<Vec<Deployment>>;
    /// Removes a deployment and its module; whether there was one.
    async fn remove(&self, tenant: &str, namespace: &str, actor_type: &str) -> Result<bool>;
}

/// [`ModuleStore`] on the local file system.
#[derive(Debug, Clone)]
pub struct FsModuleStore {
    root: PathBuf,
}

const RECORD: &str = "deployment.json";

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Io(format!("module store: {what} {}: {e}", path.display()))
}

impl FsModuleStore {
    /// A store under `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| io("cannot create", &root, e))?;
        Ok(FsModuleStore { root })
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, tenant: &str, namespace: &str, actor_type: &str) -> PathBuf {
        let mut h = Sha256::new();
        for part in [tenant, namespace, actor_type] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let digest = h.finalize();
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.root.join(name)
    }

    fn module_name(version: u64) -> String {
        format!("v{version}.wasm")
    }

    fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| io("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("cannot rename", &tmp, e))?;
        if let Some(dir) = path.parent() {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    fn read_record(dir: &Path) -> Result<Option<Deployment>> {
        let path = dir.join(RECORD);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path, e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Io(format!("module store: {}: {e}", path.display())))
    }
}

#[async_trait]
impl ModuleStore for FsModuleStore {
    async fn put(&self, deployment: &Deployment, wasm: &[u8]) -> Result<()> {
        let dir = self.dir(
            &deployment.tenant,
            &deployment.namespace,
            &deployment.actor_type,
        );
        let record = serde_json::to_vec_pretty(deployment)
            .map_err(|e| Error::Io(format!("module store: {e}")))?;
        let wasm = wasm.to_vec();
        let version = deployment.version;
        tokio::task::spawn_blocking(move || -> Result<()> {
            std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
            let module = dir.join(Self::module_name(version));
            Self::write_atomically(&module, &wasm)?;
            Self::write_atomically(&dir.join(RECORD), &record)?;
            // Older versions are no longer named by the record.
            let keep = Self::module_name(version);
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".wasm") && name != keep {
                        let _ = std::fs::remove_file(entry.path());
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Io(format!("module store: {e}")))?
    }

    async fn get(
        &self,
        tenant: &str,
        namespace: &str,
        actor_type: &str,
    ) -> Result<Option<(Deployment, Bytes)>> {
        let dir = self.dir(tenant, namespace, actor_type);
        tokio::task::spawn_blocking(move || -> Result<Option<(Deployment, Bytes)>> {
            let Some(d) = Self::read_record(&dir)? else {
                return Ok(None);
            };
            let path = dir.join(Self::module_name(d.version));
            let wasm = std::fs::read(&path).map_err(|e| io("cannot read", &path, e))?;
            Ok(Some((d, Bytes::from(wasm))))
        })
        .await
        .map_err(|e| Error::Io(format!("module store: {e}")))?
    }

    async fn list(&self) -> Result<Vec<Deployment>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Deployment>> {
            let mut out = Vec::new();
            let entries = std::fs::read_dir(&root).map_err(|e| io("cannot list", &root, e))?;
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    if let Some(d) = Self::read_record(&entry.path())? {
                        out.push(d);
                    }
                }
            }
            out.sort_by(|a, b| {
                (&a.tenant, &a.namespace, &a.actor_type).cmp(&(
                    &b.tenant,
                    &b.namespace,
                    &b.actor_type,
                ))
            });
            Ok(out)
        })
        .await
        .map_err(|e| Error::Io(format!("module store: {e}")))?
    }

    async fn remove(&self, tenant: &str, namespace: &str, actor_type: &str) -> Result<bool> {
        let dir = self.dir(tenant, namespace, actor_type);
        tokio::task::spawn_blocking(move || -> Result<bool> {
            // The record first: without it the directory is no deployment.
            let record = dir.join(RECORD);
            let existed = match std::fs::remove_file(&record) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(io("cannot remove", &record, e)),
            };
            let _ = std::fs::remove_dir_all(&dir);
            Ok(existed)
        })
        .await
        .map_err(|e| Error::Io(format!("module store: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tenant: &str, version: u64) -> Deployment {
        Deployment {
            tenant: tenant.into(),
            namespace: "default".into(),
            actor_type: "counter".into(),
            version,
            digest: format!("d{version}"),
            size_bytes: 4,
            ..Deployment::default()
        }
    }

    #[tokio::test]
    async fn a_redeploy_replaces_the_module_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsModuleStore::open(dir.path()).unwrap();
        store.put(&record("a", 1), b"one!").await.unwrap();
        store.put(&record("a", 2), b"two!").await.unwrap();
        store.put(&record("b/../x", 1), b"bbbb").await.unwrap();
        let store = FsModuleStore::open(dir.path()).unwrap();
        let (d, wasm) = store.get("a", "default", "counter").await.unwrap().unwrap();
        assert_eq!((d.version, &wasm[..]), (2, &b"two!"[..]));
        let all = store.list().await.unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].tenant, "a");
        assert_eq!(all[1].tenant, "b/../x");
        assert!(store.remove("a", "default", "counter").await.unwrap());
        assert!(!store.remove("a", "default", "counter").await.unwrap());
        assert!(store
            .get("a", "default", "counter")
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.list().await.unwrap().len(), 1);
    }
}
