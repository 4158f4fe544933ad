//! `plexspaces.v1.TupleSpaceService` over a real gRPC socket.

use std::time::Duration;

use futures::StreamExt;
use plexspaces_core::{Actor, BoxError, Context, Envelope};
use plexspaces_node::config::AuthConfig;
use plexspaces_node::{ActorType, NodeConfig, NodeServer};
use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::tuple_space_service_client::TupleSpaceServiceClient;
use plexspaces_tuplespace::{template, tuple, SpaceId, Spaces, TupleSpaceContext};
use serde_json::{json, Value};
use tonic::transport::Channel;
use tonic::Code;

use crate::common::{eventually, token, Setup, TestNode};

type Client = TupleSpaceServiceClient<Channel>;

fn int(i: i64) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Int(i)),
    }
}

fn string(s: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::String(s.into())),
    }
}

fn tup(fields: Vec<pb::Value>) -> Option<pb::Tuple> {
    Some(pb::Tuple { fields })
}

fn exact(v: pb::Value) -> pb::Pattern {
    pb::Pattern {
        kind: Some(pb::pattern::Kind::Exact(v)),
    }
}

fn formal(t: pb::FieldType) -> pb::Pattern {
    pb::Pattern {
        kind: Some(pb::pattern::Kind::Type(t as i32)),
    }
}

fn tpl(patterns: Vec<pb::Pattern>) -> Option<pb::Template> {
    Some(pb::Template { patterns })
}

/// `("job", ?int)`
fn job_template() -> Option<pb::Template> {
    tpl(vec![exact(string("job")), formal(pb::FieldType::Int)])
}

fn write(space: &str, fields: Vec<pb::Value>) -> pb::WriteRequest {
    pb::WriteRequest {
        namespace: String::new(),
        space: space.into(),
        tuple: tup(fields),
        ttl_ms: 0,
    }
}

fn query(space: &str, template: Option<pb::Template>) -> pb::TemplateRequest {
    pb::TemplateRequest {
        namespace: String::new(),
        space: space.into(),
        template,
    }
}

fn wait(space: &str, template: Option<pb::Template>, timeout_ms: u64) -> pb::WaitRequest {
    pb::WaitRequest {
        namespace: String::new(),
        space: space.into(),
        template,
        timeout_ms,
    }
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

async fn client(n: &TestNode) -> Client {
    TupleSpaceServiceClient::connect(n.grpc_endpoint())
        .await
        .unwrap()
}

fn spaces(n: &TestNode) -> std::sync::Arc<Spaces> {
    n.handle
        .node()
        .service::<Spaces>()
        .expect("the node offers its Spaces as a service")
}

#[tokio::test]
async fn write_read_take_count_over_grpc() {
    let n = TestNode::start(Setup::default()).await;
    let mut c = client(&n).await;
    for i in [1, 2, 3] {
        let w = c
            .write(write("jobs", vec![string("job"), int(i)]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(w.expires_at_ms, 0);
    }
    c.write(write("jobs", vec![string("other"), int(9)]))
        .await
        .unwrap();
    let count = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.count(query("jobs", job_template()))
                .await
                .unwrap()
                .into_inner()
                .count
        }
    };
    assert_eq!(count(&mut c).await, 3);

    // read: the oldest match, and it stays
    let read = c
        .read(wait("jobs", job_template(), 1_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.tuple, tup(vec![string("job"), int(1)]));
    assert_eq!(count(&mut c).await, 3);

    // take: the oldest match, and it is gone
    let taken = c
        .take(wait("jobs", job_template(), 1_000))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(taken.tuple, tup(vec![string("job"), int(1)]));
    assert_eq!(count(&mut c).await, 2);

    // exact match on the second field
    let two = tpl(vec![exact(string("job")), exact(int(2))]);
    let r = c
        .read_if_exists(query("jobs", two.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.tuple, tup(vec![string("job"), int(2)]));
    let all = c
        .read_all(query("jobs", job_template()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.tuples,
        vec![
            pb::Tuple {
                fields: vec![string("job"), int(2)]
            },
            pb::Tuple {
                fields: vec![string("job"), int(3)]
            }
        ]
    );
    let t = c
        .take_if_exists(query("jobs", two.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(t.tuple, tup(vec![string("job"), int(2)]));
    let none = c
        .take_if_exists(query("jobs", two))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.tuple, None);
    let rest = c
        .take_all(query("jobs", job_template()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.tuples.len(), 1);
    assert_eq!(count(&mut c).await, 0);

    // wildcard: the ("other", 9) tuple is still there, in namespace "default"
    let any2 = tpl(vec![
        pb::Pattern {
            kind: Some(pb::pattern::Kind::Any(pb::Empty {})),
        },
        formal(pb::FieldType::Int),
    ]);
    assert_eq!(
        c.count(query("jobs", any2))
            .await
            .unwrap()
            .into_inner()
            .count,
        1
    );
    let engine = spaces(&n);
    let seen = engine
        .space(SpaceId::new("default", "default", "jobs").unwrap())
        .count(&template!("other", ?Int))
        .await
        .unwrap();
    assert_eq!(seen, 1);

    // a lease is reported
    let mut leased = write("jobs", vec![string("leased")]);
    leased.ttl_ms = 60_000;
    let w = c.write(leased).await.unwrap().into_inner();
    assert!(w.expires_at_ms > 0);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn a_blocked_take_is_woken_by_a_write_from_another_client() {
    let n = TestNode::start(Setup::default()).await;
    let mut taker = client(&n).await;
    let mut writer = client(&n).await;
    let blocked = tokio::spawn(async move {
        taker
            .take(wait("work", job_template(), 20_000))
            .await
            .map(|r| r.into_inner())
    });
    // The take has reached the node and is parked on the space.
    let space = spaces(&n).space(SpaceId::new("default", "default", "work").unwrap());
    assert!(eventually(|| async { space.waiting() == 1 }).await);
    writer
        .write(write("work", vec![string("job"), int(42)]))
        .await
        .unwrap();
    let got = blocked.await.unwrap().unwrap();
    assert_eq!(got.tuple, tup(vec![string("job"), int(42)]));
    let left = writer
        .count(query("work", job_template()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(left.count, 0, "exactly one taker got it and it is gone");
    n.handle.shutdown().await;
}

#[tokio::test]
async fn a_take_that_finds_nothing_in_time_is_deadline_exceeded() {
    let n = TestNode::start(Setup::default()).await;
    let mut c = client(&n).await;
    let err = c.take(wait("empty", job_template(), 50)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    let err = c.read(wait("empty", job_template(), 50)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    // the waiter left the space
    let space = spaces(&n).space(SpaceId::new("default", "default", "empty").unwrap());
    assert!(eventually(|| async { space.waiting() == 0 }).await);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn bad_tuples_and_templates_are_invalid_argument() {
    let n = TestNode::start(Setup::default()).await;
    let mut c = client(&n).await;
    let nan = pb::Value {
        kind: Some(pb::value::Kind::Float(f64::NAN)),
    };
    let templates = [
        ("no template", None),
        ("empty template", tpl(vec![])),
        ("unset pattern", tpl(vec![pb::Pattern { kind: None }])),
        ("exact NaN", tpl(vec![exact(nan)])),
        (
            "unspecified type",
            tpl(vec![formal(pb::FieldType::Unspecified)]),
        ),
    ];
    for (what, template) in templates {
        let err = c.count(query("s", template.clone())).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "count, {what}: {err:?}");
        let err = c.take(wait("s", template, 1_000)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "take, {what}: {err:?}");
    }
    // tuples: empty, too wide, too large, unset field, bad space name
    let err = c.write(write("s", vec![])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .write(write("s", (0..65).map(int).collect()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let big = "x".repeat(1024 * 1024 + 1);
    let err = c.write(write("s", vec![string(&big)])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c
        .write(write("s", vec![pb::Value { kind: None }]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c.write(write("", vec![int(1)])).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    n.handle.shutdown().await;
}

#[tokio::test]
async fn a_tenant_reaches_only_its_own_spaces() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let mut c = client(&n).await;
    let acme = token("acme", 60);
    let globex = token("globex", 60);
    c.write(with_token(
        write("shared-name", vec![string("job"), int(1)]),
        &acme,
    ))
    .await
    .unwrap();
    let count = |c: &mut Client, t: &str| {
        let mut c = c.clone();
        let req = with_token(query("shared-name", job_template()), t);
        async move { c.count(req).await.unwrap().into_inner().count }
    };
    assert_eq!(count(&mut c, &acme).await, 1);
    assert_eq!(count(&mut c, &globex).await, 0);
    let none = c
        .take_if_exists(with_token(query("shared-name", job_template()), &globex))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(none.tuple, None);
    let err = c
        .take(with_token(wait("shared-name", job_template(), 50), &globex))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    // globex's own tuple stays with globex
    c.write(with_token(
        write("shared-name", vec![string("job"), int(2)]),
        &globex,
    ))
    .await
    .unwrap();
    let acme_all = c
        .read_all(with_token(query("shared-name", job_template()), &acme))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        acme_all.tuples,
        vec![pb::Tuple {
            fields: vec![string("job"), int(1)]
        }]
    );
    // in the engine, the two tuples live under different tenants
    let engine = spaces(&n);
    for (tenant, n_expected) in [("acme", 1), ("globex", 1), ("default", 0)] {
        let got = engine
            .space(SpaceId::new(tenant, "default", "shared-name").unwrap())
            .count(&template!("job", ?Int))
            .await
            .unwrap();
        assert_eq!(got, n_expected, "{tenant}");
    }
    // no token, or a forged one: unauthenticated
    let err = c
        .count(query("shared-name", job_template()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let forged = plexspaces_node::auth::mint_hs256(
        &plexspaces_node::auth::TokenSpec {
            tenant: "acme",
            tenant_claim: "tenant_id",
            subject: "x",
            ttl_secs: 60,
            issuer: None,
            operator: false,
            roles: &[],
        },
        "not-the-secret",
    )
    .unwrap();
    let err = c
        .count(with_token(query("shared-name", job_template()), &forged))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn subscribers_see_matching_writes_and_streams_end_at_shutdown() {
    let n = TestNode::start(Setup::default()).await;
    let mut c = client(&n).await;
    let mut events = c
        .subscribe(query("feed", job_template()))
        .await
        .unwrap()
        .into_inner();
    c.write(write("feed", vec![string("noise")])).await.unwrap();
    c.write(write("feed", vec![string("job"), int(5)]))
        .await
        .unwrap();
    let ev = events.next().await.expect("an event").unwrap();
    assert_eq!(ev.tuple, tup(vec![string("job"), int(5)]));
    assert_eq!(ev.missed, 0);
    // graceful shutdown ends the open stream instead of waiting on it forever
    tokio::time::timeout(Duration::from_secs(60), n.handle.shutdown())
        .await
        .expect("shutdown finishes with a Subscribe stream open");
    assert!(!matches!(events.next().await, Some(Ok(_))));
}

/// An actor that writes into the space `inbox` through its context.
struct Writer;

impl Actor for Writer {
    type Msg = i64;
    type Reply = Value;

    async fn handle_call(
        &mut self,
        msg: i64,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Value>, BoxError> {
        let space = ctx.tuple_space("inbox")?;
        let id = space.write(tuple!("from-actor", msg)).await?;
        Ok(Some(json!({ "id": id.0 })))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<i64> {
        Ok(serde_json::from_slice::<Value>(&env.payload)
            .ok()
            .and_then(|v| v["n"].as_i64())
            .unwrap_or(0))
    }

    fn encode_reply(request_type: &str, reply: &Value) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }
}

#[tokio::test]
async fn actors_on_the_node_reach_the_same_spaces() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.data_dir = dir.path().to_owned();
    config.auth = AuthConfig {
        disabled: true,
        ..AuthConfig::default()
    };
    let writer = ActorType::virtual_actor("writer", |_| Writer);
    let handle = NodeServer::start(config, vec![writer]).await.unwrap();
    let http = format!("http://{}", handle.http_addr());
    let resp = reqwest::Client::new()
        .post(format!(
            "{http}/api/v1/actors/default/writer/invoke?msg_type=write"
        ))
        .body(r#"{"n": 11}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    // What the actor wrote is what a gRPC client (tenant default, namespace default) reads.
    let mut c = TupleSpaceServiceClient::connect(format!("http://{}", handle.grpc_addr()))
        .await
        .unwrap();
    let got = c
        .take(wait(
            "inbox",
            tpl(vec![
                exact(string("from-actor")),
                formal(pb::FieldType::Int),
            ]),
            5_000,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tuple, tup(vec![string("from-actor"), int(11)]));

    // An activation of tenant "acme" writes into acme's scope, never the default one.
    let resp = reqwest::Client::new()
        .post(format!(
            "{http}/api/v1/actors/acme/default/writer/invoke?msg_type=write"
        ))
        .body(r#"{"n": 12}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    let spaces = handle.node().service::<Spaces>().unwrap();
    let template = plexspaces_tuplespace::template!("from-actor", ?Int);
    let acme =
        spaces.space(plexspaces_tuplespace::SpaceId::new("acme", "default", "inbox").unwrap());
    let default =
        spaces.space(plexspaces_tuplespace::SpaceId::new("default", "default", "inbox").unwrap());
    assert_eq!(acme.count(&template).await.unwrap(), 1);
    assert_eq!(
        default.count(&template).await.unwrap(),
        0,
        "no tuple leaked to another tenant"
    );
    handle.shutdown().await;
}

#[tokio::test]
async fn the_sqlite_backend_keeps_tuples_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let start = || {
        let mut config = NodeConfig::default();
        config.http.addr = "127.0.0.1:0".into();
        config.grpc.addr = "127.0.0.1:0".into();
        config.data_dir = dir.path().to_owned();
        config.tuplespace.backend = plexspaces_node::tuplespace::TupleSpaceBackend::Sqlite;
        config.auth = AuthConfig {
            disabled: true,
            ..AuthConfig::default()
        };
        NodeServer::start(config, vec![])
    };
    let handle = start().await.unwrap();
    assert_eq!(
        handle.node().service::<Spaces>().unwrap().backend_name(),
        "sqlite"
    );
    let mut c = TupleSpaceServiceClient::connect(format!("http://{}", handle.grpc_addr()))
        .await
        .unwrap();
    c.write(write("durable", vec![string("job"), int(3)]))
        .await
        .unwrap();
    handle.shutdown().await;
    drop(c);
    let handle = start().await.unwrap();
    let mut c = TupleSpaceServiceClient::connect(format!("http://{}", handle.grpc_addr()))
        .await
        .unwrap();
    let got = c
        .take_if_exists(query("durable", job_template()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.tuple, tup(vec![string("job"), int(3)]));
    handle.shutdown().await;
}
