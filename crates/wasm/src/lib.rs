//! `plexspaces-wasm`: the wasmtime component host that runs actors written in any language
//! that compiles to a WebAssembly component of the world `plexspaces:actor/actor`
//! (`wit/actor.wit` at the repository root; see `docs/wasm.md`).
//!
//! What it is: a [`Runtime`] (one wasmtime engine per node: async, component model, epoch
//! interruption driven by a node-wide ticker thread, the pooling allocator, a precompiled
//! module cache on disk), [`Module`]s (a checked, compiled component plus what its guest
//! said about itself in `describe`), and [`WasmActor`], an ordinary
//! [`plexspaces_core::Actor`] whose messages are the envelope's `(msg_type, JSON payload)`
//! handed to the guest unchanged, with one guest instance per activation.
//!
//! What it is not: it does not deploy, store or route. The node owns the deploy API, the
//! module store and the actor-type registry, and gives guests its services through a
//! [`HostEnv`] (messaging through a [`Router`], key-value, tuple spaces, process groups).
//!
//! Invariants:
//! - A guest cannot name another tenant: no import takes a tenant; every import acts in the
//!   activation's [`ActorScope`] (see [`host`](crate::host)).
//! - Each export call runs under the type's [`Limits`]: past `call_timeout_ms` the epoch
//!   callback interrupts the guest ([`Error::TimeLimit`]); a memory grow past
//!   `max_memory_bytes` fails ([`Error::MemoryLimit`]). A failed instance is dropped, never
//!   reused.
//! - A component compiles once per content hash and engine configuration while the cache
//!   directory lives ([`Runtime::cache_stats`]).
//!
//! Driver types (wasmtime) appear in no public signature.

mod actor;
mod cache;
mod config;
mod error;
mod host;
mod module;
mod runtime;
pub mod tuple_json;

pub use actor::{WasmActor, WasmMsg};
pub use cache::digest;
pub use config::{Limits, RuntimeOptions};
pub use error::{Error, Result};
pub use host::{ActorScope, Code, HostEnv, ImportError, Router};
pub use module::{Descriptor, Module, DURABILITY_FACET, KNOWN_FACETS};
pub use runtime::{CacheStats, Runtime};

/// Percent-escapes `%` and `/` so that a name part can be embedded in a path-like name.
pub(crate) fn escape(part: &str) -> String {
    part.replace('%', "%25").replace('/', "%2F")
}
