//! The node in a cluster: joining it from `[cluster]` ([`join`]), the membership view that
//! `plexspaces cluster status`, `/api/v1/cluster/members`, the dashboard and `/metrics`
//! show ([`NodeCluster`]), and invocation from anywhere ([`forward`]): a call that reaches
//! this node for a virtual actor active on another node is sent there and answered as that
//! node answers.
//!
//! HTTP ([`http`]) and gRPC ([`grpc`]) are thin adapters over [`NodeCluster`].

pub mod forward;
pub mod grpc;
pub mod http;

use std::collections::BTreeMap;

use plexspaces_cluster::tls::TlsOptions;
use plexspaces_cluster::{
    Cluster, ClusterHandle, ClusterOptions, Member, MemberState, Network, NetworkHandle,
    NetworkOptions,
};
use plexspaces_core::Node;
use serde::Serialize;

use crate::config::{ClusterConfig, ClusterPlan};
use crate::error::{Error, Result};
use crate::service::Caller;

/// One member as the node's APIs show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberView {
    /// Its node name.
    pub node: String,
    /// `alive`, `leaving` or `dead`.
    pub state: &'static str,
    /// Whether it is the node that answered.
    pub is_self: bool,
    /// Its cluster address (transport; gossip is on the same port), if known.
    pub addr: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Milliseconds since the Unix epoch when its heartbeat last rose here (0: not yet).
    pub last_heartbeat_ms: u64,
    /// Its gossip heartbeat counter.
    pub heartbeat: u64,
    /// Milliseconds since the Unix epoch when its state last changed here.
    pub since_ms: u64,
    /// Its incarnation (start time in ms).
    pub generation: u64,
    /// CPUs it can use.
    pub cpus: u64,
    /// Live actors at its last refresh.
    pub live_actors: u64,
    /// Its PlexSpaces version.
    pub version: String,
}

/// The name of a member state in the APIs.
pub fn state_name(state: MemberState) -> &'static str {
    match state {
        MemberState::Alive => "alive",
        MemberState::Leaving => "leaving",
        MemberState::Dead => "dead",
    }
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        MemberView {
            node: m.node.clone(),
            state: state_name(m.state),
            is_self: m.is_self,
            addr: m.addr.map(|a| a.to_string()).unwrap_or_default(),
            labels: m.labels.clone(),
            last_heartbeat_ms: m.last_heartbeat_ms,
            heartbeat: m.heartbeat,
            since_ms: m.since_ms,
            generation: m.generation,
            cpus: m.cpus,
            live_actors: m.live_actors,
            version: m.version.clone(),
        }
    }
}

/// What a caller learns about the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// The node that answered.
    pub node: String,
    /// The cluster's name; empty when the node runs alone.
    pub cluster_name: String,
    /// Whether the node is in a cluster.
    pub clustered: bool,
    /// Every member it has seen (only itself, `alive`, when it runs alone), sorted by name.
    pub members: Vec<MemberView>,
}

/// The cluster service: the membership view of this node. Cheap to clone.
#[derive(Clone, Debug)]
pub struct NodeCluster {
    node: String,
    handle: Option<ClusterHandle>,
}

impl NodeCluster {
    /// The view of `node`, in the cluster `handle` joined (or alone).
    pub fn new(node: &str, handle: Option<ClusterHandle>) -> Self {
        NodeCluster {
            node: node.to_owned(),
            handle,
        }
    }

    /// The membership, if the node is in a cluster.
    pub fn handle(&self) -> Option<&ClusterHandle> {
        self.handle.as_ref()
    }

    /// Members and their state. Membership is not tenant data: any authenticated caller
    /// may read it.
    pub fn status(&self, _caller: &Caller) -> ClusterStatus {
        match &self.handle {
            Some(h) => ClusterStatus {
                node: self.node.clone(),
                cluster_name: h.network().cluster_name().to_owned(),
                clustered: true,
                members: h.members().iter().map(MemberView::from).collect(),
            },
            None => ClusterStatus {
                node: self.node.clone(),
                cluster_name: String::new(),
                clustered: false,
                members: vec![MemberView {
                    node: self.node.clone(),
                    state: "alive",
                    is_self: true,
                    addr: String::new(),
                    labels: BTreeMap::new(),
                    last_heartbeat_ms: 0,
                    heartbeat: 0,
                    since_ms: 0,
                    generation: 0,
                    cpus: std::thread::available_parallelism()
                        .map(|n| n.get() as u64)
                        .unwrap_or(1),
                    live_actors: 0,
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                }],
            },
        }
    }

    /// Members per state (`alive`, `leaving`, `dead`), for the dashboard.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::from([("alive", 0), ("leaving", 0), ("dead", 0)]);
        match &self.handle {
            Some(h) => {
                for m in h.members() {
                    *counts.entry(state_name(m.state)).or_default() += 1;
                }
            }
            None => {
                counts.insert("alive", 1);
            }
        }
        counts
    }
}

/// The transport a clustered node is built with, before its core node exists.
pub async fn network(plan: &ClusterPlan, node_name: &str) -> Result<NetworkHandle> {
    let mut options = NetworkOptions::new(plan.name.clone(), node_name).listen(plan.listen);
    options.advertise = Some(plan.advertise);
    if let Some((ca, cert, key)) = &plan.tls {
        let tls = TlsOptions::from_files(ca, cert, key)
            .map_err(|e| Error::Config(format!("cluster TLS: {e}")))?;
        options = options.tls(tls);
    }
    Network::start(options)
        .await
        .map_err(|e| Error::Io(format!("cluster transport: {e}")))
}

/// Joins the cluster: gossip on the plan's address (UDP, same port as the transport), its
/// seeds, labels and gossip interval; the `plexspaces_cluster_*` metrics in `prometheus`.
pub async fn join(
    config: &ClusterConfig,
    plan: &ClusterPlan,
    node: &Node,
    network: NetworkHandle,
    prometheus: &prometheus::Registry,
) -> Result<ClusterHandle> {
    let mut options = ClusterOptions::new(plan.listen)
        .seeds(plan.seeds.clone())
        .gossip_interval(config.gossip_interval())
        .metrics(prometheus.clone());
    options.gossip_advertise = Some(plan.advertise);
    options.transport_advertise = Some(plan.advertise);
    options.labels = config.labels.clone();
    let handle = Cluster::start(options, node, network)
        .await
        .map_err(|e| Error::Io(format!("cluster membership: {e}")))?;
    tracing::info!(
        cluster = %plan.name,
        addr = %plan.advertise,
        seeds = ?plan.seeds,
        mtls = plan.tls.is_some(),
        "joined cluster"
    );
    Ok(handle)
}
