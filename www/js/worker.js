// The analysis worker: the Rust core (WebAssembly) off the main thread, so reading and predicting
// never freeze the page. It only forwards messages (declared in protocol.js) to the core's Session.
import init, { Session } from "../pkg/mamba_perturb.js";
import { BATCH, CELL_TOP, FIRST_BATCH, GROUP_TOP, POOL_BATCH } from "./protocol.js";
import { fromFiles, fromFolder } from "./model-source.js";

let session = null;
let activeRun = 0; // the prediction run under way; 0 after "cancel", another id when superseded
let backend = "cpu";
let cellCount = 0; // cells of the open file, from its input report
// Compiled once here and handed to the helpers, which instantiate it without compiling it again
// (the engine shares the compiled code between workers).
const wasmModule = WebAssembly.compileStreaming(fetch(new URL("../pkg/mamba_perturb_bg.wasm", import.meta.url)));
const ready = wasmModule.then((module) => init({ module_or_path: module })).then(() => { session = new Session(); startHelpers(); });
const reply = (msg) => self.postMessage(msg);
const pause = () => new Promise((r) => setTimeout(r, 0)); // lets a "cancel" message in

// Session calls run one at a time: an async call (a GPU read-back) must finish before the next
// starts, or Rust would see the session borrowed twice. Prediction batches queue one by one, so an
// attention request for a clicked cell slips in between two batches.
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

// ---- the pool: on the CPU backend the cells go to helper workers (helper.js), one per core, each
// with its own WebAssembly instance; this worker makes their jobs and hands the results to the core
// (Analysis::cell_job / accept), so every total is still the core's. WebGPU runs here, one device.
const wanted = Number(new URLSearchParams(self.location.search).get("workers")) || self.navigator?.hardwareConcurrency || 1;
const IN_FLIGHT = 2; // jobs queued per helper, so none waits for this worker between two
let helpers = [];

class Helper {
  constructor() {
    this.worker = new Worker(new URL("./helper.js", import.meta.url), { type: "module" });
    wasmModule.then((module) => this.post({ type: "init", module }));
    this.pending = new Map();
    this.ids = 0;
    this.busyMs = 0; // time spent running jobs
    this.worker.onmessage = ({ data: m }) => {
      const p = this.pending.get(m.id);
      if (!p) { if (m.type === "failed") reply({ type: "error", message: `a helper worker failed: ${m.message}` }); return; }
      this.pending.delete(m.id);
      if (m.type === "done") { this.busyMs += m.ms; p.resolve(m.chunk); } else p.reject(new Error(m.message));
    };
    this.worker.onerror = (e) => {
      this.failed = `a helper worker stopped: ${e.message || "it could not start"}`;
      this.pending.forEach((p) => p.reject(new Error(this.failed)));
      this.pending.clear();
    };
  }
  post(message) { this.worker.postMessage(message); }
  run(job) { return this.ask({ type: "job", job }); }
  takeGroups() { return this.ask({ type: "take-groups" }); }
  ask(message) {
    if (this.failed) return Promise.reject(new Error(this.failed));
    const id = ++this.ids;
    return new Promise((resolve, reject) => { this.pending.set(id, { resolve, reject }); this.post({ ...message, id }); });
  }
}

function startHelpers() {
  try { helpers = Array.from({ length: Math.max(1, Math.min(wanted, 16)) }, () => new Helper()); } catch { helpers = []; } // no nested workers: this worker computes
}

async function predict(run) {
  activeRun = run;
  const total = cellCount;
  const t0 = performance.now();
  let pool = backend === "cpu" ? helpers : [];
  let done = 0;
  // Counts only: the page reads the predicted cells back through the core's `cells` view.
  const report = (size) => {
    done += size;
    reply({ type: "cells", run, done, total, ms: performance.now() - t0, backend, workers: pool.length || 1 });
  };
  const left = []; // [start, size] of cells still to predict here (the pool's failed jobs)
  if (pool.length) {
    const context = await call(() => session.job_context());
    pool.forEach((h) => h.post({ type: "context", context }));
    let next = 0;
    let failure = null;
    // Big jobs while plenty is left (each job costs this worker a message and an `accept`), small
    // ones towards the end so that no helper idles long while another finishes.
    const jobSize = (start) => start === 0 ? FIRST_BATCH : total - start > 8 * POOL_BATCH * pool.length ? 4 * POOL_BATCH : POOL_BATCH;
    const lane = async (helper) => {
      while (next < total && activeRun === run) {
        const start = next;
        const size = Math.min(jobSize(start), total - start);
        next += size;
        if (failure) { left.push([start, size]); continue; }
        try {
          const job = await call(() => session.cell_job(start, size, CELL_TOP, true));
          const chunk = await helper.run(job);
          await call(() => session.accept(chunk));
          report(size);
        } catch (err) {
          failure = failure || err;
          left.push([start, size]);
        }
      }
    };
    await Promise.all(pool.flatMap((h) => Array.from({ length: IN_FLIGHT }, () => lane(h))));
    // The pseudobulk sums each helper kept over its jobs, handed over once.
    for (const helper of pool) {
      try { const held = await helper.takeGroups(); await call(() => session.accept_groups(held)); } catch (err) { failure = failure || err; }
    }
    if (failure) {
      reply({ type: "error", message: `The helper workers failed (${failure.message}); predicting the rest in one worker.` });
      helpers = [];
      pool = [];
    }
  } else {
    left.push([0, total]);
  }
  for (const [from, count] of left) {
    for (let start = from, size = Math.min(FIRST_BATCH, BATCH); start < from + count && activeRun === run; start += size, size = BATCH) {
      const n = Math.min(size, from + count - start);
      await call(() => session.predict_cells(start, n, CELL_TOP));
      report(n);
      await pause();
    }
  }
  if (activeRun !== run && activeRun !== 0) return; // superseded by a newer run: it reports
  const accuracy = await call(() => session.view({ view: "cell-accuracy" }, false));
  const jobMs = pool.length ? pool.reduce((sum, h) => sum + h.busyMs, 0) : null;
  pool.forEach((h) => { h.busyMs = 0; });
  reply({ type: "predicted", run, done, total, cancelled: done < total, ms: performance.now() - t0, backend, workers: pool.length || 1, jobMs, accuracy });
}

const handlers = {
  async backend({ choice }) {
    const gpu = choice === "cpu" ? { usable: false, name: null, why: "" } : await probeGpu();
    let want = choice === "auto" ? (gpu.usable ? "webgpu" : "cpu") : choice;
    let note = choice === "auto" && !gpu.usable ? gpu.why : "";
    if (want === "webgpu" && !gpu.name) { want = "cpu"; note = `WebGPU could not start: ${gpu.why}`; }
    try {
      await call(() => session.use_backend(want));
    } catch (err) {
      note = String(err && err.message ? err.message : err);
      want = "cpu";
      await call(() => session.use_backend(want));
    }
    backend = want;
    reply({ type: "backend", choice, active: backend, gpu, note });
  },
  async "load-model"(m) {
    const names = Session.model_files();
    const { card, weights } = m.folder ? await fromFolder(m.folder, names) : await fromFiles(m.files, names);
    reply({ type: "model", info: await call(() => session.load_model(card, weights)) });
    helpers.forEach((h) => h.post({ type: "model", card, weights }));
    // A file already open is matched to the new model's panel (its report says so) and predicted again.
    const report = await call(() => session.report());
    cellCount = report ? report.cells : 0;
    if (report) reply({ type: "report", report });
  },
  async open({ file, orientation }) {
    activeRun = 0;
    reply({ type: "progress", stage: `reading ${file.name}` });
    await pause();
    cellCount = 0; // a file that fails to open leaves none open
    const report = await call(() => session.open_file(file, orientation || undefined));
    cellCount = report.cells;
    reply({ type: "report", report });
  },
  async reference({ control, batch }) {
    activeRun = 0;
    reply({ type: "report", report: await call(() => session.set_reference(control || undefined, batch || undefined)) });
  },
  predict: ({ run }) => predict(run),
  cancel() { activeRun = 0; },
  async "group-by"({ column }) {
    await call(() => session.set_group_column(column || undefined));
    reply({ type: "pseudobulk", ...(await call(() => session.pseudobulk(GROUP_TOP))) });
  },
  async attention({ cell, group, gene }) {
    reply({ type: "attention", ...(await call(() => session.view({ view: "attention", cell, group, gene }, false))) });
  },
  async view({ request, csv }) {
    const result = await call(() => session.view(request, csv));
    reply(csv ? { type: "export", format: "csv", name: request.view, text: result } : { type: "view", request, result });
  },
  async export({ format }) {
    reply({ type: "export", format, text: await call(() => session.export(format, CELL_TOP, GROUP_TOP)) });
  },
};

// Backend, model and file requests take effect in the order sent (a file opened from a link must
// wait for the model); the others run at once, between prediction batches.
const ORDERED = new Set(["backend", "load-model", "open", "reference"]);
let order = ready;
self.onmessage = ({ data: m }) => {
  const run = () => Promise.resolve().then(() => handlers[m.type](m))
    .catch((err) => reply({ type: "error", message: String(err && err.message ? err.message : err) }));
  if (ORDERED.has(m.type)) order = order.then(run);
  else ready.then(run);
};
