#!/usr/bin/env node
// plexspaces-ts build actor.ts -o actor.wasm
//
// Bundles the actor module (its default export is `actor({...})`) with the SDK into one ES
// module (esbuild), then runs componentize-js on it against the WIT world
// `plexspaces:actor/actor` shipped in this package. The WASI features an actor does not use
// (`http`, `fetch-event`) are disabled, so the component imports only what the node provides.
// Works offline once `npm install` has run.
import { build } from "esbuild";
import { componentize } from "@bytecodealliance/componentize-js";
import { mkdtempSync, rmSync, writeFileSync, existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const SDK = resolve(dirname(fileURLToPath(import.meta.url)), "..");

function usage(msg) {
  if (msg) console.error(`plexspaces-ts: ${msg}`);
  console.error("usage: plexspaces-ts build ACTOR.ts [-o OUT.wasm] [--wit DIR] [-q]");
  process.exit(2);
}

const args = process.argv.slice(2);
if (args[0] !== "build") usage(args[0] ? `unknown command ${args[0]}` : undefined);
let source;
let out;
let wit = join(SDK, "wit");
let quiet = false;
for (let i = 1; i < args.length; i++) {
  const a = args[i];
  if (a === "-o" || a === "--output") out = args[++i];
  else if (a === "--wit") wit = args[++i];
  else if (a === "-q" || a === "--quiet") quiet = true;
  else if (!source) source = a;
  else usage(`unexpected argument ${a}`);
}
if (!source) usage("no actor module given");
source = resolve(source);
if (!existsSync(source)) usage(`${source}: no such file`);
out = resolve(out ?? source.replace(/\.[cm]?[jt]s$/, "") + ".wasm");

const work = mkdtempSync(join(tmpdir(), "plexspaces-ts-"));
try {
  const entry = join(work, "entry.ts");
  writeFileSync(
    entry,
    [
      `import def from ${JSON.stringify(source)};`,
      `import { exportsFor } from ${JSON.stringify(join(SDK, "src", "guest.ts"))};`,
      "const g = exportsFor(def);",
      "export function describe() { return g.describe(); }",
      "export function init(config) { return g.init(config); }",
      "export function handle(msgType, payload) { return g.handle(msgType, payload); }",
      "export function snapshot() { return g.snapshot(); }",
      "export function restore(state) { return g.restore(state); }",
      "",
    ].join("\n"),
  );
  const bundle = join(work, "bundle.js");
  await build({
    entryPoints: [entry],
    bundle: true,
    format: "esm",
    platform: "neutral",
    target: "es2022",
    outfile: bundle,
    alias: { "@plexspaces/sdk": join(SDK, "src", "index.ts"), "@plexspaces/sdk/host": join(SDK, "src", "host.ts") },
    external: ["plexspaces:*", "wasi:*"],
    logLevel: quiet ? "error" : "warning",
  });
  const { component } = await componentize({
    sourcePath: bundle,
    witPath: wit,
    worldName: "actor",
    disableFeatures: ["http", "fetch-event"],
  });
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, component);
  if (!quiet) console.log(`built ${out} (${component.length} bytes)`);
} catch (e) {
  console.error(`plexspaces-ts: ${e?.message ?? e}`);
  process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
