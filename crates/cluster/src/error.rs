//! The cluster crate's errors.

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong starting or running the network and the membership.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A listener or socket could not be opened.
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        /// Which socket (`transport`, `gossip`).
        what: &'static str,
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An option is wrong (empty cluster name, bad seed address, ...).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The certificates or keys for mTLS could not be loaded or generated.
    #[error("tls: {0}")]
    Tls(String),
    /// The gossip membership failed to start or stopped.
    #[error("membership: {0}")]
    Membership(String),
    /// A connection to a peer failed or was refused.
    #[error("connection to {peer}: {reason}")]
    Connect {
        /// The peer node.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The activation directory's database failed.
    #[error("activation directory: {0}")]
    Directory(String),
    /// A directory write by a node that no longer owns the activation in that epoch.
    #[error("activation {key} is fenced: {node} no longer owns it in epoch {epoch}")]
    Fenced {
        /// The activation key.
        key: String,
        /// The node that wrote.
        node: String,
        /// The epoch it wrote with.
        epoch: u64,
    },
    /// No node can host an activation under its placement.
    #[error("placement: {0}")]
    Placement(String),
    /// An error from the actor runtime.
    #[error(transparent)]
    Core(#[from] plexspaces_core::Error),
}
