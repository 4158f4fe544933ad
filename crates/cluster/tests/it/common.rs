//! Actors and helpers shared by the cluster tests.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
pub use plexspaces_cluster::testing::Echo;
use plexspaces_cluster::{Network, NetworkHandle, NetworkOptions};
use plexspaces_core::{Actor, BoxError, Context, Envelope, Info, MonitorRef, Node, Pid};

/// What an [`Observer`] saw, in order.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, entry: String) {
        self.0.lock().push(entry);
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().clone()
    }

    pub fn sorted(&self) -> Vec<String> {
        let mut entries = self.entries();
        entries.sort();
        entries
    }
}

/// Waits until `check` holds, failing the test after `limit`.
pub async fn until(what: &str, limit: Duration, check: impl Fn() -> bool) {
    let ok = plexspaces_test_util::eventually(limit, || {
        let value = check();
        async move { value }
    })
    .await;
    assert!(ok, "timed out waiting for: {what}");
}

/// Counts what it is told (one-way throughput and ordering checks).
pub struct Counter {
    pub seen: Arc<Mutex<Vec<u64>>>,
}

impl Actor for Counter {
    type Msg = u64;
    type Reply = u64;

    async fn handle_cast(&mut self, n: u64, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.seen.lock().push(n);
        Ok(())
    }

    async fn handle_call(
        &mut self,
        _n: u64,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<u64>, BoxError> {
        Ok(Some(self.seen.lock().len() as u64))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<u64> {
        env.decode_json()
    }

    fn encode(msg: &u64) -> plexspaces_core::Result<Envelope> {
        Envelope::json("count", msg)
    }

    fn encode_reply(request_type: &str, reply: &u64) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<u64> {
        env.decode_json()
    }
}

/// Links to or monitors a pid on command; logs what it gets.
pub struct Observer {
    pub log: Log,
}

pub enum Obs {
    Link(Pid),
    Monitor(Pid),
    Trap,
}

impl Actor for Observer {
    type Msg = Obs;
    type Reply = Option<MonitorRef>;

    async fn handle_call(
        &mut self,
        msg: Obs,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Option<MonitorRef>>, BoxError> {
        Ok(Some(match msg {
            Obs::Link(p) => {
                ctx.link(&p);
                None
            }
            Obs::Monitor(p) => Some(ctx.monitor(&p)),
            Obs::Trap => {
                ctx.trap_exit(true);
                None
            }
        }))
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        match info {
            Info::Exit { from, reason } => self.log.push(format!("exit:{}:{reason}", from.id())),
            Info::Down { id, reason, .. } => self.log.push(format!("down:{id}:{reason}")),
            _ => {}
        }
        Ok(())
    }
}

/// A node named `name` in `cluster` with a TCP transport on 127.0.0.1.
pub async fn tcp_node(cluster: &str, name: &str) -> (Node, NetworkHandle) {
    tcp_node_with(NetworkOptions::new(cluster, name)).await
}

pub async fn tcp_node_with(options: NetworkOptions) -> (Node, NetworkHandle) {
    let name = options.node_name.clone();
    let network = Network::start(options).await.expect("transport starts");
    let node = Node::builder(name)
        .transport(Arc::new(network.clone()))
        .build()
        .await
        .expect("node starts");
    network.attach(&node);
    (node, network)
}

/// Two nodes that know each other's transport address (no membership).
pub async fn two_tcp_nodes(cluster: &str) -> (Node, NetworkHandle, Node, NetworkHandle) {
    let (a, a_net) = tcp_node(cluster, "alpha").await;
    let (b, b_net) = tcp_node(cluster, "beta").await;
    a_net.add_peer("beta", b_net.local_addr());
    b_net.add_peer("alpha", a_net.local_addr());
    (a, a_net, b, b_net)
}
