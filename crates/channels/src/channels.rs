//! The handle callers use: [`Channels`], its [`Queue`]s and [`Topic`]s, and [`Consumer`]s.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::types::check_name;
use crate::{Backend, ChannelId, DeadLetter, Delivery, Error, Outgoing, Result, Semantics, Start};

/// The subscriber group every consumer of a queue joins.
pub const QUEUE_GROUP: &str = "queue";

/// Queues and topics on one backend. Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    backend: Arc<dyn Backend>,
    // queues whose group this handle has already made sure of
    queues_ready: Arc<Mutex<HashSet<ChannelId>>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("backend", &self.backend.name())
            .finish()
    }
}

impl Channels {
    /// Channels on `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Channels {
            backend,
            queues_ready: Arc::default(),
        }
    }

    /// Channels in memory with the default delivery options.
    pub fn memory() -> Self {
        Self::new(Arc::new(crate::MemoryBackend::default()))
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// What the backend guarantees.
    pub fn semantics(&self) -> Semantics {
        self.backend.semantics()
    }

    /// The backend, for code that needs the raw trait.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// A queue: each message goes to one of its consumers. Messages published before any
    /// consumer exists wait for one.
    pub fn queue(&self, id: ChannelId) -> Queue {
        Queue {
            channels: self.clone(),
            id,
        }
    }

    /// A topic: each message goes to every subscriber group that existed when it was
    /// published, and to one consumer within each group.
    pub fn topic(&self, id: ChannelId) -> Topic {
        Topic {
            channels: self.clone(),
            id,
        }
    }

    async fn ensure_queue(&self, id: &ChannelId) -> Result<()> {
        if self.queues_ready.lock().contains(id) {
            return Ok(());
        }
        if !self.backend.semantics().queues {
            return Err(Error::Unsupported(format!(
                "the {} backend offers topics only",
                self.backend.name()
            )));
        }
        self.backend
            .ensure_group(id, QUEUE_GROUP, Start::Earliest)
            .await?;
        self.queues_ready.lock().insert(id.clone());
        Ok(())
    }
}

/// A queue handle.
#[derive(Debug, Clone)]
pub struct Queue {
    channels: Channels,
    id: ChannelId,
}

impl Queue {
    /// The channel.
    pub fn id(&self) -> &ChannelId {
        &self.id
    }

    /// Append a message.
    pub async fn publish(&self, message: Outgoing) -> Result<String> {
        self.channels.ensure_queue(&self.id).await?;
        self.channels.backend.publish(&self.id, message).await
    }

    /// A competing consumer named `name` (names only label deliveries; several consumers
    /// may share one).
    pub async fn consumer(&self, name: &str) -> Result<Consumer> {
        check_name("consumer", name)?;
        self.channels.ensure_queue(&self.id).await?;
        Ok(Consumer {
            backend: self.channels.backend.clone(),
            id: self.id.clone(),
            group: QUEUE_GROUP.to_owned(),
            name: name.to_owned(),
        })
    }

    /// Messages that ran out of deliveries.
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        self.channels
            .backend
            .dead_letters(&self.id, QUEUE_GROUP, max)
            .await
    }
}

/// A topic handle.
#[derive(Debug, Clone)]
pub struct Topic {
    channels: Channels,
    id: ChannelId,
}

impl Topic {
    /// The channel.
    pub fn id(&self) -> &ChannelId {
        &self.id
    }

    /// Append a message for every current subscriber group.
    pub async fn publish(&self, message: Outgoing) -> Result<String> {
        self.channels.backend.publish(&self.id, message).await
    }

    /// A consumer in subscriber group `group` (created if new: it sees messages published
    /// from now on). Consumers of one group compete; each group gets every message.
    pub async fn subscribe(&self, group: &str, consumer: &str) -> Result<Consumer> {
        check_name("group", group)?;
        check_name("consumer", consumer)?;
        if group == QUEUE_GROUP {
            return Err(Error::invalid("group", "\"queue\" is reserved for queues"));
        }
        self.channels
            .backend
            .ensure_group(&self.id, group, Start::Latest)
            .await?;
        Ok(Consumer {
            backend: self.channels.backend.clone(),
            id: self.id.clone(),
            group: group.to_owned(),
            name: consumer.to_owned(),
        })
    }

    /// Messages group `group` could not process.
    pub async fn dead_letters(&self, group: &str, max: usize) -> Result<Vec<DeadLetter>> {
        self.channels
            .backend
            .dead_letters(&self.id, group, max)
            .await
    }
}

/// Receives for one consumer of one group.
#[derive(Clone)]
pub struct Consumer {
    backend: Arc<dyn Backend>,
    id: ChannelId,
    group: String,
    name: String,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("channel", &self.id)
            .field("group", &self.group)
            .field("name", &self.name)
            .finish()
    }
}

impl Consumer {
    /// Up to `max` deliveries, waiting up to `wait` for the first.
    pub async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.backend
            .receive(&self.id, &self.group, &self.name, max, wait)
            .await
    }

    /// One delivery, or `None` after `wait`.
    pub async fn receive_one(&self, wait: Duration) -> Result<Option<Delivery>> {
        Ok(self.receive(1, wait).await?.into_iter().next())
    }

    /// Done with it.
    pub async fn ack(&self, delivery: &Delivery) -> Result<()> {
        self.backend
            .ack(&self.id, &self.group, &delivery.receipt)
            .await
    }

    /// Give it back for redelivery after `delay`.
    pub async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<()> {
        self.backend
            .nack(&self.id, &self.group, &delivery.receipt, delay)
            .await
    }

    /// The group.
    pub fn group(&self) -> &str {
        &self.group
    }
}
