//! Cluster membership on chitchat: who is in the cluster, their metadata, and the verdict
//! "node X is gone" that turns into `noconnection` on this node.
//!
//! Failure detection is chitchat's phi-accrual detector over gossip heartbeats. A node's
//! heartbeat is seen about once per gossip interval (in clusters of up to four nodes every
//! node gossips with every other each round), and phi is the time since the last heartbeat
//! divided by the mean interval. A silent node is declared dead when phi passes
//! `phi_threshold`, checked once per gossip round, so detection takes about
//! `phi_threshold × gossip_interval + gossip_interval`: with the defaults (8, 200 ms) about
//! 1.8 s, well inside the 5 s target. A killed process is usually noticed sooner by the
//! transport, whose connection to it closes at once.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chitchat::transport::Transport as GossipTransport;
#[cfg(not(feature = "fault-injection"))]
use chitchat::transport::UdpTransport;
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState,
};
use parking_lot::Mutex;
use plexspaces_core::{ActorId, Envelope, Node, Pid, WeakNode};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::network::NetworkHandle;

const KEY_ADDR: &str = "transport_addr";
const KEY_LABELS: &str = "labels";
const KEY_CPUS: &str = "cpus";
const KEY_MEMORY: &str = "memory_bytes";
const KEY_ACTORS: &str = "live_actors";
const KEY_VERSION: &str = "version";
const KEY_LEAVING: &str = "leaving";
/// `reg:<name>` = the id of the local actor registered under `name`.
const PREFIX_NAME: &str = "reg:";
/// `pg:<group>` = JSON list of the ids of this node's members of `group`.
const PREFIX_GROUP: &str = "pg:";

/// How often this node refreshes its live-actor count in gossip.
const METADATA_REFRESH: Duration = Duration::from_secs(1);

/// Settings of a [`Cluster`]. The cluster name and node name come from the
/// [`NetworkHandle`] the cluster is started with.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Where to gossip (UDP).
    pub gossip_listen: SocketAddr,
    /// The gossip address other nodes use; `None` is `gossip_listen`.
    pub gossip_advertise: Option<SocketAddr>,
    /// Gossip addresses (`host:port`) of nodes to join through.
    pub seeds: Vec<String>,
    /// Time between gossip rounds (and heartbeats).
    pub gossip_interval: Duration,
    /// Phi above which a silent node is declared dead.
    pub phi_threshold: f64,
    /// Labels gossiped with this node (zone, role, ...).
    pub labels: BTreeMap<String, String>,
    /// The transport address other nodes dial; `None` is the network's listener address.
    pub transport_advertise: Option<SocketAddr>,
    /// Where the `plexspaces_cluster_*` metrics are registered, if anywhere.
    pub metrics: Option<prometheus::Registry>,
}

impl ClusterOptions {
    /// Defaults, gossiping on `gossip_listen`.
    pub fn new(gossip_listen: SocketAddr) -> Self {
        ClusterOptions {
            gossip_listen,
            gossip_advertise: None,
            seeds: Vec::new(),
            gossip_interval: Duration::from_millis(200),
            phi_threshold: 8.0,
            labels: BTreeMap::new(),
            transport_advertise: None,
            metrics: None,
        }
    }

    /// Joins through these seeds (`host:port` gossip addresses).
    pub fn seeds(mut self, seeds: Vec<String>) -> Self {
        self.seeds = seeds;
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the gossip interval.
    pub fn gossip_interval(mut self, interval: Duration) -> Self {
        self.gossip_interval = interval;
        self
    }

    /// Registers the cluster metrics in `registry`.
    pub fn metrics(mut self, registry: prometheus::Registry) -> Self {
        self.metrics = Some(registry);
        self
    }

    /// The longest time a silent node stays alive in this node's view, by the formula in the
    /// module docs.
    pub fn detection_time(&self) -> Duration {
        self.gossip_interval.mul_f64(self.phi_threshold + 1.0)
    }
}

/// Where a member is in its life, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Gossiping and not leaving.
    Alive,
    /// Announced a graceful leave; gone once its connections close or gossip stops.
    Leaving,
    /// Declared dead by the failure detector, or left.
    Dead,
}

/// One node of the cluster and what it gossips about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Member {
    /// Its node name.
    pub node: String,
    /// Alive, leaving or dead.
    pub state: MemberState,
    /// Whether this is the local node.
    pub is_self: bool,
    /// Where its transport listens.
    pub addr: Option<SocketAddr>,
    /// Where it gossips.
    pub gossip_addr: SocketAddr,
    /// Its incarnation (start time in ms): a restarted node has a larger one.
    pub generation: u64,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// CPUs it can use.
    pub cpus: u64,
    /// Memory of its host, in bytes (0 when unknown).
    pub memory_bytes: u64,
    /// Live actors at its last refresh.
    pub live_actors: u64,
    /// Its PlexSpaces version.
    pub version: String,
    /// Milliseconds since the Unix epoch when this node last saw it change state.
    pub since_ms: u64,
    /// Its gossip heartbeat counter as last seen here (rises every gossip round).
    pub heartbeat: u64,
    /// Milliseconds since the Unix epoch when this node last saw its heartbeat rise (for
    /// this node itself: the last gossip round); 0 before the first one.
    pub last_heartbeat_ms: u64,
}

/// A change in membership, as this node sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum MembershipEvent {
    /// A node joined (or came back).
    Joined(Member),
    /// A node announced it is leaving.
    Leaving(String),
    /// A node is gone: dead, partitioned away, or left.
    Left(String),
}

/// Starts membership.
#[derive(Debug)]
pub struct Cluster;

struct Metrics {
    members: prometheus::IntGaugeVec,
    lost: prometheus::IntCounter,
}

impl Metrics {
    fn new(registry: &prometheus::Registry) -> Result<Metrics> {
        let err = |e: prometheus::Error| Error::InvalidOption(format!("metrics: {e}"));
        let members = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "plexspaces_cluster_members",
                "Cluster members by state, as this node sees them",
            ),
            &["state"],
        )
        .map_err(err)?;
        let lost = prometheus::IntCounter::new(
            "plexspaces_cluster_nodes_lost_total",
            "Times a peer node was declared gone (dead, partitioned, left)",
        )
        .map_err(err)?;
        registry.register(Box::new(members.clone())).map_err(err)?;
        registry.register(Box::new(lost.clone())).map_err(err)?;
        Ok(Metrics { members, lost })
    }
}

struct Inner {
    node_name: String,
    network: NetworkHandle,
    chitchat: Mutex<Option<ChitchatHandle>>,
    chitchat_arc: Arc<tokio::sync::Mutex<chitchat::Chitchat>>,
    members: Mutex<BTreeMap<String, Member>>,
    events: broadcast::Sender<MembershipEvent>,
    stop: CancellationToken,
    gossip_interval: Duration,
    metrics: Option<Metrics>,
    node: WeakNode,
    /// Names and group members that alive peers publish.
    directory: Mutex<Directory>,
    /// Per node name: (generation, heartbeat counter, when it last rose, in ms).
    heartbeats: Mutex<HashMap<String, (u64, u64, u64)>>,
    #[cfg(feature = "fault-injection")]
    faults: Arc<crate::faults::GossipFaults>,
}

/// What the other alive nodes have registered and which of their actors are in which group.
#[derive(Default)]
struct Directory {
    names: BTreeMap<String, ActorId>,
    groups: BTreeMap<String, Vec<ActorId>>,
}

/// A running membership. Cheap to clone.
#[derive(Clone)]
pub struct ClusterHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ClusterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterHandle")
            .field("node", &self.inner.node_name)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Total memory of this host from `/proc/meminfo`, 0 where there is none.
fn host_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

impl Cluster {
    /// Joins the cluster named by `network` as `node`: starts gossip, publishes this node's
    /// metadata, and from then on tells `node` (through `Node::node_lost`) of every peer that
    /// is declared dead, leaves, or whose connection is lost.
    pub async fn start(
        options: ClusterOptions,
        node: &Node,
        network: NetworkHandle,
    ) -> Result<ClusterHandle> {
        if node.name() != network.node_name() {
            return Err(Error::InvalidOption(format!(
                "node {} does not match the network's node {}",
                node.name(),
                network.node_name()
            )));
        }
        if options.gossip_interval.is_zero() || options.phi_threshold <= 0.0 {
            return Err(Error::InvalidOption(
                "gossip_interval and phi_threshold must be positive".into(),
            ));
        }
        let advertise = options.gossip_advertise.unwrap_or(options.gossip_listen);
        let generation = now_ms();
        let chitchat_id = ChitchatId::new(network.node_name().to_owned(), generation, advertise);
        let failure_detector = FailureDetectorConfig {
            phi_threshold: options.phi_threshold,
            initial_interval: options.gossip_interval,
            max_interval: options.gossip_interval * 20,
            dead_node_grace_period: Duration::from_secs(3600),
            ..FailureDetectorConfig::default()
        };
        let config = ChitchatConfig {
            chitchat_id,
            cluster_id: network.cluster_name().to_owned(),
            gossip_interval: options.gossip_interval,
            listen_addr: options.gossip_listen,
            seed_nodes: options.seeds.clone(),
            failure_detector_config: failure_detector,
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let transport_addr = options
            .transport_advertise
            .unwrap_or_else(|| network.advertise_addr());
        let labels = serde_json::to_string(&options.labels)
            .map_err(|e| Error::InvalidOption(format!("labels: {e}")))?;
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let initial = vec![
            (KEY_ADDR.to_owned(), transport_addr.to_string()),
            (KEY_LABELS.to_owned(), labels),
            (KEY_CPUS.to_owned(), cpus.to_string()),
            (KEY_MEMORY.to_owned(), host_memory_bytes().to_string()),
            (KEY_ACTORS.to_owned(), node.actor_count().to_string()),
            (KEY_VERSION.to_owned(), env!("CARGO_PKG_VERSION").to_owned()),
        ];
        #[cfg(feature = "fault-injection")]
        let faults = Arc::new(crate::faults::GossipFaults::default());
        #[cfg(feature = "fault-injection")]
        let gossip_transport: Box<dyn GossipTransport> =
            Box::new(crate::faults::FaultyUdp(faults.clone()));
        #[cfg(not(feature = "fault-injection"))]
        let gossip_transport: Box<dyn GossipTransport> = Box::new(UdpTransport);
        // With mTLS, gossip goes over mTLS too: a node the CA did not sign never joins.
        #[cfg(feature = "tls")]
        let gossip_transport: Box<dyn GossipTransport> = match network.tls() {
            Some(tls) => {
                #[cfg(feature = "fault-injection")]
                let blocked: Option<crate::gossip_tls::Blocked> = {
                    let faults = faults.clone();
                    Some(Arc::new(move |addr: SocketAddr| faults.blocks(addr)))
                };
                #[cfg(not(feature = "fault-injection"))]
                let blocked = None;
                Box::new(crate::gossip_tls::TlsGossip::new(
                    tls,
                    network.clone(),
                    advertise,
                    blocked,
                ))
            }
            None => gossip_transport,
        };
        let handle = spawn_chitchat(config, initial, gossip_transport.as_ref())
            .await
            .map_err(|e| Error::Membership(format!("{e:#}")))?;
        let metrics = options.metrics.as_ref().map(Metrics::new).transpose()?;
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            node_name: network.node_name().to_owned(),
            network: network.clone(),
            chitchat_arc: handle.chitchat(),
            chitchat: Mutex::new(Some(handle)),
            members: Mutex::new(BTreeMap::new()),
            events,
            stop: CancellationToken::new(),
            gossip_interval: options.gossip_interval,
            metrics,
            node: node.downgrade(),
            directory: Mutex::new(Directory::default()),
            heartbeats: Mutex::new(HashMap::new()),
            #[cfg(feature = "fault-injection")]
            faults,
        });
        // A lost connection is a lost node (Erlang: `noconnection`).
        let weak = node.downgrade();
        let lost_inner = Arc::downgrade(&inner);
        network.on_peer_lost(move |peer| {
            if let Some(node) = weak.upgrade() {
                node.node_lost(peer);
            }
            if let Some(inner) = lost_inner.upgrade() {
                if let Some(metrics) = &inner.metrics {
                    metrics.lost.inc();
                }
            }
        });
        tokio::spawn(watch(inner.clone(), node.downgrade()));
        tracing::info!(node = %inner.node_name, gossip = %advertise, transport = %transport_addr, cluster = %network.cluster_name(), "joined cluster");
        Ok(ClusterHandle { inner })
    }
}

/// Parses one gossiped node into a [`Member`].
fn member(id: &ChitchatId, state: &NodeState, is_self: bool) -> Member {
    let get = |key: &str| state.get(key).unwrap_or_default();
    let leaving = get(KEY_LEAVING) == "true";
    Member {
        node: id.node_id.to_string(),
        state: if leaving {
            MemberState::Leaving
        } else {
            MemberState::Alive
        },
        is_self,
        addr: get(KEY_ADDR).parse().ok(),
        gossip_addr: id.gossip_advertise_addr,
        generation: id.generation_id,
        labels: serde_json::from_str(get(KEY_LABELS)).unwrap_or_default(),
        cpus: get(KEY_CPUS).parse().unwrap_or(0),
        memory_bytes: get(KEY_MEMORY).parse().unwrap_or(0),
        live_actors: get(KEY_ACTORS).parse().unwrap_or(0),
        version: get(KEY_VERSION).to_owned(),
        since_ms: now_ms(),
        heartbeat: 0,
        last_heartbeat_ms: 0,
    }
}

/// Follows chitchat's live set, turns differences into events and `node_lost` calls, and
/// refreshes this node's metadata.
async fn watch(inner: Arc<Inner>, node: WeakNode) {
    let (mut live, self_id) = {
        let chitchat = inner.chitchat_arc.lock().await;
        (
            chitchat.live_nodes_watcher(),
            chitchat.self_chitchat_id().clone(),
        )
    };
    let mut refresh = tokio::time::interval(METADATA_REFRESH);
    let mut publish_tick = tokio::time::interval(inner.gossip_interval);
    loop {
        let snapshot: BTreeMap<ChitchatId, NodeState> = live.borrow_and_update().clone();
        apply(&inner, &node, &self_id, &snapshot);
        tokio::select! {
            changed = live.changed() => if changed.is_err() { return },
            _ = refresh.tick() => {
                let Some(node) = node.upgrade() else { return };
                let count = node.actor_count();
                inner.chitchat_arc.lock().await.self_node_state().set(KEY_ACTORS, count);
            }
            _ = publish_tick.tick() => {
                let Some(node) = node.upgrade() else { return };
                let desired = published(&node);
                let mut chitchat = inner.chitchat_arc.lock().await;
                let state = chitchat.self_node_state();
                let stale: Vec<String> = state
                    .key_values()
                    .filter(|(key, _)| {
                        (key.starts_with(PREFIX_NAME) || key.starts_with(PREFIX_GROUP))
                            && !desired.contains_key(*key)
                    })
                    .map(|(key, _)| key.to_owned())
                    .collect();
                for key in stale {
                    state.delete(&key);
                }
                for (key, value) in desired {
                    state.set(key, value);
                }
                record_heartbeats(&inner, &chitchat);
            }
            _ = inner.stop.cancelled() => return,
        }
    }
}

/// Notes, per node, when its heartbeat counter last rose (for `Member::last_heartbeat_ms`).
fn record_heartbeats(inner: &Inner, chitchat: &chitchat::Chitchat) {
    let now = now_ms();
    let mut seen = inner.heartbeats.lock();
    for (id, state) in chitchat.node_states() {
        let beat = u64::from(state.heartbeat());
        let name = id.node_id.to_string();
        match seen.get(&name) {
            Some(&(generation, last, _)) if generation == id.generation_id && last >= beat => {}
            Some(&(generation, _, _)) if generation > id.generation_id => {}
            _ => {
                seen.insert(name, (id.generation_id, beat, now));
            }
        }
    }
}

/// The gossip keys that mirror this node's registry and process groups (local actors only).
fn published(node: &Node) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for name in node.registered() {
        if let Some(pid) = node.whereis(&name).filter(Pid::is_local) {
            keys.insert(format!("{PREFIX_NAME}{name}"), pid.id().to_string());
        }
    }
    for group in node.groups().which_groups() {
        let ids: Vec<String> = node
            .groups()
            .members(&group)
            .iter()
            .filter(|p| p.is_local())
            .map(|p| p.id().to_string())
            .collect();
        if let (false, Ok(json)) = (ids.is_empty(), serde_json::to_string(&ids)) {
            keys.insert(format!("{PREFIX_GROUP}{group}"), json);
        }
    }
    keys
}

/// Reads the names and groups a peer publishes into `directory`.
fn read_directory(state: &NodeState, directory: &mut Directory) {
    for (key, value) in state.key_values() {
        if let Some(name) = key.strip_prefix(PREFIX_NAME) {
            if let Ok(id) = ActorId::parse(value) {
                // Two holders of one name (registered on two nodes before gossip met): the
                // lowest id wins everywhere, so every node answers the same.
                match directory.names.get(name) {
                    Some(existing) if existing.to_string() <= id.to_string() => {}
                    _ => {
                        directory.names.insert(name.to_owned(), id);
                    }
                }
            }
        } else if let Some(group) = key.strip_prefix(PREFIX_GROUP) {
            let ids: Vec<String> = serde_json::from_str(value).unwrap_or_default();
            directory
                .groups
                .entry(group.to_owned())
                .or_default()
                .extend(ids.iter().filter_map(|id| ActorId::parse(id).ok()));
        }
    }
}

fn apply(
    inner: &Inner,
    node: &WeakNode,
    self_id: &ChitchatId,
    snapshot: &BTreeMap<ChitchatId, NodeState>,
) {
    // One entry per name: the newest incarnation that is alive.
    let mut alive: HashMap<String, (Member, &NodeState)> = HashMap::new();
    for (id, state) in snapshot {
        let m = member(id, state, id == self_id);
        match alive.get(&m.node) {
            Some((existing, _)) if existing.generation >= m.generation => {}
            _ => {
                alive.insert(m.node.clone(), (m, state));
            }
        }
    }
    let mut directory = Directory::default();
    for (m, state) in alive.values() {
        if !m.is_self && m.state == MemberState::Alive {
            read_directory(state, &mut directory);
        }
    }
    *inner.directory.lock() = directory;
    let alive: HashMap<String, Member> = alive.into_iter().map(|(k, (m, _))| (k, m)).collect();
    let mut events = Vec::new();
    let mut lost = Vec::new();
    {
        let mut members = inner.members.lock();
        for (name, fresh) in &alive {
            let previous = members.get(name);
            let came_up = !matches!(previous, Some(p) if p.state != MemberState::Dead && p.generation == fresh.generation);
            if !fresh.is_self {
                if let Some(addr) = fresh.addr {
                    if fresh.state == MemberState::Alive {
                        inner.network.add_peer(name, addr);
                    }
                }
            }
            let leaving_now = fresh.state == MemberState::Leaving
                && previous.is_some_and(|p| p.state != MemberState::Leaving);
            let mut entry = fresh.clone();
            if let Some(p) = previous {
                if !came_up && p.state == fresh.state {
                    entry.since_ms = p.since_ms;
                }
            }
            if came_up && fresh.state == MemberState::Alive {
                events.push(MembershipEvent::Joined(entry.clone()));
            } else if leaving_now {
                events.push(MembershipEvent::Leaving(name.clone()));
            }
            members.insert(name.clone(), entry);
        }
        for (name, member) in members.iter_mut() {
            if member.state != MemberState::Dead && !alive.contains_key(name) {
                member.state = MemberState::Dead;
                member.since_ms = now_ms();
                lost.push(name.clone());
                events.push(MembershipEvent::Left(name.clone()));
            }
        }
        if let Some(metrics) = &inner.metrics {
            for state in [MemberState::Alive, MemberState::Leaving, MemberState::Dead] {
                let count = members.values().filter(|m| m.state == state).count();
                let label = match state {
                    MemberState::Alive => "alive",
                    MemberState::Leaving => "leaving",
                    MemberState::Dead => "dead",
                };
                metrics
                    .members
                    .with_label_values(&[label])
                    .set(count as i64);
            }
        }
    }
    for name in lost {
        tracing::info!(node = %inner.node_name, peer = %name, "peer declared gone by membership");
        inner.network.set_peer_down(&name, true);
        if let Some(node) = node.upgrade() {
            node.node_lost(&name);
        }
        if let Some(metrics) = &inner.metrics {
            metrics.lost.inc();
        }
    }
    for event in events {
        let _ = inner.events.send(event);
    }
}

impl ClusterHandle {
    /// Every node this node has seen, alive, leaving or dead, sorted by name.
    pub fn members(&self) -> Vec<Member> {
        let beats = self.inner.heartbeats.lock().clone();
        let mut members: Vec<Member> = self.inner.members.lock().values().cloned().collect();
        for m in &mut members {
            if let Some(&(generation, beat, at)) = beats.get(&m.node) {
                if generation == m.generation {
                    m.heartbeat = beat;
                    m.last_heartbeat_ms = at;
                }
            }
        }
        members
    }

    /// The names of the alive members (this node included).
    pub fn alive(&self) -> Vec<String> {
        self.inner
            .members
            .lock()
            .values()
            .filter(|m| m.state == MemberState::Alive)
            .map(|m| m.node.clone())
            .collect()
    }

    /// Membership changes from now on. A receiver that falls more than 1024 events behind
    /// misses the oldest (`RecvError::Lagged`); `members()` is always current.
    pub fn subscribe(&self) -> broadcast::Receiver<MembershipEvent> {
        self.inner.events.subscribe()
    }

    /// The actor registered under `name` anywhere in the cluster (Erlang's `global:whereis_name`):
    /// this node's registry first, then the names alive peers publish in gossip.
    ///
    /// Register with `Node::register` as usual; the name is published within a gossip
    /// interval, and withdrawn within one after its holder dies. Names held on a node that is
    /// lost vanish with it. Eventually consistent: two nodes may register one name before
    /// gossip meets; then every node resolves it to the lowest actor id.
    pub fn whereis(&self, name: &str) -> Option<Pid> {
        let node = self.inner.node.upgrade()?;
        if let Some(pid) = node.whereis(name) {
            return Some(pid);
        }
        let id = self.inner.directory.lock().names.get(name).cloned()?;
        node.pid(&id).ok()
    }

    /// Every name registered in the cluster and its holder's id.
    pub fn registered(&self) -> BTreeMap<String, ActorId> {
        let mut names = self.inner.directory.lock().names.clone();
        if let Some(node) = self.inner.node.upgrade() {
            for name in node.registered() {
                if let Some(pid) = node.whereis(&name) {
                    names.insert(name, pid.id().clone());
                }
            }
        }
        names
    }

    /// The members of process group `group` on every alive node: this node's (from
    /// `Node::groups`) and those alive peers publish. Join and leave with
    /// `Node::groups().join/leave`; a member on a lost node leaves with it.
    pub fn group_members(&self, group: &str) -> Vec<Pid> {
        let Some(node) = self.inner.node.upgrade() else {
            return Vec::new();
        };
        let mut members: Vec<Pid> = node
            .groups()
            .members(group)
            .into_iter()
            .filter(Pid::is_local)
            .collect();
        let remote = self
            .inner
            .directory
            .lock()
            .groups
            .get(group)
            .cloned()
            .unwrap_or_default();
        members.extend(remote.iter().filter_map(|id| node.pid(id).ok()));
        members
    }

    /// Sends a copy of `env` to every member of `group` in the cluster without waiting.
    /// Returns how many sends were accepted (locally: by the mailbox; remotely: by the
    /// transport's queue).
    pub fn broadcast_envelope(&self, group: &str, env: &Envelope) -> usize {
        self.group_members(group)
            .iter()
            .filter(|m| m.try_tell_envelope(env.clone()).is_ok())
            .count()
    }

    /// The transport this membership feeds.
    pub fn network(&self) -> &NetworkHandle {
        &self.inner.network
    }

    /// Leaves gracefully: announces the leave in gossip, waits a few gossip rounds for it to
    /// spread, and stops gossiping. Peers mark this node `Leaving`, and report it lost once
    /// its connections close (`Node::shutdown` closes them) or its gossip stops.
    pub async fn leave(&self) {
        self.inner
            .chitchat_arc
            .lock()
            .await
            .self_node_state()
            .set(KEY_LEAVING, "true");
        tokio::time::sleep(self.inner.gossip_interval * 3).await;
        self.stop().await;
        tracing::info!(node = %self.inner.node_name, "left cluster");
    }

    /// Stops gossiping at once, without announcing a leave (peers detect this node as dead).
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        let handle = self.inner.chitchat.lock().take();
        if let Some(handle) = handle {
            let _ = handle.shutdown().await;
        }
    }

    /// Cuts this node off from `peer` in gossip and in the transport, or heals the cut.
    /// Test-only: built with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    pub fn set_partitioned(&self, peer: &str, partitioned: bool) {
        let gossip = self.inner.members.lock().get(peer).map(|m| m.gossip_addr);
        if let Some(addr) = gossip {
            self.inner.faults.set(addr, partitioned);
        }
        self.inner.network.set_partitioned(peer, partitioned);
    }
}
