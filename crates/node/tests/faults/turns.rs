//! One non-reentrant virtual actor under concurrency and overload, over real HTTP:
//! - 1,000 concurrent calls: no two turns overlap (checked across every instance the
//!   factory ever made, so a second activation would be caught too) and the count is exactly
//!   1,000;
//! - 100 concurrent read-modify-writes of a file, awaiting the read and the write inside the
//!   turn: no lost update;
//! - 10x the mailbox capacity at once against a slow handler: the excess is refused with a
//!   typed 429 `mailbox_full`, every admitted request completes, the queue never holds more
//!   than its capacity.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use plexspaces_core::{Actor, BoxError, Context, Envelope, Error, MailboxConfig, Result};
use plexspaces_node::config::AuthConfig;
use plexspaces_node::{ActorType, NodeConfig, NodeServer, ServerHandle};
use serde_json::{json, Value};

use crate::common::send;

/// Shared by every instance the factory makes.
#[derive(Debug, Default)]
struct Watch {
    in_turn: AtomicBool,
    overlaps: AtomicU64,
    turns: AtomicU64,
    /// The file `rmw` turns read and write.
    file: std::sync::Mutex<Option<PathBuf>>,
}

struct Turns {
    watch: Arc<Watch>,
    count: u64,
    /// `slow` turns last this long.
    slow: Duration,
}

enum TurnMsg {
    Incr,
    Rmw,
    Slow,
}

impl Actor for Turns {
    type Msg = TurnMsg;
    type Reply = Value;

    async fn handle_call(
        &mut self,
        msg: TurnMsg,
        _ctx: &mut Context<Self>,
    ) -> std::result::Result<Option<Value>, BoxError> {
        if self.watch.in_turn.swap(true, Ordering::SeqCst) {
            self.watch.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        self.watch.turns.fetch_add(1, Ordering::SeqCst);
        let reply = match msg {
            TurnMsg::Incr => {
                // give any other turn the chance to run in between
                tokio::task::yield_now().await;
                self.count += 1;
                tokio::task::yield_now().await;
                json!({ "count": self.count })
            }
            TurnMsg::Rmw => {
                let path = self
                    .watch
                    .file
                    .lock()
                    .map_err(|_| "poisoned")?
                    .clone()
                    .ok_or("no file")?;
                let text = tokio::fs::read_to_string(&path).await?;
                let n: u64 = text.trim().parse()?;
                tokio::task::yield_now().await;
                tokio::fs::write(&path, (n + 1).to_string()).await?;
                json!({ "value": n + 1 })
            }
            TurnMsg::Slow => {
                tokio::time::sleep(self.slow).await;
                self.count += 1;
                json!({ "count": self.count })
            }
        };
        self.watch.in_turn.store(false, Ordering::SeqCst);
        Ok(Some(reply))
    }

    fn decode(env: &Envelope) -> Result<TurnMsg> {
        match env.msg_type.as_str() {
            "incr" => Ok(TurnMsg::Incr),
            "rmw" => Ok(TurnMsg::Rmw),
            "slow" => Ok(TurnMsg::Slow),
            other => Err(Error::UnknownMsgType {
                msg_type: other.into(),
                actor_type: "turns".into(),
            }),
        }
    }

    fn encode_reply(request_type: &str, reply: &Value) -> Result<Envelope> {
        Envelope::json(request_type, reply)
    }
}

const SLOW_CAPACITY: usize = 20;
const SLOW_TURN: Duration = Duration::from_millis(25);

async fn start(watch: Arc<Watch>, dir: &std::path::Path) -> (ServerHandle, String) {
    let mut config = NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.http.request_timeout_ms = 30_000;
    config.data_dir = dir.to_owned();
    config.auth = AuthConfig {
        disabled: true,
        ..AuthConfig::default()
    };
    let w = watch.clone();
    let turns = ActorType::virtual_actor("turns", move |_| Turns {
        watch: w.clone(),
        count: 0,
        slow: SLOW_TURN,
    })
    .mailbox(MailboxConfig::Bounded(1024));
    let w = watch;
    let slow = ActorType::virtual_actor("slow", move |_| Turns {
        watch: w.clone(),
        count: 0,
        slow: SLOW_TURN,
    })
    .mailbox(MailboxConfig::Bounded(SLOW_CAPACITY));
    let handle = NodeServer::start(config, vec![turns, slow])
        .await
        .expect("node starts");
    let http = format!("http://{}", handle.http_addr());
    (handle, http)
}

async fn concurrently(
    client: &reqwest::Client,
    url: &str,
    n: usize,
) -> Vec<((u16, Value), Duration)> {
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..n {
        let req = client.post(url).body("{}");
        calls.spawn(async move {
            let started = Instant::now();
            let answer = send(req).await;
            (answer, started.elapsed())
        });
    }
    let mut answers = Vec::with_capacity(n);
    while let Some(a) = calls.join_next().await {
        answers.push(a.expect("request task"));
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_calls_never_overlap_and_count_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Arc::new(Watch::default());
    let (node, http) = start(watch.clone(), dir.path()).await;
    let client = reqwest::Client::new();

    let url = format!("{http}/api/v1/actors/default/turns/invoke?msg_type=incr&key=one");
    let answers = concurrently(&client, &url, 1000).await;
    let mut counts: Vec<u64> = answers
        .iter()
        .map(|((status, body), _)| {
            assert_eq!(*status, 200, "{body}");
            body["count"].as_u64().expect("count")
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=1000).collect::<Vec<_>>(),
        "every call saw its own turn: counts 1..=1000, none lost or repeated"
    );
    assert_eq!(watch.turns.load(Ordering::SeqCst), 1000);
    assert_eq!(
        watch.overlaps.load(Ordering::SeqCst),
        0,
        "no overlapping turns"
    );

    // 100 read-modify-writes with awaited file I/O inside the turn
    let file = dir.path().join("rmw.txt");
    std::fs::write(&file, "0").unwrap();
    *watch.file.lock().unwrap() = Some(file.clone());
    let url = format!("{http}/api/v1/actors/default/turns/invoke?msg_type=rmw&key=one");
    let answers = concurrently(&client, &url, 100).await;
    assert!(answers.iter().all(|((s, _), _)| *s == 200), "{answers:?}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "100",
        "no lost update"
    );
    assert_eq!(watch.overlaps.load(Ordering::SeqCst), 0);
    node.shutdown().await;
}

/// Sends 10x the mailbox capacity at once to an actor whose turns take 25 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_times_the_capacity_is_refused_with_a_typed_429_and_admitted_calls_complete() {
    let dir = tempfile::tempdir().unwrap();
    let watch = Arc::new(Watch::default());
    let (node, http) = start(watch.clone(), dir.path()).await;
    let client = reqwest::Client::new();
    let url = format!("{http}/api/v1/actors/default/slow/invoke?msg_type=slow&key=hot");
    // activate first, so the burst meets a running actor
    assert_eq!(send(client.post(&url).body("{}")).await.0, 200);

    let key = node
        .registry()
        .resolve("default", "default", "slow", "hot")
        .unwrap();
    let pid = node.registry().get(&key).expect("active").pids()[0].clone();
    // sample the queue length while the burst runs
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let sampling = sampling.clone();
        async move {
            let mut max = 0;
            while sampling.load(Ordering::SeqCst) {
                max = max.max(pid.mailbox_len());
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            max
        }
    });

    let offered = SLOW_CAPACITY * 10;
    let answers = concurrently(&client, &url, offered).await;
    sampling.store(false, Ordering::SeqCst);
    let max_queue = sampler.await.unwrap();
    assert!(
        max_queue <= SLOW_CAPACITY,
        "the queue stayed bounded: {max_queue}"
    );
    assert!(max_queue > 0, "the sampler saw the queue fill");
    let mut admitted = Vec::new();
    let mut refused = 0;
    for ((status, body), latency) in &answers {
        match status {
            200 => admitted.push(*latency),
            429 => {
                assert_eq!(body["code"], "mailbox_full", "{body}");
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        admitted.len() + refused,
        offered,
        "every request was answered"
    );
    assert!(refused > 0, "the burst overflowed the bounded mailbox");
    assert!(
        admitted.len() >= SLOW_CAPACITY,
        "at least a mailbox's worth was admitted: {}",
        admitted.len()
    );
    assert_eq!(watch.overlaps.load(Ordering::SeqCst), 0);
    // the actor ran exactly the admitted turns (plus the activation call)
    assert_eq!(
        watch.turns.load(Ordering::SeqCst),
        admitted.len() as u64 + 1
    );
    admitted.sort_unstable();
    let p = |q: f64| admitted[((admitted.len() - 1) as f64 * q) as usize];
    eprintln!(
        "overload: offered {offered} at once, capacity {SLOW_CAPACITY}, turn {SLOW_TURN:?}: \
         admitted {} refused {refused}, longest queue {max_queue}; admitted latency p50 {:?} p99 {:?} max {:?}",
        admitted.len(),
        p(0.5),
        p(0.99),
        p(1.0),
    );
    node.shutdown().await;
}
