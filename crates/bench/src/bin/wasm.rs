//! `plexspaces-bench-wasm`: WASM actors (crates/wasm, wasmtime component host) beside a
//! native Rust actor doing the same work, in the same run. Built only with the `wasm`
//! feature; the CI smoke (`plexspaces-bench --quick`) does not run it.
//!
//! The work: the quick-start counter (`increment {"amount": 1}` answers `{"count": n}`),
//! as the Rust guest (`sdk/rust-counter`), the Python guest
//! (`examples/wasm/quickstart/counter_actor.py`, componentize-py) and the TypeScript guest
//! (`examples/wasm/quickstart/counter.ts`, componentize-js), each a [`WasmActor`] on a core
//! node; the native side is an ordinary Rust actor that takes the same `(msg_type, JSON
//! payload)` message, parses the JSON with serde_json, counts and answers JSON.
//!
//! Rows, per guest:
//! - call latency p50/p99: one `ask` through the actor's `ActorRef` (host → guest `handle`
//!   → reply), one caller, after warm-up asks;
//! - activation, cold: a fresh runtime with an empty disk cache loads the component
//!   (compiles it, instantiates it once for `describe`), spawns an activation and gets the
//!   first reply;
//! - activation, warm: a fresh runtime (a new engine, as after a node restart) over the
//!   disk cache the cold run filled: the same steps, no compilation;
//! - activation of a loaded module: a new activation of a module already in memory (one
//!   instantiation) and its first reply;
//! - resident memory per idle activation: in a fresh child process of this binary, the RSS
//!   delta over N activations that each answered one message, divided by N.
//!
//! It reports; it never asserts a target. A guest that is not built is skipped with the
//! reason printed (`scripts/bench-wasm` builds all three from source, then runs this).
//!
//! ```text
//! scripts/bench-wasm                 # builds the guests, release figures
//! plexspaces-bench-wasm [--quick] [--json] [--rust P] [--python P] [--typescript P]
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use plexspaces_core::{Actor, ActorRef, BoxError, Context, Node, SpawnOptions};
use plexspaces_wasm::{
    ActorScope, HostEnv, Limits, Module, Runtime, RuntimeOptions, WasmActor, WasmMsg,
};
use serde_json::{json, Value};

/// The hidden subcommand of the memory child: `wasm-rss-child KIND PATH COUNT`.
const CHILD: &str = "wasm-rss-child";

#[derive(Debug, Clone, Copy)]
struct Work {
    /// Timed asks per guest (after a tenth as many warm-up asks).
    asks: usize,
    /// Repetitions of each activation row (the median is reported).
    activations: usize,
    /// Idle activations in the memory row, per kind.
    idle_native: usize,
    idle_rust: usize,
    idle_script: usize,
}

impl Work {
    fn full() -> Work {
        Work {
            asks: 20_000,
            activations: 3,
            idle_native: 10_000,
            idle_rust: 500,
            idle_script: 40,
        }
    }

    fn quick() -> Work {
        Work {
            asks: 1_000,
            activations: 1,
            idle_native: 1_000,
            idle_rust: 20,
            idle_script: 5,
        }
    }
}

/// The guests, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Native,
    Rust,
    Python,
    TypeScript,
}

impl Kind {
    const ALL: [Kind; 4] = [Kind::Native, Kind::Rust, Kind::Python, Kind::TypeScript];

    fn name(self) -> &'static str {
        match self {
            Kind::Native => "native Rust actor",
            Kind::Rust => "Rust guest",
            Kind::Python => "Python guest",
            Kind::TypeScript => "TypeScript guest",
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Kind::Native => "native",
            Kind::Rust => "rust",
            Kind::Python => "python",
            Kind::TypeScript => "typescript",
        }
    }

    fn from_arg(arg: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.arg() == arg)
    }

    fn idle(self, work: Work) -> usize {
        match self {
            Kind::Native => work.idle_native,
            Kind::Rust => work.idle_rust,
            Kind::Python | Kind::TypeScript => work.idle_script,
        }
    }
}

/// The native side: the counter as an ordinary Rust actor taking the same message.
struct NativeCounter {
    count: i64,
}

impl Actor for NativeCounter {
    type Msg = WasmMsg;
    type Reply = Bytes;

    async fn handle_call(
        &mut self,
        msg: WasmMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<Bytes>, BoxError> {
        let payload: Value = serde_json::from_slice(&msg.payload)?;
        match msg.msg_type.as_str() {
            "increment" => {
                let amount = match payload.get("amount") {
                    None => 1,
                    Some(v) => v.as_i64().ok_or("`amount` must be a whole number")?,
                };
                self.count += amount;
            }
            "get" => {}
            other => return Err(format!("no handler for {other:?}").into()),
        }
        Ok(Some(Bytes::from(serde_json::to_vec(
            &json!({"count": self.count}),
        )?)))
    }
}

fn increment() -> WasmMsg {
    WasmMsg::new("increment", Bytes::from_static(br#"{"amount": 1}"#))
}

fn count_of(reply: &[u8]) -> Result<i64> {
    let v: Value = serde_json::from_slice(reply).context("the reply is not JSON")?;
    v.get("count")
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("the reply has no count: {v}"))
}

fn scope(key: &str) -> ActorScope {
    ActorScope {
        tenant: "default".into(),
        namespace: "default".into(),
        actor_type: "counter".into(),
        key: key.into(),
    }
}

fn runtime(cache_dir: Option<&Path>, max_instances: u32) -> Result<Runtime> {
    Runtime::start(RuntimeOptions {
        cache_dir: cache_dir.map(Path::to_path_buf),
        max_instances,
        ..RuntimeOptions::default()
    })
    .map_err(|e| anyhow!("wasm runtime: {e}"))
}

async fn load(rt: &Runtime, bytes: &[u8]) -> Result<Module> {
    rt.load(bytes, Limits::default())
        .await
        .map_err(|e| anyhow!("loading the guest: {e}"))
}

/// One activation of `module` (or of the native counter when `None`), asked once.
enum Activation {
    Wasm(ActorRef<WasmActor>),
    Native(ActorRef<NativeCounter>),
}

impl Activation {
    async fn start(node: &Node, module: Option<&Module>, key: &str) -> Result<Activation> {
        Ok(match module {
            Some(m) => Activation::Wasm(
                node.start(
                    WasmActor::new(m.clone(), scope(key), HostEnv::detached(), Vec::new()),
                    SpawnOptions::default(),
                )
                .await?,
            ),
            None => Activation::Native(
                node.start(NativeCounter { count: 0 }, SpawnOptions::default())
                    .await?,
            ),
        })
    }

    async fn ask(&self, msg: WasmMsg) -> Result<Bytes> {
        let timeout = Duration::from_secs(60);
        Ok(match self {
            Activation::Wasm(a) => a.ask_timeout(msg, timeout).await?,
            Activation::Native(a) => a.ask_timeout(msg, timeout).await?,
        })
    }
}

/// Ask latency p50/p99 in microseconds; checks the guest really counted.
async fn latency(node: &Node, module: Option<&Module>, asks: usize) -> Result<(f64, f64)> {
    let a = Activation::start(node, module, "latency").await?;
    let warm = (asks / 10).max(1);
    for _ in 0..warm {
        a.ask(increment()).await?;
    }
    let mut samples = Vec::with_capacity(asks);
    let mut last = 0;
    for _ in 0..asks {
        let t = Instant::now();
        let reply = a.ask(increment()).await?;
        samples.push(t.elapsed().as_nanos() as u64);
        last = count_of(&reply)?;
    }
    let expected = (warm + asks) as i64;
    if last != expected {
        bail!("the counter answered {last} after {expected} increments");
    }
    samples.sort_unstable();
    let at = |pct: usize| samples[(samples.len() * pct / 100).min(samples.len() - 1)] as f64 / 1e3;
    Ok((at(50), at(99)))
}

/// Load (compile or cache) + spawn + first reply, on a fresh runtime: milliseconds, and
/// whether the runtime compiled.
async fn activation_from_scratch(bytes: &[u8], cache: &Path) -> Result<(f64, bool)> {
    let node = Node::builder("wasm-bench-activation").build().await?;
    let t = Instant::now();
    let rt = runtime(Some(cache), 8)?;
    let module = load(&rt, bytes).await?;
    let a = Activation::start(&node, Some(&module), "first").await?;
    let reply = a.ask(increment()).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if count_of(&reply)? != 1 {
        bail!("a fresh activation did not answer count 1");
    }
    let compiled = rt.cache_stats().compiled > 0;
    node.shutdown().await;
    Ok((ms, compiled))
}

/// A new activation of a loaded module (or a new native actor) and its first reply: ms.
async fn activation_loaded(node: &Node, module: Option<&Module>, n: usize) -> Result<f64> {
    let t = Instant::now();
    let a = Activation::start(node, module, &format!("loaded-{n}")).await?;
    let reply = a.ask(increment()).await?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if count_of(&reply)? != 1 {
        bail!("a new activation did not answer count 1");
    }
    Ok(ms)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The figures of one kind (`None`: not measured).
#[derive(Debug, Default, Clone)]
struct Figures {
    size: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
    cold: Option<f64>,
    warm: Option<f64>,
    loaded: Option<f64>,
    idle: Option<f64>,
    idle_n: usize,
}

async fn measure(bytes: Option<&[u8]>, work: Work) -> Result<Figures> {
    let mut f = Figures::default();
    let node = Node::builder("wasm-bench").build().await?;
    let module = match bytes {
        Some(bytes) => {
            f.size = Some(bytes.len() as f64);
            let cache = tempfile::tempdir()?;
            let mut cold = Vec::new();
            let mut warm = Vec::new();
            for _ in 0..work.activations {
                // A fresh directory per cold run: it must compile.
                let dir = tempfile::tempdir_in(cache.path())?;
                let (ms, compiled) = activation_from_scratch(bytes, dir.path()).await?;
                if !compiled {
                    bail!("the cold run did not compile");
                }
                cold.push(ms);
                let (ms, compiled) = activation_from_scratch(bytes, dir.path()).await?;
                if compiled {
                    bail!("the warm run compiled: the disk cache did not answer");
                }
                warm.push(ms);
            }
            f.cold = Some(median(cold));
            f.warm = Some(median(warm));
            let rt = runtime(None, 64)?;
            Some(load(&rt, bytes).await?)
        }
        None => None,
    };
    let mut loaded = Vec::new();
    for n in 0..work.activations.max(3) {
        loaded.push(activation_loaded(&node, module.as_ref(), n).await?);
    }
    f.loaded = Some(median(loaded));
    let (p50, p99) = latency(&node, module.as_ref(), work.asks).await?;
    f.p50 = Some(p50);
    f.p99 = Some(p99);
    node.shutdown().await;
    Ok(f)
}

/// Runs this binary as a child: bytes per idle activation.
fn idle_in_child(kind: Kind, path: Option<&Path>, count: usize) -> Result<f64> {
    let exe = std::env::current_exe().context("finding this binary")?;
    let path = path.map_or_else(|| "-".to_owned(), |p| p.display().to_string());
    let out = std::process::Command::new(exe)
        .args([CHILD, kind.arg(), &path, &count.to_string()])
        .output()
        .context("running the memory child")?;
    if !out.status.success() {
        bail!(
            "memory child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .with_context(|| format!("memory child printed {text:?}"))
}

/// Resident bytes of this process (`/proc/self/statm`, pages of 4 KiB on x86-64).
fn resident() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").context("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("statm has no resident field")?
        .parse()
        .context("statm resident field")?;
    Ok(pages * 4096)
}

async fn settled() -> Result<u64> {
    let mut last = resident()?;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = resident()?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn child(args: &[String]) -> Result<()> {
    let kind = args
        .first()
        .and_then(|a| Kind::from_arg(a))
        .context("wasm-rss-child wants native, rust, python or typescript")?;
    let path = args.get(1).context("wasm-rss-child wants a path")?.clone();
    let count: usize = args
        .get(2)
        .context("wasm-rss-child wants a count")?
        .parse()
        .context("count")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let per = rt.block_on(async move {
        tokio::spawn(async move {
            let node = Node::builder("wasm-bench-rss").build().await?;
            let (wasm_rt, module) = if kind == Kind::Native {
                (None, None)
            } else {
                let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
                let max = u32::try_from(count + 8).unwrap_or(u32::MAX);
                let wasm_rt = runtime(None, max)?;
                let module = load(&wasm_rt, &bytes).await?;
                // One activation first, so the delta holds no one-time cost.
                let first = Activation::start(&node, Some(&module), "first").await?;
                first.ask(increment()).await?;
                (Some(wasm_rt), Some(module))
            };
            let before = settled().await?;
            let mut keep = Vec::with_capacity(count);
            for i in 0..count {
                let a = Activation::start(&node, module.as_ref(), &format!("idle-{i}")).await?;
                let reply = a.ask(increment()).await?;
                if count_of(&reply)? != 1 {
                    bail!("activation {i} did not answer count 1");
                }
                keep.push(a);
            }
            let after = settled().await?;
            drop(wasm_rt);
            Ok::<_, anyhow::Error>(after.saturating_sub(before) as f64 / count as f64)
        })
        .await
        .context("memory child panicked")?
    })?;
    println!("{per:.0}");
    std::process::exit(0);
}

/// Where a guest is: the flag, else the build caches scripts/bench-wasm and
/// scripts/wasm-examples fill.
fn guest_path(kind: Kind, flag: Option<PathBuf>) -> Option<PathBuf> {
    if flag.is_some() {
        return flag;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/plexspaces/target"))
        })?;
    let path = match kind {
        Kind::Native => return None,
        Kind::Rust => target.join("wasm-guests/wasm32-wasip2/release/plexspaces_rust_counter.wasm"),
        Kind::Python => target.join("wasm-components/counter_actor.wasm"),
        Kind::TypeScript => target.join("wasm-components/counter-ts.wasm"),
    };
    Some(path)
}

fn cell(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".into(),
        Some(v) if unit == "B" || unit == "KiB" => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD) {
        return child(&args[1..]);
    }
    let mut quick = false;
    let mut json_out = false;
    let mut paths: [Option<PathBuf>; 4] = Default::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--json" => json_out = true,
            "--rust" | "--python" | "--typescript" => {
                let kind = Kind::from_arg(&arg[2..]).context("kind")?;
                let p = it.next().with_context(|| format!("{arg} wants a path"))?;
                paths[kind as usize] = Some(PathBuf::from(p));
            }
            "-h" | "--help" => {
                println!("usage: plexspaces-bench-wasm [--quick] [--json] [--rust PATH] [--python PATH] [--typescript PATH]\n  a guest not given is looked for where scripts/bench-wasm builds it; a missing one is skipped");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let work = if quick { Work::quick() } else { Work::full() };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let workers = runtime.metrics().num_workers();
    let mut results: Vec<(Kind, Option<PathBuf>, Figures)> = Vec::new();
    let mut skipped = Vec::new();
    for kind in Kind::ALL {
        let path = guest_path(kind, paths[kind as usize].take());
        let bytes = match (&path, kind) {
            (_, Kind::Native) => None,
            (Some(p), _) => match std::fs::read(p) {
                Ok(b) => Some(b),
                Err(e) => {
                    let reason = format!(
                        "{}: SKIPPED, not built ({}: {e}; scripts/bench-wasm builds it)",
                        kind.name(),
                        p.display()
                    );
                    eprintln!("{reason}");
                    skipped.push(reason);
                    continue;
                }
            },
            (None, _) => {
                let reason = format!("{}: SKIPPED, no path (set --{})", kind.name(), kind.arg());
                eprintln!("{reason}");
                skipped.push(reason);
                continue;
            }
        };
        eprintln!("measuring the {}", kind.name());
        let figures = runtime.block_on(async {
            tokio::spawn(async move { measure(bytes.as_deref(), work).await })
                .await
                .context("bench driver panicked")?
        })?;
        results.push((kind, path, figures));
    }
    for (kind, path, f) in &mut results {
        let n = kind.idle(work);
        // A failed memory row is reported with its reason; it does not lose the others.
        match idle_in_child(*kind, path.as_deref(), n) {
            Ok(bytes) => f.idle = Some(bytes / 1024.0),
            Err(e) => {
                let reason = format!("{}: memory row FAILED: {e:#}", kind.name());
                eprintln!("{reason}");
                skipped.push(reason);
            }
        }
        f.idle_n = n;
    }
    if json_out {
        let rows: Vec<Value> = results
            .iter()
            .map(|(k, _, f)| {
                json!({
                    "kind": k.arg(),
                    "module_bytes": f.size,
                    "ask_p50_us": f.p50,
                    "ask_p99_us": f.p99,
                    "activation_cold_ms": f.cold,
                    "activation_warm_ms": f.warm,
                    "activation_loaded_ms": f.loaded,
                    "idle_kib_per_activation": f.idle,
                    "idle_activations": f.idle_n,
                })
            })
            .collect();
        println!(
            "{}",
            json!({"quick": quick, "workers": workers, "rows": rows, "skipped": skipped})
        );
        return Ok(());
    }
    println!(
        "{} mode, tokio multi-thread runtime with {workers} workers; wasmtime pooling allocator, default limits; the quick-start counter everywhere (`increment {{\"amount\": 1}}`)\n",
        if quick { "quick" } else { "full" }
    );
    print!("| benchmark | unit |");
    for (k, _, _) in &results {
        print!(" {} |", k.name());
    }
    println!();
    print!("|---|---|");
    for _ in &results {
        print!("---:|");
    }
    println!();
    type Pick = fn(&Figures) -> Option<f64>;
    let rows: [(&str, &str, Pick); 8] = [
        ("component size", "KiB", |f| f.size.map(|s| s / 1024.0)),
        ("ask latency p50", "µs", |f| f.p50),
        ("ask latency p99", "µs", |f| f.p99),
        (
            "activation, cold (fresh runtime, compile, describe, spawn, first reply)",
            "ms",
            |f| f.cold,
        ),
        (
            "activation, warm (fresh runtime, disk cache, describe, spawn, first reply)",
            "ms",
            |f| f.warm,
        ),
        (
            "activation of a loaded module (spawn, instantiate, first reply)",
            "ms",
            |f| f.loaded,
        ),
        (
            "resident memory per idle activation (after one message)",
            "KiB",
            |f| f.idle,
        ),
        ("… measured over N activations", "N", |f| {
            Some(f.idle_n as f64)
        }),
    ];
    for (name, unit, pick) in rows {
        print!("| {name} | {unit} |");
        for (_, _, f) in &results {
            let u = if unit == "N" { "B" } else { unit };
            print!(" {} |", cell(pick(f), u));
        }
        println!();
    }
    for s in &skipped {
        println!("\n{s}");
    }
    Ok(())
}
