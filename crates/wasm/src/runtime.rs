//! The runtime: one wasmtime [`Engine`] per node (async, component model, epoch
//! interruption, optionally the pooling allocator), its epoch ticker, the linker with every
//! host import, and the precompiled-module cache.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::cache::DiskCache;
use crate::config::{Limits, RuntimeOptions};
use crate::error::{Error, Result};
use crate::host::{HostEnv, HostState};
use crate::module::Module;

/// The pool's core instances (and tables) per allowed activation: room for a component of
/// up to 16 core modules (Python's has 14, TypeScript's 4, a Rust one about 5).
const CORE_INSTANCES_PER_ACTIVATION: u32 = 16;

/// Compilation counters: how often a load compiled and how often the cache answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads that compiled the component.
    pub compiled: u64,
    /// Loads answered from the disk cache (no compilation).
    pub cache_hits: u64,
}

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<HostState>,
    pub(crate) options: RuntimeOptions,
    cache: Option<DiskCache>,
    compiled: AtomicU64,
    cache_hits: AtomicU64,
    stop: Arc<AtomicBool>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// The WASM runtime of a node. Cheap to clone; the epoch ticker stops when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn start(options: RuntimeOptions) -> Result<Runtime> {
        if options.epoch_tick_ms == 0 {
            return Err(Error::Config("epoch_tick_ms must be at least 1".into()));
        }
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        if options.pooling {
            let mut pool = PoolingAllocationConfig::default();
            let n = options.max_instances.max(1);
            pool.total_component_instances(n);
            // A component holds several core instances, tables and memories: a
            // componentize-py one instantiates 14 core modules (libpython, libc, the WASI
            // adapter, shims), so a budget of 8 per activation capped Python actors at
            // about 57% of `max_instances` (found by the WASM bench's memory rows).
            pool.total_core_instances(n.saturating_mul(CORE_INSTANCES_PER_ACTIVATION));
            pool.total_memories(n.saturating_mul(4));
            pool.total_tables(n.saturating_mul(CORE_INSTANCES_PER_ACTIVATION));
            pool.max_memories_per_component(8);
            pool.max_tables_per_component(16);
            pool.max_core_instances_per_component(64);
            pool.table_elements(200_000);
            pool.max_component_instance_size(4 << 20);
            pool.max_core_instance_size(4 << 20);
            pool.max_memory_size(usize::try_from(options.max_memory_bytes).map_err(|_| {
                Error::Config("max_memory_bytes does not fit this platform".into())
            })?);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| Error::Config(format!("engine: {e:#}")))?;
        let mut linker = Linker::new(&engine);
        crate::host::add_to_linker(&mut linker)?;
        let cache = match &options.cache_dir {
            Some(dir) => Some(DiskCache::open(dir, &engine)?),
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = stop.clone();
            let tick = Duration::from_millis(options.epoch_tick_ms);
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| Error::Config(format!("cannot start the epoch ticker: {e}")))?;
        }
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                linker,
                options,
                cache,
                compiled: AtomicU64::new(0),
                cache_hits: AtomicU64::new(0),
                stop,
            }),
        })
    }

    /// The options it runs with.
    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }

    /// How many loads compiled and how many the disk cache answered.
    pub fn cache_stats(&self) -> CacheStats {
        CacheStats {
            compiled: self.inner.compiled.load(Ordering::Relaxed),
            cache_hits: self.inner.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Checks `bytes` (a component of the world `plexspaces:actor/actor`), compiles it (or
    /// loads it from the disk cache), instantiates it once to call `describe`, and returns
    /// the loaded module. Compiling takes a while (seconds for a Python component): it runs
    /// on a blocking thread.
    pub async fn load(&self, bytes: &[u8], limits: Limits) -> Result<Module> {
        let options = &self.inner.options;
        limits.check(options)?;
        if bytes.len() > options.max_module_bytes {
            return Err(Error::TooLarge {
                size: bytes.len(),
                limit: options.max_module_bytes,
            });
        }
        check_header(bytes)?;
        let digest = crate::cache::digest(bytes);
        let component = {
            let this = self.clone();
            let bytes = bytes.to_vec();
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || this.compile(&bytes, &digest))
                .await
                .map_err(|e| Error::Invalid(format!("compilation task failed: {e}")))??
        };
        let pre = self
            .inner
            .linker
            .instantiate_pre(&component)
            .map_err(|e| Error::World(format!("{e:#}")))?;
        let pre = crate::host::bindings::ActorPre::new(pre)
            .map_err(|e| Error::World(format!("{e:#}")))?;
        let mut module = Module::new(self.clone(), digest, bytes.len(), pre, limits);
        let descriptor = module.call_describe(HostEnv::detached()).await?;
        module.set_descriptor(descriptor);
        Ok(module)
    }

    fn compile(&self, bytes: &[u8], digest: &str) -> Result<Component> {
        if let Some(cache) = &self.inner.cache {
            if let Some(component) = cache.get(&self.inner.engine, digest) {
                self.inner.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Ok(component);
            }
        }
        let component = Component::new(&self.inner.engine, bytes)
            .map_err(|e| Error::Invalid(format!("{e:#}")))?;
        self.inner.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.inner.cache {
            if let Err(e) = cache.put(&component, digest) {
                tracing::warn!(error = %e, "cannot cache a compiled component");
            }
        }
        Ok(component)
    }
}

/// Tells a component from a core module and from garbage by the preamble.
fn check_header(bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(Error::NotWasm(
            "the file does not start with the WebAssembly magic number".into(),
        ));
    }
    match (&bytes[4..6], &bytes[6..8]) {
        (_, [0, 0]) => Err(Error::CoreModule),
        (_, [1, 0]) => Ok(()),
        _ => Err(Error::NotWasm("unknown WebAssembly layer".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert!(matches!(
            check_header(b"hello world"),
            Err(Error::NotWasm(_))
        ));
        assert!(matches!(check_header(b"\0asm"), Err(Error::NotWasm(_))));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(Error::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
