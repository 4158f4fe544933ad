//! The conformance suite every [`Backend`] must pass (feature `conformance`).
//!
//! A backend crate or test provides a [`Factory`] and calls [`run_all`] from a
//! multi-threaded tokio test against the real server. The suite never assumes an empty
//! server: each case opens a store under its own name, and the factory maps names to
//! isolated storage (a schema, a key prefix, a file).
//!
//! This is test support: failures panic with the case and backend named.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    template, tuple, Backend, Barrier, Config, Error, Limits, ManualClock, Result, SpaceId, Spaces,
    Template, Timestamp, Tuple, TupleSpace, Value,
};

/// Opens stores for the suite.
#[async_trait]
pub trait Factory: Send + Sync {
    /// The store named `name`. The first call for a name gives an empty store; later calls
    /// give another instance over the same storage (a reopen, or a second process).
    async fn open(&self, name: &str) -> Result<Arc<dyn Backend>>;
}

const LONG: Duration = Duration::from_secs(30);

/// Poll `cond` every few milliseconds for up to 20 seconds.
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..4000 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition never held: {what}");
}

fn sid(name: &str) -> SpaceId {
    SpaceId::new("tenant-a", "ns", name).expect("valid space id")
}

async fn engine(f: &dyn Factory, name: &str, config: Config) -> (Spaces, TupleSpace) {
    let backend = f.open(name).await.expect("backend opens");
    let spaces = Spaces::start(backend, config).await.expect("engine starts");
    let space = spaces.space(sid(name));
    (spaces, space)
}

fn manual_config() -> (Config, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(Timestamp(1_700_000_000_000)));
    (
        Config {
            clock: clock.clone(),
            ..Config::default()
        },
        clock,
    )
}

/// Run every case; panics naming the first that fails.
pub async fn run_all(f: &dyn Factory) {
    basic_operations(f).await;
    value_types_roundtrip(f).await;
    spaces_are_isolated(f).await;
    paging_and_indexes(f).await;
    exactly_one_taker(f).await;
    arrival_order(f).await;
    concurrent_claims(f).await;
    blocked_readers_all_wake(f).await;
    dropped_waiter_does_not_swallow(f).await;
    a_claim_received_by_a_dropped_caller_goes_back(f).await;
    timeouts(f).await;
    leases(f).await;
    notify(f).await;
    transactions(f).await;
    bad_input(f).await;
    barrier(f).await;
    durable_reopen(f).await;
    cross_instance_wakeups(f).await;
}

/// write, read, take, their non-blocking forms, read_all, take_all, count; oldest first.
pub async fn basic_operations(f: &dyn Factory) {
    let (_e, s) = engine(f, "basic", Config::default()).await;
    s.write(tuple!("a", 1)).await.expect("write");
    s.write(tuple!("a", 2)).await.expect("write");
    s.write(tuple!("b", 1)).await.expect("write");
    s.write(tuple!("a", 3, 3)).await.expect("write");
    let a = template!("a", ?Int);
    assert_eq!(s.count(&a).await.expect("count"), 2);
    assert_eq!(
        s.read_if_exists(&a).await.expect("rdp"),
        Some(tuple!("a", 1))
    );
    assert_eq!(s.read(&a, LONG).await.expect("rd"), tuple!("a", 1));
    assert_eq!(
        s.read_all(&a).await.expect("read_all"),
        vec![tuple!("a", 1), tuple!("a", 2)]
    );
    assert_eq!(
        s.read_all(&template!(_, 1)).await.expect("read_all"),
        vec![tuple!("a", 1), tuple!("b", 1)]
    );
    assert_eq!(
        s.take_if_exists(&a).await.expect("inp"),
        Some(tuple!("a", 1))
    );
    assert_eq!(s.take(&a, LONG).await.expect("in"), tuple!("a", 2));
    assert_eq!(s.take_if_exists(&a).await.expect("inp"), None);
    assert_eq!(
        s.read_if_exists(&template!("a", ?String))
            .await
            .expect("rdp"),
        None
    );
    assert_eq!(
        s.take_all(&template!(_, _, _)).await.expect("take_all"),
        vec![tuple!("a", 3, 3)]
    );
    assert_eq!(
        s.take_all(&template!(?String, _)).await.expect("take_all"),
        vec![tuple!("b", 1)]
    );
    assert_eq!(s.count(&template!(_, _)).await.expect("count"), 0);
}

/// Every field type survives the backend, and typed formals match them.
pub async fn value_types_roundtrip(f: &dyn Factory) {
    let (_e, s) = engine(f, "types", Config::default()).await;
    let t = tuple!(
        "all",
        (),
        true,
        -42,
        1.25,
        "text with | and / and %",
        vec![0u8, 255, 7],
        tuple!("nested", tuple!(1.5, Value::Null)),
        -0.0
    );
    s.write(t.clone()).await.expect("write");
    assert_eq!(
        s.read_if_exists(&Template::exact(&t)).await.expect("rdp"),
        Some(t.clone())
    );
    let typed = template!(
        "all",
        ?Null,
        ?Bool,
        ?Int,
        ?Float,
        ?String,
        ?Bytes,
        ?Tuple,
        0.0
    );
    assert_eq!(
        s.read_if_exists(&typed).await.expect("rdp"),
        Some(t.clone())
    );
    let nested = template!(
        "all",
        _,
        _,
        _,
        _,
        _,
        _,
        template!("nested", template!(?Float, ?Null)),
        _
    );
    assert_eq!(s.take_if_exists(&nested).await.expect("inp"), Some(t));
    // the first field is indexed: each type of first field finds its own tuples
    let firsts = [
        Value::Null,
        Value::Bool(false),
        Value::Int(7),
        Value::Float(2.5),
        Value::String("x".repeat(100)),
        Value::Bytes(vec![9; 40]),
        Value::Tuple(tuple!(1)),
    ];
    for v in &firsts {
        s.write(Tuple::new(vec![v.clone(), Value::Int(1)]))
            .await
            .expect("write");
    }
    for v in &firsts {
        let got = s
            .take_if_exists(&Template::new(vec![
                crate::Pattern::Exact(v.clone()),
                crate::Pattern::Any,
            ]))
            .await
            .expect("inp");
        assert_eq!(got, Some(Tuple::new(vec![v.clone(), Value::Int(1)])));
    }
}

/// Tenants, namespaces and names scope tuples.
pub async fn spaces_are_isolated(f: &dyn Factory) {
    let (e, s) = engine(f, "isolated", Config::default()).await;
    let other_tenant = e.space(SpaceId::new("tenant-b", "ns", "isolated").expect("id"));
    let other_ns = e.space(SpaceId::new("tenant-a", "ns2", "isolated").expect("id"));
    s.write(tuple!("secret", 1)).await.expect("write");
    let tpl = template!("secret", _);
    assert_eq!(other_tenant.read_if_exists(&tpl).await.expect("rdp"), None);
    assert_eq!(other_ns.take_if_exists(&tpl).await.expect("inp"), None);
    assert_eq!(other_ns.count(&tpl).await.expect("count"), 0);
    assert_eq!(s.count(&tpl).await.expect("count"), 1);
}

/// More tuples than one page of a scan; templates with and without an indexed first field.
pub async fn paging_and_indexes(f: &dyn Factory) {
    let (_e, s) = engine(f, "paging", Config::default()).await;
    let ids = s
        .write_all((0..300).map(|i| tuple!("p", i)).collect())
        .await
        .expect("write_all");
    assert_eq!(ids.len(), 300);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase");
    assert_eq!(s.count(&template!("p", ?Int)).await.expect("count"), 300);
    assert_eq!(
        s.count(&template!(?String, ?Int)).await.expect("count"),
        300
    );
    assert_eq!(
        s.take_if_exists(&template!("p", 299)).await.expect("inp"),
        Some(tuple!("p", 299))
    );
    assert_eq!(
        s.take_if_exists(&template!(_, 250)).await.expect("inp"),
        Some(tuple!("p", 250))
    );
    let all = s.take_all(&template!("p", ?Int)).await.expect("take_all");
    let expected: Vec<Tuple> = (0..300)
        .filter(|i| *i != 299 && *i != 250)
        .map(|i| tuple!("p", i))
        .collect();
    assert_eq!(all, expected);
}

/// N blocked takers and one write: exactly one gets it; later writes serve the others,
/// each tuple to exactly one taker.
pub async fn exactly_one_taker(f: &dyn Factory) {
    const N: usize = 8;
    let (_e, s) = engine(f, "one-taker", Config::default()).await;
    let tpl = template!("job", ?Int);
    let mut handles = Vec::new();
    for _ in 0..N {
        let s = s.clone();
        let tpl = tpl.clone();
        handles.push(tokio::spawn(async move { s.take(&tpl, LONG).await }));
    }
    eventually("all takers blocked", || async { s.waiting() == N }).await;
    s.write(tuple!("job", 0)).await.expect("write");
    eventually("one taker served", || async {
        handles.iter().filter(|h| h.is_finished()).count() == 1
    })
    .await;
    assert_eq!(s.waiting(), N - 1, "the others still wait");
    assert_eq!(
        s.count(&tpl).await.expect("count"),
        0,
        "the tuple is gone for everyone"
    );
    for i in 1..N {
        s.write(tuple!("job", i as i64)).await.expect("write");
    }
    let mut got = Vec::new();
    for h in handles {
        let t = h.await.expect("taker ran").expect("taker got a tuple");
        got.push(t.get(1).and_then(Value::as_int).expect("int"));
    }
    got.sort_unstable();
    assert_eq!(
        got,
        (0..N as i64).collect::<Vec<_>>(),
        "each tuple to exactly one taker"
    );
    assert_eq!(s.count(&tpl).await.expect("count"), 0);
}

/// Blocked takers are served in the order they arrived.
pub async fn arrival_order(f: &dyn Factory) {
    const N: usize = 5;
    let (_e, s) = engine(f, "order", Config::default()).await;
    let mut handles = Vec::new();
    for i in 0..N {
        let t = s.clone();
        handles.push(tokio::spawn(async move {
            t.take(&template!("o", _), LONG).await
        }));
        eventually("taker queued", || async { s.waiting() == i + 1 }).await;
    }
    for i in 0..N {
        s.write(tuple!("o", i as i64)).await.expect("write");
    }
    for (i, h) in handles.into_iter().enumerate() {
        let t = h.await.expect("taker ran").expect("taker got a tuple");
        assert_eq!(t, tuple!("o", i as i64), "taker {i} gets the {i}th tuple");
    }
}

/// Writers and takers on two instances of the store at once: every tuple is taken exactly
/// once, none is lost.
pub async fn concurrent_claims(f: &dyn Factory) {
    const TUPLES: i64 = 200;
    const TAKERS: usize = 6;
    let a = f.open("claims").await.expect("open");
    let b = f.open("claims").await.expect("open again");
    let ea = Spaces::start(a, Config::default()).await.expect("engine a");
    let eb = Spaces::start(b, Config::default()).await.expect("engine b");
    let spaces = [ea.space(sid("claims")), eb.space(sid("claims"))];
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut takers = Vec::new();
    for i in 0..TAKERS {
        let s = spaces[i % 2].clone();
        let done = done.clone();
        takers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match s
                    .take(&template!("c", ?Int), Duration::from_millis(50))
                    .await
                {
                    Ok(t) => got.push(t.get(1).and_then(Value::as_int).expect("int")),
                    Err(Error::Timeout(_)) if done.load(std::sync::atomic::Ordering::SeqCst) => {
                        break;
                    }
                    Err(Error::Timeout(_)) => {}
                    Err(e) => panic!("take failed: {e}"),
                }
            }
            got
        }));
    }
    let mut writers = Vec::new();
    for w in 0..2i64 {
        let s = spaces[w as usize].clone();
        writers.push(tokio::spawn(async move {
            for i in (w..TUPLES).step_by(2) {
                s.write(tuple!("c", i)).await.expect("write");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer ran");
    }
    let left = spaces[0].clone();
    eventually("all tuples taken", || async {
        left.count(&template!("c", _)).await.expect("count") == 0
    })
    .await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut all = Vec::new();
    for t in takers {
        all.extend(t.await.expect("taker ran"));
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..TUPLES).collect::<Vec<_>>(),
        "each tuple taken exactly once"
    );
}

/// 50 blocked readers all wake on one write, and the tuple stays.
pub async fn blocked_readers_all_wake(f: &dyn Factory) {
    const N: usize = 50;
    let (_e, s) = engine(f, "readers", Config::default()).await;
    let mut handles = Vec::new();
    for _ in 0..N {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.read(&template!("news", ?String), LONG).await
        }));
    }
    eventually("all readers blocked", || async { s.waiting() == N }).await;
    s.write(tuple!("news", "hello")).await.expect("write");
    for h in handles {
        assert_eq!(
            h.await.expect("reader ran").expect("reader got it"),
            tuple!("news", "hello")
        );
    }
    assert_eq!(
        s.count(&template!("news", _)).await.expect("count"),
        1,
        "reading does not consume"
    );
}

/// A waiter whose caller goes away never swallows a tuple.
pub async fn dropped_waiter_does_not_swallow(f: &dyn Factory) {
    let (_e, s) = engine(f, "dropped", Config::default()).await;
    let tpl = template!("d", ?Int);
    // dropped while idle
    let h = {
        let s = s.clone();
        let tpl = tpl.clone();
        tokio::spawn(async move { s.take(&tpl, LONG).await })
    };
    eventually("taker blocked", || async { s.waiting() == 1 }).await;
    h.abort();
    eventually("dropped taker removed", || async { s.waiting() == 0 }).await;
    s.write(tuple!("d", 0)).await.expect("write");
    assert_eq!(
        s.take_if_exists(&tpl).await.expect("inp"),
        Some(tuple!("d", 0))
    );

    // a tuple set aside for a dropped taker goes to the next one in line
    let first = {
        let s = s.clone();
        let tpl = tpl.clone();
        tokio::spawn(async move { s.take(&tpl, LONG).await })
    };
    eventually("first blocked", || async { s.waiting() == 1 }).await;
    let second = {
        let s = s.clone();
        let tpl = tpl.clone();
        tokio::spawn(async move { s.take(&tpl, LONG).await })
    };
    eventually("second blocked", || async { s.waiting() == 2 }).await;
    first.abort();
    s.write(tuple!("d", 1)).await.expect("write");
    let first = first.await;
    let second_got = second.await.expect("second ran");
    match first {
        Ok(Ok(t)) => {
            // the first taker completed before the abort landed: it owns the tuple
            assert_eq!(t, tuple!("d", 1));
            assert!(second_got.is_err() || second_got.is_ok_and(|t| t != tuple!("d", 1)));
        }
        _ => assert_eq!(second_got.expect("second got it"), tuple!("d", 1)),
    }

    // races between a write and a caller going away: the tuple ends up exactly once
    for i in 10..30i64 {
        let h = {
            let s = s.clone();
            let tpl = tpl.clone();
            tokio::spawn(async move { s.take(&tpl, LONG).await })
        };
        eventually("taker blocked", || async { s.waiting() == 1 }).await;
        let w = {
            let s = s.clone();
            tokio::spawn(async move { s.write(tuple!("d", i)).await })
        };
        if i % 2 == 0 {
            tokio::task::yield_now().await;
        }
        h.abort();
        w.await.expect("writer ran").expect("write");
        match h.await {
            Ok(Ok(t)) => {
                assert_eq!(t, tuple!("d", i));
                assert_eq!(
                    s.count(&tpl).await.expect("count"),
                    0,
                    "delivered and also left behind"
                );
            }
            _ => {
                eventually("tuple still in the space", || async {
                    s.read_if_exists(&template!("d", i))
                        .await
                        .expect("rdp")
                        .is_some()
                })
                .await;
                assert_eq!(
                    s.take_all(&tpl).await.expect("take_all"),
                    vec![tuple!("d", i)]
                );
            }
        }
        eventually("no waiter left", || async { s.waiting() == 0 }).await;
    }
}

/// A tuple claimed for a caller that goes away after the claim finished, but before the
/// caller took the result, goes back into the space (the race the loop above hits only
/// sometimes, made certain).
pub async fn a_claim_received_by_a_dropped_caller_goes_back(f: &dyn Factory) {
    use futures::FutureExt as _;
    let (_e, s) = engine(f, "claim-dropped", Config::default()).await;
    let tpl = template!("c", ?Int);
    s.write(tuple!("c", 1)).await.expect("write");
    let mut take = Box::pin(s.take_if_exists(&tpl));
    // One poll starts the claim: a backend that completes in one poll (cancel safe) hands
    // the tuple over at once, and there is no window to test.
    if let Some(got) = (&mut take).now_or_never() {
        assert_eq!(got.expect("inp"), Some(tuple!("c", 1)));
        return;
    }
    // The claim runs on without this caller: wait until it took the tuple out of the
    // backend, then give it time to hand the result over, and drop the caller unpolled.
    eventually("the claim took the tuple", || async {
        s.count(&tpl).await.expect("count") == 0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    drop(take);
    eventually("the claimed tuple is back", || async {
        s.count(&tpl).await.expect("count") == 1
    })
    .await;
    assert_eq!(
        s.take_if_exists(&tpl).await.expect("inp"),
        Some(tuple!("c", 1))
    );
}

/// Blocking calls time out with a retryable error and leave no waiter behind.
pub async fn timeouts(f: &dyn Factory) {
    let (_e, s) = engine(f, "timeouts", Config::default()).await;
    let tpl = template!("never", _);
    let err = s
        .take(&tpl, Duration::from_millis(20))
        .await
        .expect_err("times out");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(err.is_retryable());
    let err = s
        .read(&tpl, Duration::from_millis(20))
        .await
        .expect_err("times out");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert_eq!(s.waiting(), 0);
}

/// Leases expire on the engine's clock, can be renewed, and expired tuples are never
/// returned, counted or renewed.
pub async fn leases(f: &dyn Factory) {
    let (config, clock) = manual_config();
    let (_e, s) = engine(f, "leases", config).await;
    let tpl = template!("l", ?Int);
    let lease = s
        .write_with_lease(tuple!("l", 1), Duration::from_secs(1))
        .await
        .expect("write");
    s.write(tuple!("l", 2)).await.expect("write");
    assert_eq!(s.count(&tpl).await.expect("count"), 2);
    clock.advance(Duration::from_millis(1500));
    assert_eq!(s.count(&tpl).await.expect("count"), 1);
    assert_eq!(
        s.read_all(&tpl).await.expect("read_all"),
        vec![tuple!("l", 2)]
    );
    assert_eq!(
        s.read_if_exists(&template!("l", 1)).await.expect("rdp"),
        None
    );
    assert_eq!(
        s.take_if_exists(&template!("l", 1)).await.expect("inp"),
        None
    );
    let err = s
        .renew(lease.id(), Some(Duration::from_secs(5)))
        .await
        .expect_err("expired");
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    assert_eq!(
        s.take_all(&tpl).await.expect("take_all"),
        vec![tuple!("l", 2)]
    );

    let mut lease = s
        .write_with_lease(tuple!("l", 3), Duration::from_secs(1))
        .await
        .expect("write");
    clock.advance(Duration::from_millis(800));
    lease.renew(Duration::from_secs(1)).await.expect("renew");
    clock.advance(Duration::from_millis(800));
    assert_eq!(
        s.read_if_exists(&tpl).await.expect("rdp"),
        Some(tuple!("l", 3)),
        "renewed"
    );
    clock.advance(Duration::from_millis(300));
    assert_eq!(
        s.read_if_exists(&tpl).await.expect("rdp"),
        None,
        "expired after renewal"
    );

    let lease = s
        .write_with_lease(tuple!("l", 4), Duration::from_secs(1))
        .await
        .expect("write");
    s.renew(lease.id(), None).await.expect("renew forever");
    clock.advance(Duration::from_secs(3600));
    assert_eq!(
        s.read_if_exists(&tpl).await.expect("rdp"),
        Some(tuple!("l", 4))
    );
    let lease = s
        .write_with_lease(tuple!("l", 5), Duration::from_secs(10))
        .await
        .expect("write");
    assert!(lease.cancel().await.expect("cancel"));
    assert_eq!(s.count(&tpl).await.expect("count"), 1);
    let err = s
        .write_with_lease(tuple!("l", 6), Duration::ZERO)
        .await
        .expect_err("zero ttl");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

/// Subscribers see matching writes, in order, and nothing else.
pub async fn notify(f: &dyn Factory) {
    let (_e, s) = engine(f, "notify", Config::default()).await;
    let mut sub = s.subscribe(&template!("ev", ?Int)).expect("subscribe");
    let id1 = s.write(tuple!("ev", 1)).await.expect("write");
    s.write(tuple!("other", 1)).await.expect("write");
    s.write(tuple!("ev", "not an int")).await.expect("write");
    let id2 = s.write(tuple!("ev", 2)).await.expect("write");
    let e1 = tokio::time::timeout(LONG, sub.next())
        .await
        .expect("event")
        .expect("open");
    let e2 = tokio::time::timeout(LONG, sub.next())
        .await
        .expect("event")
        .expect("open");
    assert_eq!((e1.id, e1.tuple), (id1, tuple!("ev", 1)));
    assert_eq!((e2.id, e2.tuple), (id2, tuple!("ev", 2)));
    assert_eq!(sub.missed(), 0);
    // a transaction's writes are announced when it commits
    let mut tx = s.transaction();
    tx.write(tuple!("ev", 3)).expect("txn write");
    tx.commit().await.expect("commit");
    let e3 = tokio::time::timeout(LONG, sub.next())
        .await
        .expect("event")
        .expect("open");
    assert_eq!(e3.tuple, tuple!("ev", 3));

    // a subscriber that falls behind misses the newest events and is told how many
    let (_e, s) = engine(
        f,
        "notify-lag",
        Config {
            subscriber_capacity: 2,
            ..Config::default()
        },
    )
    .await;
    let mut slow = s.subscribe(&template!("lag", ?Int)).expect("subscribe");
    for i in 0..5 {
        s.write(tuple!("lag", i)).await.expect("write");
    }
    assert_eq!(slow.missed(), 3);
    let first = slow.next().await.expect("event");
    assert_eq!(first.tuple, tuple!("lag", 0));
    // dropping a subscription unsubscribes
    drop(slow);
    s.write(tuple!("lag", 9)).await.expect("write");
}

/// Commit makes takes final and writes visible; abort (or drop) restores what was taken
/// and hides what was written.
pub async fn transactions(f: &dyn Factory) {
    let (_e, s) = engine(f, "txn", Config::default()).await;
    let task = template!("task", ?Int);
    let result = template!("result", ?Int);

    s.write(tuple!("task", 1)).await.expect("write");
    let mut tx = s.transaction();
    assert_eq!(
        tx.take_if_exists(&task).await.expect("take"),
        Some(tuple!("task", 1))
    );
    tx.write(tuple!("result", 1)).expect("write");
    assert_eq!(
        tx.read_if_exists(&result).await.expect("own write"),
        Some(tuple!("result", 1))
    );
    assert_eq!(
        s.read_if_exists(&task).await.expect("rdp"),
        None,
        "taken inside the txn"
    );
    assert_eq!(
        s.read_if_exists(&result).await.expect("rdp"),
        None,
        "write hidden until commit"
    );
    let ids = tx.commit().await.expect("commit");
    assert_eq!(ids.len(), 1);
    assert_eq!(
        s.read_all(&result).await.expect("read_all"),
        vec![tuple!("result", 1)]
    );
    assert_eq!(s.count(&task).await.expect("count"), 0);

    s.write(tuple!("task", 2)).await.expect("write");
    let mut tx = s.transaction();
    assert_eq!(tx.take(&task, LONG).await.expect("take"), tuple!("task", 2));
    tx.write(tuple!("result", 2)).expect("write");
    tx.write(tuple!("task", 99)).expect("write");
    assert_eq!(
        tx.take_if_exists(&template!("task", 99))
            .await
            .expect("own"),
        Some(tuple!("task", 99))
    );
    tx.abort().await.expect("abort");
    assert_eq!(
        s.read_all(&task).await.expect("read_all"),
        vec![tuple!("task", 2)],
        "restored"
    );
    assert_eq!(
        s.count(&template!("result", 2)).await.expect("count"),
        0,
        "discarded"
    );

    // dropping an open transaction aborts it, and a blocked taker gets the restored tuple
    let mut tx = s.transaction();
    assert_eq!(
        tx.take_if_exists(&task).await.expect("take"),
        Some(tuple!("task", 2))
    );
    let waiter = {
        let s = s.clone();
        let task = task.clone();
        tokio::spawn(async move { s.take(&task, LONG).await })
    };
    eventually("taker blocked", || async { s.waiting() == 1 }).await;
    drop(tx);
    assert_eq!(
        waiter.await.expect("ran").expect("got it"),
        tuple!("task", 2)
    );

    // several takes and writes at once
    s.write_all(vec![tuple!("task", 3), tuple!("task", 4)])
        .await
        .expect("write_all");
    let mut tx = s.transaction();
    let a = tx.take_if_exists(&task).await.expect("take").expect("some");
    let b = tx.take_if_exists(&task).await.expect("take").expect("some");
    assert_eq!((a, b), (tuple!("task", 3), tuple!("task", 4)));
    tx.write(tuple!("result", 7)).expect("write");
    tx.write_with_lease(tuple!("result", 8), Duration::from_secs(60))
        .expect("write");
    tx.commit().await.expect("commit");
    assert_eq!(s.count(&task).await.expect("count"), 0);
    assert_eq!(s.count(&result).await.expect("count"), 3);
}

/// Bad input gets typed errors, none of them retryable.
pub async fn bad_input(f: &dyn Factory) {
    let config = Config {
        limits: Limits {
            max_arity: 8,
            max_tuple_bytes: 1024,
            max_depth: 3,
        },
        ..Config::default()
    };
    let (_e, s) = engine(f, "bad-input", config).await;
    let checks: Vec<(&str, Error)> = vec![
        (
            "empty tuple",
            s.write(Tuple::default()).await.expect_err("rejected"),
        ),
        (
            "too many fields",
            s.write(Tuple::new(vec![Value::Int(0); 9]))
                .await
                .expect_err("rejected"),
        ),
        (
            "oversized",
            s.write(tuple!("big", vec![0u8; 2000]))
                .await
                .expect_err("rejected"),
        ),
        (
            "too deep",
            s.write(tuple!(tuple!(tuple!(tuple!(1)))))
                .await
                .expect_err("rejected"),
        ),
        (
            "nan template",
            s.take_if_exists(&template!("x", f64::NAN))
                .await
                .expect_err("rejected"),
        ),
        (
            "empty template",
            s.take(&Template::default(), LONG)
                .await
                .expect_err("rejected"),
        ),
        (
            "too wide template",
            s.count(&Template::new(vec![crate::Pattern::Any; 9]))
                .await
                .expect_err("rejected"),
        ),
        (
            "bad space id",
            SpaceId::new("", "ns", "x").expect_err("rejected"),
        ),
        (
            "zero-party barrier",
            Barrier::new(s.clone(), "b", 0).expect_err("rejected"),
        ),
    ];
    for (what, err) in &checks {
        assert!(!err.is_retryable(), "{what}: {err} must not be retryable");
        let ok = match *what {
            "empty tuple" | "too many fields" | "empty template" | "too wide template" => {
                matches!(err, Error::Arity { .. })
            }
            "oversized" => matches!(err, Error::TooLarge { .. }),
            "too deep" => matches!(err, Error::TooDeep { .. }),
            "nan template" => matches!(err, Error::MalformedTemplate(_)),
            "bad space id" => matches!(err, Error::InvalidSpaceId(_)),
            _ => matches!(err, Error::InvalidArgument(_)),
        };
        assert!(ok, "{what}: unexpected error {err:?}");
        assert_eq!(
            err.to_string(),
            err.to_string().to_lowercase(),
            "lowercase messages"
        );
    }
    let mut tx = s.transaction();
    assert!(matches!(
        tx.write(Tuple::default()),
        Err(Error::Arity { .. })
    ));
    assert_eq!(s.waiting(), 0);
    assert_eq!(
        s.count(&template!(_)).await.expect("count"),
        0,
        "nothing was written"
    );
}

/// A barrier of 4 parties over 3 generations: nobody passes before all arrived.
pub async fn barrier(f: &dyn Factory) {
    const PARTIES: usize = 4;
    const ROUNDS: i64 = 3;
    let (_e, s) = engine(f, "barrier", Config::default()).await;
    let mut handles = Vec::new();
    for p in 0..PARTIES {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut b = Barrier::new(s.clone(), "sync", PARTIES).expect("barrier");
            let mut leaders = 0;
            for round in 0..ROUNDS {
                s.write(tuple!("phase", p as i64, round))
                    .await
                    .expect("write");
                let r = b.wait(LONG).await.expect("barrier wait");
                assert_eq!(r.generation, round);
                leaders += usize::from(r.is_leader);
                let arrived = s.count(&template!("phase", _, round)).await.expect("count");
                assert_eq!(
                    arrived, PARTIES as u64,
                    "passed the barrier before all arrived"
                );
            }
            leaders
        }));
    }
    let mut leaders = 0;
    for h in handles {
        leaders += h.await.expect("party ran");
    }
    assert!(leaders >= ROUNDS as usize, "each generation has a leader");
}

/// A durable backend keeps tuples across a reopen.
pub async fn durable_reopen(f: &dyn Factory) {
    let first = f.open("durable").await.expect("open");
    if !first.capabilities().durable {
        return;
    }
    let (config, _clock) = manual_config();
    let spaces = Spaces::start(first, config.clone()).await.expect("engine");
    let s = spaces.space(sid("durable"));
    s.write(tuple!("keep", 1)).await.expect("write");
    s.write_with_lease(tuple!("keep", 2), Duration::from_secs(3600))
        .await
        .expect("write");
    drop(s);
    drop(spaces);
    let again = f.open("durable").await.expect("reopen");
    let spaces = Spaces::start(again, config).await.expect("engine");
    let s = spaces.space(sid("durable"));
    assert_eq!(
        s.take_all(&template!("keep", ?Int))
            .await
            .expect("take_all"),
        vec![tuple!("keep", 1), tuple!("keep", 2)]
    );
}

/// Writes through one instance wake waiters of another (a second process), and a tuple
/// still goes to exactly one taker across instances.
pub async fn cross_instance_wakeups(f: &dyn Factory) {
    let a = f.open("cross").await.expect("open");
    if !a.capabilities().cross_process_wakeups {
        return;
    }
    let b = f.open("cross").await.expect("open again");
    let ea = Spaces::start(a, Config::default()).await.expect("engine a");
    let eb = Spaces::start(b, Config::default()).await.expect("engine b");
    let sa = ea.space(sid("cross"));
    let sb = eb.space(sid("cross"));
    let tpl = template!("x", ?Int);
    let mut handles = Vec::new();
    for i in 0..6 {
        let s = if i % 2 == 0 { sa.clone() } else { sb.clone() };
        let tpl = tpl.clone();
        handles.push(tokio::spawn(async move { s.take(&tpl, LONG).await }));
    }
    eventually("takers blocked in both", || async {
        sa.waiting() == 3 && sb.waiting() == 3
    })
    .await;
    let reader = {
        let sa = sa.clone();
        tokio::spawn(async move { sa.read(&template!("y", _), LONG).await })
    };
    eventually("reader blocked", || async { sa.waiting() == 4 }).await;
    let mut sub = sa.subscribe(&template!("y", _)).expect("subscribe");
    sb.write(tuple!("y", 1)).await.expect("write");
    assert_eq!(
        reader
            .await
            .expect("ran")
            .expect("woken by the other instance"),
        tuple!("y", 1)
    );
    let ev = tokio::time::timeout(LONG, sub.next())
        .await
        .expect("event")
        .expect("open");
    assert_eq!(
        ev.tuple,
        tuple!("y", 1),
        "subscribers see other instances' writes"
    );
    sb.write(tuple!("x", 0)).await.expect("write");
    eventually("one taker served", || async {
        handles.iter().filter(|h| h.is_finished()).count() == 1
    })
    .await;
    for i in 1..6 {
        sa.write(tuple!("x", i)).await.expect("write");
    }
    let mut got = HashSet::new();
    for h in handles {
        let t = h.await.expect("ran").expect("served");
        let n = t.get(1).and_then(Value::as_int).expect("int");
        assert!(got.insert(n), "a tuple went to two takers");
    }
    assert_eq!(got.len(), 6);
    assert_eq!(sa.count(&tpl).await.expect("count"), 0);
}
