//! The output gate: holds replies back until the commits that cover them are durable.
//!
//! A facet that pipelines its writes (the durability facet) returns a [`Commit`] from
//! [`crate::Facet::after_message_gated`] instead of waiting for it. The actor loop hands the
//! commit and the message's reply to its gate and takes its next message at once; the gate
//! releases each reply after its commit resolves, in message order. So the handler of a hot
//! key runs while earlier writes are in flight, the writes of consecutive messages coalesce
//! into one commit, and still no caller hears of a message before it is durable.
//!
//! Architecture invariant: a reply held by the gate leaves only after its own commit and
//! every earlier held commit resolved `Ok`. After a failed commit every held and later reply
//! fails and the actor is stopped: its in-memory state may include what was never recorded.
//!
//! Zero cost when unused: an actor gets a gate (one small task and a channel) on the first
//! commit a facet defers; until then replies take the direct path, as before.
//!
//! Outgoing messages: a handler running under a facet's [`Barrier`] (the durability facet
//! offers one) waits in every `tell`/`ask` it sends to another actor until everything its
//! actor did so far is durable; a send that cannot be made safe fails instead of leaving.
//! Before any barrier was ever installed a send checks one atomic flag, nothing more.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{Error, ExitReason, Result};
use crate::facet::Commit;
use crate::pid::Pid;

/// What to do with a held reply once its commit resolved: send it (`Ok`) or fail it.
pub(crate) type Release = Box<dyn FnOnce(Result<()>) + Send>;

struct Held {
    commit: Option<Commit>,
    release: Release,
}

/// One actor's output gate (a cheap handle; the releasing task ends when it is dropped).
pub(crate) struct OutputGate {
    tx: mpsc::UnboundedSender<Held>,
    /// Held replies not yet released.
    held: Arc<AtomicUsize>,
}

impl OutputGate {
    /// Starts the gate of the actor `pid` (stopped when a commit fails).
    pub(crate) fn start(pid: Pid, runtime: &tokio::runtime::Handle) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let held = Arc::new(AtomicUsize::new(0));
        runtime.spawn(release_in_order(rx, held.clone(), pid));
        OutputGate { tx, held }
    }

    /// Whether replies are still held: a reply that needs no commit must then queue behind
    /// them to keep the order.
    pub(crate) fn is_holding(&self) -> bool {
        self.held.load(Ordering::Acquire) > 0
    }

    /// Holds `release` until `commit` (if any) and every earlier hold resolved.
    pub(crate) fn hold(&self, commit: Option<Commit>, release: Release) {
        self.held.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(held)) = self.tx.send(Held { commit, release }) {
            // The releasing task is gone (the runtime is shutting down): nothing can be
            // confirmed any more.
            self.held.fetch_sub(1, Ordering::AcqRel);
            (held.release)(Err(Error::ShuttingDown));
        }
    }
}

async fn release_in_order(mut rx: mpsc::UnboundedReceiver<Held>, held: Arc<AtomicUsize>, pid: Pid) {
    let mut failed: Option<Error> = None;
    while let Some(Held { commit, release }) = rx.recv().await {
        let outcome = match (&failed, commit) {
            (Some(e), _) => Err(e.clone()),
            (None, Some(commit)) => commit.await,
            (None, None) => Ok(()),
        };
        if let (None, Err(e)) = (&failed, &outcome) {
            tracing::warn!(actor = %pid.id(), error = %e, "commit failed: failing held replies and stopping the actor");
            failed = Some(e.clone());
            pid.stop(ExitReason::error(format!("commit failed: {e}")));
        }
        release(outcome);
        held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Makes everything the actor did so far durable (see [`crate::Facet::output_barrier`]).
pub type Barrier = Arc<dyn Fn() -> Commit + Send + Sync>;

/// Set once a handler ever ran under a barrier: until then sends skip the task-local lookup.
static BARRIERS_IN_USE: AtomicBool = AtomicBool::new(false);

tokio::task_local! {
    static BARRIER: Barrier;
}

/// Runs a handler future under `barrier` (if any).
pub(crate) async fn under_barrier<F: Future>(barrier: Option<Barrier>, fut: F) -> F::Output {
    match barrier {
        None => fut.await,
        Some(barrier) => {
            BARRIERS_IN_USE.store(true, Ordering::Relaxed);
            BARRIER.scope(barrier, fut).await
        }
    }
}

/// Called by every async send to another actor: inside a handler with a barrier, waits
/// until the sender's work so far is durable.
pub(crate) async fn before_send() -> Result<()> {
    if !BARRIERS_IN_USE.load(Ordering::Relaxed) {
        return Ok(());
    }
    match BARRIER.try_with(|barrier| barrier()) {
        Ok(wait) => wait.await,
        Err(_) => Ok(()),
    }
}
