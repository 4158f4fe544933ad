//! [`EventEmitterFacet`]: an actor emits and subscribes to topics of its own tenant and
//! namespace.
//!
//! Attach the facet at spawn time; a handler reaches the emitter with
//! `ctx.service::<EventEmitter>()`.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use plexspaces_core::Facet;

use crate::types::check_name;
use crate::{ChannelId, Channels, Consumer, Outgoing, Result};

/// Topics of one tenant and namespace.
#[derive(Debug, Clone)]
pub struct EventEmitter {
    channels: Channels,
    tenant: String,
    namespace: String,
}

impl EventEmitter {
    /// Topics of `tenant`/`namespace` on `channels`.
    pub fn new(channels: Channels, tenant: &str, namespace: &str) -> Result<Self> {
        check_name("tenant", tenant)?;
        check_name("namespace", namespace)?;
        Ok(EventEmitter {
            channels,
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    fn id(&self, topic: &str) -> Result<ChannelId> {
        ChannelId::new(&self.tenant, &self.namespace, topic)
    }

    /// Publish `event` on `topic` to every subscriber group.
    pub async fn emit(&self, topic: &str, event: Outgoing) -> Result<String> {
        self.channels.topic(self.id(topic)?).publish(event).await
    }

    /// Subscribe to `topic` as `consumer` in `group`.
    pub async fn subscribe(&self, topic: &str, group: &str, consumer: &str) -> Result<Consumer> {
        self.channels
            .topic(self.id(topic)?)
            .subscribe(group, consumer)
            .await
    }
}

/// Gives an actor an [`EventEmitter`].
#[derive(Debug)]
pub struct EventEmitterFacet {
    emitter: Arc<EventEmitter>,
}

impl EventEmitterFacet {
    /// A facet emitting on `channels` in `tenant`/`namespace`.
    pub fn new(channels: Channels, tenant: &str, namespace: &str) -> Result<Arc<Self>> {
        Ok(Arc::new(EventEmitterFacet {
            emitter: Arc::new(EventEmitter::new(channels, tenant, namespace)?),
        }))
    }
}

#[async_trait]
impl Facet for EventEmitterFacet {
    fn name(&self) -> &'static str {
        "event_emitter"
    }

    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.emitter.clone())
    }
}
