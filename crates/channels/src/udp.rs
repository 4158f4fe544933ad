//! The UDP multicast backend (feature `udp`): [`UdpBackend`]. Best effort, documented
//! subset.
//!
//! Every channel of a backend shares one multicast group and port; a datagram carries its
//! channel's key, headers and payload, and receivers drop datagrams of other channels.
//! Each subscriber group is one socket joined to the multicast group (`SO_REUSEADDR` and
//! `SO_REUSEPORT`, so every group's socket gets its own copy); consumers of one group
//! share that socket and so compete for datagrams.
//!
//! What it does not do: no queues ([`Start::Earliest`] answers [`Error::Unsupported`]),
//! no persistence, no redelivery, no dead letters; a datagram lost or arriving before the
//! group subscribed is gone. `ack` is accepted and does nothing; `nack` and
//! `dead_letters` answer [`Error::Unsupported`]. A message must fit one datagram
//! ([`MAX_DATAGRAM`]).
//!
//! The sending socket sets `IP_MULTICAST_IF` to [`UdpOptions::interface`], multicast loop
//! on and TTL [`UdpOptions::ttl`]; the defaults (127.0.0.1, TTL 0) keep every datagram on
//! this machine.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::backend::{MAX_BATCH, MAX_WAIT};
use crate::types::{check_name, decode_headers, encode_headers};
use crate::{
    Backend, ChannelId, DeadLetter, Delivery, Error, Message, Outgoing, Receipt, Result, Semantics,
    Start,
};

const NAME: &str = "udp";
const MAGIC: &[u8; 4] = b"PXC1";
/// Largest datagram this backend sends or accepts.
pub const MAX_DATAGRAM: usize = 65_507;

/// Where to send and listen.
#[derive(Debug, Clone)]
pub struct UdpOptions {
    /// the multicast group (an address in 224.0.0.0/4)
    pub group: Ipv4Addr,
    /// the UDP port every channel of this backend shares
    pub port: u16,
    /// the interface to send from and join on
    pub interface: Ipv4Addr,
    /// multicast TTL: 0 keeps datagrams on this host
    pub ttl: u32,
}

impl UdpOptions {
    /// Group 239.255.77.77 on `port`, loopback only (interface 127.0.0.1, TTL 0).
    pub fn loopback(port: u16) -> Self {
        UdpOptions {
            group: Ipv4Addr::new(239, 255, 77, 77),
            port,
            interface: Ipv4Addr::LOCALHOST,
            ttl: 0,
        }
    }
}

/// One listening socket per (channel, subscriber group).
type GroupSockets = HashMap<(ChannelId, String), Arc<UdpSocket>>;

/// Best-effort topics over UDP multicast. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UdpBackend {
    options: UdpOptions,
    sender: Arc<UdpSocket>,
    groups: Arc<Mutex<GroupSockets>>,
    next_id: Arc<AtomicU64>,
    instance: u64,
}

fn io(e: std::io::Error) -> Error {
    Error::Unavailable {
        backend: NAME,
        message: e.to_string(),
    }
}

fn encode(id: &str, channel: &str, msg: &Outgoing) -> Result<Vec<u8>> {
    let headers = encode_headers(NAME, &msg.headers)?;
    let mut out =
        Vec::with_capacity(16 + id.len() + channel.len() + headers.len() + msg.payload.len());
    out.extend_from_slice(MAGIC);
    for part in [id.as_bytes(), channel.as_bytes(), headers.as_bytes()] {
        let len = u16::try_from(part.len())
            .map_err(|_| Error::invalid("message", "header block longer than 65535 bytes"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&msg.payload);
    if out.len() > MAX_DATAGRAM {
        return Err(Error::invalid(
            "message",
            format!(
                "{} bytes do not fit one datagram ({MAX_DATAGRAM})",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// (id, channel key, headers, payload); `None` for a datagram that is not ours.
fn decode(buf: &[u8]) -> Option<(String, String, BTreeMap<String, String>, Bytes)> {
    let rest = buf.strip_prefix(MAGIC.as_slice())?;
    let mut parts = Vec::with_capacity(3);
    let mut rest = rest;
    for _ in 0..3 {
        let (len, tail) = rest.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_be_bytes(*len));
        if tail.len() < len {
            return None;
        }
        let (part, tail) = tail.split_at(len);
        parts.push(std::str::from_utf8(part).ok()?.to_owned());
        rest = tail;
    }
    let headers = decode_headers(NAME, &parts[2]).ok()?;
    Some((
        parts[0].clone(),
        parts[1].clone(),
        headers,
        Bytes::copy_from_slice(rest),
    ))
}

impl UdpBackend {
    /// Open the sending socket.
    pub fn open(options: UdpOptions) -> Result<Self> {
        if !options.group.is_multicast() {
            return Err(Error::invalid(
                "multicast group",
                format!("{} is not a multicast address", options.group),
            ));
        }
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(options.interface, 0)).into())
            .map_err(io)?;
        socket.set_multicast_if_v4(&options.interface).map_err(io)?;
        socket.set_multicast_loop_v4(true).map_err(io)?;
        socket.set_multicast_ttl_v4(options.ttl).map_err(io)?;
        socket.set_nonblocking(true).map_err(io)?;
        let sender = UdpSocket::from_std(socket.into()).map_err(io)?;
        let instance = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ u64::from(std::process::id());
        Ok(UdpBackend {
            options,
            sender: Arc::new(sender),
            groups: Arc::default(),
            next_id: Arc::new(AtomicU64::new(1)),
            instance,
        })
    }

    fn listen(&self) -> Result<UdpSocket> {
        let o = &self.options;
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(io)?;
        socket.set_reuse_address(true).map_err(io)?;
        socket.set_reuse_port(true).map_err(io)?;
        // bound to the group address: only this group's datagrams arrive
        socket
            .bind(&SocketAddr::V4(SocketAddrV4::new(o.group, o.port)).into())
            .map_err(io)?;
        socket
            .join_multicast_v4(&o.group, &o.interface)
            .map_err(io)?;
        socket.set_recv_buffer_size(4 * 1024 * 1024).map_err(io)?;
        socket.set_nonblocking(true).map_err(io)?;
        UdpSocket::from_std(socket.into()).map_err(io)
    }

    fn socket(&self, channel: &ChannelId, group: &str) -> Result<Arc<UdpSocket>> {
        self.groups
            .lock()
            .get(&(channel.clone(), group.to_owned()))
            .cloned()
            .ok_or_else(|| {
                Error::invalid("group", format!("{group} is not subscribed to {channel}"))
            })
    }
}

#[async_trait]
impl Backend for UdpBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn semantics(&self) -> Semantics {
        Semantics {
            durable: false,
            acknowledged: false,
            queues: false,
        }
    }

    async fn ensure_group(&self, channel: &ChannelId, group: &str, start: Start) -> Result<()> {
        check_name("group", group)?;
        if start == Start::Earliest {
            return Err(Error::Unsupported(
                "UDP multicast keeps nothing, so it cannot offer queues".into(),
            ));
        }
        let key = (channel.clone(), group.to_owned());
        if self.groups.lock().contains_key(&key) {
            return Ok(());
        }
        let socket = Arc::new(self.listen()?);
        self.groups.lock().entry(key).or_insert(socket);
        Ok(())
    }

    async fn publish(&self, channel: &ChannelId, message: Outgoing) -> Result<String> {
        let id = format!(
            "{:x}-{}",
            self.instance,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let datagram = encode(&id, &channel.key(), &message)?;
        let to = SocketAddrV4::new(self.options.group, self.options.port);
        self.sender.send_to(&datagram, to).await.map_err(io)?;
        Ok(id)
    }

    async fn receive(
        &self,
        channel: &ChannelId,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        check_name("consumer", consumer)?;
        let socket = self.socket(channel, group)?;
        let key = channel.key();
        let max = max.clamp(1, MAX_BATCH);
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let got = if out.is_empty() {
                match tokio::time::timeout_at(deadline, socket.recv_from(&mut buf)).await {
                    Ok(r) => r.map_err(io)?.0,
                    Err(_) => return Ok(out),
                }
            } else {
                match socket.try_recv_from(&mut buf) {
                    Ok((n, _)) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(out),
                    Err(e) => return Err(io(e)),
                }
            };
            let Some((id, ch, headers, payload)) = decode(&buf[..got]) else {
                continue;
            };
            if ch != key {
                continue;
            }
            out.push(Delivery {
                receipt: Receipt(id.clone()),
                message: Message {
                    id,
                    payload,
                    headers,
                },
                attempt: 1,
            });
            if out.len() >= max {
                return Ok(out);
            }
        }
    }

    async fn ack(&self, _channel: &ChannelId, _group: &str, _receipt: &Receipt) -> Result<()> {
        // nothing to confirm: a datagram is delivered at most once
        Ok(())
    }

    async fn nack(
        &self,
        _channel: &ChannelId,
        _group: &str,
        _receipt: &Receipt,
        _delay: Duration,
    ) -> Result<()> {
        Err(Error::Unsupported(
            "UDP multicast cannot redeliver a datagram".into(),
        ))
    }

    async fn dead_letters(
        &self,
        _channel: &ChannelId,
        _group: &str,
        _max: usize,
    ) -> Result<Vec<DeadLetter>> {
        Err(Error::Unsupported(
            "UDP multicast keeps no dead letters".into(),
        ))
    }
}
