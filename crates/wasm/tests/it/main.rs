//! Integration tests of plexspaces-wasm with the real Rust guest (`sdk/rust-counter`,
//! built for wasm32-wasip2) on a real core node: loading and bad modules, the disk cache,
//! each limit, supervision of a trapping guest, and the tenant scoping of the imports.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use plexspaces_core::{
    ActorRef, ChildSpec, Node, SpawnOptions, Strategy, Supervisor, SupervisorSpec,
};
use plexspaces_storage::MemoryKeyValue;
use plexspaces_tuplespace::Spaces;
use plexspaces_wasm::{
    ActorScope, Error, HostEnv, Limits, Module, Runtime, RuntimeOptions, WasmActor, WasmMsg,
};
use serde_json::{json, Value};

fn guest() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(plexspaces_test_util::rust_guest)
}

fn runtime() -> Runtime {
    Runtime::start(RuntimeOptions {
        max_instances: 32,
        ..RuntimeOptions::default()
    })
    .expect("runtime starts")
}

fn scope(tenant: &str, key: &str) -> ActorScope {
    ActorScope {
        tenant: tenant.into(),
        namespace: "default".into(),
        actor_type: "counter".into(),
        key: key.into(),
    }
}

async fn ask(
    actor: &ActorRef<WasmActor>,
    msg_type: &str,
    body: Value,
) -> plexspaces_core::Result<Value> {
    let reply = actor
        .ask_timeout(
            WasmMsg::new(msg_type, Bytes::from(body.to_string())),
            Duration::from_secs(20),
        )
        .await?;
    Ok(serde_json::from_slice(&reply).expect("the guest replies JSON"))
}

async fn spawn(
    node: &Node,
    module: &Module,
    scope: ActorScope,
    env: Arc<HostEnv>,
) -> ActorRef<WasmActor> {
    node.start(
        WasmActor::new(module.clone(), scope, env, Vec::new()),
        SpawnOptions::default(),
    )
    .await
    .expect("the wasm actor starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_guest_counts() {
    let rt = runtime();
    let module = rt.load(guest(), Limits::default()).await.expect("loads");
    assert!(module
        .descriptor()
        .handlers
        .iter()
        .any(|h| h == "increment"));
    assert!(!module.wants_durability());
    let node = Node::builder("w1").build().await.expect("node");
    let a = spawn(&node, &module, scope("default", "a"), HostEnv::detached()).await;
    assert_eq!(
        ask(&a, "increment", json!({"amount": 5})).await.unwrap(),
        json!({"count": 5})
    );
    assert_eq!(
        ask(&a, "get", json!({})).await.unwrap(),
        json!({"count": 5})
    );
    // a guest error is the caller's error; the actor keeps its state
    let refused = ask(&a, "increment", json!({"amount": "x"}))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), "decode", "{refused}");
    let unknown = ask(&a, "nope", json!({})).await.unwrap_err();
    assert_eq!(unknown.kind(), "not_found", "{unknown}");
    assert_eq!(
        ask(&a, "get", json!({})).await.unwrap(),
        json!({"count": 5})
    );
    // one instance per activation
    let b = spawn(&node, &module, scope("default", "b"), HostEnv::detached()).await;
    assert_eq!(
        ask(&b, "get", json!({})).await.unwrap(),
        json!({"count": 0})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_modules_are_refused_with_a_reason() {
    let rt = runtime();
    let garbage = rt
        .load(b"definitely not wasm", Limits::default())
        .await
        .unwrap_err();
    assert!(matches!(garbage, Error::NotWasm(_)), "{garbage}");
    let core = wat::parse_str("(module (func (export \"f\")))").expect("wat");
    let core = rt.load(&core, Limits::default()).await.unwrap_err();
    assert!(matches!(core, Error::CoreModule), "{core}");
    let empty = wat::parse_str("(component)").expect("wat");
    let empty = rt.load(&empty, Limits::default()).await.unwrap_err();
    assert!(matches!(empty, Error::World(_)), "{empty}");
    assert!(
        empty.to_string().contains("describe") || empty.to_string().contains("export"),
        "{empty}"
    );
    let mut truncated = guest().to_vec();
    truncated.truncate(truncated.len() / 2);
    let truncated = rt.load(&truncated, Limits::default()).await.unwrap_err();
    assert!(matches!(truncated, Error::Invalid(_)), "{truncated}");
    let small = Runtime::start(RuntimeOptions {
        pooling: false,
        max_module_bytes: 1024,
        ..RuntimeOptions::default()
    })
    .expect("runtime");
    let big = small.load(guest(), Limits::default()).await.unwrap_err();
    assert!(matches!(big, Error::TooLarge { .. }), "{big}");
    assert_eq!(big.kind(), "payload_too_large");
    let limits = Limits {
        max_memory_bytes: u64::MAX,
        ..Limits::default()
    };
    assert!(matches!(
        rt.load(guest(), limits).await,
        Err(Error::Config(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_load_comes_from_the_disk_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RuntimeOptions {
        cache_dir: Some(dir.path().to_owned()),
        pooling: false,
        ..RuntimeOptions::default()
    };
    let cold = Runtime::start(options.clone()).expect("runtime");
    let t = Instant::now();
    cold.load(guest(), Limits::default()).await.expect("loads");
    let cold_time = t.elapsed();
    assert_eq!(cold.cache_stats().compiled, 1);
    assert_eq!(cold.cache_stats().cache_hits, 0);
    // a new runtime (a node restart) on the same cache dir does not compile again
    let warm = Runtime::start(options).expect("runtime");
    let t = Instant::now();
    let module = warm.load(guest(), Limits::default()).await.expect("loads");
    let warm_time = t.elapsed();
    assert_eq!(warm.cache_stats().compiled, 0, "the second load compiled");
    assert_eq!(warm.cache_stats().cache_hits, 1);
    eprintln!("load: cold {cold_time:?}, cached {warm_time:?}");
    let node = Node::builder("w2").build().await.expect("node");
    let a = spawn(&node, &module, scope("default", "a"), HostEnv::detached()).await;
    assert_eq!(
        ask(&a, "increment", json!({})).await.unwrap(),
        json!({"count": 1})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_stopped_by_its_time_limit() {
    let rt = runtime();
    let limits = Limits {
        call_timeout_ms: 300,
        ..Limits::default()
    };
    let module = rt.load(guest(), limits).await.expect("loads");
    let node = Node::builder("w3").build().await.expect("node");
    let looping = spawn(
        &node,
        &module,
        scope("default", "loop"),
        HostEnv::detached(),
    )
    .await;
    let other = spawn(
        &node,
        &module,
        scope("default", "other"),
        HostEnv::detached(),
    )
    .await;
    ask(&other, "increment", json!({"amount": 2}))
        .await
        .unwrap();
    let t = Instant::now();
    let e = ask(&looping, "probe.spin", json!({})).await.unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(e.is_retryable());
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "interrupted, not waited out"
    );
    // the interrupted instance is gone with its actor; the other one keeps serving
    let exit = looping.pid().wait().await.expect("exit");
    assert!(format!("{exit:?}").contains("time limit"), "{exit:?}");
    assert_eq!(
        ask(&other, "get", json!({})).await.unwrap(),
        json!({"count": 2})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_past_its_memory_limit_fails_alone() {
    let rt = runtime();
    let limits = Limits {
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let module = rt.load(guest(), limits).await.expect("loads");
    let node = Node::builder("w4").build().await.expect("node");
    let hog = spawn(&node, &module, scope("default", "hog"), HostEnv::detached()).await;
    let other = spawn(
        &node,
        &module,
        scope("default", "other"),
        HostEnv::detached(),
    )
    .await;
    ask(&other, "increment", json!({"amount": 7}))
        .await
        .unwrap();
    // within the limit: fine
    assert_eq!(
        ask(&hog, "probe.alloc", json!({"mb": 2})).await.unwrap(),
        json!({"held_mb": 2})
    );
    let e = ask(&hog, "probe.alloc", json!({"mb": 64}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "actor_failed", "{e}");
    let exit = hog.pid().wait().await.expect("exit");
    assert!(format!("{exit:?}").contains("memory limit"), "{exit:?}");
    assert_eq!(
        ask(&other, "get", json!({})).await.unwrap(),
        json!({"count": 7})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_guest_is_restarted_by_its_supervisor() {
    let rt = runtime();
    let module = rt.load(guest(), Limits::default()).await.expect("loads");
    let node = Node::builder("w5").build().await.expect("node");
    let m = module.clone();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(10))
        .child(ChildSpec::worker("guest", move || {
            WasmActor::new(
                m.clone(),
                scope("default", "sup"),
                HostEnv::detached(),
                Vec::new(),
            )
        }));
    let sup = node
        .start(Supervisor::new(spec), SpawnOptions::default())
        .await
        .expect("supervisor");
    let child = || async {
        sup.which_children().await.expect("children")[0]
            .pid
            .clone()
            .expect("running")
    };
    let first = child().await.typed::<WasmActor>().expect("a wasm actor");
    assert_eq!(
        ask(&first, "increment", json!({"amount": 3}))
            .await
            .unwrap(),
        json!({"count": 3})
    );
    let e = ask(&first, "probe.trap", json!({})).await.unwrap_err();
    assert_eq!(e.kind(), "actor_failed", "{e}");
    let restarted = plexspaces_test_util::eventually(Duration::from_secs(10), || async {
        sup.which_children().await.expect("children")[0]
            .pid
            .as_ref()
            .is_some_and(|p| p.id() != first.id() && p.is_alive())
    })
    .await;
    assert!(restarted, "the supervisor restarted the guest");
    let second = child().await.typed::<WasmActor>().expect("a wasm actor");
    // a fresh instance: the state of the crashed one is gone (not durable)
    assert_eq!(
        ask(&second, "get", json!({})).await.unwrap(),
        json!({"count": 0})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_act_in_the_guests_own_tenant() {
    let rt = runtime();
    let module = rt.load(guest(), Limits::default()).await.expect("loads");
    let node = Node::builder("w6").build().await.expect("node");
    let kv: Arc<dyn plexspaces_storage::KeyValue> = Arc::new(MemoryKeyValue::new());
    let spaces = Spaces::memory();
    let env = Arc::new(HostEnv {
        kv: Some(kv.clone()),
        spaces: Some(spaces.clone()),
        node: Some(node.clone()),
        ..HostEnv::default()
    });
    let a = spawn(&node, &module, scope("tenant-a", "x"), env.clone()).await;
    let b = spawn(&node, &module, scope("tenant-b", "x"), env.clone()).await;
    // key-value: same key, two tenants, two values
    ask(
        &a,
        "probe.kv_put",
        json!({"key": "secret", "value": "from-a"}),
    )
    .await
    .unwrap();
    assert_eq!(
        ask(&b, "probe.kv_get", json!({"key": "secret"}))
            .await
            .unwrap(),
        json!({"value": null}),
        "tenant b must not see tenant a's entry"
    );
    ask(
        &b,
        "probe.kv_put",
        json!({"key": "secret", "value": "from-b"}),
    )
    .await
    .unwrap();
    assert_eq!(
        ask(&a, "probe.kv_get", json!({"key": "secret"}))
            .await
            .unwrap(),
        json!({"value": "from-a"})
    );
    let scope_a = plexspaces_storage::Scope::new("tenant-a", "default").expect("scope");
    assert_eq!(
        kv.get(&scope_a, "secret")
            .await
            .expect("get")
            .map(|v| v.value),
        Some(b"from-a".to_vec()),
        "stored in tenant a's scope"
    );
    // tuple space: same space name, two tenants
    ask(
        &a,
        "probe.tuple_write",
        json!({"space": "jobs", "tuple": "[\"job\", 1]"}),
    )
    .await
    .unwrap();
    assert_eq!(
        ask(
            &b,
            "probe.tuple_read",
            json!({"space": "jobs", "template": "[\"job\", {\"?\": \"int\"}]"})
        )
        .await
        .unwrap(),
        json!({"tuple": null}),
        "tenant b must not see tenant a's tuple"
    );
    assert_eq!(
        ask(
            &a,
            "probe.tuple_read",
            json!({"space": "jobs", "template": "[\"job\", {\"?\": \"int\"}]"})
        )
        .await
        .unwrap(),
        json!({"tuple": "[\"job\",1]"})
    );
    // process groups: same group name, two tenants
    let ma = ask(&a, "probe.pg", json!({"group": "g"})).await.unwrap();
    let mb = ask(&b, "probe.pg", json!({"group": "g"})).await.unwrap();
    assert_eq!(ma["members"].as_array().map(Vec::len), Some(1), "{ma}");
    assert_eq!(mb["members"].as_array().map(Vec::len), Some(1), "{mb}");
    // no messaging service here: a typed error, not a crash
    let e = ask(
        &a,
        "probe.ask",
        json!({"actor_type": "counter", "key": "y", "msg_type": "get"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "unsupported", "{e}");
    // a bad tuple is the guest's bad request
    let e = ask(
        &a,
        "probe.tuple_write",
        json!({"space": "jobs", "tuple": "{"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "decode", "{e}");
    node.shutdown().await;
}

/// The Go guest (examples/wasm/rate_limiter_go): a `GOOS=wasip1` core module with
/// `//go:wasmexport`, adapted to a component by scripts/build-go-guest, hosted like any other
/// guest: its handlers, typed errors, the host's clock import, and a panic (a trap) restarted
/// by the supervisor with a fresh instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_rate_limiter_runs_and_is_restarted_after_a_panic() {
    let rt = runtime();
    let module = rt
        .load(&plexspaces_test_util::go_guest(), Limits::default())
        .await
        .expect("the Go component loads");
    assert_eq!(
        module.descriptor().handlers,
        ["configure", "check", "status", "crash"]
    );
    assert!(!module.wants_durability());
    let node = Node::builder("wgo").build().await.expect("node");
    let m = module.clone();
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(5, Duration::from_secs(10))
        .child(ChildSpec::worker("limiter", move || {
            WasmActor::new(
                m.clone(),
                scope("default", "client-1"),
                HostEnv::detached(),
                Vec::new(),
            )
        }));
    let sup = node
        .start(Supervisor::new(spec), SpawnOptions::default())
        .await
        .expect("supervisor");
    let child = || async {
        sup.which_children().await.expect("children")[0]
            .pid
            .clone()
            .expect("running")
    };
    let first = child().await.typed::<WasmActor>().expect("a wasm actor");
    let configured = ask(&first, "configure", json!({"limit": 2, "window_ms": 60000}))
        .await
        .unwrap();
    assert_eq!(configured["limit"], 2);
    let mut decisions = Vec::new();
    for _ in 0..3 {
        decisions.push(ask(&first, "check", json!({})).await.unwrap());
    }
    assert_eq!(
        decisions
            .iter()
            .map(|d| d["allowed"].clone())
            .collect::<Vec<_>>(),
        [json!(true), json!(true), json!(false)]
    );
    let denied = &decisions[2];
    assert_eq!(denied["denied"], 1);
    let retry = denied["retry_after_ms"].as_u64().expect("a number");
    assert!(retry > 0 && retry <= 60_000, "{denied}");
    // typed guest errors; the activation keeps its window
    let bad = ask(&first, "configure", json!({"limit": "x"}))
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), "decode", "{bad}");
    let unknown = ask(&first, "nope", json!({})).await.unwrap_err();
    assert_eq!(unknown.kind(), "not_found", "{unknown}");
    assert_eq!(
        ask(&first, "status", json!({})).await.unwrap()["allowed"],
        json!(false)
    );
    // a Go panic is a trap: the call fails, the supervisor starts a fresh activation
    let e = ask(&first, "crash", json!({})).await.unwrap_err();
    assert_eq!(e.kind(), "actor_failed", "{e}");
    let restarted = plexspaces_test_util::eventually(Duration::from_secs(30), || async {
        sup.which_children().await.expect("children")[0]
            .pid
            .as_ref()
            .is_some_and(|p| p.id() != first.id() && p.is_alive())
    })
    .await;
    assert!(restarted, "the supervisor restarted the Go guest");
    let second = child().await.typed::<WasmActor>().expect("a wasm actor");
    let fresh = ask(&second, "check", json!({})).await.unwrap();
    assert_eq!(fresh["allowed"], json!(true));
    assert_eq!(
        fresh["limit"], 10,
        "a fresh instance has the default window"
    );
    node.shutdown().await;
}
