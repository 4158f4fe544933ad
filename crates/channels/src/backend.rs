//! The trait every channel backend implements.

use std::time::Duration;

use async_trait::async_trait;

use crate::{ChannelId, DeadLetter, Delivery, Outgoing, Receipt, Result, Semantics, Start};

/// Longest a single [`Backend::receive`] waits.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Most deliveries a single [`Backend::receive`] returns.
pub const MAX_BATCH: usize = 1000;

/// A place messages are published to and consumed from, per (channel, subscriber group).
///
/// Every message published to a channel is delivered to every group that exists when it
/// is published (a topic); within a group, each message goes to one consumer at a time (a
/// queue is a channel with one group). Callers use [`crate::Channels`]; this trait is for
/// backend authors and the conformance suite.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Backend name for errors and logs.
    fn name(&self) -> &'static str;

    /// What it guarantees.
    fn semantics(&self) -> Semantics;

    /// Create `group` on `channel` if it does not exist (idempotent).
    async fn ensure_group(&self, channel: &ChannelId, group: &str, start: Start) -> Result<()>;

    /// Append a message; returns its id.
    async fn publish(&self, channel: &ChannelId, message: Outgoing) -> Result<String>;

    /// Up to `max` deliveries for `consumer` of `group`, waiting up to `wait` for the first:
    /// redeliveries whose visibility timeout passed, then new messages. A message out of
    /// deliveries moves to the dead letters here.
    async fn receive(
        &self,
        channel: &ChannelId,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Done with the message: it is not delivered to this group again.
    async fn ack(&self, channel: &ChannelId, group: &str, receipt: &Receipt) -> Result<()>;

    /// Give the message back for redelivery after `delay` (it counts as a delivery).
    async fn nack(
        &self,
        channel: &ChannelId,
        group: &str,
        receipt: &Receipt,
        delay: Duration,
    ) -> Result<()>;

    /// The group's dead letters, oldest first, at most `max`.
    async fn dead_letters(
        &self,
        channel: &ChannelId,
        group: &str,
        max: usize,
    ) -> Result<Vec<DeadLetter>>;
}
