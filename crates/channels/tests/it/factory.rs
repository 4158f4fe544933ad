//! The factory picks among configured backends in priority order.

use plexspaces_channels::factory::{self, KafkaConfig, NatsConfig, RedisConfig, SqliteConfig};
use plexspaces_channels::{BackendKind, ChannelsConfig, Error};

#[test]
fn priority_order_among_configured_backends() {
    let mut c = ChannelsConfig::default();
    assert_eq!(c.pick().expect("pick"), BackendKind::Memory);
    c.sqlite = Some(SqliteConfig {
        path: "x.db".into(),
    });
    assert_eq!(c.pick().expect("pick"), BackendKind::Sqlite);
    c.redis = Some(RedisConfig {
        url: "redis://127.0.0.1:6379/".into(),
        prefix: "p".into(),
    });
    assert_eq!(c.pick().expect("pick"), BackendKind::Redis);
    c.nats = Some(NatsConfig {
        url: "nats://127.0.0.1:4222".into(),
        prefix: "p".into(),
    });
    assert_eq!(c.pick().expect("pick"), BackendKind::Nats);
    c.kafka = Some(KafkaConfig::default());
    assert_eq!(c.pick().expect("pick"), BackendKind::Kafka);
    c.prefer = Some(BackendKind::Sqlite);
    assert_eq!(c.pick().expect("pick"), BackendKind::Sqlite);
    c.prefer = Some(BackendKind::Udp);
    assert!(
        matches!(c.pick(), Err(Error::Invalid { .. })),
        "udp not configured"
    );
}

/// Without the `kafka` feature a Kafka config is refused, not replaced by another backend.
#[cfg(not(feature = "kafka"))]
#[tokio::test]
async fn kafka_is_refused_not_replaced() {
    let c = ChannelsConfig {
        kafka: Some(KafkaConfig {
            brokers: vec!["127.0.0.1:9092".into()],
            prefix: String::new(),
        }),
        ..Default::default()
    };
    assert!(matches!(
        factory::open(&c).await,
        Err(Error::Unsupported(_))
    ));
}

/// With it, the factory opens Kafka ahead of the other configured backends, and the
/// channels work end to end on the broker.
#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_opens_kafka_first() {
    use plexspaces_channels::{ChannelId, Outgoing};
    use std::time::Duration;
    let broker = crate::kafka::broker().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let c = ChannelsConfig {
        kafka: Some(KafkaConfig {
            brokers: vec![broker.addr().to_owned()],
            prefix: plexspaces_test_util::unique_name("fac"),
        }),
        sqlite: Some(SqliteConfig {
            path: dir.path().join("c.db"),
        }),
        ..Default::default()
    };
    let ch = factory::open(&c).await.expect("open");
    assert_eq!(ch.backend_name(), "kafka");
    let q = ch.queue(ChannelId::new("t", "n", "jobs").expect("id"));
    let w = q.consumer("w").await.expect("consumer");
    q.publish(Outgoing::new("hello")).await.expect("publish");
    let d = w
        .receive_one(Duration::from_secs(10))
        .await
        .expect("receive")
        .expect("delivered");
    assert_eq!(d.message.payload, "hello");
    w.ack(&d).await.expect("ack");
}

/// An unreachable broker is `Unavailable` (retryable), within the connect timeout.
#[cfg(feature = "kafka")]
#[tokio::test]
async fn an_unreachable_kafka_broker_is_unavailable() {
    let port = plexspaces_test_util::free_port().expect("port");
    let mut o = plexspaces_channels::KafkaOptions::new(vec![format!("127.0.0.1:{port}")]);
    o.timeout = std::time::Duration::from_secs(2);
    let e = plexspaces_channels::KafkaBackend::connect(o)
        .await
        .expect_err("nothing listens");
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test]
async fn the_default_is_in_memory_and_sqlite_opens_when_configured() {
    let ch = factory::open(&ChannelsConfig::default())
        .await
        .expect("open");
    assert_eq!(ch.backend_name(), "memory");
    let dir = tempfile::tempdir().expect("tempdir");
    let c = ChannelsConfig {
        sqlite: Some(SqliteConfig {
            path: dir.path().join("c.db"),
        }),
        ..Default::default()
    };
    let opened = factory::open(&c).await;
    if cfg!(feature = "sqlite") {
        assert_eq!(opened.expect("open").backend_name(), "sqlite");
    } else {
        assert!(matches!(opened, Err(Error::Unsupported(_))));
    }
}
