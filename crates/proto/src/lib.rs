//! The PlexSpaces wire contract: types generated from `proto/plexspaces/v1/`.
//!
//! This crate holds generated code only. Everything that crosses a process boundary (another
//! node, the HTTP or gRPC API, a WASM guest) is one of these messages; local messages between
//! Rust actors never are.

/// `plexspaces.v1`: envelopes and node-to-node frames.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/plexspaces.v1.rs"));
}
