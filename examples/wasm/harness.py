"""Shared by the WASM example tests: build guests (cached by source hash), run a real node.

A node is the real `plexspaces` binary (WASM_EXAMPLES_BIN, else CARGO_TARGET_DIR/debug/plexspaces)
started on loopback ports with its own data dir; `kill9()` really sends SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WIT = REPO / "wit"
PY_SDK = REPO / "sdk" / "python"
TS_SDK = REPO / "sdk" / "typescript"


def target_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "plexspaces" / "target"
    return Path(os.environ.get("CARGO_TARGET_DIR", default))


def cache_dir() -> Path:
    d = Path(os.environ.get("WASM_EXAMPLES_CACHE", target_dir() / "wasm-components"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for root in paths:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for p in files:
            if any(part in ("node_modules", "target", "__pycache__") for part in p.parts) or p.suffix == ".wasm":
                continue
            h.update(str(p.relative_to(REPO)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _cached(name: str, inputs: list[Path], build) -> Path:
    """Builds once per content hash; `NAME.wasm` beside it is the latest build (for benches)."""
    out = cache_dir() / f"{name}-{_digest(inputs)}.wasm"
    if not out.is_file():
        tmp = out.with_suffix(".partial.wasm")
        build(tmp)
        tmp.replace(out)
    latest = cache_dir() / f"{name}.wasm"
    shutil.copyfile(out, latest.with_suffix(".tmp"))
    latest.with_suffix(".tmp").replace(latest)
    return out


def build_python(source: Path) -> Path:
    """`plexspaces-py build` of an actor module (the SDK from this checkout)."""

    def run(out: Path) -> None:
        env = dict(os.environ, PYTHONPATH=str(PY_SDK))
        subprocess.run(
            [sys.executable, "-m", "plexspaces.cli", "build", str(source), "-o", str(out), "-q"], check=True, env=env
        )

    return _cached(source.stem, [source, PY_SDK / "plexspaces", WIT], run)


def build_ts(source: Path) -> Path:
    """`plexspaces-ts build` of a TypeScript or JavaScript actor module."""

    def run(out: Path) -> None:
        subprocess.run(
            ["node", str(TS_SDK / "bin" / "plexspaces-ts.mjs"), "build", str(source), "-o", str(out), "-q"], check=True
        )

    return _cached(source.stem + "-" + source.suffix[1:], [source, TS_SDK / "src", TS_SDK / "bin", TS_SDK / "wit"], run)


def build_rust(crate: Path) -> Path:
    """`cargo build --target wasm32-wasip2 --release` of a standalone guest crate."""
    name = crate.name

    def run(out: Path) -> None:
        tdir = target_dir() / "wasm-guests"  # shared with scripts/build-rust-guest
        subprocess.run(
            ["cargo", "build", "-q", "--release", "--target", "wasm32-wasip2", "--target-dir", str(tdir)],
            check=True,
            cwd=crate,
            # The host build's flags (coverage, sanitizers) do not apply to the guest.
            env={k: v for k, v in os.environ.items() if "RUSTFLAGS" not in k},
        )
        lib = "plexspaces_" + name.replace("-", "_")
        shutil.copyfile(tdir / "wasm32-wasip2" / "release" / f"{lib}.wasm", out)

    return _cached(name, [crate / "src", crate / "Cargo.toml", WIT], run)


def build_go(module: Path) -> Path:
    """scripts/build-go-guest of a Go guest module (go:wasmexport core module + sdk/go-adapter)."""

    def run(out: Path) -> None:
        subprocess.run([str(REPO / "scripts" / "build-go-guest"), str(module), str(out)], check=True, stdout=subprocess.DEVNULL)

    inputs = [module, REPO / "sdk" / "go-adapter", REPO / "scripts" / "componentize-core.mjs", WIT]
    return _cached(module.name, inputs, run)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plexspaces_bin() -> Path:
    b = Path(os.environ.get("WASM_EXAMPLES_BIN", target_dir() / "debug" / "plexspaces"))
    if not b.is_file():
        raise RuntimeError(f"{b}: no plexspaces binary (cargo build -p plexspaces-cli, or set WASM_EXAMPLES_BIN)")
    return b


class Reply:
    def __init__(self, status: int, body: bytes):
        self.status = status
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:300]!r})"


class Node:
    """One real node process on loopback ports with its own data dir."""

    def __init__(self, data_dir: Path, log: Path, config: str | None = None):
        """`config`: the TOML of a config file (docs/configuration.md) for `--config`."""
        self.data_dir = data_dir
        self.log = log
        self.extra_args: list[str] = []
        if config is not None:
            path = log.with_name(log.stem + ".toml")
            path.write_text(config)
            self.extra_args = ["--config", str(path)]
        self.proc: subprocess.Popen | None = None
        self.http_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> "Node":
        self.http_port = free_port()
        grpc = free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    str(plexspaces_bin()),
                    "start",
                    "--node-id",
                    "wasm-examples",
                    "--http-addr",
                    f"127.0.0.1:{self.http_port}",
                    "--grpc-addr",
                    f"127.0.0.1:{grpc}",
                    "--data-dir",
                    str(self.data_dir),
                    *self.extra_args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                # Hermetic: the node refuses unknown PLEXSPACES_* variables, and none of the
                # caller's (test URLs, endpoints, tokens) are meant for it.
                env={k: v for k, v in os.environ.items() if not k.startswith("PLEXSPACES_")},
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}; log: {self.log}")
            try:
                if self.request("GET", "/health").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"node did not become healthy in 60 s; log: {self.log}")

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill9()

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 60
    ) -> Reply:
        req = urllib.request.Request(self.url + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Reply(r.status, r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read())

    def deploy(self, namespace: str, actor_type: str, wasm: Path) -> Reply:
        """POST /api/v1/deploy as multipart, exactly the fields of the product description."""
        boundary = "plexspaces-" + hashlib.sha256(os.urandom(16)).hexdigest()[:24]
        parts = []
        for name, value in (("namespace", namespace), ("actor_type", actor_type)):
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="wasm"; filename="{wasm.name}"\r\n'
                "Content-Type: application/wasm\r\n\r\n"
            ).encode()
            + wasm.read_bytes()
            + b"\r\n"
        )
        parts.append(f"--{boundary}--\r\n".encode())
        return self.request(
            "POST",
            "/api/v1/deploy",
            b"".join(parts),
            {"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=300,
        )

    def invoke(self, namespace: str, actor_type: str, msg_type: str, payload=None, key: str | None = None) -> Reply:
        q = f"msg_type={urllib.request.quote(msg_type)}"
        if key is not None:
            q += f"&key={urllib.request.quote(key)}"
        body = json.dumps({} if payload is None else payload).encode()
        return self.request(
            "POST", f"/api/v1/actors/{namespace}/{actor_type}/invoke?{q}", body, {"Content-Type": "application/json"}
        )

    def ok(self, namespace: str, actor_type: str, msg_type: str, payload=None, key: str | None = None):
        r = self.invoke(namespace, actor_type, msg_type, payload, key)
        assert r.status == 200, r
        return r.json()


def eventually(call, timeout: float = 30.0, interval: float = 0.2) -> Reply:
    """Repeats `call` until it answers 200 (or the time is up; then returns the last reply)."""
    deadline = time.monotonic() + timeout
    while True:
        r = call()
        if r.status == 200 or time.monotonic() > deadline:
            return r
        time.sleep(interval)
