//! Gossip over mTLS: with TLS configured, chitchat's messages travel on TLS connections
//! (TCP, on the gossip port) whose two ends each present a certificate signed by the
//! cluster's CA. A node the CA did not sign can neither send gossip nor read it, so it never
//! appears in any member's view, and it cannot forge state about the others either. (Plain
//! UDP gossip, used without TLS, authenticates nothing: any process that knows the cluster
//! name can join.)
//!
//! How the bytes move: chitchat encodes and decodes its messages only inside its own UDP
//! socket, so this transport keeps chitchat's wire format and carries the bytes. To send, it
//! has a chitchat `UdpSocket` write the message to a sink socket of this process on
//! 127.0.0.1, reads the bytes back and queues them for the peer's TLS connection. Bytes that
//! arrive from a peer are sent, from a loopback socket kept for that connection, to a
//! chitchat `UdpSocket` on 127.0.0.1 that decodes them; the decoded message is handed to
//! chitchat as coming from the peer's gossip address (announced in the connection's
//! hello). Datagrams reaching those loopback sockets from anywhere else are dropped.
//!
//! Delivery stays what chitchat expects of UDP: at most once, no waiting. Each peer has a
//! small bounded queue; a full queue or an unreachable peer drops the message (gossip
//! repeats every round), and an unreachable peer is redialed after a backoff.
//!
//! `plexspaces start` gossips and carries frames on one address. When the gossip port is the
//! transport's, gossip connections arrive on the transport's listener, which tells them from
//! frame connections by their hello and hands them over after the same mTLS handshake.
//!
//! The dialer checks that the acceptor's certificate chains to the CA but not which node it
//! names (a seed is known only by its address); the acceptor checks the dialer's chain the
//! same way. Membership is for every node the CA signed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::ChitchatEnvelope;
use dashmap::DashMap;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::network::NetworkHandle;
use crate::tls::Tls;

/// Gossip messages queued per peer; more are dropped (like datagrams).
const PEER_QUEUE: usize = 64;
/// Gossip messages are at most a UDP datagram; a frame above this is refused.
const MAX_MESSAGE: usize = 64 * 1024;
/// How long a dial plus TLS handshake plus hello may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
/// The first and the longest wait before redialing an unreachable peer.
const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The hello's first word, with the wire revision.
pub(crate) const HELLO: &str = "plexspaces-gossip/1";

/// Which gossip addresses the test-only fault switch blocks.
pub(crate) type Blocked = Arc<dyn Fn(SocketAddr) -> bool + Send + Sync>;

/// chitchat's transport over mTLS.
pub(crate) struct TlsGossip {
    tls: Arc<Tls>,
    network: NetworkHandle,
    advertise: SocketAddr,
    blocked: Option<Blocked>,
}

impl TlsGossip {
    /// Gossip over `network`'s mTLS, announcing `advertise` as this node's gossip address.
    pub(crate) fn new(
        tls: Arc<Tls>,
        network: NetworkHandle,
        advertise: SocketAddr,
        blocked: Option<Blocked>,
    ) -> TlsGossip {
        TlsGossip {
            tls,
            network,
            advertise,
            blocked,
        }
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_MESSAGE)
        .new_codec()
}

#[async_trait]
impl Transport for TlsGossip {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let transport_addr = self.network.local_addr();
        let shared = listen_addr.port() == transport_addr.port();
        let (listener, local_addr) = if shared {
            (None, listen_addr)
        } else {
            let listener = TcpListener::bind(listen_addr)
                .await
                .with_context(|| format!("failed to bind to {listen_addr}/TCP for gossip"))?;
            let local_addr = listener.local_addr()?;
            (Some(listener), local_addr)
        };
        let cluster = self.network.cluster_name().to_owned();
        let encoder = UdpSocket::open(loopback()).await?;
        let encoder_addr = encoder.local_addr()?;
        let sink = tokio::net::UdpSocket::bind(loopback()).await?;
        let sink_addr = sink.local_addr()?;
        let decoder = UdpSocket::open(loopback()).await?;
        let decoder_addr = decoder.local_addr()?;
        let relays = Arc::new(DashMap::new());
        let stop = CancellationToken::new();
        let state = Arc::new(AcceptState {
            tls: self.tls.clone(),
            cluster: cluster.clone(),
            decoder_addr,
            relays: relays.clone(),
            stop: stop.clone(),
            blocked: self.blocked.clone(),
        });
        match listener {
            Some(listener) => {
                tokio::spawn(accept_loop(state, listener));
            }
            None => {
                // The transport's listener hands gossip connections over.
                let stop = stop.clone();
                self.network
                    .on_gossip_connection(Arc::new(move |framed, hello, from| {
                        let state = state.clone();
                        let stop = stop.clone();
                        Box::pin(async move {
                            tokio::select! {
                                _ = serve_verified(&state, framed, hello, from) => {}
                                _ = stop.cancelled() => {}
                            }
                        })
                    }));
            }
        }
        tracing::info!(addr = %local_addr, shared, "gossip over mTLS listening");
        Ok(Box::new(TlsGossipSocket {
            local_addr,
            encoder,
            encoder_addr,
            sink,
            sink_addr,
            decoder,
            relays,
            peers: std::collections::HashMap::new(),
            tls: self.tls.clone(),
            hello: Bytes::from(format!("{HELLO} {cluster} {}", self.advertise)),
            stop,
            blocked: self.blocked.clone(),
            buf: vec![0u8; 65_536],
        }))
    }
}

struct TlsGossipSocket {
    local_addr: SocketAddr,
    /// chitchat's encoder: writes each message to `sink`.
    encoder: UdpSocket,
    encoder_addr: SocketAddr,
    sink: tokio::net::UdpSocket,
    sink_addr: SocketAddr,
    /// chitchat's decoder: receives the bytes relayed from each inbound connection.
    decoder: UdpSocket,
    /// Loopback relay address of an inbound connection -> the peer's gossip address.
    relays: Arc<DashMap<SocketAddr, SocketAddr>>,
    /// Gossip address -> the queue of its outbound connection.
    peers: std::collections::HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    tls: Arc<Tls>,
    hello: Bytes,
    stop: CancellationToken,
    blocked: Option<Blocked>,
    buf: Vec<u8>,
}

impl Drop for TlsGossipSocket {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TlsGossipSocket {
    fn is_blocked(&self, addr: SocketAddr) -> bool {
        self.blocked.as_ref().is_some_and(|blocked| blocked(addr))
    }

    /// chitchat's encoding of `envelope`, through the loopback sink.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<Option<Bytes>> {
        self.encoder.send(self.sink_addr, envelope).await?;
        let read = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                let (n, from) = self.sink.recv_from(&mut self.buf).await?;
                if from == self.encoder_addr {
                    return Ok::<_, std::io::Error>(Bytes::copy_from_slice(&self.buf[..n]));
                }
            }
        })
        .await;
        match read {
            Ok(bytes) => Ok(Some(bytes?)),
            Err(_) => {
                tracing::warn!("gossip message lost on the loopback encoder");
                Ok(None)
            }
        }
    }
}

#[async_trait]
impl Socket for TlsGossipSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if self.is_blocked(to) {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        let Some(bytes) = self.encode(envelope).await? else {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        };
        let num_bytes_sent = bytes.len();
        let queue = match self.peers.get(&to) {
            Some(queue) if !queue.is_closed() => queue.clone(),
            _ => {
                let (tx, rx) = mpsc::channel(PEER_QUEUE);
                tokio::spawn(writer(
                    to,
                    rx,
                    self.tls.clone(),
                    self.hello.clone(),
                    self.stop.clone(),
                ));
                self.peers.insert(to, tx.clone());
                tx
            }
        };
        if queue.try_send(bytes).is_err() {
            tracing::debug!(peer = %to, "gossip queue full, message dropped");
        }
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let mut outcome = self.decoder.recv().await?;
            // Only bytes relayed from an accepted, verified connection count.
            let Some(peer) = self.relays.get(&outcome.from_addr).map(|p| *p) else {
                continue;
            };
            if self.is_blocked(peer) {
                continue;
            }
            outcome.from_addr = peer;
            return Ok(outcome);
        }
    }
}

/// Dials `to`, then writes the hello and every queued message on the connection.
async fn writer(
    to: SocketAddr,
    mut queue: mpsc::Receiver<Bytes>,
    tls: Arc<Tls>,
    hello: Bytes,
    stop: CancellationToken,
) {
    let mut backoff = MIN_BACKOFF;
    let mut retry_at: Option<Instant> = None;
    loop {
        let first = tokio::select! {
            message = queue.recv() => match message {
                Some(message) => message,
                None => return,
            },
            _ = stop.cancelled() => return,
        };
        if retry_at.is_some_and(|at| Instant::now() < at) {
            // Unreachable a moment ago: drop, as a datagram to a dead host would be.
            continue;
        }
        let dialed = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            let tcp = TcpStream::connect(to).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tls.connect_gossip(to, tcp).await?;
            let mut framed = Framed::new(stream, codec());
            framed.send(hello.clone()).await?;
            Ok::<_, anyhow::Error>(framed)
        })
        .await
        .map_err(|_| anyhow::anyhow!("handshake timed out"))
        .and_then(|dialed| dialed);
        let mut framed = match dialed {
            Ok(framed) => {
                backoff = MIN_BACKOFF;
                retry_at = None;
                framed
            }
            Err(e) => {
                tracing::debug!(peer = %to, error = %e, "cannot reach gossip peer");
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let mut next = Some(first);
        loop {
            let message = match next.take() {
                Some(message) => message,
                None => tokio::select! {
                    message = queue.recv() => match message {
                        Some(message) => message,
                        None => return,
                    },
                    _ = stop.cancelled() => return,
                },
            };
            if let Err(e) = framed.send(message).await {
                tracing::debug!(peer = %to, error = %e, "gossip connection lost");
                break;
            }
        }
    }
}

pub(crate) struct AcceptState {
    tls: Arc<Tls>,
    cluster: String,
    decoder_addr: SocketAddr,
    relays: Arc<DashMap<SocketAddr, SocketAddr>>,
    stop: CancellationToken,
    blocked: Option<Blocked>,
}

async fn accept_loop(state: Arc<AcceptState>, listener: TcpListener) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = state.stop.cancelled() => return,
        };
        match accepted {
            Ok((tcp, from)) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let stop = state.stop.clone();
                    tokio::select! {
                        _ = serve(&state, tcp, from) => {}
                        _ = stop.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "gossip accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Verifies one inbound connection on the gossip listener and relays its messages.
async fn serve(state: &AcceptState, tcp: TcpStream, from: SocketAddr) {
    let _ = tcp.set_nodelay(true);
    let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let stream = match state.tls.accept(tcp).await {
            Ok(stream) => stream,
            Err(e) => return Err(format!("tls handshake failed: {e}")),
        };
        let mut framed = Framed::new(stream, codec());
        match framed.next().await {
            Some(Ok(hello)) => Ok((framed, hello)),
            _ => Err("no hello".to_owned()),
        }
    })
    .await
    .unwrap_or_else(|_| Err("handshake timed out".to_owned()));
    match handshake {
        Ok((framed, hello)) => serve_verified(state, framed, hello, from).await,
        Err(reason) => tracing::warn!(%from, "refused gossip connection: {reason}"),
    }
}

/// Checks the hello of a connection whose mTLS handshake passed, then relays its messages
/// to the decoder.
pub(crate) async fn serve_verified<S>(
    state: &AcceptState,
    mut framed: Framed<S, LengthDelimitedCodec>,
    hello: BytesMut,
    from: SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let peer = (|| {
        let hello = String::from_utf8_lossy(&hello).into_owned();
        let mut words = hello.split(' ');
        let (Some(HELLO), Some(cluster), Some(addr), None) =
            (words.next(), words.next(), words.next(), words.next())
        else {
            return Err(format!("bad hello {hello:?}"));
        };
        if cluster != state.cluster {
            return Err(format!(
                "cluster {cluster:?} is not this node's cluster {:?}",
                state.cluster
            ));
        }
        addr.parse::<SocketAddr>()
            .map_err(|e| format!("bad gossip address {addr:?}: {e}"))
    })();
    let peer = match peer {
        Ok(peer) => peer,
        Err(reason) => {
            tracing::warn!(%from, "refused gossip connection: {reason}");
            return;
        }
    };
    if state.blocked.as_ref().is_some_and(|blocked| blocked(peer)) {
        return;
    }
    let relay = match tokio::net::UdpSocket::bind(loopback()).await {
        Ok(relay) => relay,
        Err(e) => {
            tracing::warn!(error = %e, "no loopback socket for gossip relay");
            return;
        }
    };
    let Ok(relay_addr) = relay.local_addr() else {
        return;
    };
    state.relays.insert(relay_addr, peer);
    tracing::debug!(%peer, %from, "gossip peer connected");
    while let Some(Ok(message)) = framed.next().await {
        if let Err(e) = relay.send_to(&message, state.decoder_addr).await {
            tracing::debug!(error = %e, "gossip relay failed");
        }
    }
    state.relays.remove(&relay_addr);
}
