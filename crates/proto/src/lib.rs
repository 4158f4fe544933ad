//! The PlexSpaces wire contract: types generated from `proto/plexspaces/v1/`.
//!
//! This crate holds generated code only. Everything that crosses a process boundary (another
//! node, the HTTP or gRPC API, a WASM guest) is one of these messages; local messages between
//! Rust actors never are.
//!
//! With the `grpc` feature it also holds the tonic clients and servers of the services in
//! `proto/plexspaces/v1/` (`ActorService`, `NodeService`, `TupleSpaceService`,
//! `WorkflowService`, `ClusterService`, `KeyValueService`, `BlobService`, `ChannelService`,
//! `DeployService`) and [`FILE_DESCRIPTOR_SET`] for gRPC reflection. Without it, it pulls in no gRPC code.

/// `plexspaces.v1`: envelopes, node-to-node frames, and the node's gRPC services.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/plexspaces.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every file in `proto/plexspaces/v1/`, for gRPC
/// reflection.
#[cfg(feature = "grpc")]
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/plexspaces_descriptor.bin"));
