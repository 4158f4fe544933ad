//! The one clock. All runtime time (timers, ask timeouts, restart intensity, shutdown
//! timeouts) is tokio's clock, so a test can pause it (`#[tokio::test(start_paused = true)]`)
//! and advance it (`tokio::time::advance`) and get the same result every run.

pub use tokio::time::{Duration, Instant};

/// Now, on the runtime's (pausable) clock.
pub fn now() -> Instant {
    Instant::now()
}
