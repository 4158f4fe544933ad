//! The floor: a bare tokio task and mpsc channel doing the same work as each PlexSpaces row.

use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::sync::{mpsc, oneshot};

use crate::report::Latency;

/// What the sink task receives: the same two requests as the `Sink` actor.
pub enum SinkMsg {
    Add(u64),
    Get(oneshot::Sender<u64>),
}

/// A bounded or unbounded sender, so one body serves both rows.
enum Tx<T> {
    Bounded(mpsc::Sender<T>),
    Unbounded(mpsc::UnboundedSender<T>),
}

enum Rx<T> {
    Bounded(mpsc::Receiver<T>),
    Unbounded(mpsc::UnboundedReceiver<T>),
}

impl<T> Clone for Tx<T> {
    fn clone(&self) -> Self {
        match self {
            Tx::Bounded(tx) => Tx::Bounded(tx.clone()),
            Tx::Unbounded(tx) => Tx::Unbounded(tx.clone()),
        }
    }
}

impl<T> Tx<T> {
    async fn send(&self, value: T) -> Result<()> {
        let sent = match self {
            Tx::Bounded(tx) => tx.send(value).await.is_ok(),
            Tx::Unbounded(tx) => tx.send(value).is_ok(),
        };
        if sent {
            Ok(())
        } else {
            Err(anyhow!("receiver task is gone"))
        }
    }
}

impl<T> Rx<T> {
    async fn recv(&mut self) -> Option<T> {
        match self {
            Rx::Bounded(rx) => rx.recv().await,
            Rx::Unbounded(rx) => rx.recv().await,
        }
    }
}

fn channel<T>(capacity: Option<usize>) -> (Tx<T>, Rx<T>) {
    match capacity {
        Some(capacity) => {
            let (tx, rx) = mpsc::channel(capacity);
            (Tx::Bounded(tx), Rx::Bounded(rx))
        }
        None => {
            let (tx, rx) = mpsc::unbounded_channel();
            (Tx::Unbounded(tx), Rx::Unbounded(rx))
        }
    }
}

async fn sink(mut rx: Rx<SinkMsg>) {
    let mut total = 0u64;
    while let Some(msg) = rx.recv().await {
        match msg {
            SinkMsg::Add(n) => total += n,
            SinkMsg::Get(reply) => {
                let _ = reply.send(total);
            }
        }
    }
}

async fn get(tx: &Tx<SinkMsg>) -> Result<u64> {
    let (reply, answer) = oneshot::channel();
    tx.send(SinkMsg::Get(reply)).await?;
    answer.await.context("sink task dropped the reply")
}

/// Tell throughput against a task on a channel of `capacity` (`None`: unbounded).
pub async fn tell(capacity: Option<usize>, messages: u64, senders: u64) -> Result<f64> {
    let (tx, rx) = channel(capacity);
    let task = tokio::spawn(sink(rx));
    get(&tx).await?;
    let per_sender = messages / senders;
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let tx = tx.clone();
            tokio::spawn(async move {
                for _ in 0..per_sender {
                    tx.send(SinkMsg::Add(1)).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let total = get(&tx).await?;
    let elapsed = started.elapsed();
    drop(tx);
    task.await?;
    if total != per_sender * senders {
        bail!("sink counted {total}, expected {}", per_sender * senders);
    }
    Ok(total as f64 / elapsed.as_secs_f64())
}

/// Sequential request/reply: mpsc there, oneshot back. With `timeout`, each request is
/// bounded by `tokio::time::timeout` as every PlexSpaces `ask` is.
pub async fn ask(samples: usize, timeout: Option<std::time::Duration>) -> Result<Latency> {
    let (tx, rx) = channel(Some(crate::CAPACITY));
    let task = tokio::spawn(sink(rx));
    for _ in 0..samples / 10 {
        get(&tx).await?;
    }
    let mut nanos = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        match timeout {
            Some(limit) => {
                tokio::time::timeout(limit, get(&tx)).await??;
            }
            None => {
                get(&tx).await?;
            }
        }
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    drop(tx);
    task.await?;
    Ok(Latency::from_nanos(&mut nanos))
}

async fn player(
    mut rx: mpsc::Receiver<u64>,
    peer: mpsc::Sender<u64>,
    done: Option<oneshot::Sender<()>>,
) {
    let mut done = done;
    while let Some(n) = rx.recv().await {
        if n == 0 {
            if let Some(done) = done.take() {
                let _ = done.send(());
            }
            return;
        }
        if peer.send(n - 1).await.is_err() {
            return;
        }
    }
}

/// Two tasks bounce a counter over two channels. Round trips per second.
pub async fn ping_pong(rounds: u64) -> Result<f64> {
    let (to_a, a_rx) = mpsc::channel(crate::CAPACITY);
    let (to_b, b_rx) = mpsc::channel(crate::CAPACITY);
    let (done_tx, done_rx) = oneshot::channel();
    let a = tokio::spawn(player(a_rx, to_b, Some(done_tx)));
    let b = tokio::spawn(player(b_rx, to_a.clone(), None));
    let started = Instant::now();
    to_a.send(rounds * 2).await.context("player a is gone")?;
    done_rx.await.context("ping-pong never finished")?;
    let elapsed = started.elapsed();
    drop(to_a);
    a.await?;
    b.await?;
    Ok(rounds as f64 / elapsed.as_secs_f64())
}

/// An idle task that owns its channel (both ends, as an actor's task does through its
/// cell), waiting for a message.
pub fn spawn_idle() -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = mpsc::channel::<SinkMsg>(crate::CAPACITY);
    tokio::spawn(async move {
        let _keep = tx;
        while rx.recv().await.is_some() {}
    })
}

/// `count` tasks on unbounded channels, each after one request/reply; their senders.
pub async fn idle_after_one_ask(count: usize) -> Result<Vec<mpsc::UnboundedSender<SinkMsg>>> {
    let mut senders = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(sink(Rx::Unbounded(rx)));
        let tx = Tx::Unbounded(tx);
        get(&tx).await?;
        if let Tx::Unbounded(tx) = tx {
            senders.push(tx);
        }
    }
    Ok(senders)
}

/// `tokio::spawn` of `count` tasks that each own an mpsc receiver. Microseconds per task.
pub async fn spawn(count: usize) -> Result<f64> {
    let mut handles = Vec::with_capacity(count);
    let started = Instant::now();
    for _ in 0..count {
        handles.push(spawn_idle());
    }
    let elapsed = started.elapsed();
    for handle in &handles {
        handle.abort();
    }
    for handle in handles {
        let _ = handle.await;
    }
    Ok(elapsed.as_secs_f64() * 1e6 / count as f64)
}

/// What the floor worker receives.
enum WorkerMsg {
    Crash,
    Ping(oneshot::Sender<()>),
}

async fn worker(mut rx: mpsc::Receiver<WorkerMsg>) -> Result<(), &'static str> {
    while let Some(msg) = rx.recv().await {
        match msg {
            WorkerMsg::Crash => return Err("crash requested"),
            WorkerMsg::Ping(reply) => {
                let _ = reply.send(());
            }
        }
    }
    Ok(())
}

/// Respawns the worker whenever its `JoinHandle` reports a failure; stops on a clean exit.
async fn supervisor(born: mpsc::UnboundedSender<mpsc::Sender<WorkerMsg>>) {
    loop {
        let (tx, rx) = mpsc::channel(crate::CAPACITY);
        let handle = tokio::spawn(worker(rx));
        if born.send(tx).is_err() {
            handle.abort();
            return;
        }
        match handle.await {
            Ok(Ok(())) => return,
            Ok(Err(_)) | Err(_) => continue,
        }
    }
}

/// Crash the worker, wait for the respawned one and ask it. Percentiles in microseconds.
pub async fn restart(restarts: usize) -> Result<Latency> {
    let (born_tx, mut born_rx) = mpsc::unbounded_channel();
    let sup = tokio::spawn(supervisor(born_tx));
    let mut current = born_rx.recv().await.context("worker never started")?;
    let mut nanos = Vec::with_capacity(restarts);
    for _ in 0..restarts {
        let started = Instant::now();
        current
            .send(WorkerMsg::Crash)
            .await
            .map_err(|_| anyhow!("worker is gone"))?;
        current = born_rx.recv().await.context("worker was not restarted")?;
        let (reply, answer) = oneshot::channel();
        current
            .send(WorkerMsg::Ping(reply))
            .await
            .map_err(|_| anyhow!("worker is gone"))?;
        answer.await.context("worker dropped the ping")?;
        nanos.push(started.elapsed().as_nanos() as u64);
    }
    drop(current);
    drop(born_rx);
    sup.await?;
    Ok(Latency::from_nanos(&mut nanos))
}
