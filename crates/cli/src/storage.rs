//! `plexspaces kv|blob|channel ...`: the node's key-value store, blob store and channels
//! over gRPC (docs/cli.md). Everything is in your token's tenant.

use std::io::{Read, Write};

use clap::{Args, Subcommand};
use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::blob_service_client::BlobServiceClient;
use plexspaces_proto::v1::channel_service_client::ChannelServiceClient;
use plexspaces_proto::v1::key_value_service_client::KeyValueServiceClient;
use serde_json::{json, Value};

use crate::{channel, request, Failure, Output};

/// Upload chunk size.
const CHUNK: usize = 1024 * 1024;

#[derive(Args, Debug, Clone)]
pub(crate) struct Ns {
    /// Namespace.
    #[arg(long, short, default_value = "default")]
    namespace: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum KvCommand {
    /// Prints a key's value (raw; with --output json: text or hex, and the version).
    Get {
        key: String,
        #[command(flatten)]
        ns: Ns,
    },
    /// Writes a value.
    Put {
        key: String,
        value: String,
        #[command(flatten)]
        ns: Ns,
        /// Remove the key after this many milliseconds (0: keep).
        #[arg(long, default_value_t = 0)]
        ttl_ms: u64,
        /// Compare-and-swap: write only if the key is at this version (0: only if missing).
        #[arg(long)]
        if_version: Option<u64>,
    },
    /// Removes a key.
    Delete {
        key: String,
        #[command(flatten)]
        ns: Ns,
    },
    /// Lists keys under a prefix.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        ns: Ns,
    },
    /// Adds to an integer value (a missing key counts as 0) and prints the result.
    Incr {
        key: String,
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        delta: i64,
        #[command(flatten)]
        ns: Ns,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum BlobCommand {
    /// Uploads a file (`-`: standard input), streamed.
    Put {
        key: String,
        file: std::path::PathBuf,
        #[command(flatten)]
        ns: Ns,
    },
    /// Downloads a blob to a file (`-` or none: standard output), streamed.
    Get {
        key: String,
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        ns: Ns,
    },
    /// Removes a blob.
    Delete {
        key: String,
        #[command(flatten)]
        ns: Ns,
    },
    /// Lists blobs under a prefix.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        #[command(flatten)]
        ns: Ns,
    },
}

#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    /// The queue (or, with --group, the topic).
    channel: String,
    /// A subscriber group of the topic `channel` (none: `channel` is a queue).
    #[arg(long)]
    group: Option<String>,
    #[command(flatten)]
    ns: Ns,
}

impl Target {
    fn proto(&self) -> pb::ChannelTarget {
        pb::ChannelTarget {
            namespace: self.ns.namespace.clone(),
            channel: self.channel.clone(),
            group: self.group.clone().unwrap_or_default(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub(crate) enum ChannelCommand {
    /// Publishes a message to a queue (or, with --topic, to a topic).
    Publish {
        channel: String,
        message: String,
        /// Publish to the topic `channel` (every subscriber group).
        #[arg(long)]
        topic: bool,
        /// A header, `name=value` (repeatable).
        #[arg(long = "header", value_parser = parse_header)]
        headers: Vec<(String, String)>,
        #[command(flatten)]
        ns: Ns,
    },
    /// Receives messages (and with --ack acknowledges them).
    Receive {
        #[command(flatten)]
        target: Target,
        /// The consumer's name.
        #[arg(long, default_value = "cli")]
        consumer: String,
        #[arg(long, default_value_t = 1)]
        max: u32,
        /// How long to wait for the first message.
        #[arg(long, default_value_t = 1000)]
        wait_ms: u64,
        /// Acknowledge each message after printing it.
        #[arg(long)]
        ack: bool,
    },
    /// Acknowledges a delivery by its receipt.
    Ack {
        #[command(flatten)]
        target: Target,
        receipt: String,
    },
    /// Gives a delivery back for redelivery.
    Nack {
        #[command(flatten)]
        target: Target,
        receipt: String,
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
    },
    /// Messages that ran out of deliveries.
    DeadLetters {
        #[command(flatten)]
        target: Target,
        #[arg(long, default_value_t = 100)]
        max: u32,
    },
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not name=value"))
}

fn io_failure(what: &str, e: std::io::Error) -> Failure {
    Failure {
        code: 6,
        message: format!("{what}: {e}"),
    }
}

/// Bytes as JSON: `value` when UTF-8, else `value_hex`.
fn bytes_json(field: &str, b: &[u8]) -> (String, Value) {
    match std::str::from_utf8(b) {
        Ok(t) => (field.to_owned(), json!(t)),
        Err(_) => (
            format!("{field}_hex"),
            json!(b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
        ),
    }
}

fn print(output: Output, human: impl FnOnce(), value: Value) {
    match output {
        Output::Human => human(),
        Output::Json => println!("{value}"),
    }
}

pub(crate) async fn kv(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    cmd: KvCommand,
) -> Result<(), Failure> {
    let mut client = KeyValueServiceClient::new(channel(endpoint).await?);
    match cmd {
        KvCommand::Get { key, ns } => {
            let r = client
                .get(request(
                    pb::KvGetRequest {
                        namespace: ns.namespace,
                        key: key.clone(),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            if !r.found {
                return Err(Failure {
                    code: 4,
                    message: format!("no key {key:?}"),
                });
            }
            let (field, value) = bytes_json("value", &r.value);
            let mut out = json!({ "key": key, "version": r.version });
            out[field] = value;
            print(
                output,
                || {
                    let _ = std::io::stdout().write_all(&r.value);
                    println!();
                },
                out,
            );
        }
        KvCommand::Put {
            key,
            value,
            ns,
            ttl_ms,
            if_version,
        } => {
            let r = client
                .put(request(
                    pb::KvPutRequest {
                        namespace: ns.namespace,
                        key: key.clone(),
                        value: value.into_bytes().into(),
                        ttl_ms,
                        if_version,
                        fence: None,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            if !r.written {
                return Err(Failure {
                    code: 1,
                    message: format!(
                        "conflict: key {key:?} is at version {} (0: missing)",
                        r.current_version
                    ),
                });
            }
            print(
                output,
                || println!("{key} version {}", r.version),
                json!({ "key": key, "version": r.version }),
            );
        }
        KvCommand::Delete { key, ns } => {
            let r = client
                .delete(request(
                    pb::KvKeyRequest {
                        namespace: ns.namespace,
                        key: key.clone(),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            print(
                output,
                || println!("{}", if r.deleted { "deleted" } else { "not found" }),
                json!({ "key": key, "deleted": r.deleted }),
            );
        }
        KvCommand::List { prefix, limit, ns } => {
            let r = client
                .list(request(
                    pb::KvListRequest {
                        namespace: ns.namespace,
                        prefix,
                        limit,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let entries: Vec<Value> = r
                .entries
                .iter()
                .map(|e| {
                    let (field, value) = bytes_json("value", &e.value);
                    let mut out = json!({ "key": e.key, "version": e.version });
                    out[field] = value;
                    out
                })
                .collect();
            print(
                output,
                || {
                    for e in &r.entries {
                        println!("{}\t{}", e.key, String::from_utf8_lossy(&e.value));
                    }
                },
                json!({ "entries": entries }),
            );
        }
        KvCommand::Incr { key, delta, ns } => {
            let r = client
                .increment(request(
                    pb::KvIncrementRequest {
                        namespace: ns.namespace,
                        key: key.clone(),
                        delta,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            print(
                output,
                || println!("{}", r.value),
                json!({ "key": key, "value": r.value }),
            );
        }
    }
    Ok(())
}

pub(crate) async fn blob(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    cmd: BlobCommand,
) -> Result<(), Failure> {
    let mut client = BlobServiceClient::new(channel(endpoint).await?);
    match cmd {
        BlobCommand::Put { key, file, ns } => {
            let mut reader: Box<dyn Read + Send> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin())
            } else {
                Box::new(
                    std::fs::File::open(&file)
                        .map_err(|e| io_failure(&file.display().to_string(), e))?,
                )
            };
            let mut first = Some((ns.namespace, key));
            let mut done = false;
            let chunks = std::iter::from_fn(move || {
                if done {
                    return None;
                }
                let mut buf = vec![0u8; CHUNK];
                let mut filled = 0;
                while filled < CHUNK {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => {
                            done = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            // Exiting breaks the upload stream: the node aborts the upload and stores nothing.
                            eprintln!("read failed: {e}");
                            std::process::exit(6);
                        }
                    }
                }
                buf.truncate(filled);
                let (namespace, key) = first.take().unwrap_or_default();
                if filled == 0 && namespace.is_empty() && key.is_empty() {
                    return None;
                }
                Some(pb::BlobChunk {
                    namespace,
                    key,
                    data: buf.into(),
                })
            });
            let m = client
                .put(request(tokio_stream::iter(chunks), token)?)
                .await?
                .into_inner();
            print(
                output,
                || println!("{} {} bytes", m.key, m.size),
                json!({ "key": m.key, "size": m.size, "e_tag": m.e_tag }),
            );
        }
        BlobCommand::Get { key, file, ns } => {
            let mut stream = client
                .get(request(
                    pb::BlobKeyRequest {
                        namespace: ns.namespace,
                        key,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let mut out: Box<dyn Write> = match &file {
                Some(p) if p.as_os_str() != "-" => Box::new(
                    std::fs::File::create(p)
                        .map_err(|e| io_failure(&p.display().to_string(), e))?,
                ),
                _ => Box::new(std::io::stdout().lock()),
            };
            while let Some(chunk) = stream.message().await? {
                out.write_all(&chunk.data)
                    .map_err(|e| io_failure("write", e))?;
            }
            out.flush().map_err(|e| io_failure("write", e))?;
        }
        BlobCommand::Delete { key, ns } => {
            client
                .delete(request(
                    pb::BlobKeyRequest {
                        namespace: ns.namespace,
                        key: key.clone(),
                    },
                    token,
                )?)
                .await?;
            print(
                output,
                || println!("deleted"),
                json!({ "key": key, "deleted": true }),
            );
        }
        BlobCommand::List { prefix, ns } => {
            let r = client
                .list(request(
                    pb::BlobListRequest {
                        namespace: ns.namespace,
                        prefix,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let blobs: Vec<Value> = r
                .blobs
                .iter()
                .map(|b| json!({ "key": b.key, "size": b.size, "e_tag": b.e_tag }))
                .collect();
            print(
                output,
                || {
                    for b in &r.blobs {
                        println!("{}\t{}", b.key, b.size);
                    }
                },
                json!({ "blobs": blobs }),
            );
        }
    }
    Ok(())
}

fn message_json(m: &pb::ChannelMessage) -> Value {
    let (field, value) = bytes_json("payload", &m.payload);
    let mut out = json!({ "message_id": m.id, "headers": m.headers });
    out[field] = value;
    out
}

pub(crate) async fn channel_cmd(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    cmd: ChannelCommand,
) -> Result<(), Failure> {
    let mut client = ChannelServiceClient::new(channel(endpoint).await?);
    match cmd {
        ChannelCommand::Publish {
            channel,
            message,
            topic,
            headers,
            ns,
        } => {
            let r = client
                .publish(request(
                    pb::PublishRequest {
                        namespace: ns.namespace,
                        channel,
                        topic,
                        payload: message.into_bytes().into(),
                        headers: headers.into_iter().collect(),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            print(
                output,
                || println!("{}", r.message_id),
                json!({ "message_id": r.message_id }),
            );
        }
        ChannelCommand::Receive {
            target,
            consumer,
            max,
            wait_ms,
            ack,
        } => {
            let r = client
                .receive(request(
                    pb::ReceiveRequest {
                        target: Some(target.proto()),
                        consumer,
                        max,
                        wait_ms,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            if r.deliveries.is_empty() {
                return Err(Failure {
                    code: 4,
                    message: "no message".into(),
                });
            }
            for d in &r.deliveries {
                let m = d.message.clone().unwrap_or_default();
                let mut out = message_json(&m);
                out["attempt"] = json!(d.attempt);
                out["receipt"] = json!(d.receipt);
                print(
                    output,
                    || {
                        println!(
                            "{}\t{}\t{}",
                            d.receipt,
                            d.attempt,
                            String::from_utf8_lossy(&m.payload)
                        )
                    },
                    out,
                );
                if ack {
                    client
                        .ack(request(
                            pb::AckRequest {
                                target: Some(target.proto()),
                                receipt: d.receipt.clone(),
                                delay_ms: 0,
                            },
                            token,
                        )?)
                        .await?;
                }
            }
        }
        ChannelCommand::Ack { target, receipt } => {
            client
                .ack(request(
                    pb::AckRequest {
                        target: Some(target.proto()),
                        receipt,
                        delay_ms: 0,
                    },
                    token,
                )?)
                .await?;
            print(output, || println!("acked"), json!({ "acked": true }));
        }
        ChannelCommand::Nack {
            target,
            receipt,
            delay_ms,
        } => {
            client
                .nack(request(
                    pb::AckRequest {
                        target: Some(target.proto()),
                        receipt,
                        delay_ms,
                    },
                    token,
                )?)
                .await?;
            print(output, || println!("nacked"), json!({ "nacked": true }));
        }
        ChannelCommand::DeadLetters { target, max } => {
            let r = client
                .dead_letters(request(
                    pb::DeadLettersRequest {
                        target: Some(target.proto()),
                        max,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            let dead: Vec<Value> = r
                .dead_letters
                .iter()
                .map(|d| {
                    let mut out = message_json(&d.message.clone().unwrap_or_default());
                    out["deliveries"] = json!(d.deliveries);
                    out
                })
                .collect();
            print(
                output,
                || {
                    for d in &r.dead_letters {
                        let m = d.message.clone().unwrap_or_default();
                        println!(
                            "{}\t{}\t{}",
                            m.id,
                            d.deliveries,
                            String::from_utf8_lossy(&m.payload)
                        );
                    }
                },
                json!({ "dead_letters": dead }),
            );
        }
    }
    Ok(())
}
