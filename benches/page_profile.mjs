// Where the page's CPU time goes: the page's own WebAssembly (www/pkg) run in Node's V8 on one
// thread, predicting every cell of a SIMULATED file through the same `Session` calls as the page's
// worker, under V8's sampling profiler; prints cells/s beside the native CLI on one thread (same
// file and model) and the functions that take the most time. A quicker proxy for
// benches/page_speed.mjs (no browser, no worker pool), for finding hot spots before measuring there.
// Function names need an unstripped build:
//   CARGO_PROFILE_WEB_STRIP=false cargo build --profile web --target wasm32-unknown-unknown -p mamba-perturb
//   wasm-bindgen --target web --no-typescript --keep-debug --out-dir /tmp/pkg <target>/wasm32-unknown-unknown/web/mamba_perturb.wasm
// Run:  node benches/page_profile.mjs [--pkg DIR] [--cells N] [--top K]   (default: www/pkg, 10,000 cells)
import { readFileSync, openSync, readSync, fstatSync } from "node:fs";
import { Session as Inspector } from "node:inspector/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { root, cache, simulate, nativeCellsPerSecond } from "./bench_files.mjs";

const arg = (name, fallback) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : fallback; };
const pkg = path.resolve(arg("--pkg", path.join(root, "www/pkg")));
const cells = Number(arg("--cells", "10000"));
const top = Number(arg("--top", "25"));
// The default model's world (seed 0, 2,000 genes), cells it never saw.
const file = simulate(path.join(cache, `cells_${cells}_g2000_seed3.h5ad`), ["--cells", String(cells), "--genes", "2000", "--seed", "0", "--cell-seed", "3"]);

const { initSync, Session } = await import(pathToFileURL(path.join(pkg, "mamba_perturb.js")).href);
initSync({ module: readFileSync(path.join(pkg, "mamba_perturb_bg.wasm")) });
// The page reads a dropped File in slices with FileReaderSync; here the same calls read the disk.
const fd = openSync(file, "r");
globalThis.FileReaderSync = class {
  readAsArrayBuffer({ start, end }) { const b = Buffer.alloc(end - start); readSync(fd, b, 0, b.length, start); return b.buffer.slice(b.byteOffset, b.byteOffset + b.length); }
};
const dropped = { name: path.basename(file), size: fstatSync(fd).size, slice: (start, end) => ({ start, end }) };

const session = new Session();
const model = path.join(root, "models/default");
session.load_model(readFileSync(path.join(model, "card.json"), "utf8"), readFileSync(path.join(model, "model.bpk")));
const profiler = new Inspector();
profiler.connect();
await profiler.post("Profiler.enable");
await profiler.post("Profiler.start");
const t0 = performance.now();
session.open_file(dropped, undefined);
for (let start = 0; start < cells; start += 500) await session.predict_cells(start, Math.min(500, cells - start), 5);
const seconds = (performance.now() - t0) / 1000;
const { profile } = await profiler.post("Profiler.stop");

const native = nativeCellsPerSecond(file, cells, 1);
console.log(`SIMULATED ${cells} cells × 2,000 genes, default model, one thread (open + predict):`);
console.log(`  page's wasm in Node ${process.version}: ${(cells / seconds).toFixed(0)} cells/s (under the profiler)`);
console.log(`  native CLI (whole process):     ${native.toFixed(0)} cells/s; ratio ${(cells / seconds / native).toFixed(2)}`);

// Self time per function (samples × their intervals).
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map();
profile.samples.forEach((id, i) => {
  const f = byId.get(id).callFrame;
  const name = (f.functionName || `(${f.url.split("/").pop() || "program"})`).replace(/::h[0-9a-f]{16}$/, "");
  self.set(name, (self.get(name) || 0) + (profile.timeDeltas[i] || 0));
});
const total = [...self.values()].reduce((a, b) => a + b, 0);
console.log(`\nself time, top ${top}:`);
for (const [name, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${(100 * t / total).toFixed(1).padStart(6)} %  ${name.slice(0, 120)}`);
