//! Actor timers: a periodic timer (`send_interval`) cancelled after five ticks, a one-shot
//! timer (`send_after`) that fires once, and a one-shot timer cancelled before it fires.
//!
//! A `Heartbeat` actor arms the three timers in `on_start`. Every tick it counts; on the
//! fifth it cancels the periodic timer itself. The one-shot `Deadline` fires once, later
//! than the fifth tick. The `Never` timer is cancelled at once and must never arrive. The
//! program waits well past every deadline and then asks the actor what it saw.
//!
//! Timers are in memory, owned by the actor: they stop when the actor stops. Durable
//! reminders (which survive a restart) exist in `plexspaces-journal` but are not wired into
//! the node yet, so this example shows timers only.
//!
//! Prints `timers: 5 ticks then cancelled, one-shot fired once, cancelled timer never fired: OK`.

use std::time::Duration;

use anyhow::ensure;
use plexspaces_core::{Actor, BoxError, Context, Node, TimerRef};

const TICK: Duration = Duration::from_millis(20);
const TICKS: u32 = 5;

#[derive(Clone, Debug)]
enum Msg {
    Tick,
    Deadline,
    Never,
    Report,
}

#[derive(Debug, Default, PartialEq)]
struct Seen {
    ticks: u32,
    deadlines: u32,
    nevers: u32,
    /// Ticks counted after the deadline fired (the deadline comes after the last tick).
    ticks_after_deadline: u32,
    cancelled_pending: bool,
}

#[derive(Default)]
struct Heartbeat {
    tick_timer: Option<TimerRef>,
    seen: Seen,
}

impl Actor for Heartbeat {
    type Msg = Msg;
    type Reply = Seen;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.tick_timer = Some(ctx.send_interval(TICK, Msg::Tick));
        // Well after the fifth tick, so a tick after it would mean the cancel failed.
        ctx.send_after(TICK * (TICKS + 5), Msg::Deadline);
        let never = ctx.send_after(TICK * 3, Msg::Never);
        self.seen.cancelled_pending = ctx.cancel_timer(never);
        Ok(())
    }

    async fn handle_call(
        &mut self,
        msg: Msg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Seen>, BoxError> {
        match msg {
            Msg::Tick => {
                self.seen.ticks += 1;
                if self.seen.deadlines > 0 {
                    self.seen.ticks_after_deadline += 1;
                }
                if self.seen.ticks == TICKS {
                    if let Some(timer) = self.tick_timer.take() {
                        ctx.cancel_timer(timer);
                    }
                }
                Ok(None)
            }
            Msg::Deadline => {
                self.seen.deadlines += 1;
                Ok(None)
            }
            Msg::Never => {
                self.seen.nevers += 1;
                Ok(None)
            }
            Msg::Report => Ok(Some(std::mem::take(&mut self.seen))),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let node = Node::builder("timers").build().await?;
    let heartbeat = node.spawn_named("heartbeat", Heartbeat::default())?;
    // Past the deadline, plus room for five more ticks had the cancel not worked.
    tokio::time::sleep(TICK * (TICKS + 15)).await;
    let seen = heartbeat.ask(Msg::Report).await?;
    println!(
        "ticks: {}, one-shot fired: {}, cancelled timer fired: {}",
        seen.ticks, seen.deadlines, seen.nevers
    );
    ensure!(
        seen.ticks == TICKS,
        "expected {TICKS} ticks, saw {}",
        seen.ticks
    );
    ensure!(seen.ticks_after_deadline == 0, "ticks after the cancel");
    ensure!(
        seen.deadlines == 1,
        "the one-shot fired {} times",
        seen.deadlines
    );
    ensure!(
        seen.cancelled_pending,
        "the cancelled timer had already fired"
    );
    ensure!(seen.nevers == 0, "the cancelled timer fired");
    println!("timers: {TICKS} ticks then cancelled, one-shot fired once, cancelled timer never fired: OK");
    node.shutdown().await;
    Ok(())
}
