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
