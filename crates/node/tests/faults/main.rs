//! Failure-injection tests of plexspaces-node (their own test target) over real sockets.

#[allow(dead_code)]
#[path = "../it/common.rs"]
mod common;

mod idempotency;
mod lateness;
mod notify_restart;
mod take_lease;
mod tuplespace;
mod turns;
