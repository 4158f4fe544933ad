//! Invocation from anywhere: one invocation of a virtual actor, sent to the node that hosts
//! it and answered as that node answers.
//!
//! Every clustered node runs a gateway actor registered as [`GATEWAY`]. A node that gets a
//! call for an actor active elsewhere ([`crate::actors::Actors::invoke`] finds it through
//! the cluster-wide registry, where each virtual activation is registered under its actor
//! name) asks the gateway of the hosting node with one envelope ([`request`]): the
//! invocation's message type, payload and content type, plus headers naming the tenant,
//! namespace, type and key, the idempotency key and the reply mode. The gateway runs the
//! invocation there through its own [`crate::actors::Actors::invoke_here`] (activation,
//! limits, journaling, idempotency as for a local call) without blocking its mailbox, and
//! answers with the actor's reply, an `accepted` envelope for a tell, or an error envelope
//! ([`ERROR_MSG_TYPE`]) that the caller turns back into the same error kind, so HTTP status
//! and gRPC code are those the hosting node would give.
//!
//! The tenant travels in a header and the hosting node trusts it: only members of the same
//! cluster reach the gateway (the transport's handshake checks the cluster name, and mTLS,
//! on by default beyond loopback, checks the certificate).

use std::time::Duration;

use plexspaces_core::{Actor, ActorId, BoxError, Context, Envelope, Node};

use crate::actors::{Actors, Invocation, Reply};
use crate::error::{Error, Result};
use crate::registry::ActivationKey;

/// The registered name (and actor name) of every node's gateway actor.
pub const GATEWAY: &str = "plexspaces-gateway";
/// The message type of a reply that carries an error (`{"kind": ..., "message": ...}`).
pub const ERROR_MSG_TYPE: &str = "plexspaces.error";
/// The message type of the answer to a forwarded tell, once it is queued.
pub const ACCEPTED_MSG_TYPE: &str = "plexspaces.accepted";

const H_TENANT: &str = "x-plexspaces-fwd-tenant";
const H_NAMESPACE: &str = "x-plexspaces-fwd-namespace";
const H_TYPE: &str = "x-plexspaces-fwd-type";
const H_KEY: &str = "x-plexspaces-fwd-key";
/// `tell`, or the ask timeout in milliseconds.
const H_REPLY: &str = "x-plexspaces-fwd-reply";

/// The envelope that carries `invocation` for `key` to a gateway.
pub fn request(key: &ActivationKey, invocation: &Invocation) -> Envelope {
    let content_type = if invocation.content_type.is_empty() {
        "application/json"
    } else {
        invocation.content_type.as_str()
    };
    let reply = match invocation.reply {
        Reply::Tell => "tell".to_owned(),
        Reply::Ask(timeout) => timeout.as_millis().to_string(),
    };
    let mut env = Envelope::new(
        invocation.msg_type.as_str(),
        invocation.payload.clone(),
        content_type,
    )
    .with_header(H_TENANT, key.tenant.as_str())
    .with_header(H_NAMESPACE, key.namespace.as_str())
    .with_header(H_TYPE, key.actor_type.as_str())
    .with_header(H_KEY, key.key.as_str())
    .with_header(H_REPLY, reply);
    if let Some(k) = &invocation.idempotency_key {
        env = env.with_header(plexspaces_journal::IDEMPOTENCY_KEY_HEADER, k.as_str());
    }
    if let Some(caller) = &invocation.caller {
        caller.write_headers(&mut env.headers);
    }
    env
}

/// Reads a gateway request back into its address and invocation.
pub fn parse_request(env: &Envelope) -> Result<((String, String, String, String), Invocation)> {
    let header = |name: &str| {
        env.headers
            .get(name)
            .cloned()
            .ok_or_else(|| Error::BadRequest(format!("forwarded call without {name}")))
    };
    let address = (
        header(H_TENANT)?,
        header(H_NAMESPACE)?,
        header(H_TYPE)?,
        header(H_KEY)?,
    );
    let reply = match header(H_REPLY)?.as_str() {
        "tell" => Reply::Tell,
        ms => Reply::Ask(Duration::from_millis(ms.parse().map_err(|_| {
            Error::BadRequest(format!("forwarded call with reply mode {ms:?}"))
        })?)),
    };
    let invocation = Invocation {
        msg_type: env.msg_type.clone(),
        payload: env.payload.clone(),
        content_type: env.content_type.clone(),
        idempotency_key: env
            .headers
            .get(plexspaces_journal::IDEMPOTENCY_KEY_HEADER)
            .cloned(),
        reply,
        caller: crate::service::Caller::from_headers(&env.headers),
    };
    Ok((address, invocation))
}

/// The gateway's answer to `outcome`.
pub fn answer(outcome: Result<Option<Envelope>>) -> Envelope {
    match outcome {
        Ok(Some(reply)) => reply,
        Ok(None) => Envelope::new(ACCEPTED_MSG_TYPE, Vec::new(), "application/json"),
        Err(e) => {
            let body = serde_json::json!({ "kind": e.kind(), "message": e.public_message() });
            Envelope::new(
                ERROR_MSG_TYPE,
                body.to_string().into_bytes(),
                "application/json",
            )
        }
    }
}

/// The caller's side of [`answer`]: the reply, `None` for an accepted tell, or the
/// hosting node's error with its kind.
pub fn outcome(reply: Envelope) -> Result<Option<Envelope>> {
    match reply.msg_type.as_str() {
        ACCEPTED_MSG_TYPE => Ok(None),
        ERROR_MSG_TYPE => {
            #[derive(serde::Deserialize)]
            struct Remote {
                kind: String,
                message: String,
            }
            let remote: Remote = serde_json::from_slice(&reply.payload)
                .map_err(|e| Error::Io(format!("unreadable error from the hosting node: {e}")))?;
            Err(Error::Forwarded {
                kind: remote.kind,
                message: remote.message,
            })
        }
        _ => Ok(Some(reply)),
    }
}

/// The gateway actor's id on `node`.
pub fn gateway_id(node: &str) -> Result<ActorId> {
    Ok(ActorId::new(GATEWAY, node)?)
}

/// Starts this node's gateway over `actors` and registers it as [`GATEWAY`].
pub fn start_gateway(node: &Node, actors: Actors) -> Result<()> {
    let gateway = node.spawn_named(GATEWAY, Gateway { actors })?;
    node.register(GATEWAY, &gateway.pid())?;
    Ok(())
}

/// Runs forwarded invocations on this node. Each runs in its own task, so a slow actor
/// does not hold up calls for others.
struct Gateway {
    actors: Actors,
}

impl Gateway {
    async fn run(actors: Actors, env: Envelope) -> Result<Option<Envelope>> {
        let ((tenant, namespace, actor_type, key), invocation) = parse_request(&env)?;
        let key = actors
            .registry()
            .resolve(&tenant, &namespace, &actor_type, &key)?;
        actors.invoke_here(&key, invocation).await
    }
}

impl Actor for Gateway {
    type Msg = Envelope;
    type Reply = Envelope;

    async fn handle_call(
        &mut self,
        msg: Envelope,
        ctx: &mut Context<Self>,
    ) -> std::result::Result<Option<Envelope>, BoxError> {
        let Some(reply) = ctx.reply_handle() else {
            // A tell to the gateway: nobody waits for an answer.
            let actors = self.actors.clone();
            tokio::spawn(async move { drop(Gateway::run(actors, msg).await) });
            return Ok(None);
        };
        let actors = self.actors.clone();
        tokio::spawn(async move {
            reply.send(answer(Gateway::run(actors, msg).await));
        });
        Ok(None)
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<Envelope> {
        Ok(env.clone())
    }

    fn encode(msg: &Envelope) -> plexspaces_core::Result<Envelope> {
        Ok(msg.clone())
    }

    fn encode_reply(_request_type: &str, reply: &Envelope) -> plexspaces_core::Result<Envelope> {
        Ok(reply.clone())
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<Envelope> {
        Ok(env.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_round_trip() {
        let key = ActivationKey::new("t1", "ns", "counter", "k/1");
        let invocation = Invocation {
            msg_type: "increment".into(),
            payload: bytes::Bytes::from_static(b"{\"amount\":2}"),
            content_type: String::new(),
            idempotency_key: Some("idem-1".into()),
            reply: Reply::Ask(Duration::from_millis(1500)),
            caller: Some(crate::service::Caller {
                tenant: "t1".into(),
                operator: false,
                subject: Some("alice".into()),
                roles: vec!["admin".into()],
            }),
        };
        let env = request(&key, &invocation);
        let ((tenant, ns, ty, k), back) = parse_request(&env).unwrap();
        assert_eq!(
            (tenant.as_str(), ns.as_str(), ty.as_str(), k.as_str()),
            ("t1", "ns", "counter", "k/1")
        );
        assert_eq!(back.msg_type, "increment");
        assert_eq!(back.content_type, "application/json");
        assert_eq!(back.idempotency_key.as_deref(), Some("idem-1"));
        assert_eq!(back.reply, Reply::Ask(Duration::from_millis(1500)));
        assert_eq!(back.caller, invocation.caller);

        let err = outcome(answer(Err(Error::Overloaded("full".into())))).unwrap_err();
        assert_eq!(err.kind(), "overloaded");
        assert_eq!(err.http_status().as_u16(), 429);
        assert!(outcome(answer(Ok(None))).unwrap().is_none());
        let reply = Envelope::new("get", b"{}".to_vec(), "application/json");
        assert_eq!(
            outcome(answer(Ok(Some(reply.clone())))).unwrap(),
            Some(reply)
        );
    }

    #[test]
    fn malformed_gateway_requests_are_bad_requests() {
        let env = Envelope::new("get", Vec::new(), "application/json");
        assert_eq!(parse_request(&env).unwrap_err().kind(), "bad_request");
        let key = ActivationKey::new("t", "ns", "counter", "k");
        let mut env = request(
            &key,
            &Invocation {
                msg_type: "get".into(),
                payload: bytes::Bytes::new(),
                content_type: String::new(),
                idempotency_key: None,
                reply: Reply::Tell,
                caller: None,
            },
        );
        env.headers.insert(H_REPLY.into(), "soon".into());
        assert_eq!(parse_request(&env).unwrap_err().kind(), "bad_request");
    }
}
