//! The NATS JetStream backend (feature `nats`): [`NatsBackend`], on async-nats.
//!
//! A channel is a JetStream stream (one per channel, subject
//! `{prefix}.{tenant}.{namespace}.{name}`); a subscriber group is a durable pull consumer
//! with explicit acks (`DeliverPolicy::All` for a queue, `New` for a topic group), whose
//! `ack_wait` is the visibility timeout: JetStream redelivers what is not acked in time.
//! The server's delivery counter decides dead letters: a message delivered more than
//! `max_deliveries` times is copied to the stream `{stream}-dlq` and terminated. Receipts
//! name ack handles kept in this process, so a delivery can only be acked or nacked by the
//! backend instance that received it (a crashed consumer's deliveries come back after the
//! visibility timeout).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::backend::{MAX_BATCH, MAX_WAIT};
use crate::types::{check_name, decode_headers, encode_headers};
use crate::{
    Backend, ChannelId, DeadLetter, Delivery, DeliveryOptions, Error, Message, Outgoing, Receipt,
    Result, Semantics, Start,
};

const NAME: &str = "nats";
const HEADERS: &str = "Plex-Headers";
const DELIVERIES: &str = "Plex-Deliveries";

/// Where to connect.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// e.g. `nats://127.0.0.1:4222`
    pub url: String,
    /// first subject token and stream-name prefix, so several deployments share a server
    pub prefix: String,
    /// redelivery policy
    pub delivery: DeliveryOptions,
}

impl NatsOptions {
    /// Streams under `plex`.
    pub fn new(url: &str) -> Self {
        NatsOptions {
            url: url.to_owned(),
            prefix: "plex".to_owned(),
            delivery: DeliveryOptions::default(),
        }
    }
}

struct Handle {
    message: jetstream::Message,
    taken: Instant,
}

/// Channels on NATS JetStream. Cheap to clone.
#[derive(Clone)]
pub struct NatsBackend {
    js: jetstream::Context,
    prefix: String,
    delivery: DeliveryOptions,
    streams: Arc<Mutex<HashSet<String>>>,
    consumers: Arc<Mutex<HashMap<(String, String), PullConsumer>>>,
    handles: Arc<Mutex<HashMap<u64, Handle>>>,
    next_handle: Arc<AtomicU64>,
}

impl std::fmt::Debug for NatsBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBackend")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::Unavailable {
        backend: NAME,
        message: e.to_string(),
    }
}

fn failed(e: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: NAME,
        message: e.to_string(),
    }
}

/// `{n}{part}` per part: unambiguous although names may hold '-' and '_'.
fn encode_parts(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| format!("{}{p}", p.len()))
        .collect::<Vec<_>>()
        .join("-")
}

fn headers_of(msg: &async_nats::Message) -> Result<BTreeMap<String, String>> {
    match msg.headers.as_ref().and_then(|h| h.get(HEADERS)) {
        Some(v) => decode_headers(NAME, v.as_str()),
        None => Ok(BTreeMap::new()),
    }
}

impl NatsBackend {
    /// Connect.
    pub async fn connect(options: NatsOptions) -> Result<Self> {
        let client = async_nats::connect(options.url.as_str())
            .await
            .map_err(unavailable)?;
        Ok(NatsBackend {
            js: jetstream::new(client),
            prefix: options.prefix,
            delivery: options.delivery,
            streams: Arc::default(),
            consumers: Arc::default(),
            handles: Arc::default(),
            next_handle: Arc::new(AtomicU64::new(1)),
        })
    }

    fn stream_name(&self, channel: &ChannelId) -> String {
        format!(
            "{}-{}",
            self.prefix,
            encode_parts(&[channel.tenant(), channel.namespace(), channel.name()])
        )
    }

    fn subject(&self, channel: &ChannelId) -> String {
        format!(
            "{}.{}.{}.{}",
            self.prefix,
            channel.tenant(),
            channel.namespace(),
            channel.name()
        )
    }

    fn dead_subject(&self, channel: &ChannelId, group: &str) -> String {
        format!(
            "{}-dlq.{}.{}.{}.{group}",
            self.prefix,
            channel.tenant(),
            channel.namespace(),
            channel.name()
        )
    }

    async fn ensure_stream(&self, channel: &ChannelId) -> Result<()> {
        let name = self.stream_name(channel);
        if self.streams.lock().contains(&name) {
            return Ok(());
        }
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: name.clone(),
                subjects: vec![self.subject(channel)],
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        self.js
            .get_or_create_stream(jetstream::stream::Config {
                name: format!("{name}-dlq"),
                subjects: vec![format!(
                    "{}-dlq.{}.{}.{}.*",
                    self.prefix,
                    channel.tenant(),
                    channel.namespace(),
                    channel.name()
                )],
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        self.streams.lock().insert(name);
        Ok(())
    }

    async fn consumer(
        &self,
        channel: &ChannelId,
        group: &str,
        start: Start,
    ) -> Result<PullConsumer> {
        let stream_name = self.stream_name(channel);
        let key = (stream_name.clone(), group.to_owned());
        if let Some(c) = self.consumers.lock().get(&key) {
            return Ok(c.clone());
        }
        self.ensure_stream(channel).await?;
        let stream = self.js.get_stream(&stream_name).await.map_err(failed)?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                group,
                pull::Config {
                    durable_name: Some(group.to_owned()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.delivery.visibility_timeout,
                    // dead letters are decided here, from the server's delivery counter
                    max_deliver: -1,
                    deliver_policy: match start {
                        Start::Earliest => DeliverPolicy::All,
                        Start::Latest => DeliverPolicy::New,
                    },
                    ..Default::default()
                },
            )
            .await
            .map_err(failed)?;
        self.consumers.lock().insert(key, consumer.clone());
        Ok(consumer)
    }

    fn keep(&self, message: jetstream::Message) -> Receipt {
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let mut handles = self.handles.lock();
        if id % 256 == 0 {
            // handles of deliveries never acked (their consumer gave up): JetStream has
            // redelivered them long since
            let stale = self.delivery.visibility_timeout * 4 + Duration::from_secs(60);
            handles.retain(|_, h| h.taken.elapsed() < stale);
        }
        handles.insert(
            id,
            Handle {
                message,
                taken: Instant::now(),
            },
        );
        Receipt(id.to_string())
    }

    fn take_handle(&self, receipt: &Receipt) -> Result<jetstream::Message> {
        receipt
            .0
            .parse::<u64>()
            .ok()
            .and_then(|id| self.handles.lock().remove(&id))
            .map(|h| h.message)
            .ok_or_else(|| Error::UnknownReceipt(receipt.0.clone()))
    }

    async fn pull(
        &self,
        consumer: &PullConsumer,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<jetstream::Message>> {
        let mut out = Vec::new();
        let mut now = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(failed)?;
        while let Some(m) = now.next().await {
            out.push(m.map_err(failed)?);
        }
        if out.is_empty() && wait >= Duration::from_millis(10) {
            let mut first = consumer
                .batch()
                .max_messages(1)
                .expires(wait)
                .messages()
                .await
                .map_err(failed)?;
            while let Some(m) = first.next().await {
                out.push(m.map_err(failed)?);
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for NatsBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn semantics(&self) -> Semantics {
        Semantics::DURABLE
    }

    async fn ensure_group(&self, channel: &ChannelId, group: &str, start: Start) -> Result<()> {
        check_name("group", group)?;
        self.consumer(channel, group, start).await.map(|_| ())
    }

    async fn publish(&self, channel: &ChannelId, message: Outgoing) -> Result<String> {
        self.ensure_stream(channel).await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HEADERS, encode_headers(NAME, &message.headers)?.as_str());
        let ack = self
            .js
            .publish_with_headers(self.subject(channel), headers, message.payload)
            .await
            .map_err(unavailable)?
            .await
            .map_err(failed)?;
        Ok(ack.sequence.to_string())
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
        let pull_consumer = {
            let key = (self.stream_name(channel), group.to_owned());
            let known = self.consumers.lock().get(&key).cloned();
            match known {
                Some(c) => c,
                None => {
                    // an existing durable consumer (made by another process) is found by
                    // name; a new one starts at the end, as a topic subscriber would
                    self.consumer(channel, group, Start::Latest).await?
                }
            }
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut out = Vec::new();
            for m in self.pull(&pull_consumer, max, left).await? {
                let info = m.info().map_err(failed)?;
                let delivered = u32::try_from(info.delivered).unwrap_or(u32::MAX);
                let msg = Message {
                    id: info.stream_sequence.to_string(),
                    payload: m.payload.clone(),
                    headers: headers_of(&m.message)?,
                };
                if delivered > self.delivery.max_deliveries {
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert(HEADERS, encode_headers(NAME, &msg.headers)?.as_str());
                    headers.insert(DELIVERIES, (delivered - 1).to_string().as_str());
                    headers.insert("Plex-Id", msg.id.as_str());
                    self.js
                        .publish_with_headers(
                            self.dead_subject(channel, group),
                            headers,
                            msg.payload,
                        )
                        .await
                        .map_err(unavailable)?
                        .await
                        .map_err(failed)?;
                    m.ack_with(AckKind::Term).await.map_err(failed)?;
                    continue;
                }
                out.push(Delivery {
                    message: msg,
                    attempt: delivered,
                    receipt: self.keep(m),
                });
            }
            if !out.is_empty() || Instant::now() >= deadline {
                return Ok(out);
            }
        }
    }

    async fn ack(&self, _channel: &ChannelId, _group: &str, receipt: &Receipt) -> Result<()> {
        let m = self.take_handle(receipt)?;
        m.double_ack().await.map_err(failed)
    }

    async fn nack(
        &self,
        _channel: &ChannelId,
        _group: &str,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<()> {
        let m = self.take_handle(receipt)?;
        let delay = (!delay.is_zero()).then_some(delay);
        m.ack_with(AckKind::Nak(delay)).await.map_err(failed)
    }

    async fn dead_letters(
        &self,
        channel: &ChannelId,
        group: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.ensure_stream(channel).await?;
        let stream = self
            .js
            .get_stream(format!("{}-dlq", self.stream_name(channel)))
            .await
            .map_err(failed)?;
        let reader: PullConsumer = stream
            .create_consumer(pull::Config {
                filter_subject: self.dead_subject(channel, group),
                ack_policy: AckPolicy::None,
                deliver_policy: DeliverPolicy::All,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await
            .map_err(failed)?;
        let mut out = Vec::new();
        let mut batch = reader
            .fetch()
            .max_messages(max.max(1))
            .messages()
            .await
            .map_err(failed)?;
        while let Some(m) = batch.next().await {
            let m = m.map_err(failed)?;
            let h = m.headers.as_ref();
            let deliveries = h
                .and_then(|h| h.get(DELIVERIES))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(0);
            let id = h
                .and_then(|h| h.get("Plex-Id"))
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            out.push(DeadLetter {
                message: Message {
                    id,
                    payload: Bytes::copy_from_slice(&m.payload),
                    headers: headers_of(&m.message)?,
                },
                deliveries,
            });
        }
        Ok(out)
    }
}
