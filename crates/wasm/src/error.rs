//! The crate's error type.

/// What can go wrong loading, instantiating or calling a WASM actor.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bytes are not a WebAssembly binary.
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    /// A core module where a component is needed.
    #[error("a core WebAssembly module, not a component: build the guest as a component of the world plexspaces:actor/actor (see docs/wasm.md)")]
    CoreModule,
    /// The component does not validate or does not compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component does not implement the `plexspaces:actor/actor` world (a missing
    /// export or an import the host does not offer).
    #[error("the component does not implement plexspaces:actor/actor: {0}")]
    World(String),
    /// The module is larger than the configured limit.
    #[error("module is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A per-type limit or option is out of range.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The guest ran past its time budget and was interrupted.
    #[error("guest ran past its {0:?} time limit")]
    TimeLimit(std::time::Duration),
    /// The guest asked for more memory than its limit.
    #[error("guest exceeded its memory limit of {0} bytes")]
    MemoryLimit(u64),
    /// The guest trapped (a panic, an `unreachable`, an out-of-bounds access).
    #[error("guest trapped: {0}")]
    Trap(String),
    /// The guest returned an error from `init`, `describe` or `restore`.
    #[error("guest error ({code}): {message}")]
    Guest {
        /// The WIT `error-code`, in kebab case.
        code: &'static str,
        /// The guest's message.
        message: String,
    },
    /// The host could not create an instance (pooling limits reached, for example).
    #[error("cannot instantiate: {0}")]
    Instantiate(String),
    /// The precompiled-module cache failed (I/O).
    #[error("module cache: {0}")]
    Cache(String),
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A stable kind name (the node maps it to an HTTP status / gRPC code).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::NotWasm(_)
            | Error::CoreModule
            | Error::Invalid(_)
            | Error::World(_)
            | Error::Config(_) => "bad_request",
            Error::TooLarge { .. } => "payload_too_large",
            Error::TimeLimit(_) => "timeout",
            Error::MemoryLimit(_) | Error::Instantiate(_) => "overloaded",
            Error::Trap(_) | Error::Guest { .. } | Error::Cache(_) => "internal",
        }
    }
}
