//! Integration tests of the actor runtime (one binary keeps link time down).

mod actors;
mod behaviors;
mod common;
mod facets;
mod gen_statem;
mod links;
mod otp;
mod otp_api;
mod output_gate;
mod remote;
mod supervision;
