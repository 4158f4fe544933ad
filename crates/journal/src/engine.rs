//! The durable execution engine: journaling, deterministic replay, side effects, idempotent
//! requests, checkpoints and fencing for one stream.
//!
//! # Life of a message (what the actor glue calls, in order)
//!
//! 1. [`DurableExecution::activate`] once per activation: acquires a new epoch, loads the
//!    latest snapshot and the journal suffix, repairs a torn tail. A torn snapshot is
//!    ignored when the journal still holds every entry from seq 1 (checkpoints without
//!    truncation) and is `Corrupt` otherwise.
//! 2. Restore the actor state from [`DurableExecution::snapshot_state`], then drain
//!    [`DurableExecution::next_replay`]: run the handler on each returned message exactly as
//!    live, then [`DurableExecution::commit`].
//! 3. Live: [`DurableExecution::begin_message`]. On [`Begin::Duplicate`] reply with the
//!    recorded bytes and skip the handler. On [`Begin::Started`] run the handler, which uses
//!    [`DurableExecution::side_effect`], [`DurableExecution::now`],
//!    [`DurableExecution::random_u64`] and [`DurableExecution::persist`]; then
//!    [`DurableExecution::commit`] with the reply. Release the reply only after `commit`
//!    returns `Ok` (that is when the message is durable). If the handler fails, call
//!    [`DurableExecution::abort`] and reactivate.
//! 4. After commit: if [`DurableExecution::should_checkpoint`], call
//!    [`DurableExecution::checkpoint`] with the encoded actor state.
//!
//! Any error from the journal (including [`Error::Fenced`] and [`Error::JournalMismatch`])
//! poisons the execution: every later call fails with [`Error::Poisoned`] and the actor must
//! be reactivated (or stop, when fenced).

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{Reader, Writer};
use crate::{
    Clock, Committing, Entry, EntryKind, Epoch, Error, Journal, Result, Seq, StreamId, SystemClock,
};

/// The last pipelined commit, shared: the engine peeks at it (a failure poisons) and waits
/// on it before a checkpoint. Its error is `(retryable, message)`, since [`Error`] is not
/// `Clone`.
type InFlight = Shared<BoxFuture<'static, Result<(), (bool, String)>>>;

fn in_flight_error((retryable, message): (bool, String)) -> Error {
    Error::Backend { message, retryable }
}

/// When to checkpoint (snapshot the actor state) and whether to truncate after it.
#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// Checkpoint after this many messages since the last checkpoint.
    pub every_messages: Option<u64>,
    /// Checkpoint when this much time passed since the last checkpoint (and at least one
    /// message was processed).
    pub every: Option<Duration>,
    /// Truncate entries covered by the snapshot after checkpointing. Keep `false` to retain
    /// the full history for time travel.
    pub truncate: bool,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_messages: Some(1000),
            every: Some(Duration::from_secs(60)),
            truncate: true,
        }
    }
}

/// A named point inside the engine, reported to [`DurableOptions::fault_hook`] so crash tests
/// can stop the process exactly there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultPoint {
    /// A side effect ran but its result is not journaled yet.
    AfterEffectBeforeJournal {
        /// Message seq.
        seq: Seq,
        /// Step index.
        step: u32,
    },
    /// The message's reply entry is durable but `commit` has not returned yet.
    AfterCommitBeforeReply {
        /// Message seq.
        seq: Seq,
    },
    /// The snapshot is saved but old entries are not truncated yet.
    MidCheckpoint {
        /// Snapshot seq.
        seq: Seq,
    },
}

impl FaultPoint {
    /// A stable lowercase name (`after_effect_before_journal`, `after_commit_before_reply`,
    /// `mid_checkpoint`).
    pub fn name(&self) -> &'static str {
        match self {
            FaultPoint::AfterEffectBeforeJournal { .. } => "after_effect_before_journal",
            FaultPoint::AfterCommitBeforeReply { .. } => "after_commit_before_reply",
            FaultPoint::MidCheckpoint { .. } => "mid_checkpoint",
        }
    }
}

/// How a durable actor retries a message whose handler failed.
///
/// A failed attempt is journaled (the message, the steps it recorded and a `Failed` entry
/// with the error) and the activation stops, as before. The message stays open: the next
/// activation replays it first (recorded side effects are not run again) and continues it
/// live, but not before `backoff` after the first failure, doubling per failure up to
/// `max_backoff` (an activation earlier than that is refused with [`Error::RetryLater`]).
/// After `max_attempts` failed attempts the stream is *paused*: every activation is
/// refused with [`Error::Paused`] (naming the message and its last error) until an
/// operator resumes it (its attempts count again from zero) or abandons it (the message is
/// aborted and skipped, as a failed message was before retries), see [`resolve_failed`].
/// Messages behind the failed one wait: a stream handles its messages in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts (the first run included) before the stream is paused. `0` turns retries
    /// off: a failed message is aborted and skipped on the next activation.
    pub max_attempts: u32,
    /// The wait after the first failure.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// No retries: a failed message is aborted and skipped.
    pub fn disabled() -> Self {
        Self {
            max_attempts: 0,
            ..Self::default()
        }
    }

    /// The wait before the next attempt after `failures` failed ones (`backoff` doubled per
    /// failure after the first, capped at `max_backoff`).
    pub fn delay_after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        self.backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff)
    }
}

/// A message whose handler failed and that is waiting for a retry, or paused (see
/// [`RetryPolicy`]); read with [`failed_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedMessage {
    /// The message's seq.
    pub seq: Seq,
    /// Its idempotency key, if it had one.
    pub idempotency_key: Option<String>,
    /// Failed attempts since it was received or last resumed.
    pub attempts: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// When the last attempt failed (ms since the Unix epoch).
    pub last_failed_at_ms: u64,
}

impl FailedMessage {
    /// Why an activation of `stream` is refused at `now_ms` because of this message:
    /// `Paused` once `policy` gave up on it, `RetryLater` inside its backoff, `None` when a
    /// retry may run (or retries are off).
    pub fn refusal(&self, stream: &StreamId, policy: &RetryPolicy, now_ms: u64) -> Option<Error> {
        if policy.max_attempts == 0 {
            return None;
        }
        if self.is_paused(policy) {
            return Some(Error::Paused {
                stream: stream.to_string(),
                seq: self.seq,
                attempts: self.attempts,
                last_error: self.last_error.clone(),
            });
        }
        let at = self.retry_at_ms(policy).filter(|at| now_ms < *at)?;
        Some(Error::RetryLater {
            stream: stream.to_string(),
            seq: self.seq,
            attempts: self.attempts,
            retry_in_ms: at - now_ms,
            last_error: self.last_error.clone(),
        })
    }

    /// Whether `policy` gave up on it: the stream is paused until resumed or abandoned.
    pub fn is_paused(&self, policy: &RetryPolicy) -> bool {
        policy.max_attempts > 0 && self.attempts >= policy.max_attempts
    }

    /// When the next attempt may run (ms since the Unix epoch), unless paused.
    pub fn retry_at_ms(&self, policy: &RetryPolicy) -> Option<u64> {
        (!self.is_paused(policy)).then(|| {
            self.last_failed_at_ms
                .saturating_add(policy.delay_after(self.attempts).as_millis() as u64)
        })
    }
}

/// What an operator does with a paused (or backing-off) message: [`resolve_failed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Retry it on the next activation, with a fresh attempt budget.
    Resume,
    /// Drop it: it is aborted (its state changes never count; side effects it journaled
    /// already happened) and the stream moves on to the next message.
    Abandon {
        /// Why, kept in the `Aborted` entry.
        reason: String,
    },
}

/// A callback at [`FaultPoint`]s (tests only; `None` in production).
pub type FaultHook = Arc<dyn Fn(FaultPoint) + Send + Sync>;

/// Options of a [`DurableExecution`].
#[derive(Clone)]
pub struct DurableOptions {
    /// When to checkpoint.
    pub checkpoint: CheckpointPolicy,
    /// How many idempotency keys (with their replies) are remembered, oldest evicted first.
    pub idempotency_retention: usize,
    /// The clock used by `now()` (live) and by the checkpoint timer.
    pub clock: Arc<dyn Clock>,
    /// Called at fault points (crash tests).
    pub fault_hook: Option<FaultHook>,
    /// Whether the durability facet pipelines commits through the actor's output gate
    /// (the actor takes its next message while earlier commits are in flight; replies
    /// still wait for theirs). `false`: each message waits for its own commit.
    pub output_gate: bool,
    /// How a message whose handler failed is retried, and when the stream pauses.
    pub retry: RetryPolicy,
}

impl fmt::Debug for DurableOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableOptions")
            .field("checkpoint", &self.checkpoint)
            .field("idempotency_retention", &self.idempotency_retention)
            .field("clock", &self.clock)
            .field("fault_hook", &self.fault_hook.is_some())
            .field("output_gate", &self.output_gate)
            .field("retry", &self.retry)
            .finish()
    }
}

impl Default for DurableOptions {
    fn default() -> Self {
        Self {
            checkpoint: CheckpointPolicy::default(),
            idempotency_retention: 10_000,
            clock: Arc::new(SystemClock),
            fault_hook: None,
            output_gate: true,
            retry: RetryPolicy::default(),
        }
    }
}

/// The deterministic key handed to a side effect: the same on every re-execution of the same
/// step, so an external system can deduplicate the window between effect and journal write.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey {
    /// The actor's stream.
    pub stream: StreamId,
    /// The message's seq.
    pub seq: Seq,
    /// The step index inside the message.
    pub step: u32,
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.stream, self.seq, self.step)
    }
}

/// A journaled message handed back for replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayMessage {
    /// Seq of its `MessageReceived` entry.
    pub seq: Seq,
    /// The request's idempotency key, if it had one.
    pub idempotency_key: Option<String>,
    /// The message bytes.
    pub payload: Vec<u8>,
    /// Whether the journal holds its reply (`false`: the process died mid-message; the
    /// handler continues live where the journal ends).
    pub completed: bool,
}

/// How `close_message` left a message.
enum Closed {
    /// Replayed: the recorded reply.
    Replayed(Vec<u8>),
    /// Live: its entries are queued in `pending`; its key and reply.
    Live {
        seq: Seq,
        key: Option<String>,
        reply: Vec<u8>,
    },
}

/// Outcome of [`DurableExecution::begin_message`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Run the handler; the message has this seq.
    Started {
        /// The message's seq.
        seq: Seq,
    },
    /// The idempotency key was seen: reply with these bytes and do not run the handler.
    Duplicate(Vec<u8>),
}

/// What a checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointReport {
    /// The snapshot covers entries up to this seq.
    pub seq: Seq,
    /// Entries removed by truncation.
    pub truncated: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Reply(Vec<u8>),
    Aborted,
    Incomplete,
}

#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) seq: Seq,
    pub(crate) key: Option<String>,
    pub(crate) payload: Vec<u8>,
    pub(crate) steps: VecDeque<Entry>,
    pub(crate) outcome: Outcome,
    pub(crate) end_seq: Seq,
    /// Failed attempts since received or last resumed, the last error and when it failed.
    pub(crate) failures: u32,
    pub(crate) last_failure: Option<(u64, String)>,
}

#[derive(Debug)]
struct Current {
    seq: Seq,
    key: Option<String>,
    step: u32,
    /// `Some` while replaying recorded steps; `None` once live.
    replay: Option<(VecDeque<Entry>, Outcome)>,
}

/// Idempotency keys and their first replies, bounded, oldest evicted first.
#[derive(Debug, Default)]
struct ReplyCache {
    map: HashMap<String, Vec<u8>>,
    order: VecDeque<String>,
    cap: usize,
}

impl ReplyCache {
    fn insert(&mut self, key: &str, reply: &[u8]) {
        if self.map.contains_key(key) || self.cap == 0 {
            return;
        }
        self.map.insert(key.to_owned(), reply.to_vec());
        self.order.push_back(key.to_owned());
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"PXJ1";

/// Engine metadata stored in every snapshot around the actor's own state bytes.
#[derive(Debug, Default)]
pub(crate) struct Envelope {
    pub(crate) messages: u64,
    pub(crate) replies: Vec<(String, Vec<u8>)>,
    pub(crate) state: Vec<u8>,
}

impl Envelope {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(SNAPSHOT_MAGIC)
            .u64(self.messages)
            .u64(self.replies.len() as u64);
        for (k, v) in &self.replies {
            w.str(k).bytes(v);
        }
        w.raw(&self.state).finish()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let mut r = Reader::new(buf);
        let mut magic = [0u8; 4];
        for b in &mut magic {
            *b = r.u8()?;
        }
        if &magic != SNAPSHOT_MAGIC {
            return Err(Error::Codec("not a journal snapshot envelope".into()));
        }
        let messages = r.u64()?;
        let n = r.u64()?;
        let mut replies = Vec::new();
        for _ in 0..n {
            let k = r.str()?.to_owned();
            let v = r.bytes()?.to_vec();
            replies.push((k, v));
        }
        Ok(Self {
            messages,
            replies,
            state: r.rest().to_vec(),
        })
    }
}

fn describe(e: &Entry) -> String {
    let mut r = Reader::new(&e.payload);
    match e.kind {
        EntryKind::SideEffect => match r.str() {
            Ok(name) => format!("side effect {name:?}"),
            Err(_) => "side effect".into(),
        },
        k => k.name().to_owned(),
    }
}

/// Groups verified entries into messages.
pub(crate) fn parse_messages(stream: &StreamId, entries: Vec<Entry>) -> Result<Vec<Recorded>> {
    let corrupt = |seq: Seq, reason: &str| Error::Corrupt {
        stream: stream.to_string(),
        seq,
        reason: reason.to_owned(),
    };
    let mut out: Vec<Recorded> = Vec::new();
    let mut open: Option<Recorded> = None;
    for e in entries {
        let seq = e.seq;
        match e.kind {
            EntryKind::MessageReceived => {
                if open.is_some() {
                    return Err(corrupt(
                        seq,
                        "message starts before the previous one completed",
                    ));
                }
                let mut r = Reader::new(&e.payload);
                let key = r.opt_str()?.map(str::to_owned);
                open = Some(Recorded {
                    seq,
                    key,
                    payload: r.rest().to_vec(),
                    steps: VecDeque::new(),
                    outcome: Outcome::Incomplete,
                    end_seq: seq,
                    failures: 0,
                    last_failure: None,
                });
            }
            EntryKind::Reply | EntryKind::Aborted => {
                let mut m = open
                    .take()
                    .ok_or_else(|| corrupt(seq, "completion outside a message"))?;
                m.outcome = if e.kind == EntryKind::Reply {
                    let mut r = Reader::new(&e.payload);
                    let _key = r.opt_str()?;
                    Outcome::Reply(r.rest().to_vec())
                } else {
                    Outcome::Aborted
                };
                m.end_seq = seq;
                out.push(m);
            }
            EntryKind::Failed | EntryKind::Resumed => {
                let m = open
                    .as_mut()
                    .ok_or_else(|| corrupt(seq, "attempt marker outside a message"))?;
                m.end_seq = seq;
                let mut r = Reader::new(&e.payload);
                let at = r.u64()?;
                if e.kind == EntryKind::Failed {
                    m.failures = m.failures.saturating_add(1);
                    m.last_failure = Some((at, r.str()?.to_owned()));
                } else {
                    m.failures = 0;
                }
            }
            EntryKind::Unknown(_) => return Err(corrupt(seq, "unknown entry kind")),
            _ => {
                let m = open
                    .as_mut()
                    .ok_or_else(|| corrupt(seq, "step outside a message"))?;
                m.end_seq = seq;
                m.steps.push_back(e);
            }
        }
    }
    if let Some(m) = open {
        out.push(m);
    }
    Ok(out)
}

/// Durable execution of one stream (one actor activation). See the module docs for the call
/// order.
pub struct DurableExecution {
    journal: Arc<dyn Journal>,
    stream: StreamId,
    epoch: Epoch,
    options: DurableOptions,
    next_seq: Seq,
    pending: Vec<Entry>,
    snapshot_state: Option<Vec<u8>>,
    snapshot_seq: Seq,
    replay: VecDeque<Recorded>,
    current: Option<Current>,
    replies: ReplyCache,
    messages: u64,
    since_checkpoint: u64,
    last_checkpoint_ms: u64,
    poisoned: Option<String>,
    rng: u64,
    repaired_tail: u64,
    in_flight: Option<InFlight>,
}

impl fmt::Debug for DurableExecution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableExecution")
            .field("stream", &self.stream)
            .field("epoch", &self.epoch)
            .field("next_seq", &self.next_seq)
            .field("replay_left", &self.replay.len())
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl DurableExecution {
    /// Activates the stream: takes a new epoch (fencing any older activation), loads the
    /// latest snapshot and the journal suffix, and truncates a torn or corrupt tail.
    pub async fn activate(
        journal: Arc<dyn Journal>,
        stream: StreamId,
        options: DurableOptions,
    ) -> Result<Self> {
        let epoch = journal.acquire_epoch(&stream).await?;
        let snapshot = match journal.latest_snapshot(&stream).await? {
            Some(s) if s.is_valid() => Some(s),
            Some(torn) => {
                // A torn or partial snapshot write. Without truncation the log still starts at
                // seq 1 and replaying it alone rebuilds the state; once the covered entries
                // are gone nothing can, so that is corruption, never silently skipped.
                let log_is_complete = journal
                    .read(&stream, 1, 1)
                    .await?
                    .first()
                    .is_some_and(|e| e.seq == 1 && e.is_valid());
                if !log_is_complete {
                    return Err(Error::Corrupt {
                        stream: stream.to_string(),
                        seq: torn.seq,
                        reason: "snapshot checksum mismatch and the entries it covers are \
                                 truncated"
                            .into(),
                    });
                }
                tracing::warn!(
                    stream = %stream,
                    snapshot_seq = torn.seq,
                    "ignoring a torn snapshot; replaying the whole journal"
                );
                None
            }
            None => None,
        };
        let (snapshot_seq, envelope) = match snapshot {
            Some(s) => (s.seq, Some(Envelope::decode(&s.data)?)),
            None => (0, None),
        };
        let from = snapshot_seq + 1;
        let mut entries = journal.read(&stream, from, Seq::MAX).await?;
        let mut repaired_tail = 0;
        if let Some(bad) = entries
            .iter()
            .enumerate()
            .position(|(i, e)| e.seq != from + i as u64 || !e.is_valid())
        {
            let e = &entries[bad];
            let gap = e.seq != from + bad as u64 && e.is_valid();
            let later_valid = entries[bad + 1..].iter().any(Entry::is_valid);
            if gap || later_valid {
                // A transactional store never tears in the middle: this is corruption or
                // lost data, which must not be silently dropped.
                return Err(Error::Corrupt {
                    stream: stream.to_string(),
                    seq: from + bad as u64,
                    reason: if gap {
                        format!("missing entry: found seq {} instead", e.seq)
                    } else {
                        "checksum mismatch followed by valid entries".into()
                    },
                });
            }
            repaired_tail = (entries.len() - bad) as u64;
            entries.truncate(bad);
        }
        let expected_next = entries.last().map(|e| e.seq + 1).unwrap_or(from);
        let stored_next = journal.next_seq(&stream).await?;
        if stored_next != expected_next || repaired_tail > 0 {
            if stored_next < expected_next {
                return Err(Error::Corrupt {
                    stream: stream.to_string(),
                    seq: stored_next,
                    reason: "stream head is behind its entries".into(),
                });
            }
            tracing::warn!(
                stream = %stream,
                from_seq = expected_next,
                removed = repaired_tail,
                "truncating torn journal tail"
            );
            journal.truncate_from(&stream, epoch, expected_next).await?;
            repaired_tail = repaired_tail.max(stored_next - expected_next);
        }
        let recorded = parse_messages(&stream, entries)?;
        if let Some(failed) = recorded.last().and_then(failed_of) {
            check_retry_due(&stream, &failed, &options)?;
        }

        let mut replies = ReplyCache {
            cap: options.idempotency_retention,
            ..ReplyCache::default()
        };
        let (messages, snapshot_state) = match envelope {
            Some(env) => {
                for (k, v) in &env.replies {
                    replies.insert(k, v);
                }
                (env.messages, Some(env.state))
            }
            None => (0, None),
        };
        for m in &recorded {
            if let (Some(k), Outcome::Reply(r)) = (&m.key, &m.outcome) {
                replies.insert(k, r);
            }
        }
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(options.clock.now_ms());
        h.write_u64(epoch.0);
        let rng = h.finish();
        let now = options.clock.now_ms();
        Ok(Self {
            journal,
            stream,
            epoch,
            options,
            next_seq: expected_next,
            pending: Vec::new(),
            snapshot_state,
            snapshot_seq,
            replay: recorded.into(),
            current: None,
            replies,
            messages,
            since_checkpoint: 0,
            last_checkpoint_ms: now,
            poisoned: None,
            rng,
            repaired_tail,
            in_flight: None,
        })
    }

    /// The stream.
    pub fn stream(&self) -> &StreamId {
        &self.stream
    }

    /// This activation's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The actor state bytes of the snapshot loaded at activation (restore from these before
    /// replay).
    pub fn snapshot_state(&self) -> Option<&[u8]> {
        self.snapshot_state.as_deref()
    }

    /// Seq covered by the latest snapshot (0 when none).
    pub fn snapshot_seq(&self) -> Seq {
        self.snapshot_seq
    }

    /// How many torn or corrupt tail entries activation removed.
    pub fn repaired_tail(&self) -> u64 {
        self.repaired_tail
    }

    /// Messages left to replay.
    pub fn replay_remaining(&self) -> usize {
        self.replay
            .iter()
            .filter(|m| m.outcome != Outcome::Aborted)
            .count()
    }

    /// The payloads of the messages still to replay, in journal order, aborted ones skipped:
    /// the same messages, in the same order, that [`DurableExecution::next_replay`] returns.
    pub fn pending_replay(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.replay
            .iter()
            .filter(|m| m.outcome != Outcome::Aborted)
            .map(|m| m.payload.as_slice())
    }

    /// Whether the current message is replaying recorded steps.
    pub fn is_replaying(&self) -> bool {
        self.current.as_ref().is_some_and(|c| c.replay.is_some())
    }

    /// The seq the next journal entry will get.
    pub fn next_seq(&self) -> Seq {
        self.next_seq
    }

    /// Messages processed over the actor's lifetime (including before the snapshot).
    pub fn messages_processed(&self) -> u64 {
        self.messages
    }

    /// How many entries the journal currently holds for this stream.
    pub async fn history_len(&self) -> Result<u64> {
        self.journal.history_len(&self.stream).await
    }

    /// The journal this execution writes to.
    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    fn check_usable(&self) -> Result<()> {
        if let Some(p) = &self.poisoned {
            return Err(Error::Poisoned(p.clone()));
        }
        // A pipelined commit that failed: the state this execution serves is ahead of the
        // journal for good.
        if let Some(Err((_, message))) = self.in_flight.as_ref().and_then(Shared::peek) {
            return Err(Error::Poisoned(format!(
                "a pipelined commit failed: {message}"
            )));
        }
        Ok(())
    }

    /// Makes everything so far durable: writes the open message's buffered entries and
    /// waits for every pipelined commit (what a durable handler's outgoing message waits
    /// for, see `DurabilityFacet`'s output barrier).
    pub async fn make_durable(&mut self) -> Result<()> {
        self.check_usable()?;
        self.flush().await?;
        self.wait_durable().await
    }

    /// Waits until every pipelined commit is durable; a failed one poisons the execution.
    pub async fn wait_durable(&mut self) -> Result<()> {
        let Some(in_flight) = self.in_flight.clone() else {
            return Ok(());
        };
        match in_flight.await {
            Ok(()) => {
                self.in_flight = None;
                Ok(())
            }
            Err(e) => Err(self.poison(in_flight_error(e))),
        }
    }

    fn poison(&mut self, e: Error) -> Error {
        if self.poisoned.is_none() {
            self.poisoned = Some(e.to_string());
        }
        e
    }

    /// Takes the next journaled message to replay, skipping aborted ones. Run the handler on
    /// it, then [`DurableExecution::commit`].
    pub fn next_replay(&mut self) -> Result<Option<ReplayMessage>> {
        self.check_usable()?;
        if self.current.is_some() {
            return Err(Error::InvalidState("a message is already open".into()));
        }
        while let Some(m) = self.replay.pop_front() {
            if m.outcome == Outcome::Aborted {
                continue;
            }
            let msg = ReplayMessage {
                seq: m.seq,
                idempotency_key: m.key.clone(),
                payload: m.payload,
                completed: m.outcome != Outcome::Incomplete,
            };
            self.current = Some(Current {
                seq: m.seq,
                key: m.key,
                step: 0,
                replay: Some((m.steps, m.outcome)),
            });
            return Ok(Some(msg));
        }
        Ok(None)
    }

    /// Starts a live message. A seen idempotency key returns [`Begin::Duplicate`] with the
    /// first reply and writes nothing. The `MessageReceived` entry is buffered and becomes
    /// durable before the first side effect runs or at `commit`, whichever is first.
    pub async fn begin_message(&mut self, payload: &[u8], key: Option<&str>) -> Result<Begin> {
        self.check_usable()?;
        if self.current.is_some() {
            return Err(Error::InvalidState("a message is already open".into()));
        }
        if self.replay_remaining() > 0 {
            return Err(Error::InvalidState(
                "replay is not finished; drain next_replay first".into(),
            ));
        }
        self.replay.clear();
        if let Some(k) = key {
            if let Some(r) = self.replies.map.get(k) {
                return Ok(Begin::Duplicate(r.clone()));
            }
        }
        let seq = self.next_seq;
        let body = Writer::default().opt_str(key).raw(payload).finish();
        self.push(EntryKind::MessageReceived, body);
        self.current = Some(Current {
            seq,
            key: key.map(str::to_owned),
            step: 0,
            replay: None,
        });
        Ok(Begin::Started { seq })
    }

    fn push(&mut self, kind: EntryKind, payload: Vec<u8>) {
        let e = Entry::new(self.next_seq, kind, payload);
        self.next_seq += 1;
        self.pending.push(e);
    }

    async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        match self.journal.append(&self.stream, self.epoch, batch).await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.poison(e)),
        }
    }

    /// Advances the step counter and, while replaying, returns the recorded entry for this
    /// step (checking it is of the asked kind and name). `None`: run live.
    fn step(&mut self, kind: EntryKind, what: &str) -> Result<(Seq, u32, Option<Entry>)> {
        self.check_usable()?;
        let cur = self
            .current
            .as_mut()
            .ok_or_else(|| Error::InvalidState("no message is open".into()))?;
        let step = cur.step;
        cur.step += 1;
        let seq = cur.seq;
        let Some((steps, outcome)) = cur.replay.as_mut() else {
            return Ok((seq, step, None));
        };
        match steps.pop_front() {
            Some(e) => {
                let same_name = match kind {
                    EntryKind::SideEffect => Reader::new(&e.payload).str().ok() == Some(what),
                    _ => true,
                };
                if e.kind == kind && same_name {
                    Ok((seq, step, Some(e)))
                } else {
                    let err = Error::JournalMismatch {
                        seq,
                        step,
                        expected: describe(&e),
                        found: describe_ask(kind, what),
                    };
                    Err(self.poison(err))
                }
            }
            None if *outcome == Outcome::Incomplete => {
                cur.replay = None;
                Ok((seq, step, None))
            }
            None => {
                let err = Error::JournalMismatch {
                    seq,
                    step,
                    expected: "end of message".into(),
                    found: describe_ask(kind, what),
                };
                Err(self.poison(err))
            }
        }
    }

    fn idem_key(&self, seq: Seq, step: u32) -> IdempotencyKey {
        IdempotencyKey {
            stream: self.stream.clone(),
            seq,
            step,
        }
    }

    /// Runs a named side effect at most once per journaled result.
    ///
    /// Replay: returns the journaled result without running `f` (fails with
    /// [`Error::JournalMismatch`] if the journal holds something else at this step). Live:
    /// makes the message durable, runs `f` with a deterministic [`IdempotencyKey`], journals
    /// the result and only then returns it. If the process dies between `f` and the journal
    /// write, `f` runs again after recovery with the same key.
    pub async fn side_effect<T, F, Fut>(&mut self, name: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(IdempotencyKey) -> Fut,
        Fut: Future<Output = T>,
    {
        let (seq, step, recorded) = self.step(EntryKind::SideEffect, name)?;
        if let Some(e) = recorded {
            let mut r = Reader::new(&e.payload);
            let _name = r.str()?;
            return Ok(serde_json::from_slice(r.rest())?);
        }
        self.flush().await?;
        let value = f(self.idem_key(seq, step)).await;
        let bytes = serde_json::to_vec(&value)?;
        if let Some(hook) = &self.options.fault_hook {
            hook(FaultPoint::AfterEffectBeforeJournal { seq, step });
        }
        let body = Writer::default().str(name).raw(&bytes).finish();
        self.push(EntryKind::SideEffect, body);
        self.flush().await?;
        Ok(value)
    }

    /// The current time in ms since the Unix epoch, journaled (replay returns the recorded
    /// value).
    pub fn now(&mut self) -> Result<u64> {
        let (_, _, recorded) = self.step(EntryKind::ClockRead, "")?;
        if let Some(e) = recorded {
            return Reader::new(&e.payload).u64();
        }
        let v = self.options.clock.now_ms();
        let body = Writer::default().u64(v).finish();
        self.push(EntryKind::ClockRead, body);
        Ok(v)
    }

    /// A random `u64`, journaled (replay returns the recorded value).
    pub fn random_u64(&mut self) -> Result<u64> {
        let (_, _, recorded) = self.step(EntryKind::RandomValue, "")?;
        if let Some(e) = recorded {
            return Reader::new(&e.payload).u64();
        }
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let v = z ^ (z >> 31);
        let body = Writer::default().u64(v).finish();
        self.push(EntryKind::RandomValue, body);
        Ok(v)
    }

    /// Persists a domain event (event sourcing). Replay checks that the handler produces the
    /// same event bytes as recorded.
    pub fn persist<E: Serialize>(&mut self, event: &E) -> Result<()> {
        let bytes = serde_json::to_vec(event)?;
        let (seq, step, recorded) = self.step(EntryKind::Event, "")?;
        if let Some(e) = recorded {
            if e.payload != bytes {
                let err = Error::JournalMismatch {
                    seq,
                    step,
                    expected: format!("event {}", preview(&e.payload)),
                    found: format!("event {}", preview(&bytes)),
                };
                return Err(self.poison(err));
            }
            return Ok(());
        }
        self.push(EntryKind::Event, bytes);
        Ok(())
    }

    /// Completes the open message. Live: journals the reply (with everything buffered) and
    /// returns once it is durable; only then may the reply or ack be released. Replay:
    /// checks every recorded step was asked for and returns the recorded reply.
    pub async fn commit(&mut self, reply: Vec<u8>) -> Result<Vec<u8>> {
        let (seq, key, reply) = match self.close_message(reply)? {
            Closed::Replayed(recorded) => return Ok(recorded),
            Closed::Live { seq, key, reply } => (seq, key, reply),
        };
        self.flush().await?;
        if let Some(hook) = &self.options.fault_hook {
            hook(FaultPoint::AfterCommitBeforeReply { seq });
        }
        Ok(self.finish_live(key, reply))
    }

    /// [`DurableExecution::commit`] without waiting: queues the message's entries (so the
    /// commits of consecutive messages coalesce) and returns the reply with the future of
    /// its durability. The caller must hold the reply (and anything else the message makes
    /// visible) until that future resolves `Ok`; the execution goes on taking messages
    /// meanwhile. If it fails, so does every later commit, and the execution is poisoned:
    /// the actor's state is ahead of the journal and must be rebuilt from it. Replay returns
    /// the recorded reply with a finished future.
    pub async fn commit_pipelined(&mut self, reply: Vec<u8>) -> Result<(Vec<u8>, Committing)> {
        let (seq, key, reply) = match self.close_message(reply)? {
            Closed::Replayed(recorded) => {
                return Ok((recorded, Box::pin(std::future::ready(Ok(())))))
            }
            Closed::Live { seq, key, reply } => (seq, key, reply),
        };
        let batch = std::mem::take(&mut self.pending);
        let queued = match self
            .journal
            .start_append(&self.stream, self.epoch, batch)
            .await
        {
            Ok(queued) => queued,
            Err(e) => return Err(self.poison(e)),
        };
        let hook = self.options.fault_hook.clone();
        let durable: InFlight = async move {
            queued
                .await
                .map_err(|e| (e.is_retryable(), e.to_string()))?;
            if let Some(hook) = hook {
                hook(FaultPoint::AfterCommitBeforeReply { seq });
            }
            Ok(())
        }
        .boxed()
        .shared();
        self.in_flight = Some(durable.clone());
        let reply = self.finish_live(key, reply);
        Ok((reply, Box::pin(durable.map(|r| r.map_err(in_flight_error)))))
    }

    /// Closes the open message: checks a replayed one against the journal, or queues the
    /// reply entry of a live one.
    fn close_message(&mut self, reply: Vec<u8>) -> Result<Closed> {
        self.check_usable()?;
        let cur = self
            .current
            .take()
            .ok_or_else(|| Error::InvalidState("no message is open".into()))?;
        if let Some((mut steps, outcome)) = cur.replay {
            if let Some(e) = steps.pop_front() {
                let err = Error::JournalMismatch {
                    seq: cur.seq,
                    step: cur.step,
                    expected: describe(&e),
                    found: "commit".into(),
                };
                return Err(self.poison(err));
            }
            match outcome {
                Outcome::Reply(recorded) => {
                    if let Some(k) = &cur.key {
                        self.replies.insert(k, &recorded);
                    }
                    self.messages += 1;
                    self.since_checkpoint += 1;
                    return Ok(Closed::Replayed(recorded));
                }
                Outcome::Aborted | Outcome::Incomplete => {}
            }
        }
        let body = Writer::default()
            .opt_str(cur.key.as_deref())
            .raw(&reply)
            .finish();
        self.push(EntryKind::Reply, body);
        Ok(Closed::Live {
            seq: cur.seq,
            key: cur.key,
            reply,
        })
    }

    /// Books a live message whose entries are written (or queued): remembers its reply
    /// under its idempotency key and counts it.
    fn finish_live(&mut self, key: Option<String>, reply: Vec<u8>) -> Vec<u8> {
        if let Some(k) = &key {
            self.replies.insert(k, &reply);
        }
        self.messages += 1;
        self.since_checkpoint += 1;
        reply
    }

    /// Abandons the open message after a handler failure and poisons the execution (the
    /// actor's in-memory state may be half-updated, so it must be reactivated).
    ///
    /// With retries on ([`RetryPolicy::max_attempts`] > 0) the message, the steps it
    /// recorded and a `Failed` entry carrying `reason` are written: the message stays open
    /// and the next activation retries it (see [`RetryPolicy`]). With retries off, if part
    /// of the message was already journaled, an `Aborted` entry is written so replay skips
    /// it.
    pub async fn abort(&mut self, reason: &str) -> Result<()> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        // Earlier pipelined commits first: the marker goes after them (and nothing is
        // written if one of them failed).
        if self.poisoned.is_none() && self.wait_durable().await.is_ok() {
            let retrying = self.options.retry.max_attempts > 0;
            let failed_body = || {
                Writer::default()
                    .u64(self.options.clock.now_ms())
                    .str(reason)
                    .finish()
            };
            match &cur.replay {
                // Live (a new message, or a retried one past its recorded steps), or a retry
                // that failed before the end of its recorded steps: one more failed attempt.
                None | Some((_, Outcome::Incomplete)) if retrying => {
                    let body = failed_body();
                    self.push(EntryKind::Failed, body);
                    self.flush().await?;
                    tracing::warn!(
                        stream = %self.stream,
                        seq = cur.seq,
                        error = reason,
                        "durable message failed; journaled for a retry"
                    );
                }
                None => {
                    let flushed_any = self.pending.first().is_none_or(|e| e.seq != cur.seq);
                    if flushed_any {
                        let body = Writer::default().str(reason).finish();
                        self.push(EntryKind::Aborted, body);
                        self.flush().await?;
                    } else {
                        self.next_seq = cur.seq;
                        self.pending.clear();
                    }
                }
                // A completed message that fails on replay: nothing to record.
                Some(_) => {}
            }
        }
        let _ = self.poison(Error::InvalidState(format!("message aborted: {reason}")));
        Ok(())
    }

    /// Whether the checkpoint policy asks for a checkpoint now.
    pub fn should_checkpoint(&self) -> bool {
        if self.since_checkpoint == 0 || self.current.is_some() || self.replay_remaining() > 0 {
            return false;
        }
        let p = &self.options.checkpoint;
        p.every_messages.is_some_and(|n| self.since_checkpoint >= n)
            || p.every.is_some_and(|d| {
                self.options
                    .clock
                    .now_ms()
                    .saturating_sub(self.last_checkpoint_ms)
                    >= d.as_millis() as u64
            })
    }

    /// Saves a snapshot of `state` (the actor's encoded state after the last committed
    /// message) plus the engine's idempotency table, then truncates covered entries if the
    /// policy says so. Must be called between messages.
    pub async fn checkpoint(&mut self, state: Vec<u8>) -> Result<CheckpointReport> {
        self.check_usable()?;
        // The snapshot covers every message so far: each must be durable first.
        self.wait_durable().await?;
        if self.current.is_some() || !self.pending.is_empty() || self.replay_remaining() > 0 {
            return Err(Error::InvalidState(
                "checkpoint must be taken between messages, after replay".into(),
            ));
        }
        let seq = self.next_seq - 1;
        let env = Envelope {
            messages: self.messages,
            replies: self
                .replies
                .order
                .iter()
                .filter_map(|k| self.replies.map.get(k).map(|v| (k.clone(), v.clone())))
                .collect(),
            state,
        };
        if let Err(e) = self
            .journal
            .save_snapshot(&self.stream, self.epoch, seq, env.encode())
            .await
        {
            return Err(self.poison(e));
        }
        if let Some(hook) = &self.options.fault_hook {
            hook(FaultPoint::MidCheckpoint { seq });
        }
        let truncated = if self.options.checkpoint.truncate {
            self.journal.truncate_before(&self.stream, seq + 1).await?
        } else {
            0
        };
        self.snapshot_seq = seq;
        self.since_checkpoint = 0;
        self.last_checkpoint_ms = self.options.clock.now_ms();
        Ok(CheckpointReport { seq, truncated })
    }
}

fn describe_ask(kind: EntryKind, what: &str) -> String {
    match kind {
        EntryKind::SideEffect => format!("side effect {what:?}"),
        k => k.name().to_owned(),
    }
}

fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    s.chars().take(80).collect()
}

fn failed_of(m: &Recorded) -> Option<FailedMessage> {
    if m.outcome != Outcome::Incomplete || m.failures == 0 {
        return None;
    }
    let (at, error) = m.last_failure.clone().unwrap_or_default();
    Some(FailedMessage {
        seq: m.seq,
        idempotency_key: m.key.clone(),
        attempts: m.failures,
        last_error: error,
        last_failed_at_ms: at,
    })
}

/// Refuses an activation while the stream's failed message is paused or backing off.
fn check_retry_due(
    stream: &StreamId,
    failed: &FailedMessage,
    options: &DurableOptions,
) -> Result<()> {
    match failed.refusal(stream, &options.retry, options.clock.now_ms()) {
        Some(refused) => Err(refused),
        None => Ok(()),
    }
}

/// The stream's messages after its latest snapshot (valid entries only), and the seq the
/// next entry gets if the stored tail is intact (`None`: a torn tail an activation must
/// repair first).
async fn scan(journal: &dyn Journal, stream: &StreamId) -> Result<(Vec<Recorded>, Option<Seq>)> {
    let from = match journal.latest_snapshot(stream).await? {
        Some(s) if s.is_valid() => s.seq + 1,
        _ => 1,
    };
    let mut entries = journal.read(stream, from, Seq::MAX).await?;
    let first = entries.first().map_or(from, |e| e.seq);
    let intact = entries
        .iter()
        .enumerate()
        .position(|(i, e)| e.seq != first + i as u64 || !e.is_valid());
    if let Some(bad) = intact {
        entries.truncate(bad);
        return Ok((parse_messages(stream, entries)?, None));
    }
    let expected_next = entries.last().map_or(from, |e| e.seq + 1);
    let stored_next = journal.next_seq(stream).await?;
    let next = (stored_next == expected_next).then_some(expected_next);
    Ok((parse_messages(stream, entries)?, next))
}

/// The stream's failed message (retrying or paused), if its last message failed. Reads
/// only: no epoch is taken, a running activation is not disturbed.
pub async fn failed_message(
    journal: &dyn Journal,
    stream: &StreamId,
) -> Result<Option<FailedMessage>> {
    let (recorded, _) = scan(journal, stream).await?;
    Ok(recorded.last().and_then(failed_of))
}

/// Resumes or abandons the stream's failed message (an operator's decision for a paused
/// stream; it also cuts a backoff short). Takes a new epoch, so an activation still
/// running on the stream is fenced; returns the message as it was. The next activation
/// retries it ([`Resolution::Resume`], with a fresh attempt budget) or skips it
/// ([`Resolution::Abandon`]). No failed message: [`Error::NoFailedMessage`].
pub async fn resolve_failed(
    journal: &dyn Journal,
    stream: &StreamId,
    resolution: Resolution,
    clock: &dyn Clock,
) -> Result<FailedMessage> {
    let none = || Error::NoFailedMessage {
        stream: stream.to_string(),
    };
    // Checked before taking an epoch, so a healthy activation is never fenced by mistake.
    let before = failed_message(journal, stream).await?.ok_or_else(none)?;
    let epoch = journal.acquire_epoch(stream).await?;
    let (recorded, next) = scan(journal, stream).await?;
    let failed = recorded.last().and_then(failed_of).ok_or_else(none)?;
    if failed.seq != before.seq {
        return Err(none());
    }
    let next = next.ok_or_else(|| {
        Error::InvalidState(format!(
            "stream {stream} has a torn journal tail; an activation attempt repairs it, then retry"
        ))
    })?;
    let (kind, body) = match resolution {
        Resolution::Resume => (
            EntryKind::Resumed,
            Writer::default().u64(clock.now_ms()).finish(),
        ),
        Resolution::Abandon { reason } => {
            (EntryKind::Aborted, Writer::default().str(&reason).finish())
        }
    };
    journal
        .append(stream, epoch, vec![Entry::new(next, kind, body)])
        .await?;
    tracing::info!(stream = %stream, seq = failed.seq, kind = kind.name(), "failed durable message resolved");
    Ok(failed)
}
