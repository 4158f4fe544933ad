"""The product description's quick starts, run for real: build, deploy to a fresh node, invoke."""

import json
import shutil
import subprocess
from pathlib import Path

import harness

# The product description's counter_actor.py, verbatim (its indentation restored).
COUNTER_ACTOR_PY = """\
# counter_actor.py - Build to WASM with: plexspaces-py build counter_actor.py -o counter.wasm
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
"""


def sh(cmd: str, cwd: Path) -> str:
    done = subprocess.run(cmd, shell=True, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout


def test_the_example_file_is_the_quick_start():
    assert (Path(__file__).parent / "quickstart" / "counter_actor.py").read_text() == COUNTER_ACTOR_PY


def test_python_quick_start_verbatim(fresh_node, tmp_path):
    assert shutil.which("plexspaces-py"), "plexspaces-py is not on PATH: pip install ./sdk/python"
    (tmp_path / "counter_actor.py").write_text(COUNTER_ACTOR_PY)
    port = fresh_node.http_port
    # The quick start's commands, with the node's port.
    sh("plexspaces-py build counter_actor.py -o counter.wasm", tmp_path)
    deployed = sh(
        f"curl -sS -X POST http://localhost:{port}/api/v1/deploy "
        '-F "namespace=default" -F "actor_type=counter" -F "wasm=@counter.wasm"',
        tmp_path,
    )
    assert "counter" in deployed, deployed
    out = sh(
        f'curl -sS "http://localhost:{port}/api/v1/actors/default/counter/invoke?msg_type=increment" '
        "-d '{\"amount\": 5}'",
        tmp_path,
    )
    assert json.loads(out) == {"count": 5}
    # The deployed Python type answers (not the node's built-in counter): its `get` handler.
    assert fresh_node.ok("default", "counter", "get") == {"count": 5}


def test_typescript_quick_start(fresh_node):
    wasm = harness.build_ts(Path(__file__).parent / "quickstart" / "counter.ts")
    r = fresh_node.deploy("default", "counter-ts", wasm)
    assert r.status in (200, 201), r
    assert fresh_node.ok("default", "counter-ts", "increment", {"amount": 5}) == {"count": 5}
    assert fresh_node.ok("default", "counter-ts", "get") == {"count": 5}


def test_python_guest_errors_are_typed_http_errors(fresh_node):
    wasm = harness.build_python(Path(__file__).parent / "quickstart" / "counter_actor.py")
    assert fresh_node.deploy("qs", "counter", wasm).status in (200, 201)
    bad_arg = fresh_node.invoke("qs", "counter", "increment", {"amount": 1, "bogus": 2})
    assert 400 <= bad_arg.status < 500, bad_arg
    unknown = fresh_node.invoke("qs", "counter", "no-such-handler", {})
    assert 400 <= unknown.status < 500, unknown
    # Still serving, state untouched by the rejected calls.
    assert fresh_node.ok("qs", "counter", "increment", {"amount": 2}) == {"count": 2}
