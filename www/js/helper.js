// A helper worker of the pool (worker.js starts one per core): its own WebAssembly instance with
// the same model, running the jobs the analysis worker hands out (Analysis::run_job: network,
// answers, and each chunk's share of the accuracy and pseudobulks). It holds no file.
import init, { Session } from "../pkg/mamba_perturb.js";

let session = null;
let queue = Promise.resolve();
const handlers = {
  // The analysis worker's compiled module, instantiated here: first message, before the model.
  async init({ module }) { await init({ module_or_path: module }); session = new Session(); },
  model: ({ card, weights }) => session.load_model(card, weights),
  context: ({ context }) => session.set_job_context(context),
  "take-groups": ({ id }) => self.postMessage({ type: "done", id, chunk: session.take_groups(), ms: 0 }),
  async job({ id, job }) {
    const t0 = performance.now();
    const chunk = await session.run_job(job);
    self.postMessage({ type: "done", id, chunk, ms: performance.now() - t0 });
  },
};
// Messages run in the order sent: the model, then the file's context, then its jobs.
self.onmessage = ({ data: m }) => {
  queue = queue.then(() => handlers[m.type](m)).catch((err) =>
    self.postMessage({ type: "failed", id: m.id, message: String(err && err.message ? err.message : err) }));
};
