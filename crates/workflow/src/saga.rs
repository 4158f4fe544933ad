//! The saga helper: compensations registered as steps succeed, run in reverse order, each
//! exactly once (each compensation is an activity, so its completion is journaled).

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use crate::{ActivityContext, ActivityFailure, ActivityOptions, Result, WorkflowContext};

type Compensation = Arc<
    dyn Fn(ActivityContext) -> BoxFuture<'static, std::result::Result<Value, ActivityFailure>>
        + Send
        + Sync,
>;

/// Compensations of the steps done so far. Add one after each step succeeds; on failure
/// call [`Saga::compensate`].
#[derive(Default)]
pub struct Saga {
    compensations: Vec<(String, ActivityOptions, Compensation)>,
}

impl std::fmt::Debug for Saga {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.compensations.iter().map(|(n, _, _)| n).collect();
        f.debug_struct("Saga")
            .field("compensations", &names)
            .finish()
    }
}

impl Saga {
    /// An empty saga.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the compensation of a step that just succeeded. It runs as an activity
    /// named `name` with `options` (retries included) if the saga compensates.
    pub fn add_compensation<T, F, Fut>(&mut self, name: &str, options: ActivityOptions, f: F)
    where
        T: Serialize + Send + 'static,
        F: Fn(ActivityContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<T, ActivityFailure>> + Send + 'static,
    {
        let f = Arc::new(f);
        let erased: Compensation = Arc::new(move |actx| {
            let fut = f(actx);
            Box::pin(async move {
                let v = fut.await?;
                serde_json::to_value(v)
                    .map_err(|e| ActivityFailure::non_retryable("codec", e.to_string()))
            })
        });
        self.compensations.push((name.to_owned(), options, erased));
    }

    /// Names of the registered compensations, in registration order.
    pub fn compensation_names(&self) -> Vec<&str> {
        self.compensations
            .iter()
            .map(|(n, _, _)| n.as_str())
            .collect()
    }

    /// Runs the compensations in reverse order. Every compensation is attempted even if an
    /// earlier one fails for good; the first such failure is returned at the end.
    pub async fn compensate(self, ctx: &WorkflowContext) -> Result<()> {
        let mut first_error = None;
        for (name, options, f) in self.compensations.into_iter().rev() {
            let r: Result<Value> = ctx.activity(&name, &options, |actx| f(actx)).await;
            if let Err(e) = r {
                tracing::warn!(workflow = %ctx.key(), compensation = %name, error = %e, "compensation failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
