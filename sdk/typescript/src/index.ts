// PlexSpaces actors in TypeScript, built into WebAssembly components with `plexspaces-ts build`.
//
//   import { actor } from "@plexspaces/sdk";
//   export default actor({
//     state: () => ({ count: 0 }),
//     handlers: {
//       increment(s, { amount = 1 }: { amount?: number }) { s.count += amount; return { count: s.count }; },
//       get(s) { return { count: s.count }; },
//     },
//   });
//
// No decorators: an actor is a definition object. The state is one JSON value (what durable
// actors snapshot); a handler gets the state and the message's JSON payload and returns the
// JSON reply. Throw `ActorError` for a typed error reply; any other exception becomes an
// `internal` error reply (the state keeps whatever the handler changed before it threw).

export type ErrorCode =
  | "bad-request"
  | "not-found"
  | "denied"
  | "timeout"
  | "unavailable"
  | "unsupported"
  | "conflict"
  | "internal";

const ERROR_CODES: readonly ErrorCode[] = [
  "bad-request",
  "not-found",
  "denied",
  "timeout",
  "unavailable",
  "unsupported",
  "conflict",
  "internal",
];

/** A typed error reply; `payload` is what the component model returns as the `error` record. */
export class ActorError extends Error {
  readonly code: ErrorCode;
  readonly payload: { code: ErrorCode; message: string };
  constructor(code: ErrorCode, message: string) {
    super(`${code}: ${message}`);
    if (!ERROR_CODES.includes(code)) throw new TypeError(`unknown error code ${code}`);
    this.code = code;
    this.payload = { code, message };
  }
}

export type Handler<S> = (state: S, payload: any) => unknown;

export interface ActorDefinition<S> {
  /** The initial state of each activation. */
  state: () => S;
  /** Message type -> handler. */
  handlers: Record<string, Handler<S>>;
  /** `["durability"]` journals every message and snapshots the state. */
  facets?: string[];
  /** Called once per activation with the type's JSON config. */
  init?: (state: S, config: any) => void;
}

export interface Actor<S> extends ActorDefinition<S> {
  readonly __plexspaces: true;
}

const KNOWN_FACETS = ["durability"];

/** Declares an actor; `plexspaces-ts build` turns the module's default export into a component. */
export function actor<S>(def: ActorDefinition<S>): Actor<S> {
  if (typeof def.state !== "function") throw new TypeError("actor(): state must be a function returning the initial state");
  if (!def.handlers || Object.keys(def.handlers).length === 0) throw new TypeError("actor(): no handlers");
  for (const f of def.facets ?? []) {
    if (!KNOWN_FACETS.includes(f)) throw new TypeError(`actor(): unknown facet ${f}`);
  }
  return { ...def, __plexspaces: true };
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeJson(value: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(value === undefined ? null : value));
}

export function decodeJson(bytes: Uint8Array): any {
  const text = bytes.length === 0 ? "" : decoder.decode(bytes);
  return text.trim() === "" ? null : JSON.parse(text);
}

/** One activation of an actor: what the component's exports call (see `guest.ts`). */
export class Activation<S> {
  state: S;
  constructor(readonly def: Actor<S>) {
    this.state = def.state();
  }

  describe(): { facets: string[]; handlers: string[] } {
    return { facets: [...(this.def.facets ?? [])], handlers: Object.keys(this.def.handlers).sort() };
  }

  init(config: Uint8Array): void {
    let cfg: any;
    try {
      cfg = decodeJson(config) ?? {};
    } catch (e) {
      throw new ActorError("bad-request", `config is not JSON: ${e}`);
    }
    this.state = this.def.state();
    this.def.init?.(this.state, cfg);
  }

  handle(msgType: string, payload: Uint8Array): Uint8Array {
    const h = Object.prototype.hasOwnProperty.call(this.def.handlers, msgType) ? this.def.handlers[msgType] : undefined;
    if (!h) {
      throw new ActorError("not-found", `no handler for ${JSON.stringify(msgType)} (handlers: ${this.describe().handlers.join(", ")})`);
    }
    let arg: any;
    try {
      arg = decodeJson(payload);
    } catch (e) {
      throw new ActorError("bad-request", `payload is not JSON: ${e}`);
    }
    let reply: unknown;
    try {
      reply = h(this.state, arg ?? {});
    } catch (e) {
      if (e instanceof ActorError) throw e;
      throw new ActorError("internal", `${msgType}: ${e}`);
    }
    return encodeJson(reply);
  }

  snapshot(): Uint8Array {
    return encodeJson(this.state);
  }

  restore(data: Uint8Array): void {
    try {
      this.state = decodeJson(data);
    } catch (e) {
      throw new ActorError("bad-request", `snapshot is not JSON: ${e}`);
    }
  }
}
