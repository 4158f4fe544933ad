//! A consumer process killed with SIGKILL mid-message: its message comes back to another
//! consumer after the visibility timeout. The child is this test binary, run with one
//! ignored test selected (as crates/tuplespace does).

#![allow(unused_imports)]

use std::sync::Arc;
use std::time::Duration;

use plexspaces_channels::conformance::Factory;
use plexspaces_channels::{ChannelId, Channels, DeliveryOptions, Outgoing};
use tokio::io::{AsyncBufReadExt, BufReader};

const VISIBILITY: Duration = Duration::from_secs(1);

fn delivery() -> DeliveryOptions {
    DeliveryOptions {
        visibility_timeout: VISIBILITY,
        max_deliveries: 5,
    }
}

#[allow(dead_code)]
async fn factory(kind: &str, target: &str) -> Box<dyn Factory> {
    match kind {
        #[cfg(feature = "sqlite")]
        "sqlite" => Box::new(crate::sqlite::SqliteFactory {
            path: target.into(),
        }),
        #[cfg(feature = "redis")]
        "redis" => Box::new(crate::redis_backend::RedisFactory {
            prefix: target.to_owned(),
        }),
        #[cfg(feature = "nats")]
        "nats" => Box::new(crate::nats::NatsFactory {
            prefix: target.to_owned(),
        }),
        #[cfg(feature = "kafka")]
        "kafka" => Box::new(crate::kafka::KafkaFactory::parse(target)),
        other => panic!("no backend {other} in this build"),
    }
}

/// Child half: take one message without acking, say so, wait to be killed.
#[tokio::test]
#[ignore = "run as a child process by the *_consumer_killed_mid_message tests"]
async fn channel_child_consumer() {
    let (Ok(kind), Ok(target), Ok(channel)) = (
        std::env::var("CHANNELS_CHILD_KIND"),
        std::env::var("CHANNELS_CHILD_TARGET"),
        std::env::var("CHANNELS_CHILD_CHANNEL"),
    ) else {
        return;
    };
    let f = factory(&kind, &target).await;
    let ch = Channels::new(f.open(delivery()).await.expect("open"));
    let q = ch.queue(ChannelId::new("crash", "ns", &channel).expect("id"));
    let c = q.consumer("child").await.expect("consumer");
    let d = c
        .receive_one(Duration::from_secs(30))
        .await
        .expect("receive")
        .expect("a message");
    println!("CHILD-GOT {}", d.message.id);
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

#[allow(dead_code)]
async fn killed_mid_message(kind: &str, target: &str) {
    let channel = plexspaces_test_util::unique_name("q").replace('_', "-");
    let f = factory(kind, target).await;
    let ch = Channels::new(f.open(delivery()).await.expect("open"));
    let q = ch.queue(ChannelId::new("crash", "ns", &channel).expect("id"));
    let sent = q
        .publish(Outgoing::new("work item"))
        .await
        .expect("publish");

    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "crash::channel_child_consumer",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("CHANNELS_CHILD_KIND", kind)
        .env("CHANNELS_CHILD_TARGET", target)
        .env("CHANNELS_CHILD_CHANNEL", &channel)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut got = None;
    while let Some(line) = lines.next_line().await.expect("child output") {
        // libtest prints the test name on the same line first
        if let Some((_, id)) = line.split_once("CHILD-GOT ") {
            got = Some(id.trim().to_owned());
            break;
        }
    }
    let got = got.expect("child took the message");
    // SIGKILL: no destructor, no ack, no goodbye
    child.kill().await.expect("kill -9 child");
    let status = child.wait().await.expect("reap child");
    assert!(!status.success(), "child was killed, not finished");

    let c = q.consumer("survivor").await.expect("consumer");
    let d = c
        .receive_one(Duration::from_secs(30))
        .await
        .expect("receive")
        .expect("the killed consumer's message comes back");
    assert_eq!(d.message.id, got, "{kind}: the same message");
    assert_eq!(d.message.payload, "work item");
    assert!(
        d.attempt >= 2,
        "{kind}: a redelivery, attempt {}",
        d.attempt
    );
    c.ack(&d).await.expect("ack");
    let _ = sent;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_consumer_killed_mid_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    killed_mid_message("sqlite", path.to_str().expect("utf8 path")).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_consumer_killed_mid_message() {
    let prefix = plexspaces_test_util::unique_name("chcrash");
    killed_mid_message("redis", &prefix).await;
    crate::redis_backend::cleanup(&prefix).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_consumer_killed_mid_message() {
    let prefix = crate::nats::prefix();
    killed_mid_message("nats", &prefix).await;
    crate::nats::cleanup(&prefix).await;
}

#[cfg(feature = "kafka")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_killed_mid_message() {
    let broker = crate::kafka::broker().await;
    let prefix = plexspaces_test_util::unique_name("chcrash");
    killed_mid_message("kafka", &format!("{}/{prefix}", broker.addr())).await;
}
