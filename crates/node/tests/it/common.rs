use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::{Actor, BoxError, Context, Envelope, Error, MailboxConfig, Result};
use plexspaces_node::auth::{mint_hs256, TokenSpec};
use plexspaces_node::config::AuthConfig;
use plexspaces_node::{ActorType, NodeConfig, NodeServer, Secret, ServerHandle};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

pub const SECRET: &str = "integration-secret";

/// A test actor: `ping` answers its id, `block` waits for a permit of `gate`, `fail` fails.
pub struct Probe {
    gate: Arc<Semaphore>,
}

pub enum ProbeMsg {
    Ping,
    Block,
    Fail,
}

impl Actor for Probe {
    type Msg = ProbeMsg;
    type Reply = Value;

    async fn handle_call(
        &mut self,
        msg: ProbeMsg,
        ctx: &mut Context<Self>,
    ) -> std::result::Result<Option<Value>, BoxError> {
        match msg {
            ProbeMsg::Ping => Ok(Some(json!({ "id": ctx.id().to_string() }))),
            ProbeMsg::Block => {
                let permit = self.gate.acquire().await?;
                permit.forget();
                Ok(Some(json!({ "released": true })))
            }
            ProbeMsg::Fail => Err("asked to fail".into()),
        }
    }

    fn decode(env: &Envelope) -> Result<ProbeMsg> {
        match env.msg_type.as_str() {
            "ping" | "get" => Ok(ProbeMsg::Ping),
            "block" => Ok(ProbeMsg::Block),
            "fail" => Ok(ProbeMsg::Fail),
            other => Err(Error::UnknownMsgType {
                msg_type: other.into(),
                actor_type: "probe".into(),
            }),
        }
    }

    fn encode_reply(request_type: &str, reply: &Value) -> Result<Envelope> {
        Envelope::json(request_type, reply)
    }
}

pub struct TestNode {
    pub handle: ServerHandle,
    pub http: String,
    pub gate: Arc<Semaphore>,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

#[derive(Default)]
pub struct Setup {
    pub auth: bool,
    pub rsa: bool,
    pub max_body: Option<usize>,
    pub idle_ms: Option<u64>,
    pub data_dir: Option<std::path::PathBuf>,
    /// PostgreSQL journal: (url, schema).
    pub postgres: Option<(String, String)>,
    pub checkpoint_every: Option<u64>,
    /// The node's name (default `node1`).
    pub node_id: Option<String>,
    /// `virtual_actors.directory`.
    pub directory: Option<String>,
    /// `(node_id, [cluster])`: the node joins a cluster.
    pub cluster: Option<(String, plexspaces_node::config::ClusterConfig)>,
    /// The longest ask wait (default 5 s).
    pub request_timeout_ms: Option<u64>,
    /// Placement per actor type from code ([`plexspaces_node::NodeServerBuilder::placement`]).
    pub placement: Vec<(String, plexspaces_cluster::placement::Placement)>,
    /// Placement per actor type in the config (`[virtual_actors.placement]`).
    pub config_placement: Vec<(String, plexspaces_cluster::placement::Placement)>,
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

impl TestNode {
    pub async fn start(setup: Setup) -> TestNode {
        let dir = if setup.data_dir.is_none() {
            Some(tempfile::tempdir().expect("tempdir"))
        } else {
            None
        };
        let mut config = NodeConfig::default();
        config.http.addr = "127.0.0.1:0".into();
        config.grpc.addr = "127.0.0.1:0".into();
        config.http.request_timeout_ms = setup.request_timeout_ms.unwrap_or(5_000);
        if let Some((node_id, cluster)) = &setup.cluster {
            config.node_id = node_id.clone();
            config.cluster = cluster.clone();
        }
        config.data_dir = setup.data_dir.clone().unwrap_or_else(|| {
            dir.as_ref()
                .map(|d| d.path().to_owned())
                .unwrap_or_default()
        });
        if let Some(max) = setup.max_body {
            config.http.max_body_bytes = max;
        }
        if let Some((url, schema)) = &setup.postgres {
            config.journal.url = Some(Secret::new(url.clone()));
            config.journal.schema = schema.clone();
        }
        if let Some(id) = &setup.node_id {
            config.node_id = id.clone();
        }
        if let Some(d) = &setup.directory {
            config.virtual_actors.directory = Some(Secret::new(d.clone()));
        }
        if let Some(n) = setup.checkpoint_every {
            config.journal.checkpoint_every_messages = n;
        }
        if let Some(ms) = setup.idle_ms {
            config.actors.idle_timeout_ms = ms;
        }
        config.auth = if setup.auth {
            AuthConfig {
                jwt_secret: Some(Secret::new(SECRET)),
                jwt_public_key_file: setup.rsa.then(|| fixture("rsa_public.pem")),
                ..AuthConfig::default()
            }
        } else {
            AuthConfig {
                disabled: true,
                ..AuthConfig::default()
            }
        };
        let gate = Arc::new(Semaphore::new(0));
        let g = gate.clone();
        let probe = ActorType::virtual_actor("probe", move |_| Probe { gate: g.clone() })
            .mailbox(MailboxConfig::Bounded(1));
        let g = gate.clone();
        let pool = ActorType::worker_pool("pool", 3, move |_| Probe { gate: g.clone() });
        for (actor_type, p) in &setup.config_placement {
            config.virtual_actors.placement.set(actor_type, p.clone());
        }
        let mut builder = NodeServer::builder(config).actor_types(vec![probe, pool]);
        for (actor_type, p) in &setup.placement {
            builder = builder.placement(actor_type, p.clone());
        }
        let handle = builder.start().await.expect("node starts");
        let http = format!("http://{}", handle.http_addr());
        TestNode {
            handle,
            http,
            gate,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.http, path)
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.handle.grpc_addr())
    }
}

pub fn token(tenant: &str, ttl: i64) -> String {
    mint(tenant, ttl, false)
}

/// A token of `tenant` with the operator claim (may see node-wide figures).
pub fn operator_token(tenant: &str) -> String {
    mint(tenant, 300, true)
}

fn mint(tenant: &str, ttl: i64, operator: bool) -> String {
    mint_with_roles(tenant, "tests", ttl, operator, &[])
}

/// A token of `tenant` for `subject` with these roles (claim `roles`).
pub fn role_token(tenant: &str, subject: &str, roles: &[&str]) -> String {
    mint_with_roles(tenant, subject, 300, false, roles)
}

fn mint_with_roles(
    tenant: &str,
    subject: &str,
    ttl: i64,
    operator: bool,
    roles: &[&str],
) -> String {
    mint_hs256(
        &TokenSpec {
            tenant,
            tenant_claim: "tenant_id",
            subject,
            ttl_secs: ttl,
            issuer: None,
            operator,
            roles,
        },
        SECRET,
    )
    .expect("mint")
}

/// Sends and returns (status, JSON body).
pub async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

pub async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    plexspaces_test_util::eventually(Duration::from_secs(10), &mut check).await
}
