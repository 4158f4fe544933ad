//! Remote rows (`--remote`): the same actor operations between two nodes in this process,
//! over `plexspaces-cluster`'s TCP transport on 127.0.0.1, beside the same operations over
//! core's in-process `LoopbackNetwork` (which also encodes every frame, so the difference is
//! the socket path: queue, batching, syscalls, the peer's read loop). Then failure detection:
//! how long until a monitor on a surviving node gets `Down(noconnection)`. The ask rows are
//! also set against a bare loopback TCP round trip on the same runtime: the socket floor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use plexspaces_cluster::{Cluster, ClusterOptions, Network, NetworkHandle, NetworkOptions};
use plexspaces_core::{
    Actor, ActorId, ActorRef, BoxError, Context, Envelope, Info, LoopbackNetwork, Node, Pid,
    Transport,
};
use tokio::sync::mpsc;

use crate::report::{Better, Latency, Row};

/// Counts casts; answers a call with the count so far.
struct Count(u64);

impl Actor for Count {
    type Msg = u64;
    type Reply = u64;

    async fn handle_cast(&mut self, n: u64, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.0 += n;
        Ok(())
    }

    async fn handle_call(
        &mut self,
        n: u64,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<u64>, BoxError> {
        self.0 += n;
        Ok(Some(self.0))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<u64> {
        env.decode_json()
    }

    fn encode(msg: &u64) -> plexspaces_core::Result<Envelope> {
        Envelope::json("n", msg)
    }

    fn encode_reply(request_type: &str, reply: &u64) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<u64> {
        env.decode_json()
    }
}

/// A pair of nodes: `server` hosts the actor, `client` talks to it.
struct Pair {
    server: Node,
    client: Node,
}

impl Pair {
    async fn tcp(cluster: &str) -> Result<(Pair, NetworkHandle, NetworkHandle)> {
        let server_net = Network::start(NetworkOptions::new(cluster, "server")).await?;
        let client_net = Network::start(NetworkOptions::new(cluster, "client")).await?;
        server_net.add_peer("client", client_net.advertise_addr());
        client_net.add_peer("server", server_net.advertise_addr());
        let server = node("server", Arc::new(server_net.clone())).await?;
        let client = node("client", Arc::new(client_net.clone())).await?;
        server_net.attach(&server);
        client_net.attach(&client);
        Ok((Pair { server, client }, server_net, client_net))
    }

    async fn loopback() -> Result<Pair> {
        let net = LoopbackNetwork::new();
        Ok(Pair {
            server: node("server", net.clone()).await?,
            client: node("client", net).await?,
        })
    }

    fn counter(&self) -> Result<ActorRef<Count>> {
        self.server.spawn_named("count", Count(0))?;
        Ok(self.client.actor_ref(&ActorId::parse("count@server")?)?)
    }

    async fn shutdown(self) {
        self.client.shutdown().await;
        self.server.shutdown().await;
    }
}

async fn node(name: &str, transport: Arc<dyn Transport>) -> Result<Node> {
    Ok(Node::builder(name).transport(transport).build().await?)
}

async fn ask_latency(counter: &ActorRef<Count>, samples: usize) -> Result<Latency> {
    for _ in 0..samples / 10 {
        counter.ask(0u64).await?;
    }
    let mut nanos = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        counter.ask(1u64).await?;
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    Ok(Latency::from_nanos(&mut nanos))
}

/// The socket floor under a remote ask: a bare round trip of a 64-byte message between two
/// tokio tasks over one loopback TCP connection (`TCP_NODELAY`, an echo task on the other
/// end), on the same runtime as the asks; no framing, encoding or actor.
async fn tcp_round_trip_latency(samples: usize) -> Result<Latency> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        while socket.read_exact(&mut buf).await.is_ok() {
            socket.write_all(&buf).await?;
        }
        anyhow::Ok(())
    });
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    socket.set_nodelay(true)?;
    let mut buf = [0u8; 64];
    let mut nanos = Vec::with_capacity(samples);
    for i in 0..samples + samples / 10 {
        let started = Instant::now();
        socket.write_all(&buf).await?;
        socket.read_exact(&mut buf).await?;
        if i >= samples / 10 {
            nanos.push(started.elapsed().as_nanos() as u64);
        }
    }
    drop(socket);
    echo.await??;
    Ok(Latency::from_nanos(&mut nanos))
}

/// One-way tells from the client, finished by an ask that queues behind them; msg/s.
/// A full send queue is waited out (yield and retry), so every message is delivered.
async fn tell_throughput(counter: &ActorRef<Count>, messages: u64) -> Result<f64> {
    let before = counter.ask(0u64).await?;
    let started = Instant::now();
    for _ in 0..messages {
        let mut msg = 1u64;
        loop {
            match counter.try_tell(msg) {
                Ok(()) => break,
                Err(e) => {
                    msg = e.into_inner();
                    tokio::task::yield_now().await;
                }
            }
        }
    }
    let after = counter.ask(0u64).await?;
    let elapsed = started.elapsed();
    if after - before != messages {
        bail!("{} of {messages} tells arrived", after - before);
    }
    Ok(messages as f64 / elapsed.as_secs_f64())
}

/// Watches one remote actor and reports each `Down` on a channel.
struct Watch {
    downs: mpsc::UnboundedSender<String>,
}

impl Actor for Watch {
    type Msg = Pid;
    type Reply = ();

    async fn handle_call(
        &mut self,
        target: Pid,
        ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        ctx.monitor(&target);
        Ok(Some(()))
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if let Info::Down { reason, .. } = info {
            let _ = self.downs.send(reason.to_string());
        }
        Ok(())
    }
}

/// Two cluster members; the server goes silent (`silent`: gossip stops, transport stays) or
/// its transport closes; returns the time until the client's monitor fires.
async fn detection(cluster: &str, silent: bool) -> Result<(Duration, Duration)> {
    let (pair, server_net, client_net) = Pair::tcp(cluster).await?;
    let gossip = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let server_gossip = gossip(free_udp_port()?);
    let options = ClusterOptions::new(server_gossip);
    let bound = options.detection_time();
    let server_cluster = Cluster::start(options, &pair.server, server_net.clone()).await?;
    let client_cluster = Cluster::start(
        ClusterOptions::new(gossip(free_udp_port()?)).seeds(vec![server_gossip.to_string()]),
        &pair.client,
        client_net,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while client_cluster.alive().len() < 2 {
        if Instant::now() > deadline {
            bail!("the two members did not meet");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the failure detector see a few heartbeats.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pair.server.spawn_named("target", Count(0))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let watch = pair.client.spawn(Watch { downs: tx })?;
    watch
        .ask(pair.client.pid(&ActorId::parse("target@server")?)?)
        .await?;
    // A round trip so the monitor frame is in place.
    pair.client
        .actor_ref::<Count>(&ActorId::parse("target@server")?)?
        .ask(0u64)
        .await?;
    let started = Instant::now();
    if silent {
        server_cluster.stop().await;
    } else {
        server_net.shutdown();
    }
    let reason = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .context("no Down within 30 s")?
        .context("watcher gone")?;
    let elapsed = started.elapsed();
    if reason != "noconnection" {
        bail!("Down with {reason}, expected noconnection");
    }
    client_cluster.stop().await;
    if !silent {
        server_cluster.stop().await;
    }
    pair.shutdown().await;
    Ok((elapsed, bound))
}

fn free_udp_port() -> Result<u16> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    Ok(socket.local_addr()?.port())
}

/// The remote rows.
pub async fn run(asks: usize, messages: u64) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    eprintln!("remote ask latency, {asks} sequential asks...");
    let (tcp, _, _) = Pair::tcp("bench-ask").await?;
    let tcp_ask = ask_latency(&tcp.counter()?, asks).await?;
    tcp.shutdown().await;
    let loopback = Pair::loopback().await?;
    let loop_ask = ask_latency(&loopback.counter()?, asks).await?;
    loopback.shutdown().await;
    rows.push(Row::new(
        "remote ask p50",
        "µs",
        tcp_ask.p50,
        loop_ask.p50,
        Better::Lower,
        "≤ 30 µs",
    ));
    rows.push(Row::new(
        "remote ask p99",
        "µs",
        tcp_ask.p99,
        loop_ask.p99,
        Better::Lower,
        "",
    ));
    // The same asks against the bare socket round trip (floor column of these two rows).
    let bare = tcp_round_trip_latency(asks).await?;
    rows.push(Row::new(
        "remote ask p50 vs a bare TCP round trip",
        "µs",
        tcp_ask.p50,
        bare.p50,
        Better::Lower,
        "floor: 64 B echo over loopback TCP",
    ));
    rows.push(Row::new(
        "remote ask p99 vs a bare TCP round trip",
        "µs",
        tcp_ask.p99,
        bare.p99,
        Better::Lower,
        "",
    ));

    eprintln!("remote tell throughput, {messages} messages one way...");
    let (tcp, _, client_net) = Pair::tcp("bench-tell").await?;
    let tcp_tell = tell_throughput(&tcp.counter()?, messages).await?;
    let stats = client_net.stats();
    tcp.shutdown().await;
    let loopback = Pair::loopback().await?;
    let loop_tell = tell_throughput(&loopback.counter()?, messages).await?;
    loopback.shutdown().await;
    rows.push(Row::new(
        "remote tell, one way, 1 sender",
        "msg/s",
        tcp_tell,
        loop_tell,
        Better::Higher,
        "≥ 1 M msg/s",
    ));
    eprintln!(
        "  frames per write: {:.1} ({} frames in {} writes)",
        stats.frames_sent as f64 / stats.writes.max(1) as f64,
        stats.frames_sent,
        stats.writes
    );

    eprintln!("failure detection: transport closed...");
    let (closed, bound) = detection("bench-closed", false).await?;
    rows.push(Row::new(
        "Down(noconnection) after the peer's sockets close",
        "ms",
        closed.as_secs_f64() * 1e3,
        bound.as_secs_f64() * 1e3,
        Better::Lower,
        "≤ 5000 ms",
    ));
    eprintln!("failure detection: peer silent (gossip stops, sockets stay)...");
    let (silent, bound) = detection("bench-silent", true).await?;
    rows.push(Row::new(
        "Down(noconnection) after the peer goes silent (phi-accrual)",
        "ms",
        silent.as_secs_f64() * 1e3,
        bound.as_secs_f64() * 1e3,
        Better::Lower,
        "≤ 5000 ms",
    ));
    Ok(rows)
}
