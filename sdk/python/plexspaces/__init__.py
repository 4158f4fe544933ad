"""PlexSpaces actors in Python, built into WebAssembly components.

    from plexspaces import actor, state, handler

    @actor
    class CounterActor:
        count: int = state(default=0)

        @handler("increment")
        def increment(self, amount: int = 1) -> dict:
            self.count += amount
            return {"count": self.count}

Build with ``plexspaces-py build counter_actor.py -o counter.wasm`` and deploy the component
with ``POST /api/v1/deploy``. The decorators only record what the class declares; the guest
glue (``plexspaces._guest``) turns the node's calls (``init``, ``handle``, ``snapshot``,
``restore``) into calls on one instance of the class. ``plexspaces.host`` wraps the node's
imports (logging, messaging, key-value, tuple spaces, durability, timers, process groups).
"""

from ._actor import ActorError, ActorSpec, actor, handler, registered_actors, state

__all__ = [
    "ActorError",
    "ActorSpec",
    "actor",
    "handler",
    "registered_actors",
    "state",
]
__version__ = "0.1.0"
