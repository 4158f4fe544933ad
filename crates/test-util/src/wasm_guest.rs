//! The Rust WASM guest (`sdk/rust-counter`), built once per test process for
//! `wasm32-wasip2` with the ordinary cargo (`scripts/build-rust-guest` does the same).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// The bytes of the Rust counter guest component, building it first if needed. Panics
/// (failing the test) with cargo's output when the build fails: the `wasm32-wasip2` target
/// must be installed (`scripts/ci-deps`).
pub fn rust_guest() -> Vec<u8> {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| {
        let root = repo_root();
        let crate_dir = root.join("sdk/rust-counter");
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(t) => PathBuf::from(t).join("wasm-guests"),
            None => root.join("target/wasm-guests"),
        };
        let out =
            std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(&crate_dir)
                .args([
                    "build",
                    "--release",
                    "--target",
                    "wasm32-wasip2",
                    "--target-dir",
                ])
                .arg(&target)
                // The host build's flags (coverage, sanitizers) do not apply to the guest.
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_BUILD_RUSTFLAGS")
                .output()
                .expect("cargo runs");
        assert!(
            out.status.success(),
            "building sdk/rust-counter failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        target.join("wasm32-wasip2/release/plexspaces_rust_counter.wasm")
    });
    std::fs::read(path).expect("the built guest is readable")
}

/// The bytes of the Go rate-limiter guest component (`examples/wasm/rate_limiter_go`), built
/// once per test process by `scripts/build-go-guest` (Go >= 1.24 and jco: `scripts/ci-deps`
/// installs both). Panics (failing the test) with the script's output when the build fails.
pub fn go_guest() -> Vec<u8> {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES
        .get_or_init(|| {
            let root = repo_root();
            let target = match std::env::var_os("CARGO_TARGET_DIR") {
                Some(t) => PathBuf::from(t),
                None => root.join("target"),
            };
            // One file per process: nextest runs tests in parallel processes.
            let wasm = target.join(format!(
                "wasm-guests/go/rate_limiter_go-{}.wasm",
                std::process::id()
            ));
            let out = std::process::Command::new(root.join("scripts/build-go-guest"))
                .arg(root.join("examples/wasm/rate_limiter_go"))
                .arg(&wasm)
                .output()
                .expect("scripts/build-go-guest runs");
            assert!(
                out.status.success(),
                "building examples/wasm/rate_limiter_go failed (scripts/ci-deps installs Go and jco):\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let bytes = std::fs::read(&wasm).expect("the built guest is readable");
            let _ = std::fs::remove_file(&wasm);
            bytes
        })
        .clone()
}
