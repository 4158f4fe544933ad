//! The gossip side of the test-only fault switch: a chitchat transport that drops datagrams
//! to and from blocked addresses. Built only with the `fault-injection` feature.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket};
use chitchat::ChitchatEnvelope;
use dashmap::DashSet;

/// Gossip addresses this node neither sends to nor hears from.
#[derive(Default)]
pub(crate) struct GossipFaults {
    blocked: DashSet<SocketAddr>,
}

impl GossipFaults {
    pub(crate) fn blocks(&self, addr: SocketAddr) -> bool {
        self.blocked.contains(&addr)
    }

    pub(crate) fn set(&self, addr: SocketAddr, blocked: bool) {
        if blocked {
            self.blocked.insert(addr);
        } else {
            self.blocked.remove(&addr);
        }
    }
}

/// UDP gossip with [`GossipFaults`] applied.
pub(crate) struct FaultyUdp(pub(crate) Arc<GossipFaults>);

#[async_trait]
impl Transport for FaultyUdp {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let socket = UdpSocket::open(listen_addr).await?;
        Ok(Box::new(FaultySocket {
            socket,
            faults: self.0.clone(),
        }))
    }
}

struct FaultySocket {
    socket: UdpSocket,
    faults: Arc<GossipFaults>,
}

#[async_trait]
impl Socket for FaultySocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.socket.local_addr()
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        if self.faults.blocked.contains(&to) {
            return Ok(SendOutcome { num_bytes_sent: 0 });
        }
        self.socket.send(to, envelope).await
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        loop {
            let outcome = self.socket.recv().await?;
            if !self.faults.blocked.contains(&outcome.from_addr) {
                return Ok(outcome);
            }
        }
    }
}
