//! Integration tests of plexspaces-node over real sockets (HTTP with reqwest, gRPC with
//! tonic clients). One test binary for the crate.

mod common;
mod dashboard;
mod facets;
mod grpc;
mod http;
mod registry;
mod storage;
mod tuplespace;
mod virtual_actors;
mod workflows;
