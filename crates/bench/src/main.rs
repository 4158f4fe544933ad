//! `plexspaces-bench`: PlexSpaces actors measured beside a bare tokio task + mpsc channel
//! doing the same work, in the same run, printed as one markdown table; then a second table
//! with the peer frameworks (actix 0.13, ractor 0.16, kameo 0.22, default features, their
//! idiomatic tell/ask/spawn) measured in the same process run, with PlexSpaces' ratio to each.
//!
//! It reports; it never asserts a target. Rows: tell throughput (1 sender, bounded and
//! unbounded), fan-in (8 senders), ask latency, ping-pong, spawn cost, resident bytes per
//! idle actor (measured in fresh child processes of this binary) and restart latency under a
//! `one_for_one` supervisor.
//!
//! ```text
//! cargo run --release -p plexspaces-bench            # full run
//! cargo run --release -p plexspaces-bench -- --quick # 1/20 of the work, a smoke test
//! cargo run --release -p plexspaces-bench -- --json  # {"floor": {..rows}, "peers": [..]} instead of tables
//! ```

mod floor;
mod peers;
mod plex;
mod remote;
mod report;
mod rss;

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use plexspaces_core::{MailboxConfig, Node};

use report::{Better, PeerRow, Row};

/// Mailbox capacity used by both sides of the bounded rows.
pub const CAPACITY: usize = 1024;

/// How much work each row does.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    /// Messages per throughput run (split across senders for fan-in).
    pub messages: u64,
    /// Senders in the fan-in row.
    pub fan_in: u64,
    /// Timed asks (after a tenth as many warm-up asks).
    pub asks: usize,
    /// Ping-pong round trips.
    pub rounds: u64,
    /// Actors spawned in the spawn row.
    pub spawns: usize,
    /// Idle actors in the resident-memory row.
    pub idle: usize,
    /// Crash/restart cycles.
    pub restarts: usize,
    /// Repetitions of each throughput/spawn row; the median is reported.
    pub reps: usize,
}

impl Work {
    fn full() -> Work {
        Work {
            messages: 2_000_000,
            fan_in: 8,
            asks: 100_000,
            rounds: 200_000,
            spawns: 100_000,
            idle: 100_000,
            restarts: 1_000,
            reps: 3,
        }
    }

    fn quick() -> Work {
        Work {
            messages: 100_000,
            fan_in: 8,
            asks: 5_000,
            rounds: 10_000,
            spawns: 5_000,
            idle: 5_000,
            restarts: 50,
            reps: 1,
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(rss::CHILD_COMMAND) {
        return rss::child(&args[1..]);
    }
    let mut quick = false;
    let mut json = false;
    let mut remote_only = false;
    for arg in &args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json = true,
            "--remote" => remote_only = true,
            "-h" | "--help" => {
                println!("usage: plexspaces-bench [--quick] [--json] [--remote]\n  --remote: only the node-to-node rows (TCP vs LoopbackNetwork, failure detection)");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let work = if quick { Work::quick() } else { Work::full() };
    if remote_only {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("building the tokio runtime")?;
        let workers = runtime.metrics().num_workers();
        let rows = runtime.block_on(async move {
            tokio::spawn(remote::run(work.asks, work.messages / 2))
                .await
                .context("bench driver panicked")?
        })?;
        if json {
            println!("{}", report::json(&rows, quick, workers));
        } else {
            let header = format!(
                "{} mode, remote rows, tokio multi-thread runtime with {workers} workers; floor: the same operation over core's in-process LoopbackNetwork (failure rows: the configured detection bound)",
                if quick { "quick (1/20 work)" } else { "full" }
            );
            println!(
                "{}",
                report::markdown_with(&header, "LoopbackNetwork / bound", &rows)
            );
        }
        return Ok(());
    }

    // Resident memory first, each side in a fresh child process, so nothing measured later
    // (or earlier) in this process pollutes it.
    eprintln!(
        "measuring resident bytes per idle actor ({} actors)...",
        work.idle
    );
    let idle_plex = rss::measure_in_child(rss::Side::Plex, work.idle)?;
    let idle_floor = rss::measure_in_child(rss::Side::Floor, work.idle)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let workers = runtime.metrics().num_workers();
    // The driver runs as a task on the workers, like every sender and actor it measures.
    let idle = Row::new(
        "resident bytes per idle actor",
        "B",
        idle_plex,
        idle_floor,
        Better::Lower,
        "≤ 1536 B (aim < 1024 B)",
    );
    let rows = runtime.block_on(async move {
        tokio::spawn(run(work, idle))
            .await
            .context("bench driver panicked")?
    })?;
    let peer_rows = run_peers(&runtime, work, &rows)?;

    let header = format!(
        "{} mode, tokio multi-thread runtime with {workers} workers, mailbox Bounded({CAPACITY}) vs mpsc::channel({CAPACITY}) unless noted",
        if quick { "quick (1/20 work)" } else { "full" }
    );
    if json {
        println!(
            "{{\"floor\":{},\"peers\":{}}}",
            report::json(&rows, quick, workers),
            report::peers_json(&peer_rows)
        );
    } else {
        println!("{}", report::markdown(&header, &rows));
        let caption = format!(
            "Peers, same run: actix 0.13 (own System, 1 arbiter), ractor 0.16 and kameo 0.22 (tokio runtime with {workers} workers); tell and memory rows with unbounded mailboxes everywhere; PlexSpaces's ask, ping-pong and spawn figures are the rows above. Each ÷ column is PlexSpaces divided by that peer."
        );
        println!("{}", report::peers_markdown(&caption, &peer_rows));
    }
    Ok(())
}

async fn run(work: Work, idle: Row) -> Result<Vec<Row>> {
    let node = Node::builder("bench")
        .mailbox(MailboxConfig::Bounded(CAPACITY))
        .shutdown_timeout(Duration::from_secs(1))
        .build()
        .await
        .context("starting the node")?;
    let mut rows = Vec::new();

    eprintln!("tell throughput, 1 sender, {} messages...", work.messages);
    let bounded = MailboxConfig::Bounded(CAPACITY);
    let (p, f) = paired(
        work.reps,
        || plex::tell(&node, bounded, work.messages, 1),
        || floor::tell(Some(CAPACITY), work.messages, 1),
    )
    .await?;
    rows.push(Row::new(
        "tell, 1 sender, bounded",
        "msg/s",
        p,
        f,
        Better::Higher,
        "≥ 0.70× (aim 0.90×)",
    ));

    eprintln!("tell throughput, 1 sender, unbounded...");
    let (p, f) = paired(
        work.reps,
        || plex::tell(&node, MailboxConfig::Unbounded, work.messages, 1),
        || floor::tell(None, work.messages, 1),
    )
    .await?;
    rows.push(Row::new(
        "tell, 1 sender, unbounded",
        "msg/s",
        p,
        f,
        Better::Higher,
        "≥ 0.70× (aim 0.90×)",
    ));

    eprintln!("fan-in, {} senders...", work.fan_in);
    let (p, f) = paired(
        work.reps,
        || plex::tell(&node, bounded, work.messages, work.fan_in),
        || floor::tell(Some(CAPACITY), work.messages, work.fan_in),
    )
    .await?;
    rows.push(Row::new(
        &format!("fan-in, {} senders, bounded", work.fan_in),
        "msg/s",
        p,
        f,
        Better::Higher,
        "≥ 0.70× (aim 0.90×)",
    ));

    eprintln!("ask latency, {} sequential asks...", work.asks);
    let floor_ask = floor::ask(work.asks, None).await?;
    let floor_ask_timed = floor::ask(work.asks, Some(plexspaces_core::DEFAULT_ASK_TIMEOUT)).await?;
    let plex_ask = plex::ask(&node, work.asks).await?;
    rows.push(Row::new(
        "ask p50",
        "µs",
        plex_ask.p50,
        floor_ask.p50,
        Better::Lower,
        "≤ 1.5×",
    ));
    rows.push(Row::new(
        "ask p50, floor also under tokio::time::timeout",
        "µs",
        plex_ask.p50,
        floor_ask_timed.p50,
        Better::Lower,
        "≤ 1.5×",
    ));
    rows.push(Row::new(
        "ask p99",
        "µs",
        plex_ask.p99,
        floor_ask.p99,
        Better::Lower,
        "",
    ));

    eprintln!("ping-pong, {} round trips...", work.rounds);
    let (p, f) = paired(
        work.reps,
        || plex::ping_pong(&node, work.rounds),
        || floor::ping_pong(work.rounds),
    )
    .await?;
    rows.push(Row::new(
        "ping-pong",
        "round trips/s",
        p,
        f,
        Better::Higher,
        "",
    ));

    eprintln!("spawn, {} actors...", work.spawns);
    let (p, f) = paired(
        work.reps,
        || plex::spawn(&node, work.spawns),
        || floor::spawn(work.spawns),
    )
    .await?;
    rows.push(Row::new(
        "spawn (node.spawn, no wait for on_start)",
        "µs/actor",
        p,
        f,
        Better::Lower,
        "≤ 2 µs",
    ));

    rows.push(idle);

    eprintln!("restart latency, {} crashes...", work.restarts);
    let floor_restart = floor::restart(work.restarts).await?;
    let plex_restart = plex::restart(&node, work.restarts).await?;
    rows.push(Row::new(
        "restart, crash → restarted child answers, p50",
        "µs",
        plex_restart.p50,
        floor_restart.p50,
        Better::Lower,
        "",
    ));
    rows.push(Row::new(
        "restart p99",
        "µs",
        plex_restart.p99,
        floor_restart.p99,
        Better::Lower,
        "",
    ));

    node.shutdown().await;
    Ok(rows)
}

/// The peers table: actix, ractor and kameo measured now, beside the PlexSpaces and floor
/// figures of `rows` (same process run) and resident memory after one ask in fresh children.
fn run_peers(runtime: &tokio::runtime::Runtime, work: Work, rows: &[Row]) -> Result<Vec<PeerRow>> {
    let find = |name: &str| -> Result<&Row> {
        rows.iter()
            .find(|row| row.name.starts_with(name))
            .with_context(|| format!("no {name:?} row"))
    };
    let peer_work = peers::PeerWork {
        messages: work.messages,
        asks: work.asks,
        spawns: work.spawns,
        rounds: work.rounds,
    };
    eprintln!("peers: actix...");
    let actix = peers::actix_figures(peer_work, work.reps)?;
    eprintln!("peers: ractor...");
    let ractor = runtime.block_on(async move {
        tokio::spawn(peers::ractor_figures(peer_work, work.reps))
            .await
            .context("ractor driver panicked")?
    })?;
    eprintln!("peers: kameo...");
    let kameo = runtime.block_on(async move {
        tokio::spawn(peers::kameo_figures(peer_work, work.reps))
            .await
            .context("kameo driver panicked")?
    })?;
    eprintln!("peers: resident bytes per actor after one ask...");
    let memory = |side| rss::measure_in_child(side, work.idle);
    let memory_row = PeerRow {
        name: "resident bytes per actor after one ask",
        unit: "B",
        better: Better::Lower,
        plex: memory(rss::Side::PlexAsked)?,
        floor: memory(rss::Side::FloorAsked)?,
        actix: memory(rss::Side::Peer(peers::Peer::Actix))?,
        ractor: memory(rss::Side::Peer(peers::Peer::Ractor))?,
        kameo: memory(rss::Side::Peer(peers::Peer::Kameo))?,
    };
    let tell = find("tell, 1 sender, unbounded")?;
    let ask = find("ask p50")?;
    let spawn = find("spawn")?;
    let ping_pong = find("ping-pong")?;
    Ok(vec![
        PeerRow {
            name: "tell, 1 sender, unbounded",
            unit: "msg/s",
            better: Better::Higher,
            plex: tell.plex,
            floor: tell.floor,
            actix: actix.tell,
            ractor: ractor.tell,
            kameo: kameo.tell,
        },
        PeerRow {
            name: "ask p50",
            unit: "µs",
            better: Better::Lower,
            plex: ask.plex,
            floor: ask.floor,
            actix: actix.ask_p50,
            ractor: ractor.ask_p50,
            kameo: kameo.ask_p50,
        },
        PeerRow {
            name: "spawn",
            unit: "µs/actor",
            better: Better::Lower,
            plex: spawn.plex,
            floor: spawn.floor,
            actix: actix.spawn,
            ractor: ractor.spawn,
            kameo: kameo.spawn,
        },
        memory_row,
        PeerRow {
            name: "ping-pong",
            unit: "round trips/s",
            better: Better::Higher,
            plex: ping_pong.plex,
            floor: ping_pong.floor,
            actix: actix.ping_pong,
            ractor: ractor.ping_pong,
            kameo: kameo.ping_pong,
        },
    ])
}

/// Runs each side `reps` times, alternating floor and PlexSpaces so drift hits both alike;
/// returns the medians (PlexSpaces, floor).
async fn paired<P, PF, F, FF>(reps: usize, mut plex: P, mut floor: F) -> Result<(f64, f64)>
where
    P: FnMut() -> PF,
    PF: std::future::Future<Output = Result<f64>>,
    F: FnMut() -> FF,
    FF: std::future::Future<Output = Result<f64>>,
{
    let mut p = Vec::with_capacity(reps);
    let mut f = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        f.push(floor().await?);
        p.push(plex().await?);
    }
    Ok((report::median(&mut p), report::median(&mut f)))
}
