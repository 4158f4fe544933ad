"""The decorator layer: ``@actor``, ``state(...)``, ``@handler(...)`` and the dispatch rules.

Pure Python with no WebAssembly dependency, so it runs (and is tested) on CPython as well as
inside the component. What it guarantees:

* A message's JSON payload object becomes the handler's keyword arguments; a missing required
  argument or an unknown one is a ``bad-request`` error, never a crash.
* ``null`` or an empty payload calls the handler without arguments; any other JSON value
  (array, number, string) is passed as the single positional argument.
* The reply is the handler's return value as JSON (``None`` is ``null``).
* The actor's state is exactly its ``state(...)`` fields: ``snapshot`` writes them as one JSON
  object and ``restore`` reads them back (fields missing from a snapshot keep their default).
"""

from __future__ import annotations

import copy
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

#: The error codes of the WIT ``error-code`` enum, by their WIT names.
ERROR_CODES = (
    "bad-request",
    "not-found",
    "denied",
    "timeout",
    "unavailable",
    "unsupported",
    "conflict",
    "internal",
)

#: Facets a guest may ask for (the WIT ``descriptor.facets``); the node checks them again.
KNOWN_FACETS = ("durability",)

_HANDLER_ATTR = "__plexspaces_handler__"
_MISSING = object()


class ActorError(Exception):
    """An error a handler returns to its caller: ``code`` is a WIT ``error-code`` name.

    Raised by a handler it becomes the handler's typed error reply (the node maps
    ``bad-request`` to HTTP 400, ``not-found`` to 404 and so on); raised by a host import
    wrapper it carries the node's error, so an uncaught one is passed on to the caller as is.
    """

    def __init__(self, code: str, message: str):
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}; one of {', '.join(ERROR_CODES)}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _State:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None):
        self.default = default
        self.default_factory = default_factory

    def initial(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        return copy.deepcopy(self.default)


def state(default: Any = None, *, default_factory: Callable[[], Any] | None = None) -> Any:
    """Declares a state field: ``count: int = state(default=0)``.

    Each activation starts with a deep copy of ``default`` (or ``default_factory()``). Values
    must be JSON-serializable: they are what ``snapshot`` saves for durable actors.
    """
    if default_factory is not None and default is not None:
        raise TypeError("state() takes default or default_factory, not both")
    return _State(default, default_factory)


def handler(name: str | Callable | None = None) -> Any:
    """Marks a method as the handler of message type ``name`` (default: the method's name)."""
    if callable(name):
        setattr(name, _HANDLER_ATTR, name.__name__)
        return name

    def wrap(fn: Callable) -> Callable:
        msg_type = name if name is not None else fn.__name__
        if not isinstance(msg_type, str) or not msg_type:
            raise TypeError("@handler needs a non-empty message type name")
        setattr(fn, _HANDLER_ATTR, msg_type)
        return fn

    return wrap


@dataclass
class ActorSpec:
    """What ``@actor`` recorded about a class."""

    cls: type
    facets: list[str]
    fields: dict[str, _State] = field(default_factory=dict)
    handlers: dict[str, Callable] = field(default_factory=dict)

    # -- lifecycle -----------------------------------------------------------------------

    def new_instance(self, config: dict | None = None) -> Any:
        """One activation: state fields at their defaults, then the class's ``on_init``."""
        obj = self.cls.__new__(self.cls)
        for name, st in self.fields.items():
            setattr(obj, name, st.initial())
        if self.cls.__init__ is not object.__init__:
            obj.__init__()
        on_init = getattr(obj, "on_init", None)
        if callable(on_init):
            on_init(config or {})
        return obj

    def snapshot(self, obj: Any) -> bytes:
        data = {name: getattr(obj, name) for name in self.fields}
        try:
            return json.dumps(data, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:
            raise ActorError("internal", f"state is not JSON-serializable: {e}") from None

    def restore(self, obj: Any, data: bytes) -> None:
        try:
            saved = json.loads(data.decode() or "{}")
        except (UnicodeDecodeError, ValueError) as e:
            raise ActorError("bad-request", f"snapshot is not JSON: {e}") from None
        if not isinstance(saved, dict):
            raise ActorError("bad-request", "snapshot is not a JSON object")
        for name, st in self.fields.items():
            setattr(obj, name, saved[name] if name in saved else st.initial())

    # -- messages ------------------------------------------------------------------------

    def invoke(self, obj: Any, msg_type: str, payload: bytes) -> bytes:
        """Runs one message; returns the JSON reply or raises ``ActorError``."""
        fn = self.handlers.get(msg_type)
        if fn is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            raise ActorError("not-found", f"no handler for {msg_type!r} (handlers: {known})")
        try:
            text = payload.decode() if payload else ""
            arg = json.loads(text) if text.strip() else None
        except (UnicodeDecodeError, ValueError) as e:
            raise ActorError("bad-request", f"payload is not JSON: {e}") from None
        if isinstance(arg, dict):
            args, kwargs = (obj,), arg
        elif arg is None:
            args, kwargs = (obj,), {}
        else:
            args, kwargs = (obj, arg), {}
        try:
            inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise ActorError("bad-request", f"{msg_type}: {e}") from None
        try:
            result = fn(*args, **kwargs)
        except ActorError:
            raise
        except Exception as e:  # the caller gets a typed error; the state is left as it is
            raise ActorError("internal", f"{msg_type}: {type(e).__name__}: {e}") from None
        try:
            return json.dumps(result, separators=(",", ":")).encode()
        except (TypeError, ValueError) as e:
            raise ActorError("internal", f"{msg_type}: reply is not JSON-serializable: {e}") from None


_REGISTRY: list[ActorSpec] = []


def registered_actors() -> list[ActorSpec]:
    """The classes decorated with ``@actor`` so far, in order."""
    return list(_REGISTRY)


def actor(cls: type | None = None, *, facets: list[str] | tuple[str, ...] = ()) -> Any:
    """Declares an actor class: ``@actor`` or ``@actor(facets=["durability"])``."""
    for f in facets:
        if f not in KNOWN_FACETS:
            raise ValueError(f"unknown facet {f!r}; one of {', '.join(KNOWN_FACETS)}")

    def wrap(c: type) -> type:
        if not isinstance(c, type):
            raise TypeError("@actor decorates a class")
        fields: dict[str, _State] = {}
        handlers: dict[str, Callable] = {}
        for klass in reversed(c.__mro__):
            for name, value in vars(klass).items():
                if isinstance(value, _State):
                    fields[name] = value
                msg_type = getattr(value, _HANDLER_ATTR, None)
                if msg_type is not None:
                    handlers[msg_type] = value
        if not handlers:
            raise TypeError(f"@actor class {c.__name__} has no @handler methods")
        spec = ActorSpec(cls=c, facets=list(facets), fields=fields, handlers=handlers)
        c.__plexspaces__ = spec
        _REGISTRY.append(spec)
        return c

    return wrap(cls) if cls is not None else wrap
