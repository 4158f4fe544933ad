//! A generic driver of [`DurableExecution`] for a handler: the reference for the actor glue.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Begin, DurableExecution, DurableOptions, Journal, Result, StreamId};

/// A message handler with state that can be snapshotted.
#[async_trait]
pub trait DurableHandler: Send {
    /// Handles one message. All non-determinism (effects, time, randomness) must go through
    /// `exec`; the returned bytes are the reply.
    async fn handle(&mut self, exec: &mut DurableExecution, message: &[u8]) -> Result<Vec<u8>>;
    /// Encodes the state for a checkpoint.
    fn snapshot(&self) -> Result<Vec<u8>>;
    /// Restores the state from a checkpoint.
    fn restore(&mut self, snapshot: &[u8]) -> Result<()>;
}

/// A durable handler: activation (snapshot + replay), then one message at a time.
#[derive(Debug)]
pub struct Durable<H> {
    exec: DurableExecution,
    handler: H,
}

impl<H: DurableHandler> Durable<H> {
    /// Activates the stream and rebuilds `handler` from the snapshot and the journal suffix.
    pub async fn activate(
        journal: Arc<dyn Journal>,
        stream: StreamId,
        options: DurableOptions,
        mut handler: H,
    ) -> Result<Self> {
        let mut exec = DurableExecution::activate(journal, stream, options).await?;
        if let Some(s) = exec.snapshot_state() {
            handler.restore(s)?;
        }
        while let Some(m) = exec.next_replay()? {
            match handler.handle(&mut exec, &m.payload).await {
                Ok(reply) => {
                    exec.commit(reply).await?;
                }
                Err(e) => {
                    let _ = exec.abort(&e.to_string()).await;
                    return Err(e);
                }
            }
        }
        Ok(Self { exec, handler })
    }

    /// Handles one live message; the reply is returned only once the message is durable.
    pub async fn handle(
        &mut self,
        message: &[u8],
        idempotency_key: Option<&str>,
    ) -> Result<Vec<u8>> {
        match self.exec.begin_message(message, idempotency_key).await? {
            Begin::Duplicate(reply) => return Ok(reply),
            Begin::Started { .. } => {}
        }
        let reply = match self.handler.handle(&mut self.exec, message).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.exec.abort(&e.to_string()).await;
                return Err(e);
            }
        };
        let reply = self.exec.commit(reply).await?;
        if self.exec.should_checkpoint() {
            let state = self.handler.snapshot()?;
            self.exec.checkpoint(state).await?;
        }
        Ok(reply)
    }

    /// The handler (its state).
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The execution (epoch, history, checkpoints).
    pub fn execution(&self) -> &DurableExecution {
        &self.exec
    }

    /// Mutable access to the execution (for an explicit checkpoint).
    pub fn execution_mut(&mut self) -> &mut DurableExecution {
        &mut self.exec
    }

    /// Takes a checkpoint now.
    pub async fn checkpoint(&mut self) -> Result<crate::CheckpointReport> {
        let state = self.handler.snapshot()?;
        self.exec.checkpoint(state).await
    }
}
