//! The crate's error type.

/// Everything that can go wrong publishing or consuming.
///
/// Whether a caller should retry is a property of the error: see [`Error::is_retryable`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tenant, namespace, channel, group or consumer name that is empty, too long or has
    /// characters outside `[A-Za-z0-9_-]`.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// what was malformed
        what: &'static str,
        /// why
        message: String,
    },
    /// The receipt does not belong to this backend, channel or group, or its message was
    /// already acknowledged.
    #[error("unknown receipt {0}")]
    UnknownReceipt(String),
    /// The backend or operation is not built (a cargo feature is off), or the backend
    /// cannot offer it (UDP has no queues or dead letters).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// No backend is configured.
    #[error("no channel backend configured")]
    NotConfigured,
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
    /// The consumer was shut down: it accepts no new messages.
    #[error("consumer is shut down")]
    Closed,
}

impl Error {
    /// Whether the same call may succeed if tried again unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Unavailable { .. })
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
