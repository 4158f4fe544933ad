//! The conformance suite every [`Journal`] backend must pass.
//!
//! Each case takes a factory that returns a handle on the backend under test; calling the
//! factory twice must give two handles on the *same* storage (a second process, in effect).
//! Cases use fresh, uniquely named streams, so they never assume an empty backend.
//! Cases return `Err(description)` instead of panicking; [`run_all`] runs them in order.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use plexspaces_journal::{conformance, Journal, MemoryJournal};
//! let mem = MemoryJournal::new();
//! let factory = move || {
//!     let j: Arc<dyn Journal> = Arc::new(mem.clone());
//!     async move { Ok(j) }
//! };
//! conformance::run_all(&factory).await.unwrap();
//! # }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Entry, EntryKind, Epoch, Error, Journal, Result, StreamId};

/// Outcome of one conformance case.
pub type Outcome = std::result::Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err(format!($($arg)+));
        }
    };
}

fn ok<T>(r: Result<T>, what: &str) -> std::result::Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A stream id unique to this process run.
pub fn unique_stream(prefix: &str) -> StreamId {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    StreamId::new(
        "conformance",
        prefix,
        &format!("{prefix}-{}-{nanos}-{n}", std::process::id()),
    )
}

fn entries(from: u64, n: u64) -> Vec<Entry> {
    (from..from + n)
        .map(|s| Entry::new(s, EntryKind::Event, format!("payload-{s}").into_bytes()))
        .collect()
}

/// Epochs strictly increase, also across handles.
pub async fn epochs_increase<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let a = ok(factory().await, "factory")?;
    let b = ok(factory().await, "factory")?;
    let s = unique_stream("epochs");
    let e1 = ok(a.acquire_epoch(&s).await, "acquire")?;
    let e2 = ok(b.acquire_epoch(&s).await, "acquire")?;
    let e3 = ok(a.acquire_epoch(&s).await, "acquire")?;
    ensure!(
        e1 < e2 && e2 < e3,
        "epochs not strictly increasing: {e1} {e2} {e3}"
    );
    let other = unique_stream("epochs");
    let o1 = ok(a.acquire_epoch(&other).await, "acquire")?;
    ensure!(o1 >= Epoch(1), "first epoch must be >= 1, got {o1}");
    Ok(())
}

/// Batched appends are read back exactly, ranges are inclusive, lengths are right.
pub async fn append_and_read<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let j = ok(factory().await, "factory")?;
    let s = unique_stream("append");
    ensure!(
        ok(j.next_seq(&s).await, "next_seq")? == 1,
        "new stream must start at seq 1"
    );
    ensure!(
        ok(j.history_len(&s).await, "len")? == 0,
        "new stream must be empty"
    );
    ensure!(
        ok(j.read(&s, 1, u64::MAX).await, "read")?.is_empty(),
        "new stream must read empty"
    );
    let e = ok(j.acquire_epoch(&s).await, "acquire")?;
    ok(j.append(&s, e, entries(1, 3)).await, "append 1..3")?;
    ok(j.append(&s, e, entries(4, 1)).await, "append 4")?;
    ok(j.append(&s, e, entries(5, 60)).await, "append 5..64")?;
    ok(j.append(&s, e, Vec::new()).await, "empty append")?;
    let all = ok(j.read(&s, 1, u64::MAX).await, "read all")?;
    ensure!(
        all == entries(1, 64),
        "read back differs from appended entries"
    );
    ensure!(
        all.iter().all(Entry::is_valid),
        "checksums must survive storage"
    );
    let mid = ok(j.read(&s, 3, 5).await, "read 3..=5")?;
    ensure!(
        mid == entries(3, 3),
        "range read must be inclusive: got {} entries",
        mid.len()
    );
    ensure!(
        ok(j.read(&s, 70, 80).await, "read past end")?.is_empty(),
        "read past end"
    );
    ensure!(
        ok(j.read(&s, 5, 4).await, "read reversed")?.is_empty(),
        "reversed range"
    );
    ensure!(
        ok(j.next_seq(&s).await, "next_seq")? == 65,
        "next_seq after 64 entries"
    );
    ensure!(
        ok(j.history_len(&s).await, "len")? == 64,
        "history_len after 64 entries"
    );
    let j2 = ok(factory().await, "factory")?;
    ensure!(
        ok(j2.read(&s, 1, u64::MAX).await, "read")? == all,
        "second handle sees the entries"
    );
    Ok(())
}

/// An append from an older epoch fails with `Fenced` and writes nothing.
pub async fn fencing<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let a = ok(factory().await, "factory")?;
    let b = ok(factory().await, "factory")?;
    let s = unique_stream("fencing");
    let old = ok(a.acquire_epoch(&s).await, "acquire")?;
    ok(a.append(&s, old, entries(1, 2)).await, "append")?;
    let new = ok(b.acquire_epoch(&s).await, "acquire")?;
    match a.append(&s, old, entries(3, 1)).await {
        Err(Error::Fenced { epoch, current, .. }) => {
            ensure!(
                epoch == old.0 && current == new.0,
                "fenced error names the epochs: {epoch} {current}"
            );
        }
        other => return Err(format!("stale append must be fenced, got {other:?}")),
    }
    match a.save_snapshot(&s, old, 2, b"x".to_vec()).await {
        Err(e) if e.is_fenced() => {}
        other => return Err(format!("stale snapshot must be fenced, got {other:?}")),
    }
    match a.truncate_from(&s, old, 1).await {
        Err(e) if e.is_fenced() => {}
        other => return Err(format!("stale truncate_from must be fenced, got {other:?}")),
    }
    ensure!(
        ok(a.history_len(&s).await, "len")? == 2,
        "fenced calls must not write"
    );
    ok(b.append(&s, new, entries(3, 1)).await, "new epoch appends")?;
    ensure!(
        ok(a.next_seq(&s).await, "next_seq")? == 4,
        "next_seq after new epoch append"
    );
    match a.append(&s, Epoch(new.0 + 5), entries(4, 1)).await {
        Err(Error::InvalidArgument(_)) | Err(Error::Fenced { .. }) => {}
        other => {
            return Err(format!(
                "an unacquired epoch must be rejected, got {other:?}"
            ))
        }
    }
    Ok(())
}

/// Appends must continue the stream; a gap or overlap fails with `SequenceConflict`.
pub async fn sequence_conflicts<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let j = ok(factory().await, "factory")?;
    let s = unique_stream("seq");
    let e = ok(j.acquire_epoch(&s).await, "acquire")?;
    ok(j.append(&s, e, entries(1, 2)).await, "append")?;
    for (from, n) in [(2, 1), (4, 1), (1, 3)] {
        match j.append(&s, e, entries(from, n)).await {
            Err(Error::SequenceConflict { expected: 3, .. }) => {}
            other => return Err(format!("append at {from} must conflict, got {other:?}")),
        }
    }
    let mut bad = entries(3, 3);
    bad[2].seq = 9;
    ensure!(
        j.append(&s, e, bad).await.is_err(),
        "non-contiguous batch must fail"
    );
    ensure!(
        ok(j.history_len(&s).await, "len")? == 2,
        "failed appends must write nothing"
    );
    Ok(())
}

/// Snapshots replace each other; truncation removes only covered entries.
pub async fn snapshots_and_truncation<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let j = ok(factory().await, "factory")?;
    let s = unique_stream("snap");
    let e = ok(j.acquire_epoch(&s).await, "acquire")?;
    ensure!(
        ok(j.latest_snapshot(&s).await, "snapshot")?.is_none(),
        "no snapshot yet"
    );
    ok(j.append(&s, e, entries(1, 10)).await, "append")?;
    ensure!(
        ok(j.truncate_before(&s, 5).await, "truncate")? == 0,
        "no truncation without a snapshot"
    );
    ok(
        j.save_snapshot(&s, e, 3, b"three".to_vec()).await,
        "snapshot 3",
    )?;
    ok(
        j.save_snapshot(&s, e, 6, b"six".to_vec()).await,
        "snapshot 6",
    )?;
    let snap = ok(j.latest_snapshot(&s).await, "snapshot")?.ok_or("snapshot missing")?;
    ensure!(
        snap.seq == 6 && snap.data == b"six" && snap.epoch == e,
        "latest snapshot wrong: {snap:?}"
    );
    ensure!(snap.is_valid(), "snapshot checksum must survive storage");
    let removed = ok(j.truncate_before(&s, 100).await, "truncate")?;
    ensure!(
        removed == 6,
        "truncate must stop at the snapshot: removed {removed}"
    );
    ensure!(ok(j.history_len(&s).await, "len")? == 4, "4 entries left");
    let rest = ok(j.read(&s, 1, u64::MAX).await, "read")?;
    ensure!(rest == entries(7, 4), "entries after the snapshot are kept");
    ensure!(
        ok(j.next_seq(&s).await, "next_seq")? == 11,
        "next_seq unchanged by truncation"
    );
    ok(
        j.append(&s, e, entries(11, 1)).await,
        "append after truncation",
    )?;
    Ok(())
}

/// `truncate_from` removes the tail and rewinds `next_seq` (torn tail repair).
pub async fn tail_truncation<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let j = ok(factory().await, "factory")?;
    let s = unique_stream("tail");
    let e = ok(j.acquire_epoch(&s).await, "acquire")?;
    ok(j.append(&s, e, entries(1, 5)).await, "append")?;
    ensure!(
        ok(j.truncate_from(&s, e, 4).await, "truncate_from")? == 2,
        "two entries removed"
    );
    ensure!(
        ok(j.next_seq(&s).await, "next_seq")? == 4,
        "next_seq rewound"
    );
    ok(j.append(&s, e, entries(4, 2)).await, "append after repair")?;
    ensure!(
        ok(j.read(&s, 1, u64::MAX).await, "read")? == entries(1, 5),
        "rewritten tail"
    );
    Ok(())
}

/// Streams of different tenants and namespaces are independent.
pub async fn tenant_isolation<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let j = ok(factory().await, "factory")?;
    let base = unique_stream("tenant");
    let a = StreamId::new("tenant-a", &base.namespace, &base.actor_id);
    let b = StreamId::new("tenant-b", &base.namespace, &base.actor_id);
    let c = StreamId::new("tenant-a", "other-ns", &base.actor_id);
    let ea = ok(j.acquire_epoch(&a).await, "acquire")?;
    ok(j.append(&a, ea, entries(1, 3)).await, "append")?;
    for other in [&b, &c] {
        ensure!(
            ok(j.history_len(other).await, "len")? == 0,
            "{other} must not see {a}'s entries"
        );
        let eo = ok(j.acquire_epoch(other).await, "acquire")?;
        ok(
            j.append(other, eo, entries(1, 1)).await,
            "append to other stream",
        )?;
    }
    ok(
        j.append(&a, ea, entries(4, 1)).await,
        "a is not fenced by other streams",
    )?;
    ensure!(ok(j.history_len(&a).await, "len")? == 4, "a has 4 entries");
    Ok(())
}

/// Many streams appending concurrently all succeed, in order (exercises group commit).
pub async fn concurrent_streams<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let j = ok(factory().await, "factory")?;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let j = j.clone();
        let s = unique_stream("concurrent");
        tasks.push(tokio::spawn(async move {
            let e = j.acquire_epoch(&s).await?;
            for i in 0..20 {
                j.append(&s, e, entries(1 + i * 2, 2)).await?;
            }
            let all = j.read(&s, 1, u64::MAX).await?;
            Ok::<_, Error>(all == entries(1, 40))
        }));
    }
    for t in tasks {
        match t.await {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err("a concurrent stream read back wrong entries".into()),
            Ok(Err(e)) => return Err(format!("concurrent append failed: {e}")),
            Err(e) => return Err(format!("task failed: {e}")),
        }
    }
    Ok(())
}

/// Appends racing for the same position of one stream: exactly one wins, the others get
/// `SequenceConflict`, and pipelined appends that continue each other all succeed.
pub async fn racing_appends<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    let j = ok(factory().await, "factory")?;
    let s = unique_stream("race");
    let e = ok(j.acquire_epoch(&s).await, "acquire")?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (j, s) = (j.clone(), s.clone());
        tasks.push(tokio::spawn(
            async move { j.append(&s, e, entries(1, 2)).await },
        ));
    }
    let mut wins = 0;
    for t in tasks {
        match t.await {
            Ok(Ok(())) => wins += 1,
            Ok(Err(Error::SequenceConflict { .. })) => {}
            Ok(Err(other)) => return Err(format!("racing append failed oddly: {other}")),
            Err(err) => return Err(format!("task failed: {err}")),
        }
    }
    ensure!(wins == 1, "exactly one racing append must win, {wins} did");
    ensure!(
        ok(j.read(&s, 1, u64::MAX).await, "read")? == entries(1, 2),
        "winner's entries"
    );
    // pipelined appends continuing each other (sent without waiting) all land, in order
    let futs: Vec<_> = (0..8u64)
        .map(|k| {
            let (j, s) = (j.clone(), s.clone());
            async move { j.append(&s, e, entries(3 + k, 1)).await }
        })
        .collect();
    let mut handles = Vec::new();
    for f in futs {
        handles.push(tokio::spawn(f));
        tokio::task::yield_now().await;
    }
    let mut landed = 0;
    for h in handles {
        if let Ok(Ok(())) = h.await {
            landed += 1;
        }
    }
    let all = ok(j.read(&s, 1, u64::MAX).await, "read")?;
    ensure!(
        all == entries(1, 2 + landed),
        "pipelined appends keep the stream contiguous"
    );
    Ok(())
}

/// Runs every case; returns the first failure, prefixed with the case name.
pub async fn run_all<F, Fut>(factory: &F) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Arc<dyn Journal>>>,
{
    macro_rules! case {
        ($name:ident) => {
            $name(factory)
                .await
                .map_err(|e| format!("{}: {e}", stringify!($name)))?;
        };
    }
    case!(epochs_increase);
    case!(append_and_read);
    case!(fencing);
    case!(sequence_conflicts);
    case!(snapshots_and_truncation);
    case!(tail_truncation);
    case!(tenant_isolation);
    case!(concurrent_streams);
    case!(racing_appends);
    Ok(())
}
