//! [`LoggingFacet`]: a `tracing` event per handled message.

use async_trait::async_trait;
use plexspaces_core::facet::{ActorInfo, MessageMeta, MessageOutcome};
use plexspaces_core::Facet;

/// Logs each handled message (actor id, message type, call or cast, replay, handler time,
/// failure) at `level`, target `plexspaces::actor`.
#[derive(Debug, Clone, Copy)]
pub struct LoggingFacet {
    level: tracing::Level,
}

impl LoggingFacet {
    /// A facet logging at `level`.
    pub fn new(level: tracing::Level) -> std::sync::Arc<Self> {
        std::sync::Arc::new(LoggingFacet { level })
    }
}

#[async_trait]
impl Facet for LoggingFacet {
    fn name(&self) -> &'static str {
        "logging"
    }

    async fn after_message(
        &self,
        actor: &ActorInfo,
        msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> plexspaces_core::Result<()> {
        macro_rules! log {
            ($lvl:expr) => {
                tracing::event!(
                    target: "plexspaces::actor",
                    $lvl,
                    actor = %actor.id,
                    msg_type = %msg.msg_type,
                    call = matches!(msg.kind, plexspaces_core::facet::MessageKind::Call),
                    replaying = msg.replaying,
                    elapsed_us = outcome.elapsed.as_micros() as u64,
                    failed = outcome.failed,
                    "message handled"
                )
            };
        }
        match self.level {
            tracing::Level::ERROR => log!(tracing::Level::ERROR),
            tracing::Level::WARN => log!(tracing::Level::WARN),
            tracing::Level::INFO => log!(tracing::Level::INFO),
            tracing::Level::DEBUG => log!(tracing::Level::DEBUG),
            _ => log!(tracing::Level::TRACE),
        }
        Ok(())
    }
}
