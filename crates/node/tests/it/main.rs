//! Integration tests of plexspaces-node over real sockets (HTTP with reqwest, gRPC with
//! tonic clients). One test binary for the crate.

mod auth_facets;
mod cluster;
mod common;
mod dashboard;
mod directory;
mod facets;
mod grpc;
mod http;
mod locks;
mod registry;
mod shards;
mod storage;
mod tuplespace;
mod virtual_actors;
mod workflows;
