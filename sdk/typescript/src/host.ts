// The node's imports, as plain TypeScript: JSON in and out, errors as `ActorError`.
//
// Usable only inside a component built by `plexspaces-ts build` (the `plexspaces:actor/*`
// modules are the component's imports). Every call acts in the calling actor's own tenant and
// namespace.

// @ts-ignore: provided by the component model at build time
import * as logging from "plexspaces:actor/logging@0.1.0";
// @ts-ignore
import * as messaging from "plexspaces:actor/messaging@0.1.0";
// @ts-ignore
import * as keyValue from "plexspaces:actor/key-value@0.1.0";
// @ts-ignore
import * as tupleSpace from "plexspaces:actor/tuple-space@0.1.0";
// @ts-ignore
import * as durable from "plexspaces:actor/durability@0.1.0";
// @ts-ignore
import * as timerImports from "plexspaces:actor/timers@0.1.0";
// @ts-ignore
import * as processGroups from "plexspaces:actor/process-groups@0.1.0";

import { ActorError, decodeJson, encodeJson, type ErrorCode } from "./index.ts";

function call<T>(f: () => T): T {
  try {
    return f();
  } catch (e: any) {
    const p = e?.payload;
    if (p && typeof p.code === "string") throw new ActorError(p.code as ErrorCode, String(p.message));
    throw e;
  }
}

export type Level = "trace" | "debug" | "info" | "warn" | "error";

export function log(message: string, level: Level = "info"): void {
  logging.log(level, String(message));
}

export function selfAddress(): { actorType: string; key: string } {
  return messaging.selfAddress();
}

export function tell(actorType: string, msgType: string, payload: unknown = null, key = ""): void {
  call(() => messaging.tell({ actorType, key }, msgType, encodeJson(payload)));
}

export function ask(actorType: string, msgType: string, payload: unknown = null, key = "", timeoutMs = 0): any {
  return decodeJson(call(() => messaging.ask({ actorType, key }, msgType, encodeJson(payload), timeoutMs)));
}

export function spawn(actorType: string, key = ""): string {
  return call(() => messaging.spawn({ actorType, key }));
}

export const kv = {
  get: (key: string): Uint8Array | undefined => call(() => keyValue.get(key)),
  put: (key: string, value: Uint8Array | string): void =>
    call(() => keyValue.put(key, typeof value === "string" ? new TextEncoder().encode(value) : value)),
  delete: (key: string): boolean => call(() => keyValue.delete(key)),
  listKeys: (prefix = "", limit = 0): string[] => call(() => keyValue.listKeys(prefix, limit)),
};

export const tuples = {
  write: (space: string, fields: unknown[]): void => call(() => tupleSpace.write(space, JSON.stringify(fields))),
  read: (space: string, template: unknown[], timeoutMs = 0): unknown[] | undefined => {
    const found = call(() => tupleSpace.read(space, JSON.stringify(template), timeoutMs));
    return found === undefined ? undefined : JSON.parse(found);
  },
  take: (space: string, template: unknown[], timeoutMs = 0): unknown[] | undefined => {
    const found = call(() => tupleSpace.take(space, JSON.stringify(template), timeoutMs));
    return found === undefined ? undefined : JSON.parse(found);
  },
  count: (space: string, template: unknown[]): bigint => call(() => tupleSpace.count(space, JSON.stringify(template))),
};

export const durability = {
  isDurable: (): boolean => durable.isDurable(),
  isReplaying: (): boolean => durable.isReplaying(),
  nowMs: (): bigint => call(() => durable.nowMs()),
  randomU64: (): bigint => call(() => durable.randomU64()),
  remember: (name: string, value: unknown): any => decodeJson(call(() => durable.remember(name, encodeJson(value)))),
};

export const timers = {
  sendAfter: (delayMs: number, msgType: string, payload: unknown = null): bigint =>
    call(() => timerImports.sendAfter(BigInt(delayMs), msgType, encodeJson(payload))),
  sendInterval: (periodMs: number, msgType: string, payload: unknown = null): bigint =>
    call(() => timerImports.sendInterval(BigInt(periodMs), msgType, encodeJson(payload))),
  cancel: (timer: bigint): boolean => timerImports.cancel(timer),
};

export const groups = {
  join: (group: string): void => call(() => processGroups.join(group)),
  leave: (group: string): boolean => processGroups.leave(group),
  members: (group: string): string[] => processGroups.members(group),
  broadcast: (group: string, msgType: string, payload: unknown = null): number =>
    call(() => processGroups.broadcast(group, msgType, encodeJson(payload))),
};
