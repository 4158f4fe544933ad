//! Integration tests of plexspaces-node over real sockets (HTTP with reqwest, gRPC with
//! tonic clients). One test binary for the crate.

mod common;
mod grpc;
mod http;
mod virtual_actors;
