//! Errors and exit reasons.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::id::ActorId;
use crate::pid::Pid;

/// What a handler returns on failure: any error. A handler error stops the actor (let it crash).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the runtime reports. `kind()` is a stable name for each variant, used when an
/// error crosses a node and by the HTTP/gRPC status mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An `ask` got no reply in time. The late reply, if any, is dropped.
    #[error("ask timed out after {0:?}")]
    Timeout(Duration),
    /// The target actor is not alive (never was, or has terminated).
    #[error("no such actor: {0}")]
    NoProc(String),
    /// A bounded mailbox is full (only from non-waiting sends).
    #[error("mailbox of {0} is full")]
    MailboxFull(String),
    /// No handler for this message type.
    #[error("unknown message type {msg_type:?} for actor type {actor_type}")]
    UnknownMsgType {
        /// The type that was asked for.
        msg_type: String,
        /// The actor type that does not know it.
        actor_type: String,
    },
    /// A payload could not be decoded into the handler's message type.
    #[error("cannot decode {msg_type:?} payload: {detail}")]
    Decode {
        /// The message type being decoded.
        msg_type: String,
        /// What the decoder said.
        detail: String,
    },
    /// A message or reply could not be encoded for a boundary.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The handler finished without replying and dropped its reply handle.
    #[error("the actor dropped the request without replying")]
    NoReply,
    /// The handler failed while serving this request; the actor stopped with this reason.
    #[error("actor failed: {0}")]
    ActorFailed(ExitReason),
    /// The path exists in the API but is not implemented for this actor or backend.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A remote node could not be reached.
    #[error("transport: {0}")]
    Transport(String),
    /// The connection to the actor's node is lost or the node was declared dead. Asks to a
    /// lost node fail with this at once instead of waiting for their timeout.
    #[error("no connection to node {0}")]
    NoConnection(String),
    /// A registered name or actor id is in use.
    #[error("name already in use: {0}")]
    NameTaken(String),
    /// A start found its name held by a live actor (Erlang's `{already_started, Pid}`).
    #[error("{name} is already started as {pid}")]
    AlreadyStarted {
        /// The name (an actor id, or a child id within a supervisor).
        name: String,
        /// Who holds it.
        pid: Pid,
    },
    /// A supervisor already has a stopped child with this id (Erlang's `already_present`):
    /// restart it with `restart_child` or delete it first.
    #[error("child {0} is already present")]
    AlreadyPresent(String),
    /// A child's start function chose not to run it (OTP's `ignore`, which
    /// `supervisor:start_child` reports as `{ok, undefined}`): the supervisor keeps the
    /// spec without a pid (a `simple_one_for_one` child is dropped).
    #[error("child {0} ignored its start")]
    Ignored(String),
    /// An actor asked itself, which can never be answered (Erlang's `calling_self`).
    #[error("{0} called itself")]
    CallingSelf(String),
    /// Text that should be `name@node` is not.
    #[error("invalid actor id {0:?}: expected name@node")]
    InvalidId(String),
    /// The node is shutting down and takes no new work.
    #[error("node is shutting down")]
    ShuttingDown,
    /// An actor's `on_start` failed, so it never became active.
    #[error("start failed: {0}")]
    StartFailed(String),
    /// An argument was wrong (bad child spec, wrong argument type, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A facet refused the message (for example an authorization facet).
    #[error("rejected by facet {facet}: {reason}")]
    Rejected {
        /// The facet that said no.
        facet: String,
        /// Why.
        reason: String,
    },
    /// A facet could not do its part (a journal write failed, a recovery failed, ...).
    #[error("facet {facet}: {message}")]
    Facet {
        /// The facet's name.
        facet: String,
        /// What went wrong.
        message: String,
        /// Whether trying again later may succeed.
        retryable: bool,
    },
    /// An error that came back from another node, by kind.
    #[error("remote {kind}: {message}")]
    Remote {
        /// The remote error's `kind()`.
        kind: String,
        /// The remote error's message.
        message: String,
    },
}

impl Error {
    /// A stable name for the error kind (crosses nodes, picks HTTP/gRPC status codes).
    pub fn kind(&self) -> &str {
        match self {
            Error::Timeout(_) => "timeout",
            Error::NoProc(_) => "noproc",
            Error::MailboxFull(_) => "mailbox_full",
            Error::UnknownMsgType { .. } => "unknown_msg_type",
            Error::Decode { .. } => "decode",
            Error::Encode(_) => "encode",
            Error::NoReply => "no_reply",
            Error::ActorFailed(_) => "actor_failed",
            Error::Unsupported(_) => "unsupported",
            Error::Transport(_) => "transport",
            Error::NoConnection(_) => "noconnection",
            Error::NameTaken(_) => "name_taken",
            Error::AlreadyStarted { .. } => "already_started",
            Error::AlreadyPresent(_) => "already_present",
            Error::CallingSelf(_) => "calling_self",
            Error::Ignored(_) => "ignored",
            Error::InvalidId(_) => "invalid_id",
            Error::ShuttingDown => "shutting_down",
            Error::StartFailed(_) => "start_failed",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Rejected { .. } => "rejected",
            Error::Facet { .. } => "facet",
            Error::Remote { kind, .. } => kind,
        }
    }

    /// Whether the same request may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Timeout(_)
            | Error::MailboxFull(_)
            | Error::Transport(_)
            | Error::NoConnection(_) => true,
            Error::Facet { retryable, .. } => *retryable,
            Error::Remote { kind, .. } => {
                matches!(
                    kind.as_str(),
                    "timeout" | "mailbox_full" | "transport" | "noconnection"
                )
            }
            _ => false,
        }
    }

    /// Rebuilds an error that crossed a node from its kind and message.
    pub fn from_remote(kind: &str, message: &str) -> Error {
        match kind {
            "noproc" => Error::NoProc(message.to_owned()),
            "no_reply" => Error::NoReply,
            "shutting_down" => Error::ShuttingDown,
            "noconnection" => Error::NoConnection(message.to_owned()),
            _ => Error::Remote {
                kind: kind.to_owned(),
                message: message.to_owned(),
            },
        }
    }
}

/// Data carried by an exit reason (the `Term` of Erlang's `{shutdown, Term}`), as JSON so
/// that it crosses nodes unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonData(pub Arc<serde_json::Value>);

impl ReasonData {
    /// Wraps `value`.
    pub fn new(value: serde_json::Value) -> Self {
        ReasonData(Arc::new(value))
    }

    /// The value.
    pub fn value(&self) -> &serde_json::Value {
        &self.0
    }
}

impl std::hash::Hash for ReasonData {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // serde_json's `Value` is not `Hash`; its canonical text is.
        self.0.to_string().hash(state);
    }
}

impl fmt::Display for ReasonData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why an actor stopped (Erlang's exit reasons).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ExitReason {
    /// The actor finished its work. Linked actors that do not trap exits ignore it.
    Normal,
    /// Stopped on request (by its supervisor, its node or its owner). A clean exit: transient
    /// children are not restarted after it.
    Shutdown,
    /// Killed without running `on_stop` (a brutal kill or a shutdown timeout).
    Killed,
    /// The actor did not exist when it was linked or monitored.
    NoProc,
    /// The actor failed: a handler returned an error or panicked.
    Error(Arc<str>),
    /// A clean stop with data (Erlang's `{shutdown, Term}`): like `Shutdown`, transient
    /// children are not restarted and linked actors are told the data.
    ShutdownWith(ReasonData),
    /// A failure described by data rather than text (Erlang's `exit(Term)` with any term).
    Other(ReasonData),
    /// The actor's node was declared dead or the connection to it was lost (Erlang's
    /// `noconnection`): what links and monitors on other nodes see. Not clean.
    NoConnection,
}

impl ExitReason {
    /// A failure with this text.
    pub fn error(text: impl Into<Arc<str>>) -> ExitReason {
        ExitReason::Error(text.into())
    }

    /// `normal` or `shutdown`: exits after which a transient child is not restarted.
    pub fn is_clean(&self) -> bool {
        matches!(
            self,
            ExitReason::Normal | ExitReason::Shutdown | ExitReason::ShutdownWith(_)
        )
    }

    /// `{shutdown, data}`.
    pub fn shutdown_with(data: serde_json::Value) -> ExitReason {
        ExitReason::ShutdownWith(ReasonData::new(data))
    }

    /// An abnormal exit described by `data`.
    pub fn other(data: serde_json::Value) -> ExitReason {
        ExitReason::Other(ReasonData::new(data))
    }

    /// The data a `ShutdownWith` or `Other` reason carries.
    pub fn data(&self) -> Option<&serde_json::Value> {
        match self {
            ExitReason::ShutdownWith(data) | ExitReason::Other(data) => Some(data.value()),
            _ => None,
        }
    }

    pub(crate) fn to_proto(&self) -> plexspaces_proto::v1::ExitReason {
        use plexspaces_proto::v1::exit_reason::Kind;
        use plexspaces_proto::v1::Empty;
        let kind = match self {
            ExitReason::Normal => Kind::Normal(Empty {}),
            ExitReason::Shutdown => Kind::Shutdown(Empty {}),
            ExitReason::Killed => Kind::Killed(Empty {}),
            ExitReason::NoProc => Kind::Noproc(Empty {}),
            ExitReason::Error(text) => Kind::Error(text.to_string()),
            ExitReason::ShutdownWith(data) => Kind::ShutdownWith(data.to_string()),
            ExitReason::Other(data) => Kind::Other(data.to_string()),
            ExitReason::NoConnection => Kind::Noconnection(Empty {}),
        };
        plexspaces_proto::v1::ExitReason { kind: Some(kind) }
    }

    pub(crate) fn from_proto(reason: Option<plexspaces_proto::v1::ExitReason>) -> ExitReason {
        use plexspaces_proto::v1::exit_reason::Kind;
        match reason.and_then(|r| r.kind) {
            Some(Kind::Normal(_)) => ExitReason::Normal,
            Some(Kind::Shutdown(_)) => ExitReason::Shutdown,
            Some(Kind::Killed(_)) | Some(Kind::Kill(_)) => ExitReason::Killed,
            Some(Kind::Noproc(_)) => ExitReason::NoProc,
            Some(Kind::Error(text)) => ExitReason::Error(text.into()),
            Some(Kind::ShutdownWith(json)) => match serde_json::from_str(&json) {
                Ok(value) => ExitReason::shutdown_with(value),
                Err(e) => ExitReason::error(format!("undecodable shutdown data: {e}")),
            },
            Some(Kind::Other(json)) => match serde_json::from_str(&json) {
                Ok(value) => ExitReason::other(value),
                Err(e) => ExitReason::error(format!("undecodable exit data: {e}")),
            },
            Some(Kind::Noconnection(_)) => ExitReason::NoConnection,
            None => ExitReason::error("missing exit reason"),
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitReason::Normal => f.write_str("normal"),
            ExitReason::Shutdown => f.write_str("shutdown"),
            ExitReason::Killed => f.write_str("killed"),
            ExitReason::NoProc => f.write_str("noproc"),
            ExitReason::Error(text) => write!(f, "error: {text}"),
            ExitReason::ShutdownWith(data) => write!(f, "shutdown: {data}"),
            ExitReason::Other(data) => write!(f, "exit: {data}"),
            ExitReason::NoConnection => f.write_str("noconnection"),
        }
    }
}

/// A message that could not be sent, handed back to the caller.
#[derive(thiserror::Error)]
pub enum SendError<M> {
    /// The actor is not alive.
    #[error("actor is not alive")]
    Closed(M),
    /// The bounded mailbox is full (`try_tell` only; `tell` waits for space).
    #[error("mailbox is full")]
    Full(M),
    /// The message could not cross to a remote actor.
    #[error("remote send failed: {1}")]
    Remote(M, Error),
    /// Sent from a durable handler whose work so far could not be made durable (see
    /// [`crate::facet::Facet::output_barrier`]): the message would have revealed state that
    /// may be lost, so it was not sent.
    #[error("not sent: the sender's state is not durable: {1}")]
    NotDurable(M, Error),
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("SendError::Closed(..)"),
            SendError::Full(_) => f.write_str("SendError::Full(..)"),
            SendError::Remote(_, e) => write!(f, "SendError::Remote(.., {e:?})"),
            SendError::NotDurable(_, e) => write!(f, "SendError::NotDurable(.., {e:?})"),
        }
    }
}

impl<M> SendError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Closed(m)
            | SendError::Full(m)
            | SendError::Remote(m, _)
            | SendError::NotDurable(m, _) => m,
        }
    }

    /// The failure as a plain [`Error`], dropping the message.
    pub fn to_error(&self, target: &ActorId) -> Error {
        match self {
            SendError::Closed(_) => Error::NoProc(target.to_string()),
            SendError::Full(_) => Error::MailboxFull(target.to_string()),
            SendError::Remote(_, e) | SendError::NotDurable(_, e) => e.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exit reasons cross nodes as protobuf; those with data keep it exactly.
    #[test]
    fn exit_reasons_with_data_survive_the_wire() {
        let reasons = [
            ExitReason::Normal,
            ExitReason::Shutdown,
            ExitReason::Killed,
            ExitReason::NoProc,
            ExitReason::error("boom"),
            ExitReason::shutdown_with(serde_json::json!({"drained": 3, "queue": ["a", "b"]})),
            ExitReason::other(serde_json::json!(["bad_input", 42])),
        ];
        for reason in reasons {
            assert_eq!(ExitReason::from_proto(Some(reason.to_proto())), reason);
        }
        let garbled = plexspaces_proto::v1::ExitReason {
            kind: Some(plexspaces_proto::v1::exit_reason::Kind::ShutdownWith(
                "{not json".into(),
            )),
        };
        assert!(matches!(
            ExitReason::from_proto(Some(garbled)),
            ExitReason::Error(_)
        ));
    }
}
