//! The node's built-in workflow types, registered at start: [`approval`] and
//! [`countdown`].

use std::time::Duration;

use plexspaces_workflow::{
    workflow_fn, ActivityOptions, RetryPolicy, UpdateRequest, WorkflowBehavior, WorkflowContext,
    WorkflowError,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Input of the built-in `approval` workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalInput {
    /// What is to be approved.
    pub subject: String,
    /// Take one `comment` update before waiting for the `approve` signal.
    #[serde(default)]
    pub require_comment: bool,
}

/// The built-in `approval` workflow, input [`ApprovalInput`]:
///
/// 1. records the request (activity `request_approval`); query `status` is `requested`;
/// 2. with `require_comment`: status `awaiting_comment`, takes one update `comment` (a
///    non-empty JSON string, else the update is rejected), answers
///    `{"accepted": true, "comment": ...}` and sets query `comment`;
/// 3. status `awaiting_approval`: waits for signal `approve` (any JSON payload);
/// 4. status `approved`; completes with
///    `{"subject", "approved": true, "approval": <signal payload>, "comment", "request"}`.
///
/// Cancelled while waiting, it sets status `cancelled` and ends cancelled.
pub fn approval() -> impl WorkflowBehavior<Input = ApprovalInput, Output = Value> {
    workflow_fn(
        "approval",
        |ctx: WorkflowContext, input: ApprovalInput| async move {
            ctx.set_query("status", &"requested")?;
            let subject = input.subject.clone();
            let once = ActivityOptions::default().with_retry(RetryPolicy::no_retry());
            let request: Value = ctx
                .activity("request_approval", &once, move |actx| {
                    let request =
                        json!({ "subject": subject, "request_id": actx.idempotency_key() });
                    async move { Ok(request) }
                })
                .await?;
            let mut comment = None;
            if input.require_comment {
                ctx.set_query("status", &"awaiting_comment")?;
                let update: UpdateRequest<String> =
                    mark_cancelled(&ctx, ctx.next_update("comment").await)?;
                ctx.set_query("comment", &update.payload)?;
                ctx.complete_update(
                    &update,
                    &json!({ "accepted": true, "comment": update.payload }),
                )
                .await?;
                comment = Some(update.payload);
            }
            ctx.set_query("status", &"awaiting_approval")?;
            let approval: Value = mark_cancelled(&ctx, ctx.signal("approve").await)?;
            ctx.set_query("status", &"approved")?;
            Ok(json!({
                "subject": input.subject,
                "approved": true,
                "approval": approval,
                "comment": comment,
                "request": request,
            }))
        },
    )
    .with_update_validator("comment", |payload| match payload.as_str() {
        Some(c) if !c.trim().is_empty() => Ok(()),
        Some(_) => Err("the comment is empty".into()),
        None => Err("the comment must be a JSON string".into()),
    })
}

/// Sets query `status` to `cancelled` when `r` is the cancellation.
fn mark_cancelled<T>(
    ctx: &WorkflowContext,
    r: plexspaces_workflow::Result<T>,
) -> plexspaces_workflow::Result<T> {
    if let Err(WorkflowError::Cancelled { .. }) = &r {
        ctx.set_query("status", &"cancelled")?;
    }
    r
}

/// The built-in `countdown` workflow: input a number of milliseconds; a durable timer of
/// that length (it fires once, never early, also across a node restart), then completes
/// with `{"slept_ms": n}`. Query `status`: `sleeping`, then `done` (or `cancelled`).
pub fn countdown() -> impl WorkflowBehavior<Input = u64, Output = Value> {
    workflow_fn("countdown", |ctx: WorkflowContext, ms: u64| async move {
        ctx.set_query("status", &"sleeping")?;
        mark_cancelled(&ctx, ctx.sleep(Duration::from_millis(ms)).await)?;
        ctx.set_query("status", &"done")?;
        Ok(json!({ "slept_ms": ms }))
    })
}
