// Runs a guest component's exports without a node: jco transpiles the component to JS and a
// stand-in host provides the plexspaces:actor imports (WASI from preview2-shim). Checks the
// guest side of the contract (describe, init, handle's typed errors, snapshot/restore) in CI
// even where no node is at hand; the real checks through a node are test_examples.py.
//
//   node --experimental-wasm-extended-const guest_check.mjs GUEST.wasm KEY CALLS_JSON
//
// CALLS_JSON: [[msg_type, payload], ...] plus the pseudo calls ["@snapshot"], ["@init"],
// ["@restore"] (the last snapshot). Prints one JSON line per call: {"ok": reply} or
// {"err": {"code", "message"}}.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const sdk = resolve(dirname(fileURLToPath(import.meta.url)), "../../sdk/typescript");
const [wasm, key, callsJson] = process.argv.slice(2);
const out = mkdtempSync(join(tmpdir(), "guest-check-"));
try {
  execFileSync(join(sdk, "node_modules/.bin/jco"), ["transpile", wasm, "-o", out, "--name", "guest", "--instantiation", "async", "-q"]);
  const shim = await import(pathToFileURL(join(sdk, "node_modules/@bytecodealliance/preview2-shim/dist/nodejs/index.js")));
  const js = readFileSync(join(out, "guest.js"), "utf8");
  const wasi = { cli: shim.cli, clocks: shim.clocks, filesystem: shim.filesystem, io: shim.io, random: shim.random, sockets: shim.sockets, http: shim.http };
  const denied = () => {
    const e = new Error("no node in this check");
    e.payload = { code: "unavailable", message: "no node in this check" };
    throw e;
  };
  const kv = new Map();
  const host = {
    log: () => {},
    selfAddress: () => ({ actorType: "guest", key }),
    tell: denied, ask: denied, spawn: denied,
    get: (k) => kv.get(k), put: (k, v) => { kv.set(k, v); }, delete: (k) => kv.delete(k), listKeys: () => [...kv.keys()],
    isDurable: () => false, isReplaying: () => false, nowMs: () => 1700000000000n, randomU64: () => 4n, remember: (_n, v) => v,
    write: denied, read: denied, take: denied, count: denied,
    sendAfter: denied, sendInterval: denied, cancel: () => false,
    join: denied, leave: () => false, members: () => [], broadcast: denied,
  };
  const imports = {};
  for (const m of js.matchAll(/imports\['((wasi):([a-z-]+)\/([a-z-]+)(?:@[0-9.]+)?|plexspaces:actor\/[a-z-]+(?:@[0-9.]+)?)'\]/g)) {
    imports[m[1]] = m[2] ? wasi[m[3]][m[4].replace(/-([a-z])/g, (_, c) => c.toUpperCase())] : host;
  }
  const mod = await import(pathToFileURL(join(out, "guest.js")));
  const g = await mod.instantiate(async (p) => WebAssembly.compile(await readFile(join(out, p))), imports);
  const enc = (o) => new TextEncoder().encode(JSON.stringify(o));
  const dec = (b) => JSON.parse(new TextDecoder().decode(b));
  console.log(JSON.stringify({ describe: g.describe() }));
  g.init(enc({}));
  let snap;
  for (const [t, p] of JSON.parse(callsJson)) {
    try {
      if (t === "@snapshot") { snap = g.snapshot(); console.log(JSON.stringify({ ok: dec(snap) })); }
      else if (t === "@init") { g.init(enc({})); console.log(JSON.stringify({ ok: null })); }
      else if (t === "@restore") { g.restore(snap); console.log(JSON.stringify({ ok: null })); }
      else console.log(JSON.stringify({ ok: dec(g.handle(t, enc(p))) }));
    } catch (e) {
      console.log(JSON.stringify(e.payload ? { err: e.payload } : { trap: String(e) }));
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
