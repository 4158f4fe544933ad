# Ray-style parameter server (a worker): holds a shard of the training data, pulls the current
# weights from the server actor, computes the gradient of the mean squared error of a linear
# model y = w0 + w1*x on its shard, and pushes it. One activation per worker key.
# plexspaces-py build ps_worker.py -o ps_worker.wasm
from plexspaces import ActorError, actor, handler, host, state

SERVER = "parameter-server"


@actor
class Worker:
    xs: list = state(default=[])
    ys: list = state(default=[])
    steps: int = state(default=0)

    @handler("load")
    def load(self, xs: list, ys: list) -> dict:
        if not xs or len(xs) != len(ys):
            raise ActorError("bad-request", "xs and ys must be non-empty and of the same length")
        self.xs, self.ys = xs, ys
        return {"samples": len(xs)}

    @handler("step")
    def step(self) -> dict:
        if not self.xs:
            raise ActorError("not-found", "no data loaded")
        me = host.self_address().key
        current = host.ask(SERVER, "pull")
        w = current["weights"]
        n = float(len(self.xs))
        g0 = g1 = loss = 0.0
        for x, y in zip(self.xs, self.ys):
            err = w[0] + w[1] * x - y
            loss += err * err / n
            g0 += 2 * err / n
            g1 += 2 * err * x / n
        pushed = host.ask(SERVER, "push", {"worker": me, "version": current["version"], "gradient": [g0, g1]})
        self.steps += 1
        return {"worker": me, "loss": loss, "version": pushed["version"], "steps": self.steps}
