//! `AuthenticationFacet` and `AuthorizationFacet` over the node's real HTTP and gRPC paths
//! (a verified JWT with roles), and `TimerFacet` timers set from a handler.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::{Actor, BoxError, Context, Envelope, Facet};
use plexspaces_node::config::AuthConfig;
use plexspaces_node::facets::{
    caller_of, Allow, AuthenticationFacet, AuthorizationFacet, Policy, TimerId, Timers,
};
use plexspaces_node::{ActivationKey, ActorType, NodeConfig, NodeServer, Secret};
use plexspaces_proto::v1::actor_service_client::ActorServiceClient;
use plexspaces_proto::v1::{ActorAddress, AskRequest};
use serde_json::{json, Value};

use crate::common::{eventually, role_token, send, SECRET};

/// Answers who called; `withdraw` also counts how often its handler ran.
struct Vault {
    withdrawals: Arc<AtomicU32>,
}

impl Actor for Vault {
    type Msg = Envelope;
    type Reply = Value;

    async fn handle_call(
        &mut self,
        msg: Envelope,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Value>, BoxError> {
        if msg.msg_type == "withdraw" {
            self.withdrawals.fetch_add(1, Ordering::SeqCst);
        }
        let caller = caller_of(ctx);
        Ok(Some(json!({
            "msg_type": msg.msg_type,
            "tenant": caller.as_ref().map(|c| c.tenant.clone()),
            "subject": caller.as_ref().and_then(|c| c.subject.clone()),
            "roles": caller.map(|c| c.roles).unwrap_or_default(),
        })))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<Envelope> {
        Ok(env.clone())
    }

    fn encode_reply(request_type: &str, reply: &Value) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }
}

async fn auth_node(
    withdrawals: Arc<AtomicU32>,
) -> (plexspaces_node::ServerHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.data_dir = dir.path().to_owned();
    config.auth = AuthConfig {
        jwt_secret: Some(Secret::new(SECRET)),
        ..AuthConfig::default()
    };
    let policy = Policy::deny_by_default()
        .rule("balance", Allow::AnyCaller)
        .allow_roles("withdraw", &["admin", "teller"])
        .rule("audit", Allow::Internal);
    let vault = ActorType::virtual_actor("vault", move |_| Vault {
        withdrawals: withdrawals.clone(),
    })
    .facets(move |_| {
        vec![
            AuthenticationFacet::new() as Arc<dyn Facet>,
            AuthorizationFacet::new(policy.clone()),
        ]
    });
    let handle = NodeServer::start(config, vec![vault]).await.unwrap();
    (handle, dir)
}

#[tokio::test]
async fn a_policy_refuses_before_the_handler_and_the_handler_sees_its_caller() {
    let withdrawals = Arc::new(AtomicU32::new(0));
    let (handle, _dir) = auth_node(withdrawals.clone()).await;
    let url = |msg_type: &str| {
        format!(
            "http://{}/api/v1/actors/ns/vault/invoke?msg_type={msg_type}&key=v1",
            handle.http_addr()
        )
    };
    let c = reqwest::Client::new();
    let reader = role_token("acme", "bob", &["reader"]);
    let admin = role_token("acme", "alice", &["reader", "admin"]);

    // allowed: any caller may ask for the balance; the handler sees who asked
    let (s, b) = send(c.post(url("balance")).bearer_auth(&reader).json(&json!({}))).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b,
        json!({"msg_type": "balance", "tenant": "acme", "subject": "bob", "roles": ["reader"]})
    );
    // refused: a reader may not withdraw, and the handler never runs
    let (s, b) = send(
        c.post(url("withdraw"))
            .bearer_auth(&reader)
            .json(&json!({})),
    )
    .await;
    assert_eq!((s, b["code"].as_str()), (403, Some("rejected")), "{b}");
    assert!(b["message"].as_str().unwrap().contains("bob"), "{b}");
    assert_eq!(withdrawals.load(Ordering::SeqCst), 0);
    // a client cannot pose as another caller through headers of its own
    let (s, b) = send(
        c.post(url("withdraw"))
            .bearer_auth(&reader)
            .header("x-plexspaces-caller-roles", "admin")
            .json(&json!({})),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(withdrawals.load(Ordering::SeqCst), 0);
    // allowed by role
    let (s, b) = send(c.post(url("withdraw")).bearer_auth(&admin).json(&json!({}))).await;
    assert_eq!((s, b["subject"].as_str()), (200, Some("alice")), "{b}");
    assert_eq!(withdrawals.load(Ordering::SeqCst), 1);
    // internal-only and unlisted types are refused for every caller
    for t in ["audit", "close"] {
        let (s, b) = send(c.post(url(t)).bearer_auth(&admin).json(&json!({}))).await;
        assert_eq!((s, b["code"].as_str()), (403, Some("rejected")), "{t}: {b}");
    }
    // no token: the node refuses before any actor sees it
    let (s, _) = send(c.post(url("balance")).json(&json!({}))).await;
    assert_eq!(s, 401);

    // missing identity: a message sent to the activation from the node itself carries no
    // caller, and the policy refuses it for a type that needs one
    let key = ActivationKey::new("acme", "ns", "vault", "v1");
    let pid = handle.registry().get(&key).expect("active").pids()[0].clone();
    let e = pid
        .ask_envelope(
            Envelope::new("withdraw", b"{}".to_vec(), "application/json"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "rejected", "{e}");
    assert!(e.to_string().contains("no caller identity"), "{e}");
    assert_eq!(withdrawals.load(Ordering::SeqCst), 1);
    // ... and lets it through for an internal-only type, where the handler sees no caller
    let reply = pid
        .ask_envelope(
            Envelope::new("audit", b"{}".to_vec(), "application/json"),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    let reply: Value = reply.decode_json().unwrap();
    assert_eq!(reply["subject"], Value::Null, "{reply}");

    // the same policy over gRPC
    let mut grpc = ActorServiceClient::connect(format!("http://{}", handle.grpc_addr()))
        .await
        .unwrap();
    let ask = |msg_type: &str, token: &str| {
        let mut req = tonic::Request::new(AskRequest {
            address: Some(ActorAddress {
                tenant: String::new(),
                namespace: "ns".into(),
                actor_type: "vault".into(),
                key: "v1".into(),
            }),
            msg_type: msg_type.into(),
            payload: b"{}".to_vec().into(),
            content_type: String::new(),
            timeout_ms: 0,
        });
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        req
    };
    let e = grpc.ask(ask("withdraw", &reader)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let ok = grpc
        .ask(ask("withdraw", &admin))
        .await
        .unwrap()
        .into_inner();
    let ok: Value = serde_json::from_slice(&ok.payload).unwrap();
    assert_eq!(ok["subject"], "alice");
    assert_eq!(withdrawals.load(Ordering::SeqCst), 2);
    handle.shutdown().await;
}

#[tokio::test]
async fn authentication_required_refuses_a_message_without_a_caller() {
    struct Plain;
    impl Actor for Plain {
        type Msg = Envelope;
        type Reply = Value;
        async fn handle_call(
            &mut self,
            _msg: Envelope,
            ctx: &mut Context<Self>,
        ) -> Result<Option<Value>, BoxError> {
            Ok(Some(
                json!({ "subject": caller_of(ctx).and_then(|c| c.subject) }),
            ))
        }
        fn decode(env: &Envelope) -> plexspaces_core::Result<Envelope> {
            Ok(env.clone())
        }
        fn encode_reply(t: &str, reply: &Value) -> plexspaces_core::Result<Envelope> {
            Envelope::json(t, reply)
        }
    }
    let node = plexspaces_core::Node::builder("authn")
        .build()
        .await
        .unwrap();
    let actor = node
        .start(
            Plain,
            plexspaces_core::SpawnOptions::default().facet(AuthenticationFacet::required()),
        )
        .await
        .unwrap();
    let pid = actor.pid();
    let e = pid
        .ask_envelope(
            Envelope::new("hi", b"{}".to_vec(), "application/json"),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "rejected", "{e}");
    let mut env = Envelope::new("hi", b"{}".to_vec(), "application/json");
    plexspaces_node::service::Caller {
        tenant: "t".into(),
        subject: Some("carol".into()),
        ..Default::default()
    }
    .write_headers(&mut env.headers);
    let reply: Value = pid
        .ask_envelope(env, Duration::from_secs(5))
        .await
        .unwrap()
        .decode_json()
        .unwrap();
    assert_eq!(reply["subject"], "carol");
    node.shutdown().await;
}

/// Sets timers through `ctx` and counts what they deliver.
#[derive(Default)]
struct Ticker {
    ticks: u64,
    once: u64,
    interval: Option<TimerId>,
    ticks_at_cancel: u64,
}

impl Actor for Ticker {
    type Msg = Envelope;
    type Reply = Value;

    async fn handle_call(
        &mut self,
        msg: Envelope,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Value>, BoxError> {
        let timers = ctx.service::<Timers>().ok_or("no timer facet")?;
        let body: Value = msg.decode_json().unwrap_or(Value::Null);
        let ms = |k: &str| Duration::from_millis(body[k].as_u64().unwrap_or(10));
        let tick = |t: &str| Envelope::new(t, b"{}".to_vec(), "application/json");
        Ok(Some(match msg.msg_type.as_str() {
            "every" => {
                self.interval = Some(timers.every(ms("period_ms"), tick("tick"))?);
                json!({ "pending": timers.pending() })
            }
            "once" => {
                let id = timers.after(ms("delay_ms"), tick("tick_once"))?;
                json!({ "id": id.0, "pending": timers.pending() })
            }
            "cancel_interval" => {
                let id = self.interval.take().ok_or("no interval")?;
                self.ticks_at_cancel = self.ticks;
                json!({ "cancelled": timers.cancel(id), "pending": timers.pending() })
            }
            "cancel" => {
                let id = TimerId(body["id"].as_u64().ok_or("no id")?);
                json!({ "cancelled": timers.cancel(id) })
            }
            "tick" => {
                self.ticks += 1;
                Value::Null
            }
            "tick_once" => {
                self.once += 1;
                Value::Null
            }
            _ => json!({
                "ticks": self.ticks,
                "once": self.once,
                "ticks_at_cancel": self.ticks_at_cancel,
                "pending": timers.pending(),
            }),
        }))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<Envelope> {
        Ok(env.clone())
    }

    fn encode_reply(request_type: &str, reply: &Value) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }
}

#[tokio::test]
async fn timers_set_from_a_handler_fire_repeat_and_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.auth.disabled = true;
    config.data_dir = dir.path().to_owned();
    let ticker = ActorType::virtual_actor("ticker", |_| Ticker::default());
    let handle = NodeServer::start(config, vec![ticker]).await.unwrap();
    let c = reqwest::Client::new();
    let call = |msg_type: &str, body: Value| {
        let url = format!(
            "http://{}/api/v1/actors/ns/ticker/invoke?msg_type={msg_type}&key=t1",
            handle.http_addr()
        );
        let req = c.post(url).json(&body);
        async move {
            let (s, b) = send(req).await;
            assert_eq!(s, 200, "{b}");
            b
        }
    };
    // interval: ticks keep coming
    assert_eq!(call("every", json!({"period_ms": 20})).await["pending"], 1);
    assert!(
        eventually(|| async { call("get", json!({})).await["ticks"].as_u64() >= Some(3) }).await,
        "an interval timer ticks again and again"
    );
    // cancel: reported as pending, then nothing pending
    let b = call("cancel_interval", json!({})).await;
    assert_eq!(b, json!({"cancelled": true, "pending": 0}));
    // one-shot: fires once, after which it is no longer pending and cannot be cancelled;
    // its delay spans many interval periods, so a tick after the cancel would show
    let id = call("once", json!({"delay_ms": 200})).await["id"]
        .as_u64()
        .unwrap();
    assert!(
        eventually(|| async { call("get", json!({})).await["once"] == 1 }).await,
        "a one-shot timer fires"
    );
    let b = call("get", json!({})).await;
    assert_eq!(b["pending"], 0, "{b}");
    let (ticks, at_cancel) = (
        b["ticks"].as_u64().unwrap(),
        b["ticks_at_cancel"].as_u64().unwrap(),
    );
    // one tick may have been on its way while the cancel ran
    assert!(ticks <= at_cancel + 1, "no ticks after the cancel: {b}");
    assert_eq!(call("cancel", json!({"id": id})).await["cancelled"], false);
    // a one-shot cancelled before it fires never arrives
    let id = call("once", json!({"delay_ms": 60_000})).await["id"]
        .as_u64()
        .unwrap();
    assert_eq!(call("cancel", json!({"id": id})).await["cancelled"], true);
    assert_eq!(call("get", json!({})).await["pending"], 0);
    handle.shutdown().await;
}
