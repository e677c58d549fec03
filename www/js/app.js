// The page's wiring: what a person does (drop a file, pick a model, click a cell) becomes a request
// to the analysis worker, and each reply is handed to the view that shows it. Everything computed
// (predictions, accuracy, warnings, exports) comes from the Rust core; this file only routes.
import { $, clearError, download, esc, percent, showError, showProgress } from "./dom.js";
import { on, send, startRun } from "./worker-client.js";
import { cellQuery, renderBulk, renderCellAccuracy, renderCells, sortBy } from "./tables.js";
import { drawGenome, hideGenome } from "./genome-view.js";
import { linkTo, linked } from "./share-link.js";
import { fetchBytes } from "./model-source.js";
import { exposeState, mark, unmark } from "./test-hooks.js";
import { hideLabels, hideWhy, showConfusion, showLabelCheck, showTopGenes, showWhy } from "./views.js";
import { CELL_TOP, CONFUSION_ANSWERS } from "./protocol.js";

const noCells = () => ({ rows: [], matched: 0, predicted: 0, found: null });
const state = {
  model: null, report: null, table: noCells(), bulk: [], bulkAccuracy: null,
  selected: { cell: null, group: null, gene: null },
  selectedRow: null, // the selected cell's answers (it may be outside the rows shown)
  tableShown: false, // whether this run's first rows are shown
  dataUrl: null,    // where the open file came from, when it can be linked to
  started: 0,
  link: { cell: linked.cell, gene: linked.gene }, // the view a shared link opens, used once
};
// All predicted cells, from the core (what the browser tests compare with the CLI's).
const allCellsWaiting = [];
function allCells() {
  if (!state.report) return Promise.resolve([]);
  return new Promise((resolve) => {
    allCellsWaiting.push(resolve);
    send({ type: "view", request: { view: "cells", search: "", order: "index", descending: false, limit: 1e9, top: CELL_TOP, tag: "all" }, csv: false });
  });
}
exposeState(state, { cells: allCells });

// ---------- model and backend ----------
function showModel(info) {
  state.model = info;
  const sim = info.kind === "simulated"
    ? `<p class="simulated">This model was trained on SIMULATED Norman-design data (${esc(info.training_data)}), not on real measurements. Treat its predictions on real cells as untested.</p>` : "";
  $("model-info").innerHTML = `${sim}<p><b>${esc(info.name)}</b>: ${esc(info.description)}</p>
    <p>${info.panel.length} panel genes, ${info.candidates.length} candidate target genes
    ${info.validation_exact_top1 != null ? `· validation exact top-1 ${percent(info.validation_exact_top1)}` : ""}</p>`;
  mark("model", info.name);
}
const backendName = (b) => (b === "webgpu" ? "WebGPU" : "CPU (WebAssembly)");
function showBackend(m) {
  const gpu = m.active === "webgpu" && m.gpu.name ? ` on ${m.gpu.name}` : "";
  $("backend").textContent = backendName(m.active) + gpu + (m.note ? ` — ${m.note}` : "");
  $("backend-choice").value = m.choice;
  mark("backend", m.active);
  if (state.report) predict(); // same file, new backend: predict again
}
function chooseBackend(choice) {
  $("backend").textContent = "switching…";
  unmark("backend");
  send({ type: "cancel" });
  send({ type: "backend", choice });
}
$("backend-choice").onchange = (e) => chooseBackend(e.target.value);
$("model-files").onchange = (e) => { clearError(); send({ type: "load-model", files: [...e.target.files] }); };

// ---------- input ----------
/** A new file: everything shown about the previous one goes before reading starts. */
function openFile(file, url = null) {
  clearError();
  Object.assign(state, { report: null, table: noCells(), bulk: [], bulkAccuracy: null, dataUrl: url, started: performance.now() });
  Object.assign(state, { selected: { cell: null, group: null, gene: null }, selectedRow: null });
  $("report").textContent = "";
  $("control-label").value = ""; // a new file is measured against all its cells until asked otherwise
  $("batch-column").value = "";
  $("results").hidden = true;
  hideGenome(); hideLabels(); hideWhy();
  unmark("predicted", "firstRowsMs", "allCellsMs", "genomeDrawn", "confusionAccuracy", "labelCheck", "why");
  showProgress(`reading ${file.name}…`, 0, 1);
  state.file = file;
  send({ type: "open", file, orientation: $("orientation").value });
}
async function openUrl(url) {
  const name = url.split("/").pop().split("?")[0];
  openFile(new File([await fetchBytes(url)], name), url);
}
function showReport(r) {
  state.report = r;
  const s = r.summary, g = r.genes;
  const missing = g.missing.length ? ` Missing (${g.missing.length}): ${esc(g.missing.slice(0, 15).join(", "))}${g.missing.length > 15 ? ", …" : ""}.` : "";
  $("report").innerHTML = `<p><b>${esc(s.file)}</b>: ${s.cells} cells × ${s.genes} genes (matrix <code>${esc(s.matrix)}</code>),
    values: <b>${esc(s.values)}</b>${s.kind === "simulated" ? " · <b>simulated data</b>" : ""}.
    Label column: ${s.label_column ? `<code>${esc(s.label_column)}</code> (${s.conditions} conditions; accuracy shown below)` : "none"}.</p>
    <p>${g.matched} of the model's ${g.panel_genes} panel genes found (absent ones are left out, not read as zero); each gene is measured against ${esc(g.reference)}.${missing}</p>
    ${[...s.warnings, ...g.warnings].map((w) => `<p class="warning">${esc(w)}</p>`).join("")}`;
  $("group-by").innerHTML = `<option value="">(all cells only)</option>` + r.group_columns.map((c) => `<option value="${esc(c)}">${esc(c)}</option>`).join("");
  if (s.label_column) $("group-by").value = s.label_column;
  const batch = $("batch-column").value;
  $("batch-column").innerHTML = `<option value="">(none)</option>` + r.batch_columns.map((c) => `<option value="${esc(c)}">${esc(c)}</option>`).join("");
  $("batch-column").value = r.batch_columns.includes(batch) ? batch : "";
  $("control-labels").innerHTML = r.control_labels.map((c) => `<option value="${esc(c)}">`).join("");
  $("reference-box").hidden = !s.label_column && !r.batch_columns.length;
  $("results").hidden = false;
  predict();
}
function predict() {
  Object.assign(state, { table: noCells(), bulk: [], bulkAccuracy: null, started: performance.now(), tableShown: false });
  Object.assign(state, { selected: { cell: null, group: null, gene: null }, selectedRow: null });
  unmark("predicted");
  renderCells(state); renderBulk(state); renderCellAccuracy(null);
  mark("run", startRun());
}
// Another orientation re-reads the open file (CSV/TSV only; an .h5ad has its own).
$("orientation").onchange = () => { if (state.file) openFile(state.file, state.dataUrl); };
$("file").onchange = (e) => { const f = e.target.files[0]; if (f) openFile(f); };
const drop = $("drop");
drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
drop.ondragleave = () => drop.classList.remove("over");
drop.onkeydown = (e) => { if (e.target === drop && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); $("file").click(); } };
drop.ondrop = (e) => {
  e.preventDefault(); drop.classList.remove("over");
  const f = e.dataTransfer.files[0];
  if (f) openFile(f);
};
$("apply-reference").onclick = () => {
  clearError();
  send({ type: "cancel" });
  send({ type: "reference", control: $("control-label").value.trim() || null, batch: $("batch-column").value || null });
};
$("sample").onclick = () => openUrl("sample/sample.h5ad").catch((err) => showError(String(err)));
$("cancel").onclick = () => send({ type: "cancel" });

// ---------- predictions ----------
function onCells(m) {
  const workers = m.workers > 1 ? `, ${m.workers} workers` : "";
  showProgress(`predicting: ${m.done} of ${m.total} cells (${(m.done / (m.ms / 1000)).toFixed(0)} cells/s, ${backendName(m.backend)}${workers})`, m.done, m.total);
  if (!state.tableShown) { state.tableShown = true; refreshTable(); } // the first cells, shown at once
  if (state.link.cell !== null) findLinkedCell(false);
}
const refreshTable = () => send({ type: "view", request: cellQuery(), csv: false });
// A shared link's cell, selected once predicted; `last`: the run is over, so a cell not found is not in the file.
const findLinkedCell = (last) => send({ type: "view", request: cellQuery({ limit: 0, find: state.link.cell, tag: last ? "find-last" : "find" }), csv: false });
function onCellTable(t, request) {
  const link = state.link;
  if (request.tag === "all") { allCellsWaiting.shift()?.(t.rows); return; }
  if (request.tag === "find" || request.tag === "find-last") {
    if (link.cell === null) return;
    if (t.found) { link.cell = null; selectRow(t.found, link.gene); link.gene = null; }
    else if (request.tag === "find-last") { showError(`The link asks for cell '${link.cell}', which this file does not have.`); link.cell = null; }
    return;
  }
  state.table = t;
  if (!document.body.dataset.firstRowsMs && t.rows.length) mark("firstRowsMs", performance.now() - state.started);
  renderCells(state);
  if (link.cell === null && state.selected.cell === null && state.selected.group === null && t.rows.length) selectRow(t.rows[0]);
}
function onPredicted(m) {
  $("progress").hidden = true;
  mark("predicted", m.done); mark("backendUsed", m.backend); mark("workers", m.workers); mark("jobMs", m.jobMs ?? ""); mark("allCellsMs", performance.now() - state.started);
  if (state.link.cell !== null) findLinkedCell(!m.cancelled);
  refreshTable();
  renderCellAccuracy(m.accuracy);
  send({ type: "group-by", column: $("group-by").value || null });
  if (state.report.summary.label_column) {
    send({ type: "view", request: { view: "confusion", answers: CONFUSION_ANSWERS }, csv: false });
    send({ type: "view", request: { view: "label-check" }, csv: false });
  }
  if (state.selected.cell !== null) requestWhy(state.selected.cell);
}
function onPseudobulk(m) {
  state.bulk = m.groups; state.bulkAccuracy = m.accuracy;
  renderBulk(state);
}
$("cells").tBodies[0].onclick = (e) => {
  const tr = e.target.closest("tr");
  const row = tr && state.table.rows.find((c) => c.index === Number(tr.dataset.i));
  if (row) selectRow(row);
};
$("cells").tHead.onclick = (e) => { if (sortBy(e.target.dataset.sort)) refreshTable(); };
$("search").oninput = () => refreshTable();
$("bulk").tBodies[0].onclick = (e) => {
  const tr = e.target.closest("tr"); if (!tr) return;
  const b = state.bulk[Number(tr.dataset.g)];
  Object.assign(state, { selected: { cell: null, group: b.group, gene: firstGene(b.top[0]) }, selectedRow: null });
  hideWhy();
  requestAttention();
};
$("group-by").onchange = () => send({ type: "group-by", column: $("group-by").value || null });
$("export-csv").onclick = () => send({ type: "export", format: "csv" });
$("export-json").onclick = () => send({ type: "export", format: "json" });
on("export", (m) => download(`${m.name || "predictions"}.${m.format}`, m.text, m.format === "csv" ? "text/csv" : "application/json"));
const exportView = (request) => send({ type: "view", request, csv: true });
$("confusion-csv").onclick = () => exportView({ view: "confusion", answers: CONFUSION_ANSWERS });
$("label-check-csv").onclick = () => exportView({ view: "label-check" });
$("why-csv").onclick = () => exportView({ view: "why", cell: state.selected.cell });
$("top-genes-csv").onclick = () => { const { cell, group, gene } = state.selected; exportView({ view: "attention", cell, group: cell === null ? group : null, gene }); };
const VIEWS = { confusion: showConfusion, "label-check": showLabelCheck, why: (w) => w.index === state.selected.cell && showWhy(w), cells: onCellTable };
on("view", (m) => VIEWS[m.request.view](m.result, m.request));

// ---------- attention along the genome ----------
const firstGene = (t) => (t && t.perturbation !== "control" ? t.perturbation.split("+")[0] : "control");
const selectionRow = () => (state.selected.cell !== null ? state.selectedRow : state.bulk.find((b) => b.group === state.selected.group));
function selectRow(c, gene = null) {
  Object.assign(state, { selected: { cell: c.index, group: null, gene: gene || firstGene(c.top[0]) }, selectedRow: c });
  renderCells(state);
  requestAttention();
  requestWhy(c.index);
}
const requestWhy = (cell) => send({ type: "view", request: { view: "why", cell }, csv: false });
function requestAttention() {
  if (!state.selected.gene) return;
  fillQueryGenes();
  const { cell, group, gene } = state.selected;
  send({ type: "attention", cell, group: cell === null ? group : null, gene });
}
// The genes whose query can be shown: those of the selection's top answers first, then control
// and every other candidate.
function fillQueryGenes() {
  const top = [...new Set((selectionRow()?.top || []).flatMap((t) => (t.perturbation === "control" ? [] : t.perturbation.split("+"))))];
  const rest = state.model.candidates.map((c) => c.symbol).filter((g) => !top.includes(g)).sort();
  const opt = (g, label) => `<option value="${esc(g)}"${g === state.selected.gene ? " selected" : ""}>${esc(label || g)}</option>`;
  $("query-gene").innerHTML = `<optgroup label="in the top answers">${top.map((g) => opt(g)).join("")}</optgroup>`
    + `<optgroup label="other">${opt("control", "control (no perturbation)")}${rest.map((g) => opt(g)).join("")}</optgroup>`;
}
$("query-gene").onchange = (e) => { state.selected.gene = e.target.value; requestAttention(); };
function onAttention(a) {
  const s = state.selected;
  if (a.gene !== s.gene || (a.cell ?? null) !== s.cell) return; // only the latest request's answer is drawn
  const best = selectionRow()?.top[0];
  const title = a.cell != null ? `cell ${state.selectedRow?.cell}` : `group ${a.group} (mean over ${a.cells_used} cells)`;
  const marked = [...new Set([a.gene, ...(best ? best.perturbation.split("+") : [])])].filter((g) => g !== "control");
  drawGenome({ attention: a, title, model: state.model, marked });
  showTopGenes(a);
  $("share").hidden = !state.dataUrl; // a dropped file has no address to link to
  $("share").textContent = "Copy link to this view";
}
$("share").onclick = async () => {
  const href = linkTo({ dataUrl: state.dataUrl, cell: state.selected.cell !== null ? state.selectedRow?.cell : null, gene: state.selected.gene });
  $("share-link").value = href;
  $("share-link").hidden = false;
  try { await navigator.clipboard.writeText(href); $("share").textContent = "Link copied"; } catch { $("share-link").select(); }
};

// ---------- replies ----------
on("error", (m) => showError(m.message));
on("model", (m) => showModel(m.info));
on("backend", showBackend);
on("progress", (m) => showProgress(m.stage + "…", 0, 1));
on("report", (m) => showReport(m.report));
on("cells", onCells);
on("predicted", onPredicted);
on("pseudobulk", onPseudobulk);
on("attention", onAttention);

// ---------- start: the backend, the default model (or ?model=), then ?data= if given ----------
chooseBackend(linked.backend || "auto");
send({ type: "load-model", folder: new URL(linked.model || "models/default/", location.href).href });
if (linked.data) openUrl(linked.data).catch((err) => showError("Could not load: " + err.message));
