//! Channel-backed mailboxes: [`ChannelInbox`] feeds an actor from a queue, so the actor's
//! inbox is the channel (durable on SQLite, Redis and NATS) and survives a restart of the
//! process: what was published while nothing consumed waits in the queue.
//!
//! The inbox takes a batch of deliveries, hands each to the actor as an ask (an
//! [`Envelope`] built from the message: `msg_type` and `content_type` from the message's
//! headers of those names, default `message` and `application/octet-stream`; every other
//! header copied; [`MESSAGE_ID_HEADER`] set to the channel's message id), and acks the
//! delivery once the actor has answered. A failed handler (or a timeout) nacks it for
//! redelivery after [`InboxOptions::retry_delay`], so a poison message ends in the queue's
//! dead letters after the backend's `max_deliveries`.
//!
//! Graceful shutdown ([`InboxHandle::shutdown`]): the inbox stops taking deliveries, lets the
//! message being handled finish and acks it, gives the rest of the batch back at once
//! (nack, no delay), and returns. So a graceful stop loses nothing and handles nothing twice;
//! a crash (`kill -9`) loses nothing either, but the message in flight is handled again
//! after the visibility timeout (at least once).
//!
//! Invariant: at most one message per inbox is in the actor's local mailbox at a time, so
//! the channel, not the process, holds everything else.
//!
//! The actor is an [`InboxTarget`]: a [`Pid`] ([`ChannelInbox::start`]), or anything that
//! answers an envelope ([`ChannelInbox::start_with`]), such as the node's virtual actor
//! registry, which activates the actor on demand.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::{Envelope, Pid};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{Consumer, Delivery, Queue, Result};

/// The header carrying the channel's message id into the envelope (stable across
/// redeliveries: a handler can deduplicate on it).
pub const MESSAGE_ID_HEADER: &str = "channel-message-id";
/// The message header that names the envelope's `msg_type`.
pub const MSG_TYPE_HEADER: &str = "msg_type";
/// The message header that names the envelope's content type.
pub const CONTENT_TYPE_HEADER: &str = "content_type";

/// How an inbox consumes.
#[derive(Debug, Clone)]
pub struct InboxOptions {
    /// The consumer name of the inbox's deliveries.
    pub consumer: String,
    /// Deliveries taken per receive (at least 1).
    pub batch: usize,
    /// How long one receive waits for a message; also the longest a shutdown waits for an
    /// idle inbox to notice it.
    pub poll_wait: Duration,
    /// How long the actor may take to answer one message before it is nacked.
    pub handle_timeout: Duration,
    /// Redelivery delay of a message whose handler failed.
    pub retry_delay: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        InboxOptions {
            consumer: "inbox".into(),
            batch: 16,
            poll_wait: Duration::from_millis(200),
            handle_timeout: Duration::from_secs(30),
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// What an inbox did, returned by [`InboxHandle::shutdown`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Messages the actor answered (and that were acked).
    pub handled: u64,
    /// Messages whose handler failed or timed out (nacked for redelivery).
    pub failed: u64,
    /// Messages taken but given back unhandled at shutdown.
    pub returned: u64,
}

/// Where an inbox hands its messages: answers one envelope (`Ok` once it is handled).
pub trait InboxTarget: Send + Sync + 'static {
    /// Hands `env` to the actor and waits up to `timeout` for its answer. An error whose
    /// kind is `noproc` means the actor is gone for good: the inbox stops.
    fn deliver(
        &self,
        env: Envelope,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = plexspaces_core::Result<()>> + Send + '_>>;
}

impl InboxTarget for Pid {
    fn deliver(
        &self,
        env: Envelope,
        timeout: Duration,
    ) -> Pin<Box<dyn Future<Output = plexspaces_core::Result<()>> + Send + '_>> {
        Box::pin(async move { self.ask_envelope(env, timeout).await.map(|_| ()) })
    }
}

/// Feeds an actor from a queue. See the module docs.
#[derive(Debug)]
pub struct ChannelInbox;

/// A running inbox. Dropping it stops the inbox the same way as
/// [`InboxHandle::shutdown`], without waiting.
#[derive(Debug)]
pub struct InboxHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<InboxStats>>,
}

impl ChannelInbox {
    /// Starts feeding `actor` from `queue`.
    pub async fn start(queue: &Queue, actor: Pid, options: InboxOptions) -> Result<InboxHandle> {
        Self::start_with(queue, Arc::new(actor), options).await
    }

    /// Starts feeding `target` from `queue`.
    pub async fn start_with(
        queue: &Queue,
        actor: Arc<dyn InboxTarget>,
        options: InboxOptions,
    ) -> Result<InboxHandle> {
        let consumer = queue.consumer(&options.consumer).await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(pump(consumer, actor, options, stopped));
        Ok(InboxHandle {
            stop,
            task: Some(task),
        })
    }
}

impl InboxHandle {
    /// Stops taking messages, finishes and acks the one in flight, gives back the rest of
    /// the batch, and returns what the inbox did.
    pub async fn shutdown(mut self) -> InboxStats {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => InboxStats::default(),
        }
    }
}

impl Drop for InboxHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The envelope an actor receives for `delivery`.
pub fn envelope_of(delivery: &Delivery) -> Envelope {
    let m = &delivery.message;
    let msg_type = m
        .headers
        .get(MSG_TYPE_HEADER)
        .map_or("message", String::as_str);
    let content_type = m
        .headers
        .get(CONTENT_TYPE_HEADER)
        .map_or("application/octet-stream", String::as_str);
    let mut env = Envelope::new(msg_type, m.payload.clone(), content_type);
    for (k, v) in &m.headers {
        if k != MSG_TYPE_HEADER && k != CONTENT_TYPE_HEADER {
            env = env.with_header(k.clone(), v.clone());
        }
    }
    env.with_header(MESSAGE_ID_HEADER, m.id.clone())
}

async fn pump(
    consumer: Consumer,
    actor: Arc<dyn InboxTarget>,
    options: InboxOptions,
    stopped: watch::Receiver<bool>,
) -> InboxStats {
    let mut stats = InboxStats::default();
    let batch = options.batch.max(1);
    // A receive is never cancelled half-way (a claimed delivery would wait out its
    // visibility timeout): shutdown is noticed between receives, within `poll_wait`.
    while !*stopped.borrow() {
        let deliveries = match consumer.receive(batch, options.poll_wait).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "inbox receive failed");
                tokio::time::sleep(options.poll_wait).await;
                continue;
            }
        };
        for d in deliveries {
            if *stopped.borrow() {
                // Stop accepting: what was taken but not started goes back at once.
                match consumer.nack(&d, Duration::ZERO).await {
                    Ok(()) => stats.returned += 1,
                    Err(e) => tracing::warn!(error = %e, id = %d.message.id, "inbox nack failed"),
                }
                continue;
            }
            match actor.deliver(envelope_of(&d), options.handle_timeout).await {
                Ok(_) => {
                    stats.handled += 1;
                    if let Err(e) = consumer.ack(&d).await {
                        tracing::warn!(error = %e, id = %d.message.id, "inbox ack failed");
                    }
                }
                Err(e) => {
                    stats.failed += 1;
                    tracing::warn!(error = %e, id = %d.message.id, "inbox message failed");
                    if let Err(e) = consumer.nack(&d, options.retry_delay).await {
                        tracing::warn!(error = %e, id = %d.message.id, "inbox nack failed");
                    }
                    if e.kind() == "noproc" {
                        // The actor is gone: nothing more to feed.
                        return stats;
                    }
                }
            }
        }
    }
    stats
}
