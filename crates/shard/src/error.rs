//! The shard crate's errors.

/// What shard group operations report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A configuration or argument was wrong (shard count, bounds, group name...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A shard did not answer a query that needed every shard ([`crate::ShardGroup::map`]).
    #[error("shard {shard} ({id}) failed: {error}")]
    ShardFailed {
        /// The shard's index.
        shard: usize,
        /// The shard actor's id.
        id: String,
        /// Why.
        error: plexspaces_core::Error,
    },
    /// The runtime refused (a name in use, the node shutting down...).
    #[error(transparent)]
    Runtime(#[from] plexspaces_core::Error),
}

impl Error {
    /// Whether trying again later may succeed (a shard restarting, a timeout).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::InvalidArgument(_) => false,
            Error::ShardFailed { .. } => true,
            Error::Runtime(e) => e.is_retryable(),
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
