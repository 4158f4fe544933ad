//! Test helpers shared by the PlexSpaces crates. Not for production code.
//!
//! - [`eventually`]: poll a condition instead of sleeping a guessed amount.
//! - [`free_port`]: a TCP port that was free a moment ago on 127.0.0.1.
//! - [`unique_name`]: a name no other test run uses (for schemas, key prefixes, files).
//! - [`TestCluster`]: N real cluster-member processes on 127.0.0.1, each with its own ports,
//!   that a test can kill -9, SIGTERM, restart and partition.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

mod cluster;
pub use cluster::{free_udp_port, TestCluster, TestNode};

/// Polls `check` every 10 ms (on tokio's clock, so it also works with a paused clock) until
/// it returns `true`, for at most `limit`. Returns whether it did.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port that was free on 127.0.0.1 when asked.
pub fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// `prefix_<pid>_<nanos>_<n>`: unique across concurrent test processes and runs.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
