//! Activities: options, retry policy, and what one attempt receives.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::ActivityFailure;

/// How failed attempts are retried. Delays grow as
/// `initial_interval * backoff_coefficient^(attempt-1)`, capped at `maximum_interval`;
/// there is no jitter, so the bounds are exact.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delay before the second attempt.
    pub initial_interval: Duration,
    /// Growth factor of the delay per attempt (at least 1.0).
    pub backoff_coefficient: f64,
    /// Upper bound of one delay.
    pub maximum_interval: Duration,
    /// Total attempts allowed; 0 means unlimited.
    pub maximum_attempts: u32,
    /// Failure kinds that are never retried.
    pub non_retryable: Vec<String>,
}

impl Default for RetryPolicy {
    /// Temporal's defaults: 1 s, ×2, at most 100 s, unlimited attempts.
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(1),
            backoff_coefficient: 2.0,
            maximum_interval: Duration::from_secs(100),
            maximum_attempts: 0,
            non_retryable: Vec::new(),
        }
    }
}

impl RetryPolicy {
    /// A single attempt, never retried.
    pub fn no_retry() -> Self {
        Self {
            maximum_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let coefficient = self.backoff_coefficient.max(1.0);
        let exp = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_interval.as_secs_f64() * coefficient.powi(exp);
        let capped = secs.min(self.maximum_interval.as_secs_f64());
        Duration::try_from_secs_f64(capped).unwrap_or(self.maximum_interval)
    }

    /// Whether another attempt may follow failed attempt number `attempt`.
    pub fn allows_retry(&self, attempt: u32, failure: &ActivityFailure) -> bool {
        !failure.non_retryable
            && !self.non_retryable.iter().any(|k| k == &failure.kind)
            && (self.maximum_attempts == 0 || attempt < self.maximum_attempts)
    }
}

/// Options of one activity call.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityOptions {
    /// Limit of one attempt; an attempt over it fails with kind `timeout` (retryable).
    pub start_to_close: Option<Duration>,
    /// An attempt that does not call [`ActivityContext::heartbeat`] within this interval
    /// fails with kind `heartbeat_timeout` (retryable).
    pub heartbeat_timeout: Option<Duration>,
    /// Retries.
    pub retry: RetryPolicy,
}

impl Default for ActivityOptions {
    /// Five minutes per attempt, no heartbeat, the default retry policy.
    fn default() -> Self {
        Self {
            start_to_close: Some(Duration::from_secs(300)),
            heartbeat_timeout: None,
            retry: RetryPolicy::default(),
        }
    }
}

impl ActivityOptions {
    /// Same options with another retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Same options with another per-attempt limit.
    pub fn with_start_to_close(mut self, limit: Duration) -> Self {
        self.start_to_close = Some(limit);
        self
    }

    /// Same options with a heartbeat timeout.
    pub fn with_heartbeat_timeout(mut self, limit: Duration) -> Self {
        self.heartbeat_timeout = Some(limit);
        self
    }
}

/// What one attempt of an activity receives.
#[derive(Debug, Clone)]
pub struct ActivityContext {
    pub(crate) key: String,
    pub(crate) attempt: u32,
    pub(crate) heartbeat: Arc<Mutex<Instant>>,
    pub(crate) cancelled: watch::Receiver<bool>,
}

impl ActivityContext {
    /// The idempotency key of this activity: `tenant/namespace/workflow/run/step`. The same
    /// for every attempt and every replay of this step, so an external system can
    /// deduplicate retries and the window between running the activity and journaling it.
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// The key of this attempt: the idempotency key plus `/attempt`.
    pub fn attempt_key(&self) -> String {
        format!("{}/{}", self.key, self.attempt)
    }

    /// The attempt number, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Reports progress; resets the heartbeat timeout.
    pub fn heartbeat(&self) {
        *self.heartbeat.lock() = Instant::now();
    }

    /// Whether the workflow was cancelled while this attempt ran (the attempt's future is
    /// dropped right after; long-running code can poll this to stop early).
    pub fn is_cancelled(&self) -> bool {
        *self.cancelled.borrow()
    }
}

/// Runs one attempt with the per-attempt and heartbeat timeouts; a panic is a retryable
/// failure of kind `panic`.
pub(crate) async fn run_attempt<T, Fut>(
    fut: Fut,
    heartbeat: Arc<Mutex<Instant>>,
    options: &ActivityOptions,
) -> Result<T, ActivityFailure>
where
    Fut: Future<Output = Result<T, ActivityFailure>>,
{
    let guarded = AssertUnwindSafe(fut).catch_unwind().map(|r| {
        r.unwrap_or_else(|_| Err(ActivityFailure::retryable("panic", "the activity panicked")))
    });
    let with_heartbeat = async {
        match options.heartbeat_timeout {
            Some(limit) => tokio::select! {
                r = guarded => r,
                () = heartbeat_lapsed(heartbeat, limit) => Err(ActivityFailure::retryable(
                    "heartbeat_timeout",
                    format!("no heartbeat for {limit:?}"),
                )),
            },
            None => guarded.await,
        }
    };
    match options.start_to_close {
        Some(limit) => tokio::time::timeout(limit, with_heartbeat)
            .await
            .unwrap_or_else(|_| {
                Err(ActivityFailure::retryable(
                    "timeout",
                    format!("attempt exceeded start-to-close timeout {limit:?}"),
                ))
            }),
        None => with_heartbeat.await,
    }
}

async fn heartbeat_lapsed(heartbeat: Arc<Mutex<Instant>>, limit: Duration) {
    loop {
        let deadline = *heartbeat.lock() + limit;
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            initial_interval: Duration::from_millis(100),
            backoff_coefficient: 2.0,
            maximum_interval: Duration::from_millis(500),
            maximum_attempts: 5,
            non_retryable: vec!["Fatal".into()],
        };
        let delays: Vec<_> = (1..=5).map(|a| p.delay_after(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 500, 500]);
        let f = ActivityFailure::retryable("Flaky", "x");
        assert!(p.allows_retry(4, &f));
        assert!(!p.allows_retry(5, &f));
        assert!(!p.allows_retry(1, &ActivityFailure::retryable("Fatal", "x")));
        assert!(!p.allows_retry(1, &ActivityFailure::non_retryable("Other", "x")));
    }
}
