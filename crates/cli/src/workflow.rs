//! `plexspaces workflow ...`: durable workflows on the node over gRPC (`WorkflowService`):
//! start, list, describe, result, history, signal, query, update, cancel (docs/cli.md).
//!
//! Workflows are named by your token's tenant, `--namespace` and a workflow id. Inputs and
//! payloads are JSON; output is the JSON the HTTP API returns with `--output json`.

use clap::{Args, Subcommand};
use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::workflow_service_client::WorkflowServiceClient;
use serde_json::{json, Value};

use crate::{channel, request, Failure, Output};

#[derive(Args, Debug, Clone)]
pub(crate) struct WorkflowArgs {
    /// The workflow id.
    workflow_id: String,
    /// Namespace.
    #[arg(long, short, default_value = "default")]
    namespace: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum WorkflowCommand {
    /// Starts a workflow (idempotent: an existing id is reported, not restarted).
    Start {
        /// A registered workflow type, e.g. approval or countdown.
        workflow_type: String,
        #[command(flatten)]
        at: WorkflowArgs,
        /// The input, JSON (e.g. '{"subject": "deploy"}' for approval, 500 for countdown).
        #[arg(long, short, default_value = "null")]
        input: String,
    },
    /// Your tenant's workflows, newest first.
    List {
        /// Only this namespace (default: every namespace).
        #[arg(long, short, default_value = "")]
        namespace: String,
        /// Only this status: running, completed, failed, cancelled or suspended.
        #[arg(long, default_value = "")]
        status: String,
        /// At most this many (1 to 1000).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// A workflow's record, history size and whether the node drives it.
    Describe(WorkflowArgs),
    /// The workflow's outcome: exit 0 when completed, 1 when failed, cancelled or
    /// suspended, 7 when still running after --wait-ms.
    Result {
        #[command(flatten)]
        at: WorkflowArgs,
        /// How long to wait for the workflow to end (at most 30000).
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
    /// The recorded history of a run, one event per line.
    History {
        #[command(flatten)]
        at: WorkflowArgs,
        /// The run (default: the current one).
        #[arg(long, default_value_t = 0)]
        run: u64,
    },
    /// Sends a signal.
    Signal {
        #[command(flatten)]
        at: WorkflowArgs,
        /// The signal's name, e.g. approve.
        name: String,
        /// The payload, JSON.
        #[arg(long, short, default_value = "null")]
        data: String,
        /// A second signal with the same id is not stored again.
        #[arg(long)]
        dedupe_id: Option<String>,
    },
    /// Prints the value the workflow last set for a query.
    Query {
        #[command(flatten)]
        at: WorkflowArgs,
        /// The query's name, e.g. status.
        name: String,
    },
    /// Sends an update and prints the workflow's answer.
    Update {
        #[command(flatten)]
        at: WorkflowArgs,
        /// The update's name, e.g. comment.
        name: String,
        /// The payload, JSON.
        #[arg(long, short, default_value = "null")]
        data: String,
        /// The update's id: retrying with it prints the same answer.
        #[arg(long)]
        update_id: Option<String>,
        /// How long to wait for the answer (0: 10000; at most 30000).
        #[arg(long, default_value_t = 0)]
        wait_ms: u64,
    },
    /// Requests cancellation.
    Cancel {
        #[command(flatten)]
        at: WorkflowArgs,
        /// Why (recorded with the cancellation).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Checks that `text` is JSON and returns it as the wire carries it.
fn json_arg(what: &str, text: &str) -> Result<String, Failure> {
    serde_json::from_str::<Value>(text).map_err(|e| Failure {
        code: 6,
        message: format!("{what} is not JSON: {e}"),
    })?;
    Ok(text.to_owned())
}

/// A JSON field from the wire (empty: null; not JSON: the text as a string).
fn value(text: &str) -> Value {
    if text.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

fn failure_json(f: Option<&pb::WorkflowFailure>) -> Value {
    f.map(|f| json!({ "kind": f.kind, "message": f.message }))
        .unwrap_or(Value::Null)
}

fn info_json(w: &pb::WorkflowInfo) -> Value {
    json!({
        "key": { "tenant": w.tenant, "namespace": w.namespace, "workflow_id": w.workflow_id },
        "workflow_type": w.workflow_type,
        "version": w.version,
        "run": w.run,
        "status": w.status,
        "input": value(&w.input_json),
        "result": value(&w.result_json),
        "failure": failure_json(w.failure.as_ref()),
        "queries": value(&w.queries_json),
        "parent": (!w.parent.is_empty()).then_some(&w.parent),
        "created_ms": w.created_ms,
        "updated_ms": w.updated_ms,
    })
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

pub(crate) async fn run(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    cmd: WorkflowCommand,
) -> Result<(), Failure> {
    let mut client = WorkflowServiceClient::new(channel(endpoint).await?);
    match cmd {
        WorkflowCommand::Start {
            workflow_type,
            at,
            input,
        } => {
            let r = client
                .start(request(
                    pb::StartWorkflowRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                        workflow_type,
                        input_json: json_arg("--input", &input)?,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => println!(
                    "{}",
                    json!({
                        "key": { "namespace": r.namespace, "workflow_id": r.workflow_id },
                        "workflow_type": r.workflow_type,
                        "run": r.run,
                        "status": r.status,
                        "already_started": r.already_started,
                    })
                ),
                Output::Human if r.already_started => println!(
                    "{} already exists ({}, {})",
                    r.workflow_id, r.workflow_type, r.status
                ),
                Output::Human => println!(
                    "started {} {} (run {})",
                    r.workflow_type, r.workflow_id, r.run
                ),
            }
        }
        WorkflowCommand::List {
            namespace,
            status,
            limit,
        } => {
            let r = client
                .list(request(
                    pb::ListWorkflowsRequest {
                        namespace,
                        status,
                        limit,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => {
                    let workflows: Vec<Value> = r.workflows.iter().map(info_json).collect();
                    println!("{}", json!({ "workflows": workflows }));
                }
                Output::Human => {
                    if r.workflows.is_empty() {
                        println!("no workflows");
                    }
                    for w in &r.workflows {
                        println!(
                            "{:<10} {:<24} {:<12} {:<10} run={}",
                            w.namespace, w.workflow_id, w.workflow_type, w.status, w.run
                        );
                    }
                }
            }
        }
        WorkflowCommand::Describe(at) => {
            let r = client
                .describe(request(
                    pb::DescribeWorkflowRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let mut v = r.workflow.as_ref().map(info_json).unwrap_or(json!({}));
            if let Some(o) = v.as_object_mut() {
                o.insert("history_events".into(), json!(r.history_events));
                o.insert("active_here".into(), json!(r.active_here));
            }
            match output {
                Output::Json => println!("{v}"),
                Output::Human => println!("{}", pretty(&v)),
            }
        }
        WorkflowCommand::Result { at, wait_ms } => {
            let id = at.workflow_id.clone();
            let r = client
                .get_result(request(
                    pb::WorkflowResultRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                        wait_ms,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let outcome = match r.status.as_str() {
                "completed" => json!({ "status": "completed", "result": value(&r.result_json) }),
                "running" => json!({ "status": "running" }),
                status => json!({ "status": status, "failure": failure_json(r.failure.as_ref()) }),
            };
            match (output, r.status.as_str()) {
                (Output::Json, _) => println!("{outcome}"),
                (Output::Human, "completed") => println!("{}", pretty(&outcome["result"])),
                (Output::Human, _) => {}
            }
            match r.status.as_str() {
                "completed" => {}
                "running" => {
                    return Err(Failure {
                        code: 7,
                        message: format!("workflow {id} is still running"),
                    })
                }
                status => {
                    let f = r.failure.unwrap_or_default();
                    return Err(Failure {
                        code: 1,
                        message: format!("workflow {id} {status}: {}: {}", f.kind, f.message),
                    });
                }
            }
        }
        WorkflowCommand::History { at, run } => {
            let r = client
                .get_history(request(
                    pb::WorkflowHistoryRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                        run,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let events: Vec<Value> = r.events_json.iter().map(|e| value(e)).collect();
            match output {
                Output::Json => println!("{}", json!({ "run": r.run, "events": events })),
                Output::Human => {
                    println!("run {}", r.run);
                    for e in &r.events_json {
                        println!("{e}");
                    }
                }
            }
        }
        WorkflowCommand::Signal {
            at,
            name,
            data,
            dedupe_id,
        } => {
            let r = client
                .signal(request(
                    pb::SignalWorkflowRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                        name,
                        payload_json: json_arg("--data", &data)?,
                        dedupe_id: dedupe_id.unwrap_or_default(),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => println!("{}", json!({ "seq": r.seq })),
                Output::Human => println!("signal accepted (seq {})", r.seq),
            }
        }
        WorkflowCommand::Query { at, name } => {
            let r = client
                .query(request(
                    pb::QueryWorkflowRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                        name,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let v = value(&r.value_json);
            match output {
                Output::Json => println!("{}", json!({ "value": v })),
                Output::Human => println!("{}", pretty(&v)),
            }
        }
        WorkflowCommand::Update {
            at,
            name,
            data,
            update_id,
            wait_ms,
        } => {
            let r = client
                .update(request(
                    pb::UpdateWorkflowRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                        name,
                        payload_json: json_arg("--data", &data)?,
                        update_id: update_id.unwrap_or_default(),
                        wait_ms,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let v = value(&r.value_json);
            match output {
                Output::Json => println!("{}", json!({ "value": v, "update_id": r.update_id })),
                Output::Human => println!("{}", pretty(&v)),
            }
        }
        WorkflowCommand::Cancel { at, reason } => {
            client
                .cancel(request(
                    pb::CancelWorkflowRequest {
                        namespace: at.namespace,
                        workflow_id: at.workflow_id,
                        reason,
                    },
                    token,
                )?)
                .await?;
            match output {
                Output::Json => println!("{}", json!({ "accepted": true })),
                Output::Human => println!("cancellation requested"),
            }
        }
    }
    Ok(())
}
