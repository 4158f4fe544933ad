//! Node-to-node transport. A [`Transport`] moves opaque frames between named nodes; the
//! [`Router`] encodes what actors do (tell, ask, reply, link, exit, monitor, down) into
//! `plexspaces.v1.Frame` protobuf bytes and back. [`LoopbackNetwork`] joins nodes inside one
//! process over channels, really encoding every frame, so location transparency is tested
//! without sockets; a gRPC transport plugs into the same trait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use dashmap::DashMap;
use plexspaces_proto::v1 as pb;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use crate::actor::Info;
use crate::envelope::Envelope;
use crate::error::{Error, ExitReason, Result};
use crate::id::ActorId;
use crate::node::Node;
use crate::pid::{
    BoxFuture, EnvelopeMail, EnvelopeReply, MonitorRef, Pid, ReplyCallback, Signal, Watcher,
};

/// Receives the frames addressed to one node.
pub type Inbound = Arc<dyn Fn(Bytes) -> BoxFuture<'static, ()> + Send + Sync>;

/// Receives several frames addressed to one node at once, handled in order; the future
/// gives the vector back emptied, so a transport can reuse its allocation. The node's
/// handler decodes each frame as [`Inbound`] does, but looks a `Tell` target up once for a
/// run of frames to the same actor.
pub type InboundBatch = Arc<dyn Fn(Vec<Bytes>) -> BoxFuture<'static, Vec<Bytes>> + Send + Sync>;

/// Moves frames between nodes. Delivery between a pair of nodes is in order.
pub trait Transport: Send + Sync + 'static {
    /// Starts delivering frames addressed to `node` to `inbound`.
    fn bind(&self, node: &str, inbound: Inbound) -> Result<()>;
    /// Like [`Transport::bind`], also handing over a batch handler for transports that read
    /// many frames at a time. The node binds through this; the default ignores `batch`.
    fn bind_batched(&self, node: &str, inbound: Inbound, batch: InboundBatch) -> Result<()> {
        let _ = batch;
        self.bind(node, inbound)
    }
    /// Stops delivering to `node`.
    fn unbind(&self, node: &str);
    /// Queues `frame` for `node` without waiting.
    fn send(&self, node: &str, frame: Bytes) -> Result<()>;
}

/// Nodes in one process joined by channels. Frames are real protobuf bytes.
#[derive(Default)]
pub struct LoopbackNetwork {
    nodes: DashMap<String, mpsc::UnboundedSender<Bytes>>,
}

impl std::fmt::Debug for LoopbackNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackNetwork")
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

impl LoopbackNetwork {
    /// An empty network.
    pub fn new() -> Arc<Self> {
        Arc::new(LoopbackNetwork::default())
    }
}

impl Transport for LoopbackNetwork {
    fn bind(&self, node: &str, inbound: Inbound) -> Result<()> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        if self.nodes.contains_key(node) {
            return Err(Error::NameTaken(format!("node {node}")));
        }
        self.nodes.insert(node.to_owned(), tx);
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                inbound(frame).await;
            }
        });
        Ok(())
    }

    fn unbind(&self, node: &str) {
        self.nodes.remove(node);
    }

    fn send(&self, node: &str, frame: Bytes) -> Result<()> {
        let tx = self
            .nodes
            .get(node)
            .ok_or_else(|| Error::Transport(format!("node {node} is not reachable")))?;
        tx.send(frame)
            .map_err(|_| Error::Transport(format!("node {node} is not reachable")))
    }
}

/// An ask waiting for a remote reply, and the node it went to (so a lost node fails it).
struct PendingAsk {
    node: Arc<str>,
    reply: oneshot::Sender<Result<Envelope>>,
}

/// A local actor monitoring an actor on another node: kept so that losing that node turns
/// into a `Down(noconnection)` for the watcher.
struct RemoteMonitor {
    watcher: Pid,
    target: ActorId,
}

/// One node's way out: encodes frames, tracks asks waiting for remote replies and the
/// monitors its actors hold on remote actors.
pub(crate) struct Router {
    node: Arc<str>,
    transport: Option<Arc<dyn Transport>>,
    pending: DashMap<String, PendingAsk>,
    /// Remote node -> monitor ref -> who watches what there.
    remote_monitors: DashMap<String, HashMap<MonitorRef, RemoteMonitor>>,
    next_correlation: AtomicU64,
}

impl Router {
    pub(crate) fn new(node: Arc<str>, transport: Option<Arc<dyn Transport>>) -> Self {
        Router {
            node,
            transport,
            pending: DashMap::new(),
            remote_monitors: DashMap::new(),
            next_correlation: AtomicU64::new(1),
        }
    }

    pub(crate) fn has_transport(&self) -> bool {
        self.transport.is_some()
    }

    pub(crate) fn transport(&self) -> Option<&Arc<dyn Transport>> {
        self.transport.as_ref()
    }

    fn send_frame(&self, node: &str, body: pb::frame::Body) -> Result<()> {
        let transport = self
            .transport
            .as_ref()
            .ok_or_else(|| Error::Transport(format!("node {} has no transport", self.node)))?;
        let frame = pb::Frame { body: Some(body) };
        transport.send(node, Bytes::from(frame.encode_to_vec()))
    }

    pub(crate) fn tell(&self, to: &ActorId, env: Envelope) -> Result<()> {
        self.send_frame(
            to.node(),
            pb::frame::Body::Tell(pb::Tell {
                to: to.as_str().to_owned(),
                envelope: Some(env.into_proto()),
            }),
        )
    }

    pub(crate) async fn ask(
        &self,
        to: &ActorId,
        mut env: Envelope,
        timeout: Duration,
    ) -> Result<Envelope> {
        let correlation = format!(
            "{}-{}",
            self.node,
            self.next_correlation.fetch_add(1, Ordering::Relaxed)
        );
        env.correlation_id = correlation.clone();
        let (tx, rx) = oneshot::channel();
        self.pending.insert(
            correlation.clone(),
            PendingAsk {
                node: to.node().into(),
                reply: tx,
            },
        );
        let sent = self.send_frame(
            to.node(),
            pb::frame::Body::Ask(pb::Ask {
                to: to.to_string(),
                envelope: Some(env.into_proto()),
                reply_node: self.node.to_string(),
            }),
        );
        if let Err(e) = sent {
            self.pending.remove(&correlation);
            return Err(e);
        }
        let result = tokio::time::timeout(timeout, rx).await;
        // Whatever happened, this correlation id is finished: a late reply finds no entry
        // and is dropped.
        self.pending.remove(&correlation);
        match result {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(Error::NoReply),
            Err(_) => Err(Error::Timeout(timeout)),
        }
    }

    pub(crate) fn send_signal(&self, to: &ActorId, signal: Signal) {
        let body = match signal {
            Signal::Stop(reason) => pb::frame::Body::Exit(pb::Exit {
                from: String::new(),
                to: to.to_string(),
                reason: Some(reason.to_proto()),
            }),
            Signal::Exit { from, reason } => pb::frame::Body::Exit(pb::Exit {
                from: from.id().to_string(),
                to: to.to_string(),
                reason: Some(reason.to_proto()),
            }),
            Signal::Info(Info::Down {
                monitor,
                id,
                reason,
            }) => pb::frame::Body::Down(pb::Down {
                watcher: to.to_string(),
                target: id.to_string(),
                monitor_ref: monitor.0,
                reason: Some(reason.to_proto()),
            }),
            Signal::Info(other) => {
                tracing::debug!(to = %to, info = ?other, "notification not sent across nodes");
                return;
            }
            Signal::AttachFacet(_) | Signal::DetachFacet(_) => {
                tracing::warn!(to = %to, "facets cannot be attached across nodes");
                return;
            }
        };
        if let Err(e) = self.send_frame(to.node(), body) {
            tracing::debug!(to = %to, error = %e, "signal not delivered");
        }
    }

    pub(crate) fn send_kill(&self, to: &ActorId) {
        let body = pb::frame::Body::Exit(pb::Exit {
            from: String::new(),
            to: to.to_string(),
            reason: Some(pb::ExitReason {
                kind: Some(pb::exit_reason::Kind::Kill(pb::Empty {})),
            }),
        });
        if let Err(e) = self.send_frame(to.node(), body) {
            tracing::debug!(to = %to, error = %e, "kill not delivered");
        }
    }

    /// Sends this side's link request; an error means the other node cannot be reached.
    pub(crate) fn send_link(&self, from: &ActorId, to: &ActorId) -> Result<()> {
        let body = pb::frame::Body::Link(pb::Link {
            from: from.to_string(),
            to: to.to_string(),
        });
        self.send_frame(to.node(), body)
    }

    pub(crate) fn send_unlink(&self, from: &ActorId, to: &ActorId) {
        let body = pb::frame::Body::Unlink(pb::Unlink {
            from: from.to_string(),
            to: to.to_string(),
        });
        let _ = self.send_frame(to.node(), body);
    }

    /// Asks `target`'s node to tell `watcher` (a local actor) of `target`'s death. If the
    /// node cannot be reached, the watcher gets `Down(noconnection)` at once.
    pub(crate) fn send_monitor(&self, watcher: &Pid, target: &ActorId, monitor: MonitorRef) {
        if watcher.is_local() {
            self.remote_monitors
                .entry(target.node().to_owned())
                .or_default()
                .insert(
                    monitor,
                    RemoteMonitor {
                        watcher: watcher.clone(),
                        target: target.clone(),
                    },
                );
        }
        let body = pb::frame::Body::Monitor(pb::Monitor {
            watcher: watcher.id().to_string(),
            target: target.to_string(),
            monitor_ref: monitor.0,
        });
        if let Err(e) = self.send_frame(target.node(), body) {
            tracing::debug!(to = %target, error = %e, "monitor not delivered");
            if let Some(entry) = self.forget_monitor(target.node(), monitor) {
                entry.watcher.signal(Signal::Info(Info::Down {
                    monitor,
                    id: entry.target,
                    reason: ExitReason::NoConnection,
                }));
            }
        }
    }

    fn forget_monitor(&self, node: &str, monitor: MonitorRef) -> Option<RemoteMonitor> {
        let mut monitors = self.remote_monitors.get_mut(node)?;
        let entry = monitors.remove(&monitor);
        let empty = monitors.is_empty();
        drop(monitors);
        if empty {
            self.remote_monitors.remove_if(node, |_, m| m.is_empty());
        }
        entry
    }

    pub(crate) fn send_demonitor(&self, watcher: &ActorId, target: &ActorId, monitor: MonitorRef) {
        self.forget_monitor(target.node(), monitor);
        let body = pb::frame::Body::Demonitor(pb::Demonitor {
            watcher: watcher.to_string(),
            target: target.to_string(),
            monitor_ref: monitor.0,
        });
        let _ = self.send_frame(target.node(), body);
    }

    fn complete(&self, correlation: &str, result: Result<Envelope>) {
        if let Some((_, pending)) = self.pending.remove(correlation) {
            let _ = pending.reply.send(result);
        }
    }

    /// `node` is gone: every ask waiting on it fails with [`Error::NoConnection`] and every
    /// local monitor of an actor there gets `Down(noconnection)`. Each is taken out of its
    /// table before it is answered, so it is answered once however often this runs.
    pub(crate) fn node_lost(&self, node: &str) -> (usize, usize) {
        let lost: Vec<String> = self
            .pending
            .iter()
            .filter(|entry| &*entry.value().node == node)
            .map(|entry| entry.key().clone())
            .collect();
        let mut asks = 0;
        for correlation in lost {
            // A reply that raced in between already removed its own entry.
            if let Some((_, pending)) = self.pending.remove(&correlation) {
                let _ = pending
                    .reply
                    .send(Err(Error::NoConnection(node.to_owned())));
                asks += 1;
            }
        }
        let monitors = match self.remote_monitors.remove(node) {
            Some((_, monitors)) => {
                let count = monitors.len();
                for (monitor, entry) in monitors {
                    entry.watcher.signal(Signal::Info(Info::Down {
                        monitor,
                        id: entry.target,
                        reason: ExitReason::NoConnection,
                    }));
                }
                count
            }
            None => 0,
        };
        (asks, monitors)
    }
}

/// The function a transport calls with each frame for `node`.
pub(crate) fn inbound_handler(node: &Node) -> Inbound {
    let node = node.downgrade();
    Arc::new(move |bytes: Bytes| {
        let node = node.clone();
        Box::pin(async move {
            let Some(node) = node.upgrade() else { return };
            match pb::Frame::decode(bytes) {
                Ok(frame) => on_frame(&node, frame, &mut TellTarget::default()).await,
                Err(e) => {
                    tracing::warn!(node = %node.name(), error = %e, "undecodable frame dropped")
                }
            }
        })
    })
}

/// The function a batching transport calls with runs of frames for `node`.
pub(crate) fn inbound_batch_handler(node: &Node) -> InboundBatch {
    let node = node.downgrade();
    Arc::new(move |mut frames: Vec<Bytes>| {
        let node = node.clone();
        Box::pin(async move {
            if let Some(node) = node.upgrade() {
                let mut target = TellTarget::default();
                for bytes in frames.drain(..) {
                    match pb::Frame::decode(bytes) {
                        Ok(frame) => on_frame(&node, frame, &mut target).await,
                        Err(e) => {
                            tracing::warn!(node = %node.name(), error = %e, "undecodable frame dropped")
                        }
                    }
                }
            }
            frames.clear();
            frames
        })
    })
}

/// The last `Tell` target of a batch: its id as sent and the local actor it named, so a
/// run of tells to one actor parses and looks up the id once. Lives for one batch only,
/// so an actor that stops and is replaced under the same name is looked up afresh by the
/// next batch.
#[derive(Default)]
struct TellTarget {
    to: String,
    pid: Option<Pid>,
}

fn parse_id(text: &str) -> Option<ActorId> {
    ActorId::parse(text).ok()
}

fn remote_error(e: &Error) -> pb::RemoteError {
    pb::RemoteError {
        kind: e.kind().to_owned(),
        message: e.to_string(),
    }
}

async fn on_frame(node: &Node, frame: pb::Frame, target: &mut TellTarget) {
    let Some(body) = frame.body else { return };
    if let pb::frame::Body::Tell(tell) = body {
        let Some(env) = tell.envelope else { return };
        if target.to != tell.to || target.to.is_empty() {
            target.pid = parse_id(&tell.to).and_then(|id| node.lookup(&id));
            target.to = tell.to;
        }
        if let Some(pid) = &target.pid {
            if let Err(e) = pid.tell_envelope(Envelope::from_proto(env)).await {
                tracing::debug!(to = %pid.id(), error = %e, "remote tell not delivered");
            }
        }
        return;
    }
    let router = node.router().clone();
    match body {
        pb::frame::Body::Tell(_) => {}
        pb::frame::Body::Ask(ask) => {
            let env = ask.envelope.map(Envelope::from_proto).unwrap_or_default();
            let correlation = env.correlation_id.clone();
            let reply_node = ask.reply_node;
            let reply = move |router: &Router, result: Result<Envelope>| {
                let result = match result {
                    Ok(env) => pb::reply_result::Result::Ok(env.into_proto()),
                    Err(e) => pb::reply_result::Result::Error(remote_error(&e)),
                };
                let body = pb::frame::Body::Reply(pb::Reply {
                    correlation_id: correlation.clone(),
                    result: Some(pb::ReplyResult {
                        result: Some(result),
                    }),
                });
                if let Err(e) = router.send_frame(&reply_node, body) {
                    tracing::debug!(error = %e, "remote reply not delivered");
                }
            };
            let target = parse_id(&ask.to).and_then(|id| node.lookup(&id));
            let Some(pid) = target else {
                reply(&router, Err(Error::NoProc(ask.to)));
                return;
            };
            let Some(cell) = pid.cell().cloned() else {
                return;
            };
            // The actor's task sends the reply frame itself when it answers: the inbound
            // loop does not wait for it (one slow actor does not hold up frames for others)
            // and no task per ask waits either. A refused mail answers with the refusal
            // (`noproc`); a handle dropped unanswered, with the actor's exit.
            let gone = cell.clone();
            let answer = ReplyCallback::new(move |result| {
                let result = result.unwrap_or_else(|| Err(gone.core().gone_error()));
                reply(&router, result);
            });
            let _ = cell
                .send_envelope(Box::new(EnvelopeMail {
                    env,
                    reply: Some(EnvelopeReply::Callback(answer)),
                }))
                .await;
        }
        pb::frame::Body::Reply(reply) => {
            let result = match reply.result.and_then(|r| r.result) {
                Some(pb::reply_result::Result::Ok(env)) => Ok(Envelope::from_proto(env)),
                Some(pb::reply_result::Result::Error(e)) => {
                    Err(Error::from_remote(&e.kind, &e.message))
                }
                None => Err(Error::NoReply),
            };
            router.complete(&reply.correlation_id, result);
        }
        pb::frame::Body::Link(link) => {
            let (Some(from), Some(to)) = (parse_id(&link.from), parse_id(&link.to)) else {
                return;
            };
            let remote = Pid::remote(from, router.clone());
            // Only this side's half of the link: the sender already holds its own.
            let linked = node.lookup(&to).and_then(|local| {
                let cell = local.cell()?;
                let mut state = cell.core().state.lock();
                if state.exit.is_some() {
                    return None;
                }
                if !state.links.iter().any(|l| l.same(&remote)) {
                    state.links.push(remote.clone());
                }
                Some(())
            });
            match linked {
                Some(()) => {}
                None => router.send_signal(
                    remote.id(),
                    Signal::Exit {
                        from: Pid::remote(to, router.clone()),
                        reason: ExitReason::NoProc,
                    },
                ),
            }
        }
        pb::frame::Body::Unlink(unlink) => {
            let (Some(from), Some(to)) = (parse_id(&unlink.from), parse_id(&unlink.to)) else {
                return;
            };
            if let Some(local) = node.lookup(&to) {
                if let Some(cell) = local.cell() {
                    cell.core().state.lock().links.retain(|l| l.id() != &from);
                }
            }
        }
        pb::frame::Body::Exit(exit) => {
            let Some(to) = parse_id(&exit.to) else { return };
            let Some(local) = node.lookup(&to) else {
                return;
            };
            let kill = matches!(
                exit.reason.as_ref().and_then(|r| r.kind.as_ref()),
                Some(pb::exit_reason::Kind::Kill(_))
            );
            let reason = ExitReason::from_proto(exit.reason);
            if kill {
                local.kill();
            } else if exit.from.is_empty() {
                local.stop(reason);
            } else if let Some(from) = parse_id(&exit.from) {
                // The sender's link entry on this side is gone with it.
                if let Some(cell) = local.cell() {
                    cell.core().state.lock().links.retain(|l| l.id() != &from);
                }
                local.signal(Signal::Exit {
                    from: Pid::remote(from, router.clone()),
                    reason,
                });
            }
        }
        pb::frame::Body::Monitor(monitor) => {
            let (Some(watcher), Some(target)) =
                (parse_id(&monitor.watcher), parse_id(&monitor.target))
            else {
                return;
            };
            let watcher = Pid::remote(watcher, router.clone());
            let monitor_ref = MonitorRef(monitor.monitor_ref);
            match node.lookup(&target) {
                Some(local) => crate::context::add_watcher(&local, watcher, monitor_ref),
                None => watcher.signal(Signal::Info(Info::Down {
                    monitor: monitor_ref,
                    id: target,
                    reason: ExitReason::NoProc,
                })),
            }
        }
        pb::frame::Body::Demonitor(demonitor) => {
            let (Some(watcher), Some(target)) =
                (parse_id(&demonitor.watcher), parse_id(&demonitor.target))
            else {
                return;
            };
            if let Some(local) = node.lookup(&target) {
                if let Some(cell) = local.cell() {
                    let monitor_ref = MonitorRef(demonitor.monitor_ref);
                    cell.core().state.lock().watchers.retain(|w| {
                        !matches!(w, Watcher::Actor { pid, monitor } if *monitor == monitor_ref && pid.id() == &watcher)
                    });
                }
            }
        }
        pb::frame::Body::Down(down) => {
            let (Some(watcher), Some(target)) = (parse_id(&down.watcher), parse_id(&down.target))
            else {
                return;
            };
            router.forget_monitor(target.node(), MonitorRef(down.monitor_ref));
            if let Some(local) = node.lookup(&watcher) {
                local.signal(Signal::Info(Info::Down {
                    monitor: MonitorRef(down.monitor_ref),
                    id: target,
                    reason: ExitReason::from_proto(down.reason),
                }));
            }
        }
    }
}
