//! The conformance suites every backend must pass (feature `conformance`).
//!
//! Call [`key_value`], [`locks`] and [`blobs`] from a multi-threaded tokio test against the
//! real server. The suites never assume an empty server: every case works in a scope of
//! its own (a fresh namespace).
//!
//! This is test support: failures panic with the case and backend named.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::{Blobs, Cas, Error, KeyValue, Locks, PutOptions, Scope, Versioned};

/// A scope no other case (or run) uses.
pub fn fresh_scope(tenant: &str) -> Scope {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Scope::new(
        tenant,
        &format!(
            "ns-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ),
    )
    .expect("valid scope")
}

/// Poll `cond` every 10 ms for up to 20 seconds.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..2000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never held: {what}");
}

fn value(v: &[u8], version: u64) -> Option<Versioned> {
    Some(Versioned {
        value: v.to_vec(),
        version,
    })
}

/// Every key-value case.
pub async fn key_value(kv: Arc<dyn KeyValue>) {
    let kv = kv.as_ref();
    kv_basic(kv).await;
    kv_scopes_are_isolated(kv).await;
    kv_list_by_prefix(kv).await;
    kv_compare_and_swap(kv).await;
    kv_cas_concurrent_writers_lose_nothing(kv, 50).await;
    kv_increment(kv).await;
    kv_ttl(kv).await;
    kv_fence(kv).await;
    kv_bad_input(kv).await;
}

async fn kv_basic(kv: &dyn KeyValue) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    assert_eq!(kv.get(&s, "k").await.expect("get"), None, "{b}: missing");
    let none = PutOptions::default();
    assert_eq!(kv.put(&s, "k", b"one", none).await.expect("put"), 1, "{b}");
    assert_eq!(kv.get(&s, "k").await.expect("get"), value(b"one", 1), "{b}");
    assert_eq!(kv.put(&s, "k", b"two", none).await.expect("put"), 2, "{b}");
    assert_eq!(kv.get(&s, "k").await.expect("get"), value(b"two", 2), "{b}");
    // binary values and unicode keys round-trip
    let bin: Vec<u8> = (0..=255u8).collect();
    kv.put(&s, "ключ/ü", &bin, none).await.expect("put bin");
    assert_eq!(
        kv.get(&s, "ключ/ü").await.expect("get").map(|v| v.value),
        Some(bin),
        "{b}: binary"
    );
    kv.put(&s, "empty", b"", none).await.expect("put empty");
    assert_eq!(
        kv.get(&s, "empty").await.expect("get"),
        value(b"", 1),
        "{b}"
    );
    assert!(kv.delete(&s, "k").await.expect("delete"), "{b}: existed");
    assert!(!kv.delete(&s, "k").await.expect("delete"), "{b}: gone");
    assert_eq!(kv.get(&s, "k").await.expect("get"), None, "{b}: deleted");
    // re-created after delete: version starts again
    assert_eq!(kv.put(&s, "k", b"3", none).await.expect("put"), 1, "{b}");
}

async fn kv_scopes_are_isolated(kv: &dyn KeyValue) {
    let b = kv.backend();
    let a = fresh_scope("tenant-a");
    let other_tenant = Scope::new("tenant-b", a.namespace()).expect("scope");
    let other_ns = fresh_scope("tenant-a");
    let none = PutOptions::default();
    kv.put(&a, "shared", b"a", none).await.expect("put");
    kv.put(&other_tenant, "shared", b"b", none)
        .await
        .expect("put");
    assert_eq!(
        kv.get(&a, "shared").await.expect("get"),
        value(b"a", 1),
        "{b}"
    );
    assert_eq!(
        kv.get(&other_tenant, "shared").await.expect("get"),
        value(b"b", 1),
        "{b}"
    );
    assert_eq!(kv.get(&other_ns, "shared").await.expect("get"), None, "{b}");
    assert_eq!(
        kv.list(&other_ns, "", 100).await.expect("list"),
        vec![],
        "{b}"
    );
    assert!(kv.delete(&other_tenant, "shared").await.expect("delete"));
    assert_eq!(
        kv.get(&a, "shared").await.expect("get"),
        value(b"a", 1),
        "{b}"
    );
}

async fn kv_list_by_prefix(kv: &dyn KeyValue) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    let none = PutOptions::default();
    for k in ["b/1", "a/2", "a/1", "a", "ab", "x*1", "x%1", "x_1", "xy"] {
        kv.put(&s, k, k.as_bytes(), none).await.expect("put");
    }
    let keys = |v: Vec<(String, Versioned)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(kv.list(&s, "a/", 100).await.expect("list")),
        ["a/1", "a/2"],
        "{b}"
    );
    assert_eq!(
        keys(kv.list(&s, "a", 100).await.expect("list")),
        ["a", "a/1", "a/2", "ab"],
        "{b}"
    );
    assert_eq!(
        keys(kv.list(&s, "a", 2).await.expect("list")),
        ["a", "a/1"],
        "{b}"
    );
    // glob and LIKE characters in a prefix are literal
    assert_eq!(
        keys(kv.list(&s, "x*", 100).await.expect("list")),
        ["x*1"],
        "{b}"
    );
    assert_eq!(
        keys(kv.list(&s, "x%", 100).await.expect("list")),
        ["x%1"],
        "{b}"
    );
    assert_eq!(
        keys(kv.list(&s, "x_", 100).await.expect("list")),
        ["x_1"],
        "{b}"
    );
    let all = kv.list(&s, "", 100).await.expect("list");
    assert_eq!(all.len(), 9, "{b}");
    assert_eq!(
        all[0],
        (
            "a".to_owned(),
            Versioned {
                value: b"a".to_vec(),
                version: 1
            }
        )
    );
    assert!(
        all.windows(2).all(|w| w[0].0 < w[1].0),
        "{b}: listed in key order"
    );
}

async fn kv_compare_and_swap(kv: &dyn KeyValue) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    assert_eq!(
        kv.compare_and_swap(&s, "c", Some(1), b"x", None)
            .await
            .expect("cas"),
        Cas::Conflict { current: None },
        "{b}: missing key with a version"
    );
    assert_eq!(
        kv.compare_and_swap(&s, "c", None, b"v1", None)
            .await
            .expect("cas"),
        Cas::Swapped { version: 1 },
        "{b}: create"
    );
    assert_eq!(
        kv.compare_and_swap(&s, "c", None, b"again", None)
            .await
            .expect("cas"),
        Cas::Conflict { current: Some(1) },
        "{b}: create twice"
    );
    assert_eq!(
        kv.compare_and_swap(&s, "c", Some(1), b"v2", None)
            .await
            .expect("cas"),
        Cas::Swapped { version: 2 },
        "{b}"
    );
    assert_eq!(
        kv.compare_and_swap(&s, "c", Some(1), b"stale", None)
            .await
            .expect("cas"),
        Cas::Conflict { current: Some(2) },
        "{b}: stale version"
    );
    assert_eq!(kv.get(&s, "c").await.expect("get"), value(b"v2", 2), "{b}");
}

/// `writers` tasks each add 1 to a counter three times through get + compare-and-swap;
/// every update must land.
pub async fn kv_cas_concurrent_writers_lose_nothing(kv: &dyn KeyValue, writers: u64) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    const EACH: u64 = 3;
    let conflicts = AtomicU64::new(0);
    let work = (0..writers).map(|_| async {
        for _ in 0..EACH {
            loop {
                let cur = kv.get(&s, "counter").await.expect("get");
                let (n, expected) = match cur {
                    None => (0u64, None),
                    Some(v) => (
                        std::str::from_utf8(&v.value)
                            .expect("utf8")
                            .parse::<u64>()
                            .expect("number"),
                        Some(v.version),
                    ),
                };
                let next = (n + 1).to_string();
                match kv
                    .compare_and_swap(&s, "counter", expected, next.as_bytes(), None)
                    .await
                    .expect("cas")
                {
                    Cas::Swapped { .. } => break,
                    Cas::Conflict { .. } => {
                        conflicts.fetch_add(1, Ordering::Relaxed);
                        tokio::task::yield_now().await;
                    }
                }
            }
        }
    });
    futures::future::join_all(work).await;
    let total = writers * EACH;
    assert_eq!(
        kv.get(&s, "counter").await.expect("get"),
        value(total.to_string().as_bytes(), total),
        "{b}: {writers} concurrent CAS writers ({} conflicts retried)",
        conflicts.load(Ordering::Relaxed)
    );
}

async fn kv_increment(kv: &dyn KeyValue) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    assert_eq!(kv.increment(&s, "n", 5).await.expect("incr"), 5, "{b}");
    assert_eq!(kv.increment(&s, "n", -7).await.expect("incr"), -2, "{b}");
    assert_eq!(
        kv.get(&s, "n").await.expect("get").map(|v| v.value),
        Some(b"-2".to_vec()),
        "{b}: stored as decimal"
    );
    kv.put(&s, "text", b"abc", PutOptions::default())
        .await
        .expect("put");
    assert!(
        matches!(
            kv.increment(&s, "text", 1).await,
            Err(Error::NotAnInteger { .. })
        ),
        "{b}: not a number"
    );
    kv.put(
        &s,
        "big",
        i64::MAX.to_string().as_bytes(),
        PutOptions::default(),
    )
    .await
    .expect("put");
    assert!(
        matches!(
            kv.increment(&s, "big", 1).await,
            Err(Error::NotAnInteger { .. })
        ),
        "{b}: overflow"
    );
    let work = (0..20).map(|_| kv.increment(&s, "shared", 1));
    for r in futures::future::join_all(work).await {
        r.expect("concurrent incr");
    }
    assert_eq!(
        kv.increment(&s, "shared", 0).await.expect("incr"),
        20,
        "{b}"
    );
}

async fn kv_ttl(kv: &dyn KeyValue) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    let short = PutOptions {
        ttl: Some(Duration::from_millis(300)),
        fence: None,
    };
    kv.put(&s, "gone", b"x", short).await.expect("put");
    kv.put(&s, "kept", b"x", short).await.expect("put");
    // a later write without a TTL clears the expiry
    kv.put(&s, "kept", b"y", PutOptions::default())
        .await
        .expect("put");
    assert!(
        kv.get(&s, "gone").await.expect("get").is_some(),
        "{b}: live"
    );
    eventually(&format!("{b}: key expires"), || async {
        kv.get(&s, "gone").await.expect("get").is_none()
    })
    .await;
    assert_eq!(
        kv.get(&s, "kept").await.expect("get"),
        value(b"y", 2),
        "{b}"
    );
    let listed = kv.list(&s, "", 10).await.expect("list");
    assert_eq!(listed.len(), 1, "{b}: expired key not listed");
    assert_eq!(
        kv.compare_and_swap(&s, "gone", None, b"new", None)
            .await
            .expect("cas"),
        Cas::Swapped { version: 1 },
        "{b}: an expired key counts as missing"
    );
}

async fn kv_fence(kv: &dyn KeyValue) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    let fenced = |fence| PutOptions {
        ttl: None,
        fence: Some(fence),
    };
    kv.put(&s, "f", b"5", fenced(5)).await.expect("put 5");
    match kv.put(&s, "f", b"4", fenced(4)).await {
        Err(Error::Fenced { given: 4, seen: 5 }) => {}
        other => panic!("{b}: stale fence accepted: {other:?}"),
    }
    assert_eq!(kv.get(&s, "f").await.expect("get"), value(b"5", 1), "{b}");
    kv.put(&s, "f", b"5b", fenced(5)).await.expect("same token");
    kv.put(&s, "f", b"6", fenced(6)).await.expect("newer token");
    assert!(
        matches!(
            kv.put(&s, "f", b"5", fenced(5)).await,
            Err(Error::Fenced { .. })
        ),
        "{b}: fence rose to 6"
    );
}

async fn kv_bad_input(kv: &dyn KeyValue) {
    let b = kv.backend();
    let s = fresh_scope("t1");
    for key in ["", "a\nb", &"k".repeat(crate::MAX_KEY_LEN + 1)] {
        assert!(
            matches!(kv.get(&s, key).await, Err(Error::Invalid { .. })),
            "{b}: get {key:?}"
        );
        assert!(
            matches!(
                kv.put(&s, key, b"x", PutOptions::default()).await,
                Err(Error::Invalid { .. })
            ),
            "{b}: put {key:?}"
        );
    }
    assert!(matches!(
        kv.list(&s, "a\0", 10).await,
        Err(Error::Invalid { .. })
    ));
    for (t, n) in [("", "n"), ("a:b", "n"), ("t", "a/b"), ("t", "..")] {
        assert!(
            matches!(Scope::new(t, n), Err(Error::Invalid { .. })),
            "scope {t:?}/{n:?}"
        );
    }
}

/// Every lock case; `kv` is a store of the same backend, for the fencing case.
pub async fn locks(locks: Arc<dyn Locks>, kv: Arc<dyn KeyValue>) {
    let l = locks.as_ref();
    lock_exclusive(l).await;
    lock_lease_lapses(l).await;
    lock_renew(l).await;
    lock_fencing_rejects_stale_holder(l, kv.as_ref()).await;
    lock_mutual_exclusion(l, kv.as_ref()).await;
    lock_bad_input(l).await;
}

async fn lock_exclusive(l: &dyn Locks) {
    let b = l.backend();
    let s = fresh_scope("t1");
    let long = Duration::from_secs(30);
    let a = l
        .try_acquire(&s, "L", "a", long)
        .await
        .expect("acquire")
        .expect("free");
    assert_eq!((a.lock.as_str(), a.holder.as_str()), ("L", "a"));
    assert_eq!(
        l.try_acquire(&s, "L", "b", long).await.expect("try"),
        None,
        "{b}: held"
    );
    assert_eq!(
        l.try_acquire(&s, "L", "a", long).await.expect("try"),
        None,
        "{b}: not re-entrant"
    );
    // another scope has its own lock of the same name
    let other = fresh_scope("t2");
    assert!(
        l.try_acquire(&other, "L", "b", long)
            .await
            .expect("try")
            .is_some(),
        "{b}"
    );
    assert!(l.release(&s, &a).await.expect("release"), "{b}: held");
    assert!(!l.release(&s, &a).await.expect("release"), "{b}: twice");
    let b2 = l
        .try_acquire(&s, "L", "b", long)
        .await
        .expect("acquire")
        .expect("free");
    assert!(
        b2.token > a.token,
        "{b}: tokens grow ({} then {})",
        a.token,
        b2.token
    );
    // the old lease cannot release the new holder's lock
    assert!(
        !l.release(&s, &a).await.expect("release"),
        "{b}: stale release"
    );
    assert!(
        l.try_acquire(&s, "L", "c", long)
            .await
            .expect("try")
            .is_none(),
        "{b}"
    );
}

async fn lock_lease_lapses(l: &dyn Locks) {
    let b = l.backend();
    let s = fresh_scope("t1");
    let a = l
        .try_acquire(&s, "L", "a", Duration::from_millis(200))
        .await
        .expect("acquire")
        .expect("free");
    let mut taken = None;
    for _ in 0..2000 {
        if let Some(lease) = l
            .try_acquire(&s, "L", "b", Duration::from_secs(30))
            .await
            .expect("try")
        {
            taken = Some(lease);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let taken = taken.unwrap_or_else(|| panic!("{b}: lapsed lease never freed the lock"));
    assert!(taken.token > a.token, "{b}");
    assert!(
        matches!(
            l.renew(&s, &a, Duration::from_secs(30)).await,
            Err(Error::LeaseLost { .. })
        ),
        "{b}: renew after takeover"
    );
    assert!(!l.release(&s, &a).await.expect("release"), "{b}");
    assert!(l.release(&s, &taken).await.expect("release"), "{b}");
}

async fn lock_renew(l: &dyn Locks) {
    let b = l.backend();
    let s = fresh_scope("t1");
    let a = l
        .try_acquire(&s, "L", "a", Duration::from_secs(5))
        .await
        .expect("acquire")
        .expect("free");
    l.renew(&s, &a, Duration::from_secs(30))
        .await
        .expect("renew");
    assert!(
        l.try_acquire(&s, "L", "b", Duration::from_secs(1))
            .await
            .expect("try")
            .is_none(),
        "{b}: still held after renew"
    );
    let forged = crate::Lease {
        token: a.token + 100,
        ..a.clone()
    };
    assert!(matches!(
        l.renew(&s, &forged, Duration::from_secs(1)).await,
        Err(Error::LeaseLost { .. })
    ));
    assert!(l.release(&s, &a).await.expect("release"), "{b}");
    assert!(
        matches!(
            l.renew(&s, &a, Duration::from_secs(1)).await,
            Err(Error::LeaseLost { .. })
        ),
        "{b}: renew after release"
    );
}

/// The acceptance case: holder A's lease lapses, B takes the lock and writes; A, not
/// knowing, writes with its old token and is refused.
pub async fn lock_fencing_rejects_stale_holder(l: &dyn Locks, kv: &dyn KeyValue) {
    let b = l.backend();
    let s = fresh_scope("t1");
    let a = l
        .try_acquire(&s, "res", "a", Duration::from_millis(150))
        .await
        .expect("acquire")
        .expect("free");
    let fenced = |lease: &crate::Lease| PutOptions {
        ttl: None,
        fence: Some(lease.token),
    };
    kv.put(&s, "resource", b"from a", fenced(&a))
        .await
        .expect("a writes");
    let mut taken = None;
    for _ in 0..2000 {
        if let Some(lease) = l
            .try_acquire(&s, "res", "b", Duration::from_secs(30))
            .await
            .expect("try")
        {
            taken = Some(lease);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bl = taken.unwrap_or_else(|| panic!("{b}: lock never freed"));
    kv.put(&s, "resource", b"from b", fenced(&bl))
        .await
        .expect("b writes");
    match kv.put(&s, "resource", b"late a", fenced(&a)).await {
        Err(Error::Fenced { given, seen }) => {
            assert_eq!((given, seen), (a.token, bl.token), "{b}");
        }
        other => panic!("{b}: stale holder's write was not refused: {other:?}"),
    }
    assert_eq!(
        kv.get(&s, "resource").await.expect("get").map(|v| v.value),
        Some(b"from b".to_vec()),
        "{b}"
    );
}

async fn lock_mutual_exclusion(l: &dyn Locks, kv: &dyn KeyValue) {
    let b = l.backend();
    let s = fresh_scope("t1");
    const WORKERS: usize = 8;
    const ROUNDS: usize = 3;
    let work = (0..WORKERS).map(|w| {
        let s = &s;
        async move {
            let holder = format!("w{w}");
            for _ in 0..ROUNDS {
                let lease = l
                    .acquire(
                        s,
                        "m",
                        &holder,
                        Duration::from_secs(30),
                        Duration::from_secs(60),
                    )
                    .await
                    .expect("acquire")
                    .expect("got the lock in time");
                // an unguarded read-modify-write: only correct under mutual exclusion
                let n = kv
                    .get(s, "count")
                    .await
                    .expect("get")
                    .map(|v| {
                        String::from_utf8(v.value)
                            .expect("utf8")
                            .parse::<usize>()
                            .expect("n")
                    })
                    .unwrap_or(0);
                tokio::task::yield_now().await;
                kv.put(
                    s,
                    "count",
                    (n + 1).to_string().as_bytes(),
                    PutOptions::default(),
                )
                .await
                .expect("put");
                assert!(
                    l.release(s, &lease).await.expect("release"),
                    "held till release"
                );
            }
        }
    });
    futures::future::join_all(work).await;
    assert_eq!(
        kv.get(&s, "count").await.expect("get").map(|v| v.value),
        Some((WORKERS * ROUNDS).to_string().into_bytes()),
        "{b}: lock kept the read-modify-write exclusive"
    );
}

async fn lock_bad_input(l: &dyn Locks) {
    let s = fresh_scope("t1");
    assert!(matches!(
        l.try_acquire(&s, "", "a", Duration::from_secs(1)).await,
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        l.try_acquire(&s, "x", "", Duration::from_secs(1)).await,
        Err(Error::Invalid { .. })
    ));
    assert!(matches!(
        l.try_acquire(&s, "x", "a", Duration::ZERO).await,
        Err(Error::Invalid { .. })
    ));
}

/// Every blob case.
pub async fn blobs(blobs: &Blobs) {
    blob_basic(blobs).await;
    blob_streaming(blobs).await;
    blob_failed_stream_stores_nothing(blobs).await;
    blob_bad_keys(blobs).await;
}

async fn blob_basic(blobs: &Blobs) {
    let s = fresh_scope("t1");
    let other = Scope::new("t2", s.namespace()).expect("scope");
    let meta = blobs
        .put(&s, "docs/a.txt", Bytes::from_static(b"hello"))
        .await
        .expect("put");
    assert_eq!(meta.size, 5);
    blobs
        .put(&s, "docs/b.txt", Bytes::from_static(b"hi"))
        .await
        .expect("put");
    blobs
        .put(&s, "img/c.png", Bytes::from_static(b"png"))
        .await
        .expect("put");
    blobs
        .put(&other, "docs/a.txt", Bytes::from_static(b"other"))
        .await
        .expect("put");
    assert_eq!(blobs.get(&s, "docs/a.txt").await.expect("get"), "hello");
    assert_eq!(blobs.get(&other, "docs/a.txt").await.expect("get"), "other");
    assert_eq!(blobs.head(&s, "docs/b.txt").await.expect("head").size, 2);
    let keys: Vec<String> = blobs
        .list(&s, "docs/")
        .await
        .expect("list")
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["docs/a.txt", "docs/b.txt"]);
    assert_eq!(blobs.list(&s, "").await.expect("list").len(), 3);
    blobs
        .put(&s, "docs/a.txt", Bytes::from_static(b"v2"))
        .await
        .expect("overwrite");
    assert_eq!(blobs.get(&s, "docs/a.txt").await.expect("get"), "v2");
    blobs.delete(&s, "docs/a.txt").await.expect("delete");
    blobs.delete(&s, "docs/a.txt").await.expect("delete twice");
    assert!(matches!(
        blobs.get(&s, "docs/a.txt").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        blobs.head(&s, "nope").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(blobs.get(&other, "docs/a.txt").await.expect("get"), "other");
}

async fn blob_streaming(blobs: &Blobs) {
    let s = fresh_scope("t1");
    // 12 MiB in 64 KiB chunks: more than two upload parts
    let chunk = 64 * 1024;
    let chunks = 192usize;
    let make = |i: usize| {
        Bytes::from(
            (0..chunk)
                .map(|j| ((i * 31 + j) % 251) as u8)
                .collect::<Vec<u8>>(),
        )
    };
    let upload = futures::stream::iter((0..chunks).map(|i| Ok::<_, std::io::Error>(make(i))));
    let meta = blobs
        .put_stream(&s, "big.bin", upload)
        .await
        .expect("stream up");
    assert_eq!(meta.size, (chunk * chunks) as u64);
    assert_eq!(
        blobs.head(&s, "big.bin").await.expect("head").size,
        meta.size
    );
    let mut down = blobs.get_stream(&s, "big.bin").await.expect("stream down");
    let mut got = Vec::with_capacity(chunk * chunks);
    while let Some(part) = down.next().await {
        got.extend_from_slice(&part.expect("chunk"));
    }
    let want: Vec<u8> = (0..chunks).flat_map(|i| make(i).to_vec()).collect();
    assert!(got == want, "streamed blob round-trips byte for byte");
}

async fn blob_failed_stream_stores_nothing(blobs: &Blobs) {
    let s = fresh_scope("t1");
    let upload = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"part")),
        Err(std::io::Error::other("client went away")),
    ]);
    assert!(blobs.put_stream(&s, "half.bin", upload).await.is_err());
    assert!(matches!(
        blobs.head(&s, "half.bin").await,
        Err(Error::NotFound(_))
    ));
}

async fn blob_bad_keys(blobs: &Blobs) {
    let s = fresh_scope("t1");
    let long_segment = format!("dir/{}", "s".repeat(crate::blob::MAX_BLOB_KEY_SEGMENT + 1));
    for key in [
        "",
        "../escape",
        "a//b",
        "/abs",
        "a/./b",
        "dir/",
        "a\nb",
        long_segment.as_str(),
    ] {
        assert!(
            matches!(
                blobs.put(&s, key, Bytes::from_static(b"x")).await,
                Err(Error::Invalid { .. })
            ),
            "blob key {key:?} must be refused"
        );
    }
    let longest = format!("dir/{}", "s".repeat(crate::blob::MAX_BLOB_KEY_SEGMENT));
    blobs
        .put(&s, &longest, Bytes::from_static(b"x"))
        .await
        .expect("a segment of exactly the limit is stored");
}
