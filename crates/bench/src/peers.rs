//! The peers: actix 0.13, ractor 0.16 and kameo 0.22 doing the PlexSpaces rows' work with
//! their own idiomatic APIs (default features, unbounded mailboxes where the framework
//! offers a choice), measured in the same run as PlexSpaces and the tokio floor.
//!
//! actix runs on its own `System` in a dedicated thread (one arbiter, its usual setup);
//! ractor and kameo run on the bench's tokio multi-thread runtime, like PlexSpaces.

use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::sync::oneshot;

use crate::report::Latency;

/// The figures one framework produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Tell throughput, 1 sender, messages per second.
    pub tell: f64,
    /// Sequential ask, p50 in microseconds.
    pub ask_p50: f64,
    /// Spawn cost, microseconds per actor.
    pub spawn: f64,
    /// Ping-pong round trips per second.
    pub ping_pong: f64,
}

/// How much work each peer row does.
#[derive(Debug, Clone, Copy)]
pub struct PeerWork {
    pub messages: u64,
    pub asks: usize,
    pub spawns: usize,
    pub rounds: u64,
}

fn elapsed_rate(count: u64, started: Instant) -> f64 {
    count as f64 / started.elapsed().as_secs_f64()
}

fn per_item_micros(count: usize, started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1e6 / count as f64
}

/// One framework's rows: tell, spawn and ping-pong `reps` times each (medians), then the asks.
async fn measure<T, TF, S, SF, P, PF, A, AF>(
    work: PeerWork,
    reps: usize,
    tell: T,
    spawn: S,
    ping_pong: P,
    ask: A,
) -> Result<Figures>
where
    T: Fn(u64) -> TF,
    TF: std::future::Future<Output = Result<f64>>,
    S: Fn(usize) -> SF,
    SF: std::future::Future<Output = Result<f64>>,
    P: Fn(u64) -> PF,
    PF: std::future::Future<Output = Result<f64>>,
    A: FnOnce(usize) -> AF,
    AF: std::future::Future<Output = Result<f64>>,
{
    let mut tells = Vec::new();
    let mut spawns = Vec::new();
    let mut pongs = Vec::new();
    for _ in 0..reps.max(1) {
        tells.push(tell(work.messages).await?);
        spawns.push(spawn(work.spawns).await?);
        pongs.push(ping_pong(work.rounds).await?);
    }
    Ok(Figures {
        tell: crate::report::median(&mut tells),
        ask_p50: ask(work.asks).await?,
        spawn: crate::report::median(&mut spawns),
        ping_pong: crate::report::median(&mut pongs),
    })
}

// ---------------------------------------------------------------------------------- actix

mod actix_side {
    use super::*;
    use actix::prelude::*;

    pub struct Sink {
        pub total: u64,
    }

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u64")]
    pub struct Add(pub u64);

    impl Handler<Add> for Sink {
        type Result = u64;

        fn handle(&mut self, msg: Add, _ctx: &mut Context<Self>) -> u64 {
            self.total += msg.0;
            self.total
        }
    }

    pub struct Idle;

    impl Actor for Idle {
        type Context = Context<Self>;
    }

    impl Handler<Add> for Idle {
        type Result = u64;

        fn handle(&mut self, msg: Add, _ctx: &mut Context<Self>) -> u64 {
            msg.0
        }
    }

    pub struct Player {
        pub peer: Option<Addr<Player>>,
        pub done: Option<oneshot::Sender<()>>,
    }

    impl Actor for Player {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    pub enum PlayerMsg {
        Peer(Addr<Player>),
        Done(oneshot::Sender<()>),
        Ball(u64),
    }

    impl Handler<PlayerMsg> for Player {
        type Result = ();

        fn handle(&mut self, msg: PlayerMsg, _ctx: &mut Context<Self>) {
            match msg {
                PlayerMsg::Peer(peer) => self.peer = Some(peer),
                PlayerMsg::Done(done) => self.done = Some(done),
                PlayerMsg::Ball(0) => {
                    if let Some(done) = self.done.take() {
                        let _ = done.send(());
                    }
                }
                PlayerMsg::Ball(n) => {
                    if let Some(peer) = &self.peer {
                        peer.do_send(PlayerMsg::Ball(n - 1));
                    }
                }
            }
        }
    }

    async fn tell(messages: u64) -> Result<f64> {
        let sink = Sink { total: 0 }.start();
        sink.send(Add(0)).await?;
        let started = Instant::now();
        for _ in 0..messages {
            sink.do_send(Add(1));
        }
        let total = sink.send(Add(0)).await?;
        let rate = elapsed_rate(total, started);
        if total != messages {
            bail!("actix sink counted {total}, expected {messages}");
        }
        Ok(rate)
    }

    async fn ask(samples: usize) -> Result<f64> {
        let sink = Sink { total: 0 }.start();
        for _ in 0..samples / 10 {
            sink.send(Add(1)).await?;
        }
        let mut nanos = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            sink.send(Add(1)).await?;
            nanos.push(started.elapsed().as_nanos() as u64);
        }
        Ok(Latency::from_nanos(&mut nanos).p50)
    }

    async fn spawn(count: usize) -> Result<f64> {
        let mut refs = Vec::with_capacity(count);
        let started = Instant::now();
        for _ in 0..count {
            refs.push(Idle.start());
        }
        let cost = per_item_micros(count, started);
        drop(refs);
        // Let the dropped actors wind down before the next row.
        tokio::task::yield_now().await;
        Ok(cost)
    }

    async fn ping_pong(rounds: u64) -> Result<f64> {
        let new_player = || Player {
            peer: None,
            done: None,
        };
        let a = new_player().start();
        let b = new_player().start();
        let (done_tx, done_rx) = oneshot::channel();
        a.send(PlayerMsg::Peer(b.clone())).await?;
        a.send(PlayerMsg::Done(done_tx)).await?;
        b.send(PlayerMsg::Peer(a.clone())).await?;
        let started = Instant::now();
        a.do_send(PlayerMsg::Ball(rounds * 2));
        done_rx.await.context("actix ping-pong never finished")?;
        // The two hold each other's address; they go with the System at the end.
        Ok(elapsed_rate(rounds, started))
    }

    /// Runs every actix row on a fresh `System` (one arbiter) in its own thread.
    pub fn figures(work: PeerWork, reps: usize) -> Result<Figures> {
        std::thread::spawn(move || {
            let system = actix::System::new();
            system.block_on(measure(work, reps, tell, spawn, ping_pong, ask))
        })
        .join()
        .map_err(|_| anyhow!("actix bench thread panicked"))?
    }

    /// Spawns `count` actors, asks each once, keeps their addresses; returns them.
    pub async fn idle_after_one_ask(count: usize) -> Result<Vec<Addr<Idle>>> {
        let mut refs = Vec::with_capacity(count);
        for _ in 0..count {
            let idle = Idle.start();
            idle.send(Add(1)).await?;
            refs.push(idle);
        }
        Ok(refs)
    }
}

// ---------------------------------------------------------------------------------- ractor

mod ractor_side {
    use super::*;
    use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

    pub struct Sink;

    pub enum SinkMsg {
        Add(u64),
        AddAndGet(u64, RpcReplyPort<u64>),
    }

    impl Actor for Sink {
        type Msg = SinkMsg;
        type State = u64;
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<SinkMsg>,
            _args: (),
        ) -> Result<u64, ActorProcessingErr> {
            Ok(0)
        }

        async fn handle(
            &self,
            _myself: ActorRef<SinkMsg>,
            msg: SinkMsg,
            total: &mut u64,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                SinkMsg::Add(n) => *total += n,
                SinkMsg::AddAndGet(n, reply) => {
                    *total += n;
                    let _ = reply.send(*total);
                }
            }
            Ok(())
        }
    }

    pub struct Player;

    pub struct PlayerState {
        peer: Option<ActorRef<PlayerMsg>>,
        done: Option<oneshot::Sender<()>>,
    }

    pub enum PlayerMsg {
        Peer(ActorRef<PlayerMsg>, RpcReplyPort<()>),
        Done(oneshot::Sender<()>, RpcReplyPort<()>),
        Ball(u64),
    }

    impl Actor for Player {
        type Msg = PlayerMsg;
        type State = PlayerState;
        type Arguments = ();

        async fn pre_start(
            &self,
            _myself: ActorRef<PlayerMsg>,
            _args: (),
        ) -> Result<PlayerState, ActorProcessingErr> {
            Ok(PlayerState {
                peer: None,
                done: None,
            })
        }

        async fn handle(
            &self,
            _myself: ActorRef<PlayerMsg>,
            msg: PlayerMsg,
            state: &mut PlayerState,
        ) -> Result<(), ActorProcessingErr> {
            match msg {
                PlayerMsg::Peer(peer, reply) => {
                    state.peer = Some(peer);
                    let _ = reply.send(());
                }
                PlayerMsg::Done(done, reply) => {
                    state.done = Some(done);
                    let _ = reply.send(());
                }
                PlayerMsg::Ball(0) => {
                    if let Some(done) = state.done.take() {
                        let _ = done.send(());
                    }
                }
                PlayerMsg::Ball(n) => {
                    if let Some(peer) = &state.peer {
                        peer.cast(PlayerMsg::Ball(n - 1))?;
                    }
                }
            }
            Ok(())
        }
    }

    async fn add_and_get(sink: &ActorRef<SinkMsg>, n: u64) -> Result<u64> {
        match sink.call(|reply| SinkMsg::AddAndGet(n, reply), None).await {
            Ok(ractor::rpc::CallResult::Success(total)) => Ok(total),
            Ok(_) => bail!("ractor call got no reply"),
            Err(e) => bail!("ractor call failed: {e}"),
        }
    }

    async fn stop<M: ractor::Message>(actor: ActorRef<M>, handle: tokio::task::JoinHandle<()>) {
        actor.stop(None);
        let _ = handle.await;
    }

    async fn tell(messages: u64) -> Result<f64> {
        let (sink, handle) = Actor::spawn(None, Sink, ()).await?;
        add_and_get(&sink, 0).await?;
        let started = Instant::now();
        for _ in 0..messages {
            sink.cast(SinkMsg::Add(1))
                .map_err(|e| anyhow!("ractor cast: {e}"))?;
        }
        let total = add_and_get(&sink, 0).await?;
        let rate = elapsed_rate(total, started);
        stop(sink, handle).await;
        if total != messages {
            bail!("ractor sink counted {total}, expected {messages}");
        }
        Ok(rate)
    }

    async fn ask(samples: usize) -> Result<f64> {
        let (sink, handle) = Actor::spawn(None, Sink, ()).await?;
        for _ in 0..samples / 10 {
            add_and_get(&sink, 1).await?;
        }
        let mut nanos = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            add_and_get(&sink, 1).await?;
            nanos.push(started.elapsed().as_nanos() as u64);
        }
        stop(sink, handle).await;
        Ok(Latency::from_nanos(&mut nanos).p50)
    }

    async fn spawn(count: usize) -> Result<f64> {
        let mut refs = Vec::with_capacity(count);
        let started = Instant::now();
        for _ in 0..count {
            refs.push(Actor::spawn(None, Sink, ()).await?);
        }
        let cost = per_item_micros(count, started);
        for (actor, handle) in refs {
            stop(actor, handle).await;
        }
        Ok(cost)
    }

    async fn ping_pong(rounds: u64) -> Result<f64> {
        let (a, a_handle) = Actor::spawn(None, Player, ()).await?;
        let (b, b_handle) = Actor::spawn(None, Player, ()).await?;
        let (done_tx, done_rx) = oneshot::channel();
        let b_for_a = b.clone();
        let a_for_b = a.clone();
        a.call(|r| PlayerMsg::Peer(b_for_a, r), None).await?;
        a.call(|r| PlayerMsg::Done(done_tx, r), None).await?;
        b.call(|r| PlayerMsg::Peer(a_for_b, r), None).await?;
        let started = Instant::now();
        a.cast(PlayerMsg::Ball(rounds * 2))
            .map_err(|e| anyhow!("ractor cast: {e}"))?;
        done_rx.await.context("ractor ping-pong never finished")?;
        let rate = elapsed_rate(rounds, started);
        stop(a, a_handle).await;
        stop(b, b_handle).await;
        Ok(rate)
    }

    pub async fn figures(work: PeerWork, reps: usize) -> Result<Figures> {
        measure(work, reps, tell, spawn, ping_pong, ask).await
    }

    /// Spawns `count` actors, asks each once, keeps their references.
    pub async fn idle_after_one_ask(count: usize) -> Result<Vec<ActorRef<SinkMsg>>> {
        let mut refs = Vec::with_capacity(count);
        for _ in 0..count {
            let (actor, _handle) = Actor::spawn(None, Sink, ()).await?;
            add_and_get(&actor, 1).await?;
            refs.push(actor);
        }
        Ok(refs)
    }
}

// ---------------------------------------------------------------------------------- kameo

mod kameo_side {
    use super::*;
    use kameo::actor::{ActorRef, Spawn};
    use kameo::mailbox;
    use kameo::message::{Context, Message};

    #[derive(kameo::Actor)]
    pub struct Sink {
        total: u64,
    }

    pub struct Add(pub u64);

    impl Message<Add> for Sink {
        type Reply = u64;

        async fn handle(&mut self, msg: Add, _ctx: &mut Context<Self, u64>) -> u64 {
            self.total += msg.0;
            self.total
        }
    }

    #[derive(kameo::Actor)]
    pub struct Player {
        peer: Option<ActorRef<Player>>,
        done: Option<oneshot::Sender<()>>,
    }

    pub struct SetPeer(ActorRef<Player>);
    pub struct SetDone(oneshot::Sender<()>);
    pub struct Ball(u64);

    impl Message<SetPeer> for Player {
        type Reply = ();

        async fn handle(&mut self, msg: SetPeer, _ctx: &mut Context<Self, ()>) {
            self.peer = Some(msg.0);
        }
    }

    impl Message<SetDone> for Player {
        type Reply = ();

        async fn handle(&mut self, msg: SetDone, _ctx: &mut Context<Self, ()>) {
            self.done = Some(msg.0);
        }
    }

    impl Message<Ball> for Player {
        type Reply = ();

        async fn handle(&mut self, msg: Ball, _ctx: &mut Context<Self, ()>) {
            match msg.0 {
                0 => {
                    if let Some(done) = self.done.take() {
                        let _ = done.send(());
                    }
                }
                n => {
                    if let Some(peer) = &self.peer {
                        let _ = peer.tell(Ball(n - 1)).await;
                    }
                }
            }
        }
    }

    fn new_sink() -> ActorRef<Sink> {
        Sink::spawn_with_mailbox(Sink { total: 0 }, mailbox::unbounded())
    }

    async fn stop<A: kameo::Actor>(actor: &ActorRef<A>) {
        let _ = actor.stop_gracefully().await;
        actor.wait_for_shutdown().await;
    }

    async fn tell(messages: u64) -> Result<f64> {
        let sink = new_sink();
        sink.ask(Add(0)).await?;
        let started = Instant::now();
        for _ in 0..messages {
            sink.tell(Add(1))
                .await
                .map_err(|e| anyhow!("kameo tell: {e}"))?;
        }
        let total = sink.ask(Add(0)).await?;
        let rate = elapsed_rate(total, started);
        stop(&sink).await;
        if total != messages {
            bail!("kameo sink counted {total}, expected {messages}");
        }
        Ok(rate)
    }

    async fn ask(samples: usize) -> Result<f64> {
        let sink = new_sink();
        for _ in 0..samples / 10 {
            sink.ask(Add(1)).await?;
        }
        let mut nanos = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            sink.ask(Add(1)).await?;
            nanos.push(started.elapsed().as_nanos() as u64);
        }
        stop(&sink).await;
        Ok(Latency::from_nanos(&mut nanos).p50)
    }

    async fn spawn(count: usize) -> Result<f64> {
        let mut refs = Vec::with_capacity(count);
        let started = Instant::now();
        for _ in 0..count {
            refs.push(new_sink());
        }
        let cost = per_item_micros(count, started);
        for actor in &refs {
            actor.kill();
        }
        for actor in &refs {
            actor.wait_for_shutdown().await;
        }
        Ok(cost)
    }

    async fn ping_pong(rounds: u64) -> Result<f64> {
        let new_player = || {
            Player::spawn_with_mailbox(
                Player {
                    peer: None,
                    done: None,
                },
                mailbox::unbounded(),
            )
        };
        let a = new_player();
        let b = new_player();
        let (done_tx, done_rx) = oneshot::channel();
        a.ask(SetPeer(b.clone())).await?;
        a.ask(SetDone(done_tx)).await?;
        b.ask(SetPeer(a.clone())).await?;
        let started = Instant::now();
        a.tell(Ball(rounds * 2))
            .await
            .map_err(|e| anyhow!("kameo tell: {e}"))?;
        done_rx.await.context("kameo ping-pong never finished")?;
        let rate = elapsed_rate(rounds, started);
        stop(&a).await;
        stop(&b).await;
        Ok(rate)
    }

    pub async fn figures(work: PeerWork, reps: usize) -> Result<Figures> {
        measure(work, reps, tell, spawn, ping_pong, ask).await
    }

    /// Spawns `count` actors, asks each once, keeps their references (a kameo actor stops
    /// when its last reference goes).
    pub async fn idle_after_one_ask(count: usize) -> Result<Vec<ActorRef<Sink>>> {
        let mut refs = Vec::with_capacity(count);
        for _ in 0..count {
            let actor = new_sink();
            actor.ask(Add(1)).await?;
            refs.push(actor);
        }
        Ok(refs)
    }
}

pub use actix_side::figures as actix_figures;
pub use kameo_side::figures as kameo_figures;
pub use ractor_side::figures as ractor_figures;

/// Which peer a memory child measures.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Actix,
    Ractor,
    Kameo,
}

/// Spawns `count` actors of `peer`, asks each once, and keeps them alive in the returned box
/// until the caller has read resident memory.
pub async fn idle_after_one_ask(peer: Peer, count: usize) -> Result<Box<dyn std::any::Any + Send>> {
    Ok(match peer {
        Peer::Actix => Box::new(actix_side::idle_after_one_ask(count).await?),
        Peer::Ractor => Box::new(ractor_side::idle_after_one_ask(count).await?),
        Peer::Kameo => Box::new(kameo_side::idle_after_one_ask(count).await?),
    })
}
