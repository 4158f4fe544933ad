//! Limits and runtime options, with their defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Per actor type: what one activation may use. Every field has a default; a deploy may
/// lower or raise them up to the runtime's ceilings ([`RuntimeOptions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The most linear memory one activation may grow to, in bytes (all its memories
    /// together). Default 64 MiB.
    pub max_memory_bytes: u64,
    /// The longest one export call (a message, `init`, `snapshot`, `restore`) may run, in
    /// milliseconds, counting the guest's own work only roughly to the epoch tick (10 ms);
    /// past it the guest is interrupted and the caller gets a timeout. Time spent waiting
    /// in host imports (an `ask`) counts too. Default 10 s.
    pub call_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_memory_bytes: 64 << 20,
            call_timeout_ms: 10_000,
        }
    }
}

impl Limits {
    /// The call timeout.
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }

    /// Checks these limits against the runtime's ceilings.
    pub fn check(&self, options: &RuntimeOptions) -> Result<()> {
        if self.max_memory_bytes == 0 || self.max_memory_bytes > options.max_memory_bytes {
            return Err(Error::Config(format!(
                "max_memory_bytes must be 1..={} (the node's wasm.max_memory_bytes)",
                options.max_memory_bytes
            )));
        }
        if self.call_timeout_ms == 0 || self.call_timeout_ms > options.max_call_timeout_ms {
            return Err(Error::Config(format!(
                "call_timeout_ms must be 1..={} (the node's wasm.max_call_timeout_ms)",
                options.max_call_timeout_ms
            )));
        }
        Ok(())
    }
}

/// The runtime (one per node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeOptions {
    /// Where compiled components are cached (`None`: no disk cache, every load compiles).
    pub cache_dir: Option<PathBuf>,
    /// Use wasmtime's pooling instance allocator (memory reserved up front for
    /// `max_instances` instances) instead of on-demand allocation. Default true.
    pub pooling: bool,
    /// With pooling: the most live component instances (one per WASM activation).
    /// Default 1000.
    pub max_instances: u32,
    /// The ceiling of any type's `max_memory_bytes` (and, with pooling, the size of each
    /// reserved memory slot). Default 256 MiB.
    pub max_memory_bytes: u64,
    /// The ceiling of any type's `call_timeout_ms`. Default 60 s.
    pub max_call_timeout_ms: u64,
    /// The epoch tick: how often running guests are checked against their deadline, in
    /// milliseconds. Default 10.
    pub epoch_tick_ms: u64,
    /// The largest module accepted, in bytes. Default 64 MiB (a Python component is
    /// about 40 MB).
    pub max_module_bytes: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            pooling: true,
            max_instances: 1000,
            max_memory_bytes: 256 << 20,
            max_call_timeout_ms: 60_000,
            epoch_tick_ms: 10,
            max_module_bytes: 64 << 20,
        }
    }
}
