//! The classic OTP supervisor cases.

use std::time::Duration;

use plexspaces_core::{
    ActorRef, Application, ChildSpec, Error, ExitReason, Node, Pid, Restart, Shutdown,
    SpawnOptions, Strategy, Supervisor, SupervisorSpec,
};
use proptest::prelude::*;

use crate::common::{until, Cmd, Log, Worker};

fn worker(name: &'static str, log: &Log) -> ChildSpec {
    let log = log.clone();
    ChildSpec::worker(name, move || Worker::new(name, &log))
}

fn slow_worker(name: &'static str, log: &Log, stop_delay: Duration) -> ChildSpec {
    let log = log.clone();
    ChildSpec::worker(name, move || {
        let mut w = Worker::new(name, &log);
        w.stop_delay = Some(stop_delay);
        w
    })
}

async fn start_sup(node: &Node, spec: SupervisorSpec) -> ActorRef<Supervisor> {
    node.start(Supervisor::new(spec), SpawnOptions::default())
        .await
        .unwrap()
}

async fn child(sup: &ActorRef<Supervisor>, id: &str) -> Option<Pid> {
    sup.which_children()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.id == id)
        .and_then(|c| c.pid)
}

async fn crash(sup: &ActorRef<Supervisor>, id: &str, cmd: Cmd) -> Pid {
    let pid = child(sup, id).await.expect("child running");
    let _ = pid.typed::<Worker>().unwrap().ask(cmd).await;
    pid.wait().await.unwrap();
    pid
}

/// Waits until child `id` runs as a pid other than `old`.
async fn restarted(sup: &ActorRef<Supervisor>, id: &str, old: &Pid) -> Pid {
    for _ in 0..500 {
        if let Some(pid) = child(sup, id).await {
            if &pid != old {
                return pid;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("child {id} was not restarted");
}

fn abc(strategy: Strategy, log: &Log) -> SupervisorSpec {
    SupervisorSpec::new(strategy)
        .intensity(10, Duration::from_secs(5))
        .child(worker("a", log))
        .child(worker("b", log))
        .child(worker("c", log))
}

#[tokio::test]
async fn children_start_in_order_and_stop_in_reverse_order() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let sup = start_sup(&node, abc(Strategy::OneForOne, &log)).await;
    assert_eq!(log.entries(), vec!["start:a", "start:b", "start:c"]);
    log.clear();
    sup.stop(ExitReason::Shutdown);
    sup.wait().await.unwrap();
    assert_eq!(log.entries(), vec!["stop:c", "stop:b", "stop:a"]);
    node.shutdown().await;
}

#[tokio::test]
async fn one_for_one_restarts_only_the_failed_child() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let sup = start_sup(&node, abc(Strategy::OneForOne, &log)).await;
    let (a, c) = (child(&sup, "a").await, child(&sup, "c").await);
    log.clear();
    let old_b = crash(&sup, "b", Cmd::Fail).await;
    restarted(&sup, "b", &old_b).await;
    assert_eq!(log.entries(), vec!["stop:b", "start:b"]);
    assert_eq!(child(&sup, "a").await, a);
    assert_eq!(child(&sup, "c").await, c);
    node.shutdown().await;
}

#[tokio::test]
async fn one_for_all_stops_the_others_in_reverse_and_restarts_all_in_order() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let sup = start_sup(&node, abc(Strategy::OneForAll, &log)).await;
    let old_a = child(&sup, "a").await.unwrap();
    log.clear();
    let old_b = crash(&sup, "b", Cmd::Fail).await;
    restarted(&sup, "b", &old_b).await;
    until("all restarted", || log.entries().len() == 6).await;
    assert_eq!(
        log.entries(),
        vec!["stop:b", "stop:c", "stop:a", "start:a", "start:b", "start:c"]
    );
    assert_ne!(child(&sup, "a").await.unwrap(), old_a);
    node.shutdown().await;
}

#[tokio::test]
async fn rest_for_one_restarts_the_failed_child_and_those_after_it() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let sup = start_sup(&node, abc(Strategy::RestForOne, &log)).await;
    let a = child(&sup, "a").await;
    log.clear();
    let old_b = crash(&sup, "b", Cmd::Fail).await;
    restarted(&sup, "b", &old_b).await;
    until("b and c restarted", || log.entries().len() == 4).await;
    assert_eq!(
        log.entries(),
        vec!["stop:b", "stop:c", "start:b", "start:c"]
    );
    assert_eq!(child(&sup, "a").await, a, "a is untouched");
    node.shutdown().await;
}

#[tokio::test]
async fn transient_children_restart_only_after_abnormal_exits() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(10, Duration::from_secs(5))
        .child(worker("t", &log).restart(Restart::Transient));
    let sup = start_sup(&node, spec).await;
    let old = crash(&sup, "t", Cmd::Fail).await;
    let current = restarted(&sup, "t", &old).await;
    let _ = current
        .typed::<Worker>()
        .unwrap()
        .ask(Cmd::Stop(ExitReason::Normal))
        .await;
    current.wait().await.unwrap();
    sup.which_children().await.unwrap();
    let infos = sup.which_children().await.unwrap();
    assert_eq!(infos.len(), 1, "a transient child's spec is kept");
    assert!(infos[0].pid.is_none(), "not restarted after a normal exit");
    sup.restart_child("t").await.unwrap();
    let current = child(&sup, "t").await.unwrap();
    let _ = current
        .typed::<Worker>()
        .unwrap()
        .ask(Cmd::Stop(ExitReason::Shutdown))
        .await;
    current.wait().await.unwrap();
    assert!(
        child(&sup, "t").await.is_none(),
        "not restarted after shutdown"
    );
    assert_eq!(log.count("start:t"), 3);
    node.shutdown().await;
}

#[tokio::test]
async fn temporary_children_are_never_restarted_and_permanent_ones_always() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(10, Duration::from_secs(5))
        .child(worker("tmp", &log).restart(Restart::Temporary))
        .child(worker("perm", &log));
    let sup = start_sup(&node, spec).await;
    crash(&sup, "tmp", Cmd::Fail).await;
    let old = child(&sup, "perm").await.unwrap();
    let _ = old
        .typed::<Worker>()
        .unwrap()
        .ask(Cmd::Stop(ExitReason::Normal))
        .await;
    old.wait().await.unwrap();
    restarted(&sup, "perm", &old).await;
    let ids: Vec<String> = sup
        .which_children()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(
        ids,
        vec!["perm"],
        "a temporary child is forgotten when it exits"
    );
    assert_eq!(log.count("start:tmp"), 1);
    assert_eq!(log.count("start:perm"), 2);
    node.shutdown().await;
}

#[tokio::test]
async fn simple_one_for_one_starts_children_with_arguments_and_restarts_them_with_the_same() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let template_log = log.clone();
    let spec = SupervisorSpec::new(Strategy::SimpleOneForOne)
        .intensity(10, Duration::from_secs(5))
        .child(ChildSpec::worker_with_args("conn", move |name: String| {
            Worker::new(&name, &template_log)
        }));
    let sup = start_sup(&node, spec).await;
    assert!(sup.which_children().await.unwrap().is_empty());
    let x = sup.start_dynamic_child("x".to_string()).await.unwrap();
    let y = sup.start_dynamic_child("y".to_string()).await.unwrap();
    assert_eq!(
        x.typed::<Worker>().unwrap().ask(Cmd::Ping).await.unwrap(),
        "x"
    );
    let err = sup.start_dynamic_child(42u32).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(matches!(
        sup.start_child(worker("z", &log)).await,
        Err(Error::InvalidArgument(_))
    ));
    let _ = x.typed::<Worker>().unwrap().ask(Cmd::Fail).await;
    until("x restarted", || log.count("start:x") == 2).await;
    assert_eq!(log.count("start:y"), 1);
    assert!(y.is_alive());
    let children = sup.which_children().await.unwrap();
    assert_eq!(children.len(), 2);
    let new_x = children[0].pid.clone().unwrap();
    assert_eq!(
        new_x
            .typed::<Worker>()
            .unwrap()
            .ask(Cmd::Ping)
            .await
            .unwrap(),
        "x",
        "same arguments"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn exceeding_restart_intensity_stops_children_and_the_supervisor() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(2, Duration::from_secs(60))
        .child(worker("a", &log))
        .child(worker("b", &log));
    let sup = start_sup(&node, spec).await;
    for round in 0..2 {
        let old = crash(&sup, "b", Cmd::Fail).await;
        restarted(&sup, "b", &old).await;
        assert!(sup.is_alive(), "restart {round} is within intensity");
    }
    log.clear();
    let _ = crash(&sup, "b", Cmd::Fail).await;
    assert_eq!(sup.wait().await.unwrap(), ExitReason::Shutdown);
    assert_eq!(
        log.entries(),
        vec!["stop:b", "stop:a"],
        "children stopped, none restarted"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn intensity_escalates_to_the_parent_supervisor() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let inner = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(0, Duration::from_secs(60))
        .child(worker("w", &log));
    let outer = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(60))
        .child(worker("sibling", &log))
        .child(ChildSpec::supervisor("inner", inner));
    let top = start_sup(&node, outer).await;
    let inner_ref = child(&top, "inner")
        .await
        .unwrap()
        .typed::<Supervisor>()
        .unwrap();
    let sibling = child(&top, "sibling").await;
    log.clear();
    let w = child(&inner_ref, "w").await.unwrap();
    let _ = w.typed::<Worker>().unwrap().ask(Cmd::Fail).await;
    assert_eq!(
        inner_ref.wait().await.unwrap(),
        ExitReason::Shutdown,
        "inner gave up"
    );
    let new_inner = restarted(&top, "inner", &inner_ref.pid()).await;
    until("worker restarted under the new inner", || {
        log.count("start:w") == 1
    })
    .await;
    assert!(new_inner.is_alive());
    assert_eq!(
        child(&top, "sibling").await,
        sibling,
        "one_for_one at the top"
    );
    node.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_child_that_ignores_shutdown_is_killed_after_its_timeout() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(
            slow_worker("slow", &log, Duration::from_secs(30))
                .shutdown(Shutdown::Timeout(Duration::from_secs(2))),
        )
        .child(
            slow_worker("patient", &log, Duration::from_secs(1))
                .shutdown(Shutdown::Timeout(Duration::from_secs(2))),
        )
        .child(slow_worker("brutal", &log, Duration::from_secs(1)).shutdown(Shutdown::BrutalKill));
    let sup = start_sup(&node, spec).await;
    let slow = child(&sup, "slow").await.unwrap();
    let patient = child(&sup, "patient").await.unwrap();
    let brutal = child(&sup, "brutal").await.unwrap();
    log.clear();
    let started = tokio::time::Instant::now();
    sup.stop(ExitReason::Shutdown);
    sup.wait().await.unwrap();
    assert_eq!(brutal.wait().await.unwrap(), ExitReason::Killed);
    assert_eq!(patient.wait().await.unwrap(), ExitReason::Shutdown);
    assert_eq!(slow.wait().await.unwrap(), ExitReason::Killed);
    assert_eq!(
        log.entries(),
        vec!["stop:patient", "stopped-late:patient:shutdown", "stop:slow"],
        "brutal never ran on_stop; slow was cut off"
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(4),
        "{elapsed:?} on the paused clock"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_child_failing_to_start_fails_the_supervisor_start_and_stops_the_others() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let bad_log = log.clone();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .child(worker("a", &log))
        .child(worker("b", &log))
        .child(ChildSpec::worker("bad", move || {
            let mut w = Worker::new("bad", &bad_log);
            w.fail_start = true;
            w
        }))
        .child(worker("never", &log));
    let err = node
        .start(Supervisor::new(spec), SpawnOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::StartFailed(text) if text.contains("bad")),
        "{err:?}"
    );
    assert_eq!(
        log.entries(),
        vec!["start:a", "start:b", "failstart:bad", "stop:b", "stop:a"]
    );
    node.shutdown().await;
}

#[tokio::test]
async fn dynamic_children_terminate_restart_and_delete() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let sup = start_sup(&node, SupervisorSpec::new(Strategy::OneForOne)).await;
    sup.start_child(worker("a", &log)).await.unwrap();
    assert!(matches!(
        sup.start_child(worker("a", &log)).await,
        Err(Error::AlreadyStarted { .. })
    ));
    sup.terminate_child("a").await.unwrap();
    assert!(child(&sup, "a").await.is_none());
    assert!(matches!(
        sup.delete_child("nope").await,
        Err(Error::InvalidArgument(_))
    ));
    sup.restart_child("a").await.unwrap();
    assert!(
        matches!(sup.delete_child("a").await, Err(Error::InvalidArgument(_))),
        "running"
    );
    sup.terminate_child("a").await.unwrap();
    sup.delete_child("a").await.unwrap();
    assert!(sup.which_children().await.unwrap().is_empty());
    assert_eq!(
        log.entries(),
        vec!["start:a", "stop:a", "start:a", "stop:a"]
    );
    node.shutdown().await;
}

#[tokio::test]
async fn applications_start_and_stop_as_units_and_node_shutdown_stops_them_in_reverse() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    for app in ["web", "db", "cache"] {
        let spec = SupervisorSpec::new(Strategy::OneForOne).child(worker(app, &log));
        node.start_application(Application::new(app, spec))
            .await
            .unwrap();
    }
    assert!(
        node.whereis("web_sup").is_none(),
        "the app supervisor is named, not registered"
    );
    assert!(node.lookup(&"web_sup@n1".parse().unwrap()).is_some());
    node.stop_application("db").await.unwrap();
    assert_eq!(
        log.entries(),
        vec!["start:web", "start:db", "start:cache", "stop:db"]
    );
    assert!(node.stop_application("db").await.is_err(), "already gone");
    log.clear();
    node.shutdown().await;
    assert_eq!(log.entries(), vec!["stop:cache", "stop:web"]);
}

/// Restart intensity, checked against a model on the paused clock: crash the one child at
/// the generated gaps; the supervisor must be alive exactly while no window of `period`
/// holds more than `max` restarts.
fn model_gives_up_at(gaps_ms: &[u64], max: u32, period_ms: u64) -> Option<usize> {
    let mut times = Vec::new();
    let mut now = 0u64;
    for (i, gap) in gaps_ms.iter().enumerate() {
        now += gap;
        times.push(now);
        let in_window = times.iter().filter(|t| now - **t < period_ms).count();
        if in_window > max as usize {
            return Some(i);
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn restart_intensity_matches_the_model(
        max in 0u32..4,
        period_ms in 100u64..2000,
        gaps_ms in proptest::collection::vec(1u64..1500, 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let expected = model_gives_up_at(&gaps_ms, max, period_ms);
        let observed = runtime.block_on(async {
            let node = Node::builder("p").build().await.unwrap();
            let log = Log::default();
            let spec = SupervisorSpec::new(Strategy::OneForOne)
                .intensity(max, Duration::from_millis(period_ms))
                .child(worker("w", &log));
            let sup = start_sup(&node, spec).await;
            let mut gave_up = None;
            for (i, gap) in gaps_ms.iter().enumerate() {
                tokio::time::sleep(Duration::from_millis(*gap)).await;
                let old = crash(&sup, "w", Cmd::Fail).await;
                // Let the supervisor react (the paused clock does not move meanwhile).
                let _ = sup.which_children().await;
                if !sup.is_alive() {
                    gave_up = Some(i);
                    break;
                }
                assert!(child(&sup, "w").await.is_some_and(|p| p != old));
            }
            node.shutdown().await;
            gave_up
        });
        prop_assert_eq!(observed, expected);
    }
}
