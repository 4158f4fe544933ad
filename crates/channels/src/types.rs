//! Channel ids, messages, deliveries and receipts.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::{Error, Result};

/// Longest tenant, namespace, channel, group or consumer name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Names travel into Redis keys, NATS subjects and stream names, and SQL: one charset that
/// all of them accept unquoted. Checks one such name (`what` names it in the error).
pub fn check_name(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(Error::invalid(
            what,
            format!("must be 1..={MAX_NAME_LEN} bytes"),
        ));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::invalid(
            what,
            format!("{s:?} may hold only ASCII letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

/// A channel: a name scoped by tenant and namespace. Channels of different scopes never
/// share messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    tenant: String,
    namespace: String,
    name: String,
}

impl ChannelId {
    /// Each part is 1..=64 bytes of `[A-Za-z0-9_-]`.
    pub fn new(tenant: &str, namespace: &str, name: &str) -> Result<Self> {
        check_name("tenant", tenant)?;
        check_name("namespace", namespace)?;
        check_name("channel", name)?;
        Ok(ChannelId {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The channel name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `tenant:namespace:name`, unambiguous because no part holds ':'.
    pub fn key(&self) -> String {
        format!("{}:{}:{}", self.tenant, self.namespace, self.name)
    }
}

impl std::fmt::Display for ChannelId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.name)
    }
}

/// A message to publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// the body
    pub payload: Bytes,
    /// string headers (content type, correlation id...)
    pub headers: BTreeMap<String, String>,
}

impl Outgoing {
    /// A message with no headers.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Outgoing {
            payload: payload.into(),
            headers: BTreeMap::new(),
        }
    }

    /// Add a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.insert(name.to_owned(), value.to_owned());
        self
    }
}

/// A published message as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// the backend's id for it (a sequence number or stream id), unique in the channel
    pub id: String,
    /// the body
    pub payload: Bytes,
    /// string headers
    pub headers: BTreeMap<String, String>,
}

/// Proof of one delivery, to [`crate::Consumer::ack`] or [`crate::Consumer::nack`] it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub(crate) String);

impl Receipt {
    /// A receipt from the text [`Receipt::as_str`] gave (sent to a client and back, over
    /// HTTP or gRPC). A made-up one is refused by ack and nack with
    /// [`Error::UnknownReceipt`].
    pub fn from_token(token: impl Into<String>) -> Self {
        Receipt(token.into())
    }

    /// The receipt as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Receipt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One delivery of a message to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// the message
    pub message: Message,
    /// 1 on the first delivery, +1 on each redelivery
    pub attempt: u32,
    /// what to ack or nack with
    pub receipt: Receipt,
}

/// A message that ran out of deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// the message
    pub message: Message,
    /// how many times it was delivered
    pub deliveries: u32,
}

/// Where a new subscriber group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// every message still stored (a queue's single group)
    Earliest,
    /// only messages published after the group was created (a topic subscriber)
    Latest,
}

/// Redelivery policy, fixed per backend instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryOptions {
    /// A delivery not acked within this long is delivered again (to any consumer of the
    /// group).
    pub visibility_timeout: Duration,
    /// After this many deliveries without an ack the message goes to the group's dead
    /// letters instead.
    pub max_deliveries: u32,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        DeliveryOptions {
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

/// What a backend guarantees; see docs/channels.md for the full table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Semantics {
    /// messages survive a restart of the process (and of the server, per its config)
    pub durable: bool,
    /// ack/nack, visibility-timeout redelivery and dead letters work
    pub acknowledged: bool,
    /// queues (one message to one of several consumers) are offered
    pub queues: bool,
}

impl Semantics {
    /// Durable, acknowledged, with queues: the server-backed backends.
    pub const DURABLE: Semantics = Semantics {
        durable: true,
        acknowledged: true,
        queues: true,
    };
}

/// Headers as stored by the durable backends: a JSON object of strings.
#[allow(dead_code)] // unused when no durable backend feature is on
pub(crate) fn encode_headers(
    backend: &'static str,
    h: &BTreeMap<String, String>,
) -> Result<String> {
    serde_json::to_string(h).map_err(|e| Error::Backend {
        backend,
        message: format!("encode headers: {e}"),
    })
}

/// See [`encode_headers`].
#[allow(dead_code)]
pub(crate) fn decode_headers(backend: &'static str, s: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(s).map_err(|e| Error::Backend {
        backend,
        message: format!("corrupt stored headers: {e}"),
    })
}
