"""Each guest component's exports, run without a node: jco transpiles it and a stand-in host
answers the imports (guest_check.mjs). This checks the SDKs' side of the WIT contract
(describe, typed errors, snapshot/restore); test_examples.py checks the same guests through a
real node."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import harness

HERE = Path(__file__).parent
JCO = harness.TS_SDK / "node_modules" / ".bin" / "jco"


def run(wasm: Path, calls: list, key: str = "k1") -> tuple[dict, list]:
    if not JCO.is_file() or not shutil.which("node"):
        pytest.fail("needs node and `npm ci` in sdk/typescript (jco)")
    done = subprocess.run(
        [
            "node",
            "--experimental-wasm-extended-const",
            str(HERE / "guest_check.mjs"),
            str(wasm),
            key,
            json.dumps(calls),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return lines[0]["describe"], lines[1:]


@pytest.mark.parametrize(
    "build,source",
    [
        (harness.build_python, HERE / "quickstart" / "counter_actor.py"),
        (harness.build_ts, HERE / "quickstart" / "counter.ts"),
    ],
    ids=["python", "typescript"],
)
def test_counter_guest(build, source):
    desc, out = run(
        build(source),
        [
            ["increment", {"amount": 5}],
            ["increment", {}],
            ["nope", {}],
            ["@snapshot"],
            ["@init"],
            ["get", {}],
            ["@restore"],
            ["get", {}],
        ],
    )
    assert desc == {"facets": [], "handlers": ["get", "increment"]}
    assert out[0] == {"ok": {"count": 5}} and out[1] == {"ok": {"count": 6}}
    assert out[2]["err"]["code"] == "not-found"
    assert out[5] == {"ok": {"count": 0}} and out[7] == {"ok": {"count": 6}}


def test_python_argument_errors_are_bad_request():
    _, out = run(
        harness.build_python(HERE / "quickstart" / "counter_actor.py"),
        [["increment", {"amount": 1, "bogus": 2}], ["get", {}]],
    )
    assert out[0]["err"]["code"] == "bad-request" and "bogus" in out[0]["err"]["message"]
    assert out[1] == {"ok": {"count": 0}}


@pytest.mark.parametrize(
    "build,source",
    [
        (harness.build_python, HERE / "calculator" / "calculator.py"),
        (harness.build_ts, HERE / "calculator" / "calculator.js"),
    ],
    ids=["python", "javascript"],
)
def test_calculator_guest(build, source):
    _, out = run(build(source), [["add", {"a": 2, "b": 3}], ["divide", {"a": 1, "b": 0}], ["divide", {"a": 1, "b": 4}]])
    assert out[0]["ok"]["result"] == 5
    assert out[1] == {"err": {"code": "bad-request", "message": "division by zero"}}
    assert out[2]["ok"]["result"] == 0.25


def test_bank_account_guest_is_durable_and_restores():
    desc, out = run(
        harness.build_python(HERE / "bank_account" / "bank_account.py"),
        [
            ["deposit", {"amount": 100}],
            ["withdraw", {"amount": 1000}],
            ["@snapshot"],
            ["@init"],
            ["@restore"],
            ["balance", {}],
        ],
    )
    assert desc["facets"] == ["durability"]
    assert out[1]["err"]["code"] == "conflict"
    assert out[2]["ok"]["transactions"][0]["at_ms"] == 1700000000000  # the host's journaled clock
    assert out[5] == {"ok": {"balance": 100, "transactions": 1}}


def test_host_import_errors_reach_the_caller_with_their_code():
    # ps_worker asks the server through messaging; the stand-in host answers `unavailable`.
    _, out = run(
        harness.build_python(HERE / "parameter_server" / "ps_worker.py"),
        [["load", {"xs": [1], "ys": [3]}], ["step", {}]],
    )
    assert out[1]["err"]["code"] == "unavailable"


def test_parameter_server_guest_averages_one_gradient_per_worker():
    _, out = run(
        harness.build_python(HERE / "parameter_server" / "parameter_server.py"),
        [
            ["configure", {"dim": 2, "workers": 2, "learning_rate": 0.5}],
            ["push", {"worker": "a", "version": 0, "gradient": [1, 2]}],
            ["push", {"worker": "b", "version": 0, "gradient": [3, 4]}],
            ["pull", {}],
            ["push", {"worker": "a", "version": 0, "gradient": [1, 2]}],
        ],
    )
    assert out[3] == {"ok": {"weights": [-1.0, -1.5], "version": 1}}
    assert out[4]["err"]["code"] == "conflict"


def test_batch_predictor_guest():
    _, out = run(
        harness.build_ts(HERE / "batch_predictor" / "batch_predictor.ts"),
        [
            ["predict", {"inputs": [[1, 1]]}],
            ["load", {"weights": [1, 2], "bias": 0.5}],
            ["predict", {"inputs": [[1, 1], [0, 2]]}],
        ],
        key="model-a",
    )
    assert out[0]["err"]["code"] == "not-found"
    assert out[2] == {"ok": {"model": "model-a", "predictions": [3.5, 4.5], "batch": 1}}


@pytest.mark.parametrize(
    "build,source",
    [(harness.build_rust, HERE / "rate_limiter"), (harness.build_go, HERE / "rate_limiter_go")],
    ids=["rust", "go"],
)
def test_rate_limiter_guest(build, source):
    desc, out = run(
        build(source),
        [
            ["configure", {"limit": 2, "window_ms": 1000}],
            ["check", {}],
            ["check", {}],
            ["check", {}],
            ["configure", {"limit": "x"}],
            ["nope", {}],
            ["@snapshot"],
            ["@init"],
            ["status", {}],
            ["@restore"],
            ["status", {}],
            ["crash", {}],
        ],
    )
    assert desc["handlers"] == ["configure", "check", "status", "crash"]
    assert [o["ok"]["allowed"] for o in out[1:4]] == [True, True, False]
    assert out[3]["ok"]["denied"] == 1 and out[3]["ok"]["remaining"] == 0
    assert out[4]["err"]["code"] == "bad-request", out[4]
    assert out[5]["err"]["code"] == "not-found", out[5]
    assert out[6]["ok"]["limit"] == 2 and len(out[6]["ok"]["allowed"]) == 2
    assert out[8]["ok"]["limit"] == 10  # init: the default window
    assert out[10]["ok"]["limit"] == 2 and out[10]["ok"]["allowed"] is False  # restored
    assert "trap" in out[11]
