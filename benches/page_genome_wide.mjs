// A genome-wide candidate set in the page: memory and speed with a model of 10,000 single-target
// candidates (the shape of Replogle 2022's genome-wide screens), beside the native CLI on the same
// file and model. The model is UNTRAINED (`mamba-perturb speed --model-for`: the right shapes,
// meaningless answers): nothing here trains 10,000 candidates on 2 cores, and memory and speed do
// not depend on the weights' values. The file is SIMULATED (1,000 cells × 2,000 genes).
//
// Run after scripts/build-web.sh:  node benches/page_genome_wide.mjs [--candidates 10000] [--genes 2000]
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { rendererPeakMiB } from "./renderer_memory.mjs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { chromium } = createRequire(path.join(root, "tests/browser/package.json"))("playwright-core");
const bin = process.env.MAMBA_BIN || path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "release", "mamba-perturb");
const arg = (name, fallback) => { const i = process.argv.indexOf(name); return i > 0 ? process.argv[i + 1] : fallback; };
const candidates = Number(arg("--candidates", "10000"));
const genes = Number(arg("--genes", "2000"));
const cells = 1000;
const cores = os.cpus().length;
const work = path.join(os.tmpdir(), "mamba-genome-wide-bench");
mkdirSync(work, { recursive: true });
const file = path.join(work, `cells_${cells}x${genes}.h5ad`);
if (!existsSync(file)) execFileSync(bin, ["simulate", "--out", file, "--cells", String(cells), "--genes", String(genes), "--seed", "0", "--cell-seed", "9"], { stdio: "ignore" });
// The page's own folder with the model beside the default one.
const site = path.join(work, "www");
rmSync(site, { recursive: true, force: true });
cpSync(path.join(root, "www"), site, { recursive: true });
const model = path.join(site, "models", "genome-wide");
execFileSync(bin, ["speed", "--model-for", file, "--out", model, "--genes", String(genes), "--candidates", String(candidates)], { stdio: "inherit" });
const card = JSON.parse(readFileSync(path.join(model, "card.json"), "utf8"));
const { n_genes: g, n_candidates: c, d_model: d } = card.net; const q = c + 1;
// NetConfig::forward_flops per cell (src/model/mod.rs).
const flopsPerCell = 2 * (g * (d + d * d) + 2 * g * d * d + 2 * q * g * d + q * d * d + q * (2 * d * d + d) + 3 * d);
const mib = (p) => statSync(p).size / 2 ** 20;
console.log(`model: ${c} candidates × ${g} panel genes (UNTRAINED), weights ${mib(path.join(model, "model.bpk")).toFixed(1)} MiB, card ${mib(path.join(model, "card.json")).toFixed(1)} MiB; ${(flopsPerCell / 1e9).toFixed(2)} GFLOP per cell`);

/** The CLI's whole process: cells/s and peak resident memory (MiB). */
function cli(threads) {
  const t0 = process.hrtime.bigint();
  const run = spawnSync("/usr/bin/time", ["-v", bin, "predict", "--model", model, file, "-o", path.join(work, "out.json")],
    { env: { ...process.env, RAYON_NUM_THREADS: String(threads) }, encoding: "utf8" });
  if (run.status !== 0) throw new Error(`predict failed: ${run.stderr}`);
  const out = run.stderr;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { rate: cells / seconds, peakMiB: Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(out)[1]) / 1024 };
}

const native = { 1: cli(1), [cores]: cli(cores) };
const port = 19500 + Math.floor(Math.random() * 400);
const server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", site], { stdio: "ignore" });
await new Promise((r) => setTimeout(r, 800));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: ["--no-sandbox", "--no-first-run"] });
try {
  console.log("workers  page cells/s  GFLOP/s  tab peak MiB   CLI threads  CLI cells/s  CLI peak MiB");
  for (const workers of [1, cores]) {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.log("page error:", e.message));
    await page.goto(`http://127.0.0.1:${port}/?model=models/genome-wide/&backend=cpu&workers=${workers}`);
    await page.waitForSelector("body[data-model][data-backend]", { timeout: 300_000 });
    await page.setInputFiles("#file", file);
    await page.waitForSelector(`body[data-predicted='${cells}']`, { timeout: 1_800_000 });
    const [all, pool] = await page.evaluate(() => [Number(document.body.dataset.allCellsMs), Number(document.body.dataset.workers)]);
    const rate = cells / (all / 1000);
    const errors = (await page.textContent("#error")).trim();
    const peak = rendererPeakMiB();
    const n = native[workers];
    console.log(`${String(pool).padStart(7)} ${rate.toFixed(2).padStart(13)} ${(rate * flopsPerCell / 1e9).toFixed(2).padStart(8)} ${peak.toFixed(0).padStart(13)} ${String(workers).padStart(13)} ${n.rate.toFixed(2).padStart(12)} ${n.peakMiB.toFixed(0).padStart(13)}${errors ? `  error shown: ${errors}` : ""}`);
    await page.close();
  }
} finally {
  await browser.close();
  server.kill();
}
