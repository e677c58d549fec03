// The results tables: per-cell answers (searched and sorted by the core) and pseudobulk groups,
// with the accuracy against the file's labels as the core computed it.
import { $, esc, percent } from "./dom.js";
import { CELL_TOP } from "./protocol.js";

const SHOWN = 500;
let order = "index", descending = false;

const answer = (t, label) => (t
  ? `<span class="${label && t.perturbation === label ? "hit" : ""}">${esc(t.perturbation)}</span> <span class="p">${percent(t.probability)}</span>`
  : "");

/** The core's `cells` view (src/analysis/cell_table.rs) for the table as the person set it up: the
 * search box and the sorted column; `extra` adds to it (a cell to find, a tag). */
export function cellQuery(extra = {}) {
  return { view: "cells", search: $("search").value.trim(), order, descending, limit: SHOWN, top: CELL_TOP, ...extra };
}

/** @param {{table: import("./protocol.js").CellTable, selected: {cell: number | null}}} state */
export function renderCells(state) {
  const t = state.table;
  $("cells").tBodies[0].innerHTML = t.rows.map((c) => `<tr data-i="${c.index}" class="${state.selected.cell === c.index ? "sel" : ""}">
    <td>${c.index + 1}</td><td>${esc(c.cell)}</td><td>${answer(c.top[0], c.label)}</td><td>${answer(c.top[1], c.label)}</td>
    <td>${answer(c.top[2], c.label)}</td><td>${esc(c.label ?? "")}</td></tr>`).join("");
  $("more").textContent = t.matched > t.rows.length ? `showing ${t.rows.length} of ${t.matched} cells (filter to narrow)` : `${t.matched} cells`;
}

/** Clicking a column header sorts by it (again: reverses). Returns whether the order changed. */
export function sortBy(key) {
  if (!key) return false;
  descending = order === key ? !descending : false;
  order = key;
  return true;
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
