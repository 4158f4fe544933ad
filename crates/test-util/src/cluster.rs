//! [`TestCluster`]: real cluster-member processes for failure tests.
//!
//! Each member is a child process of a binary that speaks a small protocol (the cluster
//! crate's `cluster-test-node`): it takes `--cluster --name --listen --gossip --seeds
//! --gossip-interval-ms`, prints `ready <addr>` on stdout once it has joined, obeys
//! `partition <peer> on|off` lines on stdin, and leaves gracefully on SIGTERM. Every address
//! is on 127.0.0.1. Children are killed when the `TestCluster` is dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// A UDP port that was free on 127.0.0.1 when asked (for gossip).
pub fn free_udp_port() -> std::io::Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

/// One member process.
#[derive(Debug)]
pub struct TestNode {
    /// Its node name.
    pub name: String,
    /// Its gossip address (a seed for others).
    pub gossip: SocketAddr,
    /// Its transport address.
    pub listen: SocketAddr,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl TestNode {
    /// The OS process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }
}

/// N member processes of one cluster.
#[derive(Debug)]
pub struct TestCluster {
    binary: PathBuf,
    cluster: String,
    gossip_interval: Duration,
    nodes: Vec<TestNode>,
}

const READY_LIMIT: Duration = Duration::from_secs(30);

impl TestCluster {
    /// Starts `count` members named `node0..` of `cluster` from `binary`; each seeds from
    /// node0. Returns when all printed `ready`.
    pub async fn start(
        binary: impl Into<PathBuf>,
        cluster: &str,
        count: usize,
        gossip_interval: Duration,
    ) -> std::io::Result<TestCluster> {
        let mut this = TestCluster {
            binary: binary.into(),
            cluster: cluster.to_owned(),
            gossip_interval,
            nodes: Vec::new(),
        };
        for i in 0..count {
            let gossip = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
            let listen = SocketAddr::from(([127, 0, 0, 1], crate::free_port()?));
            this.nodes.push(TestNode {
                name: format!("node{i}"),
                gossip,
                listen,
                child: None,
                stdin: None,
            });
            this.spawn(i).await?;
        }
        Ok(this)
    }

    /// The members, in start order.
    pub fn nodes(&self) -> &[TestNode] {
        &self.nodes
    }

    /// Gossip addresses to seed another member (for example an in-test node) with.
    pub fn seeds(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.gossip.to_string()).collect()
    }

    async fn spawn(&mut self, i: usize) -> std::io::Result<()> {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.gossip.to_string())
            .collect();
        let node = &mut self.nodes[i];
        let mut child = Command::new(&self.binary)
            .arg("--cluster")
            .arg(&self.cluster)
            .arg("--name")
            .arg(&node.name)
            .arg("--listen")
            .arg(node.listen.to_string())
            .arg("--gossip")
            .arg(node.gossip.to_string())
            .arg("--seeds")
            .arg(seeds.join(","))
            .arg("--gossip-interval-ms")
            .arg(self.gossip_interval.as_millis().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(READY_LIMIT, async {
            while let Some(line) = lines.next_line().await? {
                if line.starts_with("ready ") {
                    return Ok(());
                }
            }
            Err(std::io::Error::other("exited before ready"))
        })
        .await
        .map_err(|_| std::io::Error::other("not ready in time"))?;
        ready?;
        // Keep reading so the child never blocks on a full stdout pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        node.stdin = child.stdin.take();
        node.child = Some(child);
        Ok(())
    }

    /// kill -9 member `i` and waits for it to be gone.
    pub async fn kill(&mut self, i: usize) -> std::io::Result<()> {
        let node = &mut self.nodes[i];
        node.stdin = None;
        if let Some(mut child) = node.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// SIGTERM member `i` (it leaves gracefully) and waits for it to exit.
    pub async fn terminate(&mut self, i: usize) -> std::io::Result<()> {
        let node = &mut self.nodes[i];
        node.stdin = None;
        if let Some(mut child) = node.child.take() {
            if let Some(pid) = child.id() {
                Command::new("kill")
                    .arg("-TERM")
                    .arg(pid.to_string())
                    .status()
                    .await?;
            }
            child.wait().await?;
        }
        Ok(())
    }

    /// Starts member `i` again with the same name and ports.
    pub async fn restart(&mut self, i: usize) -> std::io::Result<()> {
        self.kill(i).await?;
        self.spawn(i).await
    }

    /// Cuts member `i` off from the node named `peer`, or heals the cut (the member's
    /// transport and gossip drop that peer; needs the binary's fault switch).
    pub async fn partition(&mut self, i: usize, peer: &str, on: bool) -> std::io::Result<()> {
        let stdin = self.nodes[i]
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("member is not running"))?;
        let line = format!("partition {peer} {}\n", if on { "on" } else { "off" });
        stdin.write_all(line.as_bytes()).await?;
        stdin.flush().await
    }
}
