//! Take with a lease over gRPC: a consumer process killed with SIGKILL after taking, before
//! confirming, loses nothing (the tuple is back when the lease runs out, never before, and a
//! live taker gets it); a confirmed take stays gone; bad leases are refused.

use std::time::{Duration, Instant};

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::tuple_space_service_client::TupleSpaceServiceClient;
use plexspaces_tuplespace::{SpaceId, Spaces, TupleSpace};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{Setup, TestNode};

const CHILD_ENDPOINT: &str = "PLEXSPACES_FAULTS_LEASE_ENDPOINT";
const CHILD_SPACE: &str = "PLEXSPACES_FAULTS_LEASE_SPACE";
const LEASE_MS: u64 = 1_500;

fn job(i: i64) -> pb::Tuple {
    pb::Tuple {
        fields: vec![
            pb::Value {
                kind: Some(pb::value::Kind::String("job".into())),
            },
            pb::Value {
                kind: Some(pb::value::Kind::Int(i)),
            },
        ],
    }
}

fn jobs() -> Option<pb::Template> {
    Some(pb::Template {
        patterns: vec![
            pb::Pattern {
                kind: Some(pb::pattern::Kind::Exact(pb::Value {
                    kind: Some(pb::value::Kind::String("job".into())),
                })),
            },
            pb::Pattern {
                kind: Some(pb::pattern::Kind::Type(pb::FieldType::Int as i32)),
            },
        ],
    })
}

fn take_leased(space: &str, lease_ms: u64) -> pb::TakeLeasedRequest {
    pb::TakeLeasedRequest {
        namespace: String::new(),
        space: space.into(),
        template: jobs(),
        timeout_ms: 20_000,
        lease_ms,
    }
}

fn settle(space: &str, lease: u64) -> pb::TakeLeaseRequest {
    pb::TakeLeaseRequest {
        namespace: String::new(),
        space: space.into(),
        lease,
    }
}

fn space_of(n: &TestNode, name: &str) -> TupleSpace {
    let spaces = n.handle.node().service::<Spaces>().expect("node Spaces");
    spaces.space(SpaceId::new("default", "default", name).expect("space id"))
}

/// Run as a child process by the test below: takes one job under a lease, prints it, and
/// hangs without confirming until it is killed.
#[tokio::test]
#[ignore = "run as a child process by a_consumer_killed_before_confirming_loses_nothing"]
async fn grpc_take_leased_child() {
    let (Ok(endpoint), Ok(space)) = (std::env::var(CHILD_ENDPOINT), std::env::var(CHILD_SPACE))
    else {
        return;
    };
    let mut client = TupleSpaceServiceClient::connect(endpoint)
        .await
        .expect("connect");
    let taken = client
        .take_leased(take_leased(&space, LEASE_MS))
        .await
        .expect("take under a lease")
        .into_inner();
    println!("CHILD-TOOK {} {}", taken.lease, taken.id);
    use std::io::Write;
    std::io::stdout().flush().expect("flush");
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_before_confirming_loses_nothing() {
    let n = TestNode::start(Setup::default()).await;
    let name = "killed-consumer";
    let space = space_of(&n, name);
    let mut client = TupleSpaceServiceClient::connect(n.grpc_endpoint())
        .await
        .expect("connect");
    let written = client
        .write(pb::WriteRequest {
            namespace: String::new(),
            space: name.into(),
            tuple: Some(job(1)),
            ttl_ms: 0,
        })
        .await
        .expect("write")
        .into_inner();

    let started = Instant::now();
    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args([
            "take_lease::grpc_take_leased_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENDPOINT, n.grpc_endpoint())
        .env(CHILD_SPACE, name)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut took = None;
    while let Some(line) = lines.next_line().await.expect("child output") {
        if let Some(rest) = line.split("CHILD-TOOK ").nth(1) {
            let (lease, id) = rest.trim().split_once(' ').expect("lease and id");
            took = Some((lease.parse::<u64>().unwrap(), id.parse::<u64>().unwrap()));
            break;
        }
    }
    let (lease, id) = took.expect("the child took the job");
    assert_eq!(id, written.id, "the child took the written job");
    child.kill().await.expect("SIGKILL the consumer");
    assert!(!child.wait().await.expect("reap").success());
    assert_eq!(space.pending_takes(), 1, "the take is pending on the node");

    // a live consumer blocks; the job reaches it when the lease runs out, not before
    let taken = client
        .take_leased(take_leased(name, 10_000))
        .await
        .expect("the job came back")
        .into_inner();
    assert!(
        started.elapsed() >= Duration::from_millis(LEASE_MS),
        "returned no earlier than the lease: {:?}",
        started.elapsed()
    );
    assert_eq!((taken.id, taken.tuple), (written.id, Some(job(1))));
    assert_ne!(taken.lease, lease, "a new lease");
    let stale = client.confirm_take(settle(name, lease)).await;
    assert_eq!(
        stale.expect_err("the dead consumer's lease expired").code(),
        tonic::Code::NotFound
    );
    let confirmed = client
        .confirm_take(settle(name, taken.lease))
        .await
        .expect("confirm")
        .into_inner();
    assert_eq!(confirmed.tuple, Some(job(1)));
    assert_eq!(space.pending_takes(), 0);
    assert_eq!(
        client
            .count(pb::TemplateRequest {
                namespace: String::new(),
                space: name.into(),
                template: jobs(),
            })
            .await
            .expect("count")
            .into_inner()
            .count,
        0,
        "confirmed: gone for good"
    );

    // released: back at once; bad leases are typed errors
    client
        .write(pb::WriteRequest {
            namespace: String::new(),
            space: name.into(),
            tuple: Some(job(2)),
            ttl_ms: 0,
        })
        .await
        .expect("write");
    let t = client
        .take_leased(take_leased(name, 60_000))
        .await
        .expect("take")
        .into_inner();
    client
        .release_take(settle(name, t.lease))
        .await
        .expect("release");
    assert_eq!(
        space
            .read_if_exists(&plexspaces_tuplespace::template!("job", 2))
            .await
            .unwrap(),
        Some(plexspaces_tuplespace::tuple!("job", 2))
    );
    for bad in [0, 300_001] {
        let err = client
            .take_leased(take_leased(name, bad))
            .await
            .expect_err("a bad lease");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
    }
    n.handle.shutdown().await;
}
