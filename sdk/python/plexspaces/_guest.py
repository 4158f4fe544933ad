"""The component's exports: the ``WitWorld`` class componentize-py binds to the world ``actor``.

Only importable inside a build (it needs the generated ``wit_world`` bindings).
``plexspaces-py build`` writes an entry module that imports the user's module (which registers
exactly one ``@actor`` class) and then this ``WitWorld``. One instance of the actor class per
activation: the node instantiates the component once per activation, calls ``init`` once, and
then ``handle`` one message at a time.
"""

from __future__ import annotations

import json

from componentize_py_types import Err

# Every import interface is loaded here, while componentize-py pre-initializes the component:
# a binding module first imported later, inside a handler (as `plexspaces.host` does), is not
# in the component and fails with ImportError.
from wit_world.imports import (  # noqa: F401
    durability,
    key_value,
    logging,
    messaging,
    process_groups,
    timers,
    tuple_space,
    types,
)

from ._actor import ERROR_CODES, ActorError, ActorSpec, registered_actors

_CODES = {name: getattr(types.ErrorCode, name.upper().replace("-", "_")) for name in ERROR_CODES}


def _spec() -> ActorSpec:
    specs = registered_actors()
    if len(specs) != 1:
        names = ", ".join(s.cls.__name__ for s in specs) or "none"
        raise RuntimeError(f"a component holds exactly one @actor class; found: {names}")
    return specs[0]


def _err(e: ActorError) -> Err:
    return Err(types.Error(code=_CODES[e.code], message=e.message))


class WitWorld:
    _obj = None

    def _instance(self):
        if WitWorld._obj is None:
            WitWorld._obj = _spec().new_instance()
        return WitWorld._obj

    def describe(self) -> types.Descriptor:
        spec = _spec()
        return types.Descriptor(facets=list(spec.facets), handlers=sorted(spec.handlers))

    def init(self, config: bytes) -> None:
        try:
            cfg = json.loads(config.decode() or "{}") if config else {}
        except (UnicodeDecodeError, ValueError) as e:
            raise Err(types.Error(code=types.ErrorCode.BAD_REQUEST, message=f"config is not JSON: {e}"))
        try:
            WitWorld._obj = _spec().new_instance(cfg if isinstance(cfg, dict) else {})
        except ActorError as e:
            raise _err(e)

    def handle(self, msg_type: str, payload: bytes) -> bytes:
        try:
            return _spec().invoke(self._instance(), msg_type, payload)
        except ActorError as e:
            raise _err(e)

    def snapshot(self) -> bytes:
        # No error result in the WIT: a state that cannot be saved is a bug, so it traps.
        return _spec().snapshot(self._instance())

    def restore(self, state: bytes) -> None:
        try:
            _spec().restore(self._instance(), state)
        except ActorError as e:
            raise _err(e)
