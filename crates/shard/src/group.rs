//! [`ShardGroup`]: shard actors under one supervisor, and the data-parallel operations over
//! them.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use plexspaces_core::{
    Actor, ActorId, ActorRef, BoxError, ChildSpec, Context, Node, SpawnOptions,
    Strategy as SupervisionStrategy, Supervisor, SupervisorSpec,
};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::partition::{Partitioner, Strategy};

/// The state and logic of one shard: what a write does to it and how it answers a query.
///
/// A shard is driven by its own actor, one message at a time, so it needs no locks.
pub trait Shard: Send + 'static {
    /// The partitioning key.
    type Key: Hash + Ord + Clone + Send + Sync + std::fmt::Debug + 'static;
    /// What a write carries for its key.
    type Value: Send + 'static;
    /// A query sent to every shard.
    type Query: Clone + Send + Sync + 'static;
    /// One shard's answer to a query.
    type Answer: Send + 'static;

    /// Applies one write (the DPA update function). An error stops the shard actor; its
    /// supervisor restarts it from the factory.
    fn update(&mut self, key: Self::Key, value: Self::Value) -> Result<(), BoxError>;

    /// Answers `query` from this shard's data.
    fn query(
        &mut self,
        query: &Self::Query,
    ) -> impl Future<Output = Result<Self::Answer, BoxError>> + Send;
}

/// A message to a shard actor.
pub enum ShardMsg<S: Shard> {
    /// Applies these writes in order.
    Update(Vec<(S::Key, S::Value)>),
    /// Answers a query.
    Query(S::Query),
}

/// A shard actor's reply.
pub enum ShardReply<S: Shard> {
    /// This many writes were applied.
    Applied(usize),
    /// The answer to a query.
    Answer(S::Answer),
}

/// The actor that owns one shard. Spawned by [`ShardGroup::start`] under the group's
/// supervisor; addressed by its id `shard.<group>.<index>@<node>`.
pub struct ShardActor<S: Shard> {
    shard: S,
}

impl<S: Shard> Actor for ShardActor<S> {
    type Msg = ShardMsg<S>;
    type Reply = ShardReply<S>;

    async fn handle_call(
        &mut self,
        msg: ShardMsg<S>,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<ShardReply<S>>, BoxError> {
        match msg {
            ShardMsg::Update(items) => {
                let n = items.len();
                for (key, value) in items {
                    self.shard.update(key, value)?;
                }
                Ok(Some(ShardReply::Applied(n)))
            }
            ShardMsg::Query(query) => Ok(Some(ShardReply::Answer(self.shard.query(&query).await?))),
        }
    }

    fn msg_name(msg: &ShardMsg<S>) -> &'static str {
        match msg {
            ShardMsg::Update(_) => "shard_update",
            ShardMsg::Query(_) => "shard_query",
        }
    }
}

/// How to start a shard group.
#[derive(Debug, Clone)]
pub struct ShardGroupOptions<K> {
    /// The group's name, unique on its node: 1 to [`MAX_NAME_LEN`] letters, digits, `-`
    /// and `_`.
    pub name: String,
    /// How many shards.
    pub shards: usize,
    /// How keys map to shards.
    pub strategy: Strategy<K>,
    /// Writes per message to a shard in [`ShardGroup::bulk_update`].
    pub batch_size: usize,
    /// How long one write batch or one [`ShardGroup::map`] query may take per shard.
    pub timeout: Duration,
    /// How often a write batch is tried while its shard is down (restarting) before the
    /// batch is reported failed.
    pub attempts: u32,
    /// Shard restarts allowed within `restart_period` before the group's supervisor gives
    /// up (and the group stops serving).
    pub max_restarts: u32,
    /// The window of `max_restarts`.
    pub restart_period: Duration,
}

impl<K> ShardGroupOptions<K> {
    /// `shards` shards named `name`, partitioned by `strategy`; batches of 4096 writes, a
    /// 10 s timeout, 20 attempts, 10 restarts per 10 s.
    pub fn new(name: impl Into<String>, shards: usize, strategy: Strategy<K>) -> Self {
        ShardGroupOptions {
            name: name.into(),
            shards,
            strategy,
            batch_size: 4096,
            timeout: Duration::from_secs(10),
            attempts: 20,
            max_restarts: 10,
            restart_period: Duration::from_secs(10),
        }
    }
}

/// Why a shard took no part in a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardFailure {
    /// The shard's index.
    pub shard: usize,
    /// The shard actor's id.
    pub id: String,
    /// The error's kind (`timeout`, `noproc`, `actor_failed`, `noreply`, ...).
    pub kind: String,
    /// The error's text.
    pub error: String,
}

impl ShardFailure {
    fn new(shard: usize, id: &ActorId, error: &plexspaces_core::Error) -> Self {
        ShardFailure {
            shard,
            id: id.to_string(),
            kind: error.kind().to_owned(),
            error: error.to_string(),
        }
    }
}

/// What [`ShardGroup::scatter_gather`] gathered: the answers of the shards that answered in
/// time, and which shards did not.
#[derive(Debug)]
pub struct Gathered<A> {
    /// `(shard index, answer)`, in shard order.
    pub answers: Vec<(usize, A)>,
    /// The shards that failed or timed out, in shard order.
    pub failed: Vec<ShardFailure>,
}

impl<A> Gathered<A> {
    /// Whether every shard answered.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

/// One shard's part of a [`BulkReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardBulk {
    /// The shard's index.
    pub shard: usize,
    /// Writes the shard acknowledged.
    pub applied: u64,
    /// Writes in batches that failed after every attempt.
    pub failed: u64,
    /// The last failure, if any.
    pub error: Option<ShardFailure>,
}

/// The completion report of [`ShardGroup::bulk_update`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulkReport {
    /// Writes given.
    pub submitted: u64,
    /// Writes acknowledged by their shards.
    pub applied: u64,
    /// Writes not acknowledged.
    pub failed: u64,
    /// Per shard, in shard order.
    pub shards: Vec<ShardBulk>,
}

impl BulkReport {
    /// Whether every write was acknowledged.
    pub fn is_complete(&self) -> bool {
        self.failed == 0
    }
}

/// A group of shard actors holding keyed data, partitioned by [`Strategy`]
/// (DPA's ShardGroup). Cheap to clone.
///
/// - [`ShardGroup::bulk_update`] (DPA's BulkUpdate): writes routed to their shards in
///   batches, shards in parallel, with a completion report.
/// - [`ShardGroup::map`] (DPA's Map): one query to every shard in parallel, answers merged;
///   fails if any shard fails.
/// - [`ShardGroup::scatter_gather`] (DPA's Scatter-Gather): the same with a per-shard
///   timeout, returning what arrived plus which shards failed.
///
/// Shards are supervised (one_for_one): a crashed shard restarts from the factory, with
/// the state the factory gives it, and the group keeps serving. Shards are addressed by
/// [`ActorId`] and resolved through the node on every call, so a restarted shard is found
/// under its same id.
pub struct ShardGroup<S: Shard> {
    inner: Arc<Inner<S>>,
}

impl<S: Shard> Clone for ShardGroup<S> {
    fn clone(&self) -> Self {
        ShardGroup {
            inner: self.inner.clone(),
        }
    }
}

impl<S: Shard> std::fmt::Debug for ShardGroup<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardGroup")
            .field("name", &self.inner.name)
            .field("shards", &self.inner.ids.len())
            .finish()
    }
}

struct Inner<S: Shard> {
    name: String,
    node: Node,
    supervisor: ActorRef<Supervisor>,
    ids: Vec<ActorId>,
    partitioner: Partitioner<S::Key>,
    batch_size: usize,
    timeout: Duration,
    attempts: u32,
}

/// The longest group name, in bytes.
pub const MAX_NAME_LEN: usize = 100;

/// Checks a group name: 1 to [`MAX_NAME_LEN`] letters, digits, `-` or `_`.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::InvalidArgument(format!(
            "group name {name:?} must be 1 to {MAX_NAME_LEN} letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

impl<S: Shard> ShardGroup<S> {
    /// Starts `options.shards` shard actors on `node`, shard `i` made by `factory(i)` (and
    /// made again by it on every restart), under a one_for_one supervisor
    /// `shards.<name>@<node>`.
    pub async fn start<F>(
        node: &Node,
        options: ShardGroupOptions<S::Key>,
        factory: F,
    ) -> Result<Self>
    where
        F: Fn(usize) -> S + Send + Sync + 'static,
    {
        check_name(&options.name)?;
        let partitioner = Partitioner::new(&options.strategy, options.shards)?;
        if options.batch_size == 0 || options.attempts == 0 || options.timeout.is_zero() {
            return Err(Error::InvalidArgument(
                "batch_size, attempts and timeout must be positive".into(),
            ));
        }
        let factory = Arc::new(factory);
        let mut spec = SupervisorSpec::new(SupervisionStrategy::OneForOne)
            .intensity(options.max_restarts, options.restart_period);
        let mut ids = Vec::with_capacity(options.shards);
        for i in 0..options.shards {
            let name = format!("shard.{}.{i}", options.name);
            ids.push(ActorId::new(&name, node.name())?);
            let factory = factory.clone();
            spec = spec.child(
                ChildSpec::worker(i.to_string(), move || ShardActor { shard: factory(i) })
                    .named(name),
            );
        }
        let supervisor = node
            .start(
                Supervisor::new(spec),
                SpawnOptions::named(format!("shards.{}", options.name)),
            )
            .await?;
        Ok(ShardGroup {
            inner: Arc::new(Inner {
                name: options.name,
                node: node.clone(),
                supervisor,
                ids,
                partitioner,
                batch_size: options.batch_size,
                timeout: options.timeout,
                attempts: options.attempts,
            }),
        })
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.inner.ids.len()
    }

    /// The shard actors' ids, in shard order.
    pub fn shard_ids(&self) -> &[ActorId] {
        &self.inner.ids
    }

    /// The shard that holds `key`.
    pub fn shard_of(&self, key: &S::Key) -> usize {
        self.inner.partitioner.shard_of(key)
    }

    /// The current address of shard `index` (local or remote by its id; an error while it
    /// is down or restarting).
    pub fn shard(&self, index: usize) -> Result<ActorRef<ShardActor<S>>> {
        let id = self.inner.ids.get(index).ok_or_else(|| {
            Error::InvalidArgument(format!("shard {index} of {}", self.inner.ids.len()))
        })?;
        Ok(self.inner.node.actor_ref(id)?)
    }

    /// Writes one key and waits for its shard to apply it.
    pub async fn update(&self, key: S::Key, value: S::Value) -> Result<()> {
        let index = self.shard_of(&key);
        let id = &self.inner.ids[index];
        let shard = self.shard(index)?;
        shard
            .ask_timeout(ShardMsg::Update(vec![(key, value)]), self.inner.timeout)
            .await
            .map_err(|error| Error::ShardFailed {
                shard: index,
                id: id.to_string(),
                error,
            })?;
        Ok(())
    }

    /// Routes every write to its shard and applies them in batches, all shards in
    /// parallel; writes to one shard apply in the order given. Eventually consistent: no
    /// write waits for another shard, and a query running meanwhile may see some shards
    /// updated and others not. A batch whose shard is down is tried again (up to
    /// `attempts` times, while the shard restarts); what never got acknowledged is counted
    /// as failed in the report.
    pub async fn bulk_update<I>(&self, items: I) -> BulkReport
    where
        I: IntoIterator<Item = (S::Key, S::Value)>,
    {
        let n = self.shards();
        let mut per_shard: Vec<Vec<(S::Key, S::Value)>> = (0..n).map(|_| Vec::new()).collect();
        let mut submitted = 0u64;
        for (key, value) in items {
            submitted += 1;
            per_shard[self.shard_of(&key)].push((key, value));
        }
        let shards = join_all(
            per_shard
                .into_iter()
                .enumerate()
                .map(|(index, items)| self.write_shard(index, items)),
        )
        .await;
        let applied = shards.iter().map(|s| s.applied).sum();
        BulkReport {
            submitted,
            applied,
            failed: submitted - applied,
            shards,
        }
    }

    async fn write_shard(&self, index: usize, mut items: Vec<(S::Key, S::Value)>) -> ShardBulk {
        let mut report = ShardBulk {
            shard: index,
            applied: 0,
            failed: 0,
            error: None,
        };
        let id = &self.inner.ids[index];
        while !items.is_empty() {
            let rest = items.split_off(items.len().min(self.inner.batch_size));
            let batch = std::mem::replace(&mut items, rest);
            let count = batch.len() as u64;
            match self.send_batch(index, batch).await {
                Ok(()) => report.applied += count,
                Err(error) => {
                    report.failed += count;
                    report.error = Some(ShardFailure::new(index, id, &error));
                }
            }
        }
        report
    }

    /// Sends one batch, waiting for the shard to come back while it is down. A batch the
    /// shard received but failed on is not sent again (it may be partly applied).
    async fn send_batch(
        &self,
        index: usize,
        batch: Vec<(S::Key, S::Value)>,
    ) -> Result<(), plexspaces_core::Error> {
        let id = &self.inner.ids[index];
        let mut batch = Some(batch);
        let mut last = plexspaces_core::Error::NoProc(id.to_string());
        for attempt in 0..self.inner.attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(20)))).await;
            }
            let shard = match self.inner.node.actor_ref::<ShardActor<S>>(id) {
                Ok(shard) => shard,
                Err(e) => {
                    last = e;
                    continue;
                }
            };
            let msg = batch
                .take()
                .map(ShardMsg::Update)
                .ok_or_else(|| last.clone())?;
            match shard.tell(msg).await {
                Ok(()) => {}
                // Not delivered: the shard died meanwhile; keep the batch for the next try.
                Err(send) => {
                    last = send.to_error(id);
                    if let ShardMsg::Update(items) = send.into_inner() {
                        batch = Some(items);
                    }
                    continue;
                }
            }
            // Delivered in order: an empty batch asked after it is answered only once the
            // writes before it are applied (one mailbox, one handler at a time).
            // `shard` is this incarnation: if it died with the batch, the ask fails rather
            // than reaching its restarted successor.
            return shard
                .ask_timeout(ShardMsg::Update(Vec::new()), self.inner.timeout)
                .await
                .map(drop);
        }
        Err(last)
    }

    /// Sends `query` to every shard in parallel and folds the answers, in shard order,
    /// into `init` (DPA's Map). Fails with [`Error::ShardFailed`] if any shard fails or
    /// takes longer than the group's timeout; use [`ShardGroup::scatter_gather`] to keep
    /// partial results.
    pub async fn map<R, F>(&self, query: S::Query, init: R, mut fold: F) -> Result<R>
    where
        F: FnMut(R, usize, S::Answer) -> R,
    {
        let gathered = self.scatter_gather(query, self.inner.timeout).await;
        if let Some(failure) = gathered.failed.into_iter().next() {
            let error = match failure.kind.as_str() {
                "timeout" => plexspaces_core::Error::Timeout(self.inner.timeout),
                kind => plexspaces_core::Error::from_remote(kind, &failure.error),
            };
            return Err(Error::ShardFailed {
                shard: failure.shard,
                id: failure.id,
                error,
            });
        }
        Ok(gathered
            .answers
            .into_iter()
            .fold(init, |acc, (shard, answer)| fold(acc, shard, answer)))
    }

    /// Sends `query` to every shard in parallel and waits at most `timeout` for each:
    /// returns the answers that came, and names the shards that failed, were down or were
    /// too slow (DPA's Scatter-Gather). Never fails as a whole.
    pub async fn scatter_gather(&self, query: S::Query, timeout: Duration) -> Gathered<S::Answer> {
        let asks = self.inner.ids.iter().enumerate().map(|(index, id)| {
            let query = query.clone();
            async move {
                let result = match self.inner.node.actor_ref::<ShardActor<S>>(id) {
                    Ok(shard) => shard.ask_timeout(ShardMsg::Query(query), timeout).await,
                    Err(e) => Err(e),
                };
                (index, id, result)
            }
        });
        let mut gathered = Gathered {
            answers: Vec::with_capacity(self.shards()),
            failed: Vec::new(),
        };
        for (index, id, result) in join_all(asks).await {
            match result {
                Ok(ShardReply::Answer(answer)) => gathered.answers.push((index, answer)),
                Ok(ShardReply::Applied(_)) => gathered.failed.push(ShardFailure::new(
                    index,
                    id,
                    &plexspaces_core::Error::Encode("a shard answered a query with a write".into()),
                )),
                Err(error) => gathered.failed.push(ShardFailure::new(index, id, &error)),
            }
        }
        gathered
    }

    /// Stops the group's supervisor and with it every shard.
    pub async fn stop(&self) -> Result<()> {
        self.inner
            .supervisor
            .stop_and_wait(plexspaces_core::ExitReason::Shutdown)
            .await?;
        Ok(())
    }
}
