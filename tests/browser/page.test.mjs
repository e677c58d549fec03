// The page in a real browser: the sample and an h5ad give the same predictions as the native CLI on
// the forced CPU backend (1e-4) and on WebGPU (SwiftShader's software adapter, 1e-3), the automatic
// choice refuses a software adapter, a shared link opens its cell and gene, the genome attention
// view renders (screenshot saved), a malformed file shows a readable error, and no request leaves
// localhost or carries file contents. The page is served under a sub-path (/www/), as on a project site.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { readFileSync, writeFileSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const www = path.join(root, "www");
const bin = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "release", "mamba-perturb");
const shots = path.join(process.env.CARGO_TARGET_DIR || path.join(root, "target"), "browser-screenshots");
const port = 18000 + Math.floor(Math.random() * 1000);
// The repository root is served, so the page runs under a sub-path (/www/), as on a project site.
const base = `http://127.0.0.1:${port}/www/`;
let server, browser, gpuBrowser;
const requests = [];

before(async () => {
  mkdirSync(shots, { recursive: true });
  server = spawn("python3", ["-m", "http.server", String(port), "--bind", "127.0.0.1", "--directory", root], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    try { await fetch(base); break; } catch { await new Promise((r) => setTimeout(r, 100)); }
  }
  const args = ["--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-domain-reliability", "--no-pings"];
  const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
  browser = await chromium.launch({ executablePath, args });
  // WebGPU without a GPU: Chromium's SwiftShader adapter, reachable only with this flag.
  gpuBrowser = await chromium.launch({ executablePath, args: [...args, "--enable-unsafe-webgpu"] });
});
after(async () => { await browser?.close(); await gpuBrowser?.close(); server?.kill(); });

async function openPage(query = "", on = browser) {
  const page = await on.newPage();
  page.on("request", (r) => requests.push({ url: r.url(), method: r.method(), body: r.postData() }));
  page.on("pageerror", (e) => console.error("page error:", e.message));
  await page.goto(base + query);
  await page.waitForSelector("body[data-model][data-backend]", { timeout: 120_000 });
  return page;
}

async function dropFile(page, file, type = "text/csv") {
  // A real drop event carrying the file, as a person dragging it would produce.
  await page.evaluate(async ([name, bytes, type]) => {
    const dt = new DataTransfer();
    dt.items.add(new File([new Uint8Array(bytes)], name, { type }));
    document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  }, [path.basename(file), [...readFileSync(file)], type]);
}

function cliPredictions(file, model = path.join(root, "models/default"), extra = []) {
  const out = execFileSync(bin, ["predict", "--model", model, file, "--top", "3", "--format", "json", ...extra], { maxBuffer: 1 << 28 });
  return JSON.parse(out.toString()).cells;
}

// The page's top answers equal the CLI's: the same probability at every rank (within `tol`), and
// the same answer unless two answers are tied within `tol` (then floating-point order may swap them).
function assertSame(pageCells, cli, tol) {
  assert.equal(pageCells.length, cli.length);
  const byIndex = [...pageCells].sort((a, b) => a.index - b.index);
  let maxDiff = 0;
  for (let i = 0; i < cli.length; i++) {
    assert.equal(byIndex[i].cell, cli[i].cell);
    for (let r = 0; r < 3; r++) {
      const [p, c] = [byIndex[i].top[r], cli[i].top[r]];
      const diff = Math.abs(p.probability - c.probability);
      maxDiff = Math.max(maxDiff, diff);
      assert.ok(diff < tol, `cell ${i} rank ${r}: page ${p.probability} vs CLI ${c.probability}`);
      if (p.perturbation !== c.perturbation) {
        const tie = Math.abs(c.probability - (cli[i].top[r + (r < 2 ? 1 : -1)]?.probability ?? -1)) < tol;
        assert.ok(tie, `cell ${i} rank ${r}: page ${p.perturbation} vs CLI ${c.perturbation}, not a tie`);
      }
    }
  }
  return maxDiff;
}

test("sample CSV dropped on the page (forced CPU backend) matches the CLI, and the genome view renders", async () => {
  const page = await openPage("?backend=cpu");
  assert.equal(await page.evaluate(() => document.body.dataset.backend), "cpu");
  await dropFile(page, path.join(www, "sample/sample.csv"));
  await page.waitForSelector("body[data-predicted='1000'][data-backend-used='cpu']", { timeout: 120_000 });
  const cells = await page.evaluate(() => window.__mambaPerturb.cells());
  const diff = assertSame(cells, cliPredictions(path.join(www, "sample/sample.csv")), 1e-4);
  console.log(`CPU backend: largest probability difference from the CLI ${diff.toExponential(1)}`);
  await page.waitForSelector("body[data-genome-drawn]", { timeout: 60_000 });
  const drawn = await page.evaluate(() => Number(document.body.dataset.genomeDrawn));
  assert.ok(drawn > 100, "attention for every panel gene");
  await page.setViewportSize({ width: 1200, height: 900 });
  await page.screenshot({ path: path.join(shots, "sample-page.png") });
  await page.locator("#genome").screenshot({ path: path.join(shots, "sample-genome-view.png") });
  const [firstMs, allMs] = await page.evaluate(() => [Number(document.body.dataset.firstRowsMs), Number(document.body.dataset.allCellsMs)]);
  console.log(`sample: first predictions ${firstMs.toFixed(0)} ms, all 1000 cells ${allMs.toFixed(0)} ms after the drop; screenshots in ${shots}`);
  await page.close();
});

test("an h5ad chosen with the file picker matches the CLI; without WebGPU the automatic choice is the CPU", async () => {
  const page = await openPage();
  assert.equal(await page.evaluate(() => document.body.dataset.backend), "cpu");
  assert.match(await page.textContent("#backend"), /CPU \(WebAssembly\) — (no WebGPU adapter|this browser has no WebGPU)/);
  await page.setInputFiles("#file", path.join(www, "sample/sample.h5ad"));
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  const cells = await page.evaluate(() => window.__mambaPerturb.cells());
  assertSame(cells, cliPredictions(path.join(www, "sample/sample.h5ad")), 1e-4);
  const report = await page.textContent("#report");
  assert.match(report, /simulated data/);
  await page.close();
});

test("WebGPU (software adapter): automatic choice stays on the CPU; switching to WebGPU matches the CLI within 1e-3", async () => {
  const page = await openPage("", gpuBrowser);
  assert.equal(await page.evaluate(() => document.body.dataset.backend), "cpu", "a software adapter is no GPU");
  assert.match(await page.textContent("#backend"), /software/);
  await dropFile(page, path.join(www, "sample/sample.csv"));
  await page.waitForSelector("body[data-predicted='1000'][data-backend-used='cpu']", { timeout: 120_000 });
  await page.selectOption("#backend-choice", "webgpu"); // the person switches; the file is predicted again
  await page.waitForSelector("body[data-backend='webgpu']", { timeout: 120_000 });
  assert.match(await page.textContent("#backend"), /^WebGPU/);
  await page.waitForSelector("body[data-predicted='1000'][data-backend-used='webgpu']", { timeout: 300_000 });
  const cells = await page.evaluate(() => window.__mambaPerturb.cells());
  const diff = assertSame(cells, cliPredictions(path.join(www, "sample/sample.csv")), 1e-3);
  const ms = await page.evaluate(() => Number(document.body.dataset.allCellsMs));
  await page.waitForSelector("body[data-genome-drawn]", { timeout: 120_000 });
  console.log(`WebGPU (SwiftShader): 1000 cells in ${ms.toFixed(0)} ms; largest probability difference from the CLI ${diff.toExponential(1)}`);
  await page.close();
});

test("'Load your own model' takes what mamba-perturb train wrote, and the open file is predicted again with it", async () => {
  // A small model trained here, on the sample, so its panel and weights differ from the default's.
  const dir = mkdtempSync(path.join(tmpdir(), "mamba-model-"));
  execFileSync(bin, ["train", "--data", path.join(www, "sample/sample.h5ad"), "--split", "all", "--hvg", "32", "--epochs", "1",
    "--d-model", "16", "--heads", "2", "--seed", "1", "--out", dir], { stdio: "ignore" });
  const page = await openPage("?backend=cpu");
  await dropFile(page, path.join(www, "sample/sample.csv"));
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  const before = await page.evaluate(() => ({ run: Number(document.body.dataset.run), panel: window.__mambaPerturb.model().panel.length }));
  await page.setInputFiles("#model-files", [path.join(dir, "card.json"), path.join(dir, "model.bpk")]);
  await page.waitForFunction((run) => Number(document.body.dataset.run) > run && document.body.dataset.predicted === "1000", before.run, { timeout: 120_000 });
  const after = await page.evaluate(() => window.__mambaPerturb.model().panel.length);
  assert.notEqual(after, before.panel, "the new model's panel is in use");
  assert.match(await page.textContent("#report"), new RegExp(`of the model's ${after} panel genes found`));
  const cells = await page.evaluate(() => window.__mambaPerturb.cells());
  assertSame(cells, cliPredictions(path.join(www, "sample/sample.csv"), dir), 1e-4);
  await page.close();
  rmSync(dir, { recursive: true, force: true });
});

test("the sample button opens the labelled sample; Cancel stops part-way and keeps what was predicted", async () => {
  const page = await openPage("?backend=cpu&workers=1");
  await page.click("#sample");
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  assert.match(await page.textContent("#report"), /simulated data/);
  // Cancel on a file big enough that it lands part-way (the sample's jobs are all under way by then).
  const dir = mkdtempSync(path.join(tmpdir(), "mamba-cancel-"));
  const file = path.join(dir, "cells.h5ad");
  execFileSync(bin, ["simulate", "--out", file, "--cells", "30000", "--genes", "1000", "--seed", "0", "--cell-seed", "7"], { stdio: "ignore" });
  await page.setInputFiles("#file", file);
  await page.waitForSelector("body[data-first-rows-ms]", { timeout: 120_000 });
  await page.click("#cancel");
  await page.waitForSelector("body[data-predicted]", { timeout: 120_000 });
  const done = Number(await page.evaluate(() => document.body.dataset.predicted));
  assert.ok(done > 0 && done < 30000, `cancelled after ${done} of 30000 cells`);
  assert.ok(await page.locator("#progress").isHidden());
  // The file carries labels: accuracy against them is shown for the cells predicted.
  assert.match(await page.textContent("#accuracy"), new RegExp(`exact top-1 [0-9.]+% of ${done} cells`));
  // Pseudobulk by the label column (chosen by default), scored against the canonical labels: each
  // group combines its predicted cells only, so after Cancel the groups hold exactly the cells done.
  await page.waitForFunction(() => window.__mambaPerturb.bulk().length > 200, null, { timeout: 60_000 });
  const bulk = await page.evaluate(() => window.__mambaPerturb.bulk());
  assert.ok(bulk.some((b) => b.label && b.label.includes("+")), "pair groups carry canonical A+B labels");
  const labelled = bulk.filter((b) => b.label);
  assert.equal(labelled.reduce((n, b) => n + b.cells, 0), done, "the groups hold the predicted cells");
  const scored = labelled.filter((b) => b.cells > 0).length;
  assert.ok(labelled.every((b) => (b.cells > 0) === (b.top.length > 0)), "a group without predicted cells has no answer");
  assert.match(await page.textContent("#bulk-accuracy"), new RegExp(`Pseudobulk exact top-1 against the labels: [0-9.]+% of ${scored} groups`));
  await page.close();
  rmSync(dir, { recursive: true, force: true });
});

test("asking for WebGPU where the browser has none gives the CPU backend and says why", async () => {
  const page = await openPage("?backend=webgpu");
  assert.equal(await page.evaluate(() => document.body.dataset.backend), "cpu");
  assert.match(await page.textContent("#backend"), /CPU \(WebAssembly\) — WebGPU could not start: (no WebGPU adapter is available|this browser has no WebGPU)/);
  await page.close();
});

test("a shared link opens its model, file, cell and gene", async () => {
  const cli = cliPredictions(path.join(www, "sample/sample.csv"));
  const target = cli[700]; // beyond the first batch, so the link waits for it
  const gene = target.top[1].perturbation === "control" ? "control" : target.top[1].perturbation.split("+")[0];
  const page = await openPage(`?backend=cpu&model=models/default/&data=sample/sample.csv&cell=${encodeURIComponent(target.cell)}&gene=${gene}`);
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  await page.waitForFunction((c) => window.__mambaPerturb.selected().cell === c, 700, { timeout: 60_000 });
  assert.equal(await page.evaluate(() => window.__mambaPerturb.selected().gene), gene);
  await page.waitForFunction((g) => document.getElementById("genome-canvas") && document.querySelector("#query-gene").value === g, gene, { timeout: 60_000 });
  await page.click("#share");
  const href = await page.inputValue("#share-link");
  assert.ok(href.includes(`cell=${encodeURIComponent(target.cell)}`) && href.includes("data=sample%2Fsample.csv"), href);
  // The weights were cached under a key that carries the model card's hash.
  const cached = await page.evaluate(async () => (await (await caches.open("mamba-perturb-models-v1")).keys()).map((r) => r.url));
  assert.ok(cached.some((u) => /\/www\/models\/default\/model\.bpk\?card=[0-9a-f]{16}$/.test(u)), cached.join(" "));
  await page.close();
});

test("CSV/TSV in every orientation and encoding predicts like the CLI, and the orientation control overrides the guess", async () => {
  // 10x-style gene names and cell ids of upper-case letters and digits, which once passed for genes.
  const dir = mkdtempSync(path.join(tmpdir(), "mamba-orient-"));
  const lines = readFileSync(path.join(www, "sample/sample.csv"), "utf8").trim().split("\n").slice(0, 41);
  const extra = ["C1orf112", "XXbac-B461K10.4", "Metazoa_SRP", "snoU13"];
  const genes = [...extra, ...lines[0].split(",").slice(1)];
  const rows = lines.slice(1).map((l, i) => [i % 2 ? `S1A${String(i).padStart(2, "0")}` : `CELL${i}-1`, ...extra.map((_, k) => String((i + k) % 3)), ...l.split(",").slice(1)]);
  const cellsRows = [["", ...genes].join(","), ...rows.map((r) => r.join(","))].join("\n") + "\n";
  const genesRows = [["gene", ...rows.map((r) => r[0])].join("\t"), ...genes.map((g, j) => [g, ...rows.map((r) => r[j + 1])].join("\t"))].join("\n") + "\n";
  const { gzipSync } = await import("node:zlib");
  const files = {
    "cells_rows.csv": cellsRows,
    "genes_rows.tsv.gz": gzipSync(genesRows),
    "bom_crlf.csv": "\ufeff" + cellsRows.replaceAll("\n", "\r\n"),
  };
  for (const [name, body] of Object.entries(files)) writeFileSync(path.join(dir, name), body);
  const cli = cliPredictions(path.join(dir, "cells_rows.csv"));
  const page = await openPage("?backend=cpu");
  for (const [name, orientation] of [["cells_rows.csv", "cells as rows"], ["genes_rows.tsv.gz", "genes as rows"], ["bom_crlf.csv", "cells as rows"]]) {
    const before = await page.evaluate(() => Number(document.body.dataset.run || 0));
    await page.setInputFiles("#file", path.join(dir, name));
    await page.waitForFunction((run) => Number(document.body.dataset.run) > run && document.body.dataset.predicted === "40", before, { timeout: 60_000 });
    assert.match(await page.textContent("#report"), new RegExp(`${orientation}: .*match`), name);
    assertSame(await page.evaluate(() => window.__mambaPerturb.cells()), cli, 1e-4);
  }
  // Forcing the other orientation re-reads the open file that way: its cells become "genes", none in the panel.
  await page.selectOption("#orientation", "genes-as-rows");
  await page.waitForSelector("#error:not([hidden])", { timeout: 30_000 });
  assert.match(await page.textContent("#error"), /bom_crlf\.csv: none of the file's 40 genes matches/);
  await page.selectOption("#orientation", "auto");
  await page.waitForSelector("body[data-predicted='40']", { timeout: 60_000 });
  await page.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a pre-0.7 AnnData file (compound obs/var) and CPA's Norman layout read in the page as in the CLI", async () => {
  const page = await openPage("?backend=cpu");
  for (const [name, cells] of [["anndata06_compound.h5ad", 60], ["cpa_norman_layout.h5ad", 60]]) {
    const file = path.join(root, "tests/fixtures", name);
    const before = await page.evaluate(() => Number(document.body.dataset.run || 0));
    await page.setInputFiles("#file", file);
    await page.waitForFunction(([run, n]) => Number(document.body.dataset.run) > run && document.body.dataset.predicted === String(n), [before, cells], { timeout: 60_000 });
    assertSame(await page.evaluate(() => window.__mambaPerturb.cells()), cliPredictions(file), 1e-4);
  }
  await page.close();
});

test("the reference field: the file's control label is offered and taken as the CLI takes it; a label it lacks is an error shown on the page", async () => {
  const page = await openPage("?backend=cpu");
  const file = path.join(www, "sample/sample.h5ad");
  await page.setInputFiles("#file", file);
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  assert.deepEqual(await page.$$eval("#control-labels option", (os) => os.map((o) => o.value)), ["control"]);
  await page.click("#reference-box summary");
  await page.fill("#control-label", "control");
  await page.click("#apply-reference");
  await page.waitForFunction(() => /changes nothing without a batch column/.test(document.getElementById("report").textContent), null, { timeout: 60_000 });
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  const cells = await page.evaluate(() => window.__mambaPerturb.cells());
  assertSame(cells, cliPredictions(file, undefined, ["--control", "control"]), 1e-4);
  await page.fill("#control-label", "no-such-label");
  await page.click("#apply-reference");
  await page.waitForSelector("#error:not([hidden])", { timeout: 30_000 });
  assert.match(await page.textContent("#error"), /no cell of obs column 'perturbation' is labelled 'no-such-label' \(its most common labels: 'control'/);
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

// Numbers within `tol` (wasm's SIMD kernels sum in another order than the native build), everything
// else equal; in a ranked list two answers tied within `tol` may swap.
function assertSameReport(page, cli, tol, where = "") {
  if (typeof cli === "number") return assert.ok(Math.abs(page - cli) < tol, `${where}: page ${page} vs CLI ${cli}`);
  if (Array.isArray(cli) && cli.length && cli[0] && "perturbation" in cli[0]) { // a ranked list
    assert.equal(page.length, cli.length, where);
    cli.forEach((c, r) => {
      assert.ok(Math.abs(page[r].probability - c.probability) < tol, `${where}[${r}]: ${page[r].probability} vs ${c.probability}`);
      const tie = cli.some((o, k) => k !== r && Math.abs(o.probability - c.probability) < tol);
      if (!tie) assert.equal(page[r].perturbation, c.perturbation, `${where}[${r}]`);
    });
    return;
  }
  if (cli === null || typeof cli !== "object") return assert.equal(page, cli, where);
  assert.deepEqual(Object.keys(page).sort(), Object.keys(cli).sort(), where);
  for (const k of Object.keys(cli)) assertSameReport(page[k], cli[k], tol, `${where}.${k}`);
}

async function download(page, button) {
  const [d] = await Promise.all([page.waitForEvent("download"), page.click(button)]);
  return readFileSync(await d.path(), "utf8");
}

test("the page's CSV and JSON exports equal the CLI's predict output (same file, model, top 5 / 3, group column)", async () => {
  const page = await openPage("?backend=cpu");
  const file = path.join(www, "sample/sample.h5ad");
  await page.setInputFiles("#file", file);
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  await page.waitForFunction(() => window.__mambaPerturb.bulk().length > 200, null, { timeout: 60_000 });
  const column = await page.inputValue("#group-by");
  assert.equal(column, "perturbation", "grouped by the label column");
  const cli = (format) => execFileSync(bin, ["predict", "--model", path.join(root, "models/default"), file, "--top", "5", "--group-top", "3",
    "--group-by", column, "--format", format], { maxBuffer: 1 << 28 }).toString();
  assertSameReport(JSON.parse(await download(page, "#export-json")), JSON.parse(cli("json")), 1e-5, "json");
  const [pageCsv, cliCsv] = [(await download(page, "#export-csv")).trim().split("\n"), cli("csv").trim().split("\n")];
  assert.equal(pageCsv.length, cliCsv.length);
  assert.equal(pageCsv[0], "kind,id,rank,perturbation,probability");
  let differentText = 0;
  const rows = cliCsv.map((line) => line.split(","));
  pageCsv.slice(1).forEach((line, k) => {
    const i = k + 1, [p, c] = [line.split(","), rows[i]];
    assert.deepEqual(p.slice(0, 3), c.slice(0, 3), `csv line ${i + 1}`);
    assert.ok(Math.abs(Number(p[4]) - Number(c[4])) < 1e-5, `csv line ${i + 1}: ${line} vs ${cliCsv[i]}`);
    const tie = [rows[i - 1], rows[i + 1]].some((o) => o && o[1] === c[1] && Math.abs(Number(o[4]) - Number(c[4])) < 1e-5);
    if (!tie) assert.equal(p[3], c[3], `csv line ${i + 1}`);
    differentText += line !== cliCsv[i];
  });
  console.log(`exports: ${pageCsv.length} CSV lines, ${differentText} differ in the last digits of a probability`);
  await page.close();
});

test("a pool of helper workers gives the answers, accuracy and pseudobulks one worker gives", async () => {
  const run = async (workers) => {
    const page = await openPage(`?backend=cpu&workers=${workers}`);
    await page.setInputFiles("#file", path.join(www, "sample/sample.h5ad"));
    await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
    await page.waitForFunction(() => window.__mambaPerturb.bulk().length > 200, null, { timeout: 60_000 });
    const result = await page.evaluate(async () => ({
      cells: await window.__mambaPerturb.cells(), bulk: window.__mambaPerturb.bulk(),
      workers: Number(document.body.dataset.workers), accuracy: document.getElementById("accuracy").textContent,
    }));
    await page.close();
    return result;
  };
  const [one, three] = [await run(1), await run(3)];
  assert.equal(one.workers, 1);
  assert.equal(three.workers, 3, "three helpers, as asked");
  assertSame(three.cells, [...one.cells].sort((a, b) => a.index - b.index), 1e-6);
  assert.equal(three.accuracy, one.accuracy);
  assert.ok(/exact/i.test(one.accuracy), one.accuracy);
  const byGroup = (bulk) => Object.fromEntries(bulk.map((g) => [g.group, g]));
  const [a, b] = [byGroup(one.bulk), byGroup(three.bulk)];
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
  for (const [name, g] of Object.entries(a)) {
    assert.equal(b[name].cells, g.cells, name);
    assert.equal(b[name].top[0].perturbation, g.top[0].perturbation, name);
    assert.ok(Math.abs(b[name].top[0].probability - g.top[0].probability) < 1e-6, name);
  }
});

test("names from a file and from a model card are shown as text, never as markup", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), "mamba-markup-"));
  const evil = "<img src=x onerror=window.__pwned=1>";
  const lines = readFileSync(path.join(www, "sample/sample.csv"), "utf8").split("\n");
  lines[1] = lines[1].replace(/^[^,]*/, `${evil}cell`);
  writeFileSync(path.join(dir, "cells.csv"), lines.slice(0, 60).join("\n") + "\n");
  const card = JSON.parse(readFileSync(path.join(root, "models/default/card.json"), "utf8"));
  card.name = `${evil}model`; card.description = `<script>window.__pwned=2</script>${evil}`;
  writeFileSync(path.join(dir, "card.json"), JSON.stringify(card));
  const page = await openPage("?backend=cpu");
  await page.setInputFiles("#model-files", [path.join(dir, "card.json"), path.join(root, "models/default/model.bpk")]);
  await page.waitForFunction((n) => document.body.dataset.model === n, card.name, { timeout: 60_000 });
  await page.setInputFiles("#file", path.join(dir, "cells.csv"));
  await page.waitForSelector("body[data-predicted='59']", { timeout: 60_000 });
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator("img, #model-info script").count(), 0);
  assert.ok((await page.textContent("#model-info")).includes(card.name));
  assert.ok((await page.textContent("#cells")).includes(`${evil}cell`));
  await page.close();
  rmSync(dir, { recursive: true, force: true });
});

test("good file, bad file, good file: nothing of an earlier file stays on the page", async () => {
  const page = await openPage("?backend=cpu");
  await dropFile(page, path.join(www, "sample/sample.csv"));
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  await page.setInputFiles("#file", path.join(root, "tests/fixtures/bad_ragged.csv"));
  await page.waitForSelector("#error:not([hidden])", { timeout: 30_000 });
  assert.equal((await page.textContent("#report")).trim(), "", "the good file's report is gone");
  assert.ok(await page.locator("#results").isHidden() && await page.locator("#genome").isHidden());
  assert.equal(await page.evaluate(async () => (await window.__mambaPerturb.cells()).length), 0);
  await page.setInputFiles("#file", path.join(www, "sample/sample.h5ad"));
  await page.waitForSelector("body[data-predicted='1000']", { timeout: 120_000 });
  assert.ok(await page.locator("#error").isHidden());
  assert.match(await page.textContent("#report"), /sample\.h5ad/);
  assert.doesNotMatch(await page.textContent("#report"), /sample\.csv|bad_ragged/);
  await page.close();
});

test("views: confusion and label check agree with the CLI; a cell's why and a group's mean attention are shown", async () => {
  const file = path.join(www, "sample/sample.h5ad"), model = path.join(root, "models/default");
  const cli = (...args) => execFileSync(bin, [...args], { maxBuffer: 1 << 28 }).toString();
  const page = await openPage("?backend=cpu");
  await page.setInputFiles("#file", file);
  await page.waitForSelector("body[data-confusion-accuracy][data-label-check][data-why]", { timeout: 120_000 });
  // The confusion picture's accuracy is eval's; its CSV is `view confusion`'s.
  const evalTop1 = JSON.parse(cli("eval", "--model", model, "--data", file)).levels.cell.metrics.exact_pair_top1;
  assert.equal(Number(await page.evaluate(() => document.body.dataset.confusionAccuracy)), evalTop1);
  assert.equal(await download(page, "#confusion-csv"), cli("view", "--model", model, file, "confusion", "--answers", "15"));
  // Label check: the page's counts are the CLI's, cell by cell.
  const verdicts = cli("view", "--model", model, file, "label-check").trim().split("\n").slice(1).map((l) => l.split(",").pop());
  const count = (v) => verdicts.filter((x) => x === v).length;
  assert.equal(await page.evaluate(() => document.body.dataset.labelCheck),
    `${count("consistent")}/${count("likely non-responder")}/${count("unclear")}/${count("likely mislabelled")}`);
  assert.match(await page.textContent("#label-check-summary"), new RegExp(`${count("likely non-responder")} likely non-responders`));
  // Why: the first cell's candidate genes with their own level, as `view why` gives them.
  const why = JSON.parse(cli("view", "--model", model, file, "why", "--cell", "0", "--format", "json"));
  const rows = await page.$$eval("#why tbody tr", (trs) => trs.map((tr) => tr.cells[0].textContent));
  assert.deepEqual(rows, why.evidence.map((e) => e.gene));
  // The cell table is the core's: searched and ordered as `view cells` lists them.
  const first = JSON.parse(cli("view", "--model", model, file, "cells", "--limit", "1", "--format", "json")).rows[0];
  const gene = first.top.find((t) => t.perturbation !== "control").perturbation.split("+")[0];
  const listed = JSON.parse(cli("view", "--model", model, file, "cells", "--search", gene, "--order", "cell", "--descending", "--format", "json"));
  assert.ok(listed.matched > 0 && listed.matched < 1000, `${listed.matched} cells name ${gene}`);
  await page.fill("#search", gene);
  await page.click("#cells th[data-sort='cell']");
  await page.click("#cells th[data-sort='cell']"); // again: descending
  await page.waitForFunction((names) => [...document.querySelectorAll("#cells tbody tr td:nth-child(2)")].map((td) => td.textContent).join() === names.join(),
    listed.rows.map((r) => r.cell), { timeout: 30_000 });
  assert.equal(await page.textContent("#more"), `${listed.matched} cells`);
  // A pseudobulk group: its attention is the mean over its cells, and the page says so.
  await page.waitForFunction(() => window.__mambaPerturb.bulk().length > 200, null, { timeout: 60_000 });
  await page.click("#bulk tbody tr:nth-child(3)");
  await page.waitForFunction(() => /mean over \d+ of the group's \d+ cells/.test(document.getElementById("top-genes").textContent), null, { timeout: 60_000 });
  const group = await page.evaluate(() => window.__mambaPerturb.selected().group);
  const top = JSON.parse(cli("view", "--model", model, file, "attention", "--group", group,
    "--gene", await page.evaluate(() => window.__mambaPerturb.selected().gene), "--format", "json")).top_genes;
  const shown = await page.$$eval("#top-genes li", (lis) => lis.map((li) => li.firstChild.textContent.trim()));
  assert.deepEqual(shown, top.map((g) => g.gene));
  assert.ok(await page.locator("#why-box").isHidden(), "no cell's why under a group's view");
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
