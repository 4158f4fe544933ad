//! Resident memory per idle actor, measured in a fresh child process of this binary so no
//! other row's allocations (or allocator caches) pollute the delta.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use plexspaces_core::{MailboxConfig, Node};

/// The hidden subcommand a child runs: `rss-child plex|floor COUNT`.
pub const CHILD_COMMAND: &str = "rss-child";

/// Which side a child measures.
#[derive(Debug, Clone, Copy)]
pub enum Side {
    /// PlexSpaces actors that never got a message (the floor/PlexSpaces table).
    Plex,
    /// Tokio tasks on a bounded channel that never got a message.
    Floor,
    /// PlexSpaces actors (default unbounded mailbox) after one ask each (the peers table).
    PlexAsked,
    /// Tokio tasks on an unbounded channel after one request/reply each.
    FloorAsked,
    /// A peer framework's actors after one ask each.
    Peer(crate::peers::Peer),
}

impl Side {
    fn arg(self) -> &'static str {
        match self {
            Side::Plex => "plex",
            Side::Floor => "floor",
            Side::PlexAsked => "plex-asked",
            Side::FloorAsked => "floor-asked",
            Side::Peer(crate::peers::Peer::Actix) => "actix",
            Side::Peer(crate::peers::Peer::Ractor) => "ractor",
            Side::Peer(crate::peers::Peer::Kameo) => "kameo",
        }
    }
}

/// Runs this binary as a child measuring `side` with `count` idle actors; bytes per actor.
pub fn measure_in_child(side: Side, count: usize) -> Result<f64> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let output = std::process::Command::new(exe)
        .args([CHILD_COMMAND, side.arg(), &count.to_string()])
        .output()
        .context("running the memory child")?;
    if !output.status.success() {
        bail!(
            "memory child failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout);
    text.trim()
        .parse::<f64>()
        .with_context(|| format!("memory child printed {text:?}"))
}

/// Resident set size of this process in bytes (`/proc/self/statm`, second field).
fn resident_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()
        .context("statm resident field")?;
    Ok(pages * page_size())
}

fn page_size() -> u64 {
    // The smaps of any mapping tell the kernel page size; 4 KiB on x86-64 and most arm64.
    std::fs::read_to_string("/proc/self/smaps")
        .ok()
        .and_then(|smaps| {
            smaps
                .lines()
                .find_map(|l| l.strip_prefix("KernelPageSize:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(4096, |kb| kb * 1024)
}

/// Waits until resident memory stops moving (every task has run to its idle point).
async fn settled_resident() -> Result<u64> {
    let mut last = resident_bytes()?;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = resident_bytes()?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

/// The child's body: prints bytes per idle actor on stdout.
pub fn child(args: &[String]) -> Result<()> {
    use crate::peers::Peer;
    let side = match args.first().map(String::as_str) {
        Some("plex") => Side::Plex,
        Some("floor") => Side::Floor,
        Some("plex-asked") => Side::PlexAsked,
        Some("floor-asked") => Side::FloorAsked,
        Some("actix") => Side::Peer(Peer::Actix),
        Some("ractor") => Side::Peer(Peer::Ractor),
        Some("kameo") => Side::Peer(Peer::Kameo),
        other => bail!("rss-child wants plex, floor, plex-asked, floor-asked, actix, ractor or kameo, got {other:?}"),
    };
    let count: usize = args
        .get(1)
        .context("rss-child wants a count")?
        .parse()
        .context("rss-child count")?;
    if let Side::Peer(Peer::Actix) = side {
        // actix actors need their System (one arbiter) around them.
        let system = actix::System::new();
        let per_actor = system.block_on(async move {
            let before = settled_resident().await?;
            let keep = crate::peers::idle_after_one_ask(Peer::Actix, count).await?;
            let after = settled_resident().await?;
            drop(keep);
            Ok::<_, anyhow::Error>(after.saturating_sub(before) as f64 / count as f64)
        })?;
        println!("{per_actor:.1}");
        std::process::exit(0);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let per_actor = runtime.block_on(async move {
        tokio::spawn(async move {
            let node = Node::builder("rss")
                .mailbox(MailboxConfig::Bounded(crate::CAPACITY))
                .build()
                .await?;
            let before = settled_resident().await?;
            // References the measured actors need to stay alive (a kameo or actix actor stops
            // with its last reference); held on every side alike.
            let mut keep: Option<Box<dyn std::any::Any + Send>> = None;
            match side {
                Side::Plex => {
                    // The actors live on without a handle: each task holds its own cell.
                    for _ in 0..count {
                        node.spawn(crate::plex::Idle)?;
                    }
                }
                Side::Floor => {
                    for _ in 0..count {
                        drop(crate::floor::spawn_idle());
                    }
                }
                Side::PlexAsked => {
                    let mut refs = Vec::with_capacity(count);
                    for _ in 0..count {
                        let actor = node.spawn_with(
                            crate::plex::Idle,
                            plexspaces_core::SpawnOptions::default()
                                .mailbox(MailboxConfig::Unbounded),
                        )?;
                        actor.ask(()).await?;
                        refs.push(actor);
                    }
                    keep = Some(Box::new(refs));
                }
                Side::FloorAsked => {
                    keep = Some(Box::new(crate::floor::idle_after_one_ask(count).await?));
                }
                Side::Peer(peer) => {
                    keep = Some(crate::peers::idle_after_one_ask(peer, count).await?);
                }
            }
            let after = settled_resident().await?;
            drop(keep);
            Ok::<_, anyhow::Error>(after.saturating_sub(before) as f64 / count as f64)
        })
        .await
        .context("memory child panicked")?
    })?;
    println!("{per_actor:.1}");
    // Exit without tearing down 100k actors.
    std::process::exit(0);
}
