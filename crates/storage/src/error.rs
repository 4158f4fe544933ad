//! The crate's error type.

/// Everything that can go wrong in key-value, blob or lock storage.
///
/// Whether a caller should retry is a property of the error: see [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tenant, namespace, key or lock name that is empty, too long or malformed.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// what was malformed ("tenant", "key", ...)
        what: &'static str,
        /// why
        message: String,
    },
    /// The write carried a fencing token older than one the key has already seen: the
    /// writer's lock was taken over by a later holder.
    #[error("stale fencing token {given}: key already written with token {seen}")]
    Fenced {
        /// the token the writer presented
        given: u64,
        /// the highest token the key has seen
        seen: u64,
    },
    /// The lease is no longer held (it expired, or another holder took the lock).
    #[error("lease on lock {lock} with token {token} is no longer held")]
    LeaseLost {
        /// the lock name
        lock: String,
        /// the token of the lost lease
        token: u64,
    },
    /// `increment` on a value that is not a decimal 64-bit integer, or that would overflow.
    #[error("value of key {key} is not a 64-bit integer or would overflow")]
    NotAnInteger {
        /// the key
        key: String,
    },
    /// The blob (or key) does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// A compare-and-swap loop (for example `increment` on a SQL backend) kept losing races.
    #[error("gave up after {attempts} conflicting attempts on key {key}")]
    Contended {
        /// the key
        key: String,
        /// how many times it tried
        attempts: u32,
    },
    /// The feature or backend is not built into this binary (a cargo feature is off) or does
    /// not exist yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
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
}

impl Error {
    /// Whether the same call may succeed if tried again unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. } | Error::Contended { .. })
    }

    pub(crate) fn lease_lost(lease: &crate::Lease) -> Self {
        Error::LeaseLost {
            lock: lease.lock.clone(),
            token: lease.token,
        }
    }

    pub(crate) fn invalid(what: &'static str, message: impl Into<String>) -> Self {
        Error::Invalid {
            what,
            message: message.into(),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
