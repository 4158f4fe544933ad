//! The conformance suite every [`Backend`] must pass (feature `conformance`).
//!
//! A test provides a [`Factory`] and calls [`run_all`] (or, for UDP multicast,
//! [`run_best_effort`]) from a multi-threaded tokio test against the real server. The
//! suite never assumes an empty server: every case uses channels under a tenant of its
//! own.
//!
//! This is test support: failures panic with the case and backend named.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{
    Backend, ChannelId, Channels, Delivery, DeliveryOptions, Error, Outgoing, Receipt, Result,
};

/// Opens backends for the suite.
#[async_trait]
pub trait Factory: Send + Sync {
    /// A backend instance with this redelivery policy. Several calls give several instances
    /// over the same storage (as several processes would have).
    async fn open(&self, delivery: DeliveryOptions) -> Result<Arc<dyn Backend>>;
}

/// The visibility timeout the redelivery cases use.
pub const SHORT_VISIBILITY: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(10);
const QUICK: Duration = Duration::from_millis(100);

/// A channel in a tenant no other case (or run) uses.
pub fn fresh_channel(name: &str) -> ChannelId {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    ChannelId::new(
        &format!(
            "t{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ),
        "ns",
        name,
    )
    .expect("valid channel id")
}

fn long() -> DeliveryOptions {
    DeliveryOptions {
        visibility_timeout: Duration::from_secs(60),
        max_deliveries: 5,
    }
}

fn short(max_deliveries: u32) -> DeliveryOptions {
    DeliveryOptions {
        visibility_timeout: SHORT_VISIBILITY,
        max_deliveries,
    }
}

async fn channels(f: &dyn Factory, delivery: DeliveryOptions) -> Channels {
    Channels::new(f.open(delivery).await.expect("backend opens"))
}

fn payloads(ds: &[Delivery]) -> Vec<Bytes> {
    ds.iter().map(|d| d.message.payload.clone()).collect()
}

/// Receive until `n` deliveries arrived (or `LONG` passed), acking each.
async fn drain(c: &crate::Consumer, n: usize) -> Vec<Delivery> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + LONG;
    while got.len() < n && tokio::time::Instant::now() < deadline {
        for d in c
            .receive(n - got.len(), Duration::from_secs(1))
            .await
            .expect("receive")
        {
            c.ack(&d).await.expect("ack");
            got.push(d);
        }
    }
    got
}

/// Every case, for the backends that acknowledge (all but UDP).
pub async fn run_all(f: &dyn Factory) {
    queue_roundtrip_in_order(f).await;
    queue_keeps_messages_until_a_consumer_comes(f).await;
    queue_competing_consumers_each_get_distinct_messages(f).await;
    topic_fans_out_to_every_group(f).await;
    topic_group_consumers_compete(f).await;
    unacked_delivery_comes_back_after_visibility_timeout(f).await;
    nack_redelivers(f).await;
    poison_message_ends_in_dead_letters(f).await;
    channels_are_scoped(f).await;
    bad_input(f).await;
}

/// The subset best-effort backends (UDP multicast) promise: topic fan-out to every group,
/// and typed refusals of the rest.
pub async fn run_best_effort(f: &dyn Factory) {
    let name = f.open(long()).await.expect("open").name();
    let ch = channels(f, long()).await;
    let topic = ch.topic(fresh_channel("events"));
    let a = topic.subscribe("ga", "c1").await.expect("subscribe a");
    let b = topic.subscribe("gb", "c1").await.expect("subscribe b");
    let other = ch.topic(fresh_channel("events"));
    let o = other.subscribe("ga", "c1").await.expect("subscribe other");
    for i in 0..5 {
        topic
            .publish(Outgoing::new(format!("e{i}")).header("n", &i.to_string()))
            .await
            .expect("publish");
    }
    for c in [&a, &b] {
        let got = drain(c, 5).await;
        assert_eq!(
            payloads(&got),
            (0..5)
                .map(|i| Bytes::from(format!("e{i}")))
                .collect::<Vec<_>>(),
            "{name}: every group gets every datagram (loopback does not drop these few)"
        );
        assert_eq!(
            got[3].message.headers.get("n").map(String::as_str),
            Some("3")
        );
    }
    assert!(
        o.receive(10, QUICK).await.expect("receive").is_empty(),
        "{name}: another channel's datagrams are filtered out"
    );
    let queue = ch.queue(fresh_channel("q"));
    assert!(matches!(
        queue.publish(Outgoing::new("x")).await,
        Err(Error::Unsupported(_))
    ));
    topic.publish(Outgoing::new("last")).await.expect("publish");
    let d = a
        .receive_one(LONG)
        .await
        .expect("receive")
        .expect("delivered");
    assert!(matches!(
        a.nack(&d, Duration::ZERO).await,
        Err(Error::Unsupported(_))
    ));
    a.ack(&d).await.expect("ack is accepted");
    assert!(matches!(
        topic.dead_letters("ga", 10).await,
        Err(Error::Unsupported(_))
    ));
}

async fn queue_roundtrip_in_order(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    let q = ch.queue(fresh_channel("jobs"));
    let c = q.consumer("w1").await.expect("consumer");
    let mut ids = BTreeSet::new();
    for i in 0..3 {
        let id = q
            .publish(Outgoing::new(format!("m{i}")).header("k", &format!("v{i}")))
            .await
            .expect("publish");
        ids.insert(id);
    }
    assert_eq!(ids.len(), 3, "{b}: distinct message ids");
    let got = drain(&c, 3).await;
    assert_eq!(
        payloads(&got),
        ["m0", "m1", "m2"],
        "{b}: one consumer sees publish order"
    );
    assert!(got.iter().all(|d| d.attempt == 1), "{b}: first delivery");
    assert_eq!(
        got[2].message.headers.get("k").map(String::as_str),
        Some("v2"),
        "{b}: headers travel"
    );
    assert!(
        c.receive(10, QUICK).await.expect("receive").is_empty(),
        "{b}: all acked"
    );
    // binary and empty payloads
    q.publish(Outgoing::new(Bytes::from_static(&[0, 255, 1])))
        .await
        .expect("publish");
    q.publish(Outgoing::new(Bytes::new()))
        .await
        .expect("publish");
    let got = drain(&c, 2).await;
    assert_eq!(
        payloads(&got),
        [&[0u8, 255, 1][..], &[][..]],
        "{b}: bytes round-trip"
    );
}

async fn queue_keeps_messages_until_a_consumer_comes(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    let id = fresh_channel("early");
    ch.queue(id.clone())
        .publish(Outgoing::new("waiting"))
        .await
        .expect("publish");
    // another instance (another process) consumes it
    let later = channels(f, long()).await;
    let c = later.queue(id).consumer("late").await.expect("consumer");
    let got = drain(&c, 1).await;
    assert_eq!(
        payloads(&got),
        ["waiting"],
        "{b}: a queue keeps messages for consumers to come"
    );
}

async fn queue_competing_consumers_each_get_distinct_messages(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    let id = fresh_channel("work");
    let q = ch.queue(id.clone());
    let other = channels(f, long()).await;
    let c1 = q.consumer("c1").await.expect("consumer");
    let c2 = other.queue(id).consumer("c2").await.expect("consumer");
    const N: usize = 40;
    for i in 0..N {
        q.publish(Outgoing::new(format!("{i}")))
            .await
            .expect("publish");
    }
    let seen = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let work = [c1, c2].map(|c| {
        let seen = seen.clone();
        tokio::spawn(async move {
            loop {
                let ds = c
                    .receive(3, Duration::from_millis(500))
                    .await
                    .expect("receive");
                if ds.is_empty() {
                    return;
                }
                for d in ds {
                    seen.lock()
                        .push((c.group().to_owned(), d.message.payload.clone()));
                    c.ack(&d).await.expect("ack");
                }
            }
        })
    });
    for w in work {
        w.await.expect("worker ran");
    }
    let seen = seen.lock();
    let distinct: BTreeSet<_> = seen.iter().map(|(_, p)| p.clone()).collect();
    assert_eq!(seen.len(), N, "{b}: no message delivered twice while held");
    assert_eq!(distinct.len(), N, "{b}: every message delivered");
}

async fn topic_fans_out_to_every_group(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    let t = ch.topic(fresh_channel("events"));
    let g1 = t.subscribe("billing", "c").await.expect("subscribe");
    let g2 = t.subscribe("audit", "c").await.expect("subscribe");
    for i in 0..5 {
        t.publish(Outgoing::new(format!("e{i}")))
            .await
            .expect("publish");
    }
    let late = t.subscribe("late", "c").await.expect("subscribe");
    t.publish(Outgoing::new("e5")).await.expect("publish");
    let all: Vec<String> = (0..6).map(|i| format!("e{i}")).collect();
    for g in [&g1, &g2] {
        let got = drain(g, 6).await;
        assert_eq!(
            payloads(&got),
            all,
            "{b}: group {} gets every event",
            g.group()
        );
    }
    let got = drain(&late, 1).await;
    assert_eq!(payloads(&got), ["e5"], "{b}: a new group starts at the end");
    assert!(
        late.receive(10, QUICK).await.expect("receive").is_empty(),
        "{b}"
    );
}

async fn topic_group_consumers_compete(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    let t = ch.topic(fresh_channel("events"));
    let a = t.subscribe("g", "a").await.expect("subscribe");
    let c = t.subscribe("g", "b").await.expect("subscribe");
    for i in 0..6 {
        t.publish(Outgoing::new(format!("{i}")))
            .await
            .expect("publish");
    }
    let first = a.receive(3, LONG).await.expect("receive");
    assert!(!first.is_empty(), "{b}");
    let mut rest = Vec::new();
    let deadline = tokio::time::Instant::now() + LONG;
    while first.len() + rest.len() < 6 && tokio::time::Instant::now() < deadline {
        rest.extend(
            c.receive(6, Duration::from_millis(500))
                .await
                .expect("receive"),
        );
    }
    let mut all: Vec<Bytes> = payloads(&first);
    all.extend(payloads(&rest));
    all.sort();
    assert_eq!(all.len(), 6, "{b}: each message once within the group");
    all.dedup();
    assert_eq!(all.len(), 6, "{b}: no duplicates");
}

async fn unacked_delivery_comes_back_after_visibility_timeout(f: &dyn Factory) {
    let ch = channels(f, short(5)).await;
    let b = ch.backend_name();
    let id = fresh_channel("vt");
    let q = ch.queue(id.clone());
    q.publish(Outgoing::new("job")).await.expect("publish");
    let crashed = q.consumer("crashy").await.expect("consumer");
    let first = crashed
        .receive_one(LONG)
        .await
        .expect("receive")
        .expect("delivered");
    assert_eq!(first.attempt, 1);
    drop(crashed); // never acks: as if it died
    let other = channels(f, short(5)).await;
    let rescuer = other.queue(id).consumer("rescuer").await.expect("consumer");
    let again = rescuer
        .receive_one(LONG)
        .await
        .expect("receive")
        .expect("redelivered");
    assert_eq!(again.message.payload, "job", "{b}");
    assert_eq!(again.message.id, first.message.id, "{b}: the same message");
    assert_eq!(again.attempt, 2, "{b}: counted as a redelivery");
    rescuer.ack(&again).await.expect("ack");
    assert!(
        rescuer
            .receive(1, SHORT_VISIBILITY * 3)
            .await
            .expect("receive")
            .is_empty(),
        "{b}: acked for good"
    );
}

async fn nack_redelivers(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    let q = ch.queue(fresh_channel("nack"));
    let c = q.consumer("c").await.expect("consumer");
    q.publish(Outgoing::new("retry me")).await.expect("publish");
    let d = c
        .receive_one(LONG)
        .await
        .expect("receive")
        .expect("delivered");
    c.nack(&d, Duration::ZERO).await.expect("nack");
    let again = c
        .receive_one(LONG)
        .await
        .expect("receive")
        .expect("redelivered");
    assert_eq!(again.message.id, d.message.id, "{b}");
    assert_eq!(again.attempt, 2, "{b}");
    c.ack(&again).await.expect("ack");
    assert!(
        matches!(
            c.ack(&Delivery {
                receipt: Receipt("999999999".into()),
                ..again.clone()
            })
            .await,
            Err(Error::UnknownReceipt(_))
        ),
        "{b}: unknown receipt"
    );
}

async fn poison_message_ends_in_dead_letters(f: &dyn Factory) {
    const MAX: u32 = 3;
    let ch = channels(f, short(MAX)).await;
    let b = ch.backend_name();
    let q = ch.queue(fresh_channel("poison"));
    let c = q.consumer("c").await.expect("consumer");
    q.publish(Outgoing::new("poison").header("why", "bad"))
        .await
        .expect("publish");
    q.publish(Outgoing::new("fine")).await.expect("publish");
    let mut poison_deliveries = 0;
    let mut fine = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        for d in c
            .receive(5, Duration::from_millis(200))
            .await
            .expect("receive")
        {
            if d.message.payload == "poison" {
                poison_deliveries += 1;
                assert_eq!(d.attempt, poison_deliveries, "{b}: attempts count up");
                c.nack(&d, Duration::ZERO).await.expect("nack");
            } else {
                fine += 1;
                c.ack(&d).await.expect("ack");
            }
        }
        if !q.dead_letters(10).await.expect("dead letters").is_empty() {
            break;
        }
    }
    assert_eq!(
        poison_deliveries, MAX,
        "{b}: delivered exactly max_deliveries times"
    );
    assert_eq!(fine, 1, "{b}: the good message was processed once");
    let dead = q.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1, "{b}");
    assert_eq!(dead[0].message.payload, "poison", "{b}");
    assert_eq!(dead[0].deliveries, MAX, "{b}");
    assert_eq!(
        dead[0].message.headers.get("why").map(String::as_str),
        Some("bad")
    );
    assert!(
        c.receive(5, SHORT_VISIBILITY * 2)
            .await
            .expect("receive")
            .is_empty(),
        "{b}: a dead letter is not delivered again"
    );
}

async fn channels_are_scoped(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    let a = fresh_channel("same");
    let other = ChannelId::new(a.tenant(), "other-ns", "same").expect("id");
    let qa = ch.queue(a);
    let qo = ch.queue(other);
    let ca = qa.consumer("c").await.expect("consumer");
    let co = qo.consumer("c").await.expect("consumer");
    qa.publish(Outgoing::new("for a")).await.expect("publish");
    assert_eq!(payloads(&drain(&ca, 1).await), ["for a"], "{b}");
    assert!(
        co.receive(5, QUICK).await.expect("receive").is_empty(),
        "{b}: scoped"
    );
}

async fn bad_input(f: &dyn Factory) {
    let ch = channels(f, long()).await;
    let b = ch.backend_name();
    for (t, n, c) in [
        ("", "n", "c"),
        ("a.b", "n", "c"),
        ("t", "n", "a b"),
        ("t", "n:x", "c"),
    ] {
        assert!(
            matches!(ChannelId::new(t, n, c), Err(Error::Invalid { .. })),
            "{b}: {t:?}/{n:?}/{c:?}"
        );
    }
    let t = ch.topic(fresh_channel("bad"));
    assert!(
        matches!(t.subscribe("a b", "c").await, Err(Error::Invalid { .. })),
        "{b}"
    );
    assert!(
        matches!(t.subscribe("g", "").await, Err(Error::Invalid { .. })),
        "{b}"
    );
    assert!(
        matches!(
            t.subscribe(crate::QUEUE_GROUP, "c").await,
            Err(Error::Invalid { .. })
        ),
        "{b}: reserved group"
    );
}
