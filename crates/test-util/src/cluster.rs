//! [`TestCluster`]: real cluster-member processes for failure tests.
//!
//! Each member is a child process of a binary that speaks a small protocol (the cluster
//! crate's `cluster-test-node`): it takes `--cluster --name --listen --gossip --seeds
//! --gossip-interval-ms`, prints `ready <addr>` on stdout once it has joined, obeys
//! `partition <peer> on|off` lines on stdin, and leaves gracefully on SIGTERM. Every address
//! is on 127.0.0.1. Children are killed when the `TestCluster` is dropped.
//!
//! [`TestCluster::start_nodes`] starts real `plexspaces start` processes instead (the node
//! binary, `CARGO_BIN_EXE_plexspaces` in the cli's tests): each with its own cluster port
//! (TCP transport and UDP gossip on one port), HTTP and gRPC ports and data dir, seeded from
//! the others, ready once it logs `node ready`. Extra settings go in as `PLEXSPACES_*`
//! environment variables ([`TestCluster::set_env`]). Their fault switch is the node
//! binary's test-only one: with `PLEXSPACES_FAULT_INJECTION=1` in the env (and a binary
//! built with the cli's `fault-injection` feature) a member reads `partition <peer> on|off`
//! on stdin and acknowledges each command on its log, and [`TestCluster::partition`] waits
//! for that acknowledgement.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
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
    /// A `plexspaces start` member's HTTP address.
    pub http: Option<SocketAddr>,
    /// A `plexspaces start` member's gRPC address.
    pub grpc: Option<SocketAddr>,
    /// A `plexspaces start` member's data dir (kept across restarts).
    pub data_dir: Option<PathBuf>,
    /// Environment variables of this member only (on top of the cluster's).
    pub env: Vec<(String, String)>,
    log: Arc<Mutex<String>>,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
}

impl TestNode {
    /// The OS process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Everything a `plexspaces start` member wrote to stderr so far (all its runs).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `http://<grpc addr>`, the `--endpoint` of the CLI for this member.
    pub fn endpoint(&self) -> String {
        self.grpc.map(|a| format!("http://{a}")).unwrap_or_default()
    }
}

/// What the members run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `cluster-test-node`.
    TestNode,
    /// `plexspaces start`.
    Plexspaces,
}

/// A port free on 127.0.0.1 for both TCP and UDP when asked (a `plexspaces` cluster
/// address carries both).
pub fn free_tcp_udp_port() -> std::io::Result<u16> {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::other("no port free for both TCP and UDP"))
}

/// N member processes of one cluster.
#[derive(Debug)]
pub struct TestCluster {
    binary: PathBuf,
    cluster: String,
    gossip_interval: Duration,
    nodes: Vec<TestNode>,
    kind: Kind,
    env: Vec<(String, String)>,
    _dir: Option<PathBuf>,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Some(dir) = &self._dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
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
            kind: Kind::TestNode,
            env: Vec::new(),
            _dir: None,
        };
        for i in 0..count {
            let gossip = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
            let listen = SocketAddr::from(([127, 0, 0, 1], crate::free_port()?));
            this.nodes.push(TestNode {
                name: format!("node{i}"),
                gossip,
                listen,
                http: None,
                grpc: None,
                data_dir: None,
                env: Vec::new(),
                log: Arc::default(),
                child: None,
                stdin: None,
            });
            this.spawn(i).await?;
        }
        Ok(this)
    }

    /// `count` real `plexspaces start` processes named `node0..` in cluster `cluster`, each
    /// seeded with every other's cluster address, auth off, all on 127.0.0.1 with their own
    /// ports and data dirs (under a fresh temporary directory). `env` is passed to every
    /// member. Returns when all logged `node ready`; whether they see each other yet is for
    /// the test to check.
    pub async fn start_nodes(
        binary: impl Into<PathBuf>,
        cluster: &str,
        count: usize,
        gossip_interval: Duration,
        env: &[(&str, &str)],
    ) -> std::io::Result<TestCluster> {
        let mut this = TestCluster::plexspaces(binary, cluster, gossip_interval, env)?;
        for _ in 0..count {
            this.add_node(&[]).await?;
        }
        Ok(this)
    }

    /// An empty cluster of `plexspaces start` members; add them with
    /// [`TestCluster::add_node`].
    pub fn plexspaces(
        binary: impl Into<PathBuf>,
        cluster: &str,
        gossip_interval: Duration,
        env: &[(&str, &str)],
    ) -> std::io::Result<TestCluster> {
        let dir = std::env::temp_dir().join(crate::unique_name("plexspaces-cluster"));
        std::fs::create_dir_all(&dir)?;
        Ok(TestCluster {
            binary: binary.into(),
            cluster: cluster.to_owned(),
            gossip_interval,
            nodes: Vec::new(),
            kind: Kind::Plexspaces,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            _dir: Some(dir),
        })
    }

    /// Starts one more `plexspaces start` member `node<N>` with its own `env` on top of the
    /// cluster's (e.g. its TLS files, or `PLEXSPACES_CLUSTER_NAME` for a member of another
    /// cluster, which then replaces `--cluster-name`); returns its index once it logged
    /// `node ready`.
    pub async fn add_node(&mut self, env: &[(&str, &str)]) -> std::io::Result<usize> {
        let i = self.nodes.len();
        let port = free_tcp_udp_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let data_dir = self
            ._dir
            .as_ref()
            .ok_or_else(|| std::io::Error::other("not a plexspaces cluster"))?
            .join(format!("node{i}"));
        self.nodes.push(TestNode {
            name: format!("node{i}"),
            gossip: addr,
            listen: addr,
            http: Some(SocketAddr::from(([127, 0, 0, 1], crate::free_port()?))),
            grpc: Some(SocketAddr::from(([127, 0, 0, 1], crate::free_port()?))),
            data_dir: Some(data_dir),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            log: Arc::default(),
            child: None,
            stdin: None,
        });
        self.spawn(i).await?;
        Ok(i)
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
        if self.kind == Kind::Plexspaces {
            return self.spawn_plexspaces(i).await;
        }
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

    async fn spawn_plexspaces(&mut self, i: usize) -> std::io::Result<()> {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, n)| n.gossip.to_string())
            .collect();
        let fault_switch = self.has_fault_switch(i);
        let node = &mut self.nodes[i];
        let missing = || std::io::Error::other("not a plexspaces member");
        let mut cmd = Command::new(&self.binary);
        cmd.arg("start")
            .arg("--node-id")
            .arg(&node.name)
            .arg("--http-addr")
            .arg(node.http.ok_or_else(missing)?.to_string())
            .arg("--grpc-addr")
            .arg(node.grpc.ok_or_else(missing)?.to_string())
            .arg("--data-dir")
            .arg(node.data_dir.as_ref().ok_or_else(missing)?)
            .arg("--cluster-addr")
            .arg(node.listen.to_string());
        // A member's own PLEXSPACES_CLUSTER_NAME wins (flags would override it).
        if !node.env.iter().any(|(k, _)| k == "PLEXSPACES_CLUSTER_NAME") {
            cmd.arg("--cluster-name").arg(&self.cluster);
        }
        if !seeds.is_empty() {
            cmd.arg("--seeds").arg(seeds.join(","));
        }
        cmd.env_remove("PLEXSPACES_JWT_SECRET")
            .env("PLEXSPACES_DISABLE_AUTH", "1")
            .env(
                "PLEXSPACES_GOSSIP_INTERVAL_MS",
                self.gossip_interval.as_millis().to_string(),
            )
            .env("PLEXSPACES_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().cloned())
            .envs(node.env.iter().cloned())
            .stdin(if fault_switch {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        node.stdin = child.stdin.take();
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| std::io::Error::other("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let log = node.log.clone();
        let ready = tokio::time::timeout(READY_LIMIT, async {
            while let Some(line) = lines.next_line().await? {
                let is_ready = line.contains("node ready");
                {
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
                if is_ready {
                    return Ok(());
                }
            }
            Err(std::io::Error::other(format!(
                "exited before ready: {}",
                log.lock().unwrap_or_else(|p| p.into_inner())
            )))
        })
        .await
        .map_err(|_| std::io::Error::other("not ready in time"))?;
        ready?;
        // Keep reading so the child never blocks on a full pipe, and keep the log.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
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

    /// Whether member `i` is a `plexspaces start` member with its fault switch on
    /// (`PLEXSPACES_FAULT_INJECTION=1` in the cluster's or its own env).
    fn has_fault_switch(&self, i: usize) -> bool {
        self.env
            .iter()
            .chain(self.nodes[i].env.iter())
            .any(|(k, v)| k == "PLEXSPACES_FAULT_INJECTION" && v == "1")
    }

    /// Cuts member `i` off from the node named `peer`, or heals the cut (the member's
    /// transport and gossip drop that peer; needs the binary's fault switch). One way: cut
    /// both members for a symmetric partition. For a `plexspaces start` member, returns once
    /// the member acknowledged the command on its log.
    pub async fn partition(&mut self, i: usize, peer: &str, on: bool) -> std::io::Result<()> {
        let plexspaces = self.kind == Kind::Plexspaces;
        if plexspaces && !self.has_fault_switch(i) {
            return Err(std::io::Error::other(
                "this member has no fault switch: start it with PLEXSPACES_FAULT_INJECTION=1 \
                 (and a binary built with the cli's `fault-injection` feature)",
            ));
        }
        let command = format!("partition {peer} {}", if on { "on" } else { "off" });
        let ack = format!("fault injection applied: {command}");
        let acked_before = self.nodes[i].log().matches(ack.as_str()).count();
        let stdin = self.nodes[i]
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("member is not running"))?;
        stdin.write_all(format!("{command}\n").as_bytes()).await?;
        stdin.flush().await?;
        if !plexspaces {
            return Ok(());
        }
        let node = &self.nodes[i];
        let ack = ack.as_str();
        let acked = crate::eventually(READY_LIMIT, || async move {
            node.log().matches(ack).count() > acked_before
        })
        .await;
        if acked {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "node{i} did not acknowledge `{command}`"
            )))
        }
    }
}
