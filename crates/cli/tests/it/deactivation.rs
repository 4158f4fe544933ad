//! Kill -9 during idle deactivation (V4): a real `plexspaces` process with a 30 ms idle
//! timeout and a snapshot after every message, so activations of eight counters are
//! deactivated (final snapshot, actor stopped) between almost every two calls while eight
//! sequential clients keep incrementing them. The process is killed with SIGKILL while this
//! goes on, then restarted on the same data dir: every counter reads its last acknowledged
//! count (or one more, when its in-flight increment committed but its reply was lost).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{post_increment, Node};

const KEYS: usize = 8;
const ACKED_BEFORE_KILL: usize = 80;
const DEACTIVATIONS_BEFORE_KILL: usize = 20;

/// Per key: the last acknowledged count, and whether a request was in flight at the kill.
#[derive(Default, Clone, Copy, Debug)]
struct KeyState {
    acked: i64,
    acks: usize,
    in_flight: bool,
}

fn deactivations(node: &Node) -> usize {
    let log = node.log.lock().unwrap_or_else(|p| p.into_inner());
    log.lines().filter(|l| l.contains("deactivated")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_after_a_kill_during_idle_deactivation_is_the_last_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PLEXSPACES_IDLE_TIMEOUT_MS", "30"),
        ("PLEXSPACES_JOURNAL_CHECKPOINT_EVERY", "1"),
        ("PLEXSPACES_LOG", "info,plexspaces_node::registry=debug"),
    ];
    let mut node = Node::start_in(dir.path(), &env).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let states: Arc<Mutex<Vec<KeyState>>> = Arc::new(Mutex::new(vec![KeyState::default(); KEYS]));
    let killed = Arc::new(AtomicBool::new(false));
    let mut clients = tokio::task::JoinSet::new();
    for k in 0..KEYS {
        let url = format!(
            "{}/api/v1/actors/default/counter/invoke?msg_type=increment&key=idle-{k}",
            node.http
        );
        let (client, states, killed) = (client.clone(), states.clone(), killed.clone());
        clients.spawn(async move {
            let mut pause = k as u64 * 7;
            while !killed.load(Ordering::SeqCst) {
                states.lock().unwrap()[k].in_flight = true;
                let Some(count) = post_increment(&client, &url).await else {
                    break;
                };
                {
                    let mut s = states.lock().unwrap();
                    assert_eq!(count, s[k].acked + 1, "key {k}: increments in order, once");
                    s[k] = KeyState {
                        acked: count,
                        acks: s[k].acks + 1,
                        in_flight: false,
                    };
                }
                // Idle for 0 to 60 ms: around the idle timeout, so the activation is often
                // being deactivated (snapshot, stop) when the next call or the kill comes.
                pause = (pause + 17) % 61;
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        });
    }
    let busy = plexspaces_test_util::eventually(Duration::from_secs(120), || {
        let acks: usize = states.lock().unwrap().iter().map(|s| s.acks).sum();
        let deactivated = deactivations(&node);
        async move { acks >= ACKED_BEFORE_KILL && deactivated >= DEACTIVATIONS_BEFORE_KILL }
    })
    .await;
    let acks: usize = states.lock().unwrap().iter().map(|s| s.acks).sum();
    assert!(
        busy,
        "{acks} increments acknowledged and {} deactivations before the kill",
        deactivations(&node)
    );
    node.child.kill().expect("kill -9 the node");
    node.child.wait().expect("reap the node");
    killed.store(true, Ordering::SeqCst);
    while let Some(done) = clients.join_next().await {
        done.expect("a client saw an out-of-order or repeated count");
    }
    let states = states.lock().unwrap().clone();

    let restarted = Node::start_in(dir.path(), &[]).await;
    for (k, s) in states.iter().enumerate() {
        let body: Value = client
            .get(format!(
                "{}/api/v1/actors/default/counter?key=idle-{k}",
                restarted.http
            ))
            .send()
            .await
            .expect("read the counter")
            .json()
            .await
            .expect("a JSON body");
        let count = body["count"].as_i64().expect("a count");
        let allowed = if s.in_flight {
            vec![s.acked, s.acked + 1]
        } else {
            vec![s.acked]
        };
        assert!(
            allowed.contains(&count),
            "key {k}: count {count} after restart, last acknowledged {} (in flight: {})",
            s.acked,
            s.in_flight
        );
    }
    let (status, _) = restarted.terminate();
    assert!(status.success());
}
