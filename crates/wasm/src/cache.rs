//! The precompiled-module cache on disk: `<dir>/<sha256 of the bytes>-<engine hash>.cwasm`,
//! written with [`Component::serialize`] and read with [`Component::deserialize_file`], so a
//! component compiles once per engine configuration and wasmtime version, not once per
//! activation, deploy or node restart.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

use crate::error::{Error, Result};

/// The hex SHA-256 of `bytes`: a module's identity.
pub fn digest(bytes: &[u8]) -> String {
    let hash = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in hash {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

pub(crate) struct DiskCache {
    dir: PathBuf,
    /// Which engine configuration (and wasmtime version) compiled the artifacts.
    engine_hash: String,
}

impl DiskCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<DiskCache> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Cache(format!("cannot create {}: {e}", dir.display())))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(DiskCache {
            dir: dir.to_owned(),
            engine_hash: format!("{:016x}", h.finish()),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir
            .join(format!("{digest}-{}.cwasm", self.engine_hash))
    }

    /// The cached artifact of `digest`, if one exists and loads.
    pub(crate) fn get(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.is_file() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts the file to be an artifact that this engine
        // configuration wrote. Only `put` below writes this directory (under the node's data
        // dir), by atomic rename, under a name that carries the engine's compatibility hash;
        // wasmtime still checks the artifact's header and version and refuses a mismatch.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "dropping an unusable cached component");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores the compiled `component` under `digest`.
    pub(crate) fn put(&self, component: &Component, digest: &str) -> Result<()> {
        let bytes = component
            .serialize()
            .map_err(|e| Error::Cache(format!("cannot serialize: {e}")))?;
        let path = self.path(digest);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::Cache(format!("cannot write {}: {e}", path.display())))
    }
}
