// The same calculator in plain JavaScript.
// plexspaces-ts build calculator.js -o calculator-js.wasm
import { actor, ActorError } from "@plexspaces/sdk";

function done(s, op, a, b, result) {
  s.operations += 1;
  return { op, a, b, result, operations: s.operations };
}

function operands({ a, b }) {
  if (typeof a !== "number" || typeof b !== "number") {
    throw new ActorError("bad-request", "a and b must be numbers");
  }
  return [a, b];
}

export default actor({
  state: () => ({ operations: 0 }),
  handlers: {
    add: (s, p) => { const [a, b] = operands(p); return done(s, "add", a, b, a + b); },
    subtract: (s, p) => { const [a, b] = operands(p); return done(s, "subtract", a, b, a - b); },
    multiply: (s, p) => { const [a, b] = operands(p); return done(s, "multiply", a, b, a * b); },
    divide: (s, p) => {
      const [a, b] = operands(p);
      if (b === 0) throw new ActorError("bad-request", "division by zero");
      return done(s, "divide", a, b, a / b);
    },
    stats: (s) => ({ operations: s.operations, language: "javascript" }),
  },
});
