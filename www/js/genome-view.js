// Attention along the genome: each panel gene's attention weight at its GRCh38 locus over a
// cytoband ideogram of chromosomes 1–22, X, Y; hover names the gene, a click zooms into a
// chromosome; PNG and SVG export. One drawing routine, two targets (canvas on screen, SVG file).
import { $, download } from "./dom.js";
import { canvasOut, svgFile } from "./draw.js";
import { mark } from "./test-hooks.js";

const CHROMS = [...Array(22).keys()].map((i) => String(i + 1)).concat(["X", "Y"]);
const STAIN = { gneg: "#f4f4f4", gpos25: "#c8c8c8", gpos50: "#999", gpos75: "#666", gpos100: "#333", acen: "#c55", gvar: "#bbd", stalk: "#99a" };
let bands = null;
const lengths = {};
let zoom = null, shown = null, layout = null, hoverPoints = [];

async function loadBands() {
  if (bands) return;
  const text = await (await fetch("cytoband_GRCh38.tsv")).text();
  bands = text.trim().split("\n").slice(1).map((l) => { const [c, s, e, name, stain] = l.split("\t"); return { c, s: +s, e: +e, name, stain }; });
  for (const b of bands) lengths[b.c] = Math.max(lengths[b.c] || 0, b.e);
}

// `view`: {attention: {gene, weights}, title, model: {panel, candidates}, marked: gene symbols to mark in red}
function scene(out, W, H, view) {
  const { attention: a, model } = view;
  const chroms = zoom ? [zoom] : CHROMS;
  const gap = zoom ? 0 : 6e6, total = chroms.reduce((s, c) => s + lengths[c] + gap, 0);
  const x0 = 40, scale = (W - 60) / total, offs = {};
  let acc = 0; for (const c of chroms) { offs[c] = acc; acc += lengths[c] + gap; }
  const X = (c, pos) => x0 + (offs[c] + pos) * scale;
  const ideoY = H - 60, ideoH = 14, barTop = 30, barBottom = ideoY - 8;
  out.rect(0, 0, W, H, "#ffffff");
  out.text(10, 18, `${view.title} — attention of the ${a.gene} query over ${model.panel.length} genes`, "#222", 13);
  for (const b of bands) if (offs[b.c] !== undefined) out.rect(X(b.c, b.s), ideoY, Math.max(0.5, (b.e - b.s) * scale), ideoH, STAIN[b.stain] || "#ddd");
  for (const c of chroms) { out.rect(X(c, 0), ideoY, lengths[c] * scale, ideoH, "none", "#555"); out.text(X(c, lengths[c] / 2) - 4, ideoY + 30, c, "#333", 11); }
  const max = Math.max(...a.weights, 1e-12);
  hoverPoints = [];
  model.panel.forEach((g, i) => {
    if (!g.chrom || offs[g.chrom] === undefined) return;
    const x = X(g.chrom, g.start), h = (a.weights[i] / max) * (barBottom - barTop);
    out.line(x, barBottom, x, barBottom - Math.max(h, 0.5), "#1f77b4", 1.5);
    hoverPoints.push({ x, g, w: a.weights[i] });
  });
  for (const t of view.marked) { // red marks: the queried gene and the genes of the top answer, at their loci
    const g = model.candidates.find((c) => c.symbol === t);
    if (!g || !g.chrom || offs[g.chrom] === undefined) continue;
    const x = X(g.chrom, g.start);
    out.line(x, ideoY - 6, x, ideoY + ideoH + 6, "#d62728", 2);
    out.rect(x + 2, ideoY - 19, t.length * 7 + 2, 13, "#ffffff");
    out.text(x + 3, ideoY - 8, t, "#d62728", 11);
  }
  return { X, chroms };
}

export async function drawGenome(view) {
  await loadBands();
  shown = view;
  $("genome").hidden = false;
  const cv = $("genome-canvas");
  layout = scene(canvasOut(cv.getContext("2d")), cv.width, cv.height, view);
  $("genome-caption").textContent = "Blue bars: attention weight of each panel gene (mean over heads), placed at its GRCh38 locus. "
    + "Red marks: the loci of the queried gene and of the top answer's genes. " + (view.model.kind === "simulated" ? "Model trained on SIMULATED data." : "");
  $("zoom-out").hidden = !zoom;
  mark("genomeDrawn", view.attention.weights.length);
}

export const hideGenome = () => { $("genome").hidden = true; shown = null; };

const canvasX = (e) => { const r = e.target.getBoundingClientRect(); return (e.clientX - r.left) * (e.target.width / r.width); };
$("genome-canvas").onmousemove = (e) => {
  const x = canvasX(e);
  let best = null; for (const p of hoverPoints) if (Math.abs(p.x - x) < 4 && (!best || p.w > best.w)) best = p;
  $("hover").textContent = best ? `${best.g.symbol} — chr${best.g.chrom}:${best.g.start.toLocaleString()} — weight ${best.w.toFixed(4)}` : "";
};
$("genome-canvas").onclick = (e) => {
  if (!layout || zoom) return;
  const x = canvasX(e);
  const c = layout.chroms.find((c) => x >= layout.X(c, 0) && x <= layout.X(c, lengths[c]));
  if (c) { zoom = c; drawGenome(shown); }
};
$("zoom-out").onclick = () => { zoom = null; drawGenome(shown); };
$("export-png").onclick = () => $("genome-canvas").toBlob((b) => download("attention.png", b, "image/png"));
$("export-svg").onclick = () => download("attention.svg", svgFile($("genome-canvas"), (out, W, H) => scene(out, W, H, shown)), "image/svg+xml");
