//! One cluster member in its own process, for failure tests (kill -9, SIGTERM, restart,
//! partition) driven by `plexspaces_test_util::TestCluster`. Not a product binary: it has the
//! fault switch `plexspaces start` lacks.
//!
//! It runs `testing::Echo` registered as `echo`, prints `ready <transport addr>` once it has joined, and reads
//! commands on stdin: `partition <peer> on|off`. Built with the `fault-injection` feature. On
//! SIGTERM it leaves the cluster gracefully and shuts the node down.
//!
//! Usage: `cluster-test-node --cluster NAME --name NODE --gossip ADDR [--listen ADDR]
//! [--seeds ADDR,ADDR] [--gossip-interval-ms N]`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use plexspaces_cluster::testing::Echo;
use plexspaces_cluster::{Cluster, ClusterOptions, Network, NetworkOptions};
use plexspaces_core::Node;
use tokio::io::AsyncBufReadExt;

fn args() -> anyhow::Result<HashMap<String, String>> {
    let mut map = HashMap::new();
    let mut args = std::env::args().skip(1);
    while let Some(key) = args.next() {
        let key = key
            .strip_prefix("--")
            .with_context(|| format!("unexpected argument {key}"))?
            .to_owned();
        let value = args
            .next()
            .with_context(|| format!("--{key} needs a value"))?;
        map.insert(key, value);
    }
    Ok(map)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = args()?;
    let get = |key: &str| {
        args.get(key)
            .with_context(|| format!("--{key} is required"))
    };
    let cluster_name = get("cluster")?.clone();
    let name = get("name")?.clone();
    let gossip = get("gossip")?.parse().context("--gossip")?;
    let mut options = NetworkOptions::new(cluster_name, name.clone());
    if let Some(listen) = args.get("listen") {
        options = options.listen(listen.parse().context("--listen")?);
    }
    let network = Network::start(options).await?;
    let node = Node::builder(name.clone())
        .transport(Arc::new(network.clone()))
        .build()
        .await?;
    let echo = node.spawn_named("echo", Echo)?;
    node.register("echo", &echo.pid())?;
    let seeds = args
        .get("seeds")
        .map(|s| {
            s.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut cluster_options = ClusterOptions::new(gossip).seeds(seeds);
    if let Some(ms) = args.get("gossip-interval-ms") {
        cluster_options =
            cluster_options.gossip_interval(Duration::from_millis(ms.parse().context("interval")?));
    }
    let cluster = Cluster::start(cluster_options, &node, network.clone()).await?;
    println!("ready {}", network.advertise_addr());

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            line = lines.next_line() => match line {
                Ok(Some(line)) => command(&cluster, &line),
                // No more commands: serve until SIGTERM.
                Ok(None) | Err(_) => {
                    term.recv().await;
                    break;
                }
            },
        }
    }
    cluster.leave().await;
    node.shutdown().await;
    Ok(())
}

fn command(cluster: &plexspaces_cluster::ClusterHandle, line: &str) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["partition", peer, on_off] => cluster.set_partitioned(peer, *on_off == "on"),
        _ => eprintln!("unsupported command: {line}"),
    }
}
