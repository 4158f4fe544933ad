//! PlexSpaces nodes over the network.
//!
//! - [`Network`]: the node-to-node transport. It implements core's
//!   [`Transport`](plexspaces_core::Transport) over TCP (mTLS with the `tls` feature): core's
//!   protobuf `Frame`s, length-delimited, one long-lived outbound connection per peer, frames
//!   in order, batched writes, a bounded send queue, redial with backoff, and a handshake that
//!   refuses a peer of another `cluster_name`.
//! - [`Cluster`]: membership on chitchat (gossip over UDP, phi-accrual failure detection):
//!   seeds, node metadata, [`ClusterHandle::members`], a subscription to changes, a metric,
//!   graceful leave. It tells the node when a peer is lost, so links and monitors across
//!   nodes get `noconnection` exactly once and asks fail fast (see
//!   `plexspaces_core::Node::node_lost`).
//!
//! - [`directory`]: the activation directory (owner and fencing epoch of each virtual-actor
//!   activation) in memory, SQLite (feature `sqlite`) or PostgreSQL (feature `postgres`).
//! - [`placement`]: where a first activation goes (consistent hash, prefer local,
//!   resource-aware, pinned).
//!
//! `plexspaces start` uses it when `[cluster]` is configured (`plexspaces_node::cluster`).
//! It adds no networking to `plexspaces-core`, which only knows the `Transport` trait.
//!
//! # Invariants
//! - Frames from one node to another arrive in the order they were sent, or not at all
//!   (at-most-once): a frame queued when its connection breaks is lost, and the loss is
//!   reported to the node as a lost peer ([`NetworkHandle::on_peer_lost`]).
//! - `Transport::send` never waits: a full queue or an unreachable peer is an error at once.
//! - A connection carries frames only after the handshake accepted the peer's
//!   `cluster_name`, name and protocol revision (and, with mTLS, its certificate).
//!
//! # Example
//! ```no_run
//! use plexspaces_cluster::{Cluster, ClusterOptions, Network, NetworkOptions};
//! use plexspaces_core::Node;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let network = Network::start(NetworkOptions::new("demo", "alpha")).await?;
//! let node = Node::builder("alpha")
//!     .transport(std::sync::Arc::new(network.clone()))
//!     .build()
//!     .await?;
//! let options = ClusterOptions::new("127.0.0.1:7946".parse()?)
//!     .seeds(vec!["127.0.0.1:7947".into()]);
//! let cluster = Cluster::start(options, &node, network).await?;
//! println!("{:?}", cluster.members());
//! cluster.leave().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod directory;
mod error;
#[cfg(feature = "fault-injection")]
mod faults;
#[cfg(feature = "tls")]
mod gossip_tls;
mod membership;
mod network;
pub mod placement;
#[cfg(feature = "fault-injection")]
pub mod testing;
#[cfg(feature = "tls")]
pub mod tls;

pub use directory::{ActorKey, Claim, Directory, MemoryDirectory, Owner, SharedDirectory};
pub use error::{Error, Result};
pub use membership::{
    Cluster, ClusterHandle, ClusterOptions, Member, MemberState, MembershipEvent,
};
pub use network::{Network, NetworkHandle, NetworkOptions, NetworkStats, PeerStatus, PROTOCOL};
