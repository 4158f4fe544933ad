"""Each WASM example, built from source and run through a real node."""

from pathlib import Path

import harness
import pytest
from harness import Node

HERE = Path(__file__).parent


@pytest.mark.parametrize(
    "language,build,source",
    [
        ("python", harness.build_python, HERE / "calculator" / "calculator.py"),
        ("javascript", harness.build_ts, HERE / "calculator" / "calculator.js"),
    ],
)
def test_calculator(node, language, build, source):
    actor_type = f"calculator-{language}"
    r = node.deploy("examples", actor_type, build(source))
    assert r.status in (200, 201), r
    assert node.ok("examples", actor_type, "add", {"a": 2, "b": 3})["result"] == 5
    assert node.ok("examples", actor_type, "subtract", {"a": 2, "b": 3})["result"] == -1
    assert node.ok("examples", actor_type, "multiply", {"a": 6, "b": 7})["result"] == 42
    assert node.ok("examples", actor_type, "divide", {"a": 1, "b": 4})["result"] == 0.25
    by_zero = node.invoke("examples", actor_type, "divide", {"a": 1, "b": 0})
    assert by_zero.status == 400 and b"division by zero" in by_zero.body, by_zero
    assert node.ok("examples", actor_type, "stats") == {"operations": 4, "language": language}


def test_bank_account_survives_kill_9(tmp_path):
    wasm = harness.build_python(HERE / "bank_account" / "bank_account.py")
    # Durable WASM actors are opt-in per node: `[wasm] durability_enabled`.
    node = Node(tmp_path / "data", tmp_path / "node.log", config="[wasm]\ndurability_enabled = true\n").start()
    try:
        r = node.deploy("bank", "account", wasm)
        assert r.status in (200, 201), r
        assert node.ok("bank", "account", "deposit", {"amount": 10000}, key="alice")["balance"] == 10000
        assert node.ok("bank", "account", "withdraw", {"amount": 2500}, key="alice")["balance"] == 7500
        assert node.ok("bank", "account", "deposit", {"amount": 300}, key="bob")["balance"] == 300
        overdraw = node.invoke("bank", "account", "withdraw", {"amount": 999999}, key="alice")
        assert 400 <= overdraw.status < 500 and b"insufficient funds" in overdraw.body, overdraw
        before = node.ok("bank", "account", "statement", key="alice")

        node.kill9()
        node.start()  # same data dir: the deployed module and the journal survive

        assert node.ok("bank", "account", "balance", key="alice") == {"balance": 7500, "transactions": 2}
        assert node.ok("bank", "account", "statement", key="alice") == before  # journaled timestamps too
        assert node.ok("bank", "account", "balance", key="bob") == {"balance": 300, "transactions": 1}
        assert node.ok("bank", "account", "withdraw", {"amount": 500}, key="alice")["balance"] == 7000
    finally:
        node.kill9()


def test_parameter_server_aggregates_worker_gradients(node):
    server = harness.build_python(HERE / "parameter_server" / "parameter_server.py")
    worker = harness.build_python(HERE / "parameter_server" / "ps_worker.py")
    assert node.deploy("ml", "parameter-server", server).status in (200, 201)
    assert node.deploy("ml", "ps-worker", worker).status in (200, 201)
    node.ok("ml", "parameter-server", "configure", {"dim": 2, "workers": 2, "learning_rate": 0.3})
    # y = 1 + 2x, split between two workers.
    shards = {"w1": [i / 10 for i in range(0, 10)], "w2": [i / 10 for i in range(10, 20)]}
    for key, xs in shards.items():
        assert node.ok("ml", "ps-worker", "load", {"xs": xs, "ys": [1 + 2 * x for x in xs]}, key=key) == {"samples": 10}
    first = last = None
    for _ in range(60):
        for key in shards:
            out = node.ok("ml", "ps-worker", "step", key=key)
            assert out["worker"] == key
            first = first if first is not None else out["loss"]
            last = out["loss"]
    pulled = node.ok("ml", "parameter-server", "pull")
    assert pulled["version"] == 60
    w0, w1 = pulled["weights"]
    assert abs(w0 - 1) < 0.05 and abs(w1 - 2) < 0.05, pulled
    assert last < first / 100
    stale = node.invoke("ml", "parameter-server", "push", {"worker": "w1", "version": 3, "gradient": [0, 0]})
    assert 400 <= stale.status < 500, stale


def test_batch_predictor_is_a_virtual_actor_per_model(node):
    wasm = harness.build_ts(HERE / "batch_predictor" / "batch_predictor.ts")
    assert node.deploy("ml", "batch-predictor", wasm).status in (200, 201)
    node.ok("ml", "batch-predictor", "load", {"weights": [1, 2], "bias": 0.5}, key="model-a")
    node.ok("ml", "batch-predictor", "load", {"weights": [-1, 0]}, key="model-b")
    a = node.ok("ml", "batch-predictor", "predict", {"inputs": [[1, 1], [0, 2], [3, 0]]}, key="model-a")
    assert a == {"model": "model-a", "predictions": [3.5, 4.5, 3.5], "batch": 1}
    b = node.ok("ml", "batch-predictor", "predict", {"inputs": [[1, 1], [0, 2]]}, key="model-b")
    assert b == {"model": "model-b", "predictions": [-1, 0], "batch": 1}
    assert node.ok("ml", "batch-predictor", "stats", key="model-a")["predictions"] == 3
    unloaded = node.invoke("ml", "batch-predictor", "predict", {"inputs": [[1, 1]]}, key="model-c")
    assert 400 <= unloaded.status < 500 and b"not loaded" in unloaded.body, unloaded
    bad_row = node.invoke("ml", "batch-predictor", "predict", {"inputs": [[1]]}, key="model-a")
    assert bad_row.status == 400, bad_row


@pytest.mark.parametrize(
    "language,build,source",
    [("rust", harness.build_rust, HERE / "rate_limiter"), ("go", harness.build_go, HERE / "rate_limiter_go")],
)
def test_rate_limiter_sliding_window_per_client(node, language, build, source):
    wasm = build(source)
    actor_type = f"rate-limiter-{language}"  # one type per guest: the node is shared
    assert node.deploy("edge", actor_type, wasm).status in (200, 201)
    node.ok("edge", actor_type, "configure", {"limit": 3, "window_ms": 60000}, key="client-1")
    node.ok("edge", actor_type, "configure", {"limit": 1, "window_ms": 60000}, key="client-2")
    decisions = [node.ok("edge", actor_type, "check", key="client-1")["allowed"] for _ in range(5)]
    assert decisions == [True, True, True, False, False]
    denied = node.ok("edge", actor_type, "check", key="client-1")
    assert denied["remaining"] == 0 and 0 < denied["retry_after_ms"] <= 60000 and denied["denied"] == 3
    assert node.ok("edge", actor_type, "check", key="client-2")["allowed"] is True
    assert node.ok("edge", actor_type, "check", key="client-2")["allowed"] is False
    # Let it crash: the trap fails that call, the supervisor restarts the activation (fresh
    # state: this type is not durable), and the client is served again.
    crashed = node.invoke("edge", actor_type, "crash", key="client-1")
    assert crashed.status >= 500, crashed
    after = harness.eventually(lambda: node.invoke("edge", actor_type, "check", key="client-1"))
    assert after.json()["allowed"] is True and after.json()["limit"] == 10
    assert node.ok("edge", actor_type, "status", key="client-2")["allowed"] is False
