//! Event sourcing: persist events, fold them into state, rebuild past states (time travel).
//!
//! A handler calls [`persist_and_apply`] (or [`DurableExecution::persist`] then
//! [`EventSourced::apply`]); the events land in the message's journal entries and become
//! durable with its commit. [`state_at`] rebuilds the state after every message that
//! completed at or before a given seq: it folds the events of completed messages only
//! (events of aborted or unfinished messages never count). Snapshots of event-sourced
//! state must be the `serde_json` encoding of the state (use [`checkpoint_state`]), so
//! [`state_at`] can start from a snapshot when older history was truncated.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::{parse_messages, Envelope, Outcome};
use crate::{DurableExecution, Entry, Error, Journal, Result, Seq, StreamId};

/// State derived by folding events.
pub trait EventSourced: Default + Serialize + DeserializeOwned + Send {
    /// The event type.
    type Event: Serialize + DeserializeOwned + Send;
    /// Applies one event (must be deterministic and infallible).
    fn apply(&mut self, event: &Self::Event);
}

/// Persists `event` in the open message and applies it to `state`.
pub fn persist_and_apply<S: EventSourced>(
    exec: &mut DurableExecution,
    state: &mut S,
    event: S::Event,
) -> Result<()> {
    exec.persist(&event)?;
    state.apply(&event);
    Ok(())
}

/// Checkpoints an event-sourced state (encoded with `serde_json`).
pub async fn checkpoint_state<S: EventSourced>(
    exec: &mut DurableExecution,
    state: &S,
) -> Result<crate::CheckpointReport> {
    exec.checkpoint(serde_json::to_vec(state)?).await
}

/// Restores an event-sourced state from [`DurableExecution::snapshot_state`] (or the default).
pub fn restore_state<S: EventSourced>(exec: &DurableExecution) -> Result<S> {
    match exec.snapshot_state() {
        Some(b) => Ok(serde_json::from_slice(b)?),
        None => Ok(S::default()),
    }
}

fn verified(stream: &StreamId, entries: Vec<Entry>) -> Result<Vec<Entry>> {
    // A torn tail is repaired by activation; here we only read what is valid.
    let end = entries
        .iter()
        .position(|e| !e.is_valid())
        .unwrap_or(entries.len());
    let mut entries = entries;
    entries.truncate(end);
    let _ = stream;
    Ok(entries)
}

/// The events of messages completed in `(after_seq, to_seq]`, with the seq of each event.
pub async fn events<E: DeserializeOwned>(
    journal: &dyn Journal,
    stream: &StreamId,
    after_seq: Seq,
    to_seq: Seq,
) -> Result<Vec<(Seq, E)>> {
    let entries = verified(stream, journal.read(stream, after_seq + 1, to_seq).await?)?;
    let mut out = Vec::new();
    for m in parse_messages(stream, entries)? {
        if !matches!(m.outcome, Outcome::Reply(_)) {
            continue;
        }
        for e in m.steps {
            if e.kind == crate::EntryKind::Event {
                out.push((e.seq, serde_json::from_slice(&e.payload)?));
            }
        }
    }
    Ok(out)
}

/// Rebuilds the state after every message completed at or before `seq` (time travel).
///
/// Folds from the start of the stream when its history is intact, otherwise from the latest
/// snapshot if it is not newer than `seq`; fails with [`Error::HistoryTruncated`] when the
/// needed entries were truncated.
pub async fn state_at<S: EventSourced>(
    journal: &dyn Journal,
    stream: &StreamId,
    seq: Seq,
) -> Result<S> {
    let first = journal.read(stream, 1, 1).await?;
    let intact = first.first().is_some_and(|e| e.seq == 1) || journal.next_seq(stream).await? == 1;
    let (mut state, from) = if intact {
        (S::default(), 0)
    } else {
        let snap = journal.latest_snapshot(stream).await?;
        match snap {
            Some(s) if s.seq <= seq => {
                let s = s.verified(stream)?;
                let env = Envelope::decode(&s.data)?;
                (serde_json::from_slice::<S>(&env.state)?, s.seq)
            }
            other => {
                let first_available = match journal.read(stream, 1, Seq::MAX).await?.first() {
                    Some(e) => e.seq,
                    None => other.map(|s| s.seq + 1).unwrap_or(1),
                };
                return Err(Error::HistoryTruncated {
                    seq,
                    first_available,
                });
            }
        }
    };
    for (_, e) in events::<S::Event>(journal, stream, from, seq).await? {
        state.apply(&e);
    }
    Ok(state)
}
