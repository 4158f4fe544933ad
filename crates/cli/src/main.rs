//! `plexspaces`: start a node, mint tokens, and talk to a node over gRPC.
//!
//! Exit codes: 0 ok; 1 failed (the node or actor failed, the workflow failed or was
//! cancelled, or has closed); 2 usage error; 3 node unreachable or shutting down; 4 not
//! found (unknown type, nothing active, no matching tuple with `--no-wait`, no such
//! workflow or query); 5 unauthenticated or forbidden; 6 invalid input (bad JSON, bad tuple
//! or template, a rejected update); 7 timed out (a blocking `space read`/`take`, a workflow
//! still running, an update not answered in time); 8 overloaded.

mod cluster;
mod deploy;
mod faults;
mod space;
mod storage;
mod telemetry;
mod workflow;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use plexspaces_node::auth::{mint_hs256, TokenSpec};
use plexspaces_node::{ConfigSources, NodeConfig, NodeServer};
use plexspaces_proto::v1::actor_service_client::ActorServiceClient;
use plexspaces_proto::v1::node_service_client::NodeServiceClient;
use plexspaces_proto::v1::{
    ActorAddress, ActorSummary, AskRequest, CapacityRequest, DurableStatusRequest,
    DurableStatusResponse, HealthRequest, ListRequest, MetricsSummaryRequest, ResolveFailedRequest,
    SpawnRequest, StopRequest, TellRequest,
};
use serde_json::{json, Value};
use tonic::transport::Channel;

#[derive(Parser, Debug)]
#[command(
    name = "plexspaces",
    version,
    about = "PlexSpaces: run a node and talk to it"
)]
struct Cli {
    /// gRPC endpoint of the node to talk to.
    #[arg(
        long,
        global = true,
        env = "PLEXSPACES_ENDPOINT",
        default_value = "http://127.0.0.1:8000"
    )]
    endpoint: String,
    /// Bearer token (see `plexspaces token create`).
    #[arg(long, global = true, env = "PLEXSPACES_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "PLEXSPACES_OUTPUT",
        default_value = "human"
    )]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node (embedded defaults: state under the data dir, HTTP on 127.0.0.1:8094,
    /// gRPC on 127.0.0.1:8000).
    Start(StartArgs),
    /// Tokens for the HTTP and gRPC APIs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The node's health, capacity and metrics summary.
    Status,
    /// Actors of your tenant.
    #[command(subcommand)]
    Actor(ActorCommand),
    /// Sends a message and prints the reply (same as `actor ask`).
    Invoke(MessageArgs),
    /// Your tenant's tuple spaces: write, read, take and count tuples.
    #[command(subcommand)]
    Space(space::SpaceCommand),
    /// Your tenant's durable workflows: start, signal, query, update, cancel, await.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// The cluster the node is in: its members.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Certificates for mTLS between nodes.
    #[command(subcommand)]
    Cert(cluster::CertCommand),
    /// Your tenant's key-value store: get, put (TTL, compare-and-swap), delete, list, incr.
    #[command(subcommand)]
    Kv(storage::KvCommand),
    /// Your tenant's blobs: put, get (streamed), delete, list.
    #[command(subcommand)]
    Blob(storage::BlobCommand),
    /// Your tenant's queues and topics: publish, receive, ack, nack, dead letters.
    #[command(subcommand)]
    Channel(storage::ChannelCommand),
    /// Deploys a WASM actor type (a WebAssembly component) to your tenant, or redeploys it.
    Deploy(deploy::DeployArgs),
    /// Your tenant's deployed WASM actor types (or one of them, with --actor-type).
    Deployments(deploy::ListArgs),
    /// Removes a deployed WASM actor type (its live activations are deactivated).
    Undeploy(deploy::UndeployArgs),
}

#[derive(Args, Debug)]
struct StartArgs {
    /// TOML config file (its keys: docs/configuration.md).
    #[arg(long, short, env = "PLEXSPACES_CONFIG")]
    config: Option<PathBuf>,
    /// The node's name.
    #[arg(long)]
    node_id: Option<String>,
    /// HTTP listen address, HOST:PORT.
    #[arg(long)]
    http_addr: Option<String>,
    /// gRPC listen address, HOST:PORT.
    #[arg(long, conflicts_with = "listen_addr")]
    grpc_addr: Option<String>,
    /// The node's listen address for gRPC (same as --grpc-addr).
    #[arg(long)]
    listen_addr: Option<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Joins the cluster of this name (cluster.name; unset: the node runs alone).
    #[arg(long)]
    cluster_name: Option<String>,
    /// This node's cluster address, HOST:PORT (TCP transport and UDP gossip).
    #[arg(long)]
    cluster_addr: Option<String>,
    /// Other nodes' cluster addresses to join through, HOST:PORT,...
    #[arg(long, value_delimiter = ',')]
    seeds: Option<Vec<String>>,
    /// The IP address other nodes reach this node at (cluster.advertise_addr).
    #[arg(long)]
    advertise_addr: Option<String>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    print_config: bool,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Mints an HS256 token for a tenant.
    Create {
        /// The tenant the token acts for.
        #[arg(long)]
        tenant: String,
        /// The node's HS256 secret (auth.jwt_secret).
        #[arg(long, env = "PLEXSPACES_JWT_SECRET", hide_env_values = true)]
        secret: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        /// `sub` claim.
        #[arg(long, default_value = "plexspaces-cli")]
        subject: String,
        /// The claim that carries the tenant.
        #[arg(long, default_value = "tenant_id")]
        tenant_claim: String,
        /// `iss` claim.
        #[arg(long)]
        issuer: Option<String>,
        /// Marks the token as an operator's (claim `plexspaces_operator: true`): it may see
        /// node-wide figures (every tenant's totals) on the dashboard and in `status`.
        #[arg(long)]
        operator: bool,
        /// A role for the `roles` claim (repeat for more), checked by an actor's
        /// `AuthorizationFacet`.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
}

#[derive(Args, Debug, Clone)]
struct AddressArgs {
    /// The registered actor type, e.g. counter.
    actor_type: String,
    /// Namespace.
    #[arg(long, short, default_value = "default")]
    namespace: String,
    /// Instance key of a virtual actor.
    #[arg(long, short, default_value = "default")]
    key: String,
    /// Tenant (must match your token's).
    #[arg(long, default_value = "")]
    tenant: String,
}

impl AddressArgs {
    fn address(&self) -> ActorAddress {
        ActorAddress {
            tenant: self.tenant.clone(),
            namespace: self.namespace.clone(),
            actor_type: self.actor_type.clone(),
            key: self.key.clone(),
        }
    }
}

#[derive(Args, Debug, Clone)]
struct MessageArgs {
    #[command(flatten)]
    address: AddressArgs,
    /// The handler, e.g. increment.
    msg_type: String,
    /// JSON payload.
    #[arg(long, short, default_value = "{}")]
    data: String,
    /// Reply timeout in milliseconds (0: the node's default).
    #[arg(long, default_value_t = 0)]
    timeout_ms: u64,
}

#[derive(Subcommand, Debug)]
enum ActorCommand {
    /// Active actors (optionally of one namespace or type).
    List {
        #[arg(long, short, default_value = "")]
        namespace: String,
        #[arg(long = "type", short = 't', default_value = "")]
        actor_type: String,
    },
    /// Activates an actor.
    Spawn(AddressArgs),
    /// Sends a message without waiting for a reply.
    Tell(MessageArgs),
    /// Sends a message and prints the reply.
    Ask(MessageArgs),
    /// Deactivates an actor (a virtual actor comes back on its next message, state intact).
    Stop(AddressArgs),
    /// A durable actor's retry state after handler failures: ok, retrying or paused, with
    /// the failed message and its last error.
    Status(AddressArgs),
    /// Retries a durable actor's paused (or backing-off) message on its next call, with a
    /// fresh attempt budget.
    Resume(AddressArgs),
    /// Drops a durable actor's paused (or backing-off) message; the actor moves on.
    Abandon {
        #[command(flatten)]
        address: AddressArgs,
        /// Why (kept in the actor's journal).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

fn durable_status_json(s: &DurableStatusResponse) -> Value {
    json!({
        "actor": s.actor,
        "state": s.state,
        "active": s.active,
        "max_attempts": s.max_attempts,
        "failed_message": s.failed_message.as_ref().map(|f| json!({
            "seq": f.seq,
            "idempotency_key": (!f.idempotency_key.is_empty()).then_some(&f.idempotency_key),
            "attempts": f.attempts,
            "last_error": f.last_error,
            "last_failed_at_ms": f.last_failed_at_ms,
            "retry_at_ms": (f.retry_at_ms != 0).then_some(f.retry_at_ms),
        })),
    })
}

fn print_durable_status(output: Output, verb: Option<&str>, s: &DurableStatusResponse) {
    match output {
        Output::Json => {
            let mut v = durable_status_json(s);
            if let Some(verb) = verb {
                v = json!({ verb: true, "before": v });
            }
            println!("{v}");
        }
        Output::Human => {
            if let Some(verb) = verb {
                println!("{verb} {}", s.actor);
                return;
            }
            println!("{}: {}", s.actor, s.state);
            if let Some(f) = &s.failed_message {
                println!(
                    "message {} failed {} of {} attempts; last error: {}",
                    f.seq, f.attempts, s.max_attempts, f.last_error
                );
            }
        }
    }
}

/// A failure with the exit code that says what kind it is.
struct Failure {
    code: u8,
    message: String,
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        let (code, hint) = match s.code() {
            Code::Unavailable => (3, " (is the node running? check --endpoint)"),
            Code::NotFound => (4, ""),
            Code::Unauthenticated => (5, " (pass --token or set PLEXSPACES_TOKEN)"),
            Code::PermissionDenied => (5, ""),
            Code::InvalidArgument | Code::OutOfRange => (6, ""),
            Code::DeadlineExceeded => (7, ""),
            Code::ResourceExhausted => (8, " (retry later)"),
            _ => (1, ""),
        };
        Failure {
            code,
            message: format!("{}: {}{hint}", code_name(s.code()), s.message()),
        }
    }
}

fn code_name(code: tonic::Code) -> String {
    format!("{code:?}").to_lowercase()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let output = cli.output;
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if output == Output::Json {
                eprintln!("{}", json!({ "error": f.message, "exit_code": f.code }));
            } else {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Start(args) => start(args).await,
        Command::Token(TokenCommand::Create {
            tenant,
            secret,
            ttl,
            subject,
            tenant_claim,
            issuer,
            operator,
            roles,
        }) => {
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            let token = mint_hs256(
                &TokenSpec {
                    tenant: &tenant,
                    tenant_claim: &tenant_claim,
                    subject: &subject,
                    ttl_secs: ttl,
                    issuer: issuer.as_deref(),
                    operator,
                    roles: &roles,
                },
                &secret,
            )
            .map_err(|e| Failure {
                code: 6,
                message: e.to_string(),
            })?;
            match cli.output {
                Output::Human => println!("{token}"),
                Output::Json => println!("{}", json!({ "token": token, "tenant": tenant })),
            }
            Ok(())
        }
        Command::Status => status(&cli.endpoint, cli.token.as_deref(), cli.output).await,
        Command::Actor(cmd) => actor(&cli.endpoint, cli.token.as_deref(), cli.output, cmd).await,
        Command::Invoke(args) => {
            actor(
                &cli.endpoint,
                cli.token.as_deref(),
                cli.output,
                ActorCommand::Ask(args),
            )
            .await
        }
        Command::Space(cmd) => {
            space::run(&cli.endpoint, cli.token.as_deref(), cli.output, cmd).await
        }
        Command::Workflow(cmd) => {
            workflow::run(&cli.endpoint, cli.token.as_deref(), cli.output, cmd).await
        }
        Command::Cluster(cmd) => {
            cluster::run(&cli.endpoint, cli.token.as_deref(), cli.output, cmd).await
        }
        Command::Cert(cmd) => cluster::cert(cli.output, cmd),
        Command::Kv(cmd) => storage::kv(&cli.endpoint, cli.token.as_deref(), cli.output, cmd).await,
        Command::Blob(cmd) => {
            storage::blob(&cli.endpoint, cli.token.as_deref(), cli.output, cmd).await
        }
        Command::Channel(cmd) => {
            storage::channel_cmd(&cli.endpoint, cli.token.as_deref(), cli.output, cmd).await
        }
        Command::Deploy(args) => {
            deploy::deploy(&cli.endpoint, cli.token.as_deref(), cli.output, args).await
        }
        Command::Deployments(args) => {
            deploy::list(&cli.endpoint, cli.token.as_deref(), cli.output, args).await
        }
        Command::Undeploy(args) => {
            deploy::undeploy(&cli.endpoint, cli.token.as_deref(), cli.output, args).await
        }
    }
}

async fn start(args: StartArgs) -> Result<(), Failure> {
    let mut overrides = Vec::new();
    let mut set = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            overrides.push((key.to_owned(), toml::Value::String(v)));
        }
    };
    set("node_id", args.node_id);
    set("http.addr", args.http_addr);
    set("grpc.addr", args.grpc_addr.or(args.listen_addr));
    set("data_dir", args.data_dir.map(|p| p.display().to_string()));
    set("cluster.name", args.cluster_name);
    set("cluster.addr", args.cluster_addr);
    set("cluster.advertise_addr", args.advertise_addr);
    if let Some(seeds) = args.seeds {
        let seeds = seeds.into_iter().map(toml::Value::String).collect();
        overrides.push(("cluster.seeds".to_owned(), toml::Value::Array(seeds)));
    }
    let config = NodeConfig::load(ConfigSources {
        file: args.config,
        // The fault switch's variable is the cli's, not a config key (see faults.rs).
        env: std::env::vars().filter(|(k, _)| k != faults::ENV).collect(),
        overrides,
    })
    .map_err(|e| Failure {
        code: 6,
        message: e.to_string(),
    })?;
    if args.print_config {
        print!("{}", config.masked_toml());
        return Ok(());
    }
    let telemetry =
        telemetry::init(&config.otlp).map_err(|message| Failure { code: 6, message })?;
    let result = run_node(config).await;
    telemetry.shutdown().await;
    result
}

async fn run_node(config: NodeConfig) -> Result<(), Failure> {
    let handle = NodeServer::start(config, Vec::new())
        .await
        .map_err(|e| Failure {
            code: if e.kind() == "config" { 6 } else { 1 },
            message: e.to_string(),
        })?;
    if let Err(message) = faults::start(&handle) {
        handle.shutdown().await;
        return Err(Failure { code: 6, message });
    }
    handle
        .run_until_signal()
        .await
        .context("waiting for a signal")?;
    Ok(())
}

async fn channel(endpoint: &str) -> Result<Channel, Failure> {
    let ep = Channel::from_shared(endpoint.to_owned()).map_err(|e| Failure {
        code: 2,
        message: format!("bad --endpoint {endpoint:?}: {e}"),
    })?;
    ep.connect().await.map_err(|e| Failure {
        code: 3,
        message: format!(
            "cannot reach the node at {endpoint}: {e} (is it running? check --endpoint)"
        ),
    })
}

fn request<T>(msg: T, token: Option<&str>) -> Result<tonic::Request<T>, Failure> {
    let mut req = tonic::Request::new(msg);
    if let Some(token) = token {
        let value = format!("Bearer {token}").parse().map_err(|_| Failure {
            code: 6,
            message: "the token is not valid metadata text".into(),
        })?;
        req.metadata_mut().insert("authorization", value);
    }
    Ok(req)
}

async fn status(endpoint: &str, token: Option<&str>, output: Output) -> Result<(), Failure> {
    let mut client = NodeServiceClient::new(channel(endpoint).await?);
    let health = client
        .health(request(HealthRequest {}, token)?)
        .await?
        .into_inner();
    let capacity = client
        .capacity(request(CapacityRequest {}, token)?)
        .await?
        .into_inner();
    let metrics = client
        .metrics_summary(request(MetricsSummaryRequest {}, token)?)
        .await?
        .into_inner();
    let types: Vec<Value> = metrics
        .types
        .iter()
        .map(|t| json!({"actor_type": t.actor_type, "activations": t.activations, "messages": t.messages, "errors": t.errors}))
        .collect();
    match output {
        Output::Json => println!(
            "{}",
            json!({
                "node_id": health.node_id,
                "status": health.status,
                "version": health.version,
                "uptime_ms": health.uptime_ms,
                "actor_count": capacity.actor_count,
                "activation_count": capacity.activation_count,
                "max_activations": capacity.max_activations,
                "mailbox_capacity": capacity.mailbox_capacity,
                "cpus": capacity.cpus,
                "actor_types": capacity.actor_types,
                "http_requests": metrics.http_requests,
                "grpc_requests": metrics.grpc_requests,
                "types": types,
            })
        ),
        Output::Human => {
            println!(
                "node        {} ({}, v{})",
                health.node_id, health.status, health.version
            );
            println!("uptime      {}s", health.uptime_ms / 1000);
            println!(
                "actors      {} live, {} activations (max {})",
                capacity.actor_count, capacity.activation_count, capacity.max_activations
            );
            println!("cpus        {}", capacity.cpus);
            println!(
                "requests    {} http, {} grpc",
                metrics.http_requests, metrics.grpc_requests
            );
            println!("types       {}", capacity.actor_types.join(", "));
            for t in &metrics.types {
                println!(
                    "  {:<16} {} activations, {} messages, {} errors",
                    t.actor_type, t.activations, t.messages, t.errors
                );
            }
        }
    }
    Ok(())
}

fn summary_json(s: &ActorSummary) -> Value {
    let a = s.address.clone().unwrap_or_default();
    json!({
        "actor_id": s.actor_id,
        "tenant": a.tenant,
        "namespace": a.namespace,
        "actor_type": a.actor_type,
        "key": a.key,
        "kind": s.kind,
        "lifecycle": s.lifecycle,
        "mailbox_len": s.mailbox_len,
        "idle_ms": s.idle_ms,
    })
}

fn payload(data: &str) -> Result<Vec<u8>, Failure> {
    serde_json::from_str::<Value>(data).map_err(|e| Failure {
        code: 6,
        message: format!("--data is not JSON: {e}"),
    })?;
    Ok(data.as_bytes().to_vec())
}

async fn actor(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    cmd: ActorCommand,
) -> Result<(), Failure> {
    let mut client = ActorServiceClient::new(channel(endpoint).await?);
    match cmd {
        ActorCommand::List {
            namespace,
            actor_type,
        } => {
            let list = client
                .list(request(
                    ListRequest {
                        tenant: String::new(),
                        namespace,
                        actor_type,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => {
                    let actors: Vec<Value> = list.actors.iter().map(summary_json).collect();
                    println!("{}", json!({ "actors": actors }));
                }
                Output::Human => {
                    if list.actors.is_empty() {
                        println!("no active actors");
                    }
                    for s in &list.actors {
                        let a = s.address.clone().unwrap_or_default();
                        println!(
                            "{:<10} {}/{}  {:<8} {:<7} mailbox={} idle={}ms  {}",
                            a.namespace,
                            a.actor_type,
                            a.key,
                            s.kind,
                            s.lifecycle,
                            s.mailbox_len,
                            s.idle_ms,
                            s.actor_id
                        );
                    }
                }
            }
        }
        ActorCommand::Spawn(address) => {
            let r = client
                .spawn(request(
                    SpawnRequest {
                        address: Some(address.address()),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => println!(
                    "{}",
                    json!({ "actor_id": r.actor_id, "activated": r.activated })
                ),
                Output::Human => println!(
                    "{} {}",
                    r.actor_id,
                    if r.activated {
                        "(activated)"
                    } else {
                        "(already active)"
                    }
                ),
            }
        }
        ActorCommand::Tell(m) => {
            client
                .tell(request(
                    TellRequest {
                        address: Some(m.address.address()),
                        msg_type: m.msg_type,
                        payload: payload(&m.data)?.into(),
                        content_type: "application/json".into(),
                    },
                    token,
                )?)
                .await?;
            match output {
                Output::Json => println!("{}", json!({ "accepted": true })),
                Output::Human => println!("sent"),
            }
        }
        ActorCommand::Ask(m) => {
            let r = client
                .ask(request(
                    AskRequest {
                        address: Some(m.address.address()),
                        msg_type: m.msg_type,
                        payload: payload(&m.data)?.into(),
                        content_type: "application/json".into(),
                        timeout_ms: m.timeout_ms,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let reply = serde_json::from_slice::<Value>(&r.payload).unwrap_or_else(|_| {
                Value::String(String::from_utf8_lossy(&r.payload).into_owned())
            });
            match output {
                Output::Json => println!("{}", json!({ "msg_type": r.msg_type, "reply": reply })),
                Output::Human => println!(
                    "{}",
                    serde_json::to_string_pretty(&reply).unwrap_or_else(|_| reply.to_string())
                ),
            }
        }
        ActorCommand::Stop(address) => {
            let r = client
                .stop(request(
                    StopRequest {
                        address: Some(address.address()),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => println!("{}", json!({ "stopped": r.stopped })),
                Output::Human => println!(
                    "{}",
                    if r.stopped {
                        "stopped"
                    } else {
                        "was not active"
                    }
                ),
            }
        }
        ActorCommand::Status(address) => {
            let r = client
                .durable_status(request(
                    DurableStatusRequest {
                        address: Some(address.address()),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            print_durable_status(output, None, &r);
        }
        ActorCommand::Resume(address) => {
            let r = client
                .resolve_failed(request(
                    ResolveFailedRequest {
                        address: Some(address.address()),
                        action: "resume".into(),
                        reason: String::new(),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            print_durable_status(output, Some("resumed"), &r);
        }
        ActorCommand::Abandon { address, reason } => {
            let r = client
                .resolve_failed(request(
                    ResolveFailedRequest {
                        address: Some(address.address()),
                        action: "abandon".into(),
                        reason,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            print_durable_status(output, Some("abandoned"), &r);
        }
    }
    Ok(())
}
