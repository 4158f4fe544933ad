//! Integration tests of the cluster crate: real TCP and UDP on 127.0.0.1 only.

mod common;
mod membership;
mod process;
#[cfg(feature = "tls")]
mod tls;
mod transport;
