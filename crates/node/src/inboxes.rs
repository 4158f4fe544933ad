//! Channel-backed mailboxes in the node: each `[[channels.inboxes]]` entry feeds one
//! activation (an actor type and key in a tenant and namespace) from a queue of the same
//! tenant and namespace, through `plexspaces_channels::ChannelInbox`.
//!
//! Each message goes to the activation through the registry ([`Registry::lease`]), so an
//! idle virtual actor that was deactivated is activated again by its next message, and a
//! durable one is journaled as for any call. The envelope is built from the message
//! (`msg_type` and `content_type` from its headers of those names, its other headers
//! copied, `channel-message-id` added); the caller headers are removed: a queued message is
//! sent from the node itself (an `AuthorizationFacet` policy sees no caller, as for
//! [`crate::facets::Allow::Internal`]).
//!
//! Graceful shutdown ([`crate::ServerHandle::shutdown`]) stops the inboxes before the
//! actors: each stops taking deliveries, lets the message in flight finish and acks it,
//! and gives the rest of its batch back to the queue at once. A node stopped with SIGTERM
//! thus loses no message and handles none twice; one killed with `kill -9` loses none but
//! handles the message in flight again after the visibility timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use plexspaces_channels::{
    ChannelId, ChannelInbox, Channels, InboxHandle, InboxOptions, InboxStats, InboxTarget,
};
use plexspaces_core::Envelope;

use crate::config::InboxConfig;
use crate::error::{Error, Result};
use crate::registry::{ActivationKey, Registry};
use crate::service::Caller;

/// Hands a queue's messages to one activation through the registry.
struct RegistryTarget {
    registry: Registry,
    key: ActivationKey,
}

impl InboxTarget for RegistryTarget {
    fn deliver(
        &self,
        mut env: Envelope,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = plexspaces_core::Result<()>> + Send + '_>> {
        Caller::clear_headers(&mut env.headers);
        Box::pin(async move {
            let lease = self.registry.lease(&self.key).await.map_err(|e| {
                // The activation may come back (a limit, a moved key): never `noproc`,
                // which would stop the inbox.
                plexspaces_core::Error::Remote {
                    kind: e.kind().to_owned(),
                    message: e.public_message(),
                }
            })?;
            let outcome = lease.pid().ask_envelope(env, timeout).await;
            lease.record(outcome.is_ok());
            match outcome {
                Ok(_) => Ok(()),
                // The actor stopped under this message: the next lease activates it again.
                Err(plexspaces_core::Error::NoProc(who)) => Err(plexspaces_core::Error::Remote {
                    kind: "unavailable".into(),
                    message: format!("{who} stopped while handling the message"),
                }),
                Err(e) => Err(e),
            }
        })
    }
}

/// The inbox's consumer name: `inbox-<type>-<key>` with every character a consumer name
/// may not hold (only ASCII letters, digits, `-` and `_`) as `_`, at most 64 bytes.
fn consumer_name(key: &ActivationKey) -> String {
    format!("inbox-{}-{}", key.actor_type, key.key)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect()
}

/// The node's running inboxes.
#[derive(Debug, Default)]
pub struct NodeInboxes {
    running: Vec<(ActivationKey, String, InboxHandle)>,
}

impl NodeInboxes {
    /// Starts one inbox per entry of `configs` (the types must be registered).
    pub async fn start(
        configs: &[InboxConfig],
        channels: &Channels,
        registry: &Registry,
    ) -> Result<Self> {
        let mut running = Vec::new();
        for c in configs {
            let key = registry.resolve(&c.tenant, &c.namespace, &c.actor_type, &c.key)?;
            let queue = channels.queue(
                ChannelId::new(&key.tenant, &key.namespace, &c.queue)
                    .map_err(|e| Error::Config(format!("channels.inboxes: {e}")))?,
            );
            let target = Arc::new(RegistryTarget {
                registry: registry.clone(),
                key: key.clone(),
            });
            let options = InboxOptions {
                consumer: consumer_name(&key),
                batch: c.batch,
                handle_timeout: Duration::from_millis(c.handle_timeout_ms),
                retry_delay: Duration::from_millis(c.retry_delay_ms),
                ..InboxOptions::default()
            };
            let handle = ChannelInbox::start_with(&queue, target, options).await?;
            tracing::info!(%key, queue = %c.queue, "inbox started");
            running.push((key, c.queue.clone(), handle));
        }
        Ok(NodeInboxes { running })
    }

    /// How many inboxes run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Stops every inbox gracefully (see the module docs) and returns what they did.
    pub async fn shutdown(self) -> InboxStats {
        let stops = self
            .running
            .into_iter()
            .map(|(key, queue, handle)| async move {
                let stats = handle.shutdown().await;
                tracing::info!(
                    %key,
                    queue,
                    handled = stats.handled,
                    failed = stats.failed,
                    returned = stats.returned,
                    "inbox drained"
                );
                stats
            });
        futures::future::join_all(stops)
            .await
            .into_iter()
            .fold(InboxStats::default(), |sum, s| InboxStats {
                handled: sum.handled + s.handled,
                failed: sum.failed + s.failed,
                returned: sum.returned + s.returned,
            })
    }
}
