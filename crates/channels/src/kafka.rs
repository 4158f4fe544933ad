//! The Kafka backend (feature `kafka`): [`KafkaBackend`], over the pure-Rust client
//! `rskafka`, against any Kafka-protocol broker (the tests run `tansu`).
//!
//! Kafka has no per-message acknowledgement: a consumer group commits one offset per
//! partition, and competing consumers need one partition each. To give the same
//! semantics as the other backends (any number of competing consumers, per-message ack,
//! nack, visibility timeout, dead letters), each subscriber group keeps its delivery state
//! in a Kafka topic of its own, a log that every backend instance replays:
//!
//! - a channel is the topic `{prefix}.{tenant}.{namespace}.{name}` (one partition, so one
//!   order); a message is a record (payload as value, headers as Kafka headers) and its id
//!   is the record's offset;
//! - a group's state is the topic `{channel topic}.g.{group}` (one partition). Its records
//!   are `start` (the first offset the group sees: the log start for a queue, the end for
//!   a new topic group), `lease` (a consumer claims delivery `n` of an offset until a
//!   deadline), `ack`, `nack` (due again at a time), `bury` (a claim to move an exhausted
//!   message to the dead letters) and `buried`;
//! - the broker orders the state log, so every instance replaying it decides the same:
//!   a `lease` counts only if the message is pending, not held by an unexpired lease, due,
//!   and the lease is for exactly the next attempt. A consumer appends its claims, reads
//!   the log back through them and keeps those that counted; two consumers never hold the
//!   same message within its visibility timeout;
//! - dead letters are records of the topic `{channel topic}.dlq.{group}`, keyed
//!   `{offset}:{deliveries}`; the claimant of a `bury` writes the record, then `buried`. A
//!   claimant that dies in between leaves a `bury` that lapses like a lease, and the next
//!   one writes it again; readers drop the duplicate by offset.
//!
//! Topic names longer than Kafka's 249 characters are replaced by `{prefix}.h{hash}`.
//! Times are wall-clock milliseconds written into the records (as SQLite's are), so the
//! instances' clocks must agree. Records are never deleted: retention is the broker's
//! (a group's state log grows by a few records per delivery). A waiting `receive` polls
//! every 20 ms.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rskafka::chrono::DateTime;
use rskafka::client::error::{Error as KError, ProtocolError};
use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use rskafka::BackoffConfig;
use serde_json::{json, Value};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::backend::{MAX_BATCH, MAX_WAIT};
use crate::types::check_name;
use crate::{
    Backend, ChannelId, DeadLetter, Delivery, DeliveryOptions, Error, Message, Outgoing, Receipt,
    Result, Semantics, Start,
};

const NAME: &str = "kafka";
const POLL: Duration = Duration::from_millis(20);
/// Kafka's longest topic name.
const MAX_TOPIC: usize = 249;
/// Most bytes one fetch asks for.
const FETCH_BYTES: i32 = 8 * 1024 * 1024;

/// Where to connect.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// bootstrap brokers, `host:port`
    pub brokers: Vec<String>,
    /// prepended to every topic name (`[A-Za-z0-9._-]`)
    pub prefix: String,
    /// partitions' replication factor for the topics this backend creates
    pub replication: i16,
    /// give up on an unreachable broker after this long (`Error::Unavailable`)
    pub timeout: Duration,
    /// redelivery policy
    pub delivery: DeliveryOptions,
}

impl KafkaOptions {
    /// Topics under `plex`, replication 1.
    pub fn new(brokers: Vec<String>) -> Self {
        KafkaOptions {
            brokers,
            prefix: "plex".to_owned(),
            replication: 1,
            timeout: Duration::from_secs(15),
            delivery: DeliveryOptions::default(),
        }
    }
}

/// Channels on a Kafka-protocol broker. Cheap to clone (clones share connections and
/// replayed state).
#[derive(Clone)]
pub struct KafkaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    prefix: String,
    replication: i16,
    delivery: DeliveryOptions,
    partitions: parking_lot::Mutex<HashMap<String, Arc<PartitionClient>>>,
    groups: parking_lot::Mutex<HashMap<String, Arc<Mutex<GroupState>>>>,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend")
            .field("prefix", &self.inner.prefix)
            .finish()
    }
}

fn map_err(e: KError) -> Error {
    match e {
        KError::Connection(_) | KError::RetryFailed(_) | KError::Timeout | KError::Request(_) => {
            Error::Unavailable {
                backend: NAME,
                message: e.to_string(),
            }
        }
        other => Error::Backend {
            backend: NAME,
            message: other.to_string(),
        },
    }
}

fn corrupt(what: &str) -> Error {
    Error::Backend {
        backend: NAME,
        message: format!("corrupt record: {what}"),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// 64-bit FNV-1a: a stable hash (the same in every process and release).
fn fnv(seed: u64, s: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ seed;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// `name`, or a hash of it when Kafka would refuse its length.
fn topic_name(prefix: &str, name: String) -> String {
    if name.len() <= MAX_TOPIC {
        name
    } else {
        format!(
            "{prefix}.h{:016x}{:016x}",
            fnv(0, &name),
            fnv(0x9e37, &name)
        )
    }
}

fn record(key: Option<Vec<u8>>, value: Vec<u8>, headers: BTreeMap<String, Vec<u8>>) -> Record {
    Record {
        key,
        value: Some(value),
        headers,
        timestamp: DateTime::from_timestamp_millis(now_ms()).unwrap_or_default(),
    }
}

fn message_of(offset: i64, r: &Record) -> Result<Message> {
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| {
            String::from_utf8(v.clone())
                .map(|v| (k.clone(), v))
                .map_err(|_| corrupt("a header is not UTF-8"))
        })
        .collect::<Result<_>>()?;
    Ok(Message {
        id: offset.to_string(),
        payload: r.value.clone().unwrap_or_default().into(),
        headers,
    })
}

/// How far one message has come in one group.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    attempts: u32,
    /// held (by a lease or a bury claim) until then
    held_until: i64,
    /// not delivered before then (a nack's delay)
    due: i64,
    /// acked or buried: never delivered again
    done: bool,
}

/// A group's state, replayed from its state log.
#[derive(Debug)]
struct GroupState {
    log: Arc<PartitionClient>,
    dlq: String,
    /// the next state record to read
    next: i64,
    /// first channel offset the group sees (None: not created yet)
    start: Option<i64>,
    /// every offset below is done
    floor: i64,
    entries: BTreeMap<i64, Entry>,
}

/// One state record.
#[derive(Debug, Clone, Copy)]
enum Op {
    Start {
        at: i64,
    },
    Lease {
        off: i64,
        n: u32,
        ts: i64,
        until: i64,
    },
    Ack {
        off: i64,
    },
    Nack {
        off: i64,
        due: i64,
    },
    Bury {
        off: i64,
        ts: i64,
        until: i64,
    },
    Buried {
        off: i64,
    },
}

impl Op {
    fn encode(self) -> Vec<u8> {
        let v = match self {
            Op::Start { at } => json!({"op": "start", "at": at}),
            Op::Lease { off, n, ts, until } => {
                json!({"op": "lease", "off": off, "n": n, "ts": ts, "until": until})
            }
            Op::Ack { off } => json!({"op": "ack", "off": off}),
            Op::Nack { off, due } => json!({"op": "nack", "off": off, "due": due}),
            Op::Bury { off, ts, until } => {
                json!({"op": "bury", "off": off, "ts": ts, "until": until})
            }
            Op::Buried { off } => json!({"op": "buried", "off": off}),
        };
        v.to_string().into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Op> {
        let v: Value = serde_json::from_slice(bytes).map_err(|_| corrupt("state is not JSON"))?;
        let int = |k: &str| v.get(k).and_then(Value::as_i64).ok_or_else(|| corrupt(k));
        Ok(match v.get("op").and_then(Value::as_str) {
            Some("start") => Op::Start { at: int("at")? },
            Some("lease") => Op::Lease {
                off: int("off")?,
                n: u32::try_from(int("n")?).map_err(|_| corrupt("n"))?,
                ts: int("ts")?,
                until: int("until")?,
            },
            Some("ack") => Op::Ack { off: int("off")? },
            Some("nack") => Op::Nack {
                off: int("off")?,
                due: int("due")?,
            },
            Some("bury") => Op::Bury {
                off: int("off")?,
                ts: int("ts")?,
                until: int("until")?,
            },
            Some("buried") => Op::Buried { off: int("off")? },
            _ => return Err(corrupt("unknown op")),
        })
    }
}

impl GroupState {
    fn entry(&self, off: i64) -> Entry {
        if off < self.floor {
            return Entry {
                done: true,
                ..Entry::default()
            };
        }
        self.entries.get(&off).copied().unwrap_or_default()
    }

    /// Pending: in the group's range and neither acked nor buried.
    fn pending(&self, off: i64) -> bool {
        matches!(self.start, Some(s) if off >= s) && !self.entry(off).done
    }

    /// Apply one record; whether it counted.
    fn apply(&mut self, op: Op) -> bool {
        let ok = match op {
            Op::Start { at } => {
                if self.start.is_some() {
                    return false;
                }
                self.start = Some(at);
                self.floor = at;
                return true;
            }
            Op::Lease { off, n, ts, until } => {
                let e = self.entry(off);
                let ok = self.pending(off)
                    && e.held_until <= ts
                    && e.due <= ts
                    && n == e.attempts.saturating_add(1);
                if ok {
                    let e = self.entries.entry(off).or_default();
                    e.attempts = n;
                    e.held_until = until;
                }
                ok
            }
            Op::Ack { off } | Op::Buried { off } => {
                let ok = self.pending(off);
                if ok {
                    self.entries.entry(off).or_default().done = true;
                }
                ok
            }
            Op::Nack { off, due } => {
                let ok = self.pending(off);
                if ok {
                    let e = self.entries.entry(off).or_default();
                    e.held_until = 0;
                    e.due = due;
                }
                ok
            }
            Op::Bury { off, ts, until } => {
                let e = self.entry(off);
                let ok = self.pending(off) && e.held_until <= ts && e.due <= ts;
                if ok {
                    self.entries.entry(off).or_default().held_until = until;
                }
                ok
            }
        };
        // forget the done prefix
        while self.entries.get(&self.floor).is_some_and(|e| e.done) {
            self.entries.remove(&self.floor);
            self.floor += 1;
        }
        ok
    }

    /// Read the state log to its end; the verdicts of the records at `watch`.
    async fn sync(&mut self, watch: &HashSet<i64>) -> Result<HashMap<i64, bool>> {
        let mut verdicts = HashMap::new();
        loop {
            let (records, high) = self
                .log
                .fetch_records(self.next, 1..FETCH_BYTES, 0)
                .await
                .map_err(map_err)?;
            for r in &records {
                if r.offset < self.next {
                    continue;
                }
                self.next = r.offset + 1;
                let Some(value) = r.record.value.as_deref() else {
                    continue;
                };
                let ok = self.apply(Op::decode(value)?);
                if watch.contains(&r.offset) {
                    verdicts.insert(r.offset, ok);
                }
            }
            if self.next >= high || records.is_empty() {
                return Ok(verdicts);
            }
        }
    }

    /// Append `ops`; their offsets.
    async fn append(&self, ops: &[Op]) -> Result<Vec<i64>> {
        let records = ops
            .iter()
            .map(|op| record(None, op.encode(), BTreeMap::new()))
            .collect();
        self.log
            .produce(records, Compression::NoCompression)
            .await
            .map_err(map_err)
    }
}

enum Claim {
    Lease(i64, u32),
    Bury(i64, u32),
}

impl KafkaBackend {
    /// Connect to the brokers (creates nothing until a channel is used).
    pub async fn connect(options: KafkaOptions) -> Result<Self> {
        if options.brokers.is_empty() {
            return Err(Error::invalid("kafka brokers", "no bootstrap broker given"));
        }
        if options.prefix.is_empty()
            || options.prefix.len() > 64
            || !options
                .prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(Error::invalid(
                "kafka prefix",
                "must be 1..=64 bytes of [A-Za-z0-9._-]",
            ));
        }
        let backoff = BackoffConfig {
            deadline: Some(options.timeout),
            ..BackoffConfig::default()
        };
        let client = tokio::time::timeout(
            options.timeout,
            ClientBuilder::new(options.brokers.clone())
                .client_id("plexspaces-channels")
                .backoff_config(backoff)
                .build(),
        )
        .await
        .map_err(|_| Error::Unavailable {
            backend: NAME,
            message: format!("no answer from {:?}", options.brokers),
        })?
        .map_err(map_err)?;
        Ok(KafkaBackend {
            inner: Arc::new(Inner {
                client,
                prefix: options.prefix,
                replication: options.replication,
                delivery: options.delivery,
                partitions: parking_lot::Mutex::new(HashMap::new()),
                groups: parking_lot::Mutex::new(HashMap::new()),
            }),
        })
    }

    fn channel_topic(&self, channel: &ChannelId) -> String {
        let p = &self.inner.prefix;
        topic_name(
            p,
            format!(
                "{p}.{}.{}.{}",
                channel.tenant(),
                channel.namespace(),
                channel.name()
            ),
        )
    }

    fn group_topics(&self, channel: &ChannelId, group: &str) -> (String, String) {
        let p = &self.inner.prefix;
        let base = format!(
            "{p}.{}.{}.{}",
            channel.tenant(),
            channel.namespace(),
            channel.name()
        );
        (
            topic_name(p, format!("{base}.g.{group}")),
            topic_name(p, format!("{base}.dlq.{group}")),
        )
    }

    /// The partition client of `topic`, creating the topic if `create`.
    async fn partition(&self, topic: &str, create: bool) -> Result<Option<Arc<PartitionClient>>> {
        if let Some(p) = self.inner.partitions.lock().get(topic) {
            return Ok(Some(p.clone()));
        }
        if create {
            let controller = self.inner.client.controller_client().map_err(map_err)?;
            match controller
                .create_topic(topic, 1, self.inner.replication, 10_000)
                .await
            {
                Ok(()) => {}
                Err(KError::ServerError {
                    protocol_error: ProtocolError::TopicAlreadyExists,
                    ..
                }) => {}
                Err(e) => return Err(map_err(e)),
            }
        } else if !self
            .inner
            .client
            .list_topics()
            .await
            .map_err(map_err)?
            .iter()
            .any(|t| t.name == topic)
        {
            return Ok(None);
        }
        let p = Arc::new(
            self.inner
                .client
                .partition_client(topic, 0, UnknownTopicHandling::Retry)
                .await
                .map_err(map_err)?,
        );
        Ok(Some(
            self.inner
                .partitions
                .lock()
                .entry(topic.to_owned())
                .or_insert(p)
                .clone(),
        ))
    }

    async fn data(&self, channel: &ChannelId) -> Result<Arc<PartitionClient>> {
        let topic = self.channel_topic(channel);
        self.partition(&topic, true)
            .await?
            .ok_or_else(|| corrupt("topic vanished"))
    }

    async fn group(&self, channel: &ChannelId, group: &str) -> Result<Arc<Mutex<GroupState>>> {
        check_name("group", group)?;
        let (state, dlq) = self.group_topics(channel, group);
        if let Some(g) = self.inner.groups.lock().get(&state) {
            return Ok(g.clone());
        }
        let log = self
            .partition(&state, true)
            .await?
            .ok_or_else(|| corrupt("topic vanished"))?;
        let g = Arc::new(Mutex::new(GroupState {
            log,
            dlq,
            next: 0,
            start: None,
            floor: 0,
            entries: BTreeMap::new(),
        }));
        Ok(self.inner.groups.lock().entry(state).or_insert(g).clone())
    }

    fn parse_receipt(receipt: &Receipt) -> Result<i64> {
        receipt
            .0
            .parse()
            .map_err(|_| Error::UnknownReceipt(receipt.0.clone()))
    }

    /// Claim up to `max` deliveries for the group (one round).
    async fn claim(&self, channel: &ChannelId, group: &str, max: usize) -> Result<Vec<Delivery>> {
        let data = self.data(channel).await?;
        let g = self.group(channel, group).await?;
        let mut st = g.lock().await;
        st.sync(&HashSet::new()).await?;
        if st.start.is_none() {
            // the group was never created (a receive without a subscribe): nothing yet
            return Ok(Vec::new());
        }
        let high = data.get_offset(OffsetAt::Latest).await.map_err(map_err)?;
        let now = now_ms();
        let visibility = ms(self.inner.delivery.visibility_timeout);
        let max_deliveries = self.inner.delivery.max_deliveries;
        let mut claims = Vec::new();
        let mut leases = 0;
        let mut off = st.floor;
        while off < high && leases < max && claims.len() < MAX_BATCH {
            let e = st.entry(off);
            if !e.done && e.held_until <= now && e.due <= now {
                if e.attempts >= max_deliveries {
                    claims.push(Claim::Bury(off, e.attempts));
                } else {
                    claims.push(Claim::Lease(off, e.attempts + 1));
                    leases += 1;
                }
            }
            off += 1;
        }
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let until = now.saturating_add(visibility);
        let ops: Vec<Op> = claims
            .iter()
            .map(|c| match *c {
                Claim::Lease(off, n) => Op::Lease {
                    off,
                    n,
                    ts: now,
                    until,
                },
                Claim::Bury(off, _) => Op::Bury {
                    off,
                    ts: now,
                    until,
                },
            })
            .collect();
        let at = st.append(&ops).await?;
        let verdicts = st.sync(&at.iter().copied().collect()).await?;
        let won = |i: usize| at.get(i).and_then(|o| verdicts.get(o)).copied() == Some(true);

        // the exhausted ones this instance won: to the dead letters, then `buried`
        let mut buried = Vec::new();
        let mut dead = Vec::new();
        let mut leased = Vec::new();
        for (i, c) in claims.iter().enumerate() {
            if !won(i) {
                continue;
            }
            match *c {
                Claim::Lease(off, n) => leased.push((off, n)),
                Claim::Bury(off, n) => {
                    dead.push((off, n));
                    buried.push(Op::Buried { off });
                }
            }
        }
        let wanted: Vec<i64> = leased
            .iter()
            .map(|(o, _)| *o)
            .chain(dead.iter().map(|(o, _)| *o))
            .collect();
        let records = fetch_offsets(&data, &wanted).await?;
        if !dead.is_empty() {
            let dlq = self
                .partition(&st.dlq, true)
                .await?
                .ok_or_else(|| corrupt("topic vanished"))?;
            let copies = dead
                .iter()
                .filter_map(|(off, n)| {
                    records.get(off).map(|r| {
                        record(
                            Some(format!("{off}:{n}").into_bytes()),
                            r.value.clone().unwrap_or_default(),
                            r.headers.clone(),
                        )
                    })
                })
                .collect();
            dlq.produce(copies, Compression::NoCompression)
                .await
                .map_err(map_err)?;
            st.append(&buried).await?;
        }
        let mut out = Vec::with_capacity(leased.len());
        for (off, n) in leased {
            // a record gone from the topic (retention) cannot be delivered
            let Some(r) = records.get(&off) else { continue };
            out.push(Delivery {
                message: message_of(off, r)?,
                attempt: n,
                receipt: Receipt(off.to_string()),
            });
        }
        Ok(out)
    }
}

/// The records at `offsets` (sorted or not), fetched in as few requests as they allow.
async fn fetch_offsets(pc: &PartitionClient, offsets: &[i64]) -> Result<HashMap<i64, Record>> {
    let mut want: Vec<i64> = offsets.to_vec();
    want.sort_unstable();
    want.dedup();
    let mut got: HashMap<i64, Record> = HashMap::new();
    for off in want {
        if got.contains_key(&off) {
            continue;
        }
        let (records, _) = match pc.fetch_records(off, 1..FETCH_BYTES, 0).await {
            Ok(r) => r,
            Err(KError::ServerError {
                protocol_error: ProtocolError::OffsetOutOfRange,
                ..
            }) => continue,
            Err(e) => return Err(map_err(e)),
        };
        for r in records {
            if r.offset >= off && offsets.contains(&r.offset) {
                got.insert(r.offset, r.record);
            }
        }
    }
    Ok(got)
}

#[async_trait]
impl Backend for KafkaBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn semantics(&self) -> Semantics {
        Semantics::DURABLE
    }

    async fn ensure_group(&self, channel: &ChannelId, group: &str, start: Start) -> Result<()> {
        let data = self.data(channel).await?;
        let g = self.group(channel, group).await?;
        let mut st = g.lock().await;
        st.sync(&HashSet::new()).await?;
        if st.start.is_some() {
            return Ok(());
        }
        let at = match start {
            Start::Earliest => data.get_offset(OffsetAt::Earliest),
            Start::Latest => data.get_offset(OffsetAt::Latest),
        }
        .await
        .map_err(map_err)?;
        st.append(&[Op::Start { at }]).await?;
        // the first `start` in the log wins (another instance may have raced)
        st.sync(&HashSet::new()).await?;
        Ok(())
    }

    async fn publish(&self, channel: &ChannelId, message: Outgoing) -> Result<String> {
        let data = self.data(channel).await?;
        let headers = message
            .headers
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        let offsets = data
            .produce(
                vec![record(None, message.payload.to_vec(), headers)],
                Compression::NoCompression,
            )
            .await
            .map_err(map_err)?;
        offsets
            .first()
            .map(|o| o.to_string())
            .ok_or_else(|| corrupt("produce answered no offset"))
    }

    async fn receive(
        &self,
        channel: &ChannelId,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        check_name("consumer", consumer)?;
        let max = max.clamp(1, MAX_BATCH);
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            let got = self.claim(channel, group, max).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            tokio::time::sleep_until((now + POLL).min(deadline)).await;
        }
    }

    async fn ack(&self, channel: &ChannelId, group: &str, receipt: &Receipt) -> Result<()> {
        let off = Self::parse_receipt(receipt)?;
        let data = self.data(channel).await?;
        let g = self.group(channel, group).await?;
        let mut st = g.lock().await;
        st.sync(&HashSet::new()).await?;
        let high = data.get_offset(OffsetAt::Latest).await.map_err(map_err)?;
        if off >= high || !st.pending(off) {
            return Err(Error::UnknownReceipt(receipt.0.clone()));
        }
        let at = st.append(&[Op::Ack { off }]).await?;
        let verdicts = st.sync(&at.iter().copied().collect()).await?;
        // another instance may have acked (or buried) it in between
        if at.first().and_then(|o| verdicts.get(o)) == Some(&true) {
            Ok(())
        } else {
            Err(Error::UnknownReceipt(receipt.0.clone()))
        }
    }

    async fn nack(
        &self,
        channel: &ChannelId,
        group: &str,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<()> {
        let off = Self::parse_receipt(receipt)?;
        let data = self.data(channel).await?;
        let g = self.group(channel, group).await?;
        let mut st = g.lock().await;
        st.sync(&HashSet::new()).await?;
        let high = data.get_offset(OffsetAt::Latest).await.map_err(map_err)?;
        if off >= high || !st.pending(off) {
            return Err(Error::UnknownReceipt(receipt.0.clone()));
        }
        let due = now_ms().saturating_add(ms(delay));
        st.append(&[Op::Nack { off, due }]).await?;
        st.sync(&HashSet::new()).await?;
        Ok(())
    }

    async fn dead_letters(
        &self,
        channel: &ChannelId,
        group: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>> {
        check_name("group", group)?;
        let (_, dlq) = self.group_topics(channel, group);
        let Some(pc) = self.partition(&dlq, false).await? else {
            return Ok(Vec::new());
        };
        let mut by_offset: BTreeMap<i64, DeadLetter> = BTreeMap::new();
        let mut next = 0;
        loop {
            let (records, high) = pc
                .fetch_records(next, 1..FETCH_BYTES, 0)
                .await
                .map_err(map_err)?;
            for r in &records {
                next = next.max(r.offset + 1);
                let key = r
                    .record
                    .key
                    .as_deref()
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .ok_or_else(|| corrupt("dead letter key"))?;
                let (off, n) = key
                    .split_once(':')
                    .and_then(|(o, n)| Some((o.parse::<i64>().ok()?, n.parse::<u32>().ok()?)))
                    .ok_or_else(|| corrupt("dead letter key"))?;
                if let std::collections::btree_map::Entry::Vacant(v) = by_offset.entry(off) {
                    v.insert(DeadLetter {
                        message: message_of(off, &r.record)?,
                        deliveries: n,
                    });
                }
            }
            if next >= high || records.is_empty() {
                break;
            }
        }
        Ok(by_offset.into_values().take(max).collect())
    }
}
