//! Queues and topics for PlexSpaces: at-least-once messaging between actors, nodes and
//! services.
//!
//! What it is: [`Channels`] over a pluggable [`Backend`]. A [`Queue`] hands each message to
//! one of its competing [`Consumer`]s; a [`Topic`] hands each message to every subscriber
//! group, and to one consumer within a group. Deliveries are acked or nacked; a delivery
//! not acked within the visibility timeout is delivered again, and a message delivered
//! [`DeliveryOptions::max_deliveries`] times without an ack goes to the group's dead
//! letters. Backends: [`MemoryBackend`] (default), SQLite (`sqlite`), Redis streams
//! (`redis`), NATS JetStream (`nats`), Kafka (`kafka`, any Kafka-protocol broker), and
//! best-effort UDP multicast (`udp`, a documented subset). [`factory::open`] picks one from [`ChannelsConfig`]. [`EventEmitterFacet`]
//! gives an actor topics of its own tenant. [`conformance`] (feature `conformance`) is the
//! suite every backend passes; docs/channels.md has the per-backend table.
//!
//! What it is not: no exactly-once delivery, and no SQS or process-group channels. The node serves channels over
//! HTTP and gRPC (`plexspaces-node`); [`ChannelInbox`] feeds an actor from a queue, so its
//! inbox is durable.
//!
//! Invariants:
//! - At least once: a message is removed for a group only by an ack (or moved to the dead
//!   letters after `max_deliveries`); a consumer that dies mid-message loses nothing, the
//!   message comes back after the visibility timeout (UDP excepted: best effort).
//! - One claimant at a time: within a group a delivery is claimed atomically (one SQL
//!   `UPDATE .. RETURNING`, a Redis consumer group, a JetStream pull consumer, the first
//!   counting `lease` record in a Kafka group's state topic), so two
//!   consumers never hold the same message inside its visibility timeout.
//! - Channels are scoped by tenant and namespace ([`ChannelId`]); no name crosses scopes.
//!
//! ```
//! use std::time::Duration;
//! use plexspaces_channels::{ChannelId, Channels, Outgoing};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> plexspaces_channels::Result<()> {
//! let channels = Channels::memory();
//! let jobs = channels.queue(ChannelId::new("acme", "default", "jobs")?);
//! jobs.publish(Outgoing::new("resize img-1")).await?;
//! let worker = jobs.consumer("worker-1").await?;
//! let d = worker.receive_one(Duration::from_secs(1)).await?.expect("a job");
//! assert_eq!(d.message.payload, "resize img-1");
//! worker.ack(&d).await?;
//! # Ok(())
//! # }
//! ```

mod backend;
mod channels;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod facet;
pub mod factory;
pub mod inbox;
#[cfg(feature = "kafka")]
mod kafka;
mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;
#[cfg(feature = "udp")]
mod udp;

pub use backend::{Backend, MAX_BATCH, MAX_WAIT};
pub use channels::{Channels, Consumer, Queue, Topic, QUEUE_GROUP};
pub use error::{Error, Result};
pub use facet::{EventEmitter, EventEmitterFacet};
pub use factory::{BackendKind, ChannelsConfig};
pub use inbox::{ChannelInbox, InboxHandle, InboxOptions, InboxStats, InboxTarget};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaBackend, KafkaOptions};
pub use memory::MemoryBackend;
#[cfg(feature = "nats")]
pub use nats::{NatsBackend, NatsOptions};
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteBackend, SqliteOptions};
pub use types::{
    check_name, ChannelId, DeadLetter, Delivery, DeliveryOptions, Message, Outgoing, Receipt,
    Semantics, Start, MAX_NAME_LEN,
};
#[cfg(feature = "udp")]
pub use udp::{UdpBackend, UdpOptions, MAX_DATAGRAM};
