//! The dynamic form of a message, used only at boundaries (another node, HTTP, gRPC, WASM).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// The content type of JSON payloads.
pub const JSON: &str = "application/json";

/// `{msg_type, payload bytes, content type, headers, correlation id, sender}`.
///
/// Local Rust messages never take this form; an actor's codec (`Actor::decode` and friends)
/// turns an envelope into the same typed message a local sender would have sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// Names the handler, e.g. `"increment"`.
    pub msg_type: String,
    /// The encoded message.
    pub payload: Bytes,
    /// MIME type of `payload`.
    pub content_type: String,
    /// Free-form metadata (trace context, idempotency key, ...).
    pub headers: BTreeMap<String, String>,
    /// Matches a reply to its request; empty for fire-and-forget.
    pub correlation_id: String,
    /// `name@node` of the sending actor, empty if the sender is not an actor.
    pub sender: String,
}

impl Envelope {
    /// An envelope with a raw payload.
    pub fn new(msg_type: impl Into<String>, payload: impl Into<Bytes>, content_type: &str) -> Self {
        Envelope {
            msg_type: msg_type.into(),
            payload: payload.into(),
            content_type: content_type.to_owned(),
            ..Envelope::default()
        }
    }

    /// An envelope carrying `value` as JSON.
    pub fn json<T: Serialize + ?Sized>(msg_type: impl Into<String>, value: &T) -> Result<Self> {
        let payload = serde_json::to_vec(value).map_err(|e| Error::Encode(e.to_string()))?;
        Ok(Envelope::new(msg_type, payload, JSON))
    }

    /// Decodes the JSON payload. An empty payload decodes as JSON `null` (so unit-like types
    /// and `Option`s accept a bodyless request).
    pub fn decode_json<T: DeserializeOwned>(&self) -> Result<T> {
        let bytes: &[u8] = if self.payload.is_empty() {
            b"null"
        } else {
            &self.payload
        };
        serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            msg_type: self.msg_type.clone(),
            detail: e.to_string(),
        })
    }

    /// Sets a header.
    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Sets the correlation id.
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = id.into();
        self
    }

    /// The envelope as `plexspaces.v1.Envelope` protobuf bytes (for journals and wires).
    pub fn to_bytes(&self) -> Vec<u8> {
        use prost::Message as _;
        self.clone().into_proto().encode_to_vec()
    }

    /// Reads protobuf bytes written by [`Envelope::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope> {
        use prost::Message as _;
        plexspaces_proto::v1::Envelope::decode(bytes)
            .map(Envelope::from_proto)
            .map_err(|e| Error::Decode {
                msg_type: "envelope".into(),
                detail: e.to_string(),
            })
    }

    pub(crate) fn into_proto(self) -> plexspaces_proto::v1::Envelope {
        plexspaces_proto::v1::Envelope {
            msg_type: self.msg_type,
            payload: self.payload,
            content_type: self.content_type,
            headers: self.headers.into_iter().collect(),
            correlation_id: self.correlation_id,
            sender: self.sender,
        }
    }

    pub(crate) fn from_proto(env: plexspaces_proto::v1::Envelope) -> Self {
        Envelope {
            msg_type: env.msg_type,
            payload: env.payload,
            content_type: env.content_type,
            headers: env.headers.into_iter().collect(),
            correlation_id: env.correlation_id,
            sender: env.sender,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_garbage_is_a_typed_error() {
        let env = Envelope::json("deposit", &serde_json::json!({"amount": 5}))
            .expect("json")
            .with_header("idempotency-key", "k1")
            .with_correlation_id("c1");
        assert_eq!(Envelope::from_bytes(&env.to_bytes()).expect("decodes"), env);
        assert!(matches!(
            Envelope::from_bytes(&[0xff, 0xff, 0xff]),
            Err(Error::Decode { .. })
        ));
    }
}
