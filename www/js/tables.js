// The results tables: per-cell answers (sort, filter by gene) and pseudobulk groups, with the
// accuracy against the file's labels as the core computed it.
import { $, esc, percent } from "./dom.js";

const SHOWN = 500;
let sortKey = "index", sortDir = 1;

const answer = (t, label) => (t
  ? `<span class="${label && t.perturbation === label ? "hit" : ""}">${esc(t.perturbation)}</span> <span class="p">${percent(t.probability)}</span>`
  : "");

export function renderCells(state) {
  const q = $("search").value.trim().toUpperCase();
  const matches = (c) => !q || c.cell.toUpperCase().includes(q) || (c.label || "").toUpperCase().includes(q)
    || c.top.some((t) => t.perturbation.toUpperCase().split("+").includes(q));
  const key = { index: (c) => c.index, cell: (c) => c.cell, p: (c) => c.top[0]?.probability ?? 0, label: (c) => c.label || "" }[sortKey];
  const rows = state.cells.filter(matches).sort((a, b) => (key(a) > key(b) ? 1 : key(a) < key(b) ? -1 : 0) * sortDir);
  $("cells").tBodies[0].innerHTML = rows.slice(0, SHOWN).map((c) => `<tr data-i="${c.index}" class="${state.selected.cell === c.index ? "sel" : ""}">
    <td>${c.index + 1}</td><td>${esc(c.cell)}</td><td>${answer(c.top[0], c.label)}</td><td>${answer(c.top[1], c.label)}</td>
    <td>${answer(c.top[2], c.label)}</td><td>${esc(c.label ?? "")}</td></tr>`).join("");
  $("more").textContent = rows.length > SHOWN ? `showing ${SHOWN} of ${rows.length} cells (filter to narrow)` : `${rows.length} cells`;
}

/** Clicking a column header sorts by it (again: reverses). */
export function sortBy(key, state) {
  if (!key) return;
  sortDir = sortKey === key ? -sortDir : 1;
  sortKey = key;
  renderCells(state);
}

export function renderBulk(state) {
  $("bulk").tBodies[0].innerHTML = state.bulk.map((b, i) => `<tr data-g="${i}"><td>${esc(b.group)}</td><td>${b.cells}</td>
    <td>${answer(b.top[0], b.label)}</td><td>${answer(b.top[1], b.label)}</td><td>${answer(b.top[2], b.label)}</td></tr>`).join("");
  const a = state.bulkAccuracy;
  $("bulk-accuracy").textContent = a && a.n ? `Pseudobulk exact top-1 against the labels: ${percent(a.exact_top1)} of ${a.n} groups.` : "";
}

/** @param {import("./protocol.js").CellAccuracy | null} a */
export function renderCellAccuracy(a) {
  $("accuracy").textContent = a && a.scores.n
    ? `Against the file's labels: exact top-1 ${percent(a.scores.exact_top1)} of ${a.scores.n} cells; at least one gene right ${percent(a.scores.any_gene_hit1)}.`
      + (a.outside_the_model ? ` ${a.outside_the_model} labelled cells name genes this model cannot predict and are left out.` : "")
    : "";
}
