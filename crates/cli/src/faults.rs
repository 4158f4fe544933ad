//! The test-only fault switch of `plexspaces start`: partitions between real node processes
//! for failure tests (`plexspaces_test_util::TestCluster::partition`).
//!
//! Off unless both hold: the binary was built with the `fault-injection` feature (never in
//! the default build, so release binaries and images do not have it), and the node was
//! started with `PLEXSPACES_FAULT_INJECTION=1`. Then the node reads commands on stdin, one
//! per line:
//!
//! - `partition <peer> on|off`: this node's transport and gossip drop (or stop dropping)
//!   everything to and from the member named `<peer>`
//!   (`plexspaces_cluster::ClusterHandle::set_partitioned`). A partition is one-way per
//!   node: cut both sides for a symmetric split.
//!
//! Each applied command is acknowledged on the log with `fault injection applied: <command>`.
//! The HTTP and gRPC listeners and the databases stay reachable: a partition cuts node-to-node
//! traffic only, which is the split the activation directory has to survive.
//! `PLEXSPACES_FAULT_INJECTION=1` on a binary without the feature, or on a node that is not
//! in a cluster, refuses to start (exit code 6).

use plexspaces_node::ServerHandle;

/// The environment variable that turns the switch on.
pub const ENV: &str = "PLEXSPACES_FAULT_INJECTION";

/// Whether the environment asks for the switch.
pub fn requested() -> bool {
    std::env::var(ENV).is_ok_and(|v| matches!(v.trim(), "1" | "true"))
}

/// Starts reading commands on stdin if [`requested`]; an error when it cannot be served.
pub fn start(handle: &ServerHandle) -> Result<(), String> {
    if !requested() {
        return Ok(());
    }
    serve(handle)
}

#[cfg(feature = "fault-injection")]
fn serve(handle: &ServerHandle) -> Result<(), String> {
    use tokio::io::AsyncBufReadExt;

    let Some(cluster) = handle.cluster().cloned() else {
        return Err(format!(
            "{ENV}=1 needs a node in a cluster ([cluster] or --cluster-addr)"
        ));
    };
    tracing::warn!("fault injection is on: partitions are taken from stdin (tests only)");
    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["partition", peer, on_off @ ("on" | "off")] => {
                    cluster.set_partitioned(peer, *on_off == "on");
                    tracing::warn!("fault injection applied: partition {peer} {on_off}");
                }
                _ => tracing::warn!(command = %line, "fault injection: unsupported command"),
            }
        }
    });
    Ok(())
}

#[cfg(not(feature = "fault-injection"))]
fn serve(_handle: &ServerHandle) -> Result<(), String> {
    Err(format!(
        "{ENV}=1: this binary has no fault switch (not built with the `fault-injection` \
         feature, which is for tests only)"
    ))
}
