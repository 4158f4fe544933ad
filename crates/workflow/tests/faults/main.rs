//! Fault and compatibility tests of plexspaces-workflow (their own test target).

mod golden;
mod queries;
mod versions;
