//! Shard groups on a real node: routing per strategy, bulk update, map, scatter-gather with
//! a shard killed mid-query and with a shard past its timeout, supervision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plexspaces_core::{BoxError, Node};
use plexspaces_shard::{
    Error, KvAnswer, KvQuery, KvShard, Shard, ShardGroup, ShardGroupOptions, Strategy,
};
use plexspaces_test_util::eventually;

/// `u64 -> u64`, with test hooks: a per-shard query delay and a value that crashes the shard.
struct NumShard {
    index: usize,
    data: BTreeMap<u64, u64>,
    delays: Arc<Mutex<HashMap<usize, Duration>>>,
}

const CRASH: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumQuery {
    Count,
    Sum,
    Keys,
}

#[derive(Debug, PartialEq)]
enum NumAnswer {
    N(u64),
    Keys(Vec<u64>),
}

impl Shard for NumShard {
    type Key = u64;
    type Value = u64;
    type Query = NumQuery;
    type Answer = NumAnswer;

    fn update(&mut self, key: u64, value: u64) -> Result<(), BoxError> {
        if value == CRASH {
            return Err(format!("shard {} told to crash", self.index).into());
        }
        self.data.insert(key, value);
        Ok(())
    }

    async fn query(&mut self, query: &NumQuery) -> Result<NumAnswer, BoxError> {
        let delay = self.delays.lock().get(&self.index).copied();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        Ok(match query {
            NumQuery::Count => NumAnswer::N(self.data.len() as u64),
            NumQuery::Sum => NumAnswer::N(self.data.values().sum()),
            NumQuery::Keys => NumAnswer::Keys(self.data.keys().copied().collect()),
        })
    }
}

struct Fixture {
    node: Node,
    group: ShardGroup<NumShard>,
    delays: Arc<Mutex<HashMap<usize, Duration>>>,
}

async fn fixture(name: &str, shards: usize, strategy: Strategy<u64>) -> Fixture {
    let node = Node::builder("n1").build().await.expect("node");
    let delays: Arc<Mutex<HashMap<usize, Duration>>> = Arc::default();
    let d = delays.clone();
    let group = ShardGroup::start(
        &node,
        ShardGroupOptions::new(name, shards, strategy),
        move |index| NumShard {
            index,
            data: BTreeMap::new(),
            delays: d.clone(),
        },
    )
    .await
    .expect("group starts");
    Fixture {
        node,
        group,
        delays,
    }
}

fn n(answer: NumAnswer) -> u64 {
    match answer {
        NumAnswer::N(n) => n,
        NumAnswer::Keys(k) => k.len() as u64,
    }
}

/// Every shard holds exactly the keys its strategy routes to it.
async fn check_placement(strategy: Strategy<u64>, keys: &[u64]) {
    let f = fixture("placement", 4, strategy).await;
    let report = f.group.bulk_update(keys.iter().map(|k| (*k, 1))).await;
    assert!(report.is_complete(), "{report:?}");
    let gathered = f
        .group
        .scatter_gather(NumQuery::Keys, Duration::from_secs(10))
        .await;
    assert!(gathered.is_complete());
    let mut seen = 0;
    for (shard, answer) in gathered.answers {
        let NumAnswer::Keys(held) = answer else {
            panic!("keys expected")
        };
        for k in &held {
            assert_eq!(f.group.shard_of(k), shard, "key {k} on shard {shard}");
        }
        seen += held.len();
    }
    assert_eq!(seen, keys.len());
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_strategy_places_keys_on_their_shards() {
    let keys: Vec<u64> = (0..2000).collect();
    check_placement(Strategy::Hash, &keys).await;
    check_placement(Strategy::ConsistentHash { vnodes: 64 }, &keys).await;
    check_placement(
        Strategy::Range {
            bounds: vec![500, 1000, 1500],
        },
        &keys,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_group_splits_at_the_bounds() {
    let f = fixture(
        "ranges",
        3,
        Strategy::Range {
            bounds: vec![100, 200],
        },
    )
    .await;
    let keys = [0, 99, 100, 101, 199, 200, 201, u64::MAX - 1];
    let report = f.group.bulk_update(keys.iter().map(|k| (*k, *k))).await;
    assert_eq!(report.applied, keys.len() as u64);
    let per_shard: Vec<u64> = report.shards.iter().map(|s| s.applied).collect();
    assert_eq!(per_shard, vec![2, 3, 3]);
    let gathered = f
        .group
        .scatter_gather(NumQuery::Keys, Duration::from_secs(10))
        .await;
    let keys_of: Vec<NumAnswer> = gathered.answers.into_iter().map(|(_, a)| a).collect();
    assert_eq!(
        keys_of,
        vec![
            NumAnswer::Keys(vec![0, 99]),
            NumAnswer::Keys(vec![100, 101, 199]),
            NumAnswer::Keys(vec![200, 201, u64::MAX - 1]),
        ]
    );
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_update_of_a_million_keys_over_8_shards_is_seen_by_a_map_query() {
    let f = fixture("million", 8, Strategy::Hash).await;
    const KEYS: u64 = 1_000_000;
    let report = f.group.bulk_update((0..KEYS).map(|k| (k, k % 7))).await;
    assert_eq!(report.submitted, KEYS);
    assert_eq!(report.applied, KEYS, "{report:?}");
    assert!(report.is_complete());
    assert_eq!(report.shards.len(), 8);
    assert!(report
        .shards
        .iter()
        .all(|s| s.applied > 100_000 && s.failed == 0));
    let count = f
        .group
        .map(NumQuery::Count, 0, |acc, _, a| acc + n(a))
        .await
        .expect("map");
    assert_eq!(count, KEYS);
    let sum = f
        .group
        .map(NumQuery::Sum, 0, |acc, _, a| acc + n(a))
        .await
        .expect("map");
    assert_eq!(sum, (0..KEYS).map(|k| k % 7).sum::<u64>());
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scatter_gather_with_a_shard_killed_mid_query_returns_the_others_and_names_it() {
    let f = fixture("killed", 8, Strategy::Hash).await;
    let report = f.group.bulk_update((0..800u64).map(|k| (k, 1))).await;
    assert!(report.is_complete());
    // Shard 3 is busy answering when it is killed.
    f.delays.lock().insert(3, Duration::from_secs(30));
    let victim = f.group.shard(3).expect("shard 3 is up");
    let query = tokio::spawn({
        let group = f.group.clone();
        async move {
            group
                .scatter_gather(NumQuery::Count, Duration::from_secs(20))
                .await
        }
    });
    // The other shards answer at once; wait until shard 3 is inside its query.
    tokio::time::sleep(Duration::from_millis(200)).await;
    victim.kill();
    let gathered = tokio::time::timeout(Duration::from_secs(15), query)
        .await
        .expect("the query does not wait for its timeout")
        .expect("query task");
    assert_eq!(gathered.answers.len(), 7);
    assert!(gathered.answers.iter().all(|(shard, _)| *shard != 3));
    assert_eq!(gathered.failed.len(), 1, "{:?}", gathered.failed);
    let failed = &gathered.failed[0];
    assert_eq!(failed.shard, 3);
    assert_eq!(failed.id, "shard.killed.3@n1");
    assert_ne!(failed.kind, "timeout");
    let others: u64 = gathered.answers.into_iter().map(|(_, a)| n(a)).sum();
    let on_three = (0..800u64).filter(|k| f.group.shard_of(k) == 3).count() as u64;
    assert_eq!(others, 800 - on_three);

    // Supervised: shard 3 comes back (empty, from its factory) and the group serves all.
    f.delays.lock().clear();
    let group = f.group.clone();
    assert!(
        eventually(Duration::from_secs(10), || {
            let group = group.clone();
            async move {
                group
                    .scatter_gather(NumQuery::Count, Duration::from_secs(5))
                    .await
                    .is_complete()
            }
        })
        .await
    );
    assert_ne!(f.group.shard(3).expect("restarted").pid(), victim.pid());
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scatter_gather_with_a_shard_past_its_timeout_returns_the_others_and_names_it() {
    let f = fixture("slow", 8, Strategy::ConsistentHash { vnodes: 32 }).await;
    let report = f.group.bulk_update((0..800u64).map(|k| (k, 2))).await;
    assert!(report.is_complete());
    f.delays.lock().insert(5, Duration::from_secs(3));
    let gathered = f
        .group
        .scatter_gather(NumQuery::Sum, Duration::from_millis(300))
        .await;
    assert_eq!(gathered.answers.len(), 7);
    assert_eq!(gathered.failed.len(), 1);
    assert_eq!(gathered.failed[0].shard, 5);
    assert_eq!(gathered.failed[0].kind, "timeout");
    let on_five = (0..800u64).filter(|k| f.group.shard_of(k) == 5).count() as u64;
    let sum: u64 = gathered.answers.into_iter().map(|(_, a)| n(a)).sum();
    assert_eq!(sum, 2 * (800 - on_five));
    // `map` needs every shard: the slow one makes it fail, naming the shard.
    f.delays.lock().insert(5, Duration::from_secs(2));
    let mut slow_map = ShardGroupOptions::new("slow2", 2, Strategy::Hash);
    slow_map.timeout = Duration::from_millis(200);
    let delays = f.delays.clone();
    let g2 = ShardGroup::start(&f.node, slow_map, move |i| NumShard {
        index: i + 4, // shard 1 of this group reads the delay of index 5
        data: BTreeMap::new(),
        delays: delays.clone(),
    })
    .await
    .expect("group");
    match g2.map(NumQuery::Count, 0, |a, _, x| a + n(x)).await {
        Err(Error::ShardFailed {
            shard: 1, error, ..
        }) => {
            assert!(
                matches!(error, plexspaces_core::Error::Timeout(_)),
                "{error:?}"
            )
        }
        other => panic!("expected shard 1 to fail, got {other:?}"),
    }
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_shard_restarts_and_the_group_keeps_serving() {
    let f = fixture("crashy", 4, Strategy::Hash).await;
    let key = (0..)
        .find(|k| f.group.shard_of(k) == 2)
        .expect("a key on shard 2");
    let before = f.group.shard(2).expect("up").pid();
    let err = f
        .group
        .update(key, CRASH)
        .await
        .expect_err("the shard crashes");
    assert!(
        matches!(err, Error::ShardFailed { shard: 2, .. }),
        "{err:?}"
    );
    // The other shards never stopped serving.
    let others = (0..)
        .find(|k| f.group.shard_of(k) == 1)
        .expect("a key on shard 1");
    f.group.update(others, 9).await.expect("shard 1 serves");
    // Shard 2 is back under the same id, and a bulk update reaches it.
    let report = f.group.bulk_update((0..400u64).map(|k| (k, 1))).await;
    assert!(report.is_complete(), "{report:?}");
    assert_ne!(f.group.shard(2).expect("restarted").pid(), before);
    let count = f
        .group
        .map(NumQuery::Count, 0, |a, _, x| a + n(x))
        .await
        .expect("map");
    assert_eq!(count, 400);
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_update_reports_the_batches_a_crash_lost() {
    let f = fixture("lossy", 2, Strategy::Range { bounds: vec![1000] }).await;
    // Shard 0 crashes on key 5 of its only batch: that batch is reported failed, shard 1's
    // writes are applied.
    let items: Vec<(u64, u64)> = (0..2000u64)
        .map(|k| (k, if k == 5 { CRASH } else { 1 }))
        .collect();
    let report = f.group.bulk_update(items).await;
    assert_eq!(report.submitted, 2000);
    assert_eq!(report.shards[1].applied, 1000);
    assert_eq!(report.shards[0].applied, 0);
    assert_eq!(report.shards[0].failed, 1000);
    assert!(report.shards[0].error.is_some());
    assert_eq!(report.failed, 1000);
    f.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_shards_merge_answers_and_bad_options_are_refused() {
    let node = Node::builder("n1").build().await.expect("node");
    let group = ShardGroup::start(
        &node,
        ShardGroupOptions::new("kv", 3, Strategy::Hash),
        |_| KvShard::default(),
    )
    .await
    .expect("group");
    let report = group
        .bulk_update((0..30).map(|i| (format!("k{i:02}"), serde_json::json!(i))))
        .await;
    assert!(report.is_complete());
    group
        .update("k00".into(), serde_json::Value::Null)
        .await
        .expect("delete");
    let q = KvQuery::Scan {
        prefix: "k1".into(),
        limit: 100,
    };
    let merged = group
        .map(q.clone(), KvAnswer::empty(&q), |acc, _, a| acc.merge(a))
        .await
        .expect("map");
    let KvAnswer::Entries(entries) = merged else {
        panic!("entries expected")
    };
    let keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, (10..20).map(|i| format!("k{i}")).collect::<Vec<_>>());
    let count = group
        .map(KvQuery::Count, KvAnswer::Count(0), |a, _, x| a.merge(x))
        .await
        .expect("count");
    assert_eq!(count, KvAnswer::Count(29));

    // A name in use, a bad name, bad bounds: typed errors, nothing started.
    let again = ShardGroup::start(
        &node,
        ShardGroupOptions::new("kv", 3, Strategy::Hash),
        |_| KvShard::default(),
    )
    .await;
    assert!(matches!(again, Err(Error::Runtime(_))), "{again:?}");
    for (name, shards, strategy) in [
        ("bad name", 3, Strategy::Hash),
        ("ok", 0, Strategy::Hash),
        (
            "ok",
            3,
            Strategy::Range {
                bounds: vec!["b".to_string()],
            },
        ),
    ] {
        let r = ShardGroup::start(
            &node,
            ShardGroupOptions::new(name, shards, strategy),
            |_| KvShard::default(),
        )
        .await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    }
    node.shutdown().await;
}
