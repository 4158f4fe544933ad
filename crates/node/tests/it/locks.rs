//! Locks over the node's HTTP API: acquire, a holder refused while another holds the lock,
//! a lapsed lease taken over with a larger fencing token, the stale holder's guarded write
//! refused (`fenced`), its renew refused (`lease_lost`), release, and bad input as 400s.

use serde_json::{json, Value};

use crate::common::{eventually, send, Setup, TestNode};

#[tokio::test]
async fn a_lapsed_lock_is_taken_over_and_the_stale_holders_write_is_fenced() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let lock = |op: &str| n.url(&format!("/api/v1/locks/ns/job-1/{op}"));
    let acquire = |holder: &str, lease_ms: u64, wait_ms: u64| {
        c.post(lock("acquire"))
            .json(&json!({"holder": holder, "lease_ms": lease_ms, "wait_ms": wait_ms}))
    };
    let (s, a) = send(acquire("a", 300, 0)).await;
    assert_eq!(s, 200, "{a}");
    let ta = a["token"].as_u64().unwrap();
    assert_eq!(
        (a["lock"].as_str(), a["holder"].as_str()),
        (Some("job-1"), Some("a"))
    );
    // held: another holder is refused, and so is the same holder again (not re-entrant)
    let (s, b) = send(acquire("b", 30_000, 0)).await;
    assert_eq!((s, b["code"].as_str()), (409, Some("conflict")), "{b}");
    // a's guarded write
    let put = |token: u64, body: &str| {
        c.put(n.url(&format!("/api/v1/kv/ns/guarded?fence={token}")))
            .body(body.to_owned())
    };
    let (s, _) = send(put(ta, "from a")).await;
    assert_eq!(s, 200);
    // a's lease lapses; b takes the lock with a larger token
    let got = std::sync::Mutex::new(0u64);
    let taken = eventually(|| {
        let req = acquire("b", 30_000, 200);
        let got = &got;
        async move {
            let (s, b) = send(req).await;
            if s == 200 {
                *got.lock().unwrap() = b["token"].as_u64().unwrap();
            }
            s == 200
        }
    })
    .await;
    assert!(taken, "b takes the lock once a's lease lapsed");
    let tb = *got.lock().unwrap();
    assert!(tb > ta, "fencing tokens grow: {ta} then {tb}");
    let (s, _) = send(put(tb, "from b")).await;
    assert_eq!(s, 200);
    // the stale holder: its write is fenced, its renew finds the lease lost
    let (s, e) = send(put(ta, "late a")).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("fenced")), "{e}");
    let (s, body) = send(c.get(n.url("/api/v1/kv/ns/guarded"))).await;
    assert_eq!(s, 200, "{body}");
    let (s, e) = send(
        c.post(lock("renew"))
            .json(&json!({"holder": "a", "token": ta, "lease_ms": 1000})),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("lease_lost")), "{e}");
    let (s, r) = send(
        c.post(lock("release"))
            .json(&json!({"holder": "a", "token": ta})),
    )
    .await;
    assert_eq!((s, r["released"].as_bool()), (200, Some(false)), "{r}");
    // the holder renews and releases; the lock is free again
    let (s, r) = send(
        c.post(lock("renew"))
            .json(&json!({"holder": "b", "token": tb, "lease_ms": 30_000})),
    )
    .await;
    assert_eq!((s, r["renewed"].as_bool()), (200, Some(true)), "{r}");
    let (s, r) = send(
        c.post(lock("release"))
            .json(&json!({"holder": "b", "token": tb})),
    )
    .await;
    assert_eq!((s, r["released"].as_bool()), (200, Some(true)), "{r}");
    let (s, _) = send(acquire("c", 1000, 0)).await;
    assert_eq!(s, 200);

    // bad input is a typed 400
    for body in [
        json!({"holder": "x", "lease_ms": 0}),
        json!({"holder": "", "lease_ms": 10}),
        json!({"holder": "x", "lease_ms": 10, "wait_ms": 60_000}),
        json!({"holder": "x", "lease_ms": 10, "extra": 1}),
        json!({"holder": "x"}),
    ] {
        let (s, e) = send(c.post(lock("acquire")).json(&body)).await;
        assert_eq!(s, 400, "{body}: {e}");
    }
    let (s, e) = send(
        c.post(lock("release"))
            .json(&json!({"holder": "x", "token": 0})),
    )
    .await;
    assert_eq!(s, 400, "{e}");
    let (s, _): (u16, Value) = send(c.post(lock("acquire")).body("not json")).await;
    assert_eq!(s, 400);
}
