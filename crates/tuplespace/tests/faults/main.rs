//! Failure-injection tests of plexspaces-tuplespace (their own test target): a client killed
//! in the middle of a transaction, a transaction aborted, and what `notify` subscribers see.

use std::time::Duration;

use futures::StreamExt;
use plexspaces_tuplespace::{template, tuple, Config, SpaceId, Spaces, TupleSpace};

const LONG: Duration = Duration::from_secs(10);

fn space(name: &str) -> TupleSpace {
    let spaces = Spaces::memory_with(Config::default());
    spaces.space(SpaceId::new("t", "faults", name).expect("space id"))
}

/// Subscribers never hear of a transactional write that was not committed: neither one whose
/// client task was killed mid-transaction nor one explicitly aborted. Events arrive in the
/// order the engine saw the writes, so had either been announced it would come before the
/// committed ones checked here.
#[tokio::test]
async fn notify_never_announces_an_uncommitted_transactional_write() {
    let s = space("notify-uncommitted");
    let mut sub = s.subscribe(&template!("ev", ?Int)).expect("subscribe");

    // a client that writes inside a transaction and is killed before committing
    let (written_tx, written_rx) = tokio::sync::oneshot::channel();
    let killed = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut tx = s.transaction();
            tx.write(tuple!("ev", 100)).expect("txn write");
            let _ = written_tx.send(());
            std::future::pending::<()>().await;
            drop(tx);
        })
    };
    written_rx
        .await
        .expect("the client wrote inside its transaction");
    killed.abort();
    assert!(killed.await.expect_err("killed").is_cancelled());

    // a client that aborts
    let mut tx = s.transaction();
    tx.write(tuple!("ev", 101)).expect("txn write");
    tx.abort().await.expect("abort");

    // committed writes: a plain one and a transactional one
    let plain = s.write(tuple!("ev", 1)).await.expect("write");
    let mut tx = s.transaction();
    tx.write(tuple!("ev", 2)).expect("txn write");
    let committed = tx.commit().await.expect("commit");
    assert_eq!(committed.len(), 1);

    let first = tokio::time::timeout(LONG, sub.next())
        .await
        .expect("an event")
        .expect("subscription open");
    let second = tokio::time::timeout(LONG, sub.next())
        .await
        .expect("an event")
        .expect("subscription open");
    assert_eq!((first.id, first.tuple), (plain, tuple!("ev", 1)));
    assert_eq!((second.id, second.tuple), (committed[0], tuple!("ev", 2)));
    assert_eq!(sub.missed(), 0);
    // and the uncommitted tuples are not in the space
    for n in [100, 101] {
        assert_eq!(
            s.read_if_exists(&template!("ev", n)).await.expect("rdp"),
            None,
            "uncommitted ({n}) is invisible"
        );
    }
}

/// A client killed mid-transaction after taking a tuple does not lose it: the transaction is
/// rolled back and the tuple is back for the next taker.
#[tokio::test]
async fn a_client_killed_mid_transaction_loses_no_taken_tuple() {
    let s = space("killed-taker");
    for i in 0..3 {
        s.write(tuple!("job", i)).await.expect("write");
    }
    let (took_tx, took_rx) = tokio::sync::oneshot::channel();
    let killed = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut tx = s.transaction();
            let got = tx
                .take_if_exists(&template!("job", 1))
                .await
                .expect("take in txn");
            let _ = took_tx.send(got);
            std::future::pending::<()>().await;
            drop(tx);
        })
    };
    assert_eq!(
        took_rx.await.expect("took"),
        Some(tuple!("job", 1)),
        "the client really took the tuple"
    );
    assert_eq!(
        s.read_if_exists(&template!("job", 1)).await.expect("rdp"),
        None,
        "hidden while the transaction is open"
    );
    killed.abort();
    let _ = killed.await;
    let mut got = Vec::new();
    for _ in 0..3 {
        let t = tokio::time::timeout(LONG, s.take(&template!("job", ?Int), LONG))
            .await
            .expect("no hang")
            .expect("take");
        got.push(t);
    }
    got.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(
        got,
        vec![tuple!("job", 0), tuple!("job", 1), tuple!("job", 2)]
    );
}

/// Take leases on tokio's paused clock: a take that is not confirmed is back in the space
/// when its lease runs out (never before), reaches a blocked taker with the same id, and a
/// confirm after expiry is refused; a confirmed take stays gone; a released one is back at
/// once.
#[tokio::test(start_paused = true)]
async fn an_unconfirmed_take_lease_returns_the_tuple_at_expiry_never_before() {
    let s = space("take-lease");
    let lease = Duration::from_millis(1_000);
    let id = s.write(tuple!("job", 1)).await.expect("write");
    let taken = s
        .take_leased(&template!("job", ?Int), LONG, lease)
        .await
        .expect("take under a lease");
    assert_eq!((taken.id, taken.tuple.clone()), (id, tuple!("job", 1)));
    assert_eq!(s.pending_takes(), 1);

    // a consumer that never confirms; a second consumer blocks for the job
    let waiting = {
        let s = s.clone();
        tokio::spawn(async move { s.take(&template!("job", ?Int), LONG).await })
    };
    tokio::time::sleep(lease - Duration::from_millis(1)).await;
    assert_eq!(s.count(&template!("job", ?Int)).await.unwrap(), 0);
    assert!(
        !waiting.is_finished(),
        "not returned before the lease ran out"
    );
    let back = waiting.await.expect("taker").expect("the job came back");
    assert_eq!(back, tuple!("job", 1));
    assert_eq!(s.pending_takes(), 0);
    let late = s.confirm(taken.lease).await;
    assert!(
        matches!(late, Err(plexspaces_tuplespace::Error::LeaseNotFound(l)) if l == taken.lease),
        "{late:?}"
    );

    // confirmed in time: gone for good
    s.write(tuple!("job", 2)).await.expect("write");
    let t = s
        .take_leased(&template!("job", ?Int), LONG, lease)
        .await
        .expect("take");
    assert_eq!(s.confirm(t.lease).await.expect("confirm"), tuple!("job", 2));
    tokio::time::sleep(lease * 3).await;
    assert_eq!(s.count(&template!("job", ?Int)).await.unwrap(), 0);
    assert!(s.confirm(t.lease).await.is_err(), "settled once");

    // released: back at once; a lease of another space cannot be settled here
    s.write(tuple!("job", 3)).await.expect("write");
    let t = s
        .take_leased(&template!("job", ?Int), LONG, lease)
        .await
        .expect("take");
    let other = s
        .spaces()
        .space(SpaceId::new("t", "faults", "take-lease-other").expect("space id"));
    assert!(other.confirm(t.lease).await.is_err());
    s.release(t.lease).await.expect("release");
    assert_eq!(s.count(&template!("job", ?Int)).await.unwrap(), 1);
    assert!(s
        .take_leased(&template!("job", ?Int), LONG, Duration::ZERO)
        .await
        .is_err());
}
