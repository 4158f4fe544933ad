//! Lateness of durable timers and reminders as Prometheus metrics on `/metrics`:
//! `plexspaces_workflow_timer_lateness_seconds` (a workflow timer: fired time minus its
//! recorded fire time, observed once per fire, also after a restart that kept it from firing
//! on time) and `plexspaces_reminder_lateness_seconds` (a delivered reminder: delivery time
//! minus the tick's due time), both histograms.

use std::sync::Arc;

use prometheus::{Histogram, HistogramOpts};

use crate::error::{Error, Result};

/// Buckets from 1 ms to one day: lateness is milliseconds while a node runs and can be hours
/// across an outage.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 21600.0,
    86400.0,
];

/// The two lateness histograms, registered in the node's registry.
#[derive(Clone)]
pub struct LatenessMetrics {
    /// Workflow timers.
    pub timers: Histogram,
    /// Reminders.
    pub reminders: Histogram,
}

impl std::fmt::Debug for LatenessMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatenessMetrics").finish_non_exhaustive()
    }
}

impl LatenessMetrics {
    /// Registers both histograms in `registry`.
    pub fn new(registry: &prometheus::Registry) -> Result<Self> {
        let err = |e: prometheus::Error| Error::Config(format!("metrics: {e}"));
        let histogram = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()))
        };
        let timers = histogram(
            "plexspaces_workflow_timer_lateness_seconds",
            "How late durable workflow timers fired (fired time minus recorded fire time)",
        )
        .map_err(err)?;
        let reminders = histogram(
            "plexspaces_reminder_lateness_seconds",
            "How late reminders were delivered (delivery time minus the tick's due time)",
        )
        .map_err(err)?;
        registry.register(Box::new(timers.clone())).map_err(err)?;
        registry
            .register(Box::new(reminders.clone()))
            .map_err(err)?;
        Ok(LatenessMetrics { timers, reminders })
    }

    /// The workflow engine's timer hook: observes each fire's lateness.
    pub fn timer_hook(&self) -> plexspaces_workflow::TimerHook {
        let timers = self.timers.clone();
        Arc::new(
            move |_key: &plexspaces_workflow::WorkflowKey, fire_at_ms: u64, fired_at_ms: u64| {
                timers.observe(fired_at_ms.saturating_sub(fire_at_ms) as f64 / 1000.0);
            },
        )
    }

    /// Observes a reminder delivered at `delivered_at_ms` for the tick due at `due_at_ms`.
    pub fn reminder_delivered(&self, due_at_ms: u64, delivered_at_ms: u64) {
        self.reminders
            .observe(delivered_at_ms.saturating_sub(due_at_ms) as f64 / 1000.0);
    }
}
