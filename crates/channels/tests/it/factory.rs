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

#[tokio::test]
async fn kafka_is_refused_not_replaced() {
    let c = ChannelsConfig {
        kafka: Some(KafkaConfig {
            brokers: vec!["127.0.0.1:9092".into()],
        }),
        ..Default::default()
    };
    assert!(matches!(
        factory::open(&c).await,
        Err(Error::Unsupported(_))
    ));
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
