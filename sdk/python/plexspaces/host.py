"""The node's imports, as plain Python: JSON in and out, errors as ``ActorError``.

Usable only inside a component (each call goes to the node through the generated
``wit_world`` bindings). Every call acts in the calling actor's own tenant and namespace.
An error from the node raises :class:`plexspaces.ActorError` with the node's code
(``denied``, ``timeout``, ``unsupported``...); a handler that does not catch it returns it to
its caller.

    from plexspaces import host
    host.log("charging card")
    total = host.ask("ledger", "balance", {"account": "a1"})
    host.kv.put("last", b"42")
    host.tuples.write("jobs", ["resize", 7])
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from ._actor import ERROR_CODES, ActorError


def _call(fn, *args):
    from componentize_py_types import Err

    try:
        return fn(*args)
    except Err as e:
        err = e.value
        code = ERROR_CODES[err.code.value] if hasattr(err, "code") else "internal"
        raise ActorError(code, getattr(err, "message", str(err))) from None


def _encode(payload: Any) -> bytes:
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    return json.dumps(payload, separators=(",", ":")).encode()


def _decode(data: bytes) -> Any:
    return json.loads(data.decode()) if data else None


class Address(NamedTuple):
    actor_type: str
    key: str = ""


def _address(actor_type: str, key: str):
    from wit_world.imports import types

    return types.Address(actor_type=actor_type, key=key)


# -- logging --------------------------------------------------------------------------------

_LEVELS = ("trace", "debug", "info", "warn", "error")


def log(message: str, level: str = "info") -> None:
    """Writes ``message`` to the node's log, tagged with this actor's address."""
    from wit_world.imports import logging

    if level not in _LEVELS:
        raise ValueError(f"unknown log level {level!r}; one of {', '.join(_LEVELS)}")
    logging.log(logging.Level[level.upper()], str(message))


# -- messaging ------------------------------------------------------------------------------


def self_address() -> Address:
    from wit_world.imports import messaging

    a = messaging.self_address()
    return Address(a.actor_type, a.key)


def tell(actor_type: str, msg_type: str, payload: Any = None, *, key: str = "") -> None:
    """Queues a message for the actor (activating it if needed)."""
    from wit_world.imports import messaging

    _call(messaging.tell, _address(actor_type, key), msg_type, _encode(payload))


def ask(actor_type: str, msg_type: str, payload: Any = None, *, key: str = "", timeout_ms: int = 0) -> Any:
    """Sends a message and returns the decoded JSON reply (``timeout_ms`` 0: the node's)."""
    from wit_world.imports import messaging

    return _decode(_call(messaging.ask, _address(actor_type, key), msg_type, _encode(payload), timeout_ms))


def spawn(actor_type: str, *, key: str = "") -> str:
    """Activates the actor if it is not active; returns its id."""
    from wit_world.imports import messaging

    return _call(messaging.spawn, _address(actor_type, key))


# -- key-value, tuple spaces, durability, timers, groups ------------------------------------


class _KeyValue:
    """Key-value entries shared by the namespace's actors (values are bytes)."""

    def get(self, key: str) -> bytes | None:
        from wit_world.imports import key_value

        return _call(key_value.get, key)

    def put(self, key: str, value: bytes | str) -> None:
        from wit_world.imports import key_value

        _call(key_value.put, key, value.encode() if isinstance(value, str) else bytes(value))

    def delete(self, key: str) -> bool:
        from wit_world.imports import key_value

        return _call(key_value.delete, key)

    def list_keys(self, prefix: str = "", limit: int = 0) -> list[str]:
        from wit_world.imports import key_value

        return _call(key_value.list_keys, prefix, limit)


class _Tuples:
    """Linda tuple spaces: tuples and templates are Python lists (formals: ``{"?": "int"}``)."""

    def write(self, space: str, fields: list) -> None:
        from wit_world.imports import tuple_space

        _call(tuple_space.write, space, json.dumps(fields))

    def read(self, space: str, template: list, timeout_ms: int = 0) -> list | None:
        from wit_world.imports import tuple_space

        found = _call(tuple_space.read, space, json.dumps(template), timeout_ms)
        return None if found is None else json.loads(found)

    def take(self, space: str, template: list, timeout_ms: int = 0) -> list | None:
        from wit_world.imports import tuple_space

        found = _call(tuple_space.take, space, json.dumps(template), timeout_ms)
        return None if found is None else json.loads(found)

    def count(self, space: str, template: list) -> int:
        from wit_world.imports import tuple_space

        return _call(tuple_space.count, space, json.dumps(template))


class _Durability:
    """Journaled time and randomness: the same values again when a message is replayed."""

    def is_durable(self) -> bool:
        from wit_world.imports import durability

        return durability.is_durable()

    def is_replaying(self) -> bool:
        from wit_world.imports import durability

        return durability.is_replaying()

    def now_ms(self) -> int:
        from wit_world.imports import durability

        return _call(durability.now_ms)

    def random_u64(self) -> int:
        from wit_world.imports import durability

        return _call(durability.random_u64)

    def remember(self, name: str, value: Any) -> Any:
        """Records the JSON ``value`` the first time; returns the recorded one on replay."""
        from wit_world.imports import durability

        return _decode(_call(durability.remember, name, _encode(value)))


class _Timers:
    """Messages to this actor later; timers die with the activation."""

    def send_after(self, delay_ms: int, msg_type: str, payload: Any = None) -> int:
        from wit_world.imports import timers

        return _call(timers.send_after, delay_ms, msg_type, _encode(payload))

    def send_interval(self, period_ms: int, msg_type: str, payload: Any = None) -> int:
        from wit_world.imports import timers

        return _call(timers.send_interval, period_ms, msg_type, _encode(payload))

    def cancel(self, timer: int) -> bool:
        from wit_world.imports import timers

        return timers.cancel(timer)


class _Groups:
    """Process groups of the namespace."""

    def join(self, group: str) -> None:
        from wit_world.imports import process_groups

        _call(process_groups.join, group)

    def leave(self, group: str) -> bool:
        from wit_world.imports import process_groups

        return process_groups.leave(group)

    def members(self, group: str) -> list[str]:
        from wit_world.imports import process_groups

        return process_groups.members(group)

    def broadcast(self, group: str, msg_type: str, payload: Any = None) -> int:
        from wit_world.imports import process_groups

        return _call(process_groups.broadcast, group, msg_type, _encode(payload))


kv = _KeyValue()
tuples = _Tuples()
durability = _Durability()
timers = _Timers()
groups = _Groups()
