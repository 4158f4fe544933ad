//! Node configuration, in layers: built-in defaults < a TOML file < `PLEXSPACES_*`
//! environment variables < command-line flags. Unknown keys (in the file) and unknown
//! `PLEXSPACES_*` variables are rejected with a message that names them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Default HTTP listen address (the product description's curl examples use port 8094).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8094";
/// Default gRPC listen address.
pub const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:8000";
/// Default cluster address (TCP transport and UDP gossip), used when `cluster.name` is set.
pub const DEFAULT_CLUSTER_ADDR: &str = "127.0.0.1:7000";

/// Everything a node needs to start. See `docs/configuration.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// The node's name (the part after `@` in actor ids).
    pub node_id: String,
    /// Where the node keeps its files (virtual actor state).
    pub data_dir: PathBuf,
    /// The HTTP API.
    pub http: HttpConfig,
    /// The gRPC API.
    pub grpc: GrpcConfig,
    /// Authentication.
    pub auth: AuthConfig,
    /// Actor types and activations.
    pub actors: ActorsConfig,
    /// Where virtual actor state is journaled.
    pub journal: JournalConfig,
    /// The node's tuple space.
    pub tuplespace: TupleSpaceConfig,
    /// The node's workflow engine.
    pub workflows: WorkflowsConfig,
    /// OpenTelemetry span export.
    pub otlp: OtlpConfig,
    /// Membership in a cluster of nodes (unset `name`: the node runs alone).
    pub cluster: ClusterConfig,
    /// The activation directory and placement of virtual actors across nodes.
    pub virtual_actors: crate::virtual_actors::VirtualActorsConfig,
    /// The key-value store (`/api/v1/kv`, `KeyValueFacet`).
    pub kv: KvConfig,
    /// The blob store (`/api/v1/blobs`, `BlobStorageFacet`).
    pub blobs: BlobsConfig,
    /// Queues and topics (`/api/v1/channels`, `EventEmitterFacet`).
    pub channels: ChannelsConfig,
    /// The reminder scheduler.
    pub reminders: RemindersConfig,
    /// WASM actors deployed with `POST /api/v1/deploy` (docs/wasm.md).
    pub wasm: crate::deploy::WasmConfig,
}

/// `[cluster]`: joining other nodes over the network (docs/cluster.md). With `name` unset
/// the node runs alone, as it always did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The cluster's name; nodes of another name never join. Unset: no cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where this node listens for other nodes, `HOST:PORT`: TCP for the transport and UDP
    /// for gossip, on the same port.
    pub addr: String,
    /// The IP address other nodes reach this node at (with `addr`'s port). Unset: `addr`'s
    /// IP, which must then not be a wildcard (0.0.0.0, ::).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertise_addr: Option<String>,
    /// Other nodes' cluster addresses (`HOST:PORT`) to join through.
    pub seeds: Vec<String>,
    /// Time between gossip rounds, in ms (failure detection takes about 9 of them).
    pub gossip_interval_ms: u64,
    /// PEM file of the CA that signs every node's certificate (mTLS between nodes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// PEM file of this node's certificate (its node name as a DNS name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of this node's private key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Allows plain TCP between nodes on an address beyond loopback (without it such a node
    /// refuses to start without certificates).
    pub insecure: bool,
    /// Labels gossiped with this node (zone, role, ...).
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            name: None,
            addr: DEFAULT_CLUSTER_ADDR.into(),
            advertise_addr: None,
            seeds: Vec::new(),
            gossip_interval_ms: 200,
            labels: Default::default(),
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            insecure: false,
        }
    }
}

/// What a node in a cluster listens on and announces, resolved from [`ClusterConfig`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPlan {
    /// The cluster's name.
    pub name: String,
    /// Where the transport (TCP) and gossip (UDP) listen.
    pub listen: SocketAddr,
    /// The address other nodes use for both.
    pub advertise: SocketAddr,
    /// Seeds, `HOST:PORT`.
    pub seeds: Vec<String>,
    /// `(ca, cert, key)` files when mTLS is on.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl ClusterConfig {
    /// The resolved plan, `None` when the node runs alone.
    pub fn plan(&self) -> Result<Option<ClusterPlan>> {
        let Some(name) = &self.name else {
            return Ok(None);
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(Error::Config(format!(
                "cluster.name {name:?}: 1 to 64 letters, digits, `-`, `_` or `.`"
            )));
        }
        let listen = parse_addr("cluster.addr", &self.addr)?;
        if listen.port() == 0 {
            return Err(Error::Config(
                "cluster.addr needs a fixed port (other nodes seed from it)".into(),
            ));
        }
        let advertise = match &self.advertise_addr {
            Some(text) => {
                let ip: std::net::IpAddr = text.trim().parse().map_err(|_| {
                    Error::Config(format!(
                        "cluster.advertise_addr {text:?} is not an IP address"
                    ))
                })?;
                SocketAddr::new(ip, listen.port())
            }
            None => listen,
        };
        if advertise.ip().is_unspecified() {
            return Err(Error::Config(format!(
                "cluster.addr {listen} is a wildcard: set cluster.advertise_addr                  (--advertise-addr) to the IP other nodes reach this node at"
            )));
        }
        // Seeds are resolved when gossiped to (a seed's name may not resolve yet).
        for seed in &self.seeds {
            let port_ok = seed
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(Error::Config(format!(
                    "cluster.seeds: {seed:?} is not HOST:PORT"
                )));
            }
        }
        if !(10..=10_000).contains(&self.gossip_interval_ms) {
            return Err(Error::Config(format!(
                "cluster.gossip_interval_ms {} must be between 10 and 10000",
                self.gossip_interval_ms
            )));
        }
        let tls = match (&self.tls_ca, &self.tls_cert, &self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some((ca.clone(), cert.clone(), key.clone())),
            (None, None, None) => None,
            _ => {
                return Err(Error::Config(
                    "cluster.tls_ca, cluster.tls_cert and cluster.tls_key go together".into(),
                ))
            }
        };
        let local_only = listen.ip().is_loopback() && advertise.ip().is_loopback();
        if tls.is_none() && !local_only && !self.insecure {
            return Err(Error::Config(format!(
                "cluster.addr {listen} is reachable beyond loopback: set cluster.tls_ca,                  cluster.tls_cert and cluster.tls_key (see `plexspaces cert dev-ca`), or                  cluster.insecure = true (PLEXSPACES_CLUSTER_INSECURE=1) for plain TCP"
            )));
        }
        Ok(Some(ClusterPlan {
            name: name.clone(),
            listen,
            advertise,
            seeds: self.seeds.clone(),
            tls,
        }))
    }

    /// The gossip interval.
    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms)
    }
}

/// `[otlp]`: OpenTelemetry span export over OTLP/HTTP (protobuf). The `plexspaces` binary
/// exports when `endpoint` is set (and it was built with its `otlp` feature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpConfig {
    /// The collector's base URL, e.g. `http://127.0.0.1:4318` (spans go to
    /// `<endpoint>/v1/traces`). Unset: no export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute of exported spans.
    pub service_name: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            service_name: "plexspaces".into(),
        }
    }
}

impl OtlpConfig {
    /// The URL spans are POSTed to (`<endpoint>/v1/traces`), if export is on.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.endpoint.as_deref()?.trim_end_matches('/');
        if base.ends_with("/v1/traces") {
            Some(base.to_owned())
        } else {
            Some(format!("{base}/v1/traces"))
        }
    }
}

/// `[http]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Listen address, `HOST:PORT`.
    pub addr: String,
    /// Largest accepted request body, in bytes (larger: 413).
    pub max_body_bytes: usize,
    /// How long an invocation waits for the actor's reply unless `timeout_ms` says less.
    pub request_timeout_ms: u64,
}

/// `[grpc]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrpcConfig {
    /// Listen address, `HOST:PORT`.
    pub addr: String,
}

/// `[auth]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Turns authentication off: every request is tenant `default` unless its path names
    /// another. For local work only.
    pub disabled: bool,
    /// HS256 shared secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_secret: Option<Secret>,
    /// PEM file with the RS256 public key that verifies tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// The claim that carries the tenant id.
    pub tenant_claim: String,
    /// If set, tokens must carry this `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// `[actors]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActorsConfig {
    /// A virtual actor idle this long is deactivated (its state is kept).
    pub idle_timeout_ms: u64,
    /// Most live activations (virtual actors plus pool workers); beyond it: 429.
    pub max_activations: usize,
    /// Mailbox capacity of each activation.
    pub mailbox_capacity: usize,
    /// Workers in a stateless worker pool unless its type says otherwise.
    pub pool_workers: usize,
}

/// Where the node keeps its tuples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TupleSpaceBackend {
    /// In process memory (the default); tuples are gone when the node stops.
    #[default]
    Memory,
    /// SQLite at `<data_dir>/tuplespace.db`; tuples survive a restart.
    Sqlite,
}

/// `[tuplespace]`
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TupleSpaceConfig {
    /// `"memory"` (default) or `"sqlite"`.
    pub backend: TupleSpaceBackend,
}

/// Where the node keeps key-value entries (and lock leases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KvBackend {
    /// SQLite at `<data_dir>/kv.db` (the default).
    #[default]
    Sqlite,
    /// In process memory; gone when the node stops.
    Memory,
    /// PostgreSQL at `kv.url` (tables in `kv.schema`).
    Postgres,
    /// Redis at `kv.url` (keys under `kv.prefix`; needs the `redis` feature).
    Redis,
}

/// `[kv]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KvConfig {
    /// `"sqlite"` (default), `"memory"`, `"postgres"` or `"redis"`.
    pub backend: KvBackend,
    /// The PostgreSQL or Redis URL (required by those backends). Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// PostgreSQL schema of the key-value tables.
    pub schema: String,
    /// Redis key prefix.
    pub prefix: String,
}

impl Default for KvConfig {
    fn default() -> Self {
        KvConfig {
            backend: KvBackend::Sqlite,
            url: None,
            schema: "plexspaces_kv".into(),
            prefix: "plexspaces:kv".into(),
        }
    }
}

/// Where the node keeps blobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlobsBackend {
    /// Files under `blobs.root` (default `<data_dir>/blobs`).
    #[default]
    Local,
    /// In process memory; gone when the node stops.
    Memory,
}

/// `[blobs]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlobsConfig {
    /// `"local"` (default) or `"memory"`.
    pub backend: BlobsBackend,
    /// The directory of the `local` backend (unset: `<data_dir>/blobs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// The largest blob accepted in one upload, in bytes (larger: 413).
    pub max_blob_bytes: u64,
}

impl Default for BlobsConfig {
    fn default() -> Self {
        BlobsConfig {
            backend: BlobsBackend::Local,
            root: None,
            max_blob_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// A channel backend, to pick one instead of the factory's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelsBackend {
    /// Kafka at `channels.kafka_brokers` (the node's cargo feature `kafka`; without it the
    /// node refuses to start).
    Kafka,
    /// NATS JetStream at `channels.nats_url`.
    Nats,
    /// Redis streams at `channels.redis_url`.
    Redis,
    /// SQLite at `<data_dir>/channels.db`.
    Sqlite,
    /// In process memory.
    Memory,
}

/// `[channels]`: the factory uses the first configured of Kafka, NATS, Redis, SQLite
/// (always configured, under the data dir) unless `backend` names one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsConfig {
    /// Use this backend (unset: the factory's order among those configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<ChannelsBackend>,
    /// A NATS server with JetStream, `nats://127.0.0.1:4222`. Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nats_url: Option<Secret>,
    /// A Redis server, `redis://127.0.0.1:6379/`. Never printed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<Secret>,
    /// Kafka bootstrap brokers, `host:port` (the node's cargo feature `kafka`; without it,
    /// configuring them makes the node refuse to start).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kafka_brokers: Vec<String>,
    /// NATS subject and stream prefix, Redis key prefix and Kafka topic prefix.
    pub prefix: String,
    /// A delivery not acked within this long is delivered again.
    pub visibility_timeout_ms: u64,
    /// After this many deliveries without an ack a message goes to the dead letters.
    pub max_deliveries: u32,
    /// Actors that take their mail from a queue (`[[channels.inboxes]]`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inboxes: Vec<InboxConfig>,
}

/// `[[channels.inboxes]]`: one activation fed from one queue of its own tenant and
/// namespace (see `crate::inboxes`). A message's `msg_type` header names the handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// The registered actor type.
    pub actor_type: String,
    /// The instance key (a worker pool ignores it).
    pub key: String,
    /// The tenant of the activation and of the queue.
    pub tenant: String,
    /// The namespace of the activation and of the queue.
    pub namespace: String,
    /// The queue's name.
    pub queue: String,
    /// Deliveries taken per receive.
    pub batch: usize,
    /// How long the actor may take to answer one message before it is nacked.
    pub handle_timeout_ms: u64,
    /// Redelivery delay of a message whose handler failed.
    pub retry_delay_ms: u64,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            actor_type: String::new(),
            key: "default".into(),
            tenant: crate::auth::DEFAULT_TENANT.into(),
            namespace: "default".into(),
            queue: String::new(),
            batch: 16,
            handle_timeout_ms: 30_000,
            retry_delay_ms: 1_000,
        }
    }
}

impl Default for ChannelsConfig {
    fn default() -> Self {
        ChannelsConfig {
            backend: None,
            nats_url: None,
            redis_url: None,
            kafka_brokers: Vec::new(),
            prefix: "plexspaces".into(),
            visibility_timeout_ms: 30_000,
            max_deliveries: 5,
            inboxes: Vec::new(),
        }
    }
}

/// `[reminders]`: durable reminders set by virtual actors (`ReminderFacet`), kept in the
/// journal database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemindersConfig {
    /// How often the scheduler looks for due reminders (10 to 60000).
    pub poll_interval_ms: u64,
}

impl Default for RemindersConfig {
    fn default() -> Self {
        RemindersConfig {
            poll_interval_ms: 100,
        }
    }
}

/// `[workflows]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkflowsConfig {
    /// How often a waiting workflow re-reads its inbox from the store, and a waiting client
    /// its record. Changes made through this node wake them at once; the poll only finds
    /// what another node wrote to a shared PostgreSQL store.
    pub inbox_poll_ms: u64,
}

impl Default for WorkflowsConfig {
    fn default() -> Self {
        WorkflowsConfig {
            inbox_poll_ms: 1000,
        }
    }
}

impl WorkflowsConfig {
    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !(10..=60_000).contains(&self.inbox_poll_ms) {
            return Err(Error::Config(format!(
                "workflows.inbox_poll_ms {} must be between 10 and 60000",
                self.inbox_poll_ms
            )));
        }
        Ok(())
    }
}

/// `[journal]`: the durability facet's journal (one per node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JournalConfig {
    /// A PostgreSQL URL (`postgres://user:password@host:5432/db`). Unset: SQLite at
    /// `<data_dir>/journal.db`. Never printed (it may hold a password).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<Secret>,
    /// PostgreSQL schema holding the journal tables (letters, digits, `_`).
    pub schema: String,
    /// Snapshot a virtual actor (`Actor::snapshot`) after this many messages and drop the
    /// journal entries the snapshot covers (0: never; recovery then replays all history).
    pub checkpoint_every_messages: u64,
    /// Pipeline commits through each durable actor's output gate: the actor takes its next
    /// message while earlier commits are in flight (replies still wait for their commit).
    /// `false`: every message waits for its own commit.
    pub output_gate: bool,
    /// Attempts of a durable actor's message whose handler fails (the first run included)
    /// before the actor is paused until an operator resumes or abandons the message
    /// (0: no retries, a failed message is skipped). See `docs/durability.md`.
    pub retry_max_attempts: u32,
    /// Wait before the second attempt, in ms; it doubles per failure.
    pub retry_backoff_ms: u64,
    /// The longest wait between attempts, in ms.
    pub retry_max_backoff_ms: u64,
    /// Idempotency keys (with their replies) a durable actor remembers, oldest forgotten
    /// first: a request resent with a forgotten key runs again.
    pub idempotency_retention: usize,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            url: None,
            schema: "plexspaces".into(),
            checkpoint_every_messages: 100,
            output_gate: true,
            retry_max_attempts: 3,
            retry_backoff_ms: 1_000,
            retry_max_backoff_ms: 60_000,
            idempotency_retention: 10_000,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_id: "node1".into(),
            data_dir: PathBuf::from("plexspaces-data"),
            http: HttpConfig::default(),
            grpc: GrpcConfig::default(),
            auth: AuthConfig::default(),
            actors: ActorsConfig::default(),
            journal: JournalConfig::default(),
            tuplespace: Default::default(),
            workflows: Default::default(),
            otlp: OtlpConfig::default(),
            virtual_actors: Default::default(),
            cluster: ClusterConfig::default(),
            kv: KvConfig::default(),
            blobs: BlobsConfig::default(),
            channels: ChannelsConfig::default(),
            reminders: RemindersConfig::default(),
            wasm: Default::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: DEFAULT_HTTP_ADDR.into(),
            max_body_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            addr: DEFAULT_GRPC_ADDR.into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            disabled: false,
            jwt_secret: None,
            jwt_public_key_file: None,
            tenant_claim: "tenant_id".into(),
            issuer: None,
        }
    }
}

impl Default for ActorsConfig {
    fn default() -> Self {
        ActorsConfig {
            idle_timeout_ms: 300_000,
            max_activations: 100_000,
            mailbox_capacity: 1024,
            pool_workers: 4,
        }
    }
}

/// The kind of value an environment variable holds.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    /// Comma-separated strings.
    List,
}

/// `PLEXSPACES_*` variables and the config key each sets.
const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("PLEXSPACES_NODE_ID", "node_id", Kind::Str),
    ("PLEXSPACES_DATA_DIR", "data_dir", Kind::Str),
    ("PLEXSPACES_HTTP_ADDR", "http.addr", Kind::Str),
    (
        "PLEXSPACES_MAX_BODY_BYTES",
        "http.max_body_bytes",
        Kind::Int,
    ),
    (
        "PLEXSPACES_REQUEST_TIMEOUT_MS",
        "http.request_timeout_ms",
        Kind::Int,
    ),
    ("PLEXSPACES_GRPC_ADDR", "grpc.addr", Kind::Str),
    ("PLEXSPACES_DISABLE_AUTH", "auth.disabled", Kind::Bool),
    ("PLEXSPACES_JWT_SECRET", "auth.jwt_secret", Kind::Str),
    (
        "PLEXSPACES_JWT_PUBLIC_KEY_FILE",
        "auth.jwt_public_key_file",
        Kind::Str,
    ),
    ("PLEXSPACES_TENANT_CLAIM", "auth.tenant_claim", Kind::Str),
    ("PLEXSPACES_JWT_ISSUER", "auth.issuer", Kind::Str),
    (
        "PLEXSPACES_IDLE_TIMEOUT_MS",
        "actors.idle_timeout_ms",
        Kind::Int,
    ),
    (
        "PLEXSPACES_MAX_ACTIVATIONS",
        "actors.max_activations",
        Kind::Int,
    ),
    (
        "PLEXSPACES_MAILBOX_CAPACITY",
        "actors.mailbox_capacity",
        Kind::Int,
    ),
    ("PLEXSPACES_POOL_WORKERS", "actors.pool_workers", Kind::Int),
    ("PLEXSPACES_JOURNAL_URL", "journal.url", Kind::Str),
    ("PLEXSPACES_JOURNAL_SCHEMA", "journal.schema", Kind::Str),
    (
        "PLEXSPACES_JOURNAL_CHECKPOINT_EVERY",
        "journal.checkpoint_every_messages",
        Kind::Int,
    ),
    (
        "PLEXSPACES_JOURNAL_OUTPUT_GATE",
        "journal.output_gate",
        Kind::Bool,
    ),
    (
        "PLEXSPACES_JOURNAL_RETRY_MAX_ATTEMPTS",
        "journal.retry_max_attempts",
        Kind::Int,
    ),
    (
        "PLEXSPACES_JOURNAL_RETRY_BACKOFF_MS",
        "journal.retry_backoff_ms",
        Kind::Int,
    ),
    (
        "PLEXSPACES_JOURNAL_RETRY_MAX_BACKOFF_MS",
        "journal.retry_max_backoff_ms",
        Kind::Int,
    ),
    (
        "PLEXSPACES_JOURNAL_IDEMPOTENCY_RETENTION",
        "journal.idempotency_retention",
        Kind::Int,
    ),
    (
        "PLEXSPACES_TUPLESPACE_BACKEND",
        "tuplespace.backend",
        Kind::Str,
    ),
    (
        "PLEXSPACES_WORKFLOW_INBOX_POLL_MS",
        "workflows.inbox_poll_ms",
        Kind::Int,
    ),
    ("PLEXSPACES_OTLP_ENDPOINT", "otlp.endpoint", Kind::Str),
    ("PLEXSPACES_KV_BACKEND", "kv.backend", Kind::Str),
    (
        "PLEXSPACES_WASM_DURABILITY",
        "wasm.durability_enabled",
        Kind::Bool,
    ),
    ("PLEXSPACES_KV_URL", "kv.url", Kind::Str),
    ("PLEXSPACES_BLOBS_BACKEND", "blobs.backend", Kind::Str),
    ("PLEXSPACES_BLOBS_ROOT", "blobs.root", Kind::Str),
    ("PLEXSPACES_CHANNELS_BACKEND", "channels.backend", Kind::Str),
    (
        "PLEXSPACES_CHANNELS_NATS_URL",
        "channels.nats_url",
        Kind::Str,
    ),
    (
        "PLEXSPACES_CHANNELS_REDIS_URL",
        "channels.redis_url",
        Kind::Str,
    ),
    (
        "PLEXSPACES_DIRECTORY",
        "virtual_actors.directory",
        Kind::Str,
    ),
    (
        "PLEXSPACES_DIRECTORY_SCHEMA",
        "virtual_actors.directory_schema",
        Kind::Str,
    ),
    (
        "PLEXSPACES_OTLP_SERVICE_NAME",
        "otlp.service_name",
        Kind::Str,
    ),
    ("PLEXSPACES_CLUSTER_NAME", "cluster.name", Kind::Str),
    ("PLEXSPACES_CLUSTER_ADDR", "cluster.addr", Kind::Str),
    (
        "PLEXSPACES_ADVERTISE_ADDR",
        "cluster.advertise_addr",
        Kind::Str,
    ),
    ("PLEXSPACES_SEEDS", "cluster.seeds", Kind::List),
    (
        "PLEXSPACES_GOSSIP_INTERVAL_MS",
        "cluster.gossip_interval_ms",
        Kind::Int,
    ),
    ("PLEXSPACES_CLUSTER_TLS_CA", "cluster.tls_ca", Kind::Str),
    ("PLEXSPACES_CLUSTER_TLS_CERT", "cluster.tls_cert", Kind::Str),
    ("PLEXSPACES_CLUSTER_TLS_KEY", "cluster.tls_key", Kind::Str),
    (
        "PLEXSPACES_CLUSTER_INSECURE",
        "cluster.insecure",
        Kind::Bool,
    ),
];

/// `PLEXSPACES_*` variables that are not config keys but are known (used by the CLI).
pub const OTHER_ENV: &[&str] = &[
    "PLEXSPACES_CONFIG",
    "PLEXSPACES_LOG",
    "PLEXSPACES_ENDPOINT",
    "PLEXSPACES_TOKEN",
    "PLEXSPACES_OUTPUT",
];

/// Where a layered configuration comes from.
#[derive(Debug, Default)]
pub struct ConfigSources {
    /// A TOML file (its keys must all be known).
    pub file: Option<PathBuf>,
    /// Environment variables (pass `std::env::vars()`); only `PLEXSPACES_*` ones are read.
    pub env: Vec<(String, String)>,
    /// Flags, as `dotted.key = value`, applied last.
    pub overrides: Vec<(String, toml::Value)>,
}

impl NodeConfig {
    /// Builds the configuration from its layers and validates it.
    pub fn load(sources: ConfigSources) -> Result<NodeConfig> {
        let mut table = toml::Table::try_from(NodeConfig::default())
            .map_err(|e| Error::Config(format!("defaults: {e}")))?;
        if let Some(path) = &sources.file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("cannot read config file {}: {e}", path.display()))
            })?;
            let file: toml::Table = text
                .parse()
                .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
            merge(&mut table, file);
            // Reject unknown keys here so the message names the file.
            toml::Value::Table(table.clone())
                .try_into::<NodeConfig>()
                .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?;
        }
        for (name, value) in &sources.env {
            if !name.starts_with("PLEXSPACES_") || OTHER_ENV.contains(&name.as_str()) {
                continue;
            }
            let Some((_, key, kind)) = ENV_KEYS.iter().find(|(n, _, _)| n == name) else {
                let known: Vec<&str> = ENV_KEYS.iter().map(|(n, _, _)| *n).collect();
                return Err(Error::Config(format!(
                    "unknown environment variable {name}; known: {}",
                    known.join(", ")
                )));
            };
            let value = match kind {
                Kind::Str => toml::Value::String(value.clone()),
                Kind::Int => toml::Value::Integer(value.trim().parse().map_err(|_| {
                    Error::Config(format!("{name}={value:?} is not a whole number"))
                })?),
                Kind::Bool => toml::Value::Boolean(parse_bool(value).ok_or_else(|| {
                    Error::Config(format!(
                        "{name}={value:?} is not a boolean (1/0/true/false)"
                    ))
                })?),
                Kind::List => toml::Value::Array(split_list(value)),
            };
            set(&mut table, key, value)?;
        }
        for (key, value) in sources.overrides {
            set(&mut table, &key, value)?;
        }
        let config: NodeConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| Error::Config(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<()> {
        plexspaces_core::ActorId::new("x", &self.node_id).map_err(|_| {
            Error::Config(format!(
                "node_id {:?} is not a valid node name",
                self.node_id
            ))
        })?;
        self.http_addr()?;
        self.grpc_addr()?;
        if self.actors.pool_workers == 0 {
            return Err(Error::Config(
                "actors.pool_workers must be at least 1".into(),
            ));
        }
        let schema = &self.journal.schema;
        let schema_ok = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !schema_ok {
            return Err(Error::Config(format!(
                "journal.schema {schema:?}: letters, digits and `_` only, not starting with a digit"
            )));
        }
        if let Some(url) = &self.journal.url {
            let url = url.expose();
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(Error::Config(
                    "journal.url must be a postgres:// URL (unset: SQLite under data_dir)".into(),
                ));
            }
        }
        if let Some(endpoint) = &self.otlp.endpoint {
            let rest = endpoint.strip_prefix("http://").unwrap_or_default();
            if rest.is_empty() || rest.starts_with('/') {
                return Err(Error::Config(format!(
                    "otlp.endpoint {endpoint:?} must be an http:// URL, e.g. http://127.0.0.1:4318"
                )));
            }
        }
        if self.otlp.service_name.trim().is_empty() {
            return Err(Error::Config("otlp.service_name must not be empty".into()));
        }
        if self.actors.mailbox_capacity == 0 {
            return Err(Error::Config(
                "actors.mailbox_capacity must be at least 1".into(),
            ));
        }
        self.workflows.validate()?;
        self.wasm.validate()?;
        self.virtual_actors.spec(self)?;
        self.cluster.plan()?;
        self.validate_storage()?;
        Ok(())
    }

    fn validate_storage(&self) -> Result<()> {
        let kv = &self.kv;
        match kv.backend {
            KvBackend::Postgres => {
                let ok = kv.url.as_ref().is_some_and(|u| {
                    u.expose().starts_with("postgres://") || u.expose().starts_with("postgresql://")
                });
                if !ok {
                    return Err(Error::Config(
                        "kv.backend = \"postgres\" needs kv.url = \"postgres://...\"".into(),
                    ));
                }
                let schema_ok = !kv.schema.is_empty()
                    && kv.schema.len() <= 63
                    && kv
                        .schema
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !kv.schema.starts_with(|c: char| c.is_ascii_digit());
                if !schema_ok {
                    return Err(Error::Config(format!(
                        "kv.schema {:?}: letters, digits and `_` only, not starting with a digit",
                        kv.schema
                    )));
                }
            }
            KvBackend::Redis => {
                let ok = kv.url.as_ref().is_some_and(|u| {
                    u.expose().starts_with("redis://") || u.expose().starts_with("rediss://")
                });
                if !ok {
                    return Err(Error::Config(
                        "kv.backend = \"redis\" needs kv.url = \"redis://...\"".into(),
                    ));
                }
            }
            KvBackend::Sqlite | KvBackend::Memory => {}
        }
        if !(10..=60_000).contains(&self.reminders.poll_interval_ms) {
            return Err(Error::Config(format!(
                "reminders.poll_interval_ms {} must be between 10 and 60000",
                self.reminders.poll_interval_ms
            )));
        }
        if self.blobs.max_blob_bytes == 0 {
            return Err(Error::Config(
                "blobs.max_blob_bytes must be at least 1".into(),
            ));
        }
        let ch = &self.channels;
        if !(1..=3_600_000).contains(&ch.visibility_timeout_ms) {
            return Err(Error::Config(format!(
                "channels.visibility_timeout_ms {} must be between 1 and 3600000",
                ch.visibility_timeout_ms
            )));
        }
        if ch.max_deliveries == 0 {
            return Err(Error::Config(
                "channels.max_deliveries must be at least 1".into(),
            ));
        }
        let needs = |b: ChannelsBackend, set: bool, key: &str| {
            if ch.backend == Some(b) && !set {
                Err(Error::Config(format!(
                    "channels.backend = {b:?} needs channels.{key}"
                )))
            } else {
                Ok(())
            }
        };
        needs(ChannelsBackend::Nats, ch.nats_url.is_some(), "nats_url")?;
        needs(ChannelsBackend::Redis, ch.redis_url.is_some(), "redis_url")?;
        needs(
            ChannelsBackend::Kafka,
            !ch.kafka_brokers.is_empty(),
            "kafka_brokers",
        )?;
        for (i, inbox) in ch.inboxes.iter().enumerate() {
            let at = format!("channels.inboxes[{i}]");
            if inbox.actor_type.is_empty() || inbox.queue.is_empty() {
                return Err(Error::Config(format!(
                    "{at} needs an actor_type and a queue"
                )));
            }
            plexspaces_channels::ChannelId::new(&inbox.tenant, &inbox.namespace, &inbox.queue)
                .map_err(|e| Error::Config(format!("{at}: {e}")))?;
            if !(1..=plexspaces_channels::MAX_BATCH).contains(&inbox.batch)
                || inbox.handle_timeout_ms == 0
            {
                return Err(Error::Config(format!(
                    "{at}: batch must be 1 to {} and handle_timeout_ms above 0",
                    plexspaces_channels::MAX_BATCH
                )));
            }
        }
        Ok(())
    }

    /// The HTTP listen address.
    pub fn http_addr(&self) -> Result<SocketAddr> {
        parse_addr("http.addr", &self.http.addr)
    }

    /// The gRPC listen address.
    pub fn grpc_addr(&self) -> Result<SocketAddr> {
        parse_addr("grpc.addr", &self.grpc.addr)
    }

    /// Idle timeout of virtual actors.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.actors.idle_timeout_ms)
    }

    /// Default invocation timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.http.request_timeout_ms)
    }

    /// The configuration as TOML with every secret masked (safe to log or show).
    pub fn masked_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }

    /// The embedded journal's SQLite file (used when `journal.url` is unset).
    pub fn journal_path(&self) -> PathBuf {
        self.data_dir.join("journal.db")
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

fn parse_addr(key: &str, text: &str) -> Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    text.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Config(format!("{key} {text:?} is not HOST:PORT")))
}

/// `a, b,,c` -> `["a", "b", "c"]` as TOML strings.
pub fn split_list(text: &str) -> Vec<toml::Value> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| toml::Value::String(s.to_owned()))
        .collect()
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(l)) => merge(b, l),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn set(table: &mut toml::Table, dotted: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts
        .pop()
        .ok_or_else(|| Error::Config(format!("empty key {dotted:?}")))?;
    let mut at = table;
    for part in parts {
        let entry = at
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = match entry {
            toml::Value::Table(t) => t,
            _ => return Err(Error::Config(format!("{dotted}: {part} is not a section"))),
        };
    }
    at.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_documented_ports() {
        let c = NodeConfig::load(ConfigSources::default()).unwrap();
        assert_eq!(c.http_addr().unwrap().port(), 8094);
        assert_eq!(c.grpc_addr().unwrap().port(), 8000);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "node_id = \"from-file\"\n[http]\naddr = \"127.0.0.1:1\"\nmax_body_bytes = 10\n",
        )
        .unwrap();
        let c = NodeConfig::load(ConfigSources {
            file: Some(file),
            env: env(&[
                ("PLEXSPACES_HTTP_ADDR", "127.0.0.1:2"),
                ("PLEXSPACES_DISABLE_AUTH", "1"),
                ("PLEXSPACES_DATA_DIR", "/tmp/x"),
                ("HOME", "/root"),
            ]),
            overrides: vec![(
                "http.addr".into(),
                toml::Value::String("127.0.0.1:3".into()),
            )],
        })
        .unwrap();
        assert_eq!(c.node_id, "from-file");
        assert_eq!(c.http.max_body_bytes, 10);
        assert_eq!(c.http.addr, "127.0.0.1:3");
        assert!(c.auth.disabled);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn unknown_file_keys_are_rejected_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "[http]\nadress = \"x\"\n").unwrap();
        let err = NodeConfig::load(ConfigSources {
            file: Some(file),
            ..ConfigSources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `adress`"), "{err}");
        assert!(err.contains("node.toml"), "{err}");
    }

    #[test]
    fn unknown_env_vars_and_bad_values_are_rejected() {
        let err = NodeConfig::load(ConfigSources {
            env: env(&[("PLEXSPACES_HTTP_ADR", "x")]),
            ..ConfigSources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("PLEXSPACES_HTTP_ADR"), "{err}");
        let err = NodeConfig::load(ConfigSources {
            env: env(&[("PLEXSPACES_MAX_BODY_BYTES", "lots")]),
            ..ConfigSources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a whole number"), "{err}");
        let err = NodeConfig::load(ConfigSources {
            overrides: vec![("grpc.addr".into(), toml::Value::String("nope".into()))],
            ..ConfigSources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("grpc.addr"), "{err}");
    }

    #[test]
    fn journal_keys_load_and_the_url_is_a_secret() {
        let c = NodeConfig::load(ConfigSources {
            env: env(&[
                ("PLEXSPACES_JOURNAL_URL", "postgres://u:pw1234@db:5432/x"),
                ("PLEXSPACES_JOURNAL_SCHEMA", "node_a"),
                ("PLEXSPACES_JOURNAL_CHECKPOINT_EVERY", "7"),
            ]),
            ..ConfigSources::default()
        })
        .unwrap();
        assert_eq!(
            c.journal.url.as_ref().unwrap().expose(),
            "postgres://u:pw1234@db:5432/x"
        );
        assert_eq!(c.journal.schema, "node_a");
        assert_eq!(c.journal.checkpoint_every_messages, 7);
        assert!(!c.masked_toml().contains("pw1234"));
        assert_eq!(
            NodeConfig::default().journal_path(),
            PathBuf::from("plexspaces-data/journal.db")
        );
        for (key, value) in [
            ("PLEXSPACES_JOURNAL_URL", "mysql://x"),
            ("PLEXSPACES_JOURNAL_SCHEMA", "drop table"),
        ] {
            let err = NodeConfig::load(ConfigSources {
                env: env(&[(key, value)]),
                ..ConfigSources::default()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("journal."), "{err}");
        }
    }

    #[test]
    fn otlp_keys_load_and_are_checked() {
        let c = NodeConfig::load(ConfigSources::default()).unwrap();
        assert_eq!(c.otlp.endpoint, None);
        assert_eq!(c.otlp.service_name, "plexspaces");
        assert_eq!(c.otlp.traces_url(), None);
        let c = NodeConfig::load(ConfigSources {
            env: env(&[
                ("PLEXSPACES_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
                ("PLEXSPACES_OTLP_SERVICE_NAME", "edge"),
            ]),
            ..ConfigSources::default()
        })
        .unwrap();
        assert_eq!(c.otlp.service_name, "edge");
        assert_eq!(
            c.otlp.traces_url().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "[otlp]\nendpoint = \"http://collector:4318/v1/traces\"\n",
        )
        .unwrap();
        let c = NodeConfig::load(ConfigSources {
            file: Some(file),
            ..ConfigSources::default()
        })
        .unwrap();
        assert_eq!(
            c.otlp.traces_url().as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        for (key, value) in [
            ("PLEXSPACES_OTLP_ENDPOINT", "grpc://x:4317"),
            ("PLEXSPACES_OTLP_ENDPOINT", "https://x:4318"),
            ("PLEXSPACES_OTLP_SERVICE_NAME", " "),
        ] {
            let err = NodeConfig::load(ConfigSources {
                env: env(&[(key, value)]),
                ..ConfigSources::default()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("otlp."), "{err}");
        }
    }

    #[test]
    fn workflow_keys_load_and_are_checked() {
        let c = NodeConfig::load(ConfigSources::default()).unwrap();
        assert_eq!(c.workflows.inbox_poll_ms, 1000);
        let c = NodeConfig::load(ConfigSources {
            env: env(&[("PLEXSPACES_WORKFLOW_INBOX_POLL_MS", "250")]),
            ..ConfigSources::default()
        })
        .unwrap();
        assert_eq!(c.workflows.inbox_poll_ms, 250);
        for value in ["0", "60001"] {
            let err = NodeConfig::load(ConfigSources {
                env: env(&[("PLEXSPACES_WORKFLOW_INBOX_POLL_MS", value)]),
                ..ConfigSources::default()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains("workflows.inbox_poll_ms"), "{err}");
        }
    }

    #[test]
    fn cluster_keys_load_from_every_layer_and_are_checked() {
        let c = NodeConfig::load(ConfigSources::default()).unwrap();
        assert_eq!(
            c.cluster.plan().unwrap(),
            None,
            "no [cluster]: the node runs alone"
        );
        let c = NodeConfig::load(ConfigSources {
            env: env(&[
                ("PLEXSPACES_CLUSTER_NAME", "demo"),
                ("PLEXSPACES_CLUSTER_ADDR", "127.0.0.1:7001"),
                ("PLEXSPACES_SEEDS", "127.0.0.1:7002, 127.0.0.1:7003,"),
                ("PLEXSPACES_GOSSIP_INTERVAL_MS", "100"),
            ]),
            ..ConfigSources::default()
        })
        .unwrap();
        let plan = c.cluster.plan().unwrap().unwrap();
        assert_eq!(plan.name, "demo");
        assert_eq!(plan.listen.port(), 7001);
        assert_eq!(plan.advertise, plan.listen);
        assert_eq!(plan.seeds, vec!["127.0.0.1:7002", "127.0.0.1:7003"]);
        assert_eq!(plan.tls, None);
        assert_eq!(c.cluster.gossip_interval(), Duration::from_millis(100));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(
            &file,
            "[cluster]\nname = \"prod\"\naddr = \"0.0.0.0:7000\"\nadvertise_addr = \"10.0.0.5\"\n\
             seeds = [\"10.0.0.6:7000\"]\ntls_ca = \"ca.pem\"\ntls_cert = \"n.pem\"\ntls_key = \"n.key\"\n\
             [cluster.labels]\nzone = \"a\"\n",
        )
        .unwrap();
        let c = NodeConfig::load(ConfigSources {
            file: Some(file.clone()),
            ..ConfigSources::default()
        })
        .unwrap();
        let plan = c.cluster.plan().unwrap().unwrap();
        assert_eq!(plan.advertise.to_string(), "10.0.0.5:7000");
        assert!(plan.tls.is_some());
        assert_eq!(c.cluster.labels["zone"], "a");

        std::fs::write(&file, "[cluster]\nname = \"x\"\nsedes = []\n").unwrap();
        let err = NodeConfig::load(ConfigSources {
            file: Some(file),
            ..ConfigSources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `sedes`"), "{err}");

        for (pairs, expect) in [
            (&[("PLEXSPACES_CLUSTER_NAME", "a b")][..], "cluster.name"),
            (
                &[
                    ("PLEXSPACES_CLUSTER_NAME", "c"),
                    ("PLEXSPACES_CLUSTER_ADDR", "127.0.0.1:0"),
                ][..],
                "fixed port",
            ),
            (
                &[
                    ("PLEXSPACES_CLUSTER_NAME", "c"),
                    ("PLEXSPACES_CLUSTER_ADDR", "0.0.0.0:7000"),
                ][..],
                "advertise_addr",
            ),
            (
                &[
                    ("PLEXSPACES_CLUSTER_NAME", "c"),
                    ("PLEXSPACES_CLUSTER_ADDR", "0.0.0.0:7000"),
                    ("PLEXSPACES_ADVERTISE_ADDR", "10.1.2.3"),
                ][..],
                "beyond loopback",
            ),
            (
                &[
                    ("PLEXSPACES_CLUSTER_NAME", "c"),
                    ("PLEXSPACES_CLUSTER_TLS_CA", "ca.pem"),
                ][..],
                "go together",
            ),
            (
                &[
                    ("PLEXSPACES_CLUSTER_NAME", "c"),
                    ("PLEXSPACES_SEEDS", "nowhere"),
                ][..],
                "cluster.seeds",
            ),
            (
                &[("PLEXSPACES_CLUSTER_NAMES", "c")][..],
                "PLEXSPACES_CLUSTER_NAMES",
            ),
        ] {
            let err = NodeConfig::load(ConfigSources {
                env: env(pairs),
                ..ConfigSources::default()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(expect), "{pairs:?}: {err}");
        }
        // Beyond loopback without certificates only when asked for.
        let c = NodeConfig::load(ConfigSources {
            env: env(&[
                ("PLEXSPACES_CLUSTER_NAME", "c"),
                ("PLEXSPACES_CLUSTER_ADDR", "0.0.0.0:7000"),
                ("PLEXSPACES_ADVERTISE_ADDR", "10.1.2.3"),
                ("PLEXSPACES_CLUSTER_INSECURE", "1"),
            ]),
            ..ConfigSources::default()
        })
        .unwrap();
        assert_eq!(c.cluster.plan().unwrap().unwrap().tls, None);
    }

    #[test]
    fn secrets_are_masked_in_dumps() {
        let c = NodeConfig::load(ConfigSources {
            env: env(&[("PLEXSPACES_JWT_SECRET", "hunter2")]),
            ..ConfigSources::default()
        })
        .unwrap();
        assert_eq!(c.auth.jwt_secret.as_ref().unwrap().expose(), "hunter2");
        let dump = c.masked_toml();
        assert!(!dump.contains("hunter2"), "{dump}");
        assert!(format!("{c:?}").find("hunter2").is_none());
    }
}
