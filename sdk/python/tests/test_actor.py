"""The decorator layer on CPython (no WebAssembly): what a handler receives and returns."""

import json
from pathlib import Path

import pytest
from plexspaces import ActorError, actor, handler, state
from plexspaces._actor import ActorSpec


def make_counter(facets=()):
    @actor(facets=list(facets))
    class Counter:
        count: int = state(default=0)
        history: list = state(default=[])

        @handler("increment")
        def increment(self, amount: int = 1) -> dict:
            self.count += amount
            self.history.append(amount)
            return {"count": self.count}

        @handler("get")
        def get(self) -> dict:
            return {"count": self.count}

        @handler
        def echo(self, value):
            return value

        @handler("fail")
        def fail(self, kind: str):
            if kind == "typed":
                raise ActorError("conflict", "already done")
            return 1 / 0

    return Counter.__plexspaces__


def call(spec: ActorSpec, obj, msg_type, payload=None):
    raw = b"" if payload is None else json.dumps(payload).encode()
    return json.loads(spec.invoke(obj, msg_type, raw))


def test_keyword_arguments_from_the_json_payload():
    spec = make_counter()
    obj = spec.new_instance()
    assert call(spec, obj, "increment", {"amount": 5}) == {"count": 5}
    assert call(spec, obj, "increment") == {"count": 6}
    assert call(spec, obj, "get", {}) == {"count": 6}


def test_each_activation_gets_its_own_copy_of_mutable_defaults():
    spec = make_counter()
    a, b = spec.new_instance(), spec.new_instance()
    call(spec, a, "increment", {"amount": 2})
    assert b.history == [] and a.history == [2]


def test_a_non_object_payload_is_the_single_positional_argument():
    spec = make_counter()
    obj = spec.new_instance()
    assert call(spec, obj, "echo", [1, "two"]) == [1, "two"]


@pytest.mark.parametrize(
    "msg_type,payload,code",
    [
        ("increment", b"{not json", "bad-request"),
        ("increment", b'{"amount": 1, "extra": 2}', "bad-request"),
        ("fail", b"{}", "bad-request"),  # missing required argument
        ("nope", b"{}", "not-found"),
        ("fail", b'{"kind": "typed"}', "conflict"),
        ("fail", b'{"kind": "zero"}', "internal"),
        ("increment", b"\xff\xfe", "bad-request"),
    ],
)
def test_bad_input_is_a_typed_error(msg_type, payload, code):
    spec = make_counter()
    obj = spec.new_instance()
    with pytest.raises(ActorError) as e:
        spec.invoke(obj, msg_type, payload)
    assert e.value.code == code
    assert obj.count == 0


def test_snapshot_and_restore_round_trip_the_state_fields():
    spec = make_counter(facets=["durability"])
    assert spec.facets == ["durability"]
    obj = spec.new_instance()
    call(spec, obj, "increment", {"amount": 3})
    snap = spec.snapshot(obj)
    assert json.loads(snap) == {"count": 3, "history": [3]}
    fresh = spec.new_instance()
    spec.restore(fresh, snap)
    assert call(spec, fresh, "get") == {"count": 3}
    spec.restore(fresh, b'{"count": 9}')
    assert fresh.count == 9 and fresh.history == []
    with pytest.raises(ActorError) as e:
        spec.restore(fresh, b"[1]")
    assert e.value.code == "bad-request"


def test_declaration_mistakes_are_reported_when_the_class_is_defined():
    with pytest.raises(ValueError):
        actor(facets=["teleport"])
    with pytest.raises(TypeError):

        @actor
        class NoHandlers:
            x = state(default=1)

    with pytest.raises(ValueError):
        ActorError("nonsense", "x")


def test_the_packaged_wit_is_the_repository_wit():
    repo_wit = Path(__file__).resolve().parents[3] / "wit" / "actor.wit"
    if not repo_wit.is_file():
        pytest.skip("not run from the repository")
    sdk = Path(__file__).resolve().parents[2]
    for copy in (sdk / "python" / "plexspaces" / "wit" / "actor.wit", sdk / "typescript" / "wit" / "actor.wit"):
        assert copy.read_text() == repo_wit.read_text(), f"run: cp wit/actor.wit {copy}"
