// The page: file handling, tables and the chromosome-position attention view. All computing happens
// in worker.js (the Rust core in WebAssembly); this file only shows results and forwards choices.
// Link parameters: ?model=URL_OF_MODEL_FOLDER&data=URL_OF_FILE&cell=NAME_OR_ROW&gene=SYMBOL&backend=auto|webgpu|cpu

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const TOP = 5;
const BATCH = 256;
const CACHE = "mamba-perturb-models-v1"; // bump when the weight format changes

let model = null;      // model info from the worker
let report = null;     // input report
let cells = [];        // per-cell predictions
let bulk = [];
let selected = { cell: null, group: null, gene: null };
let started = 0;
let runId = 0;         // the prediction run whose results are shown; older replies are ignored
let dataUrl = null;    // where the current file came from, when it can be linked to
let link = { cell: params.get("cell"), gene: params.get("gene") }; // the view a shared link opens, used once

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  $("progress").hidden = true;
}
function clearError() { $("error").hidden = true; }
function progress(text, done, total) {
  $("progress").hidden = false;
  $("bar").value = total ? done / total : 0;
  $("progress-text").textContent = text;
}
const fmt = (p) => (p * 100).toFixed(1) + "%";
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c]));

// ---------- worker messages ----------
worker.onmessage = (e) => {
  const m = e.data;
  if (m.type === "error") return showError(m.message);
  if (m.type === "model") return showModel(m.info);
  if (m.type === "progress") return progress(m.stage + "…", m.done, m.total);
  if (m.type === "report") return showReport(m.report, m.cells);
  if (m.type === "backend") return showBackend(m);
  if ((m.type === "cells" || m.type === "predicted" || m.type === "cancelled") && m.run !== runId) return; // superseded
  if (m.type === "cells") {
    cells.push(...m.rows);
    progress(`predicting: ${m.done} of ${m.total} cells (${(m.done / (m.ms / 1000)).toFixed(0)} cells/s, ${backendName(m.backend)})`, m.done, m.total);
    const linked = link.cell !== null && m.rows.find((c) => c.cell === link.cell || String(c.index + 1) === link.cell);
    if (cells.length === m.rows.length) { // first batch: show it at once
      document.body.dataset.firstRowsMs = String(performance.now() - started);
      renderCells();
      if (!linked && selected.cell === null && cells.length) selectCell(0);
    }
    if (linked) { link.cell = null; selectCell(linked.index, link.gene); link.gene = null; }
    return;
  }
  if (m.type === "predicted" || m.type === "cancelled") {
    $("progress").hidden = true;
    document.body.dataset.predicted = String(cells.length);
    document.body.dataset.backendUsed = m.backend || "";
    document.body.dataset.allCellsMs = String(performance.now() - started);
    if (m.type === "predicted" && link.cell !== null) { showError(`The link asks for cell '${link.cell}', which this file does not have.`); link.cell = null; }
    renderCells();
    showAccuracy();
    worker.postMessage({ type: "pseudobulk", column: $("group-by").value, top: 3 });
    return;
  }
  if (m.type === "bulk") { bulk = m.rows; renderBulk(); return; }
  if (m.type === "attention") { // only the latest request's answer is drawn
    if (m.gene === selected.gene && (m.cell ?? null) === selected.cell) drawGenome(m);
    return;
  }
  if (m.type === "csv") { download("predictions.csv", m.text, "text/csv"); }
};
worker.onerror = (e) => showError("The analysis worker failed: " + e.message);

// ---------- backend: WebGPU or the CPU (WebAssembly); the worker picks for "auto" ----------
const backendName = (b) => (b === "webgpu" ? "WebGPU" : "CPU (WebAssembly)");
function showBackend(m) {
  const gpu = m.active === "webgpu" && m.gpu.name ? ` on ${m.gpu.name}` : "";
  $("backend").textContent = backendName(m.active) + gpu + (m.note ? ` — ${m.note}` : "");
  $("backend-choice").value = m.choice;
  document.body.dataset.backend = m.active;
  if (report) predict(); // same file, new backend: predict again
}
function chooseBackend(choice) {
  $("backend").textContent = "switching…";
  delete document.body.dataset.backend;
  worker.postMessage({ type: "cancel" });
  worker.postMessage({ type: "backend", choice });
}
$("backend-choice").onchange = (e) => chooseBackend(e.target.value);

// ---------- model ----------
async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.arrayBuffer();
}
async function cachedFetch(url, version) {
  // Weights are cached under a version key (the format version and a hash of the model card, which
  // changes with every training run), so repeat visits start at once and a retrained model at the
  // same address is never paired with stale weights.
  if (!("caches" in self) || !crypto.subtle) return fetchBytes(url);
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(version)));
  const key = `${new URL(url, location.href).href}?card=${[...hash.slice(0, 8)].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
  const cache = await caches.open(CACHE);
  const hit = await cache.match(key);
  if (hit) return hit.arrayBuffer();
  const bytes = await fetchBytes(url);
  await cache.put(key, new Response(bytes.slice(0)));
  return bytes;
}
async function loadModelFrom(folder) {
  const base = folder.endsWith("/") ? folder : folder + "/";
  const card = new TextDecoder().decode(await fetchBytes(base + "card.json"));
  const weights = await cachedFetch(base + "model.bpk", card);
  worker.postMessage({ type: "load-model", card, weights }, [weights]);
}
function showModel(info) {
  model = info;
  const sim = info.kind === "simulated"
    ? `<p class="simulated">This model was trained on SIMULATED Norman-design data (${esc(info.training_data)}), not on real measurements. Treat its predictions on real cells as untested.</p>` : "";
  $("model-info").innerHTML = `${sim}<p><b>${esc(info.name)}</b>: ${esc(info.description)}</p>
    <p>${info.panel.length} panel genes, ${info.candidates.length} candidate target genes
    ${info.validation_exact_top1 != null ? `· validation exact top-1 ${fmt(info.validation_exact_top1)}` : ""}</p>`;
  document.body.dataset.model = info.name;
}
$("model-files").onchange = async (e) => {
  clearError();
  const files = [...e.target.files];
  const card = files.find((f) => f.name.endsWith(".json"));
  const weights = files.find((f) => f.name.endsWith(".bpk"));
  if (!card || !weights) return showError("Choose both card.json and model.bpk from one model folder.");
  const buf = await weights.arrayBuffer();
  worker.postMessage({ type: "load-model", card: await card.text(), weights: buf }, [buf]);
};

// ---------- input ----------
async function analyse(name, bytes, url = null) {
  clearError();
  report = null; dataUrl = url;
  $("results").hidden = true; $("genome").hidden = true;
  started = performance.now();
  delete document.body.dataset.predicted;
  progress("reading " + name + "…", 0, 1);
  worker.postMessage({ type: "read", name, bytes }, [bytes]);
}
function predict() {
  cells = []; bulk = []; selected = { cell: null, group: null, gene: null };
  started = performance.now();
  delete document.body.dataset.predicted;
  renderCells(); renderBulk();
  worker.postMessage({ type: "predict", top: TOP, batch: BATCH, run: ++runId });
  document.body.dataset.run = String(runId);
}
function showReport(r, n) {
  report = r;
  const s = r.summary, g = r.genes;
  const missing = g.missing.length ? ` Missing (${g.missing.length}): ${esc(g.missing.slice(0, 15).join(", "))}${g.missing.length > 15 ? ", …" : ""}.` : "";
  $("report").innerHTML = `<p><b>${esc(s.file)}</b>: ${s.cells} cells × ${s.genes} genes (matrix <code>${esc(s.matrix)}</code>),
    values: <b>${esc(s.values)}</b>${s.kind === "simulated" ? " · <b>simulated data</b>" : ""}.
    Label column: ${s.label_column ? `<code>${esc(s.label_column)}</code> (${s.conditions} conditions; accuracy shown below)` : "none"}.</p>
    <p>${g.matched} of the model's ${g.panel_genes} panel genes found.${missing}</p>
    ${[...s.warnings, ...g.warnings].map((w) => `<p class="warning">${esc(w)}</p>`).join("")}`;
  const sel = $("group-by");
  sel.innerHTML = `<option value="">(all cells only)</option>` + s.obs_columns.map((c) => `<option>${esc(c)}</option>`).join("");
  if (s.label_column) sel.value = s.label_column;
  $("ood").hidden = !(g.atypical_cells > 0.2);
  $("ood").textContent = `${fmt(g.atypical_cells)} of cells look unlike the model's training cells: predictions may not be reliable.`;
  $("results").hidden = false;
  predict();
}
$("file").onchange = async (e) => { const f = e.target.files[0]; if (f) analyse(f.name, await f.arrayBuffer()); };
const drop = $("drop");
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.onkeydown = (e) => { if (e.target === drop && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); $("file").click(); } };
drop.ondrop = async (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) analyse(f.name, await f.arrayBuffer());
};
$("sample").onclick = async () => {
  try { analyse("sample.h5ad", await fetchBytes("sample/sample.h5ad"), "sample/sample.h5ad"); } catch (err) { showError(String(err)); }
};
$("cancel").onclick = () => worker.postMessage({ type: "cancel" });
$("share").onclick = async () => {
  // A link that opens this model, this file and this view (only for files that have a URL).
  const u = new URL(location.href.split("?")[0]);
  if (params.get("model")) u.searchParams.set("model", params.get("model"));
  u.searchParams.set("data", dataUrl);
  const c = cells.find((x) => x.index === selected.cell);
  if (c) u.searchParams.set("cell", c.cell);
  if (selected.gene) u.searchParams.set("gene", selected.gene);
  $("share-link").value = u.href;
  $("share-link").hidden = false;
  try { await navigator.clipboard.writeText(u.href); $("share").textContent = "Link copied"; } catch { $("share-link").select(); }
};

// ---------- tables ----------
let sortKey = "index", sortDir = 1;
const answerCell = (t, label) => t ? `<span class="${label && t.perturbation === label ? "hit" : ""}">${esc(t.perturbation)}</span> <span class="p">${fmt(t.probability)}</span>` : "";
function renderCells() {
  const q = $("search").value.trim().toUpperCase();
  let rows = cells.filter((c) => !q || c.cell.toUpperCase().includes(q) || c.top.some((t) => t.perturbation.toUpperCase().split("+").includes(q)) || (c.label || "").toUpperCase().includes(q));
  const key = { index: (c) => c.index, cell: (c) => c.cell, p: (c) => c.top[0]?.probability ?? 0, label: (c) => c.label || "" }[sortKey];
  rows = rows.sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * sortDir);
  const shown = rows.slice(0, 500);
  $("cells").tBodies[0].innerHTML = shown.map((c) => `<tr data-i="${c.index}" class="${selected.cell === c.index ? "sel" : ""}">
    <td>${c.index + 1}</td><td>${esc(c.cell)}</td><td>${answerCell(c.top[0], c.label)}</td><td>${answerCell(c.top[1], c.label)}</td>
    <td>${answerCell(c.top[2], c.label)}</td><td>${esc(c.label ?? "")}</td></tr>`).join("");
  $("more").textContent = rows.length > shown.length ? `showing 500 of ${rows.length} cells (filter to narrow)` : `${rows.length} cells`;
}
$("cells").tBodies[0].onclick = (e) => { const tr = e.target.closest("tr"); if (tr) selectCell(Number(tr.dataset.i)); };
$("cells").tHead.onclick = (e) => { const k = e.target.dataset.sort; if (!k) return; sortDir = sortKey === k ? -sortDir : 1; sortKey = k; renderCells(); };
$("search").oninput = renderCells;
function renderBulk() {
  $("bulk").tBodies[0].innerHTML = bulk.map((b, i) => `<tr data-g="${i}"><td>${esc(b.group)}</td><td>${b.cells}</td>
    <td>${answerCell(b.top[0], b.label)}</td><td>${answerCell(b.top[1], b.label)}</td><td>${answerCell(b.top[2], b.label)}</td></tr>`).join("");
  const labelled = bulk.filter((b) => b.label);
  const hits = labelled.filter((b) => b.top[0] && b.top[0].perturbation === b.label).length;
  $("bulk-accuracy").textContent = labelled.length ? `Pseudobulk exact top-1 against the labels: ${fmt(hits / labelled.length)} of ${labelled.length} groups.` : "";
}
$("bulk").tBodies[0].onclick = (e) => {
  const tr = e.target.closest("tr"); if (!tr) return;
  const b = bulk[Number(tr.dataset.g)];
  selected = { cell: null, group: b.group === "all cells" ? "all cells" : b.group, gene: firstGene(b.top[0]) };
  requestAttention();
};
$("group-by").onchange = () => worker.postMessage({ type: "pseudobulk", column: $("group-by").value, top: 3 });
function showAccuracy() {
  const labelled = cells.filter((c) => c.label);
  if (!labelled.length) { $("accuracy").textContent = ""; return; }
  const hits = labelled.filter((c) => c.top[0] && c.top[0].perturbation === c.label).length;
  $("accuracy").innerHTML = `<p>Against the file's labels: exact top-1 <b>${fmt(hits / labelled.length)}</b> of ${labelled.length} cells.</p>`;
}

// ---------- genome view ----------
const CHROMS = [...Array(22).keys()].map((i) => String(i + 1)).concat(["X", "Y"]);
let bands = null, lengths = {}, zoom = null, lastAttention = null, hoverPoints = [];
async function loadBands() {
  if (bands) return;
  const text = await (await fetch("cytoband_GRCh38.tsv")).text();
  bands = text.trim().split("\n").slice(1).map((l) => { const [c, s, e, name, stain] = l.split("\t"); return { c, s: +s, e: +e, name, stain }; });
  for (const b of bands) lengths[b.c] = Math.max(lengths[b.c] || 0, b.e);
}
const firstGene = (t) => (t && t.perturbation !== "control" ? t.perturbation.split("+")[0] : "control");
function selectCell(i, gene = null) {
  const c = cells.find((x) => x.index === i); if (!c) return;
  selected = { cell: i, group: null, gene: gene || firstGene(c.top[0]) };
  renderCells();
  requestAttention();
}
function requestAttention() {
  if (!selected.gene) return;
  fillQueryGenes();
  worker.postMessage({ type: "attention", cell: selected.cell, group: selected.cell === null ? selected.group : null, gene: selected.gene });
}
// The genes whose query can be shown: those of the selection's top answers first, then control
// and every other candidate.
function topAnswers() {
  const row = selected.cell !== null ? cells.find((c) => c.index === selected.cell) : bulk.find((b) => b.group === selected.group);
  return row ? row.top : [];
}
function fillQueryGenes() {
  const top = [...new Set(topAnswers().flatMap((t) => (t.perturbation === "control" ? [] : t.perturbation.split("+"))))];
  const rest = model.candidates.map((c) => c.symbol).filter((g) => !top.includes(g)).sort();
  const opt = (g, label) => `<option value="${esc(g)}"${g === selected.gene ? " selected" : ""}>${esc(label || g)}</option>`;
  $("query-gene").innerHTML = `<optgroup label="in the top answers">${top.map((g) => opt(g)).join("")}</optgroup>` +
    `<optgroup label="other">${opt("control", "control (no perturbation)")}${rest.map((g) => opt(g)).join("")}</optgroup>`;
}
$("query-gene").onchange = (e) => { selected.gene = e.target.value; requestAttention(); };
// One drawing, two targets: canvas on screen, SVG for export.
function scene(out, W, H) {
  const a = lastAttention, panel = model.panel;
  const chroms = zoom ? [zoom] : CHROMS;
  const gap = zoom ? 0 : 6e6, total = chroms.reduce((s, c) => s + lengths[c] + gap, 0);
  const x0 = 40, w = W - 60, scale = w / total, offs = {};
  let acc = 0; for (const c of chroms) { offs[c] = acc; acc += lengths[c] + gap; }
  const X = (c, pos) => x0 + (offs[c] + pos) * scale;
  const ideoY = H - 60, ideoH = 14, barTop = 30, barBottom = ideoY - 8;
  out.rect(0, 0, W, H, "#ffffff");
  out.text(10, 18, `${a.cell != null ? "cell " + cells.find((c) => c.index === a.cell)?.cell : "pseudobulk " + a.group} — attention of the ${a.gene} query over ${panel.length} genes`, "#222", 13);
  const stain = { gneg: "#f4f4f4", gpos25: "#c8c8c8", gpos50: "#999", gpos75: "#666", gpos100: "#333", acen: "#c55", gvar: "#bbd", stalk: "#99a" };
  for (const b of bands) if (offs[b.c] !== undefined) out.rect(X(b.c, b.s), ideoY, Math.max(0.5, (b.e - b.s) * scale), ideoH, stain[b.stain] || "#ddd");
  for (const c of chroms) { out.rect(X(c, 0), ideoY, lengths[c] * scale, ideoH, "none", "#555"); out.text(X(c, lengths[c] / 2) - 4, ideoY + 30, c, "#333", 11); }
  const max = Math.max(...a.weights, 1e-12);
  hoverPoints = [];
  panel.forEach((g, i) => {
    if (!g.chrom || offs[g.chrom] === undefined) return;
    const x = X(g.chrom, g.start), h = (a.weights[i] / max) * (barBottom - barTop);
    out.line(x, barBottom, x, barBottom - Math.max(h, 0.5), "#1f77b4", 1.5);
    hoverPoints.push({ x, g, w: a.weights[i] });
  });
  // Red marks: the queried gene and the genes of the top answer, at their own loci.
  const best = topAnswers()[0];
  const targets = [...new Set([a.gene, ...(best ? best.perturbation.split("+") : [])])].filter((g) => g !== "control");
  for (const t of targets) {
    const g = model.candidates.find((c) => c.symbol === t);
    if (g && g.chrom && offs[g.chrom] !== undefined) { const x = X(g.chrom, g.start); out.line(x, ideoY - 6, x, ideoY + ideoH + 6, "#d62728", 2); out.rect(x + 2, ideoY - 19, t.length * 7 + 2, 13, "#ffffff"); out.text(x + 3, ideoY - 8, t, "#d62728", 11); }
  }
  return { offs, X, x0, scale, chroms, gap };
}
function canvasOut(ctx) {
  return {
    rect: (x, y, w, h, fill, stroke) => { if (fill !== "none") { ctx.fillStyle = fill; ctx.fillRect(x, y, w, h); } if (stroke) { ctx.strokeStyle = stroke; ctx.strokeRect(x, y, w, h); } },
    line: (x1, y1, x2, y2, color, width) => { ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke(); },
    text: (x, y, s, color, size) => { ctx.fillStyle = color; ctx.font = `${size}px sans-serif`; ctx.fillText(s, x, y); },
  };
}
function svgOut(parts) {
  return {
    rect: (x, y, w, h, fill, stroke) => parts.push(`<rect x="${x.toFixed(1)}" y="${y}" width="${w.toFixed(2)}" height="${h}" fill="${fill}"${stroke ? ` stroke="${stroke}"` : ""}/>`),
    line: (x1, y1, x2, y2, color, width) => parts.push(`<line x1="${x1.toFixed(1)}" y1="${y1.toFixed(1)}" x2="${x2.toFixed(1)}" y2="${y2.toFixed(1)}" stroke="${color}" stroke-width="${width}"/>`),
    text: (x, y, s, color, size) => parts.push(`<text x="${x.toFixed(1)}" y="${y}" fill="${color}" font-size="${size}" font-family="sans-serif">${esc(s)}</text>`),
  };
}
let layout = null;
async function drawGenome(a) {
  await loadBands();
  lastAttention = a;
  $("genome").hidden = false;
  const cv = $("genome-canvas");
  layout = scene(canvasOut(cv.getContext("2d")), cv.width, cv.height);
  $("genome-caption").textContent = `Blue bars: attention weight of each panel gene (mean over heads), placed at its GRCh38 locus. Red marks: the loci of the queried gene and of the top answer's genes. ` +
    (model.kind === "simulated" ? "Model trained on SIMULATED data." : "");
  $("zoom-out").hidden = !zoom;
  $("share").hidden = !dataUrl; // a dropped file has no address to link to
  $("share").textContent = "Copy link to this view";
  document.body.dataset.genomeDrawn = String(a.weights.length);
}
$("genome-canvas").onmousemove = (e) => {
  const r = e.target.getBoundingClientRect(), x = (e.clientX - r.left) * (e.target.width / r.width);
  let best = null; for (const p of hoverPoints) if (Math.abs(p.x - x) < 4 && (!best || p.w > best.w)) best = p;
  $("hover").textContent = best ? `${best.g.symbol} — chr${best.g.chrom}:${best.g.start.toLocaleString()} — weight ${best.w.toFixed(4)}` : "";
};
$("genome-canvas").onclick = (e) => {
  if (!layout || zoom) return;
  const r = e.target.getBoundingClientRect(), x = (e.clientX - r.left) * (e.target.width / r.width);
  const c = layout.chroms.find((c) => x >= layout.X(c, 0) && x <= layout.X(c, lengths[c]));
  if (c) { zoom = c; drawGenome(lastAttention); }
};
$("zoom-out").onclick = () => { zoom = null; drawGenome(lastAttention); };
$("export-png").onclick = () => $("genome-canvas").toBlob((b) => download("attention.png", b, "image/png"));
$("export-svg").onclick = () => {
  const parts = [], cv = $("genome-canvas");
  scene(svgOut(parts), cv.width, cv.height);
  download("attention.svg", `<svg xmlns="http://www.w3.org/2000/svg" width="${cv.width}" height="${cv.height}">${parts.join("")}</svg>`, "image/svg+xml");
};

// ---------- export ----------
function download(name, data, type) {
  const blob = data instanceof Blob ? data : new Blob([data], { type });
  const a = document.createElement("a"); a.href = URL.createObjectURL(blob); a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}
$("export-csv").onclick = () => worker.postMessage({ type: "export-csv", top: TOP });
$("export-json").onclick = () => download("predictions.json", JSON.stringify({ model: model?.name, model_kind: model?.kind, cells, pseudobulk: bulk }, null, 1), "application/json");

// Read-only view for tests and for people poking around in the console.
window.__mambaPerturb = { cells: () => cells, bulk: () => bulk, model: () => model, selected: () => selected };

// ---------- start: default model (or ?model=), then ?data= if given ----------
(async () => {
  try {
    chooseBackend(params.get("backend") || "auto");
    await loadModelFrom(params.get("model") || "models/default/");
    const data = params.get("data");
    if (data) analyse(data.split("/").pop().split("?")[0], await fetchBytes(data), data);
  } catch (err) { showError("Could not load: " + err.message); }
})();
