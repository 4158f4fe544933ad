//! [`AuthenticationFacet`] and [`AuthorizationFacet`]: the caller of each message, and a
//! policy that refuses a message before its handler runs.
//!
//! The caller comes from the envelope's caller headers ([`Caller::from_headers`]), which the
//! node's front doors (HTTP, gRPC, a forwarded cluster call) write from the verified token
//! of the request and overwrite whatever the client sent. A message without them was sent
//! by code on the node itself: another actor, a timer, a reminder, a channel inbox.
//!
//! Both facets need the message as an envelope ([`Facet::needs_payload`]); a typed local
//! message is encoded with the actor's codec first, and carries no caller.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use plexspaces_core::facet::{ActorInfo, Intercept, MessageMeta, MessageOutcome};
use plexspaces_core::{Actor, Context, Facet};
use serde::{Deserialize, Serialize};

use crate::service::Caller;

/// The caller of the message being handled, offered by [`AuthenticationFacet`] through
/// `ctx.service::<CurrentCaller>()` (or [`caller_of`]).
#[derive(Debug, Default)]
pub struct CurrentCaller {
    slot: Mutex<Option<Caller>>,
}

impl CurrentCaller {
    /// Who sent the message being handled; `None` between messages and for a message sent
    /// from the node itself.
    pub fn get(&self) -> Option<Caller> {
        self.slot.lock().clone()
    }
}

/// The caller of the message a handler is running for, if the actor has an
/// [`AuthenticationFacet`] and the message came through a front door.
pub fn caller_of<A: Actor>(ctx: &Context<A>) -> Option<Caller> {
    ctx.service::<CurrentCaller>()?.get()
}

/// Makes each message's caller available to its handler ([`caller_of`]). With
/// [`AuthenticationFacet::required`] it refuses a message without a caller (error kind
/// `rejected`: HTTP 403, gRPC `PERMISSION_DENIED`); replayed messages are never refused
/// (they were accepted when first handled).
#[derive(Debug)]
pub struct AuthenticationFacet {
    current: Arc<CurrentCaller>,
    required: bool,
}

impl AuthenticationFacet {
    /// A facet that passes on whatever caller a message has, or none.
    pub fn new() -> Arc<Self> {
        Arc::new(AuthenticationFacet {
            current: Arc::default(),
            required: false,
        })
    }

    /// A facet that refuses messages without a caller.
    pub fn required() -> Arc<Self> {
        Arc::new(AuthenticationFacet {
            current: Arc::default(),
            required: true,
        })
    }
}

fn caller_in(msg: &MessageMeta) -> Option<Caller> {
    msg.payload
        .as_ref()
        .and_then(|env| Caller::from_headers(&env.headers))
}

#[async_trait]
impl Facet for AuthenticationFacet {
    fn name(&self) -> &'static str {
        "authentication"
    }

    /// Outside the durability facet (1000): a refused message is never journaled.
    fn priority(&self) -> i32 {
        1200
    }

    fn needs_payload(&self) -> bool {
        true
    }

    async fn before_message(
        &self,
        _actor: &ActorInfo,
        msg: &MessageMeta,
    ) -> plexspaces_core::Result<Intercept> {
        let caller = caller_in(msg);
        if caller.is_none() && self.required && !msg.replaying {
            *self.current.slot.lock() = None;
            return Err(plexspaces_core::Error::Rejected {
                facet: self.name().into(),
                reason: format!("message {:?} carries no caller identity", msg.msg_type),
            });
        }
        *self.current.slot.lock() = caller;
        Ok(Intercept::Continue)
    }

    async fn after_message(
        &self,
        _actor: &ActorInfo,
        _msg: &MessageMeta,
        _outcome: &MessageOutcome,
    ) -> plexspaces_core::Result<()> {
        *self.current.slot.lock() = None;
        Ok(())
    }

    fn service(&self) -> Option<Arc<dyn std::any::Any + Send + Sync>> {
        Some(self.current.clone())
    }
}

/// Who a [`Rule`] lets through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Allow {
    /// Every message, with a caller or without.
    Anyone,
    /// Any caller that came through a front door (a verified token, or any request with
    /// auth disabled).
    AnyCaller,
    /// A caller holding at least one of these roles.
    Roles(Vec<String>),
    /// An operator (a token with the operator claim, or any request with auth disabled).
    Operator,
    /// Only messages without a caller: sent by code on the node (another actor, a timer,
    /// a reminder, a channel inbox).
    Internal,
    /// Nobody.
    Nobody,
}

/// One rule: who may send messages of one type (`*`: every type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The message type, or `*`.
    pub msg_type: String,
    /// Who it lets through.
    pub allow: Allow,
}

/// An authorization policy: the first rule whose message type matches decides (an exact
/// type before `*`, whatever the order); with no matching rule the message is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// The rules.
    pub rules: Vec<Rule>,
}

impl Policy {
    /// A policy that refuses everything until rules allow it.
    pub fn deny_by_default() -> Self {
        Policy::default()
    }

    /// Adds a rule for `msg_type` (`*`: every type without a rule of its own).
    pub fn rule(mut self, msg_type: &str, allow: Allow) -> Self {
        self.rules.push(Rule {
            msg_type: msg_type.to_owned(),
            allow,
        });
        self
    }

    /// Lets callers holding any of `roles` send `msg_type`.
    pub fn allow_roles(self, msg_type: &str, roles: &[&str]) -> Self {
        let roles = roles.iter().map(|r| (*r).to_owned()).collect();
        self.rule(msg_type, Allow::Roles(roles))
    }

    /// Why `caller` may not send `msg_type`, or `None` if it may.
    pub fn refusal(&self, msg_type: &str, caller: Option<&Caller>) -> Option<String> {
        let rule = self
            .rules
            .iter()
            .find(|r| r.msg_type == msg_type)
            .or_else(|| self.rules.iter().find(|r| r.msg_type == "*"));
        let Some(rule) = rule else {
            return Some(format!("no rule allows message type {msg_type:?}"));
        };
        let who = || match caller.and_then(|c| c.subject.as_deref()) {
            Some(subject) => format!("caller {subject:?}"),
            None => "the caller".to_owned(),
        };
        match (&rule.allow, caller) {
            (Allow::Anyone, _) => None,
            (Allow::Nobody, _) => Some(format!("message type {msg_type:?} is not allowed")),
            (Allow::Internal, None) => None,
            (Allow::Internal, Some(_)) => Some(format!(
                "message type {msg_type:?} is only sent from the node itself"
            )),
            (_, None) => Some(format!("message {msg_type:?} carries no caller identity")),
            (Allow::AnyCaller, Some(_)) => None,
            (Allow::Operator, Some(c)) if c.operator => None,
            (Allow::Operator, Some(_)) => Some(format!(
                "{} is not an operator, as message type {msg_type:?} requires",
                who()
            )),
            (Allow::Roles(roles), Some(c)) if roles.iter().any(|r| c.has_role(r)) => None,
            (Allow::Roles(roles), Some(_)) => Some(format!(
                "{} holds none of the roles {roles:?} that message type {msg_type:?} requires",
                who()
            )),
        }
    }
}

/// Checks each message against a [`Policy`] before the handler runs and refuses it with
/// error kind `rejected` (HTTP 403, gRPC `PERMISSION_DENIED`) when the policy says no.
/// Replayed messages are not checked again.
#[derive(Debug)]
pub struct AuthorizationFacet {
    policy: Policy,
}

impl AuthorizationFacet {
    /// A facet enforcing `policy`.
    pub fn new(policy: Policy) -> Arc<Self> {
        Arc::new(AuthorizationFacet { policy })
    }

    /// Its policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

#[async_trait]
impl Facet for AuthorizationFacet {
    fn name(&self) -> &'static str {
        "authorization"
    }

    /// Inside authentication (1200), outside the durability facet (1000).
    fn priority(&self) -> i32 {
        1100
    }

    fn needs_payload(&self) -> bool {
        true
    }

    async fn before_message(
        &self,
        actor: &ActorInfo,
        msg: &MessageMeta,
    ) -> plexspaces_core::Result<Intercept> {
        if msg.replaying {
            return Ok(Intercept::Continue);
        }
        let caller = caller_in(msg);
        match self.policy.refusal(&msg.msg_type, caller.as_ref()) {
            None => Ok(Intercept::Continue),
            Some(reason) => {
                tracing::debug!(actor = %actor.id, msg_type = %msg.msg_type, %reason, "message refused by policy");
                Err(plexspaces_core::Error::Rejected {
                    facet: self.name().into(),
                    reason,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str], operator: bool) -> Caller {
        Caller {
            tenant: "acme".into(),
            operator,
            subject: Some("alice".into()),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    #[test]
    fn the_exact_rule_decides_before_the_wildcard_and_nothing_is_allowed_unsaid() {
        let policy = Policy::deny_by_default()
            .rule("*", Allow::AnyCaller)
            .allow_roles("withdraw", &["admin", "teller"])
            .rule("tick", Allow::Internal)
            .rule("audit", Allow::Operator)
            .rule("drop", Allow::Nobody);
        let reader = caller(&["reader"], false);
        let teller = caller(&["teller"], false);
        assert_eq!(policy.refusal("balance", Some(&reader)), None);
        assert!(policy.refusal("balance", None).is_some(), "no caller");
        assert!(policy.refusal("withdraw", Some(&reader)).is_some());
        assert_eq!(policy.refusal("withdraw", Some(&teller)), None);
        assert!(policy.refusal("withdraw", None).is_some());
        assert_eq!(policy.refusal("tick", None), None);
        assert!(policy.refusal("tick", Some(&teller)).is_some());
        assert!(policy.refusal("audit", Some(&teller)).is_some());
        assert_eq!(policy.refusal("audit", Some(&caller(&[], true))), None);
        assert!(policy.refusal("drop", Some(&caller(&[], true))).is_some());
        assert_eq!(
            Policy::default().refusal("anything", Some(&teller)),
            Some("no rule allows message type \"anything\"".to_owned())
        );
    }

    #[test]
    fn a_policy_reads_from_toml() {
        let policy: Policy = toml::from_str(
            r#"
            [[rules]]
            msg_type = "withdraw"
            allow = { roles = ["admin"] }
            [[rules]]
            msg_type = "*"
            allow = "any_caller"
            "#,
        )
        .unwrap();
        assert_eq!(
            policy,
            Policy::deny_by_default()
                .allow_roles("withdraw", &["admin"])
                .rule("*", Allow::AnyCaller)
        );
    }
}
