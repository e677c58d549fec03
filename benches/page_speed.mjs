// Page size and speed in headless Chromium (Debian's, via playwright-core): download sizes (raw and
// gzip), time from page load to the model being ready, time from dropping a file to all its cells
// predicted, and cells/s, for the shipped 1,000-cell sample and a 10,000-cell SIMULATED file.
// Run after scripts/build-web.sh:  node benches/page_speed.mjs   (uses tests/browser/node_modules)
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, statSync, existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const require = createRequire(path.join(root, "tests/browser/package.json"));
const { chromium } = require("playwright-core");
const www = path.join(root, "www");
const bin = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "release", "mamba-perturb");
const big = path.join(www, "sample", "bench_10k.csv");
if (!existsSync(big)) execFileSync(bin, ["simulate", "--out", big, "--cells", "10000", "--genes", "1000", "--seed", "0"], { stdio: "ignore" });

console.log("download            raw KB   gzip KB");
let total = 0;
for (const f of ["pkg/mamba_perturb_bg.wasm", "pkg/mamba_perturb.js", "app.js", "worker.js", "index.html", "style.css",
  "models/default/model.bpk", "models/default/card.json", "cytoband_GRCh38.tsv"]) {
  const bytes = readFileSync(path.join(www, f));
  const gz = gzipSync(bytes, { level: 9 }).length;
  total += gz;
  console.log(`${f.padEnd(28)} ${(bytes.length / 1024).toFixed(0).padStart(7)} ${(gz / 1024).toFixed(0).padStart(8)}`);
}
console.log(`${"total".padEnd(28)} ${"".padStart(7)} ${(total / 1024).toFixed(0).padStart(8)}  (target: under 3 MB)`);

const port = 19000 + Math.floor(Math.random() * 500);
const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", www], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 800));
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
try {
  const page = await browser.newPage();
  const t0 = Date.now();
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.waitForSelector("body[data-model]", { timeout: 120_000 });
  console.log(`\nmodel ready ${Date.now() - t0} ms after navigation (CPU backend, WebAssembly)`);
  for (const [name, file, n] of [["sample (1,000 cells)", "sample/sample.csv", 1000], ["10,000 cells", "sample/bench_10k.csv", 10000]]) {
    await page.evaluate(() => { delete document.body.dataset.predicted; });
    await page.setInputFiles("#file", path.join(www, file)); // the same path as a drop: analyse(file)
    await page.waitForSelector(`body[data-predicted='${n}']`, { timeout: 600_000 });
    const ms = await page.evaluate(() => Number(document.body.dataset.firstPredictionMs));
    console.log(`${name.padEnd(22)} all cells predicted ${(ms / 1000).toFixed(2)} s after choosing the file: ${(n / (ms / 1000)).toFixed(0)} cells/s (reading + normalising + predicting)`);
  }
  console.log(`(${statSync(path.join(www, "sample/bench_10k.csv")).size >> 20} MB CSV; ${process.platform}, Chromium headless; WebGPU backend not built yet)`);
} finally {
  await browser.close();
  server.kill();
}
