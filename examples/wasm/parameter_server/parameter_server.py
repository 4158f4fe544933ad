# Ray-style parameter server (the server side): workers push gradients, the server averages
# one gradient from each worker per round and applies it (synchronous SGD).
# plexspaces-py build parameter_server.py -o parameter_server.wasm
from plexspaces import ActorError, actor, handler, state


@actor
class ParameterServer:
    weights: list = state(default=[])
    version: int = state(default=0)
    workers: int = state(default=1)
    learning_rate: float = state(default=0.1)
    pending: dict = state(default={})

    @handler("configure")
    def configure(self, dim: int, workers: int, learning_rate: float = 0.1) -> dict:
        if dim <= 0 or workers <= 0 or learning_rate <= 0:
            raise ActorError("bad-request", "dim, workers and learning_rate must be positive")
        self.weights = [0.0] * dim
        self.version = 0
        self.workers = workers
        self.learning_rate = learning_rate
        self.pending = {}
        return self.pull()

    @handler("pull")
    def pull(self) -> dict:
        return {"weights": self.weights, "version": self.version}

    @handler("push")
    def push(self, worker: str, version: int, gradient: list) -> dict:
        if len(gradient) != len(self.weights):
            raise ActorError("bad-request", f"gradient has {len(gradient)} values, weights {len(self.weights)}")
        if version != self.version:
            raise ActorError("conflict", f"gradient for version {version}, server is at {self.version}")
        self.pending[worker] = gradient
        if len(self.pending) == self.workers:
            n = float(self.workers)
            for i in range(len(self.weights)):
                avg = sum(g[i] for g in self.pending.values()) / n
                self.weights[i] -= self.learning_rate * avg
            self.pending = {}
            self.version += 1
        return {"version": self.version, "waiting_for": self.workers - len(self.pending)}
