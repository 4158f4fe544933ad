// Orleans-style batch predictor: a virtual actor per model, addressed by its key
// (`?key=MODEL`). The first message to a key activates it; each activation holds its own
// model and answers batches of predictions.
// plexspaces-ts build batch_predictor.ts -o batch_predictor.wasm
import { actor, ActorError } from "@plexspaces/sdk";
import { log, selfAddress } from "@plexspaces/sdk/host";

interface Model {
  weights: number[];
  bias: number;
}

interface State {
  model: Model | null;
  batches: number;
  predictions: number;
}

export default actor<State>({
  state: () => ({ model: null, batches: 0, predictions: 0 }),
  handlers: {
    load(s, { weights, bias = 0 }: { weights?: number[]; bias?: number }) {
      if (!Array.isArray(weights) || weights.length === 0 || !weights.every((w) => typeof w === "number")) {
        throw new ActorError("bad-request", "weights must be a non-empty array of numbers");
      }
      s.model = { weights, bias };
      log(`model ${selfAddress().key} loaded with ${weights.length} features`);
      return { model: selfAddress().key, features: weights.length };
    },
    predict(s, { inputs }: { inputs?: number[][] }) {
      const m = s.model;
      if (!m) throw new ActorError("not-found", `model ${selfAddress().key} is not loaded`);
      if (!Array.isArray(inputs)) throw new ActorError("bad-request", "inputs must be an array of feature rows");
      const predictions = inputs.map((row, i) => {
        if (!Array.isArray(row) || row.length !== m.weights.length) {
          throw new ActorError("bad-request", `row ${i} has ${row?.length} features, the model ${m.weights.length}`);
        }
        return row.reduce((acc, x, j) => acc + x * m.weights[j], m.bias);
      });
      s.batches += 1;
      s.predictions += predictions.length;
      return { model: selfAddress().key, predictions, batch: s.batches };
    },
    stats(s) {
      return { model: selfAddress().key, loaded: s.model !== null, batches: s.batches, predictions: s.predictions };
    },
  },
});
