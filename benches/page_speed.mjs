// Page size and speed in headless Chromium (Debian's, via playwright-core): download sizes (raw and
// gzip), time from navigation to the model being ready, time from choosing a file to its first
// predictions on screen and to all its cells predicted, and cells/s, for the shipped 1,000-cell
// SIMULATED sample and a 10,000-cell SIMULATED file, per backend: CPU (WebAssembly) and WebGPU.
// Without a GPU, WebGPU runs on Chromium's software adapter (SwiftShader), which the page's
// automatic choice refuses; it is measured here to show why.
// Run after scripts/build-web.sh:  node benches/page_speed.mjs [--no-webgpu-10k]
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, existsSync, readdirSync } from "node:fs";
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
if (!existsSync(big)) execFileSync(bin, ["simulate", "--out", big, "--cells", "10000", "--genes", "1000", "--seed", "0", "--cell-seed", "2"], { stdio: "ignore" });
const skipGpu10k = process.argv.includes("--no-webgpu-10k");

console.log("download (what a first visit fetches)   raw KB   gzip KB");
let total = 0;
const scripts = readdirSync(path.join(www, "js")).filter((f) => f.endsWith(".js")).map((f) => `js/${f}`);
for (const f of ["pkg/mamba_perturb_bg.wasm", "pkg/mamba_perturb.js", ...scripts, "index.html", "style.css",
  "models/default/model.bpk", "models/default/card.json", "cytoband_GRCh38.tsv"]) {
  const bytes = readFileSync(path.join(www, f));
  const gz = gzipSync(bytes, { level: 9 }).length;
  total += gz;
  console.log(`${f.padEnd(38)} ${(bytes.length / 1024).toFixed(0).padStart(7)} ${(gz / 1024).toFixed(0).padStart(9)}`);
}
console.log(`${"total".padEnd(38)} ${"".padStart(7)} ${(total / 1024).toFixed(0).padStart(9)}  (target: under 3 MB)`);

const port = 19000 + Math.floor(Math.random() * 500);
const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", www], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 800));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox", "--disable-quic",
  "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu"] });

async function measure(page, file, n) {
  await page.setInputFiles("#file", path.join(www, file)); // the same path as a drop: openFile(file)
  await page.waitForSelector(`body[data-predicted='${n}']`, { timeout: 600_000 });
  return page.evaluate(() => [Number(document.body.dataset.firstRowsMs), Number(document.body.dataset.allCellsMs), document.body.dataset.backendUsed]);
}

try {
  console.log("\nbackend   file                   first rows   all cells    cells/s   (reading + normalising + predicting)");
  for (const backend of ["cpu", "webgpu"]) {
    const page = await browser.newPage();
    const t0 = Date.now();
    await page.goto(`http://127.0.0.1:${port}/?backend=${backend}`);
    await page.waitForSelector(`body[data-model][data-backend='${backend}']`, { timeout: 120_000 });
    const ready = Date.now() - t0;
    const note = await page.textContent("#backend");
    // First visit's "click the sample": time from navigation to the first predictions on screen.
    const t1 = Date.now();
    await page.click("#sample");
    await page.waitForSelector("body[data-first-rows-ms]", { timeout: 600_000 });
    const firstFromLoad = ready + (Date.now() - t1);
    await page.waitForSelector("body[data-predicted='1000']", { timeout: 600_000 });
    console.log(`${backend.padEnd(9)} (${note.trim()}) model ready ${ready} ms after navigation; sample clicked at once: first predictions ${firstFromLoad} ms after navigation`);
    const files = [["sample (1,000 cells)", "sample/sample.csv", 1000]];
    if (!(backend === "webgpu" && skipGpu10k)) files.push(["10,000 cells", "sample/bench_10k.csv", 10000]);
    for (const [name, file, n] of files) {
      const [first, all, used] = await measure(page, file, n);
      if (used !== backend) throw new Error(`expected the ${backend} backend, the page used ${used}`);
      console.log(`${backend.padEnd(9)} ${name.padEnd(22)} ${(first / 1000).toFixed(2).padStart(8)} s ${(all / 1000).toFixed(2).padStart(9)} s ${(n / (all / 1000)).toFixed(0).padStart(9)}`);
    }
    await page.close();
  }
  console.log(`(SIMULATED files; ${process.platform}, Chromium headless, ${(await browser.version())}; no GPU on this machine: WebGPU = SwiftShader)`);
} finally {
  await browser.close();
  server.kill();
}
