# A stateless-style calculator actor in Python (it only counts what it computed).
# plexspaces-py build calculator.py -o calculator.wasm
from plexspaces import ActorError, actor, handler, state


@actor
class Calculator:
    operations: int = state(default=0)

    def _done(self, op: str, a: float, b: float, result: float) -> dict:
        self.operations += 1
        return {"op": op, "a": a, "b": b, "result": result, "operations": self.operations}

    @handler("add")
    def add(self, a: float, b: float) -> dict:
        return self._done("add", a, b, a + b)

    @handler("subtract")
    def subtract(self, a: float, b: float) -> dict:
        return self._done("subtract", a, b, a - b)

    @handler("multiply")
    def multiply(self, a: float, b: float) -> dict:
        return self._done("multiply", a, b, a * b)

    @handler("divide")
    def divide(self, a: float, b: float) -> dict:
        if b == 0:
            raise ActorError("bad-request", "division by zero")
        return self._done("divide", a, b, a / b)

    @handler("stats")
    def stats(self) -> dict:
        return {"operations": self.operations, "language": "python"}
