//! The crate's error type.

use std::time::Duration;

use crate::TupleId;

/// Everything that can go wrong in the tuple space.
///
/// Whether a caller should retry is a property of the error: see [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tuple or template has no fields or more fields than the configured maximum.
    #[error("arity {arity} is outside the allowed range 1..={max}")]
    Arity {
        /// the arity that was given
        arity: usize,
        /// the configured maximum
        max: usize,
    },
    /// The encoded tuple is larger than the configured maximum.
    #[error("tuple of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// encoded size in bytes
        size: usize,
        /// the configured maximum
        max: usize,
    },
    /// Nested tuples go deeper than the configured maximum.
    #[error("nesting depth exceeds the limit of {max}")]
    TooDeep {
        /// the configured maximum
        max: usize,
    },
    /// A template that can never be used as written (for example an exact NaN).
    #[error("malformed template: {0}")]
    MalformedTemplate(String),
    /// A tenant, namespace or space name that is empty, too long or has control characters.
    #[error("invalid space id: {0}")]
    InvalidSpaceId(String),
    /// An argument outside its domain (a zero lease, a barrier of zero parties...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A blocking `read` or `take` found nothing before its timeout.
    #[error("no matching tuple within {0:?}")]
    Timeout(Duration),
    /// The tuple does not exist (any more), for example a lease renewed after expiry.
    #[error("tuple {0} not found or expired")]
    NotFound(TupleId),
    /// A take lease that is unknown, already confirmed or released, or expired (its tuple
    /// went back to the space).
    #[error("take lease {0} is unknown, settled or expired")]
    LeaseNotFound(u64),
    /// The transaction was already committed or aborted.
    #[error("transaction is no longer open")]
    TransactionClosed,
    /// The backend could not be reached or timed out; the operation may succeed later.
    #[error("{backend} backend unavailable: {message}")]
    Unavailable {
        /// backend name
        backend: &'static str,
        /// driver message
        message: String,
    },
    /// The backend refused the operation for a reason a retry will not fix.
    #[error("{backend} backend error: {message}")]
    Backend {
        /// backend name
        backend: &'static str,
        /// driver message
        message: String,
    },
    /// Stored bytes could not be decoded as a tuple.
    #[error("corrupt stored tuple: {0}")]
    Corrupt(String),
    /// The space engine has shut down (its runtime is gone).
    #[error("tuple space is shut down")]
    Closed,
}

impl Error {
    /// Whether the same call may succeed if tried again unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Timeout(_) | Error::Unavailable { .. })
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
