//! The PlexSpaces side of every row.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use plexspaces_core::{
    Actor, ActorRef, BoxError, ChildSpec, Context, ExitReason, MailboxConfig, Node, SpawnOptions,
    Strategy, Supervisor, SupervisorSpec,
};
use tokio::sync::{mpsc, oneshot};

use crate::report::Latency;

/// Adds to a counter; `Get` answers the total.
pub struct Sink {
    total: u64,
}

/// [`Sink`]'s messages.
pub enum SinkMsg {
    Add(u64),
    Get,
}

impl Sink {
    fn apply(&mut self, msg: SinkMsg) -> u64 {
        if let SinkMsg::Add(n) = msg {
            self.total += n;
        }
        self.total
    }
}

impl Actor for Sink {
    type Msg = SinkMsg;
    type Reply = u64;

    async fn handle_call(
        &mut self,
        msg: SinkMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<u64>, BoxError> {
        Ok(Some(self.apply(msg)))
    }

    async fn handle_cast(
        &mut self,
        msg: SinkMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<(), BoxError> {
        self.apply(msg);
        Ok(())
    }
}

/// Tell throughput: `senders` tasks send `messages` in all, then one ask detects completion
/// (the mailbox is FIFO). Messages per second.
pub async fn tell(node: &Node, mailbox: MailboxConfig, messages: u64, senders: u64) -> Result<f64> {
    let sink = node.spawn_with(Sink { total: 0 }, SpawnOptions::default().mailbox(mailbox))?;
    sink.ask(SinkMsg::Get).await?;
    let per_sender = messages / senders;
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let sink = sink.clone();
            tokio::spawn(async move {
                for _ in 0..per_sender {
                    if sink.tell(SinkMsg::Add(1)).await.is_err() {
                        bail!("sink actor is gone");
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let total = sink.ask(SinkMsg::Get).await?;
    let elapsed = started.elapsed();
    stop(&sink).await;
    if total != per_sender * senders {
        bail!("sink counted {total}, expected {}", per_sender * senders);
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Sequential asks from one task; percentiles in microseconds.
pub async fn ask(node: &Node, samples: usize) -> Result<Latency> {
    let sink = node.spawn(Sink { total: 0 })?;
    for _ in 0..samples / 10 {
        sink.ask(SinkMsg::Add(1)).await?;
    }
    let mut nanos = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        sink.ask(SinkMsg::Add(1)).await?;
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    stop(&sink).await;
    Ok(Latency::from_nanos(&mut nanos))
}

/// One of two actors bouncing a counter down to zero.
pub struct Player {
    peer: Option<ActorRef<Player>>,
    done: Option<oneshot::Sender<()>>,
}

/// [`Player`]'s messages.
pub enum PlayerMsg {
    Peer(ActorRef<Player>),
    Done(oneshot::Sender<()>),
    Ball(u64),
}

impl Player {
    async fn on(&mut self, msg: PlayerMsg) -> Result<(), BoxError> {
        match msg {
            PlayerMsg::Peer(peer) => self.peer = Some(peer),
            PlayerMsg::Done(done) => self.done = Some(done),
            PlayerMsg::Ball(0) => {
                if let Some(done) = self.done.take() {
                    let _ = done.send(());
                }
            }
            PlayerMsg::Ball(n) => {
                let peer = self.peer.as_ref().ok_or("no peer")?;
                if peer.tell(PlayerMsg::Ball(n - 1)).await.is_err() {
                    return Err("peer is gone".into());
                }
            }
        }
        Ok(())
    }
}

impl Actor for Player {
    type Msg = PlayerMsg;
    type Reply = ();

    async fn handle_call(
        &mut self,
        msg: PlayerMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        self.on(msg).await.map(Some)
    }

    async fn handle_cast(
        &mut self,
        msg: PlayerMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<(), BoxError> {
        self.on(msg).await
    }
}

/// Two actors bounce one message `rounds` times there and back. Round trips per second.
pub async fn ping_pong(node: &Node, rounds: u64) -> Result<f64> {
    let new_player = || Player {
        peer: None,
        done: None,
    };
    let a = node.spawn(new_player())?;
    let b = node.spawn(new_player())?;
    let (done_tx, done_rx) = oneshot::channel();
    a.ask(PlayerMsg::Peer(b.clone())).await?;
    a.ask(PlayerMsg::Done(done_tx)).await?;
    b.ask(PlayerMsg::Peer(a.clone())).await?;
    let started = Instant::now();
    // A gets the even counts, so A sees the final 0.
    a.tell(PlayerMsg::Ball(rounds * 2))
        .await
        .map_err(|_| anyhow!("player is gone"))?;
    done_rx.await.context("ping-pong never finished")?;
    let elapsed = started.elapsed();
    // The two refer to each other; stopping them breaks the cycle.
    stop(&a).await;
    stop(&b).await;
    Ok(rounds as f64 / elapsed.as_secs_f64())
}

/// An actor that does nothing.
pub struct Idle;

impl Actor for Idle {
    type Msg = ();
    type Reply = ();

    async fn handle_call(
        &mut self,
        _msg: (),
        _ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        Ok(Some(()))
    }
}

/// Spawns `count` idle actors with `node.spawn` (not waiting for `on_start`). Microseconds
/// per actor.
pub async fn spawn(node: &Node, count: usize) -> Result<f64> {
    let before = node.actor_count();
    let mut refs = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        refs.push(node.spawn(Idle)?);
    }
    let elapsed = started.elapsed();
    for actor in &refs {
        actor.kill();
    }
    drop(refs);
    // Let the kills finish so the next row starts from a quiet node.
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.actor_count() > before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(elapsed.as_secs_f64() * 1e6 / count as f64)
}

/// A supervised worker that reports each incarnation and crashes on demand.
pub struct Worker {
    born: mpsc::UnboundedSender<ActorRef<Worker>>,
}

/// [`Worker`]'s messages.
pub enum WorkerMsg {
    Crash,
    Ping,
}

impl Actor for Worker {
    type Msg = WorkerMsg;
    type Reply = ();

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let _ = self.born.send(ctx.myself().clone());
        Ok(())
    }

    async fn handle_call(
        &mut self,
        msg: WorkerMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        match msg {
            WorkerMsg::Crash => Err("crash requested".into()),
            WorkerMsg::Ping => Ok(Some(())),
        }
    }
}

/// Crash a `one_for_one` child with a handler error, wait for its next incarnation and ask
/// it; time from the crash message to the answer. Percentiles in microseconds.
pub async fn restart(node: &Node, restarts: usize) -> Result<Latency> {
    let (born_tx, mut born_rx) = mpsc::unbounded_channel();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(u32::MAX, Duration::from_secs(1))
        .child(ChildSpec::worker("worker", move || Worker {
            born: born_tx.clone(),
        }));
    let supervisor = node
        .start(Supervisor::new(spec), SpawnOptions::default())
        .await?;
    let mut current = born_rx.recv().await.context("worker never started")?;
    current.ask(WorkerMsg::Ping).await?;
    let mut nanos = Vec::with_capacity(restarts);
    for _ in 0..restarts {
        let started = Instant::now();
        current
            .tell(WorkerMsg::Crash)
            .await
            .map_err(|_| anyhow!("worker is gone"))?;
        current = born_rx.recv().await.context("worker was not restarted")?;
        current.ask(WorkerMsg::Ping).await?;
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    stop(&supervisor).await;
    Ok(Latency::from_nanos(&mut nanos))
}

async fn stop<A: Actor>(actor: &ActorRef<A>) {
    actor.stop(ExitReason::Shutdown);
    let _ = actor.wait().await;
}
