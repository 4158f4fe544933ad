# A durable bank account in Python: every message is journaled before it is handled, and the
# state is snapshotted, so the balance survives kill -9 of the node.
# plexspaces-py build bank_account.py -o bank_account.wasm
from plexspaces import ActorError, actor, handler, host, state


@actor(facets=["durability"])
class BankAccount:
    balance: int = state(default=0)
    transactions: list = state(default=[])

    def _record(self, kind: str, amount: int) -> dict:
        # Journaled time: the same timestamp again when the message is replayed.
        at = host.durability.now_ms()
        self.transactions.append({"kind": kind, "amount": amount, "at_ms": at})
        return {"balance": self.balance, "transactions": len(self.transactions)}

    @handler("deposit")
    def deposit(self, amount: int) -> dict:
        if not isinstance(amount, int) or amount <= 0:
            raise ActorError("bad-request", "amount must be a positive integer (cents)")
        self.balance += amount
        return self._record("deposit", amount)

    @handler("withdraw")
    def withdraw(self, amount: int) -> dict:
        if not isinstance(amount, int) or amount <= 0:
            raise ActorError("bad-request", "amount must be a positive integer (cents)")
        if amount > self.balance:
            raise ActorError("conflict", f"insufficient funds: balance {self.balance}, asked {amount}")
        self.balance -= amount
        return self._record("withdraw", amount)

    @handler("balance")
    def get_balance(self) -> dict:
        return {"balance": self.balance, "transactions": len(self.transactions)}

    @handler("statement")
    def statement(self) -> dict:
        return {"balance": self.balance, "transactions": self.transactions}
