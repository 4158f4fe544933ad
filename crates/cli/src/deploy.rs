//! `plexspaces deploy`, `plexspaces deployments` and `plexspaces undeploy`: WASM actor
//! types of your tenant, over gRPC `plexspaces.v1.DeployService`.

use std::path::PathBuf;

use clap::Args;
use plexspaces_proto::v1::deploy_service_client::DeployServiceClient;
use plexspaces_proto::v1::{DeployRequest, DeploymentInfo, DeploymentRef, ListDeploymentsRequest};
use serde_json::{json, Value};

use crate::{channel, request, Failure, Output};

/// `plexspaces deploy`.
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// The WebAssembly component (`plexspaces-py build`, `plexspaces-ts build`, or
    /// `cargo build --target wasm32-wasip2`).
    pub wasm: PathBuf,
    /// The actor type name it is invoked by.
    #[arg(long = "actor-type", short = 't')]
    pub actor_type: String,
    /// Namespace.
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    /// Memory limit of one activation in bytes (0: the node's default).
    #[arg(long, default_value_t = 0)]
    pub max_memory_bytes: u64,
    /// Time limit of one call in ms (0: the node's default).
    #[arg(long, default_value_t = 0)]
    pub call_timeout_ms: u64,
    /// JSON handed to the guest's `init`.
    #[arg(long, default_value = "")]
    pub config: String,
}

/// `plexspaces deployments`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this namespace.
    #[arg(long, short, default_value = "")]
    pub namespace: String,
    /// Only this type (describes it; exit code 4 when it is not deployed).
    #[arg(long = "actor-type", short = 't')]
    pub actor_type: Option<String>,
}

/// `plexspaces undeploy`.
#[derive(Args, Debug)]
pub struct UndeployArgs {
    /// The deployed actor type.
    pub actor_type: String,
    /// Namespace.
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
}

fn info_json(d: &DeploymentInfo) -> Value {
    let config = serde_json::from_str::<Value>(&d.config_json).unwrap_or(Value::Null);
    json!({
        "tenant": d.tenant,
        "namespace": d.namespace,
        "actor_type": d.actor_type,
        "version": d.version,
        "digest": d.digest,
        "size_bytes": d.size_bytes,
        "facets": d.facets,
        "handlers": d.handlers,
        "durable": d.durable,
        "max_memory_bytes": d.max_memory_bytes,
        "call_timeout_ms": d.call_timeout_ms,
        "config": config,
        "deployed_at_ms": d.deployed_at_ms,
    })
}

fn info_line(d: &DeploymentInfo) -> String {
    let digest: String = d.digest.chars().take(12).collect();
    format!(
        "{}/{}  v{}  {} bytes  sha256:{}{}  handlers: {}",
        d.namespace,
        d.actor_type,
        d.version,
        d.size_bytes,
        digest,
        if d.durable { "  durable" } else { "" },
        d.handlers.join(", ")
    )
}

async fn client(endpoint: &str) -> Result<DeployServiceClient<tonic::transport::Channel>, Failure> {
    Ok(DeployServiceClient::new(channel(endpoint).await?).max_decoding_message_size(16 << 20))
}

/// `plexspaces deploy FILE --actor-type T [--namespace NS]`.
pub async fn deploy(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    args: DeployArgs,
) -> Result<(), Failure> {
    let wasm = std::fs::read(&args.wasm).map_err(|e| Failure {
        code: 6,
        message: format!("cannot read {}: {e}", args.wasm.display()),
    })?;
    if !args.config.is_empty() {
        serde_json::from_str::<Value>(&args.config).map_err(|e| Failure {
            code: 6,
            message: format!("--config is not JSON: {e}"),
        })?;
    }
    let r = client(endpoint)
        .await?
        .deploy(request(
            DeployRequest {
                namespace: args.namespace,
                actor_type: args.actor_type,
                wasm: wasm.into(),
                max_memory_bytes: args.max_memory_bytes,
                call_timeout_ms: args.call_timeout_ms,
                config_json: args.config,
            },
            token,
        )?)
        .await?
        .into_inner();
    let d = r.deployment.unwrap_or_default();
    match output {
        Output::Json => {
            let mut v = info_json(&d);
            v["replaced_version"] = json!(r.replaced_version);
            v["deactivated"] = json!(r.deactivated);
            v["notes"] = json!(r.notes);
            println!("{v}");
        }
        Output::Human => {
            println!("deployed {}", info_line(&d));
            if r.replaced_version > 0 {
                println!(
                    "replaced v{} ({} live activations deactivated)",
                    r.replaced_version, r.deactivated
                );
            }
            for note in &r.notes {
                println!("note: {note}");
            }
        }
    }
    Ok(())
}

/// `plexspaces deployments [--namespace NS] [--actor-type T]`.
pub async fn list(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    args: ListArgs,
) -> Result<(), Failure> {
    let mut client = client(endpoint).await?;
    let deployments = match args.actor_type {
        Some(actor_type) => {
            let namespace = if args.namespace.is_empty() {
                "default".to_owned()
            } else {
                args.namespace
            };
            vec![client
                .describe_deployment(request(
                    DeploymentRef {
                        namespace,
                        actor_type,
                    },
                    token,
                )?)
                .await?
                .into_inner()]
        }
        None => {
            client
                .list_deployments(request(
                    ListDeploymentsRequest {
                        namespace: args.namespace,
                    },
                    token,
                )?)
                .await?
                .into_inner()
                .deployments
        }
    };
    match output {
        Output::Json => {
            let all: Vec<Value> = deployments.iter().map(info_json).collect();
            println!("{}", json!({ "deployments": all }));
        }
        Output::Human => {
            if deployments.is_empty() {
                println!("no deployments");
            }
            for d in &deployments {
                println!("{}", info_line(d));
            }
        }
    }
    Ok(())
}

/// `plexspaces undeploy T [--namespace NS]`.
pub async fn undeploy(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    args: UndeployArgs,
) -> Result<(), Failure> {
    let r = client(endpoint)
        .await?
        .undeploy(request(
            DeploymentRef {
                namespace: args.namespace,
                actor_type: args.actor_type,
            },
            token,
        )?)
        .await?
        .into_inner();
    let d = r.deployment.unwrap_or_default();
    match output {
        Output::Json => println!(
            "{}",
            json!({ "undeployed": info_json(&d), "deactivated": r.deactivated })
        ),
        Output::Human => println!(
            "undeployed {}/{} v{} ({} live activations deactivated)",
            d.namespace, d.actor_type, d.version, r.deactivated
        ),
    }
    Ok(())
}
