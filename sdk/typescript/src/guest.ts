// The component's exports for one actor definition (the world `plexspaces:actor/actor`).
// `plexspaces-ts build` generates an entry module that re-exports these for the user's
// default export. One activation per component instance; calls come one at a time.
import { Activation, type Actor } from "./index.ts";

export function exportsFor<S>(def: Actor<S>) {
  if (!def || (def as any).__plexspaces !== true) {
    throw new TypeError("the actor module's default export must be actor({...}) from @plexspaces/sdk");
  }
  let current = new Activation(def);
  return {
    describe: () => current.describe(),
    init: (config: Uint8Array) => {
      current = new Activation(def);
      current.init(config);
    },
    handle: (msgType: string, payload: Uint8Array) => current.handle(msgType, payload),
    snapshot: () => current.snapshot(),
    restore: (state: Uint8Array) => current.restore(state),
  };
}
