//! The Redis backend (feature `redis`): [`RedisBackend`], on Redis streams and consumer
//! groups.
//!
//! A channel is the stream `{prefix}:ch:{tenant}:{namespace}:{name}`; a subscriber group
//! is a Redis consumer group on it (created at `$` for a topic, `0` for a queue). New
//! messages come from `XREADGROUP ... >`; a delivery not acked within the visibility
//! timeout is taken over with `XAUTOCLAIM` by whichever consumer asks next, and Redis's
//! own delivery counter decides when it goes to the dead-letter stream
//! `{prefix}:dead:{..}:{group}`. A nack sets the entry's idle time so it becomes claimable
//! after the delay (`XCLAIM .. IDLE .. JUSTID`, which does not count as a delivery).
//! Streams are not trimmed: acked entries stay until the stream is trimmed or deleted by
//! an operator. A waiting `receive` polls every 20 ms (a blocking `XREADGROUP` would stall
//! the shared multiplexed connection).

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::Client;
use tokio::time::Instant;

use crate::backend::{MAX_BATCH, MAX_WAIT};
use crate::types::check_name;
use crate::types::{decode_headers, encode_headers};
use crate::{
    Backend, ChannelId, DeadLetter, Delivery, DeliveryOptions, Error, Message, Outgoing, Receipt,
    Result, Semantics, Start,
};

const NAME: &str = "redis";
const POLL: Duration = Duration::from_millis(20);

/// Where to connect.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// e.g. `redis://127.0.0.1:6379/`
    pub url: String,
    /// prepended to every key
    pub prefix: String,
    /// redelivery policy
    pub delivery: DeliveryOptions,
}

impl RedisOptions {
    /// Keys under `plex`.
    pub fn new(url: &str) -> Self {
        RedisOptions {
            url: url.to_owned(),
            prefix: "plex".to_owned(),
            delivery: DeliveryOptions::default(),
        }
    }
}

/// Channels on Redis streams. Cheap to clone.
#[derive(Clone)]
pub struct RedisBackend {
    conn: MultiplexedConnection,
    prefix: String,
    delivery: DeliveryOptions,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn map_err(e: redis::RedisError) -> Error {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        Error::Unavailable {
            backend: NAME,
            message: e.to_string(),
        }
    } else {
        Error::Backend {
            backend: NAME,
            message: e.to_string(),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn message(entry: &StreamId) -> Result<Message> {
    let payload: Vec<u8> = entry.get("p").unwrap_or_default();
    let headers: String = entry.get("h").unwrap_or_else(|| "{}".to_owned());
    Ok(Message {
        id: entry.get("id").unwrap_or_else(|| entry.id.clone()),
        payload: payload.into(),
        headers: decode_headers(NAME, &headers)?,
    })
}

impl RedisBackend {
    /// Connect.
    pub async fn connect(options: RedisOptions) -> Result<Self> {
        let client = Client::open(options.url.as_str()).map_err(map_err)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(map_err)?;
        Ok(RedisBackend {
            conn,
            prefix: options.prefix,
            delivery: options.delivery,
        })
    }

    fn stream(&self, channel: &ChannelId) -> String {
        format!("{}:ch:{}", self.prefix, channel.key())
    }

    fn dead(&self, channel: &ChannelId, group: &str) -> String {
        format!("{}:dead:{}:{group}", self.prefix, channel.key())
    }

    /// Take over deliveries idle past the visibility timeout; dead-letter the exhausted.
    async fn reclaim(
        &self,
        channel: &ChannelId,
        group: &str,
        consumer: &str,
        max: usize,
    ) -> Result<Vec<Delivery>> {
        let mut conn = self.conn.clone();
        let stream = self.stream(channel);
        let claimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&stream)
            .arg(group)
            .arg(consumer)
            .arg(ms(self.delivery.visibility_timeout))
            .arg("0-0")
            .arg("COUNT")
            .arg(max)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let mut out = Vec::new();
        for entry in claimed.claimed {
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&stream)
                .arg(group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1)
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            let times = pending
                .ids
                .first()
                .map_or(1, |p| u32::try_from(p.times_delivered).unwrap_or(u32::MAX));
            let msg = message(&entry)?;
            if times > self.delivery.max_deliveries {
                let headers = encode_headers(NAME, &msg.headers)?;
                let _: String = redis::cmd("XADD")
                    .arg(self.dead(channel, group))
                    .arg("*")
                    .arg("p")
                    .arg(msg.payload.as_ref())
                    .arg("h")
                    .arg(headers)
                    .arg("id")
                    .arg(&entry.id)
                    .arg("n")
                    .arg(times - 1)
                    .query_async(&mut conn)
                    .await
                    .map_err(map_err)?;
                let _: u64 = redis::cmd("XACK")
                    .arg(&stream)
                    .arg(group)
                    .arg(&entry.id)
                    .query_async(&mut conn)
                    .await
                    .map_err(map_err)?;
                continue;
            }
            out.push(Delivery {
                message: msg,
                attempt: times,
                receipt: Receipt(entry.id.clone()),
            });
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn semantics(&self) -> Semantics {
        Semantics::DURABLE
    }

    async fn ensure_group(&self, channel: &ChannelId, group: &str, start: Start) -> Result<()> {
        check_name("group", group)?;
        let mut conn = self.conn.clone();
        let from = match start {
            Start::Earliest => "0",
            Start::Latest => "$",
        };
        let created: redis::RedisResult<String> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.stream(channel))
            .arg(group)
            .arg(from)
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn publish(&self, channel: &ChannelId, message: Outgoing) -> Result<String> {
        let mut conn = self.conn.clone();
        let headers = encode_headers(NAME, &message.headers)?;
        redis::cmd("XADD")
            .arg(self.stream(channel))
            .arg("*")
            .arg("p")
            .arg(message.payload.as_ref())
            .arg("h")
            .arg(headers)
            .query_async(&mut conn)
            .await
            .map_err(map_err)
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
        let stream = self.stream(channel);
        loop {
            let mut out = self.reclaim(channel, group, consumer, max).await?;
            if out.len() < max {
                let mut conn = self.conn.clone();
                let read: Option<StreamReadReply> = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(group)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(max - out.len())
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(&mut conn)
                    .await
                    .map_err(map_err)?;
                for key in read.map(|r| r.keys).unwrap_or_default() {
                    for entry in key.ids {
                        out.push(Delivery {
                            message: message(&entry)?,
                            attempt: 1,
                            receipt: Receipt(entry.id.clone()),
                        });
                    }
                }
            }
            let now = Instant::now();
            if !out.is_empty() || now >= deadline {
                return Ok(out);
            }
            tokio::time::sleep_until((now + POLL).min(deadline)).await;
        }
    }

    async fn ack(&self, channel: &ChannelId, group: &str, receipt: &Receipt) -> Result<()> {
        check_receipt(receipt)?;
        let mut conn = self.conn.clone();
        let n: u64 = redis::cmd("XACK")
            .arg(self.stream(channel))
            .arg(group)
            .arg(&receipt.0)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Err(Error::UnknownReceipt(receipt.0.clone()));
        }
        Ok(())
    }

    async fn nack(
        &self,
        channel: &ChannelId,
        group: &str,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<()> {
        check_receipt(receipt)?;
        let mut conn = self.conn.clone();
        // idle so long that it is claimable `delay` from now
        let idle = ms(self.delivery.visibility_timeout).saturating_sub(ms(delay));
        let ids: Vec<String> = redis::cmd("XCLAIM")
            .arg(self.stream(channel))
            .arg(group)
            .arg("nack")
            .arg(0)
            .arg(&receipt.0)
            .arg("IDLE")
            .arg(idle)
            .arg("JUSTID")
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        if ids.is_empty() {
            return Err(Error::UnknownReceipt(receipt.0.clone()));
        }
        Ok(())
    }

    async fn dead_letters(
        &self,
        channel: &ChannelId,
        group: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>> {
        let mut conn = self.conn.clone();
        let entries: Vec<StreamId> = {
            let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
                .arg(self.dead(channel, group))
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(max.max(1))
                .query_async(&mut conn)
                .await
                .map_err(map_err)?;
            reply.ids
        };
        entries
            .iter()
            .map(|e| {
                Ok(DeadLetter {
                    message: message(e)?,
                    deliveries: e.get("n").unwrap_or(0),
                })
            })
            .collect()
    }
}

/// A receipt is a stream entry id, `<ms>-<seq>`; anything else (a made-up receipt from a
/// client) is unknown rather than a server error.
fn check_receipt(receipt: &Receipt) -> Result<()> {
    let ok = receipt
        .0
        .split_once('-')
        .is_some_and(|(ms, seq)| ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok());
    if ok {
        Ok(())
    } else {
        Err(Error::UnknownReceipt(receipt.0.clone()))
    }
}
