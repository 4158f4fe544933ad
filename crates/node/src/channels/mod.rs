//! The node's queues and topics: one [`Channels`] backend per node, picked by the channel
//! factory from `[channels]` (the first configured of Kafka, NATS, Redis, SQLite at
//! `<data_dir>/channels.db`, unless `channels.backend` names one), the channel service
//! ([`ChannelService`]) served at `/api/v1/channels/{namespace}/...` ([`http`]) and as gRPC
//! `plexspaces.v1.ChannelService` ([`grpc`]).
//!
//! A request names a queue, or a topic and one of its subscriber groups ([`Target`]). Every
//! request acts for the tenant of its verified token: the channel is
//! `(that tenant, namespace, name)`. Receipts handed out by `receive` are acked or nacked
//! by a later request; a delivery nobody acks comes back after the visibility timeout.

pub mod grpc;
pub mod http;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use plexspaces_channels::factory::{self, NatsConfig, RedisConfig, SqliteConfig};
use plexspaces_channels::{
    BackendKind, ChannelId, Channels, DeadLetter, Delivery, DeliveryOptions, Outgoing, Receipt,
    QUEUE_GROUP,
};

use crate::config::{ChannelsBackend, NodeConfig};
use crate::error::{Error, Result};
use crate::service::{field_id, Caller};

/// The most deliveries one receive returns, and the most dead letters one list returns.
pub const MAX_BATCH: usize = 1000;
/// The longest a receive over the node's API waits (a long poll; ask again for more).
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// The longest delay of a nack.
pub const MAX_NACK_DELAY: Duration = Duration::from_secs(3600);

/// The SQLite file of the channels (the always-configured embedded backend).
pub fn sqlite_path(config: &NodeConfig) -> std::path::PathBuf {
    config.data_dir.join("channels.db")
}

/// The channel factory's configuration for a node's `[channels]`.
pub fn factory_config(config: &NodeConfig) -> factory::ChannelsConfig {
    let c = &config.channels;
    factory::ChannelsConfig {
        kafka: (!c.kafka_brokers.is_empty()).then(|| factory::KafkaConfig {
            brokers: c.kafka_brokers.clone(),
            prefix: c.prefix.clone(),
        }),
        nats: c.nats_url.as_ref().map(|u| NatsConfig {
            url: u.expose().to_owned(),
            prefix: c.prefix.clone(),
        }),
        redis: c.redis_url.as_ref().map(|u| RedisConfig {
            url: u.expose().to_owned(),
            prefix: c.prefix.clone(),
        }),
        sqlite: Some(SqliteConfig {
            path: sqlite_path(config),
        }),
        udp: None,
        prefer: c.backend.map(|b| match b {
            ChannelsBackend::Kafka => BackendKind::Kafka,
            ChannelsBackend::Nats => BackendKind::Nats,
            ChannelsBackend::Redis => BackendKind::Redis,
            ChannelsBackend::Sqlite => BackendKind::Sqlite,
            ChannelsBackend::Memory => BackendKind::Memory,
        }),
        delivery: DeliveryOptions {
            visibility_timeout: Duration::from_millis(c.visibility_timeout_ms),
            max_deliveries: c.max_deliveries,
        },
    }
}

/// Opens the channels `config` names (the data dir must exist).
pub async fn open(config: &NodeConfig) -> Result<Channels> {
    factory::open(&factory_config(config)).await.map_err(|e| {
        Error::Config(format!(
            "cannot open the channels: {}",
            crate::secret::mask_secrets(&e.to_string())
        ))
    })
}

/// A queue, or one subscriber group of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The namespace (empty: `default`).
    pub namespace: String,
    /// The queue or topic.
    pub channel: String,
    /// `None`: a queue; `Some(group)`: that group of the topic.
    pub group: Option<String>,
}

/// The channel service: the caller's channels on the node's backend. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ChannelService {
    channels: Channels,
}

impl ChannelService {
    /// The service over `channels`.
    pub fn new(channels: Channels) -> Self {
        ChannelService { channels }
    }

    /// The node's channels.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    fn id(caller: &Caller, namespace: &str, channel: &str) -> Result<ChannelId> {
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        Ok(ChannelId::new(&caller.tenant, namespace, channel)?)
    }

    /// Publishes to a queue (`topic` false) or to every group of a topic; the message id.
    pub async fn publish(
        &self,
        caller: &Caller,
        namespace: &str,
        channel: &str,
        topic: bool,
        payload: Bytes,
        headers: BTreeMap<String, String>,
    ) -> Result<String> {
        let id = Self::id(caller, namespace, channel)?;
        let message = Outgoing { payload, headers };
        Ok(if topic {
            self.channels.topic(id).publish(message).await?
        } else {
            self.channels.queue(id).publish(message).await?
        })
    }

    /// Up to `max` (0: 1) deliveries for `consumer`, waiting up to `wait` for the first.
    pub async fn receive(
        &self,
        caller: &Caller,
        target: &Target,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let max = max.max(1);
        if max > MAX_BATCH {
            return Err(Error::BadRequest(format!(
                "max must be at most {MAX_BATCH}"
            )));
        }
        if wait > MAX_WAIT {
            return Err(Error::BadRequest(format!(
                "wait must be at most {} ms",
                MAX_WAIT.as_millis()
            )));
        }
        let id = Self::id(caller, &target.namespace, &target.channel)?;
        let consumer = match &target.group {
            None => self.channels.queue(id).consumer(consumer).await?,
            Some(group) => self.channels.topic(id).subscribe(group, consumer).await?,
        };
        Ok(consumer.receive(max, wait).await?)
    }

    /// The target's subscriber group (checked like every channel name), or the queue's.
    fn group(target: &Target) -> Result<&str> {
        match target.group.as_deref() {
            Some(group) => {
                plexspaces_channels::check_name("group", group)?;
                Ok(group)
            }
            None => Ok(QUEUE_GROUP),
        }
    }

    fn receipt(receipt: &str) -> Result<Receipt> {
        field_id("receipt", receipt)?;
        Ok(Receipt::from_token(receipt))
    }

    /// Acknowledges a delivery.
    pub async fn ack(&self, caller: &Caller, target: &Target, receipt: &str) -> Result<()> {
        let id = Self::id(caller, &target.namespace, &target.channel)?;
        let receipt = Self::receipt(receipt)?;
        Ok(self
            .channels
            .backend()
            .ack(&id, Self::group(target)?, &receipt)
            .await?)
    }

    /// Gives a delivery back, to be delivered again after `delay`.
    pub async fn nack(
        &self,
        caller: &Caller,
        target: &Target,
        receipt: &str,
        delay: Duration,
    ) -> Result<()> {
        if delay > MAX_NACK_DELAY {
            return Err(Error::BadRequest(
                "delay_ms must be at most one hour".into(),
            ));
        }
        let id = Self::id(caller, &target.namespace, &target.channel)?;
        let receipt = Self::receipt(receipt)?;
        Ok(self
            .channels
            .backend()
            .nack(&id, Self::group(target)?, &receipt, delay)
            .await?)
    }

    /// Messages of the queue or group that ran out of deliveries (at most `max`, 0: 100).
    pub async fn dead_letters(
        &self,
        caller: &Caller,
        target: &Target,
        max: usize,
    ) -> Result<Vec<DeadLetter>> {
        let max = if max == 0 { 100 } else { max };
        if max > MAX_BATCH {
            return Err(Error::BadRequest(format!(
                "max must be at most {MAX_BATCH}"
            )));
        }
        let id = Self::id(caller, &target.namespace, &target.channel)?;
        Ok(self
            .channels
            .backend()
            .dead_letters(&id, Self::group(target)?, max)
            .await?)
    }
}
