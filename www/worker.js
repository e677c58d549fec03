// Runs the Rust core (WebAssembly) off the main thread: reading, normalising and predicting never
// freeze the page. One Session holds the model, the file and the predictions so far.
import init, { Session } from "./pkg/mamba_perturb.js";

let session = null;
let activeRun = 0; // the prediction run under way; 0 after "cancel", another id when superseded
let backend = "cpu";
const ready = init().then(() => { session = new Session(); });

const reply = (msg, transfer) => self.postMessage(msg, transfer || []);
const pause = () => new Promise((r) => setTimeout(r, 0)); // lets a "cancel" message in

// Session calls run one at a time: an async call (a GPU read-back) must finish before the next
// starts, or Rust would see the session borrowed twice. Prediction batches queue one by one, so
// an attention request for a clicked cell slips in between two batches.
let queue = Promise.resolve();
function call(f) {
  const result = queue.then(f);
  queue = result.catch(() => {});
  return result;
}

// WebGPU only with a real GPU: a software adapter (SwiftShader, llvmpipe; `isFallbackAdapter`) is
// far slower than the CPU backend in WebAssembly, so "auto" treats it as no GPU.
async function probeGpu() {
  if (!self.navigator || !navigator.gpu) return { usable: false, name: null, why: "this browser has no WebGPU" };
  let adapter = null;
  try { adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" }); } catch { /* none */ }
  if (!adapter) return { usable: false, name: null, why: "no WebGPU adapter is available" };
  const info = adapter.info || {};
  const name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") || "unnamed adapter";
  const software = adapter.isFallbackAdapter || info.isFallbackAdapter || /swiftshader|llvmpipe|lavapipe|software/i.test(name);
  return { usable: !software, name, why: software ? `the only WebGPU adapter is a software one (${name}), slower than the CPU backend` : "" };
}

async function setBackend(choice) {
  const gpu = choice === "cpu" ? { usable: false, name: null, why: "" } : await probeGpu(); // no probe needed
  let want = choice === "auto" ? (gpu.usable ? "webgpu" : "cpu") : choice;
  let note = choice === "auto" && !gpu.usable ? gpu.why : "";
  if (want === "webgpu" && !gpu.name) { // asked for WebGPU where there is none: say so, use the CPU
    want = "cpu";
    note = `WebGPU could not start: ${gpu.why}`;
  }
  try {
    await call(() => session.use_backend(want));
    backend = want;
  } catch (err) {
    note = String(err && err.message ? err.message : err);
    await call(() => session.use_backend("cpu"));
    backend = "cpu";
  }
  reply({ type: "backend", choice, active: backend, gpu, note });
}

self.onmessage = async (e) => {
  const m = e.data;
  try {
    await ready;
    if (m.type === "cancel") { activeRun = 0; return; } // the running loop notices and says so
    if (m.type === "backend") {
      await setBackend(m.choice);
    } else if (m.type === "load-model") {
      reply({ type: "model", info: await call(() => session.load_model(m.card, new Uint8Array(m.weights))) });
      // A file already open is matched to the new model's panel and predicted again.
      if (session.has_file()) reply({ type: "report", report: await call(() => session.rematch()), cells: session.cell_count() });
    } else if (m.type === "read") {
      reply({ type: "progress", stage: "reading and normalising", done: 0, total: 1 });
      await pause();
      const report = await call(() => session.read_file(m.name, new Uint8Array(m.bytes), undefined));
      reply({ type: "report", report, cells: session.cell_count() });
    } else if (m.type === "predict") {
      activeRun = m.run;
      const n = session.cell_count();
      const t0 = performance.now();
      // A small first batch puts the first answers on screen sooner.
      for (let start = 0, size = Math.min(64, m.batch); start < n; start += size, size = m.batch) {
        if (activeRun !== m.run) {
          if (activeRun === 0) reply({ type: "cancelled", run: m.run, done: start, total: n });
          return;
        }
        const rows = await call(() => session.predict_batch(start, size, m.top));
        reply({ type: "cells", run: m.run, rows, done: Math.min(start + size, n), total: n, ms: performance.now() - t0, backend });
        await pause();
      }
      reply({ type: "predicted", run: m.run, total: n, ms: performance.now() - t0, backend });
    } else if (m.type === "pseudobulk") {
      reply({ type: "bulk", rows: await call(() => session.pseudobulk(m.column || undefined, m.top)), column: m.column });
    } else if (m.type === "attention") {
      const a = await call(() => session.attention(m.cell ?? undefined, m.group ?? undefined, m.gene));
      reply({ type: "attention", ...a, cell: m.cell, group: m.group });
    } else if (m.type === "export-csv") {
      reply({ type: "csv", text: await call(() => session.export_csv(m.top)) });
    }
  } catch (err) {
    reply({ type: "error", message: String(err && err.message ? err.message : err) });
  }
};
