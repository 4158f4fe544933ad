//! The web dashboard: `GET /dashboard` serves one self-contained HTML page (inline CSS and
//! JS, no external resources) that polls `GET /api/v1/dashboard/summary` every second.
//!
//! The summary holds the node (id, uptime, request counts, journal backend), the registered
//! types with their message and error counters (from the runtime's metrics facet), the
//! actors with their type, lifecycle state and mailbox depth, and the supervision tree under
//! the root supervisor. The page turns counter deltas between polls into message rates.
//!
//! With authentication on, the summary needs a token (the page takes it from
//! `#token=...`) and shows only that tenant's activations and figures (messages its
//! activations served; no node-wide counts). A token with the operator claim
//! ([`crate::auth::OPERATOR_CLAIM`]), or authentication off, shows the whole node: every
//! tenant's totals and the actors outside the registry (supervisors, application workers).

use std::collections::HashMap;

use futures::future::BoxFuture;
use plexspaces_core::facet::short_type;
use plexspaces_core::supervisor::{ChildKind, Restart};
use plexspaces_core::{Pid, Supervisor};
use serde_json::{json, Value};

use crate::error::Result;
use crate::registry::{lifecycle_name, TypeKind};
use crate::service::NodeServices;

/// The dashboard page.
pub const DASHBOARD_HTML: &str = include_str!("dashboard.html");

/// How deep the supervision tree is walked.
const MAX_TREE_DEPTH: usize = 8;

/// The JSON the dashboard polls. `tenant`: only this tenant's activations and figures (a
/// caller that is not an operator); `None`: every actor and the node-wide figures (auth off,
/// or an operator token).
pub async fn summary(state: &NodeServices, tenant: Option<&str>) -> Result<Value> {
    let registry = state.actors.registry();
    let node = registry.node();
    let activations = registry.activations(tenant);

    let stats = state.actors.type_stats(tenant);
    let messages_total: u64 = stats.iter().map(|t| t.messages).sum();
    let errors_total: u64 = stats.iter().map(|t| t.errors).sum();
    let types: Vec<Value> = stats
        .iter()
        .map(|t| {
            json!({
                "actor_type": t.actor_type,
                "kind": t.kind,
                "rust_type": short_type(t.rust_type),
                "messages": t.messages,
                "errors": t.errors,
                "actors": t.actors,
            })
        })
        .collect();

    let mut actors = Vec::new();
    let mut managed: HashMap<String, ()> = HashMap::new();
    for activation in &activations {
        let key = activation.key();
        for pid in activation.pids() {
            let id = pid.id().to_string();
            managed.insert(id.clone(), ());
            actors.push(json!({
                "id": id,
                "actor_type": key.actor_type,
                "kind": activation.kind().as_str(),
                "tenant": key.tenant,
                "namespace": key.namespace,
                "key": match activation.kind() {
                    TypeKind::Virtual => key.key.as_str(),
                    TypeKind::WorkerPool { .. } => "",
                },
                "lifecycle": lifecycle_name(pid.lifecycle()),
                "mailbox_len": pid.mailbox_len(),
                "idle_ms": u64::try_from(activation.idle_for().as_millis()).unwrap_or(u64::MAX),
            }));
        }
    }
    if tenant.is_none() {
        let mut others: Vec<Value> = node
            .actor_ids()
            .into_iter()
            .filter(|id| !managed.contains_key(&id.to_string()))
            .filter_map(|id| node.lookup(&id))
            .map(|pid| {
                json!({
                    "id": pid.id().to_string(),
                    "actor_type": short_type(pid.actor_type()),
                    "kind": "system",
                    "tenant": "",
                    "namespace": "",
                    "key": "",
                    "lifecycle": lifecycle_name(pid.lifecycle()),
                    "mailbox_len": pid.mailbox_len(),
                    "idle_ms": Value::Null,
                })
            })
            .collect();
        others.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        actors.extend(others);
    }

    let supervision = match node.root_supervisor() {
        Some(root) => tree(root.pid(), "root", ChildKind::Supervisor, None, 0).await,
        None => Value::Null,
    };

    // Node-wide counts only for the node-wide view; a tenant sees its own activations.
    let (http_requests, actors_on_node, live) = match tenant {
        None => (
            json!(state.telemetry.http.total()),
            json!(node.actor_count()),
            registry.live_count(),
        ),
        Some(_) => (
            Value::Null,
            Value::Null,
            activations.iter().map(|a| a.pids().len()).sum(),
        ),
    };
    Ok(json!({
        "node": {
            "node_id": node.name(),
            "uptime_ms": u64::try_from(state.telemetry.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "status": if state.gate.is_draining() || node.is_shutting_down() { "stopping" } else { "serving" },
            "http_requests": http_requests,
            "actors_on_node": actors_on_node,
            "activations": live,
            "journal": state.telemetry.journal_backend,
            "auth": if state.gate.auth_disabled() { "off" } else { "on" },
            "tenant": tenant,
        },
        "messages_total": messages_total,
        "errors_total": errors_total,
        "types": types,
        "actors": actors,
        "supervision": supervision,
        "cluster": cluster_summary(state),
        "durable_failures": state.actors.failed_durable(tenant).await,
    }))
}

/// The cluster's members as this node sees them (a node alone: only itself).
fn cluster_summary(state: &NodeServices) -> Value {
    let status = state.cluster.status(&crate::service::Caller::default());
    json!({
        "name": status.cluster_name,
        "clustered": status.clustered,
        "members_by_state": state.cluster.counts(),
        "members": status.members,
    })
}

fn restart_name(restart: Restart) -> &'static str {
    match restart {
        Restart::Permanent => "permanent",
        Restart::Transient => "transient",
        Restart::Temporary => "temporary",
    }
}

/// One node of the supervision tree, its children asked with `which_children`.
fn tree(
    pid: Pid,
    child_id: &str,
    kind: ChildKind,
    restart: Option<Restart>,
    depth: usize,
) -> BoxFuture<'static, Value> {
    let child_id = child_id.to_owned();
    Box::pin(async move {
        let mut children = Vec::new();
        let mut error = Value::Null;
        if kind == ChildKind::Supervisor && depth < MAX_TREE_DEPTH {
            match pid.typed::<Supervisor>() {
                Some(sup) => match sup.which_children().await {
                    Ok(list) => {
                        for child in list {
                            let value = match child.pid {
                                Some(p) => {
                                    tree(p, &child.id, child.kind, Some(child.restart), depth + 1)
                                        .await
                                }
                                None => json!({
                                    "child_id": child.id,
                                    "id": Value::Null,
                                    "kind": kind_name(child.kind),
                                    "restart": restart_name(child.restart),
                                    "lifecycle": "stopped",
                                    "children": [],
                                }),
                            };
                            children.push(value);
                        }
                    }
                    Err(e) => error = Value::String(e.to_string()),
                },
                None => error = Value::String("not a local supervisor".into()),
            }
        }
        json!({
            "child_id": child_id,
            "id": pid.id().to_string(),
            "kind": kind_name(kind),
            "restart": restart.map(restart_name),
            "lifecycle": lifecycle_name(pid.lifecycle()),
            "mailbox_len": pid.mailbox_len(),
            "children": children,
            "error": error,
        })
    })
}

fn kind_name(kind: ChildKind) -> &'static str {
    match kind {
        ChildKind::Worker => "worker",
        ChildKind::Supervisor => "supervisor",
    }
}
