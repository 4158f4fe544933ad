// Adapts a WASI preview1 *core* module that implements the canonical ABI of the world
// plexspaces:actor/actor (the Go guests: sdk/go-adapter/README.md) into a component: embeds
// wit/actor.wit (wasm-tools component embed) and wraps it with the stateless preview1
// adapter sdk/go-adapter/adapter.wat (wasm-tools component new), through jco's bundled
// wasm-tools from the TypeScript SDK's locked npm packages (sdk/typescript/package-lock.json;
// run `npm ci` there first). Offline.
//
// Usage: node scripts/componentize-core.mjs CORE.wasm -o OUT.wasm
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const modules = join(root, "sdk", "typescript", "node_modules", "@bytecodealliance");
const args = process.argv.slice(2);
const o = args.indexOf("-o");
if (args.length !== 3 || o < 0 || o === 2) {
  console.error("usage: node scripts/componentize-core.mjs CORE.wasm -o OUT.wasm");
  process.exit(2);
}
const out = args[o + 1];
const core = args[o === 0 ? 2 : 0];

let tools;
try {
  tools = await import(pathToFileURL(join(modules, "jco-transpile", "dist", "wasm-tools.js")).href);
} catch (e) {
  console.error(`componentize-core: jco is not installed (cd sdk/typescript && npm ci): ${e.message}`);
  process.exit(1);
}
const witSource = await readFile(join(root, "wit", "actor.wit"), "utf8");
const embedded = await tools.componentEmbed({
  binary: await readFile(core),
  witSource,
  world: "actor",
});
const adapterDir = join(root, "sdk", "go-adapter");
const adapter = await tools.componentEmbed({
  binary: await tools.parse(await readFile(join(adapterDir, "adapter.wat"), "utf8")),
  witSource: await readFile(join(adapterDir, "adapter.wit"), "utf8"),
  world: "adapter",
});
const component = await tools.componentNew(embedded, [["wasi_snapshot_preview1", adapter]]);
await writeFile(out, component);
