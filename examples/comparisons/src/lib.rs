//! The PlexSpaces side of `docs/comparisons.md`: four programs from other frameworks, each
//! rewritten with PlexSpaces. Each module's `demo()` runs its program and checks the
//! outcome; `tests/comparisons.rs` runs every demo and `main.rs` prints them.

pub mod gen_server;
pub mod grain;
pub mod ray_actor;
pub mod workflow;
