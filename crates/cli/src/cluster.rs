//! `plexspaces cluster status` (gRPC `ClusterService`) and `plexspaces cert dev-ca`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use plexspaces_cluster::tls::DevCa;
use plexspaces_proto::v1::cluster_service_client::ClusterServiceClient;
use plexspaces_proto::v1::ClusterMembersRequest;
use serde_json::{json, Value};

use crate::{channel, request, Failure, Output};

/// `plexspaces cluster ...`
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// The members the node sees: state, address, labels, last heartbeat.
    Status,
}

/// `plexspaces cert ...`
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Makes a development CA and a certificate per node for mTLS between nodes: writes
    /// ca.pem, ca.key and <node>.pem, <node>.key for each node into --out.
    DevCa {
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Node names to issue certificates for (each becomes the certificate's DNS name).
        #[arg(long, value_delimiter = ',', required = true)]
        nodes: Vec<String>,
        /// The CA's common name.
        #[arg(long, default_value = "plexspaces dev ca")]
        name: String,
    },
}

/// Runs a `cluster` command.
pub async fn run(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    cmd: ClusterCommand,
) -> Result<(), Failure> {
    match cmd {
        ClusterCommand::Status => status(endpoint, token, output).await,
    }
}

async fn status(endpoint: &str, token: Option<&str>, output: Output) -> Result<(), Failure> {
    let mut client = ClusterServiceClient::new(channel(endpoint).await?);
    let r = client
        .members(request(ClusterMembersRequest {}, token)?)
        .await?
        .into_inner();
    match output {
        Output::Json => {
            let members: Vec<Value> = r
                .members
                .iter()
                .map(|m| {
                    json!({
                        "node": m.node,
                        "state": m.state,
                        "is_self": m.is_self,
                        "addr": m.addr,
                        "labels": m.labels,
                        "last_heartbeat_ms": m.last_heartbeat_ms,
                        "heartbeat": m.heartbeat,
                        "since_ms": m.since_ms,
                        "generation": m.generation,
                        "cpus": m.cpus,
                        "live_actors": m.live_actors,
                        "version": m.version,
                    })
                })
                .collect();
            println!(
                "{}",
                json!({
                    "node": r.node,
                    "cluster_name": r.cluster_name,
                    "clustered": r.clustered,
                    "members": members,
                })
            );
        }
        Output::Human => {
            if r.clustered {
                println!("cluster {} (seen from {})", r.cluster_name, r.node);
            } else {
                println!("{} runs alone (no [cluster] configured)", r.node);
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            for m in &r.members {
                let heartbeat = if m.last_heartbeat_ms == 0 {
                    "-".to_owned()
                } else {
                    format!("{}ms ago", now.saturating_sub(m.last_heartbeat_ms))
                };
                let labels: Vec<String> =
                    m.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                println!(
                    "  {:<16} {:<8} {:<22} heartbeat {:<10} {}{}",
                    m.node,
                    m.state,
                    if m.addr.is_empty() { "-" } else { &m.addr },
                    heartbeat,
                    labels.join(","),
                    if m.is_self { " (this node)" } else { "" }
                );
            }
        }
    }
    Ok(())
}

/// Runs a `cert` command.
pub fn cert(output: Output, cmd: CertCommand) -> Result<(), Failure> {
    match cmd {
        CertCommand::DevCa { out, nodes, name } => {
            let files = dev_ca(&out, &nodes, &name)?;
            match output {
                Output::Json => println!("{}", json!({ "files": files })),
                Output::Human => {
                    for f in &files {
                        println!("wrote {f}");
                    }
                }
            }
            Ok(())
        }
    }
}

fn dev_ca(out: &Path, nodes: &[String], name: &str) -> Result<Vec<String>, Failure> {
    let invalid = |message: String| Failure { code: 6, message };
    for node in nodes {
        let ok = !node.is_empty()
            && node.len() <= 63
            && node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !node.starts_with('-');
        if !ok {
            return Err(invalid(format!(
                "node name {node:?} cannot be a certificate DNS name: letters, digits and `-`"
            )));
        }
    }
    let ca = DevCa::generate(name).map_err(|e| invalid(e.to_string()))?;
    std::fs::create_dir_all(out).map_err(|e| Failure {
        code: 1,
        message: format!("cannot create {}: {e}", out.display()),
    })?;
    let mut written = Vec::new();
    let mut write = |file: String, text: String, secret: bool| -> Result<(), Failure> {
        let path = out.join(&file);
        write_file(&path, &text, secret).map_err(|e| Failure {
            code: 1,
            message: format!("cannot write {}: {e}", path.display()),
        })?;
        written.push(path.display().to_string());
        Ok(())
    };
    write("ca.pem".into(), ca.ca_pem(), false)?;
    write("ca.key".into(), ca.key_pem(), true)?;
    for node in nodes {
        let tls = ca.issue(node).map_err(|e| invalid(e.to_string()))?;
        write(format!("{node}.pem"), tls.cert_pem, false)?;
        write(format!("{node}.key"), tls.key_pem, true)?;
    }
    Ok(written)
}

/// Writes `text`; private keys readable by their owner only.
fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = secret;
    options.open(path)?.write_all(text.as_bytes())
}
