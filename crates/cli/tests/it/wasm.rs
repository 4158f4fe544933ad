//! WASM actors through the real `plexspaces` binary: the product description's Python
//! quick start verbatim (build with `plexspaces-py`, deploy and invoke with its curl
//! commands), the TypeScript and Rust guests, `plexspaces deploy|deployments|undeploy`,
//! bad uploads, a durable Python actor across kill -9, a deployment across a restart, and
//! tenant scoping with auth on.
//!
//! Guests are built from source: Python with the SDK of this checkout (componentize-py,
//! `scripts/ci-deps`), TypeScript with `sdk/typescript` (`npm ci` is run there when its
//! `node_modules` is missing), Rust for `wasm32-wasip2`. Builds other than the verbatim quick
//! start are cached under `$CARGO_TARGET_DIR/wasm-components` by a hash of their inputs.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::{Node, BIN};

/// The product description's `counter_actor.py`, verbatim (its indentation restored).
const COUNTER_ACTOR_PY: &str = r#"# counter_actor.py - Build to WASM with: plexspaces-py build counter_actor.py -o counter.wasm
from plexspaces import actor, state, handler

@actor
class CounterActor:
    count: int = state(default=0)

    @handler("increment")
    def increment(self, amount: int = 1) -> dict:
        self.count += amount
        return {"count": self.count}

    @handler("get")
    def get(self) -> dict:
        return {"count": self.count}
"#;

fn repo() -> PathBuf {
    plexspaces_test_util::repo_root()
}

fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target"));
    let dir = target.join("wasm-components");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn hash_inputs(h: &mut std::collections::hash_map::DefaultHasher, path: &Path) {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                !matches!(name.as_ref(), "node_modules" | "target" | "__pycache__")
            })
            .collect();
        entries.sort();
        for e in entries {
            hash_inputs(h, &e);
        }
    } else {
        path.to_string_lossy().hash(h);
        std::fs::read(path).unwrap().hash(h);
    }
}

/// `build(out)` once per hash of `inputs`.
fn cached(name: &str, inputs: &[PathBuf], build: impl FnOnce(&Path)) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for i in inputs {
        hash_inputs(&mut h, i);
    }
    let out = cache_dir().join(format!("it-{name}-{:016x}.wasm", h.finish()));
    if !out.is_file() {
        let tmp = out.with_extension("partial.wasm");
        build(&tmp);
        std::fs::rename(&tmp, &out).unwrap();
    }
    out
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory holding a `plexspaces-py` command: the one on PATH (`pip install
/// ./sdk/python`), else a wrapper running this checkout's SDK (`python3 -m plexspaces.cli`).
fn plexspaces_py_path(tmp: &Path) -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let on_path = Command::new("sh")
        .args(["-c", "command -v plexspaces-py"])
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return path;
    }
    let bin = tmp.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = format!(
        "#!/bin/sh\nPYTHONPATH={} exec python3 -m plexspaces.cli \"$@\"\n",
        repo().join("sdk/python").display()
    );
    let wrapper = bin.join("plexspaces-py");
    std::fs::write(&wrapper, script).unwrap();
    run(
        Command::new("chmod").arg("+x").arg(&wrapper),
        "chmod plexspaces-py",
    );
    format!("{}:{path}", bin.display())
}

/// A Python actor built with `plexspaces-py build` (cached).
fn build_python(source: &Path) -> PathBuf {
    let name = source.file_stem().unwrap().to_string_lossy().into_owned();
    cached(
        &format!("py-{name}"),
        &[
            source.to_owned(),
            repo().join("sdk/python/plexspaces"),
            repo().join("wit"),
        ],
        |out| {
            let tmp = tempfile::tempdir().unwrap();
            run(
                Command::new("plexspaces-py")
                    .env("PATH", plexspaces_py_path(tmp.path()))
                    .arg("build")
                    .arg(source)
                    .arg("-o")
                    .arg(out)
                    .arg("-q"),
                "plexspaces-py build",
            );
        },
    )
}

/// A TypeScript actor built with `plexspaces-ts build` (cached; `npm ci` first if needed).
fn build_ts(source: &Path) -> PathBuf {
    let sdk = repo().join("sdk/typescript");
    let name = source.file_stem().unwrap().to_string_lossy().into_owned();
    cached(
        &format!("ts-{name}"),
        &[
            source.to_owned(),
            sdk.join("src"),
            sdk.join("bin"),
            sdk.join("wit"),
        ],
        |out| {
            if !sdk
                .join("node_modules/@bytecodealliance/componentize-js")
                .is_dir()
            {
                run(
                    Command::new("npm")
                        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                        .current_dir(&sdk),
                    "npm ci in sdk/typescript",
                );
            }
            run(
                Command::new("node")
                    .arg(sdk.join("bin/plexspaces-ts.mjs"))
                    .arg("build")
                    .arg(source)
                    .arg("-o")
                    .arg(out)
                    .arg("-q"),
                "plexspaces-ts build",
            );
        },
    )
}

/// The Rust counter guest (`sdk/rust-counter`) as a file.
fn rust_guest(dir: &Path) -> PathBuf {
    let path = dir.join("rust-counter.wasm");
    std::fs::write(&path, plexspaces_test_util::rust_guest()).unwrap();
    path
}

/// A `multipart/form-data` body as curl `-F` sends it.
fn form(fields: &[(&str, &str)], wasm: &[u8]) -> (String, Vec<u8>) {
    let boundary = "------------------------plexspacestest7c1d";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"wasm\"; filename=\"actor.wasm\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(wasm);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn deploy(
    node: &Node,
    token: Option<&str>,
    namespace: &str,
    actor_type: &str,
    wasm: &[u8],
) -> (u16, Value) {
    let (content_type, body) = form(
        &[("namespace", namespace), ("actor_type", actor_type)],
        wasm,
    );
    let mut req = reqwest::Client::new()
        .post(format!("{}/api/v1/deploy", node.http))
        .header("content-type", content_type)
        .timeout(Duration::from_secs(300))
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn invoke(
    node: &Node,
    token: Option<&str>,
    path: &str,
    msg_type: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/actors/{path}/invoke?msg_type={msg_type}&key={key}",
            node.http
        ))
        .timeout(Duration::from_secs(120))
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(node: &Node, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}{path}", node.http));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn sh(script: &str, dir: &Path, path: &str) -> String {
    run(
        Command::new("sh")
            .args(["-c", script])
            .current_dir(dir)
            .env("PATH", path),
        script,
    )
}

#[tokio::test]
async fn the_python_quick_start_verbatim_then_a_restart_keeps_the_deployment() {
    let data = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let node = Node::start_in(data.path(), &[]).await;
    let port = node.http.rsplit(':').next().unwrap().to_owned();
    std::fs::write(work.path().join("counter_actor.py"), COUNTER_ACTOR_PY).unwrap();
    let path = plexspaces_py_path(work.path());
    // The quick start's commands, with this node's port for 8094.
    sh(
        "plexspaces-py build counter_actor.py -o counter.wasm",
        work.path(),
        &path,
    );
    let deployed = sh(
        &format!(
            "curl -sS -X POST http://localhost:{port}/api/v1/deploy \\\n\
             -F \"namespace=default\" -F \"actor_type=counter\" -F \"wasm=@counter.wasm\""
        ),
        work.path(),
        &path,
    );
    let deployed: Value = serde_json::from_str(&deployed).expect("deploy answers JSON");
    assert_eq!(deployed["actor_type"], "counter", "{deployed}");
    assert_eq!(deployed["version"], 1);
    let out = sh(
        &format!(
            "curl \"http://localhost:{port}/api/v1/actors/default/counter/invoke?msg_type=increment\" \\\n\
             -d '{{\"amount\": 5}}'"
        ),
        work.path(),
        &path,
    );
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        json!({"count": 5})
    );
    // The Python type answers, not the built-in counter: `get` is its handler.
    assert_eq!(
        invoke(&node, None, "default/counter", "get", "default", json!({})).await,
        (200, json!({"count": 5}))
    );
    // Other namespaces still have the built-in counter.
    assert_eq!(
        invoke(
            &node,
            None,
            "other/counter",
            "increment",
            "k",
            json!({"amount": 2})
        )
        .await,
        (200, json!({"count": 2}))
    );

    let (status, log) = node.terminate();
    assert!(status.success(), "{log}");
    let cache = data.path().join("wasm/cache");
    let cached = std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0);
    assert!(
        cached >= 1,
        "no compiled module cached in {}",
        cache.display()
    );

    let node = Node::start_in(data.path(), &[]).await;
    let (status, listed) = get(&node, None, "/api/v1/deploy").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["deployments"][0]["actor_type"], "counter",
        "{listed}"
    );
    assert_eq!(listed["deployments"][0]["version"], 1);
    // Served at once after the restart (not durable: a fresh count).
    assert_eq!(
        invoke(
            &node,
            None,
            "default/counter",
            "increment",
            "default",
            json!({"amount": 5})
        )
        .await,
        (200, json!({"count": 5}))
    );
}

#[tokio::test]
async fn typescript_and_rust_guests_and_the_cli_deploy_commands() {
    let work = tempfile::tempdir().unwrap();
    let node = Node::start(&[]).await;
    let ts = build_ts(&repo().join("examples/wasm/quickstart/counter.ts"));
    let (status, body) = deploy(
        &node,
        None,
        "default",
        "counter-ts",
        &std::fs::read(&ts).unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        invoke(
            &node,
            None,
            "default/counter-ts",
            "increment",
            "a",
            json!({"amount": 5})
        )
        .await,
        (200, json!({"count": 5}))
    );
    assert_eq!(
        invoke(&node, None, "default/counter-ts", "get", "a", json!({})).await,
        (200, json!({"count": 5}))
    );

    // The Rust guest through `plexspaces deploy`.
    let rust = rust_guest(work.path());
    let rust = rust.to_str().unwrap();
    let out = node.cli(&[
        "deploy",
        rust,
        "--actor-type",
        "counter-rs",
        "-n",
        "apps",
        "--output",
        "json",
    ]);
    let d = super::stdout_json(&out);
    assert_eq!(
        (d["version"].as_u64(), d["namespace"].as_str()),
        (Some(1), Some("apps"))
    );
    assert!(
        d["handlers"]
            .as_array()
            .unwrap()
            .contains(&json!("increment")),
        "{d}"
    );
    assert_eq!(
        invoke(
            &node,
            None,
            "apps/counter-rs",
            "increment",
            "k",
            json!({"amount": 5})
        )
        .await,
        (200, json!({"count": 5}))
    );
    // A redeploy is version 2; the live activation is deactivated (not durable: count 0).
    let out = node.cli(&[
        "deploy",
        rust,
        "-t",
        "counter-rs",
        "-n",
        "apps",
        "--output",
        "json",
    ]);
    let d = super::stdout_json(&out);
    assert_eq!(
        (d["version"].as_u64(), d["replaced_version"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(d["deactivated"].as_u64(), Some(1), "{d}");
    assert_eq!(
        invoke(&node, None, "apps/counter-rs", "get", "k", json!({})).await,
        (200, json!({"count": 0}))
    );
    let listed = super::stdout_json(&node.cli(&["deployments", "--output", "json"]));
    let names: Vec<&str> = listed["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["actor_type"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["counter-rs", "counter-ts"], "{listed}");
    let one = super::stdout_json(&node.cli(&[
        "deployments",
        "-n",
        "apps",
        "-t",
        "counter-rs",
        "--output",
        "json",
    ]));
    assert_eq!(one["deployments"][0]["version"], 2);
    // Undeploy: gone (404 through HTTP, exit code 4 through the CLI).
    let out = node.cli(&["undeploy", "counter-rs", "-n", "apps", "--output", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, _) = invoke(&node, None, "apps/counter-rs", "get", "k", json!({})).await;
    assert_eq!(status, 404);
    assert_eq!(
        node.cli(&["undeploy", "counter-rs", "-n", "apps"])
            .status
            .code(),
        Some(4)
    );
    assert_eq!(
        get(&node, None, "/api/v1/deploy/apps/counter-rs").await.0,
        404
    );
}

#[tokio::test]
async fn bad_uploads_are_refused_with_a_reason_and_the_node_keeps_serving() {
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "[wasm]\nmax_module_bytes = 200000\n").unwrap();
    let node = Node::start(&[("PLEXSPACES_CONFIG", config.path().to_str().unwrap())]).await;
    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    let empty_component = wat::parse_str("(component)").unwrap();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "garbage",
            b"this is not webassembly".to_vec(),
            400,
            "not a WebAssembly binary",
        ),
        ("core", core, 400, "core WebAssembly module"),
        (
            "exports",
            empty_component,
            400,
            "does not implement plexspaces:actor/actor",
        ),
        (
            "huge",
            {
                let mut v = b"\0asm\x0d\0\x01\0".to_vec();
                v.resize(300_000, 0);
                v
            },
            413,
            "larger than",
        ),
    ];
    for (actor_type, wasm, want, reason) in cases {
        let (status, body) = deploy(&node, None, "default", actor_type, &wasm).await;
        assert_eq!(status, want, "{actor_type}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{actor_type}: {body}");
        let (status, _) = get(&node, None, &format!("/api/v1/deploy/default/{actor_type}")).await;
        assert_eq!(status, 404, "{actor_type} was stored");
    }
    // Malformed forms.
    let client = reqwest::Client::new();
    for (content_type, body) in [
        ("application/json", b"{}".to_vec()),
        (
            "multipart/form-data; boundary=x",
            b"--x\r\nnope\r\n\r\n--x--".to_vec(),
        ),
        ("multipart/form-data; boundary=x", b"--x--\r\n".to_vec()),
    ] {
        let resp = client
            .post(format!("{}/api/v1/deploy", node.http))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["code"], "bad_request", "{v}");
    }
    let (status, body) = deploy(&node, None, "bad name!", "x", b"\0asm").await;
    assert_eq!(status, 400, "{body}");
    // Listing by a namespace no deployment could have is refused, not an empty list.
    for namespace in ["bad%20name!".to_string(), "n".repeat(129)] {
        let (status, body) = get(
            &node,
            None,
            &format!("/api/v1/deploy?namespace={namespace}"),
        )
        .await;
        assert_eq!(status, 400, "{namespace}: {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
    }
    let (status, body) = get(&node, None, "/api/v1/deploy?namespace=").await;
    assert_eq!(
        (status, body["deployments"].is_array()),
        (200, true),
        "{body}"
    );
    // Still serving: the built-in counter and a good deploy.
    assert_eq!(
        invoke(
            &node,
            None,
            "default/counter",
            "increment",
            "k",
            json!({"amount": 5})
        )
        .await,
        (200, json!({"count": 5}))
    );
    let (status, body) = deploy(
        &node,
        None,
        "default",
        "good",
        &plexspaces_test_util::rust_guest(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// `wasm.max_instances` counts activations whatever the guest's language: a componentize-py
/// component instantiates 14 core modules, and the pool used to allow 8 core instances per
/// activation, so Python activations failed long before the limit (found by the WASM
/// bench). Every one of `max_instances` Python activations starts; one more is refused
/// with an error naming the limit, and the live ones keep serving.
#[tokio::test]
async fn max_instances_python_activations_all_start() {
    const MAX: usize = 6;
    let wasm = build_python(&repo().join("examples/wasm/quickstart/counter_actor.py"));
    let wasm = std::fs::read(wasm).unwrap();
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("node.toml");
    std::fs::write(&config, format!("[wasm]\nmax_instances = {MAX}\n")).unwrap();
    let node = Node::start_in(
        data.path(),
        &[("PLEXSPACES_CONFIG", config.to_str().unwrap())],
    )
    .await;
    let (status, body) = deploy(&node, None, "pool", "counter", &wasm).await;
    assert_eq!(status, 201, "{body}");
    for i in 0..MAX {
        let key = format!("k{i}");
        let answer = invoke(
            &node,
            None,
            "pool/counter",
            "increment",
            &key,
            json!({"amount": 1}),
        )
        .await;
        assert_eq!(answer, (200, json!({"count": 1})), "activation {key}");
    }
    let (status, body) = invoke(
        &node,
        None,
        "pool/counter",
        "increment",
        "one-more",
        json!({"amount": 1}),
    )
    .await;
    // The activation's start fails (its `on_start` instantiates); the reason names the
    // pool's limit. (A start failure reaches the node as core's `start_failed`, so this is
    // not yet the 429 `overloaded` a full pool gives at deploy time.)
    assert_eq!(
        (status, &body["code"]),
        (500, &json!("start_failed")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("limit of 6 for component instances"),
        "{body}"
    );
    assert_eq!(
        invoke(
            &node,
            None,
            "pool/counter",
            "increment",
            "k0",
            json!({"amount": 1})
        )
        .await,
        (200, json!({"count": 2}))
    );
}

#[tokio::test]
async fn a_durable_python_actor_survives_kill_9_with_its_state() {
    let wasm = build_python(&repo().join("examples/wasm/bank_account/bank_account.py"));
    let wasm = std::fs::read(wasm).unwrap();
    let data = tempfile::tempdir().unwrap();
    let env = [("PLEXSPACES_WASM_DURABILITY", "1")];
    let mut node = Node::start_in(data.path(), &env).await;
    let (status, body) = deploy(&node, None, "bank", "account", &wasm).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["durable"], true, "{body}");
    let path = "bank/account";
    let (s, v) = invoke(
        &node,
        None,
        path,
        "deposit",
        "alice",
        json!({"amount": 10000}),
    )
    .await;
    assert_eq!((s, v["balance"].clone()), (200, json!(10000)));
    let (s, v) = invoke(
        &node,
        None,
        path,
        "withdraw",
        "alice",
        json!({"amount": 2500}),
    )
    .await;
    assert_eq!((s, v["balance"].clone()), (200, json!(7500)));
    let (s, v) = invoke(
        &node,
        None,
        path,
        "withdraw",
        "alice",
        json!({"amount": 999999}),
    )
    .await;
    assert!((400..500).contains(&s), "{s} {v}");
    let (_, before) = invoke(&node, None, path, "statement", "alice", json!({})).await;

    // kill -9: no shutdown path runs.
    node.child.kill().unwrap();
    node.child.wait().unwrap();
    node = Node::start_in(data.path(), &env).await;

    assert_eq!(
        invoke(&node, None, path, "balance", "alice", json!({})).await,
        (200, json!({"balance": 7500, "transactions": 2}))
    );
    assert_eq!(
        invoke(&node, None, path, "statement", "alice", json!({})).await,
        (200, before)
    );
    let (s, v) = invoke(
        &node,
        None,
        path,
        "withdraw",
        "alice",
        json!({"amount": 500}),
    )
    .await;
    assert_eq!((s, v["balance"].clone()), (200, json!(7000)));
}

#[tokio::test]
async fn deployments_are_tenant_scoped_and_need_a_token_when_auth_is_on() {
    let node = Node::start(&[("PLEXSPACES_JWT_SECRET", "wasm-secret")]).await;
    let token = |tenant: &str| {
        let out = Command::new(BIN)
            .args([
                "token",
                "create",
                "--tenant",
                tenant,
                "--secret",
                "wasm-secret",
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (acme, globex) = (token("acme"), token("globex"));
    let guest = plexspaces_test_util::rust_guest();
    let (status, _) = deploy(&node, None, "default", "counter-rs", &guest).await;
    assert_eq!(status, 401);
    let (status, body) = deploy(&node, Some(&acme), "default", "counter-rs", &guest).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["tenant"], "acme");
    assert_eq!(
        invoke(
            &node,
            Some(&acme),
            "default/counter-rs",
            "increment",
            "k",
            json!({"amount": 5})
        )
        .await,
        (200, json!({"count": 5}))
    );
    // Another tenant neither sees nor reaches it.
    let (status, _) = invoke(
        &node,
        Some(&globex),
        "default/counter-rs",
        "get",
        "k",
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
    let (_, listed) = get(&node, Some(&globex), "/api/v1/deploy").await;
    assert_eq!(listed, json!({"deployments": []}));
    let (status, _) = get(&node, Some(&globex), "/api/v1/deploy/default/counter-rs").await;
    assert_eq!(status, 404);
    let resp = reqwest::Client::new()
        .delete(format!("{}/api/v1/deploy/default/counter-rs", node.http))
        .bearer_auth(&globex)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // The owner still has it.
    assert_eq!(
        invoke(
            &node,
            Some(&acme),
            "default/counter-rs",
            "get",
            "k",
            json!({})
        )
        .await,
        (200, json!({"count": 5}))
    );
    // The CLI with the token.
    let out = Command::new(BIN)
        .args(["deployments", "--output", "json", "--token", &acme])
        .env("PLEXSPACES_ENDPOINT", &node.grpc)
        .output()
        .unwrap();
    let listed = super::stdout_json(&out);
    assert_eq!(listed["deployments"][0]["tenant"], "acme");
}
