//! Group commit shared by the SQL backends: one writer task drains a queue of pending
//! writes into one transaction (one fsync) and answers each through a oneshot after commit.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use crate::{Entry, Epoch, Error, Result, Seq, StreamId};

/// A write waiting for the writer task.
#[derive(Debug)]
pub(crate) enum Op {
    Acquire {
        stream: StreamId,
    },
    Append {
        stream: StreamId,
        epoch: Epoch,
        entries: Vec<Entry>,
    },
    Snapshot {
        stream: StreamId,
        epoch: Epoch,
        seq: Seq,
        data: Vec<u8>,
        checksum: u32,
    },
    TruncateBefore {
        stream: StreamId,
        seq: Seq,
    },
    TruncateFrom {
        stream: StreamId,
        epoch: Epoch,
        seq: Seq,
    },
}

/// What a write returns.
#[derive(Debug)]
pub(crate) enum Val {
    Epoch(Epoch),
    Unit,
    Count(u64),
}

pub(crate) type Request = (Op, oneshot::Sender<Result<Val>>);

/// One append inside a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AppendReq<'a> {
    pub(crate) stream: &'a StreamId,
    pub(crate) epoch: Epoch,
    pub(crate) entries: &'a [Entry],
}

/// The validated plan of a run of appends: per-append results, the rows to insert and the
/// new head of every touched stream.
#[derive(Debug)]
pub(crate) struct AppendPlan<'a> {
    pub(crate) results: Vec<Result<Val>>,
    pub(crate) rows: Vec<(&'a StreamId, &'a Entry)>,
    pub(crate) heads: Vec<(&'a StreamId, u64)>,
}

/// Validates appends in order against the streams' `(epoch, next_seq)` as read (and locked)
/// inside the transaction. Refused appends write nothing; accepted ones advance the head.
pub(crate) fn plan_appends<'a>(
    appends: &[AppendReq<'a>],
    stored: &HashMap<StreamId, (u64, u64)>,
) -> AppendPlan<'a> {
    let mut heads: HashMap<&'a StreamId, (u64, u64)> = HashMap::new();
    let mut order: Vec<&'a StreamId> = Vec::new();
    let mut results = Vec::with_capacity(appends.len());
    let mut rows = Vec::new();
    for a in appends {
        let cur = heads
            .get(a.stream)
            .copied()
            .or_else(|| stored.get(a.stream).copied());
        let r = match cur {
            Some((e, _)) if a.epoch.0 < e => Err(Error::Fenced {
                stream: a.stream.to_string(),
                epoch: a.epoch.0,
                current: e,
            }),
            Some((e, next)) if a.epoch.0 == e => {
                match crate::journal::check_contiguous(a.stream, next, a.entries) {
                    Ok(new_next) => {
                        if new_next != next {
                            if !heads.contains_key(a.stream) {
                                order.push(a.stream);
                            }
                            heads.insert(a.stream, (e, new_next));
                            rows.extend(a.entries.iter().map(|x| (a.stream, x)));
                        }
                        Ok(Val::Unit)
                    }
                    Err(err) => Err(err),
                }
            }
            _ => Err(Error::InvalidArgument(format!(
                "epoch {} was never acquired for stream {}",
                a.epoch, a.stream
            ))),
        };
        results.push(r);
    }
    let heads = order
        .into_iter()
        .filter_map(|s| heads.get(s).map(|h| (s, h.1)))
        .collect();
    AppendPlan {
        results,
        rows,
        heads,
    }
}

/// Why an append or snapshot with `epoch` is refused, given the stream's stored
/// `(epoch, next_seq)`: `None` if the epoch is the current one.
pub(crate) fn epoch_refusal(s: &StreamId, epoch: Epoch, cur: Option<(u64, u64)>) -> Option<Error> {
    match cur {
        Some((e, _)) if e == epoch.0 => None,
        Some((e, _)) if epoch.0 < e => Some(Error::Fenced {
            stream: s.to_string(),
            epoch: epoch.0,
            current: e,
        }),
        _ => Some(Error::InvalidArgument(format!(
            "epoch {epoch} was never acquired for stream {s}"
        ))),
    }
}

fn refusal(a: &AppendReq<'_>, head: Option<(u64, u64)>) -> Result<Val> {
    if let Some(err) = epoch_refusal(a.stream, a.epoch, head) {
        return Err(err);
    }
    match (head, a.entries.first()) {
        (Some((_, next)), Some(first)) => Err(Error::SequenceConflict {
            stream: a.stream.to_string(),
            expected: next,
            found: first.seq,
        }),
        _ => Ok(Val::Unit),
    }
}

/// Applies a run of appends inside the open transaction with a constant number of
/// statements, whatever the number of appends.
///
/// Common case (each stream once, all accepted): one conditional multi-row `UPDATE`
/// advances every stream whose epoch and head match (this is the fencing check and takes
/// the row locks) and one multi-row `INSERT` writes the entries. If the `UPDATE` advanced
/// fewer streams than asked (a fenced or conflicting append), it is rolled back to a
/// savepoint and the general path runs: read heads, validate in order, insert, update heads.
pub(crate) async fn apply_appends<W: BatchWriter + ?Sized>(
    w: &mut W,
    appends: &[AppendReq<'_>],
) -> Result<Vec<Result<Val>>, sqlx::Error> {
    let mut seen = HashSet::new();
    if appends.iter().all(|a| seen.insert(a.stream)) {
        let candidates: Vec<_> = appends
            .iter()
            .filter_map(|a| {
                let first = a.entries.first()?.seq;
                Some((a.stream, a.epoch.0, first, first + a.entries.len() as u64))
            })
            .collect();
        w.execute_raw("SAVEPOINT journal_appends").await?;
        let advanced = if candidates.is_empty() {
            0
        } else {
            w.advance_heads(&candidates).await?
        };
        if advanced == candidates.len() as u64 {
            w.execute_raw("RELEASE SAVEPOINT journal_appends").await?;
            let rows: Vec<_> = appends
                .iter()
                .flat_map(|a| a.entries.iter().map(move |e| (a.stream, e)))
                .collect();
            w.insert_rows(&rows).await?;
            // only empty appends (a pure fencing check) are left to look at
            let empty: Vec<&StreamId> = appends
                .iter()
                .filter(|a| a.entries.is_empty())
                .map(|a| a.stream)
                .collect();
            let heads = if empty.is_empty() {
                HashMap::new()
            } else {
                w.load_heads(&empty).await?
            };
            return Ok(appends
                .iter()
                .map(|a| {
                    if a.entries.is_empty() {
                        refusal(a, heads.get(a.stream).copied())
                    } else {
                        Ok(Val::Unit)
                    }
                })
                .collect());
        }
        // some append is refused: undo and take the general path to tell which and why
        w.execute_raw("ROLLBACK TO SAVEPOINT journal_appends")
            .await?;
        w.execute_raw("RELEASE SAVEPOINT journal_appends").await?;
    }
    let mut distinct: Vec<&StreamId> = Vec::new();
    let mut seen = HashSet::new();
    for a in appends {
        if seen.insert(a.stream) {
            distinct.push(a.stream);
        }
    }
    distinct.sort();
    let stored = w.load_heads(&distinct).await?;
    let plan = plan_appends(appends, &stored);
    w.insert_rows(&plan.rows).await?;
    w.set_heads(&plan.heads).await?;
    Ok(plan.results)
}

/// One backend's transactional writer.
#[async_trait]
pub(crate) trait BatchWriter: Send + 'static {
    async fn begin(&mut self) -> Result<(), sqlx::Error>;
    async fn commit(&mut self) -> Result<(), sqlx::Error>;
    async fn rollback(&mut self) -> Result<(), sqlx::Error>;
    /// Applies one op inside the open transaction. The outer error aborts the transaction;
    /// the inner one is a logical refusal (fenced, conflict) that wrote nothing.
    async fn apply(&mut self, op: &Op) -> Result<Result<Val>, sqlx::Error>;
    /// Reads (and, where the backend needs it, locks) the `(epoch, next_seq)` of streams.
    async fn load_heads(
        &mut self,
        streams: &[&StreamId],
    ) -> Result<HashMap<StreamId, (u64, u64)>, sqlx::Error>;
    /// Inserts entry rows with multi-row statements.
    async fn insert_rows(&mut self, rows: &[(&StreamId, &Entry)]) -> Result<(), sqlx::Error>;
    /// Sets `next_seq` of streams.
    async fn set_heads(&mut self, heads: &[(&StreamId, u64)]) -> Result<(), sqlx::Error>;
    /// For each `(stream, epoch, first, next)`: sets `next_seq = next` where the stream's
    /// epoch is `epoch` and its `next_seq` is `first`; returns how many streams it advanced.
    async fn advance_heads(
        &mut self,
        candidates: &[(&StreamId, u64, u64, u64)],
    ) -> Result<u64, sqlx::Error>;
    /// Runs a statement without results (savepoints).
    async fn execute_raw(&mut self, sql: &str) -> Result<(), sqlx::Error>;
    /// Called after a failed transaction (reconnect if the connection broke).
    async fn recover(&mut self) {}
}

/// Checks a batch of entries is internally contiguous.
pub(crate) fn check_batch(stream: &StreamId, entries: &[Entry]) -> Result<()> {
    if let Some(first) = entries.first() {
        crate::journal::check_contiguous(stream, first.seq, entries)?;
        if first.seq == 0 || first.seq > i64::MAX as u64 / 2 {
            return Err(Error::InvalidArgument(format!(
                "seq {} out of range",
                first.seq
            )));
        }
    }
    Ok(())
}

pub(crate) async fn send(tx: &mpsc::Sender<Request>, op: Op) -> Result<Val> {
    let (reply, rx) = oneshot::channel();
    tx.send((op, reply)).await.map_err(|_| Error::Closed)?;
    rx.await.map_err(|_| Error::Closed)?
}

/// Queues `op` (waiting for room in the queue only) and returns the future of its result.
pub(crate) async fn start(
    tx: &mpsc::Sender<Request>,
    op: Op,
) -> Result<impl std::future::Future<Output = Result<Val>> + Send + 'static> {
    let (reply, rx) = oneshot::channel();
    tx.send((op, reply)).await.map_err(|_| Error::Closed)?;
    Ok(async move { rx.await.map_err(|_| Error::Closed)? })
}

async fn run_one<W: BatchWriter>(w: &mut W, op: &Op) -> Result<Val> {
    w.begin().await?;
    let applied = match as_append(op) {
        Some(a) => apply_appends(w, &[a])
            .await
            .map(|mut v| v.pop().unwrap_or(Err(Error::Closed))),
        None => w.apply(op).await,
    };
    match applied {
        Ok(r) => {
            if r.is_ok() {
                w.commit().await?;
            } else {
                w.rollback().await?;
            }
            r
        }
        Err(e) => {
            let _ = w.rollback().await;
            w.recover().await;
            Err(e.into())
        }
    }
}

fn as_append(op: &Op) -> Option<AppendReq<'_>> {
    match op {
        Op::Append {
            stream,
            epoch,
            entries,
        } => Some(AppendReq {
            stream,
            epoch: *epoch,
            entries,
        }),
        _ => None,
    }
}

async fn apply_all<W: BatchWriter>(
    w: &mut W,
    batch: &[Request],
) -> Result<Vec<Result<Val>>, sqlx::Error> {
    let mut results = Vec::with_capacity(batch.len());
    let mut i = 0;
    while i < batch.len() {
        let run: Vec<AppendReq<'_>> = batch[i..]
            .iter()
            .map_while(|(op, _)| as_append(op))
            .collect();
        if run.is_empty() {
            results.push(w.apply(&batch[i].0).await?);
            i += 1;
        } else {
            i += run.len();
            results.extend(apply_appends(w, &run).await?);
        }
    }
    Ok(results)
}

async fn run_batch<W: BatchWriter>(w: &mut W, batch: Vec<Request>) {
    let outcome: Result<Vec<Result<Val>>, sqlx::Error> = async {
        w.begin().await?;
        let results = apply_all(w, &batch).await?;
        w.commit().await?;
        Ok(results)
    }
    .await;
    match outcome {
        Ok(results) => {
            for ((_, reply), r) in batch.into_iter().zip(results) {
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            tracing::debug!(error = %e, "group commit failed, retrying ops one by one");
            let _ = w.rollback().await;
            w.recover().await;
            for (op, reply) in batch {
                let r = run_one(w, &op).await;
                let _ = reply.send(r);
            }
        }
    }
}

/// How much group commit is grouping: writes versus transactions that carried them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    transactions: AtomicU64,
    writes: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self) -> GroupCommitStats {
        GroupCommitStats {
            transactions: self.transactions.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }
}

/// Group-commit counters of a SQL journal since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches the writer task committed (one transaction, one fsync each).
    pub transactions: u64,
    /// Write requests (appends, epochs, snapshots, truncations) those batches carried.
    pub writes: u64,
}

/// The writer task: runs until every sender is dropped.
pub(crate) async fn run_writer<W: BatchWriter>(
    mut w: W,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
    counters: Arc<Counters>,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch.max(1) {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        counters
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        run_batch(&mut w, batch).await;
    }
}
