// The page in a real browser: the sample and an h5ad give the same predictions as the native CLI,
// the genome attention view renders (screenshot saved), a malformed file shows a readable error,
// and no request leaves localhost or carries file contents.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const www = path.join(root, "www");
const bin = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "release", "mamba-perturb");
const shots = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "browser-screenshots");
const port = 18000 + Math.floor(Math.random() * 1000);
const base = `http://127.0.0.1:${port}/`;
let server, browser;
const requests = [];

before(async () => {
  mkdirSync(shots, { recursive: true });
  server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", www], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    try { await fetch(base); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
      "--disable-sync", "--disable-default-apps", "--disable-domain-reliability", "--no-pings"],
  });
});
after(async () => { await browser?.close(); server?.kill(); });

async function openPage() {
  const page = await browser.newPage();
  page.on("request", (r) => requests.push({ url: r.url(), method: r.method(), body: r.postData() }));
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(base);
  await page.waitForSelector("body[data-model]", { timeout: 60_000 });
  return page;
}

function cliPredictions(file) {
  const out = execFileSync(bin, ["predict", "--model", path.join(root, "models/default"), file, "--top", "3", "--format", "json"], { maxBuffer: 1 << 28 });
  return JSON.parse(out.toString()).cells;
}

function assertSame(pageCells, cli, tol) {
  assert.equal(pageCells.length, cli.length);
  const byIndex = [...pageCells].sort((a, b) => a.index - b.index);
  for (let i = 0; i < cli.length; i++) {
    assert.equal(byIndex[i].cell, cli[i].cell);
    for (let r = 0; r < 3; r++) {
      assert.equal(byIndex[i].top[r].perturbation, cli[i].top[r].perturbation, `cell ${i} rank ${r}`);
      assert.ok(Math.abs(byIndex[i].top[r].probability - cli[i].top[r].probability) < tol, `cell ${i} rank ${r} probability`);
    }
  }
}

test("sample CSV dropped on the page matches the CLI, and the genome view renders", async () => {
  const page = await openPage();
  const csv = readFileSync(path.join(www, "sample/sample.csv"));
  // A real drop event carrying the file, as a person dragging it would produce.
  await page.evaluate(async (bytes) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], "sample.csv", { type: "text/csv" }));
    document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [...csv]);
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  const cells = await page.evaluate(() => window.__mambaPerturb.cells());
  assertSame(cells, cliPredictions(path.join(www, "sample/sample.csv")), 1e-4);
  await page.waitForSelector("body[data-genome-drawn]", { timeout: 60_000 });
  const drawn = await page.evaluate(() => Number(document.body.dataset.genomeDrawn));
  assert.ok(drawn > 100, "attention for every panel gene");
  await page.setViewportSize({ width: 1200, height: 900 });
  await page.screenshot({ path: path.join(shots, "sample-page.png") });
  await page.locator("#genome").screenshot({ path: path.join(shots, "sample-genome-view.png") });
  const firstMs = await page.evaluate(() => Number(document.body.dataset.firstPredictionMs));
  console.log(`sample: 1000 cells predicted ${firstMs.toFixed(0)} ms after the drop; screenshot in ${shots}`);
  await page.close();
});

test("an h5ad chosen with the file picker matches the CLI", async () => {
  const page = await openPage();
  await page.setInputFiles("#file", path.join(www, "sample/sample.h5ad"));
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  const cells = await page.evaluate(() => window.__mambaPerturb.cells());
  assertSame(cells, cliPredictions(path.join(www, "sample/sample.h5ad")), 1e-4);
  const report = await page.textContent("#report");
  assert.match(report, /simulated data/);
  await page.close();
});

test("a malformed file shows a readable error in the page", async () => {
  const page = await openPage();
  await page.setInputFiles("#file", path.join(root, "tests/fixtures/bad_ragged.csv"));
  await page.waitForSelector("#error:not([hidden])", { timeout: 30_000 });
  const text = await page.textContent("#error");
  assert.match(text, /bad_ragged\.csv: line 5: expected 41 fields/);
  await page.close();
});

test("no request leaves localhost or carries file contents", () => {
  assert.ok(requests.length > 0);
  for (const r of requests) {
    assert.ok(r.url.startsWith(base) || r.url.startsWith("blob:") || r.url.startsWith("data:"), `request to ${r.url}`);
    assert.equal(r.method, "GET", `${r.method} ${r.url}`);
    assert.equal(r.body, null, `request body sent to ${r.url}`);
  }
});
