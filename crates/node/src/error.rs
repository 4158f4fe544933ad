//! Errors of the node, and the one mapping from an error kind to an HTTP status and a gRPC
//! code ([`status_of`]).

use axum::http::StatusCode;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the node reports. [`Error::kind`] is a stable name, [`status_of`] maps it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An error from the actor runtime.
    #[error(transparent)]
    Core(#[from] plexspaces_core::Error),
    /// An error from the tuple space.
    #[error(transparent)]
    TupleSpace(#[from] plexspaces_tuplespace::Error),
    /// An error from the workflow engine.
    #[error(transparent)]
    Workflow(#[from] plexspaces_workflow::WorkflowError),
    /// An error from the key-value, lock or blob store.
    #[error(transparent)]
    Storage(#[from] plexspaces_storage::Error),
    /// An error from the channels (queues and topics).
    #[error(transparent)]
    Channels(#[from] plexspaces_channels::Error),
    /// A conditional write found another version than the one it expected.
    #[error("conflict: {0}")]
    Conflict(String),
    /// No actor type of this name is registered.
    #[error("unknown actor type {0:?}")]
    UnknownActorType(String),
    /// Nothing is active at this address, or no such route.
    #[error("not found: {0}")]
    NotFound(String),
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No credentials, or credentials that do not verify (forged, expired).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Verified credentials that do not allow this (another tenant's path).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The request URI is longer than the limit (bytes).
    #[error("request URI longer than {0} bytes")]
    UriTooLong(usize),
    /// The request body is larger than the configured limit.
    #[error("request body larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The node refuses new work for now (activation limit reached).
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The configuration is invalid.
    #[error("config: {0}")]
    Config(String),
    /// A listener or file could not be used.
    #[error("io: {0}")]
    Io(String),
    /// The virtual actor is owned by another cluster node (per the activation directory).
    #[error("{key} is active on node {owner}")]
    Moved {
        /// The activation key.
        key: String,
        /// The owning node.
        owner: String,
    },
    /// The activation directory could not be read or written.
    #[error("activation directory: {0}")]
    Directory(String),
    /// An error of a durable actor's journal: its stream is paused or backing off after
    /// handler failures, there is no failed message to resume, or the journal failed.
    #[error(transparent)]
    Journal(#[from] plexspaces_journal::Error),
    /// The error another cluster node answered a forwarded invocation with, with its kind.
    #[error("{message}")]
    Forwarded {
        /// The kind the hosting node gave ([`Error::kind`]).
        kind: String,
        /// Its public message.
        message: String,
    },
}

impl Error {
    /// A stable name for the error kind; the runtime's kinds pass through unchanged.
    pub fn kind(&self) -> &str {
        match self {
            Error::Core(e) => e.kind(),
            Error::TupleSpace(e) => tuplespace_kind(e),
            Error::Workflow(e) => workflow_kind(e),
            Error::Storage(e) => storage_kind(e),
            Error::Channels(e) => channels_kind(e),
            Error::Conflict(_) => "conflict",
            Error::UnknownActorType(_) => "unknown_actor_type",
            Error::NotFound(_) => "not_found",
            Error::BadRequest(_) => "bad_request",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::UriTooLong(_) => "uri_too_long",
            Error::Overloaded(_) => "overloaded",
            Error::Config(_) => "config",
            Error::Io(_) => "io",
            Error::Moved { .. } => "moved",
            Error::Directory(_) => "storage",
            Error::Journal(e) => journal_kind(e),
            Error::Forwarded { kind, .. } => kind,
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Core(e) => e.is_retryable() || matches!(e, plexspaces_core::Error::NoProc(_)),
            Error::TupleSpace(e) => e.is_retryable(),
            Error::Workflow(e) => matches!(
                e,
                plexspaces_workflow::WorkflowError::Timeout(_)
                    | plexspaces_workflow::WorkflowError::Storage(_)
            ),
            Error::Storage(e) => e.is_retryable(),
            Error::Channels(e) => e.is_retryable(),
            Error::Overloaded(_) | Error::Moved { .. } | Error::Directory(_) => true,
            Error::Journal(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The HTTP status for this error (see [`status_of`]).
    pub fn http_status(&self) -> StatusCode {
        status_of(self.kind()).0
    }

    /// The gRPC code for this error (see [`status_of`]).
    pub fn grpc_code(&self) -> tonic::Code {
        status_of(self.kind()).1
    }

    /// The message shown to clients, with secrets masked.
    pub fn public_message(&self) -> String {
        crate::secret::mask_secrets(&self.to_string())
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        tonic::Status::new(e.grpc_code(), e.public_message())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

/// The kind of a tuple space error.
fn tuplespace_kind(e: &plexspaces_tuplespace::Error) -> &'static str {
    use plexspaces_tuplespace::Error as Ts;
    match e {
        Ts::Arity { .. } => "arity",
        Ts::TooLarge { .. } => "too_large",
        Ts::TooDeep { .. } => "too_deep",
        Ts::MalformedTemplate(_) => "malformed_template",
        Ts::InvalidSpaceId(_) => "invalid_id",
        Ts::InvalidArgument(_) => "invalid_argument",
        Ts::Timeout(_) => "timeout",
        Ts::NotFound(_) => "not_found",
        Ts::LeaseNotFound(_) => "not_found",
        Ts::TransactionClosed => "transaction_closed",
        Ts::Unavailable { .. } => "unavailable",
        Ts::Closed => "shutting_down",
        Ts::Backend { .. } => "backend",
        Ts::Corrupt(_) => "corrupt",
        _ => "tuplespace",
    }
}

/// The kind of a journal error a durable actor's call or its operator can get.
fn journal_kind(e: &plexspaces_journal::Error) -> &'static str {
    use plexspaces_journal::Error as J;
    match e {
        J::Paused { .. } => "actor_paused",
        J::RetryLater { .. } => "retry_later",
        J::NoFailedMessage { .. } => "no_failed_message",
        J::Fenced { .. } => "fenced",
        J::InvalidArgument(_) => "invalid_argument",
        _ => "storage",
    }
}

/// The kind of a key-value, lock or blob error.
fn storage_kind(e: &plexspaces_storage::Error) -> &'static str {
    use plexspaces_storage::Error as St;
    match e {
        St::Invalid { .. } => "invalid_argument",
        St::Fenced { .. } => "fenced",
        St::LeaseLost { .. } => "lease_lost",
        St::NotAnInteger { .. } => "not_an_integer",
        St::NotFound(_) => "not_found",
        St::Contended { .. } => "contended",
        St::Unsupported(_) => "unsupported",
        St::Unavailable { .. } => "unavailable",
        _ => "backend",
    }
}

/// The kind of a channel error.
fn channels_kind(e: &plexspaces_channels::Error) -> &'static str {
    use plexspaces_channels::Error as Ch;
    match e {
        Ch::Invalid { .. } => "invalid_argument",
        Ch::UnknownReceipt(_) => "unknown_receipt",
        Ch::Unsupported(_) => "unsupported",
        Ch::Unavailable { .. } => "unavailable",
        Ch::Closed => "shutting_down",
        Ch::NotConfigured => "config",
        _ => "backend",
    }
}

/// The kind of a workflow error a client call can return. Failures of the workflow itself
/// (activity, child, application, non-determinism, history limit) are not errors of a client
/// call: a result request reports them as the workflow's outcome. Should one surface
/// anyway, it is `workflow_failed`, never the application's own kind.
fn workflow_kind(e: &plexspaces_workflow::WorkflowError) -> &'static str {
    use plexspaces_workflow::WorkflowError as Wf;
    match e {
        Wf::NotFound(_) => "not_found",
        Wf::UnknownType { .. } => "unknown_workflow_type",
        Wf::UpdateRejected { .. } => "update_rejected",
        Wf::Closed { .. } => "closed",
        Wf::InvalidArgument(_) => "invalid_argument",
        Wf::Codec(_) => "codec",
        Wf::Timeout(_) => "timeout",
        Wf::Unsupported(_) => "unsupported",
        Wf::Fenced(_) => "fenced",
        Wf::Storage(_) => "storage",
        _ => "workflow_failed",
    }
}

/// THE mapping from an error kind (ours or the runtime's) to an HTTP status and a gRPC code.
/// Every front door (HTTP, gRPC, CLI exit codes) goes through this table.
pub fn status_of(kind: &str) -> (StatusCode, tonic::Code) {
    use tonic::Code;
    match kind {
        // bad input
        "bad_request" | "decode" | "unknown_msg_type" | "invalid_argument" | "invalid_id" => {
            (StatusCode::BAD_REQUEST, Code::InvalidArgument)
        }
        // bad tuples and templates (tuple space)
        "arity" | "too_large" | "too_deep" | "malformed_template" => {
            (StatusCode::BAD_REQUEST, Code::InvalidArgument)
        }
        "transaction_closed" => (StatusCode::CONFLICT, Code::FailedPrecondition),
        // workflows
        "codec" => (StatusCode::BAD_REQUEST, Code::InvalidArgument),
        "update_rejected" => (StatusCode::UNPROCESSABLE_ENTITY, Code::InvalidArgument),
        "closed" => (StatusCode::CONFLICT, Code::FailedPrecondition),
        "fenced" => (StatusCode::CONFLICT, Code::Aborted),
        // key-value and channels
        "conflict" | "contended" => (StatusCode::CONFLICT, Code::Aborted),
        "lease_lost" | "not_an_integer" => (StatusCode::CONFLICT, Code::FailedPrecondition),
        "unknown_receipt" => (StatusCode::NOT_FOUND, Code::NotFound),
        // auth
        "unauthenticated" => (StatusCode::UNAUTHORIZED, Code::Unauthenticated),
        "forbidden" | "rejected" => (StatusCode::FORBIDDEN, Code::PermissionDenied),
        // addressing
        "unknown_actor_type" | "unknown_workflow_type" | "not_found" => {
            (StatusCode::NOT_FOUND, Code::NotFound)
        }
        "name_taken" | "already_started" | "already_present" => {
            (StatusCode::CONFLICT, Code::AlreadyExists)
        }
        "calling_self" => (StatusCode::CONFLICT, Code::FailedPrecondition),
        // durable actors after handler failures
        "actor_paused" | "no_failed_message" => (StatusCode::CONFLICT, Code::FailedPrecondition),
        "retry_later" => (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable),
        // HTTP requests the router refuses
        "method_not_allowed" => (StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented),
        "unsupported_media_type" => (StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument),
        "uri_too_long" => (StatusCode::URI_TOO_LONG, Code::InvalidArgument),
        // size and load
        "payload_too_large" => (StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted),
        "mailbox_full" | "overloaded" => (StatusCode::TOO_MANY_REQUESTS, Code::ResourceExhausted),
        // time
        "timeout" => (StatusCode::GATEWAY_TIMEOUT, Code::DeadlineExceeded),
        // availability
        "shutting_down" | "noproc" | "noconnection" | "unavailable" | "storage" | "moved" => {
            (StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable)
        }
        "transport" => (StatusCode::BAD_GATEWAY, Code::Unavailable),
        "unsupported" => (StatusCode::NOT_IMPLEMENTED, Code::Unimplemented),
        // the actor or the node failed
        _ => (StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plexspaces_core::Error as Core;
    use std::time::Duration;

    #[test]
    fn every_documented_status_has_a_kind() {
        let cases: Vec<(Error, u16, tonic::Code)> = vec![
            (
                Core::Decode {
                    msg_type: "x".into(),
                    detail: "y".into(),
                }
                .into(),
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                Core::UnknownMsgType {
                    msg_type: "x".into(),
                    actor_type: "y".into(),
                }
                .into(),
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                Error::Unauthenticated("x".into()),
                401,
                tonic::Code::Unauthenticated,
            ),
            (
                Error::Forbidden("x".into()),
                403,
                tonic::Code::PermissionDenied,
            ),
            (
                Error::UnknownActorType("x".into()),
                404,
                tonic::Code::NotFound,
            ),
            (
                Error::PayloadTooLarge(1),
                413,
                tonic::Code::ResourceExhausted,
            ),
            (
                Core::MailboxFull("a".into()).into(),
                429,
                tonic::Code::ResourceExhausted,
            ),
            (Core::ShuttingDown.into(), 503, tonic::Code::Unavailable),
            (
                Core::NoConnection("other-node".into()).into(),
                503,
                tonic::Code::Unavailable,
            ),
            (
                Core::Timeout(Duration::from_millis(1)).into(),
                504,
                tonic::Code::DeadlineExceeded,
            ),
            (Core::NoReply.into(), 500, tonic::Code::Internal),
        ];
        for (err, http, grpc) in cases {
            assert_eq!(err.http_status().as_u16(), http, "{err}");
            assert_eq!(err.grpc_code(), grpc, "{err}");
        }
    }

    #[test]
    fn tuplespace_errors_map_by_their_kind() {
        use plexspaces_tuplespace::Error as Ts;
        let cases: Vec<(Ts, u16, tonic::Code)> = vec![
            (
                Ts::Arity { arity: 0, max: 64 },
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                Ts::TooLarge { size: 2, max: 1 },
                400,
                tonic::Code::InvalidArgument,
            ),
            (Ts::TooDeep { max: 8 }, 400, tonic::Code::InvalidArgument),
            (
                Ts::MalformedTemplate("nan".into()),
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                Ts::InvalidSpaceId("empty".into()),
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                Ts::Timeout(Duration::from_millis(1)),
                504,
                tonic::Code::DeadlineExceeded,
            ),
            (
                Ts::Unavailable {
                    backend: "redis",
                    message: "down".into(),
                },
                503,
                tonic::Code::Unavailable,
            ),
            (Ts::Corrupt("x".into()), 500, tonic::Code::Internal),
        ];
        for (e, http, grpc) in cases {
            let err = Error::from(e);
            assert_eq!(err.http_status().as_u16(), http, "{err}");
            assert_eq!(err.grpc_code(), grpc, "{err}");
        }
        assert!(Error::from(Ts::Timeout(Duration::from_millis(1))).is_retryable());
    }

    #[test]
    fn workflow_errors_map_by_their_kind() {
        use plexspaces_workflow::{Failure, WorkflowError as Wf};
        let cases: Vec<(Wf, &str, u16, tonic::Code)> = vec![
            (
                Wf::NotFound("w".into()),
                "not_found",
                404,
                tonic::Code::NotFound,
            ),
            (
                Wf::UnknownType {
                    workflow_type: "x".into(),
                    version: 0,
                },
                "unknown_workflow_type",
                404,
                tonic::Code::NotFound,
            ),
            (
                Wf::InvalidArgument("x".into()),
                "invalid_argument",
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                Wf::Codec("x".into()),
                "codec",
                400,
                tonic::Code::InvalidArgument,
            ),
            (
                Wf::UpdateRejected {
                    name: "u".into(),
                    reason: "no".into(),
                },
                "update_rejected",
                422,
                tonic::Code::InvalidArgument,
            ),
            (
                Wf::Closed {
                    id: "w".into(),
                    status: "completed".into(),
                },
                "closed",
                409,
                tonic::Code::FailedPrecondition,
            ),
            (
                Wf::Timeout("x".into()),
                "timeout",
                504,
                tonic::Code::DeadlineExceeded,
            ),
            (
                Wf::Unsupported("x".into()),
                "unsupported",
                501,
                tonic::Code::Unimplemented,
            ),
            (Wf::Fenced("x".into()), "fenced", 409, tonic::Code::Aborted),
            (
                Wf::Storage("x".into()),
                "storage",
                503,
                tonic::Code::Unavailable,
            ),
            // The application's own kind never leaks into the mapping.
            (
                Wf::Failed {
                    id: "w".into(),
                    failure: Failure {
                        kind: "not_found".into(),
                        message: "m".into(),
                    },
                },
                "workflow_failed",
                500,
                tonic::Code::Internal,
            ),
        ];
        for (e, kind, http, grpc) in cases {
            let err = Error::from(e);
            assert_eq!(err.kind(), kind, "{err}");
            assert_eq!(err.http_status().as_u16(), http, "{err}");
            assert_eq!(err.grpc_code(), grpc, "{err}");
        }
        assert!(Error::from(Wf::Storage("x".into())).is_retryable());
        assert!(!Error::from(Wf::NotFound("x".into())).is_retryable());
    }

    #[test]
    fn remote_errors_map_by_their_kind() {
        let e: Error = Core::from_remote("mailbox_full", "m").into();
        assert_eq!(e.http_status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(e.is_retryable());
    }
}
