//! A gRPC `take` whose client goes away (its request dropped, or its process killed with
//! SIGKILL) leaves no ghost waiter on the node that would swallow a later tuple.

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::tuple_space_service_client::TupleSpaceServiceClient;
use plexspaces_tuplespace::{SpaceId, Spaces, TupleSpace};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{eventually, Setup, TestNode};

const CHILD_ENDPOINT: &str = "PLEXSPACES_FAULTS_TAKE_ENDPOINT";
const CHILD_SPACE: &str = "PLEXSPACES_FAULTS_TAKE_SPACE";

fn string(s: &str) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::String(s.into())),
    }
}

fn int(i: i64) -> pb::Value {
    pb::Value {
        kind: Some(pb::value::Kind::Int(i)),
    }
}

/// `("job", ?int)`
fn job_template() -> Option<pb::Template> {
    Some(pb::Template {
        patterns: vec![
            pb::Pattern {
                kind: Some(pb::pattern::Kind::Exact(string("job"))),
            },
            pb::Pattern {
                kind: Some(pb::pattern::Kind::Type(pb::FieldType::Int as i32)),
            },
        ],
    })
}

fn take_request(space: &str, timeout_ms: u64) -> pb::WaitRequest {
    pb::WaitRequest {
        namespace: String::new(),
        space: space.into(),
        template: job_template(),
        timeout_ms,
    }
}

fn space_of(n: &TestNode, name: &str) -> TupleSpace {
    let spaces = n
        .handle
        .node()
        .service::<Spaces>()
        .expect("the node offers its Spaces as a service");
    spaces.space(SpaceId::new("default", "default", name).expect("space id"))
}

/// After the vanished taker: its waiter is gone, and a written job goes to a live taker (and
/// only to it).
async fn a_later_tuple_reaches_a_live_taker(n: &TestNode, space_name: &str) {
    let space = space_of(n, space_name);
    assert!(
        eventually(|| async { space.waiting() == 0 }).await,
        "the vanished taker's waiter was removed"
    );
    let mut live = TupleSpaceServiceClient::connect(n.grpc_endpoint())
        .await
        .expect("connect");
    let mut writer = live.clone();
    let request = take_request(space_name, 20_000);
    let taking = tokio::spawn(async move { live.take(request).await });
    assert!(eventually(|| async { space.waiting() == 1 }).await);
    writer
        .write(pb::WriteRequest {
            namespace: String::new(),
            space: space_name.into(),
            tuple: Some(pb::Tuple {
                fields: vec![string("job"), int(7)],
            }),
            ttl_ms: 0,
        })
        .await
        .expect("write");
    let got = taking
        .await
        .expect("taker ran")
        .expect("the live taker got the job")
        .into_inner();
    assert_eq!(
        got.tuple,
        Some(pb::Tuple {
            fields: vec![string("job"), int(7)]
        })
    );
    let left = writer
        .count(pb::TemplateRequest {
            namespace: String::new(),
            space: space_name.into(),
            template: job_template(),
        })
        .await
        .expect("count")
        .into_inner();
    assert_eq!(left.count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_grpc_take_leaves_no_ghost_waiter() {
    let n = TestNode::start(Setup::default()).await;
    let space = space_of(&n, "dropped-take");
    let mut taker = TupleSpaceServiceClient::connect(n.grpc_endpoint())
        .await
        .expect("connect");
    let blocked =
        tokio::spawn(async move { taker.take(take_request("dropped-take", 60_000)).await });
    assert!(
        eventually(|| async { space.waiting() == 1 }).await,
        "the take reached the node and is parked"
    );
    // the client drops its request (and with it, its connection)
    blocked.abort();
    assert!(blocked.await.expect_err("aborted").is_cancelled());
    a_later_tuple_reaches_a_live_taker(&n, "dropped-take").await;
    n.handle.shutdown().await;
}

/// Run as a child process by `a_killed_grpc_take_client_leaves_no_ghost_waiter`: blocks in a
/// gRPC `take` until it is killed.
#[tokio::test]
#[ignore = "run as a child process by a_killed_grpc_take_client_leaves_no_ghost_waiter"]
async fn grpc_take_child() {
    let (Ok(endpoint), Ok(space)) = (std::env::var(CHILD_ENDPOINT), std::env::var(CHILD_SPACE))
    else {
        return;
    };
    let mut taker = TupleSpaceServiceClient::connect(endpoint)
        .await
        .expect("connect");
    println!("CHILD-TAKING");
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    let _ = taker.take(take_request(&space, 120_000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_grpc_take_client_leaves_no_ghost_waiter() {
    let n = TestNode::start(Setup::default()).await;
    let space = space_of(&n, "killed-take");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "tuplespace::grpc_take_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENDPOINT, n.grpc_endpoint())
        .env(CHILD_SPACE, "killed-take")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut taking = false;
    while let Some(line) = lines.next_line().await.expect("read child output") {
        if line.contains("CHILD-TAKING") {
            taking = true;
            break;
        }
    }
    assert!(taking, "the child started its take");
    assert!(
        eventually(|| async { space.waiting() == 1 }).await,
        "the child's take is parked on the node"
    );
    child.kill().await.expect("SIGKILL the client");
    let status = child.wait().await.expect("reap child");
    assert!(!status.success(), "the child was killed, not finished");
    a_later_tuple_reaches_a_live_taker(&n, "killed-take").await;
    n.handle.shutdown().await;
}
