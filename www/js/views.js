// The views that explain and check: the confusion picture and per-label table, the label check, the
// most attended genes and a cell's "why". The core computes every number (src/analysis/views.rs);
// this file draws them (through draw.js, so the SVG export is the picture on screen).
import { $, download, esc, percent } from "./dom.js";
import { canvasOut, svgFile } from "./draw.js";
import { mark } from "./test-hooks.js";

let confusion = null;

function confusionScene(out, W, H, c) {
  const n = c.answers.length, cols = n + 1, left = 150, top = 120, cell = Math.min((W - left - 10) / cols, (H - top - 10) / n);
  const max = Math.max(1, ...c.counts.flat());
  out.rect(0, 0, W, H, "#ffffff");
  out.text(10, 18, `True label (rows) × top prediction (columns): exact top-1 ${percent(c.scores.exact_top1)} of ${c.scores.n} cells`, "#222", 13);
  c.answers.concat(["other"]).forEach((a, j) => out.text(left + j * cell + cell / 2, top - 6, a, "#333", 10, -60));
  c.answers.forEach((a, i) => {
    out.text(8, top + i * cell + cell * 0.65, a, "#333", 10);
    c.counts[i].forEach((v, j) => {
      const shade = Math.round(255 - (v / max) * 200);
      out.rect(left + j * cell, top + i * cell, cell - 1, cell - 1, j === i ? `rgb(${shade},255,${shade})` : `rgb(255,${shade},${shade})`);
      if (v) out.text(left + j * cell + 3, top + i * cell + cell * 0.65, String(v), "#000", 10);
    });
  });
}

/** The confusion picture and the per-label table. */
export function showConfusion(c) {
  confusion = c;
  $("labels").hidden = false;
  const cv = $("confusion-canvas");
  confusionScene(canvasOut(cv.getContext("2d")), cv.width, cv.height, c);
  $("answers").tBodies[0].innerHTML = c.per_answer.map((r) => `<tr><td>${esc(r.answer)}</td><td>${r.cells}</td><td>${percent(r.exact_top1)}</td>
    <td>${percent(r.any_gene_hit1)}</td><td>${esc(r.most_predicted)}</td></tr>`).join("");
  mark("confusionAccuracy", c.scores.exact_top1);
}
$("confusion-png").onclick = () => $("confusion-canvas").toBlob((b) => download("confusion.png", b, "image/png"));
$("confusion-svg").onclick = () => download("confusion.svg", svgFile($("confusion-canvas"), (out, W, H) => confusionScene(out, W, H, confusion)), "image/svg+xml");

export function showLabelCheck(l) {
  const t = l.totals;
  $("label-check-summary").textContent = `${t.cells} labelled cells: ${t.consistent} consistent with their label, `
    + `${t.non_responders} likely non-responders (profile favours control at odds of 49 : 1 or more), ${t.unclear} unclear (favours control weakly), `
    + `${t.mislabelled} likely mislabelled (favours another answer).`;
  const rows = [...l.per_label].sort((a, b) => b.non_responders + b.mislabelled - a.non_responders - a.mislabelled);
  $("label-check").tBodies[0].innerHTML = rows.map((r) => `<tr><td>${esc(r.label)}</td><td>${r.cells}</td><td>${r.consistent}</td>
    <td>${r.non_responders}</td><td>${r.unclear}</td><td>${r.mislabelled}</td></tr>`).join("");
  mark("labelCheck", `${t.consistent}/${t.non_responders}/${t.unclear}/${t.mislabelled}`);
}

/** The most attended genes of the attention on screen. */
export function showTopGenes(a) {
  const scope = a.cell != null ? "this cell" : `the mean over ${a.cells_used} of the group's ${a.group_cells} cells`;
  $("top-genes").innerHTML = `<p class="note">Query of ${esc(a.gene)}, ${esc(scope)}:</p><ol>`
    + a.top_genes.map((g) => `<li>${esc(g.gene)} <span class="p">chr${esc(g.chrom ?? "?")}:${(g.start ?? 0).toLocaleString()} · ${g.weight.toFixed(4)}</span></li>`).join("") + "</ol>";
}

export function showWhy(w) {
  $("why-box").hidden = false;
  const num = (v, d = 2) => (v == null ? "—" : v.toFixed(d));
  $("why").tBodies[0].innerHTML = w.evidence.map((e) => `<tr><td>${esc(e.gene)}</td><td>${esc(e.answer)} <span class="p">${percent(e.probability)}</span></td>
    <td>${e.measured ? num(e.level) : "not measured"}</td><td>${num(e.reference_mean)}</td><td>${num(e.z, 1)}</td>
    <td>${e.attention_elsewhere.map((g) => `${esc(g.gene)} <span class="p">${g.weight.toFixed(3)}</span>`).join(", ")}</td></tr>`).join("");
  mark("why", w.index);
}
export const hideWhy = () => { $("why-box").hidden = true; };
export const hideLabels = () => { $("labels").hidden = true; };
