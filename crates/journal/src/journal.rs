//! The `Journal` trait: per-actor streams with fenced, batched appends and snapshots.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;

use crate::{Entry, Epoch, Result, Seq, Snapshot, StreamId};

/// An append that is queued but maybe not durable yet: resolves once it is (or failed).
/// Returned by [`Journal::start_append`].
pub type Committing = Pin<Box<dyn Future<Output = Result<()>> + Send + 'static>>;

/// Durable, per-actor, append-only streams of [`Entry`] with fencing epochs and snapshots.
///
/// Implementations: [`crate::MemoryJournal`], `SqliteJournal` (feature `sqlite`) and
/// `PostgresJournal` (feature `postgres`). All of them pass [`crate::conformance`].
///
/// Contract:
/// - `acquire_epoch` returns a strictly greater epoch on every call for a stream, across
///   processes sharing the backend.
/// - `append` is atomic (all entries or none), requires `epoch` to be the stream's current
///   epoch ([`crate::Error::Fenced`] otherwise) and the entries' seqs to continue the stream
///   contiguously from [`Journal::next_seq`] ([`crate::Error::SequenceConflict`] otherwise).
///   When it returns `Ok`, the entries are durable (for SQLite/PostgreSQL: committed).
/// - Once `acquire_epoch` has returned epoch `e`, no append or snapshot with an epoch below
///   `e` succeeds.
/// - Entries are returned exactly as appended, checksum included; the journal does not
///   verify checksums on read (the recovering reader does, so it can repair a torn tail).
#[async_trait]
pub trait Journal: Send + Sync + 'static {
    /// Takes a new, strictly greater epoch for the stream (creating the stream if needed).
    async fn acquire_epoch(&self, stream: &StreamId) -> Result<Epoch>;

    /// Appends a batch of entries atomically, fenced by `epoch`.
    async fn append(&self, stream: &StreamId, epoch: Epoch, entries: Vec<Entry>) -> Result<()>;

    /// Starts an append: returns once the batch is queued, ordered after every append
    /// started before it on this journal and before every append started after it; the
    /// returned future resolves when the batch is durable, with what [`Journal::append`]
    /// would have returned. An append queued after one that fails cannot succeed (its seqs
    /// no longer continue the stream), so waiting on the last one waits on all of them.
    ///
    /// Backends with a writer queue (SQLite, PostgreSQL) return at once, so the appends of
    /// consecutive messages coalesce into one commit (the output gate's pipelining, see
    /// [`crate::DurabilityFacet`]). The default appends and returns a finished future.
    async fn start_append(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        entries: Vec<Entry>,
    ) -> Result<Committing> {
        self.append(stream, epoch, entries).await?;
        Ok(Box::pin(std::future::ready(Ok(()))))
    }

    /// Reads entries with `from_seq <= seq <= to_seq`, in seq order.
    async fn read(&self, stream: &StreamId, from_seq: Seq, to_seq: Seq) -> Result<Vec<Entry>>;

    /// The seq the next appended entry must carry (1 for a new stream).
    async fn next_seq(&self, stream: &StreamId) -> Result<Seq>;

    /// Stores the stream's snapshot covering entries up to `seq`, fenced by `epoch`.
    /// Replaces the previous snapshot.
    async fn save_snapshot(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        seq: Seq,
        data: Vec<u8>,
    ) -> Result<()>;

    /// The latest snapshot, if any (checksum not verified).
    async fn latest_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>>;

    /// Removes entries with a seq below `seq` that are covered by the latest snapshot
    /// (entries after the snapshot are never removed by this call). Returns how many were
    /// removed. [`Journal::next_seq`] is unchanged.
    async fn truncate_before(&self, stream: &StreamId, seq: Seq) -> Result<u64>;

    /// Removes entries with a seq at or above `seq` (repairing a torn tail), fenced by
    /// `epoch`, and sets [`Journal::next_seq`] to `seq`. Returns how many were removed.
    async fn truncate_from(&self, stream: &StreamId, epoch: Epoch, seq: Seq) -> Result<u64>;

    /// How many entries the stream currently holds.
    async fn history_len(&self, stream: &StreamId) -> Result<u64>;
}

/// Checks that `entries` continue a stream whose next seq is `next`; returns the new next seq.
pub(crate) fn check_contiguous(stream: &StreamId, next: Seq, entries: &[Entry]) -> Result<Seq> {
    let mut expected = next;
    for e in entries {
        if e.seq != expected {
            return Err(crate::Error::SequenceConflict {
                stream: stream.to_string(),
                expected,
                found: e.seq,
            });
        }
        expected += 1;
    }
    Ok(expected)
}
