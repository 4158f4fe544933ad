//! `plexspaces-bench-shards`: shard groups (`plexspaces-shard`) on one node, printed as a
//! markdown table. It reports; it never asserts a target.
//!
//! Rows: scatter-gather latency (a `count` query to every shard, p50 / p99 / mean) over 8
//! and 64 shards; bulk update throughput (keys per second, `u64 -> u64` shards, batches of
//! 4096) over 8 and 64 shards, and over 8 `KvShard`s (`String -> JSON`, the node's).
//! Beside each bulk row, the floor: the same keys inserted into one `BTreeMap` on one task
//! (no actors, no partitioning).
//!
//! ```text
//! cargo run --release -p plexspaces-bench --bin plexspaces-bench-shards [-- --quick]
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use plexspaces_core::{BoxError, Node};
use plexspaces_shard::{KvQuery, KvShard, Shard, ShardGroup, ShardGroupOptions, Strategy};

/// `u64 -> u64`; answers `count`.
#[derive(Default)]
struct NumShard(BTreeMap<u64, u64>);

impl Shard for NumShard {
    type Key = u64;
    type Value = u64;
    type Query = ();
    type Answer = usize;

    fn update(&mut self, key: u64, value: u64) -> Result<(), BoxError> {
        self.0.insert(key, value);
        Ok(())
    }

    async fn query(&mut self, _q: &()) -> Result<usize, BoxError> {
        Ok(self.0.len())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn scatter_gather(
    node: &Node,
    shards: usize,
    queries: usize,
) -> Result<(Duration, Duration, Duration)> {
    let group = ShardGroup::start(
        node,
        ShardGroupOptions::new(format!("sg{shards}"), shards, Strategy::Hash),
        |_| KvShard::default(),
    )
    .await?;
    let report = group
        .bulk_update((0..10_000u64).map(|k| (k.to_string(), serde_json::json!(k))))
        .await;
    anyhow::ensure!(report.is_complete(), "load failed");
    for _ in 0..queries / 10 {
        group
            .scatter_gather(KvQuery::Count, Duration::from_secs(5))
            .await;
    }
    let mut times = Vec::with_capacity(queries);
    for _ in 0..queries {
        let t = Instant::now();
        let g = group
            .scatter_gather(KvQuery::Count, Duration::from_secs(5))
            .await;
        times.push(t.elapsed());
        anyhow::ensure!(g.is_complete(), "a shard failed");
    }
    group.stop().await?;
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    Ok((percentile(&times, 0.5), percentile(&times, 0.99), mean))
}

async fn bulk_num(node: &Node, shards: usize, keys: u64) -> Result<f64> {
    let group = ShardGroup::start(
        node,
        ShardGroupOptions::new(format!("bulk{shards}"), shards, Strategy::Hash),
        |_| NumShard::default(),
    )
    .await?;
    let t = Instant::now();
    let report = group.bulk_update((0..keys).map(|k| (k, k))).await;
    let d = t.elapsed();
    anyhow::ensure!(report.applied == keys, "bulk incomplete");
    let count = group.map((), 0, |acc, _, n| acc + n).await?;
    anyhow::ensure!(count as u64 == keys, "map missed keys");
    group.stop().await?;
    Ok(keys as f64 / d.as_secs_f64())
}

async fn bulk_kv(node: &Node, shards: usize, keys: u64) -> Result<f64> {
    let group = ShardGroup::start(
        node,
        ShardGroupOptions::new(format!("bulkkv{shards}"), shards, Strategy::Hash),
        |_| KvShard::default(),
    )
    .await?;
    let items: Vec<(String, serde_json::Value)> = (0..keys)
        .map(|k| (format!("key-{k}"), serde_json::json!(k)))
        .collect();
    let t = Instant::now();
    let report = group.bulk_update(items).await;
    let d = t.elapsed();
    anyhow::ensure!(report.applied == keys, "bulk incomplete");
    group.stop().await?;
    Ok(keys as f64 / d.as_secs_f64())
}

fn floor(keys: u64) -> f64 {
    let t = Instant::now();
    let mut map = BTreeMap::new();
    for k in 0..keys {
        map.insert(k, k);
    }
    let d = t.elapsed();
    std::hint::black_box(&map);
    keys as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (queries, keys) = if quick {
        (200, 100_000)
    } else {
        (2_000, 1_000_000)
    };
    let node = Node::builder("bench").build().await?;
    println!(
        "shard groups ({}; {} cpus)\n",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| row | figure |");
    println!("|---|---|");
    for shards in [8, 64] {
        let (p50, p99, mean) = scatter_gather(&node, shards, queries).await?;
        println!(
            "| scatter-gather `count`, {shards} shards ({queries} queries) | p50 {:.1} µs, p99 {:.1} µs, mean {:.1} µs |",
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            mean.as_secs_f64() * 1e6
        );
    }
    for shards in [8, 64] {
        let rate = bulk_num(&node, shards, keys).await?;
        println!(
            "| bulk update {keys} `u64` keys, {shards} shards | {:.2} M keys/s |",
            rate / 1e6
        );
    }
    let rate = bulk_kv(&node, 8, keys).await?;
    println!(
        "| bulk update {keys} `String -> JSON` keys (`KvShard`), 8 shards | {:.2} M keys/s |",
        rate / 1e6
    );
    println!(
        "| floor: {keys} inserts into one `BTreeMap<u64, u64>`, one task | {:.2} M keys/s |",
        floor(keys) / 1e6
    );
    node.shutdown().await;
    Ok(())
}
