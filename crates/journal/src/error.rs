//! The crate's error type.

/// Errors of the journal, the durable execution engine and the reminder store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A newer epoch was acquired for the stream: this writer is a stale activation and must stop.
    #[error("stream {stream} is fenced: epoch {epoch} is older than current epoch {current}")]
    Fenced {
        /// The stream that was written.
        stream: String,
        /// The epoch the caller wrote with.
        epoch: u64,
        /// The newest epoch acquired for the stream.
        current: u64,
    },
    /// Replay asked for a different step than the journal holds at this position.
    ///
    /// `expected` describes what the journal holds, `found` what the replaying handler asked for.
    #[error("journal mismatch at seq {seq} step {step}: journal holds {expected}, replay asked for {found}")]
    JournalMismatch {
        /// Sequence number of the message being replayed.
        seq: u64,
        /// Step index inside the message (0-based).
        step: u32,
        /// What the journal holds.
        expected: String,
        /// What the replaying handler asked for.
        found: String,
    },
    /// An append did not continue the stream where it ends.
    #[error("sequence conflict on stream {stream}: expected seq {expected}, got {found}")]
    SequenceConflict {
        /// The stream that was written.
        stream: String,
        /// The next sequence number the stream expects.
        expected: u64,
        /// The sequence number that was offered.
        found: u64,
    },
    /// Stored data failed its checksum or could not be decoded, and is not a torn tail.
    #[error("corrupt journal data on stream {stream} at seq {seq}: {reason}")]
    Corrupt {
        /// The stream.
        stream: String,
        /// The sequence number of the bad entry or snapshot.
        seq: u64,
        /// What was wrong.
        reason: String,
    },
    /// The entries needed to rebuild a past state were truncated.
    #[error(
        "history before seq {first_available} was truncated; cannot rebuild state at seq {seq}"
    )]
    HistoryTruncated {
        /// The requested sequence number.
        seq: u64,
        /// The oldest sequence number still in the journal.
        first_available: u64,
    },
    /// The call does not fit the execution's current state (for example `commit` without `begin_message`).
    #[error("invalid state: {0}")]
    InvalidState(String),
    /// A caller-supplied argument is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A value could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
    /// The execution was poisoned by an earlier error and must be reactivated.
    #[error("execution poisoned by an earlier error, reactivate it: {0}")]
    Poisoned(String),
    /// The storage backend failed.
    #[error("backend error: {message}")]
    Backend {
        /// The backend's message.
        message: String,
        /// Whether retrying the same call may succeed.
        retryable: bool,
    },
    /// The stream's open message failed [`crate::RetryPolicy::max_attempts`] times: the
    /// actor cannot activate until an operator resumes or abandons the message
    /// ([`crate::resolve_failed`]).
    #[error("stream {stream} is paused: message {seq} failed {attempts} times, last error: {last_error}")]
    Paused {
        /// The stream.
        stream: String,
        /// The failed message's seq.
        seq: u64,
        /// Its failed attempts.
        attempts: u32,
        /// The last attempt's error.
        last_error: String,
    },
    /// The stream's open message failed and its next attempt is not due yet (backoff).
    #[error("stream {stream}: message {seq} failed {attempts} times and is retried in {retry_in_ms} ms, last error: {last_error}")]
    RetryLater {
        /// The stream.
        stream: String,
        /// The failed message's seq.
        seq: u64,
        /// Its failed attempts so far.
        attempts: u32,
        /// How long until the next attempt may run.
        retry_in_ms: u64,
        /// The last attempt's error.
        last_error: String,
    },
    /// A resume or abandon found no failed message on the stream.
    #[error("stream {stream} has no failed message to resume or abandon")]
    NoFailedMessage {
        /// The stream.
        stream: String,
    },
    /// The backend's background writer has stopped.
    #[error("journal writer is closed")]
    Closed,
}

impl Error {
    /// Whether retrying the same call (unchanged) may succeed.
    ///
    /// `Fenced`, `JournalMismatch`, `Corrupt` and argument errors never succeed on retry; a
    /// transient backend error (connection loss, lock timeout) may.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Backend { retryable, .. } => *retryable,
            Error::RetryLater { .. } => true,
            Error::Paused { .. } | Error::NoFailedMessage { .. } => false,
            Error::Fenced { .. }
            | Error::JournalMismatch { .. }
            | Error::SequenceConflict { .. }
            | Error::Corrupt { .. }
            | Error::HistoryTruncated { .. }
            | Error::InvalidState(_)
            | Error::InvalidArgument(_)
            | Error::Codec(_)
            | Error::Poisoned(_)
            | Error::Closed => false,
        }
    }

    /// Whether this error means the activation lost ownership of its stream.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::Fenced { .. })
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Codec(e.to_string())
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        let retryable = match &e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => matches!(
                db.code().as_deref(),
                // postgres: serialization failure, deadlock, connection failures, admin shutdown
                Some("40001" | "40P01" | "08000" | "08003" | "08006" | "57P01")
                // sqlite: SQLITE_BUSY, SQLITE_LOCKED (and extended codes)
                | Some("5" | "6" | "261" | "262" | "517")
            ),
            _ => false,
        };
        Error::Backend {
            message: e.to_string().to_lowercase(),
            retryable,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
