// Runs the Rust core (WebAssembly) off the main thread: reading, normalising and predicting never
// freeze the page. One Session holds the model, the file and the predictions so far.
import init, { Session } from "./pkg/mamba_perturb.js";

let session = null;
let cancelled = false;
const ready = init().then(() => { session = new Session(); });

const reply = (msg, transfer) => self.postMessage(msg, transfer || []);
const pause = () => new Promise((r) => setTimeout(r, 0)); // lets a "cancel" message in

self.onmessage = async (e) => {
  const m = e.data;
  try {
    await ready;
    if (m.type === "cancel") { cancelled = true; return; }
    if (m.type === "load-model") {
      reply({ type: "model", info: session.load_model(m.card, new Uint8Array(m.weights)) });
    } else if (m.type === "read") {
      reply({ type: "progress", stage: "reading and normalising", done: 0, total: 1 });
      await pause();
      const report = session.read_file(m.name, new Uint8Array(m.bytes), undefined);
      reply({ type: "report", report, cells: session.cell_count() });
    } else if (m.type === "predict") {
      cancelled = false;
      const n = session.cell_count();
      const t0 = performance.now();
      for (let start = 0; start < n; start += m.batch) {
        if (cancelled) { reply({ type: "cancelled", done: start, total: n }); return; }
        const rows = await session.predict_batch(start, m.batch, m.top);
        reply({ type: "cells", rows, done: Math.min(start + m.batch, n), total: n, ms: performance.now() - t0 });
        await pause();
      }
      reply({ type: "predicted", total: n, ms: performance.now() - t0 });
    } else if (m.type === "pseudobulk") {
      reply({ type: "bulk", rows: await session.pseudobulk(m.column || undefined, m.top), column: m.column });
    } else if (m.type === "attention") {
      const a = await session.attention(m.cell ?? undefined, m.group ?? undefined, m.gene);
      reply({ type: "attention", ...a, cell: m.cell, group: m.group });
    } else if (m.type === "export-csv") {
      reply({ type: "csv", text: session.export_csv(m.top) });
    }
  } catch (err) {
    reply({ type: "error", message: String(err && err.message ? err.message : err) });
  }
};
