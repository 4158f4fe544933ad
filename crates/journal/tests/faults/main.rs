//! Failure-injection tests of plexspaces-journal (their own test target): faults are caused
//! for real (a failing delivery target, a torn snapshot row in a real SQLite file) and each
//! test also checks that enough operations succeeded.

#[path = "../it/child.rs"]
mod child;
#[path = "../it/support.rs"]
mod support;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod effect_stub;
mod golden;
mod idempotency;
#[cfg(feature = "sqlite")]
mod powerloss;
mod reminders;
mod retries;
#[cfg(feature = "sqlite")]
mod snapshot;
