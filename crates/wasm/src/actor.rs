//! [`WasmActor`]: a WASM guest as an ordinary core actor. Its messages are the envelope's
//! `(msg_type, JSON payload)` handed to the guest's `handle` export unchanged, so it is
//! supervised, linked, addressed and faceted like any Rust actor.
//!
//! One instance per activation, created lazily on the first message (or `on_start`), after
//! a durability facet's recovery restored the snapshot and before it replays the journal.
//! A guest error is the caller's error and the actor keeps running; a trap, the time limit
//! or the memory limit drops the instance and stops the actor with an error (its supervisor,
//! or the node's registry for a virtual actor, starts a fresh one).

use std::sync::Arc;

use bytes::Bytes;
use plexspaces_core::{Actor, BoxError, Context, Envelope, Error as CoreError, Result as CoreResult};
use plexspaces_journal::Durability;

use crate::error::Error;
use crate::host::{ActorScope, Code, HostEnv};
use crate::module::{Guest, Module};

/// A message for a guest: its type and its JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmMsg {
    /// The handler name.
    pub msg_type: String,
    /// JSON bytes.
    pub payload: Bytes,
}

impl WasmMsg {
    /// A message.
    pub fn new(msg_type: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        WasmMsg {
            msg_type: msg_type.into(),
            payload: payload.into(),
        }
    }
}

/// An activation of a deployed module.
pub struct WasmActor {
    module: Module,
    scope: ActorScope,
    env: Arc<HostEnv>,
    config: Vec<u8>,
    guest: Option<Guest>,
    /// A snapshot to restore once the instance exists (recovery runs before `on_start`).
    pending_restore: Option<Vec<u8>>,
    /// The guest's state after its last message (durable activations only): what
    /// [`Actor::snapshot`] hands the durability facet.
    last_snapshot: Option<Vec<u8>>,
}

impl std::fmt::Debug for WasmActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmActor")
            .field("scope", &self.scope)
            .field("module", &self.module.digest())
            .field("instantiated", &self.guest.is_some())
            .finish()
    }
}

impl WasmActor {
    /// An activation of `module` at `scope` with the node's services `env`; `config` is
    /// handed to the guest's `init` (JSON; empty is `{}`).
    pub fn new(module: Module, scope: ActorScope, env: Arc<HostEnv>, config: Vec<u8>) -> Self {
        WasmActor {
            module,
            scope,
            env,
            config: if config.is_empty() { b"{}".to_vec() } else { config },
            guest: None,
            pending_restore: None,
            last_snapshot: None,
        }
    }

    async fn guest(&mut self, ctx: &Context<Self>) -> Result<&mut Guest, Error> {
        if self.guest.is_none() {
            let mut guest = self
                .module
                .instantiate(self.scope.clone(), self.env.clone())
                .await?;
            guest.store.data_mut().myself = Some(ctx.pid());
            guest.store.data_mut().durability = ctx.service::<Durability>();
            guest.init(&self.config).await?;
            if let Some(state) = self.pending_restore.take() {
                guest.restore(&state).await?;
            }
            self.guest = Some(guest);
        }
        self.guest
            .as_mut()
            .ok_or_else(|| Error::Instantiate("the instance is gone".into()))
    }
}

fn guest_failure(code: Code, message: String, msg_type: &str) -> CoreError {
    match code {
        Code::BadRequest => CoreError::Decode {
            msg_type: msg_type.to_owned(),
            detail: message,
        },
        Code::Unsupported => CoreError::Unsupported(message),
        _ => CoreError::Remote {
            kind: code.as_str().replace('-', "_"),
            message,
        },
    }
}

impl Actor for WasmActor {
    type Msg = WasmMsg;
    type Reply = Bytes;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.guest(ctx).await?;
        Ok(())
    }

    async fn handle_call(
        &mut self,
        msg: WasmMsg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Bytes>, BoxError> {
        let durable = ctx.service::<Durability>().is_some();
        let outcome = match self.guest(ctx).await {
            Ok(guest) => guest.handle(&msg.msg_type, &msg.payload).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(Ok(reply)) => {
                if durable {
                    if let Some(guest) = self.guest.as_mut() {
                        match guest.snapshot().await {
                            Ok(s) => self.last_snapshot = Some(s),
                            Err(e) => {
                                self.guest = None;
                                return Err(Box::new(e));
                            }
                        }
                    }
                }
                Ok(Some(Bytes::from(reply)))
            }
            Ok(Err((code, message))) => {
                // The guest refused the message: the caller's error, the actor lives on.
                match ctx.reply_handle() {
                    Some(reply) => {
                        reply.fail(guest_failure(code, message, &msg.msg_type));
                    }
                    None => tracing::debug!(
                        actor_type = %self.scope.actor_type,
                        msg_type = %msg.msg_type,
                        error = %message,
                        "guest refused a cast"
                    ),
                }
                Ok(None)
            }
            Err(e) => {
                // The instance is unusable after a trap or an interrupt: drop it and stop.
                self.guest = None;
                if let Error::TimeLimit(limit) = &e {
                    if let Some(reply) = ctx.reply_handle() {
                        reply.fail(CoreError::Timeout(*limit));
                    }
                }
                tracing::warn!(
                    tenant = %self.scope.tenant,
                    namespace = %self.scope.namespace,
                    actor_type = %self.scope.actor_type,
                    key = %self.scope.key,
                    error = %e,
                    "wasm activation failed"
                );
                Err(Box::new(e))
            }
        }
    }

    fn snapshot(&self) -> CoreResult<Option<Vec<u8>>> {
        Ok(self.last_snapshot.clone())
    }

    fn restore(&mut self, snapshot: &[u8]) -> CoreResult<()> {
        // Recovery runs before the instance exists; the next instantiation restores it.
        self.guest = None;
        self.pending_restore = Some(snapshot.to_vec());
        self.last_snapshot = Some(snapshot.to_vec());
        Ok(())
    }

    fn msg_name(_msg: &WasmMsg) -> &'static str {
        "wasm"
    }

    fn decode(env: &Envelope) -> CoreResult<WasmMsg> {
        // An empty body (a bare `GET` or `invoke`) reaches the guest as `{}`.
        let payload = if env.payload.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            env.payload.clone()
        };
        Ok(WasmMsg {
            msg_type: env.msg_type.clone(),
            payload,
        })
    }

    fn encode(msg: &WasmMsg) -> CoreResult<Envelope> {
        Ok(Envelope::new(
            msg.msg_type.clone(),
            msg.payload.clone(),
            "application/json",
        ))
    }

    fn encode_reply(request_type: &str, reply: &Bytes) -> CoreResult<Envelope> {
        Ok(Envelope::new(request_type, reply.clone(), "application/json"))
    }

    fn decode_reply(env: &Envelope) -> CoreResult<Bytes> {
        Ok(env.payload.clone())
    }
}
