//! Picks a backend from configuration: [`ChannelsConfig`] -> [`open`].
//!
//! Among the backends configured, the first in this order wins: Kafka, NATS, Redis,
//! SQLite, then in memory. This is the product's order (Kafka, NATS, SQS, ProcessGroup,
//! InMemory) with the backends that exist here: SQS and process-group channels are not
//! built, and Redis and SQLite (not in the product's list) rank below NATS as the
//! self-hosted durable choices. UDP multicast is never picked implicitly, because it would
//! silently weaken delivery to best effort: name it with [`ChannelsConfig::prefer`].

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Channels, DeliveryOptions, Error, MemoryBackend, Result};

/// A backend kind, to override the priority order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// Kafka (feature `kafka`)
    Kafka,
    /// NATS JetStream
    Nats,
    /// Redis streams
    Redis,
    /// a SQLite file
    Sqlite,
    /// UDP multicast, best effort
    Udp,
    /// this process's memory
    Memory,
}

/// A Kafka-protocol cluster (feature `kafka`; without it [`open`] answers
/// [`Error::Unsupported`] instead of silently picking another backend).
#[derive(Debug, Clone, Default)]
pub struct KafkaConfig {
    /// bootstrap brokers, `host:port`
    pub brokers: Vec<String>,
    /// topic prefix (`[A-Za-z0-9._-]`; empty: `plex`)
    pub prefix: String,
}

/// A NATS server with JetStream.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// e.g. `nats://127.0.0.1:4222`
    pub url: String,
    /// subject and stream prefix
    pub prefix: String,
}

/// A Redis server.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// e.g. `redis://127.0.0.1:6379/`
    pub url: String,
    /// key prefix
    pub prefix: String,
}

/// A SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// the database file
    pub path: PathBuf,
}

/// A multicast group.
#[derive(Debug, Clone)]
pub struct UdpConfig {
    /// group address
    pub group: std::net::Ipv4Addr,
    /// port
    pub port: u16,
    /// interface to send from and join on
    pub interface: std::net::Ipv4Addr,
    /// multicast TTL (0: this host only)
    pub ttl: u32,
}

/// The backends an installation has; [`open`] picks one.
#[derive(Debug, Clone, Default)]
pub struct ChannelsConfig {
    /// Kafka
    pub kafka: Option<KafkaConfig>,
    /// NATS JetStream
    pub nats: Option<NatsConfig>,
    /// Redis streams
    pub redis: Option<RedisConfig>,
    /// SQLite
    pub sqlite: Option<SqliteConfig>,
    /// UDP multicast (only used when preferred)
    pub udp: Option<UdpConfig>,
    /// Use this kind instead of the priority order (it must be configured).
    pub prefer: Option<BackendKind>,
    /// redelivery policy for the backends that acknowledge
    pub delivery: DeliveryOptions,
}

impl ChannelsConfig {
    /// The kind [`open`] will use.
    pub fn pick(&self) -> Result<BackendKind> {
        let configured = |k: BackendKind| match k {
            BackendKind::Kafka => self.kafka.is_some(),
            BackendKind::Nats => self.nats.is_some(),
            BackendKind::Redis => self.redis.is_some(),
            BackendKind::Sqlite => self.sqlite.is_some(),
            BackendKind::Udp => self.udp.is_some(),
            BackendKind::Memory => true,
        };
        if let Some(k) = self.prefer {
            return if configured(k) {
                Ok(k)
            } else {
                Err(Error::invalid(
                    "channels config",
                    format!("preferred backend {k:?} is not configured"),
                ))
            };
        }
        Ok([
            BackendKind::Kafka,
            BackendKind::Nats,
            BackendKind::Redis,
            BackendKind::Sqlite,
        ]
        .into_iter()
        .find(|k| configured(*k))
        .unwrap_or(BackendKind::Memory))
    }
}

#[cfg(not(all(
    feature = "kafka",
    feature = "nats",
    feature = "redis",
    feature = "sqlite",
    feature = "udp"
)))]
fn not_built(feature: &str) -> Error {
    Error::Unsupported(format!(
        "the {feature} channel backend needs the cargo feature `{feature}`"
    ))
}

/// Open the backend `config` picks.
pub async fn open(config: &ChannelsConfig) -> Result<Channels> {
    let delivery = config.delivery;
    let missing = || Error::NotConfigured;
    match config.pick()? {
        BackendKind::Kafka => {
            let c = config.kafka.as_ref().ok_or_else(missing)?;
            #[cfg(feature = "kafka")]
            {
                let mut o = crate::KafkaOptions::new(c.brokers.clone());
                if !c.prefix.is_empty() {
                    o.prefix = c.prefix.clone();
                }
                o.delivery = delivery;
                Ok(Channels::new(Arc::new(
                    crate::KafkaBackend::connect(o).await?,
                )))
            }
            #[cfg(not(feature = "kafka"))]
            {
                let _ = c;
                Err(not_built("kafka"))
            }
        }
        BackendKind::Nats => {
            let c = config.nats.as_ref().ok_or_else(missing)?;
            #[cfg(feature = "nats")]
            {
                let mut o = crate::NatsOptions::new(&c.url);
                o.prefix = c.prefix.clone();
                o.delivery = delivery;
                Ok(Channels::new(Arc::new(
                    crate::NatsBackend::connect(o).await?,
                )))
            }
            #[cfg(not(feature = "nats"))]
            {
                let _ = c;
                Err(not_built("nats"))
            }
        }
        BackendKind::Redis => {
            let c = config.redis.as_ref().ok_or_else(missing)?;
            #[cfg(feature = "redis")]
            {
                let mut o = crate::RedisOptions::new(&c.url);
                o.prefix = c.prefix.clone();
                o.delivery = delivery;
                Ok(Channels::new(Arc::new(
                    crate::RedisBackend::connect(o).await?,
                )))
            }
            #[cfg(not(feature = "redis"))]
            {
                let _ = c;
                Err(not_built("redis"))
            }
        }
        BackendKind::Sqlite => {
            let c = config.sqlite.as_ref().ok_or_else(missing)?;
            #[cfg(feature = "sqlite")]
            {
                let mut o = crate::SqliteOptions::new(&c.path);
                o.delivery = delivery;
                Ok(Channels::new(Arc::new(
                    crate::SqliteBackend::open(o).await?,
                )))
            }
            #[cfg(not(feature = "sqlite"))]
            {
                let _ = c;
                Err(not_built("sqlite"))
            }
        }
        BackendKind::Udp => {
            let c = config.udp.as_ref().ok_or_else(missing)?;
            #[cfg(feature = "udp")]
            {
                Ok(Channels::new(Arc::new(crate::UdpBackend::open(
                    crate::UdpOptions {
                        group: c.group,
                        port: c.port,
                        interface: c.interface,
                        ttl: c.ttl,
                    },
                )?)))
            }
            #[cfg(not(feature = "udp"))]
            {
                let _ = c;
                Err(not_built("udp"))
            }
        }
        BackendKind::Memory => Ok(Channels::new(Arc::new(MemoryBackend::new(delivery)))),
    }
}
