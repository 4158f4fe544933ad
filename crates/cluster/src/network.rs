//! The node-to-node transport: core's `Frame`s over TCP (optionally mTLS), one long-lived
//! outbound connection per peer, length-delimited (tokio-util's codec).
//!
//! Why one outbound connection per peer (and not one duplex connection per pair): the frames
//! a node sends to a peer travel in order on its own connection, and a node that only
//! receives from a peer never has to dial it. Two nodes that talk both ways hold two
//! connections, one per direction; each carries the frames of one direction in order.
//!
//! Writes are batched: [`Transport::send`] appends the length-prefixed frame to the peer's
//! outbox (one buffer behind a lock, no per-frame channel message) and wakes the peer's
//! writer only when the outbox was empty. The writer swaps the whole outbox out and writes
//! it with one call, so under load every frame queued while the previous write ran shares
//! the next syscall, and an idle link still sends each frame at once.
//!
//! Reads are batched too: the reader takes every complete frame out of each read and hands
//! the run to the node at once (core's `InboundBatch`), which looks a tell's target up once
//! for consecutive frames to the same actor.
//!
//! The send queue per peer is bounded ([`NetworkOptions::send_queue`] frames waiting in the
//! outbox). When it is full, [`Transport::send`] fails at once with a `transport` error
//! instead of waiting or growing: a remote `tell` returns `SendError::Remote` with the
//! message, a remote `ask` fails without waiting for its timeout. Nothing is dropped
//! silently. The receiving side pushes back through TCP: its reader waits for room in the
//! target's mailbox, stops reading, and the sender's writes stall until it drains.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use futures::{SinkExt, StreamExt};
use parking_lot::{Mutex, RwLock};
use plexspaces_core::transport::{Inbound, InboundBatch};
use plexspaces_core::Transport;
use plexspaces_proto::v1 as pb;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::codec::{Decoder, Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The wire revision carried in `Hello`; a peer with another one is refused.
pub const PROTOCOL: u32 = 1;

/// How long a dial plus handshake may take before the peer counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings of a [`Network`].
#[derive(Clone)]
pub struct NetworkOptions {
    /// The cluster this node belongs to; a peer of another cluster is refused.
    pub cluster_name: String,
    /// This node's name (the only node the network carries frames for).
    pub node_name: String,
    /// Where to accept connections from peers (`127.0.0.1:0` picks a port).
    pub listen: SocketAddr,
    /// The address peers should dial; `None` is the bound listener's address.
    pub advertise: Option<SocketAddr>,
    /// Frames queued per peer before `send` fails with a full-queue error.
    pub send_queue: usize,
    /// The largest frame sent or accepted; `send` refuses a larger one.
    pub max_frame_bytes: usize,
    /// The first wait before dialing an unreachable peer again; doubles up to
    /// `max_backoff`. While waiting, sends to that peer fail at once.
    pub initial_backoff: Duration,
    /// The longest wait between dials of an unreachable peer.
    pub max_backoff: Duration,
    /// mTLS between nodes; `None` is plain TCP (only sensible on loopback).
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::TlsOptions>,
}

impl std::fmt::Debug for NetworkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkOptions")
            .field("cluster_name", &self.cluster_name)
            .field("node_name", &self.node_name)
            .field("listen", &self.listen)
            .field("send_queue", &self.send_queue)
            .finish_non_exhaustive()
    }
}

impl NetworkOptions {
    /// Defaults for `node_name` in `cluster_name`, listening on 127.0.0.1 on any port.
    pub fn new(cluster_name: impl Into<String>, node_name: impl Into<String>) -> Self {
        NetworkOptions {
            cluster_name: cluster_name.into(),
            node_name: node_name.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: None,
            send_queue: 64 * 1024,
            max_frame_bytes: 16 * 1024 * 1024,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Listens on `addr` instead.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Sets the per-peer send queue capacity, in frames.
    pub fn send_queue(mut self, frames: usize) -> Self {
        self.send_queue = frames;
        self
    }

    /// Uses mTLS with these certificates.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }
}

/// Starts the node-to-node transport.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Binds the listener and starts accepting peers. Must run inside a tokio runtime.
    pub async fn start(options: NetworkOptions) -> Result<NetworkHandle> {
        if options.cluster_name.is_empty() || options.node_name.is_empty() {
            return Err(Error::InvalidOption(
                "cluster_name and node_name must not be empty".into(),
            ));
        }
        if options.send_queue == 0 {
            return Err(Error::InvalidOption("send_queue must be at least 1".into()));
        }
        #[cfg(feature = "tls")]
        let tls = match &options.tls {
            Some(tls) => Some(Arc::new(crate::tls::Tls::new(tls)?)),
            None => None,
        };
        let listener = TcpListener::bind(options.listen)
            .await
            .map_err(|source| Error::Bind {
                what: "transport",
                addr: options.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            what: "transport",
            addr: options.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            options,
            local_addr,
            inbound: RwLock::new(None),
            inbound_batch: RwLock::new(None),
            peers: DashMap::new(),
            lost_hook: RwLock::new(None),
            shutdown: CancellationToken::new(),
            stats: Counters::default(),
            #[cfg(feature = "tls")]
            tls,
            #[cfg(feature = "tls")]
            gossip_hook: RwLock::new(None),
            #[cfg(feature = "fault-injection")]
            partitioned: dashmap::DashSet::new(),
        });
        tokio::spawn(accept_loop(shared.clone(), listener));
        tracing::info!(node = %shared.options.node_name, addr = %local_addr, "transport listening");
        Ok(NetworkHandle { shared })
    }
}

/// A running transport. Cheap to clone; implements core's [`Transport`], so it goes into
/// `NodeBuilder::transport`.
#[derive(Clone)]
pub struct NetworkHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkHandle")
            .field("node", &self.shared.options.node_name)
            .field("addr", &self.shared.local_addr)
            .field("peers", &self.shared.peers.len())
            .finish()
    }
}

/// Counts kept by the transport (for tests, metrics and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkStats {
    /// Frames written to peers.
    pub frames_sent: u64,
    /// Write calls that carried them (fewer than frames when batching works).
    pub writes: u64,
    /// Frames received from peers and handed to the node.
    pub frames_received: u64,
    /// Frames refused by `send` because the peer's queue was full.
    pub queue_full: u64,
    /// Connections lost or never made (each reported to the node as a lost peer).
    pub peers_lost: u64,
    /// Connections refused at the handshake (other cluster, untrusted certificate, ...).
    pub refused: u64,
}

/// A peer as the transport sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's node name.
    pub node: String,
    /// Where it is dialed.
    pub addr: Option<SocketAddr>,
    /// Whether an outbound connection is up.
    pub connected: bool,
    /// Frames waiting in its send queue.
    pub queued: usize,
}

#[derive(Default)]
struct Counters {
    frames_sent: AtomicU64,
    writes: AtomicU64,
    frames_received: AtomicU64,
    queue_full: AtomicU64,
    peers_lost: AtomicU64,
    refused: AtomicU64,
}

type LostHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Takes a gossip connection that arrived on the transport's listener: the framed
/// connection (mTLS already verified), its hello and the remote address.
#[cfg(feature = "tls")]
pub(crate) type GossipHook = Arc<
    dyn Fn(
            Framed<Conn, LengthDelimitedCodec>,
            BytesMut,
            SocketAddr,
        ) -> futures::future::BoxFuture<'static, ()>
        + Send
        + Sync,
>;

struct Shared {
    options: NetworkOptions,
    local_addr: SocketAddr,
    inbound: RwLock<Option<Inbound>>,
    inbound_batch: RwLock<Option<InboundBatch>>,
    peers: DashMap<String, Arc<Peer>>,
    lost_hook: RwLock<Option<LostHook>>,
    shutdown: CancellationToken,
    stats: Counters,
    #[cfg(feature = "tls")]
    tls: Option<Arc<crate::tls::Tls>>,
    #[cfg(feature = "tls")]
    gossip_hook: RwLock<Option<GossipHook>>,
    #[cfg(feature = "fault-injection")]
    partitioned: dashmap::DashSet<String>,
}

/// Frames waiting for the peer's writer, already length-prefixed.
#[derive(Default)]
struct Outbox {
    buf: BytesMut,
    frames: usize,
    /// Set when the writer is gone (shutdown): sends fail.
    closed: bool,
}

/// One peer: its address, its bounded send queue and its connection state.
struct Peer {
    name: String,
    addr: RwLock<Option<SocketAddr>>,
    outbox: Mutex<Outbox>,
    /// Wakes the writer when the outbox stops being empty.
    ready: Notify,
    connected: AtomicBool,
    /// Until when sends fail at once because the last dial failed (the backoff window).
    unreachable_until: Mutex<Option<Instant>>,
    /// Set while membership holds the peer dead: sends fail at once.
    down: AtomicBool,
    /// Cancels the current outbound connection (partition, removal, shutdown).
    reset: Mutex<CancellationToken>,
}

impl Peer {
    /// Takes every queued frame: the bytes into `into` (which must be empty) and their count.
    fn take(&self, into: &mut BytesMut) -> usize {
        let mut outbox = self.outbox.lock();
        std::mem::swap(&mut outbox.buf, into);
        std::mem::take(&mut outbox.frames)
    }

    /// Drops every queued frame (at most once: the peer cannot be reached).
    fn discard(&self) {
        let mut outbox = self.outbox.lock();
        outbox.buf.clear();
        outbox.frames = 0;
    }

    fn reset_connection(&self) {
        let mut reset = self.reset.lock();
        reset.cancel();
        *reset = CancellationToken::new();
    }
}

impl Shared {
    fn advertise_addr(&self) -> SocketAddr {
        self.options.advertise.unwrap_or(self.local_addr)
    }

    fn is_partitioned(&self, _peer: &str) -> bool {
        #[cfg(feature = "fault-injection")]
        {
            self.partitioned.contains(_peer)
        }
        #[cfg(not(feature = "fault-injection"))]
        {
            false
        }
    }

    fn peer_lost(&self, peer: &str, why: &str) {
        self.stats.peers_lost.fetch_add(1, Ordering::Relaxed);
        tracing::info!(node = %self.options.node_name, peer, why, "connection to peer lost");
        let hook = self.lost_hook.read().clone();
        if let Some(hook) = hook {
            hook(peer);
        }
    }

    fn peer(self: &Arc<Self>, name: &str) -> Arc<Peer> {
        if let Some(peer) = self.peers.get(name) {
            return peer.clone();
        }
        let entry = self.peers.entry(name.to_owned()).or_insert_with(|| {
            let peer = Arc::new(Peer {
                name: name.to_owned(),
                addr: RwLock::new(None),
                outbox: Mutex::new(Outbox::default()),
                ready: Notify::new(),
                connected: AtomicBool::new(false),
                unreachable_until: Mutex::new(None),
                down: AtomicBool::new(false),
                reset: Mutex::new(CancellationToken::new()),
            });
            tokio::spawn(writer(self.clone(), peer.clone()));
            peer
        });
        entry.clone()
    }
}

impl NetworkHandle {
    /// The address peers dial (the bound listener's).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The address peers are told to dial (`NetworkOptions::advertise`, else the listener's).
    pub fn advertise_addr(&self) -> SocketAddr {
        self.shared.advertise_addr()
    }

    /// The mTLS configuration, if any (gossip uses it too).
    #[cfg(feature = "tls")]
    pub(crate) fn tls(&self) -> Option<Arc<crate::tls::Tls>> {
        self.shared.tls.clone()
    }

    /// Hands gossip connections that arrive on this listener to `hook` (gossip over mTLS on
    /// the transport's port).
    #[cfg(feature = "tls")]
    pub(crate) fn on_gossip_connection(&self, hook: GossipHook) {
        *self.shared.gossip_hook.write() = Some(hook);
    }

    /// This node's name.
    pub fn node_name(&self) -> &str {
        &self.shared.options.node_name
    }

    /// The cluster this transport belongs to.
    pub fn cluster_name(&self) -> &str {
        &self.shared.options.cluster_name
    }

    /// Tells the transport where `node` listens (membership does this for gossiped peers).
    pub fn add_peer(&self, node: &str, addr: SocketAddr) {
        if node == self.shared.options.node_name {
            return;
        }
        let peer = self.shared.peer(node);
        let changed = peer.addr.read().is_some_and(|old| old != addr);
        *peer.addr.write() = Some(addr);
        peer.down.store(false, Ordering::Release);
        *peer.unreachable_until.lock() = None;
        if changed {
            // A restarted node on a new port: the old connection leads nowhere.
            peer.reset_connection();
        }
    }

    /// Marks `node` dead (membership's verdict) or alive again. While dead, sends to it fail
    /// at once with `noconnection` and its connection is closed.
    pub fn set_peer_down(&self, node: &str, down: bool) {
        if let Some(peer) = self.shared.peers.get(node) {
            peer.down.store(down, Ordering::Release);
            if down {
                peer.reset_connection();
            } else {
                *peer.unreachable_until.lock() = None;
            }
        }
    }

    /// Calls `hook` with a peer's name each time its connection is lost or cannot be made
    /// (the cluster wires it to `Node::node_lost`).
    pub fn on_peer_lost(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        *self.shared.lost_hook.write() = Some(Arc::new(hook));
    }

    /// Reports every lost peer to `node` (`Node::node_lost`), so links, monitors and asks
    /// across a lost connection end with `noconnection`. [`crate::Cluster::start`] does this;
    /// call it when using the transport without membership.
    pub fn attach(&self, node: &plexspaces_core::Node) {
        let weak = node.downgrade();
        self.on_peer_lost(move |peer| {
            if let Some(node) = weak.upgrade() {
                node.node_lost(peer);
            }
        });
    }

    /// The peers the transport knows.
    pub fn peers(&self) -> Vec<PeerStatus> {
        let mut peers: Vec<PeerStatus> = self
            .shared
            .peers
            .iter()
            .map(|p| PeerStatus {
                node: p.name.clone(),
                addr: *p.addr.read(),
                connected: p.connected.load(Ordering::Acquire),
                queued: p.outbox.lock().frames,
            })
            .collect();
        peers.sort_by(|a, b| a.node.cmp(&b.node));
        peers
    }

    /// The transport's counters.
    pub fn stats(&self) -> NetworkStats {
        let c = &self.shared.stats;
        NetworkStats {
            frames_sent: c.frames_sent.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            frames_received: c.frames_received.load(Ordering::Relaxed),
            queue_full: c.queue_full.load(Ordering::Relaxed),
            peers_lost: c.peers_lost.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting, closes every connection and drops queued frames. Peers see the
    /// connections close and report this node lost.
    pub fn shutdown(&self) {
        self.shared.shutdown.cancel();
    }

    /// Cuts this node off from `peer` (both directions) or heals the cut. Test-only: built
    /// with the `fault-injection` feature.
    #[cfg(feature = "fault-injection")]
    pub fn set_partitioned(&self, peer: &str, partitioned: bool) {
        if partitioned {
            self.shared.partitioned.insert(peer.to_owned());
            if let Some(p) = self.shared.peers.get(peer) {
                p.reset_connection();
            }
        } else {
            self.shared.partitioned.remove(peer);
            if let Some(p) = self.shared.peers.get(peer) {
                *p.unreachable_until.lock() = None;
            }
        }
    }
}

impl Transport for NetworkHandle {
    fn bind(&self, node: &str, inbound: Inbound) -> plexspaces_core::Result<()> {
        if node != self.shared.options.node_name {
            return Err(plexspaces_core::Error::InvalidArgument(format!(
                "this transport carries frames for node {}, not {node}",
                self.shared.options.node_name
            )));
        }
        let mut slot = self.shared.inbound.write();
        if slot.is_some() {
            return Err(plexspaces_core::Error::NameTaken(format!("node {node}")));
        }
        *slot = Some(inbound);
        Ok(())
    }

    fn bind_batched(
        &self,
        node: &str,
        inbound: Inbound,
        batch: InboundBatch,
    ) -> plexspaces_core::Result<()> {
        self.bind(node, inbound)?;
        *self.shared.inbound_batch.write() = Some(batch);
        Ok(())
    }

    fn unbind(&self, node: &str) {
        if node == self.shared.options.node_name {
            *self.shared.inbound.write() = None;
            *self.shared.inbound_batch.write() = None;
            self.shutdown();
        }
    }

    fn send(&self, node: &str, frame: Bytes) -> plexspaces_core::Result<()> {
        let peer = match self.shared.peers.get(node) {
            Some(peer) => peer.clone(),
            None => {
                return Err(plexspaces_core::Error::Transport(format!(
                    "no address known for node {node}"
                )))
            }
        };
        if peer.down.load(Ordering::Acquire) || self.shared.is_partitioned(node) {
            return Err(plexspaces_core::Error::NoConnection(node.to_owned()));
        }
        if let Some(until) = *peer.unreachable_until.lock() {
            if Instant::now() < until {
                return Err(plexspaces_core::Error::NoConnection(node.to_owned()));
            }
        }
        if frame.len() > self.shared.options.max_frame_bytes {
            return Err(plexspaces_core::Error::Transport(format!(
                "frame of {} bytes is larger than max_frame_bytes ({})",
                frame.len(),
                self.shared.options.max_frame_bytes
            )));
        }
        let mut outbox = peer.outbox.lock();
        if outbox.closed {
            return Err(plexspaces_core::Error::Transport(
                "the transport is shut down".into(),
            ));
        }
        if outbox.frames >= self.shared.options.send_queue {
            drop(outbox);
            self.shared.stats.queue_full.fetch_add(1, Ordering::Relaxed);
            return Err(plexspaces_core::Error::Transport(format!(
                "send queue to node {node} is full ({} frames)",
                self.shared.options.send_queue
            )));
        }
        // The length prefix of tokio-util's `LengthDelimitedCodec` (4 bytes, big-endian), which
        // the reader decodes; the size check above keeps it in range.
        outbox.buf.reserve(4 + frame.len());
        outbox.buf.put_u32(frame.len() as u32);
        outbox.buf.extend_from_slice(&frame);
        outbox.frames += 1;
        let wake = outbox.frames == 1;
        drop(outbox);
        if wake {
            peer.ready.notify_one();
        }
        Ok(())
    }
}

/// A connection, plain or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub(crate) type Conn = Box<dyn Stream>;

fn codec(options: &NetworkOptions) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(options.max_frame_bytes)
        .new_codec()
}

/// Drains the peer's outbox onto its connection, dialing (again) when needed.
async fn writer(shared: Arc<Shared>, peer: Arc<Peer>) {
    let mut backoff = shared.options.initial_backoff;
    let mut buf = BytesMut::new();
    let why = 'run: loop {
        // Wait for something to send.
        loop {
            if peer.outbox.lock().frames > 0 {
                break;
            }
            tokio::select! {
                _ = peer.ready.notified() => {}
                _ = shared.shutdown.cancelled() => break 'run "shutdown",
            }
        }
        let reset = peer.reset.lock().clone();
        let conn = tokio::select! {
            conn = dial(&shared, &peer) => conn,
            _ = shared.shutdown.cancelled() => break 'run "shutdown",
        };
        let conn = match conn {
            Ok(conn) => {
                backoff = shared.options.initial_backoff;
                conn
            }
            Err(e) => {
                tracing::warn!(node = %shared.options.node_name, peer = %peer.name, error = %e, "cannot reach peer");
                *peer.unreachable_until.lock() = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(shared.options.max_backoff);
                // At most once: what was queued for an unreachable peer is dropped, and the
                // node learns the peer is lost (its asks fail, its monitors fire).
                peer.discard();
                shared.peer_lost(&peer.name, "dial failed");
                continue;
            }
        };
        peer.connected.store(true, Ordering::Release);
        let (mut read_half, mut write_half) = tokio::io::split(conn);
        // The peer never writes after its `Welcome`: a read returning means it closed.
        let mut closed = Box::pin(async move {
            let mut byte = [0u8; 1];
            let _ = read_half.read(&mut byte).await;
        });
        let why = loop {
            buf.clear();
            let frames = peer.take(&mut buf);
            if frames == 0 {
                tokio::select! {
                    biased;
                    _ = shared.shutdown.cancelled() => {
                        let _ = write_half.shutdown().await;
                        break 'run "shutdown";
                    }
                    _ = reset.cancelled() => break "connection reset",
                    _ = &mut closed => break "closed by peer",
                    _ = peer.ready.notified() => continue,
                }
            }
            let written = tokio::select! {
                written = write_half.write_all(&buf) => written,
                _ = reset.cancelled() => break "connection reset",
            };
            if let Err(e) = written {
                tracing::debug!(peer = %peer.name, error = %e, "write failed");
                break "write failed";
            }
            shared.stats.writes.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .frames_sent
                .fetch_add(frames as u64, Ordering::Relaxed);
            // Give a large buffer back rather than keep it for the life of the peer.
            if buf.capacity() > 4 << 20 {
                buf = BytesMut::new();
            }
        };
        peer.connected.store(false, Ordering::Release);
        shared.peer_lost(&peer.name, why);
    };
    peer.connected.store(false, Ordering::Release);
    let mut outbox = peer.outbox.lock();
    outbox.closed = true;
    outbox.buf = BytesMut::new();
    outbox.frames = 0;
    tracing::trace!(peer = %peer.name, why, "writer stopped");
}

/// Dials `peer`, does TLS if configured, and the `Hello`/`Welcome` handshake.
async fn dial(shared: &Shared, peer: &Peer) -> Result<Conn> {
    let connect_error = |reason: String| Error::Connect {
        peer: peer.name.clone(),
        reason,
    };
    if shared.is_partitioned(&peer.name) {
        return Err(connect_error("partitioned (fault injection)".into()));
    }
    let addr = (*peer.addr.read()).ok_or_else(|| connect_error("no address known".into()))?;
    let handshake = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| connect_error(format!("connect {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let conn = secure_client(shared, &peer.name, tcp).await?;
        let mut framed = Framed::new(conn, codec(&shared.options));
        let hello = pb::Hello {
            cluster_name: shared.options.cluster_name.clone(),
            from: shared.options.node_name.clone(),
            to: peer.name.clone(),
            protocol: PROTOCOL,
            advertise_addr: shared.advertise_addr().to_string(),
        };
        framed
            .send(Bytes::from(hello.encode_to_vec()))
            .await
            .map_err(|e| connect_error(format!("handshake: {e}")))?;
        let answer = framed
            .next()
            .await
            .ok_or_else(|| connect_error("closed during handshake".into()))?
            .map_err(|e| connect_error(format!("handshake: {e}")))?;
        let welcome = pb::Welcome::decode(answer.freeze())
            .map_err(|e| connect_error(format!("bad welcome: {e}")))?;
        if !welcome.accepted {
            return Err(connect_error(format!("refused: {}", welcome.reason)));
        }
        let parts = framed.into_parts();
        if !parts.read_buf.is_empty() {
            return Err(connect_error("unexpected bytes after welcome".into()));
        }
        Ok(parts.io)
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| connect_error("handshake timed out".into()))?
}

#[cfg(feature = "tls")]
async fn secure_client(shared: &Shared, peer: &str, tcp: TcpStream) -> Result<Conn> {
    match &shared.tls {
        Some(tls) => Ok(Box::new(tls.connect(peer, tcp).await?)),
        None => Ok(Box::new(tcp)),
    }
}

#[cfg(not(feature = "tls"))]
async fn secure_client(_shared: &Shared, _peer: &str, tcp: TcpStream) -> Result<Conn> {
    Ok(Box::new(tcp))
}

#[cfg(feature = "tls")]
async fn secure_server(shared: &Shared, tcp: TcpStream) -> Result<Conn> {
    match &shared.tls {
        Some(tls) => Ok(Box::new(tls.accept(tcp).await?)),
        None => Ok(Box::new(tcp)),
    }
}

#[cfg(not(feature = "tls"))]
async fn secure_server(_shared: &Shared, tcp: TcpStream) -> Result<Conn> {
    Ok(Box::new(tcp))
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shared.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((tcp, from)) => {
                let _ = tcp.set_nodelay(true);
                tokio::spawn(serve_inbound(shared.clone(), tcp, from));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Checks a `Hello`: the reason to refuse it, if any.
fn refusal(shared: &Shared, hello: &pb::Hello) -> Option<String> {
    if hello.cluster_name != shared.options.cluster_name {
        return Some(format!(
            "cluster {:?} is not this node's cluster {:?}",
            hello.cluster_name, shared.options.cluster_name
        ));
    }
    if hello.to != shared.options.node_name {
        return Some(format!(
            "this is node {}, not {}",
            shared.options.node_name, hello.to
        ));
    }
    if hello.protocol != PROTOCOL {
        return Some(format!(
            "protocol {} is not this node's {PROTOCOL}",
            hello.protocol
        ));
    }
    if hello.from.is_empty() || hello.from == shared.options.node_name {
        return Some(format!("bad peer name {:?}", hello.from));
    }
    if shared.is_partitioned(&hello.from) {
        return Some("partitioned (fault injection)".into());
    }
    None
}

/// Reads one peer's frames and hands them to the node, in order.
async fn serve_inbound(shared: Arc<Shared>, tcp: TcpStream, from: SocketAddr) {
    let node = shared.options.node_name.clone();
    let conn = match secure_server(&shared, tcp).await {
        Ok(conn) => conn,
        Err(e) => {
            shared.stats.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %node, %from, error = %e, "refused connection: tls handshake failed");
            return;
        }
    };
    let mut framed = Framed::new(conn, codec(&shared.options));
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, framed.next()).await {
        Ok(Some(Ok(bytes))) => Some(bytes),
        _ => None,
    };
    #[cfg(feature = "tls")]
    if let Some(first) = &first {
        if first.starts_with(crate::gossip_tls::HELLO.as_bytes()) {
            let hook = shared.gossip_hook.read().clone();
            match hook {
                Some(hook) => hook(framed, first.clone(), from).await,
                None => {
                    tracing::warn!(node = %node, %from, "refused gossip connection: this node gossips elsewhere")
                }
            }
            return;
        }
    }
    let hello = first.and_then(|bytes| pb::Hello::decode(bytes.freeze()).ok());
    let Some(hello) = hello else {
        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = %node, %from, "refused connection: no valid hello");
        return;
    };
    if let Some(reason) = refusal(&shared, &hello) {
        shared.stats.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(node = %node, %from, peer = %hello.from, cluster = %hello.cluster_name, %reason, "refused connection");
        let welcome = pb::Welcome {
            accepted: false,
            reason,
        };
        let _ = framed.send(Bytes::from(welcome.encode_to_vec())).await;
        return;
    }
    let welcome = pb::Welcome {
        accepted: true,
        reason: String::new(),
    };
    if framed
        .send(Bytes::from(welcome.encode_to_vec()))
        .await
        .is_err()
    {
        return;
    }
    let peer = hello.from;
    tracing::debug!(node = %node, peer = %peer, %from, "peer connected");
    // The dialer may be unknown here yet (membership not caught up, or none): learn where to
    // send replies from its hello.
    if let Ok(addr) = hello.advertise_addr.parse::<SocketAddr>() {
        let known = shared.peers.get(&peer).and_then(|p| *p.addr.read());
        if known.is_none() {
            let p = shared.peer(&peer);
            *p.addr.write() = Some(addr);
        }
    }
    #[cfg(feature = "fault-injection")]
    let partition_check = {
        let shared = shared.clone();
        let peer = peer.clone();
        async move {
            loop {
                if shared.partitioned.contains(&peer) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    #[cfg(not(feature = "fault-injection"))]
    let partition_check = std::future::pending::<()>();
    tokio::pin!(partition_check);
    // From here on the frames are read in runs: each read takes what the socket has, every
    // complete frame in the buffer goes to the node in one batch, in order.
    let parts = framed.into_parts();
    let (mut conn, mut rbuf, mut codec) = (parts.io, parts.read_buf, parts.codec);
    let mut batch: Vec<Bytes> = Vec::new();
    let why = loop {
        loop {
            match codec.decode(&mut rbuf) {
                Ok(Some(frame)) => batch.push(frame.freeze()),
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(node = %node, peer = %peer, error = %e, "bad frame from peer");
                    shared.peer_lost(&peer, "bad frame");
                    return;
                }
            }
        }
        if !batch.is_empty() {
            shared
                .stats
                .frames_received
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            let handler = shared.inbound_batch.read().clone();
            match handler {
                Some(handler) => batch = handler(std::mem::take(&mut batch)).await,
                None => {
                    let inbound = shared.inbound.read().clone();
                    let Some(inbound) = inbound else {
                        break "node unbound";
                    };
                    for frame in batch.drain(..) {
                        inbound(frame).await;
                    }
                }
            }
        }
        if rbuf.capacity() - rbuf.len() < 16 * 1024 {
            rbuf.reserve(64 * 1024);
        }
        let read = tokio::select! {
            read = conn.read_buf(&mut rbuf) => read,
            _ = shared.shutdown.cancelled() => return,
            _ = &mut partition_check => break "partitioned",
        };
        match read {
            Ok(0) => break "closed by peer",
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(node = %node, peer = %peer, error = %e, "inbound read failed");
                break "read failed";
            }
        }
    };
    shared.peer_lost(&peer, why);
}
