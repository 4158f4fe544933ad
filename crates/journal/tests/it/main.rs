//! Integration tests of plexspaces-journal (one binary): conformance on every backend,
//! engine semantics, event sourcing, reminders and real `kill -9` crash tests.

mod support;

mod child;

mod conformance;
mod crash;
mod durable_actor;
mod engine;
mod event_sourcing;
mod output_gate;
mod reminders;
