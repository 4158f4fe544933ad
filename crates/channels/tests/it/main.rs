//! Integration tests: the channel conformance suite on every backend against the real
//! servers (Redis and NATS on 127.0.0.1), a consumer process killed with SIGKILL
//! mid-message, the factory, and the event-emitter facet.

use std::sync::Arc;

use async_trait::async_trait;
use plexspaces_channels::conformance::{self, Factory};
use plexspaces_channels::{Backend, DeliveryOptions, MemoryBackend, Result};

mod crash;
mod facet;
mod factory;
mod inbox;

struct MemoryFactory(MemoryBackend);

#[async_trait]
impl Factory for MemoryFactory {
    async fn open(&self, delivery: DeliveryOptions) -> Result<Arc<dyn Backend>> {
        Ok(Arc::new(self.0.with_delivery(delivery)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_conformance() {
    conformance::run_all(&MemoryFactory(MemoryBackend::default())).await;
}

/// Visibility timeouts on the memory backend follow tokio's clock: no real waiting.
/// (Each wait stays under `MAX_WAIT`, which caps a single receive.)
#[tokio::test(start_paused = true)]
async fn memory_redelivery_on_a_paused_clock() {
    use plexspaces_channels::{ChannelId, Channels, Outgoing};
    use std::time::Duration;
    let backend = MemoryBackend::new(DeliveryOptions {
        visibility_timeout: Duration::from_secs(50),
        max_deliveries: 2,
    });
    let ch = Channels::new(Arc::new(backend));
    let q = ch.queue(ChannelId::new("t", "n", "slow").expect("id"));
    let c = q.consumer("c").await.expect("consumer");
    q.publish(Outgoing::new("x")).await.expect("publish");
    let d = c
        .receive_one(Duration::ZERO)
        .await
        .expect("receive")
        .expect("one");
    assert_eq!(d.attempt, 1);
    assert!(c
        .receive_one(Duration::from_secs(49))
        .await
        .expect("receive")
        .is_none());
    let again = c
        .receive_one(Duration::from_secs(10))
        .await
        .expect("receive")
        .expect("back");
    assert_eq!(again.attempt, 2);
    // after the last allowed delivery lapses, the message is dead
    assert!(c
        .receive_one(Duration::from_secs(55))
        .await
        .expect("receive")
        .is_none());
    let dead = q.dead_letters(10).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].deliveries, 2);
}

#[cfg(feature = "sqlite")]
pub mod sqlite {
    use super::*;
    use plexspaces_channels::{SqliteBackend, SqliteOptions};

    pub struct SqliteFactory {
        pub path: std::path::PathBuf,
    }

    #[async_trait]
    impl Factory for SqliteFactory {
        async fn open(&self, delivery: DeliveryOptions) -> Result<Arc<dyn Backend>> {
            let mut o = SqliteOptions::new(&self.path);
            o.delivery = delivery;
            Ok(Arc::new(SqliteBackend::open(o).await?))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_conformance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = SqliteFactory {
            path: dir.path().join("channels.db"),
        };
        conformance::run_all(&f).await;
    }
}

#[cfg(feature = "redis")]
pub mod redis_backend {
    use super::*;
    use plexspaces_channels::{RedisBackend, RedisOptions};

    pub struct RedisFactory {
        pub prefix: String,
    }

    #[async_trait]
    impl Factory for RedisFactory {
        async fn open(&self, delivery: DeliveryOptions) -> Result<Arc<dyn Backend>> {
            let mut o = RedisOptions::new(&plexspaces_test_util::redis_url());
            o.prefix = self.prefix.clone();
            o.delivery = delivery;
            Ok(Arc::new(RedisBackend::connect(o).await?))
        }
    }

    pub async fn cleanup(prefix: &str) {
        let client = redis::Client::open(plexspaces_test_util::redis_url()).expect("client");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect for cleanup");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        for chunk in keys.chunks(500) {
            let _: () = redis::cmd("DEL")
                .arg(chunk)
                .query_async(&mut conn)
                .await
                .expect("del");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_conformance() {
        let f = RedisFactory {
            prefix: plexspaces_test_util::unique_name("chit"),
        };
        let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            conformance::run_all(&f),
        ))
        .await;
        cleanup(&f.prefix).await;
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}

#[cfg(feature = "nats")]
pub mod nats {
    use super::*;
    use futures::StreamExt;
    use plexspaces_channels::{NatsBackend, NatsOptions};

    pub struct NatsFactory {
        pub prefix: String,
    }

    /// Stream names and subjects take `[A-Za-z0-9]` safely: no '_' from unique_name.
    pub fn prefix() -> String {
        plexspaces_test_util::unique_name("chit").replace('_', "x")
    }

    #[async_trait]
    impl Factory for NatsFactory {
        async fn open(&self, delivery: DeliveryOptions) -> Result<Arc<dyn Backend>> {
            let mut o = NatsOptions::new(&plexspaces_test_util::nats_url());
            o.prefix = self.prefix.clone();
            o.delivery = delivery;
            Ok(Arc::new(NatsBackend::connect(o).await?))
        }
    }

    pub async fn cleanup(prefix: &str) {
        let client = async_nats::connect(plexspaces_test_util::nats_url())
            .await
            .expect("connect for cleanup");
        let js = async_nats::jetstream::new(client);
        let names: Vec<String> = js
            .stream_names()
            .filter_map(|n| async move { n.ok() })
            .collect()
            .await;
        for n in names.into_iter().filter(|n| n.starts_with(prefix)) {
            js.delete_stream(&n).await.expect("delete stream");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nats_conformance() {
        let f = NatsFactory { prefix: prefix() };
        let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
            conformance::run_all(&f),
        ))
        .await;
        cleanup(&f.prefix).await;
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    }
}

#[cfg(feature = "kafka")]
pub mod kafka {
    use super::*;
    use plexspaces_channels::{KafkaBackend, KafkaOptions};
    use plexspaces_test_util::KafkaBroker;

    /// `target` is `host:port/prefix` (so a child process can reach the same broker).
    pub struct KafkaFactory {
        pub broker: String,
        pub prefix: String,
    }

    impl KafkaFactory {
        pub fn parse(target: &str) -> Self {
            let (broker, prefix) = target.split_once('/').expect("host:port/prefix");
            KafkaFactory {
                broker: broker.to_owned(),
                prefix: prefix.to_owned(),
            }
        }
    }

    #[async_trait]
    impl Factory for KafkaFactory {
        async fn open(&self, delivery: DeliveryOptions) -> Result<Arc<dyn Backend>> {
            let mut o = KafkaOptions::new(vec![self.broker.clone()]);
            o.prefix = self.prefix.clone();
            o.delivery = delivery;
            Ok(Arc::new(KafkaBackend::connect(o).await?))
        }
    }

    pub async fn broker() -> KafkaBroker {
        KafkaBroker::start()
            .await
            .unwrap_or_else(|e| panic!("Kafka-protocol broker: {e}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_conformance() {
        let b = broker().await;
        let f = KafkaFactory {
            broker: b.addr().to_owned(),
            prefix: plexspaces_test_util::unique_name("chit"),
        };
        conformance::run_all(&f).await;
    }

    /// Several instances claim from one queue at once: every message is handed out once
    /// while held, none is lost (the state log arbitrates between instances).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn kafka_instances_race_for_claims_without_double_delivery() {
        use plexspaces_channels::{ChannelId, Channels, Outgoing};
        use std::collections::BTreeSet;
        use std::time::Duration;
        let b = broker().await;
        let f = KafkaFactory {
            broker: b.addr().to_owned(),
            prefix: plexspaces_test_util::unique_name("race"),
        };
        let delivery = DeliveryOptions {
            visibility_timeout: Duration::from_secs(60),
            max_deliveries: 5,
        };
        let id = ChannelId::new("race", "ns", "work").expect("id");
        let publisher = Channels::new(f.open(delivery).await.expect("open"));
        const N: usize = 60;
        for i in 0..N {
            publisher
                .queue(id.clone())
                .publish(Outgoing::new(format!("{i}")))
                .await
                .expect("publish");
        }
        let mut workers = Vec::new();
        for w in 0..4 {
            let ch = Channels::new(f.open(delivery).await.expect("open"));
            let c = ch
                .queue(id.clone())
                .consumer(&format!("w{w}"))
                .await
                .expect("consumer");
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let ds = c
                        .receive(4, Duration::from_millis(800))
                        .await
                        .expect("receive");
                    if ds.is_empty() {
                        return got;
                    }
                    for d in ds {
                        got.push(d.message.payload.clone());
                        c.ack(&d).await.expect("ack");
                    }
                }
            }));
        }
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.await.expect("worker"));
        }
        let distinct: BTreeSet<_> = all.iter().cloned().collect();
        assert_eq!(all.len(), N, "no message handed out twice");
        assert_eq!(distinct.len(), N, "every message handed out");
    }
}

#[cfg(feature = "udp")]
mod udp {
    use super::*;
    use plexspaces_channels::{UdpBackend, UdpOptions};

    struct UdpFactory {
        port: u16,
    }

    #[async_trait]
    impl Factory for UdpFactory {
        async fn open(&self, _delivery: DeliveryOptions) -> Result<Arc<dyn Backend>> {
            // loopback only: interface 127.0.0.1, multicast loop on, TTL 0
            Ok(Arc::new(UdpBackend::open(UdpOptions::loopback(self.port))?))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn udp_best_effort_subset() {
        let port = plexspaces_test_util::free_port().expect("port");
        conformance::run_best_effort(&UdpFactory { port }).await;
    }
}
