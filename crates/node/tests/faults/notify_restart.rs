//! `notify` (gRPC `Subscribe`) across a node restart, on the SQLite tuple space: as the
//! proto documents, a subscription lives in the node's memory. When the node stops, the
//! stream ends (the client sees the end, not silence); the restarted node knows no
//! subscription and announces nothing to the old one; the tuples themselves survived, so a
//! client resubscribes and reads what it missed.

use futures::StreamExt;
use plexspaces_node::config::{AuthConfig, TupleSpaceBackend};
use plexspaces_node::{NodeConfig, NodeServer, ServerHandle};
use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::tuple_space_service_client::TupleSpaceServiceClient;

async fn start(dir: &std::path::Path) -> ServerHandle {
    let mut config = NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.data_dir = dir.to_owned();
    config.tuplespace.backend = TupleSpaceBackend::Sqlite;
    config.auth = AuthConfig {
        disabled: true,
        ..AuthConfig::default()
    };
    NodeServer::start(config, Vec::new())
        .await
        .expect("node starts")
}

fn ev(i: i64) -> pb::Tuple {
    pb::Tuple {
        fields: vec![
            pb::Value {
                kind: Some(pb::value::Kind::String("ev".into())),
            },
            pb::Value {
                kind: Some(pb::value::Kind::Int(i)),
            },
        ],
    }
}

fn evs() -> Option<pb::Template> {
    Some(pb::Template {
        patterns: vec![
            pb::Pattern {
                kind: Some(pb::pattern::Kind::Exact(pb::Value {
                    kind: Some(pb::value::Kind::String("ev".into())),
                })),
            },
            pb::Pattern {
                kind: Some(pb::pattern::Kind::Any(pb::Empty {})),
            },
        ],
    })
}

fn template_request() -> pb::TemplateRequest {
    pb::TemplateRequest {
        namespace: String::new(),
        space: "notify-restart".into(),
        template: evs(),
    }
}

async fn write(client: &mut TupleSpaceServiceClient<tonic::transport::Channel>, i: i64) {
    client
        .write(pb::WriteRequest {
            namespace: String::new(),
            space: "notify-restart".into(),
            tuple: Some(ev(i)),
            ttl_ms: 0,
        })
        .await
        .expect("write");
}

const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_end_with_the_node_and_a_resubscriber_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let node = start(dir.path()).await;
    let endpoint = format!("http://{}", node.grpc_addr());
    let mut client = TupleSpaceServiceClient::connect(endpoint).await.unwrap();
    let mut old = client
        .subscribe(template_request())
        .await
        .expect("subscribe")
        .into_inner();
    write(&mut client, 1).await;
    let first = tokio::time::timeout(WAIT, old.next())
        .await
        .expect("an event")
        .expect("stream open")
        .expect("event");
    assert_eq!(first.tuple, Some(ev(1)));

    node.shutdown().await;
    let end = tokio::time::timeout(WAIT, old.next())
        .await
        .expect("the stream ends when the node stops");
    assert!(
        !matches!(end, Some(Ok(_))),
        "no event after the node stopped: {end:?}"
    );

    // the restarted node: same data dir, same tuples, no subscriptions
    let node = start(dir.path()).await;
    let endpoint = format!("http://{}", node.grpc_addr());
    let mut client = TupleSpaceServiceClient::connect(endpoint).await.unwrap();
    write(&mut client, 2).await;
    let after = tokio::time::timeout(std::time::Duration::from_millis(300), old.next()).await;
    assert!(
        !matches!(after, Ok(Some(Ok(_)))),
        "the old subscription announced a write of the restarted node: {after:?}"
    );
    let mut fresh = client
        .subscribe(template_request())
        .await
        .expect("resubscribe")
        .into_inner();
    let caught_up = client
        .read_all(template_request())
        .await
        .expect("read_all")
        .into_inner()
        .tuples;
    assert_eq!(
        caught_up,
        vec![ev(1), ev(2)],
        "both tuples survived the restart"
    );
    write(&mut client, 3).await;
    let next = tokio::time::timeout(WAIT, fresh.next())
        .await
        .expect("an event")
        .expect("stream open")
        .expect("event");
    assert_eq!(
        next.tuple,
        Some(ev(3)),
        "only writes after the subscription"
    );
    node.shutdown().await;
}
