//! The in-memory backend: [`MemoryBackend`]. Fast, not durable; the default.
//!
//! Per channel, a log of messages and per group a map of pending sequence numbers with
//! their attempt count and the instant they become visible again. Publishing fans the
//! sequence number out to every group; a message leaves the log once no group holds it.
//! Time is tokio's clock, so a paused test clock drives visibility timeouts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{MAX_BATCH, MAX_WAIT};
use crate::types::check_name;
use crate::{
    Backend, ChannelId, DeadLetter, Delivery, DeliveryOptions, Error, Message, Outgoing, Receipt,
    Result, Semantics, Start,
};

#[derive(Debug, Clone, Copy)]
struct Pending {
    attempts: u32,
    visible_at: Instant,
}

#[derive(Debug, Default)]
struct Group {
    pending: BTreeMap<u64, Pending>,
    dead: Vec<DeadLetter>,
}

#[derive(Debug, Default)]
struct Channel {
    next_seq: u64,
    log: BTreeMap<u64, Arc<Message>>,
    groups: HashMap<String, Group>,
}

impl Channel {
    fn forget_if_done(&mut self, seq: u64) {
        if !self.groups.values().any(|g| g.pending.contains_key(&seq)) {
            self.log.remove(&seq);
        }
    }
}

/// Channels in this process's memory.
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Mutex<HashMap<ChannelId, Channel>>>,
    published: Arc<Notify>,
    options: DeliveryOptions,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new(DeliveryOptions::default())
    }
}

impl MemoryBackend {
    /// Empty, with this redelivery policy.
    pub fn new(options: DeliveryOptions) -> Self {
        MemoryBackend {
            inner: Arc::default(),
            published: Arc::new(Notify::new()),
            options,
        }
    }

    /// Another handle on the same channels with a different redelivery policy (as a second
    /// process with its own configuration would be).
    pub fn with_delivery(&self, options: DeliveryOptions) -> Self {
        MemoryBackend {
            options,
            ..self.clone()
        }
    }

    /// Claim what is visible now, or say when something becomes visible next.
    fn claim(
        &self,
        channel: &ChannelId,
        group: &str,
        max: usize,
    ) -> Result<(Vec<Delivery>, Option<Instant>)> {
        let now = Instant::now();
        let mut map = self.inner.lock();
        let ch = map.entry(channel.clone()).or_default();
        let Channel { log, groups, .. } = ch;
        let Some(g) = groups.get_mut(group) else {
            return Err(Error::invalid(
                "group",
                format!("{group} is not subscribed to {channel}"),
            ));
        };
        let mut out = Vec::new();
        let mut next_visible: Option<Instant> = None;
        let mut dead = Vec::new();
        for (&seq, p) in g.pending.iter_mut() {
            if out.len() >= max {
                break;
            }
            if p.visible_at > now {
                next_visible = Some(next_visible.map_or(p.visible_at, |n| n.min(p.visible_at)));
                continue;
            }
            let Some(msg) = log.get(&seq) else {
                continue;
            };
            if p.attempts >= self.options.max_deliveries {
                dead.push(seq);
                g.dead.push(DeadLetter {
                    message: (**msg).clone(),
                    deliveries: p.attempts,
                });
                continue;
            }
            p.attempts += 1;
            p.visible_at = now + self.options.visibility_timeout;
            out.push(Delivery {
                message: (**msg).clone(),
                attempt: p.attempts,
                receipt: Receipt(seq.to_string()),
            });
        }
        for seq in &dead {
            g.pending.remove(seq);
        }
        for seq in dead {
            if !groups.values().any(|g| g.pending.contains_key(&seq)) {
                log.remove(&seq);
            }
        }
        Ok((out, next_visible))
    }
}

fn parse_receipt(r: &Receipt) -> Result<u64> {
    r.0.parse().map_err(|_| Error::UnknownReceipt(r.0.clone()))
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn semantics(&self) -> Semantics {
        Semantics {
            durable: false,
            acknowledged: true,
            queues: true,
        }
    }

    async fn ensure_group(&self, channel: &ChannelId, group: &str, start: Start) -> Result<()> {
        check_name("group", group)?;
        let now = Instant::now();
        let mut map = self.inner.lock();
        let ch = map.entry(channel.clone()).or_default();
        if ch.groups.contains_key(group) {
            return Ok(());
        }
        let mut g = Group::default();
        if start == Start::Earliest {
            for &seq in ch.log.keys() {
                g.pending.insert(
                    seq,
                    Pending {
                        attempts: 0,
                        visible_at: now,
                    },
                );
            }
        }
        ch.groups.insert(group.to_owned(), g);
        Ok(())
    }

    async fn publish(&self, channel: &ChannelId, message: Outgoing) -> Result<String> {
        let now = Instant::now();
        let id = {
            let mut map = self.inner.lock();
            let ch = map.entry(channel.clone()).or_default();
            ch.next_seq += 1;
            let seq = ch.next_seq;
            if ch.groups.is_empty() {
                // nobody subscribed: a topic drops it, as it would for a late subscriber
                return Ok(seq.to_string());
            }
            ch.log.insert(
                seq,
                Arc::new(Message {
                    id: seq.to_string(),
                    payload: message.payload,
                    headers: message.headers,
                }),
            );
            for g in ch.groups.values_mut() {
                g.pending.insert(
                    seq,
                    Pending {
                        attempts: 0,
                        visible_at: now,
                    },
                );
            }
            seq.to_string()
        };
        self.published.notify_waiters();
        Ok(id)
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
            // register interest before looking, so a publish in between is not missed
            let notified = self.published.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (got, next_visible) = self.claim(channel, group, max)?;
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            let until = next_visible.map_or(deadline, |n| n.min(deadline));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(until) => {}
            }
        }
    }

    async fn ack(&self, channel: &ChannelId, group: &str, receipt: &Receipt) -> Result<()> {
        let seq = parse_receipt(receipt)?;
        let mut map = self.inner.lock();
        let ch = map
            .get_mut(channel)
            .ok_or_else(|| Error::UnknownReceipt(receipt.0.clone()))?;
        let removed = ch
            .groups
            .get_mut(group)
            .and_then(|g| g.pending.remove(&seq));
        if removed.is_none() {
            return Err(Error::UnknownReceipt(receipt.0.clone()));
        }
        ch.forget_if_done(seq);
        Ok(())
    }

    async fn nack(
        &self,
        channel: &ChannelId,
        group: &str,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<()> {
        let seq = parse_receipt(receipt)?;
        {
            let mut map = self.inner.lock();
            let p = map
                .get_mut(channel)
                .and_then(|ch| ch.groups.get_mut(group))
                .and_then(|g| g.pending.get_mut(&seq))
                .ok_or_else(|| Error::UnknownReceipt(receipt.0.clone()))?;
            p.visible_at = Instant::now() + delay;
        }
        self.published.notify_waiters();
        Ok(())
    }

    async fn dead_letters(
        &self,
        channel: &ChannelId,
        group: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>> {
        let map = self.inner.lock();
        Ok(map
            .get(channel)
            .and_then(|ch| ch.groups.get(group))
            .map(|g| g.dead.iter().take(max).cloned().collect())
            .unwrap_or_default())
    }
}
