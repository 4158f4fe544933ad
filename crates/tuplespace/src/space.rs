//! The space engine: blocking, arrival order, leases, notify and transactions on top of a
//! [`Backend`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{Stream, StreamExt};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::backend::{memory::MemoryBackend, Backend, External};
use crate::{
    Clock, Entry, Error, Limits, NewTuple, Result, SpaceId, Template, Timestamp, TokioClock, Tuple,
    TupleId,
};

/// Settings of a [`Spaces`] engine.
#[derive(Debug, Clone)]
pub struct Config {
    /// limits checked on every tuple and template
    pub limits: Limits,
    /// events buffered per [`Subscription`] before new ones are dropped and counted
    pub subscriber_capacity: usize,
    /// the clock leases are measured with
    pub clock: Arc<dyn Clock>,
    /// Blocked callers also look again this often. `None` (the default) relies on
    /// wake-ups alone; set it when processes share a backend that cannot announce their
    /// writes to each other (SQLite), so that a waiter sees another process's write within
    /// this interval.
    pub recheck_interval: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            subscriber_capacity: 1024,
            clock: Arc::new(TokioClock::new()),
            recheck_interval: None,
        }
    }
}

/// The tuple-space engine over one backend: hands out [`TupleSpace`] handles and owns the
/// waiters of every space. Cheap to clone. Use one engine per backend in a process.
#[derive(Clone)]
pub struct Spaces {
    inner: Arc<Inner>,
}

impl fmt::Debug for Spaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spaces")
            .field("backend", &self.inner.backend.name())
            .finish_non_exhaustive()
    }
}

struct Inner {
    backend: Arc<dyn Backend>,
    config: Config,
    next_seq: AtomicU64,
    state: Mutex<HashMap<SpaceId, SpaceState>>,
    watcher: Mutex<Option<JoinHandle<()>>>,
    /// tuples taken under a take lease, not yet confirmed, released or expired
    pending: Mutex<HashMap<u64, PendingTake>>,
    next_lease: AtomicU64,
}

struct PendingTake {
    space: SpaceId,
    entry: Entry,
}

/// Lease ids start from the wall clock so that ids of an earlier process are not reused.
fn first_lease_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(h) = self.watcher.get_mut().take() {
            h.abort();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Take,
}

struct Waiter {
    template: Template,
    kind: Kind,
    /// a tuple written while a reader waited
    delivered: Option<Tuple>,
    /// a tuple set aside for this taker, to be claimed by id
    ticket: Option<Entry>,
    /// a taker claiming its ticket gets no other until the claim is done
    claiming: bool,
    /// sleeping until woken (not busy with an attempt)
    parked: bool,
    notify: Arc<Notify>,
}

struct Subscriber {
    template: Template,
    tx: mpsc::Sender<WriteEvent>,
    missed: Arc<AtomicU64>,
}

#[derive(Default)]
struct SpaceState {
    /// blocked callers by arrival sequence
    waiters: BTreeMap<u64, Waiter>,
    /// tuples set aside for a taker: id -> the taker's sequence
    reserved: HashMap<TupleId, u64>,
    subscribers: Vec<Subscriber>,
}

impl SpaceState {
    fn is_idle(&self) -> bool {
        self.waiters.is_empty() && self.reserved.is_empty() && self.subscribers.is_empty()
    }

    /// Offer a live entry: every waiting reader gets a copy; the first taker in arrival
    /// order without a ticket gets it set aside, unless it already is.
    fn offer(&mut self, e: &Entry, readers: bool) {
        let mut ticketed = self.reserved.contains_key(&e.id);
        for (seq, w) in self.waiters.iter_mut() {
            if !w.template.matches(&e.tuple) {
                continue;
            }
            match w.kind {
                Kind::Read if readers && w.delivered.is_none() => {
                    w.delivered = Some(e.tuple.clone());
                    w.notify.notify_one();
                }
                Kind::Take if !ticketed && w.ticket.is_none() && !w.claiming => {
                    w.ticket = Some(e.clone());
                    self.reserved.insert(e.id, *seq);
                    ticketed = true;
                    w.notify.notify_one();
                }
                _ => {}
            }
        }
    }

    fn publish(&mut self, e: &Entry) {
        self.subscribers.retain(|s| {
            if s.tx.is_closed() {
                return false;
            }
            if s.template.matches(&e.tuple) {
                let ev = WriteEvent {
                    id: e.id,
                    tuple: e.tuple.clone(),
                };
                match s.tx.try_send(ev) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        s.missed.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }
}

impl Spaces {
    /// Start an engine over `backend`. Must be called inside a tokio runtime when the
    /// backend reports writes from other processes (a task follows them).
    pub async fn start(backend: Arc<dyn Backend>, config: Config) -> Result<Spaces> {
        let watch = backend.watch().await?;
        let spaces = Spaces {
            inner: Arc::new(Inner {
                backend,
                config,
                next_seq: AtomicU64::new(0),
                state: Mutex::new(HashMap::new()),
                watcher: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                next_lease: AtomicU64::new(first_lease_id()),
            }),
        };
        if let Some(mut stream) = watch {
            let weak: Weak<Inner> = Arc::downgrade(&spaces.inner);
            let task = tokio::spawn(async move {
                while let Some(ev) = stream.next().await {
                    let Some(inner) = weak.upgrade() else { break };
                    Spaces { inner }.on_external(ev).await;
                }
            });
            *spaces.inner.watcher.lock() = Some(task);
        }
        Ok(spaces)
    }

    /// An engine over a fresh in-memory backend with default settings.
    pub fn memory() -> Spaces {
        Self::memory_with(Config::default())
    }

    /// An engine over a fresh in-memory backend.
    pub fn memory_with(config: Config) -> Spaces {
        Spaces {
            inner: Arc::new(Inner {
                backend: Arc::new(MemoryBackend::new()),
                config,
                next_seq: AtomicU64::new(0),
                state: Mutex::new(HashMap::new()),
                watcher: Mutex::new(None),
                pending: Mutex::new(HashMap::new()),
                next_lease: AtomicU64::new(first_lease_id()),
            }),
        }
    }

    /// A handle on one space.
    pub fn space(&self, id: SpaceId) -> TupleSpace {
        TupleSpace {
            spaces: self.clone(),
            id: Arc::new(id),
        }
    }

    /// The backend's name.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    fn now(&self) -> Timestamp {
        self.inner.config.clock.now()
    }

    async fn on_external(&self, ev: External) {
        match ev {
            External::Written { space, ids } => {
                if !self.inner.state.lock().contains_key(&space) {
                    return;
                }
                let mut entries = Vec::new();
                for id in ids {
                    match self.inner.backend.get(&space, id, self.now()).await {
                        Ok(Some(e)) => entries.push(e),
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(%error, %space, "cannot fetch tuple announced by another process");
                        }
                    }
                }
                self.dispatch(&space, &entries, true);
            }
            External::Resync => {
                for ss in self.inner.state.lock().values() {
                    for w in ss.waiters.values() {
                        w.notify.notify_one();
                    }
                }
            }
        }
    }

    /// Hand new or restored entries to waiters (and, if `fresh`, to subscribers).
    fn dispatch(&self, space: &SpaceId, entries: &[Entry], fresh: bool) {
        let now = self.now();
        let mut st = self.inner.state.lock();
        let Some(ss) = st.get_mut(space) else { return };
        for e in entries.iter().filter(|e| !e.is_expired(now)) {
            if fresh {
                ss.publish(e);
            }
            ss.offer(e, true);
        }
        if ss.is_idle() {
            st.remove(space);
        }
    }

    async fn restore(&self, space: &SpaceId, entries: Vec<Entry>) -> Result<()> {
        let now = self.now();
        let live: Vec<Entry> = entries.into_iter().filter(|e| !e.is_expired(now)).collect();
        if live.is_empty() {
            return Ok(());
        }
        self.inner.backend.restore(space, &live).await?;
        self.dispatch(space, &live, false);
        Ok(())
    }

    /// Run a claim so that what it takes is either returned or put back, even if the
    /// caller's future is dropped halfway.
    async fn claim<F>(&self, space: &Arc<SpaceId>, op: F) -> Result<Vec<Entry>>
    where
        F: FnOnce(Arc<dyn Backend>, Arc<SpaceId>) -> BoxFuture<'static, Result<Vec<Entry>>>
            + Send
            + 'static,
    {
        let backend = self.inner.backend.clone();
        if backend.cancel_safe() {
            return op(backend, space.clone()).await;
        }
        let (tx, rx) = oneshot::channel();
        let this = self.clone();
        let space = space.clone();
        tokio::spawn(async move {
            let claimed = op(backend, space.clone()).await.map(|entries| Claimed {
                entries,
                home: Some((this, space)),
            });
            // A caller gone before this send, or after it but before it took the entries
            // out of the channel, drops the `Claimed`, which puts them back.
            let _ = tx.send(claimed);
        });
        Ok(rx.await.map_err(|_| Error::Closed)??.into_entries())
    }

    /// Run a future to completion even if the caller goes away (for backends whose calls
    /// are not cancel safe).
    async fn detached<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        if self.inner.backend.cancel_safe() {
            return f.await;
        }
        tokio::spawn(f).await.map_err(|_| Error::Closed)?
    }

    fn register(&self, space: &SpaceId, template: &Template, kind: Kind) -> WaitGuard {
        let seq = self.inner.next_seq.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        self.inner
            .state
            .lock()
            .entry(space.clone())
            .or_default()
            .waiters
            .insert(
                seq,
                Waiter {
                    template: template.clone(),
                    kind,
                    delivered: None,
                    ticket: None,
                    claiming: false,
                    parked: false,
                    notify: notify.clone(),
                },
            );
        WaitGuard {
            spaces: self.clone(),
            space: space.clone(),
            seq,
            notify,
        }
    }

    fn reserved(&self, space: &SpaceId) -> HashSet<TupleId> {
        self.inner
            .state
            .lock()
            .get(space)
            .map(|ss| ss.reserved.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// Entries a claim took for a caller. Dropped before the caller took them out (the
/// caller went away), they are put back into their space.
struct Claimed {
    entries: Vec<Entry>,
    home: Option<(Spaces, Arc<SpaceId>)>,
}

impl Claimed {
    fn into_entries(mut self) -> Vec<Entry> {
        self.home = None;
        std::mem::take(&mut self.entries)
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let Some((spaces, space)) = self.home.take() else {
            return;
        };
        let entries = std::mem::take(&mut self.entries);
        if entries.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = spaces.restore(&space, entries).await {
                        tracing::error!(%error, %space, "cannot put back tuples claimed for a caller that went away");
                    }
                });
            }
            Err(_) => {
                tracing::error!(%space, lost = entries.len(), "cannot put back tuples claimed for a caller that went away: no runtime");
            }
        }
    }
}

/// Removes a waiter when its caller finishes or goes away, passing on a tuple set aside for
/// it that it did not claim.
struct WaitGuard {
    spaces: Spaces,
    space: SpaceId,
    seq: u64,
    notify: Arc<Notify>,
}

impl WaitGuard {
    fn take_delivered(&self) -> Option<Tuple> {
        let mut st = self.spaces.inner.state.lock();
        st.get_mut(&self.space)?
            .waiters
            .get_mut(&self.seq)?
            .delivered
            .take()
    }

    /// The ticket, if any; the tuple stays reserved for this waiter until [`Self::release`].
    fn take_ticket(&self) -> Option<Entry> {
        let mut st = self.spaces.inner.state.lock();
        let w = st.get_mut(&self.space)?.waiters.get_mut(&self.seq)?;
        let t = w.ticket.take()?;
        w.claiming = true;
        Some(t)
    }

    fn release(&self, id: TupleId) {
        let mut st = self.spaces.inner.state.lock();
        if let Some(ss) = st.get_mut(&self.space) {
            if ss.reserved.get(&id) == Some(&self.seq) {
                ss.reserved.remove(&id);
            }
            if let Some(w) = ss.waiters.get_mut(&self.seq) {
                w.claiming = false;
            }
        }
    }

    fn set_parked(&self, parked: bool) {
        let mut st = self.spaces.inner.state.lock();
        if let Some(w) = st
            .get_mut(&self.space)
            .and_then(|ss| ss.waiters.get_mut(&self.seq))
        {
            w.parked = parked;
        }
    }

    /// Wait for a wake-up; true if the deadline passed first.
    async fn wait(&self, deadline: Option<Instant>) -> bool {
        self.set_parked(true);
        let timed_out = self.sleep(deadline).await;
        self.set_parked(false);
        timed_out
    }

    async fn sleep(&self, deadline: Option<Instant>) -> bool {
        if let Some(every) = self.spaces.inner.config.recheck_interval {
            let recheck = Instant::now() + every.max(Duration::from_millis(1));
            if deadline.is_none_or(|d| recheck < d) {
                // wake to look again; not a timeout
                tokio::select! {
                    _ = self.notify.notified() => {}
                    _ = tokio::time::sleep_until(recheck) => {}
                }
                return false;
            }
        }
        match deadline {
            Some(d) => {
                tokio::select! {
                    _ = self.notify.notified() => false,
                    _ = tokio::time::sleep_until(d) => true,
                }
            }
            None => {
                self.notify.notified().await;
                false
            }
        }
    }
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut st = self.spaces.inner.state.lock();
        let Some(ss) = st.get_mut(&self.space) else {
            return;
        };
        let unclaimed = ss.waiters.remove(&self.seq).and_then(|w| w.ticket);
        let seq = self.seq;
        ss.reserved.retain(|_, s| *s != seq);
        if let Some(e) = unclaimed {
            ss.offer(&e, false);
        }
        if ss.is_idle() {
            st.remove(&self.space);
        }
    }
}

/// A write to a space, as seen by a [`Subscription`].
#[derive(Debug, Clone, PartialEq)]
pub struct WriteEvent {
    /// the new tuple's id
    pub id: TupleId,
    /// the new tuple
    pub tuple: Tuple,
}

/// A stream of writes matching a template, from [`TupleSpace::subscribe`]. Events come in
/// the order the engine saw the writes. A subscriber that falls more than
/// [`Config::subscriber_capacity`] events behind misses the newest ones; [`Self::missed`]
/// counts them.
pub struct Subscription {
    rx: mpsc::Receiver<WriteEvent>,
    missed: Arc<AtomicU64>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("missed", &self.missed())
            .finish()
    }
}

impl Subscription {
    /// How many events were dropped because this subscriber was too far behind.
    pub fn missed(&self) -> u64 {
        self.missed.load(Ordering::Relaxed)
    }
}

impl Stream for Subscription {
    type Item = WriteEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<WriteEvent>> {
        self.rx.poll_recv(cx)
    }
}

/// A handle on one space. Cheap to clone.
#[derive(Clone)]
pub struct TupleSpace {
    spaces: Spaces,
    id: Arc<SpaceId>,
}

impl fmt::Debug for TupleSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TupleSpace")
            .field("id", &self.id)
            .field("backend", &self.spaces.backend_name())
            .finish()
    }
}

fn deadline(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

fn ttl_deadline(now: Timestamp, ttl: Duration) -> Result<Timestamp> {
    if ttl.is_zero() {
        return Err(Error::InvalidArgument(
            "lease time to live must be positive".into(),
        ));
    }
    Ok(now.saturating_add(ttl))
}

impl TupleSpace {
    /// The space's id.
    pub fn id(&self) -> &SpaceId {
        &self.id
    }

    /// The engine this space belongs to.
    pub fn spaces(&self) -> &Spaces {
        &self.spaces
    }

    fn limits(&self) -> &Limits {
        &self.spaces.inner.config.limits
    }

    fn backend(&self) -> &Arc<dyn Backend> {
        &self.spaces.inner.backend
    }

    fn now(&self) -> Timestamp {
        self.spaces.now()
    }

    /// Write a tuple that lives until taken (Linda `out`).
    pub async fn write(&self, tuple: Tuple) -> Result<TupleId> {
        let ids = self
            .write_entries(vec![NewTuple {
                tuple,
                expires_at: None,
            }])
            .await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("backend returned no id for a write".into()))
    }

    /// Write a tuple that expires after `ttl` unless renewed.
    pub async fn write_with_lease(&self, tuple: Tuple, ttl: Duration) -> Result<Lease> {
        let expires_at = ttl_deadline(self.now(), ttl)?;
        let ids = self
            .write_entries(vec![NewTuple {
                tuple,
                expires_at: Some(expires_at),
            }])
            .await?;
        let id = ids
            .into_iter()
            .next()
            .ok_or_else(|| Error::Corrupt("backend returned no id for a write".into()))?;
        Ok(Lease {
            space: self.clone(),
            id,
            expires_at,
        })
    }

    /// Write several tuples atomically.
    pub async fn write_all(&self, tuples: Vec<Tuple>) -> Result<Vec<TupleId>> {
        self.write_entries(
            tuples
                .into_iter()
                .map(|tuple| NewTuple {
                    tuple,
                    expires_at: None,
                })
                .collect(),
        )
        .await
    }

    async fn write_entries(&self, tuples: Vec<NewTuple>) -> Result<Vec<TupleId>> {
        for t in &tuples {
            self.limits().check_tuple(&t.tuple)?;
        }
        if tuples.is_empty() {
            return Ok(Vec::new());
        }
        let this = self.clone();
        self.spaces
            .detached(async move {
                let ids = this.backend().insert(&this.id, &tuples).await?;
                let entries: Vec<Entry> = ids
                    .iter()
                    .zip(tuples)
                    .map(|(id, t)| Entry {
                        id: *id,
                        tuple: t.tuple,
                        expires_at: t.expires_at,
                    })
                    .collect();
                this.spaces.dispatch(&this.id, &entries, true);
                Ok(ids)
            })
            .await
    }

    /// Set the lease of a live tuple to `ttl` from now, or to forever with `None`.
    pub async fn renew(&self, id: TupleId, ttl: Option<Duration>) -> Result<Option<Timestamp>> {
        let now = self.now();
        let expires_at = ttl.map(|t| ttl_deadline(now, t)).transpose()?;
        if self.backend().renew(&self.id, id, expires_at, now).await? {
            Ok(expires_at)
        } else {
            Err(Error::NotFound(id))
        }
    }

    /// A copy of a matching tuple, waiting up to `timeout` for one (Linda `rd`).
    pub async fn read(&self, template: &Template, timeout: Duration) -> Result<Tuple> {
        self.limits().check_template(template)?;
        if let Some(e) = self
            .backend()
            .find(&self.id, template, self.now(), 1)
            .await?
            .pop()
        {
            return Ok(e.tuple);
        }
        let deadline = deadline(timeout);
        let guard = self.spaces.register(&self.id, template, Kind::Read);
        loop {
            if let Some(t) = guard.take_delivered() {
                return Ok(t);
            }
            if let Some(e) = self
                .backend()
                .find(&self.id, template, self.now(), 1)
                .await?
                .pop()
            {
                return Ok(e.tuple);
            }
            if guard.wait(deadline).await {
                return Err(Error::Timeout(timeout));
            }
        }
    }

    /// Remove and return a matching tuple, waiting up to `timeout` for one (Linda `in`).
    /// Among callers waiting for the same tuple, exactly one gets it, in arrival order.
    pub async fn take(&self, template: &Template, timeout: Duration) -> Result<Tuple> {
        Ok(self.take_entry(template, timeout).await?.tuple)
    }

    async fn take_entry(&self, template: &Template, timeout: Duration) -> Result<Entry> {
        self.limits().check_template(template)?;
        // fast path: no queueing when a tuple is already there
        if let Some(e) = self.claim_one(template).await? {
            return Ok(e);
        }
        let deadline = deadline(timeout);
        let guard = self.spaces.register(&self.id, template, Kind::Take);
        loop {
            if let Some(ticket) = guard.take_ticket() {
                let id = ticket.id;
                let now = self.now();
                let got = self
                    .spaces
                    .claim(&self.id, move |b, s| {
                        Box::pin(async move {
                            Ok(b.take_by_id(&s, id, now).await?.into_iter().collect())
                        })
                    })
                    .await;
                guard.release(id);
                if let Some(e) = got?.pop() {
                    return Ok(e);
                }
            }
            if let Some(e) = self.claim_one(template).await? {
                return Ok(e);
            }
            if guard.wait(deadline).await {
                return Err(Error::Timeout(timeout));
            }
        }
    }

    async fn claim_one(&self, template: &Template) -> Result<Option<Entry>> {
        let exclude = self.spaces.reserved(&self.id);
        let now = self.now();
        let template = template.clone();
        Ok(self
            .spaces
            .claim(&self.id, move |b, s| {
                Box::pin(async move {
                    Ok(b.take(&s, &template, now, &exclude)
                        .await?
                        .into_iter()
                        .collect())
                })
            })
            .await?
            .pop())
    }

    /// Remove a matching tuple under a take lease, waiting up to `timeout` for one.
    ///
    /// The tuple leaves the space as with [`TupleSpace::take`], but it is only gone for good
    /// once [`TupleSpace::confirm`] is called with the returned lease id within `lease`. If
    /// the consumer dies first (or calls [`TupleSpace::release`]), the tuple goes back into
    /// the space with its id and its own expiry when the lease runs out, and a blocked taker
    /// gets it. The lease is measured on tokio's monotonic clock, so a wall-clock jump does
    /// not shorten it.
    ///
    /// Not durable across the engine itself: a tuple whose take lease is pending when this
    /// process dies is lost, as with an open [`Transaction`].
    pub async fn take_leased(
        &self,
        template: &Template,
        timeout: Duration,
        lease: Duration,
    ) -> Result<TakeLease> {
        if lease.is_zero() {
            return Err(Error::InvalidArgument(
                "take lease duration must be positive".into(),
            ));
        }
        let entry = self.take_entry(template, timeout).await?;
        let inner = &self.spaces.inner;
        let id = inner.next_lease.fetch_add(1, Ordering::Relaxed);
        let taken = TakeLease {
            lease: id,
            id: entry.id,
            tuple: entry.tuple.clone(),
            lease_duration: lease,
        };
        inner.pending.lock().insert(
            id,
            PendingTake {
                space: (*self.id).clone(),
                entry,
            },
        );
        let weak = Arc::downgrade(inner);
        tokio::spawn(async move {
            tokio::time::sleep(lease).await;
            let Some(inner) = weak.upgrade() else { return };
            let spaces = Spaces { inner };
            let expired = spaces.inner.pending.lock().remove(&id);
            if let Some(p) = expired {
                tracing::debug!(lease = id, space = %p.space, "take lease expired: tuple returned");
                if let Err(error) = spaces.restore(&p.space, vec![p.entry]).await {
                    tracing::error!(%error, lease = id, "cannot return the tuple of an expired take lease");
                }
            }
        });
        Ok(taken)
    }

    fn settle(&self, lease: u64) -> Result<Entry> {
        let mut pending = self.spaces.inner.pending.lock();
        match pending.get(&lease) {
            Some(p) if p.space == *self.id => pending
                .remove(&lease)
                .map(|p| p.entry)
                .ok_or(Error::LeaseNotFound(lease)),
            _ => Err(Error::LeaseNotFound(lease)),
        }
    }

    /// Make the take under `lease` final; returns the tuple. Fails with
    /// [`Error::LeaseNotFound`] if the lease expired (the tuple is back in the space), was
    /// settled already, or belongs to another space.
    pub async fn confirm(&self, lease: u64) -> Result<Tuple> {
        Ok(self.settle(lease)?.tuple)
    }

    /// Put the tuple taken under `lease` back now (same id and expiry).
    pub async fn release(&self, lease: u64) -> Result<()> {
        let entry = self.settle(lease)?;
        self.spaces.restore(&self.id, vec![entry]).await
    }

    /// How many take leases of this space are pending.
    pub fn pending_takes(&self) -> usize {
        self.spaces
            .inner
            .pending
            .lock()
            .values()
            .filter(|p| p.space == *self.id)
            .count()
    }

    /// A copy of a matching tuple if one exists now (Linda `rdp`).
    pub async fn read_if_exists(&self, template: &Template) -> Result<Option<Tuple>> {
        self.limits().check_template(template)?;
        Ok(self
            .backend()
            .find(&self.id, template, self.now(), 1)
            .await?
            .pop()
            .map(|e| e.tuple))
    }

    /// Remove and return a matching tuple if one exists now (Linda `inp`). Tuples already
    /// promised to a blocked taker are not taken.
    pub async fn take_if_exists(&self, template: &Template) -> Result<Option<Tuple>> {
        self.limits().check_template(template)?;
        Ok(self.claim_one(template).await?.map(|e| e.tuple))
    }

    /// Copies of every matching tuple, oldest first.
    pub async fn read_all(&self, template: &Template) -> Result<Vec<Tuple>> {
        self.limits().check_template(template)?;
        Ok(self
            .backend()
            .find(&self.id, template, self.now(), usize::MAX)
            .await?
            .into_iter()
            .map(|e| e.tuple)
            .collect())
    }

    /// Remove and return every matching tuple, oldest first (except those promised to a
    /// blocked taker).
    pub async fn take_all(&self, template: &Template) -> Result<Vec<Tuple>> {
        self.limits().check_template(template)?;
        let exclude = self.spaces.reserved(&self.id);
        let now = self.now();
        let template = template.clone();
        Ok(self
            .spaces
            .claim(&self.id, move |b, s| {
                Box::pin(async move { b.take_all(&s, &template, now, &exclude).await })
            })
            .await?
            .into_iter()
            .map(|e| e.tuple)
            .collect())
    }

    /// The number of matching tuples.
    pub async fn count(&self, template: &Template) -> Result<u64> {
        self.limits().check_template(template)?;
        self.backend().count(&self.id, template, self.now()).await
    }

    /// A stream of future writes matching `template`.
    pub fn subscribe(&self, template: &Template) -> Result<Subscription> {
        self.limits().check_template(template)?;
        let cap = self.spaces.inner.config.subscriber_capacity.max(1);
        let (tx, rx) = mpsc::channel(cap);
        let missed = Arc::new(AtomicU64::new(0));
        self.spaces
            .inner
            .state
            .lock()
            .entry((*self.id).clone())
            .or_default()
            .subscribers
            .push(Subscriber {
                template: template.clone(),
                tx,
                missed: missed.clone(),
            });
        Ok(Subscription { rx, missed })
    }

    /// Start a transaction.
    pub fn transaction(&self) -> Transaction {
        Transaction {
            space: self.clone(),
            taken: Vec::new(),
            writes: Vec::new(),
            open: true,
        }
    }

    /// How many callers of this engine are blocked in `read` or `take` on this space:
    /// asleep until a matching write, not in the middle of an attempt.
    pub fn waiting(&self) -> usize {
        self.spaces
            .inner
            .state
            .lock()
            .get(&*self.id)
            .map_or(0, |ss| ss.waiters.values().filter(|w| w.parked).count())
    }
}

/// A tuple taken with [`TupleSpace::take_leased`], pending until confirmed.
#[derive(Debug, Clone, PartialEq)]
pub struct TakeLease {
    /// The lease id to confirm or release.
    pub lease: u64,
    /// The tuple's id.
    pub id: TupleId,
    /// The tuple.
    pub tuple: Tuple,
    /// How long the consumer has to confirm.
    pub lease_duration: Duration,
}

/// The lease of a tuple written with [`TupleSpace::write_with_lease`].
#[derive(Debug, Clone)]
pub struct Lease {
    space: TupleSpace,
    id: TupleId,
    expires_at: Timestamp,
}

impl Lease {
    /// The tuple's id.
    pub fn id(&self) -> TupleId {
        self.id
    }

    /// When the tuple expires unless renewed.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Extend the lease to `ttl` from now. Fails with [`Error::NotFound`] once the tuple
    /// expired or was taken.
    pub async fn renew(&mut self, ttl: Duration) -> Result<()> {
        if let Some(e) = self.space.renew(self.id, Some(ttl)).await? {
            self.expires_at = e;
        }
        Ok(())
    }

    /// Remove the tuple now; false if it was already gone.
    pub async fn cancel(self) -> Result<bool> {
        let now = self.space.now();
        let id = self.id;
        let got = self
            .space
            .spaces
            .claim(&self.space.id, move |b, s| {
                Box::pin(async move { Ok(b.take_by_id(&s, id, now).await?.into_iter().collect()) })
            })
            .await?;
        Ok(!got.is_empty())
    }
}

/// Takes and writes that happen together or not at all.
///
/// A take inside a transaction removes the tuple from the space at once (no one else can
/// take it); writes stay invisible until [`Transaction::commit`], which makes them all
/// visible in one atomic backend write. [`Transaction::abort`], or dropping the transaction
/// uncommitted, puts back what was taken (same ids and leases) and discards the writes.
///
/// Durability: on a durable backend, tuples taken by a transaction that is open when its
/// process crashes are lost; commit and abort themselves are atomic.
pub struct Transaction {
    space: TupleSpace,
    taken: Vec<Entry>,
    writes: Vec<(Tuple, Option<Duration>)>,
    open: bool,
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("space", &self.space.id)
            .field("taken", &self.taken.len())
            .field("writes", &self.writes.len())
            .field("open", &self.open)
            .finish()
    }
}

impl Transaction {
    fn check_open(&self) -> Result<()> {
        if self.open {
            Ok(())
        } else {
            Err(Error::TransactionClosed)
        }
    }

    /// Write a tuple when the transaction commits.
    pub fn write(&mut self, tuple: Tuple) -> Result<()> {
        self.check_open()?;
        self.space.limits().check_tuple(&tuple)?;
        self.writes.push((tuple, None));
        Ok(())
    }

    /// Write a tuple with a lease of `ttl` counted from the commit.
    pub fn write_with_lease(&mut self, tuple: Tuple, ttl: Duration) -> Result<()> {
        self.check_open()?;
        if ttl.is_zero() {
            return Err(Error::InvalidArgument(
                "lease time to live must be positive".into(),
            ));
        }
        self.space.limits().check_tuple(&tuple)?;
        self.writes.push((tuple, Some(ttl)));
        Ok(())
    }

    fn take_own_write(&mut self, template: &Template) -> Option<Tuple> {
        let pos = self.writes.iter().position(|(t, _)| template.matches(t))?;
        Some(self.writes.remove(pos).0)
    }

    /// Take a matching tuple if one exists now: first among this transaction's own writes,
    /// then in the space.
    pub async fn take_if_exists(&mut self, template: &Template) -> Result<Option<Tuple>> {
        self.check_open()?;
        self.space.limits().check_template(template)?;
        if let Some(t) = self.take_own_write(template) {
            return Ok(Some(t));
        }
        match self.space.claim_one(template).await? {
            Some(e) => {
                let t = e.tuple.clone();
                self.taken.push(e);
                Ok(Some(t))
            }
            None => Ok(None),
        }
    }

    /// Take a matching tuple, waiting up to `timeout`.
    pub async fn take(&mut self, template: &Template, timeout: Duration) -> Result<Tuple> {
        self.check_open()?;
        self.space.limits().check_template(template)?;
        if let Some(t) = self.take_own_write(template) {
            return Ok(t);
        }
        let e = self.space.take_entry(template, timeout).await?;
        let t = e.tuple.clone();
        self.taken.push(e);
        Ok(t)
    }

    /// Read a matching tuple if one exists now, this transaction's writes included.
    pub async fn read_if_exists(&self, template: &Template) -> Result<Option<Tuple>> {
        self.check_open()?;
        if let Some((t, _)) = self.writes.iter().find(|(t, _)| template.matches(t)) {
            return Ok(Some(t.clone()));
        }
        self.space.read_if_exists(template).await
    }

    /// Make the writes visible and the takes final. If the write fails, what was taken is
    /// put back and the error returned.
    pub async fn commit(mut self) -> Result<Vec<TupleId>> {
        self.check_open()?;
        self.open = false;
        let now = self.space.now();
        let writes: Vec<NewTuple> = std::mem::take(&mut self.writes)
            .into_iter()
            .map(|(tuple, ttl)| NewTuple {
                tuple,
                expires_at: ttl.map(|t| now.saturating_add(t)),
            })
            .collect();
        match self.space.write_entries(writes).await {
            Ok(ids) => {
                self.taken.clear();
                Ok(ids)
            }
            Err(e) => {
                let taken = std::mem::take(&mut self.taken);
                self.space.spaces.restore(&self.space.id, taken).await?;
                Err(e)
            }
        }
    }

    /// Put back what was taken and discard the writes.
    pub async fn abort(mut self) -> Result<()> {
        self.check_open()?;
        self.open = false;
        self.writes.clear();
        let taken = std::mem::take(&mut self.taken);
        self.space.spaces.restore(&self.space.id, taken).await
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.open || self.taken.is_empty() {
            return;
        }
        let taken = std::mem::take(&mut self.taken);
        let space = self.space.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn(async move {
                    if let Err(error) = space.spaces.restore(&space.id, taken).await {
                        tracing::error!(%error, space = %space.id, "cannot put back tuples of a dropped transaction");
                    }
                });
            }
            Err(_) => {
                tracing::error!(space = %self.space.id, "transaction dropped outside a runtime; its taken tuples are lost");
            }
        }
    }
}
